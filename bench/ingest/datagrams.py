"""Prebuilt export datagrams for the ingest benchmark, written to a file `sender.c` replays.

Traffic comes from `collector.tools.simulate.Simulator` (a few hundred office hosts: web, DNS, IM,
VoIP, P2P; both directions of each conversation, long flows cut at 60 s), exported as:

- v5: 30 records per datagram (IPv4 flows only, as v5 cannot carry IPv6);
- v9: the simulator's own export packets: 27 records per packet at most, an IPv4 and an IPv6
  template with softflowd's fields, sampling and interface-name options, all re-sent every
  20 packets;
- IPFIX: the same flows and refresh, templates with flowStart/EndMilliseconds (152/153) like
  `softflowd -v 10 -A milli`.

File format (read by sender.c): b"IMFB", u32 version (1), u32 count, then per datagram u16
length, u16 flow records carried (options records and templates not counted), payload.
Lengths are little-endian. Sequence numbers are rewritten by the sender.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass

from collector.classify.catalogue import load_catalogue
from collector.netflow import encode as E
from collector.netflow import fields as F
from collector.tools.simulate import V4_FIELDS, V6_FIELDS, Flow, Simulator

MAGIC = b"IMFB"
V5_RECORDS = 30
MAX_RECORDS = 27
REFRESH = 20  # messages between template re-sends (as the simulator does for v9)
V4_TID, V6_TID = 256, 257
_TIMES = {F.flowStartSysUpTime: (F.flowStartMilliseconds, 8), F.flowEndSysUpTime: (F.flowEndMilliseconds, 8)}
IPFIX_V4 = tuple(_TIMES.get(k, (k, n)) for k, n in V4_FIELDS)
IPFIX_V6 = tuple(_TIMES.get(k, (k, n)) for k, n in V6_FIELDS)
_ADDR = {F.sourceIPv4Address, F.destinationIPv4Address, F.sourceIPv6Address, F.destinationIPv6Address}


@dataclass
class Built:
    version: str
    datagrams: list[bytes]
    records: list[int]  # flow records per datagram

    @property
    def total_records(self) -> int:
        return sum(self.records)


def _struct(flds) -> struct.Struct:
    return struct.Struct(">" + "".join(f"{n}s" if k in _ADDR else {1: "B", 2: "H", 4: "I", 8: "Q"}[n]
                                       for k, n in flds))


def simulated_flows(n: int, seed: int = 7, hosts: int = 300, now: float | None = None) -> list[tuple[float, list[Flow]]]:
    """At least `n` flows in 1-second ticks ending near `now`: [(export time, flows)]."""
    now = time.time() if now is None else now
    sim = Simulator(load_catalogue(None), hosts=hosts, seed=seed, start=now - 3600)
    ticks, total, t = [], 0, now - 3600
    while total < n and t < now:
        t += 1.0
        flows = sim.tick(t, 1.0)
        ticks.append((t, flows))
        total += len(flows)
    return ticks


def build_v9(n: int, seed: int = 7, now: float | None = None) -> Built:
    now = time.time() if now is None else now
    sim = Simulator(load_catalogue(None), hosts=300, seed=seed, start=now - 3600)
    v4, v6 = _struct(V4_FIELDS).size, _struct(V6_FIELDS).size
    out, recs, t = [], [], now - 3600
    while sum(recs) < n and t < now:
        t += 1.0
        for d in sim.datagrams(sim.tick(t, 1.0), t):
            out.append(d)
            recs.append(_count_v9(d, v4, v6))
    return Built("v9", out, recs)


def _count_v9(d: bytes, v4: int, v6: int) -> int:
    """Flow records in a v9 packet: the data sets of the two flow templates."""
    off, n = 20, 0
    while off + 4 <= len(d):
        sid, length = struct.unpack_from(">HH", d, off)
        if length < 4:
            break
        if sid == V4_TID:
            n += (length - 4) // v4
        elif sid == V6_TID:
            n += (length - 4) // v6
        off += length
    return n


def build_ipfix(n: int, seed: int = 7, now: float | None = None) -> Built:
    now = time.time() if now is None else now
    s4, s6 = _struct(IPFIX_V4), _struct(IPFIX_V6)
    head = E.template_set([(V4_TID, IPFIX_V4), (V6_TID, IPFIX_V6)], ipfix=True)
    out, recs = [], []
    for t, flows in simulated_flows(n, seed, now=now):
        for i in range(0, len(flows), MAX_RECORDS):
            chunk = flows[i:i + MAX_RECORDS]
            sets = [head] if len(out) % REFRESH == 0 else []
            for tid, st, rows in ((V4_TID, s4, [f for f in chunk if ":" not in f.src]),
                                  (V6_TID, s6, [f for f in chunk if ":" in f.src])):
                if rows:
                    body = b"".join(st.pack(*_ipfix_values(f)) for f in rows)
                    body += b"\0" * (-len(body) % 4)
                    sets.append(struct.pack(">HH", tid, len(body) + 4) + body)
            out.append(E.ipfix_message(sets, export_time=int(t), sequence=0))
            recs.append(len(chunk))
        if sum(recs) >= n:
            break
    return Built("ipfix", out, recs)


def _ipfix_values(f: Flow) -> tuple:
    return (E.value_bytes(f.src, 16 if ":" in f.src else 4), E.value_bytes(f.dst, 16 if ":" in f.dst else 4),
            f.sport, f.dport, f.proto, f.tcp_flags, f.tos, f.in_if, f.out_if,
            f.bytes & 0xFFFF_FFFF, f.packets & 0xFFFF_FFFF, round(f.first * 1000), round(f.last * 1000))


def build_v5(n: int, seed: int = 7, now: float | None = None) -> Built:
    now = time.time() if now is None else now
    boot_ms = round(now * 1000) - 5 * 86_400_000
    out, recs = [], []
    for t, flows in simulated_flows(n, seed, now=now):
        flows = [f for f in flows if ":" not in f.src]
        for i in range(0, len(flows), V5_RECORDS):
            chunk = flows[i:i + V5_RECORDS]
            rows = [{"src": f.src, "dst": f.dst, "sport": f.sport, "dport": f.dport, "proto": f.proto,
                     "packets": f.packets, "bytes": f.bytes & 0xFFFF_FFFF,
                     "first": (round(f.first * 1000) - boot_ms) & 0xFFFF_FFFF,
                     "last": (round(f.last * 1000) - boot_ms) & 0xFFFF_FFFF,
                     "in_if": f.in_if, "out_if": f.out_if, "tcp_flags": f.tcp_flags, "tos": f.tos}
                    for f in chunk]
            ms = round(t * 1000)
            out.append(E.v5_datagram(rows, uptime_ms=(ms - boot_ms) & 0xFFFF_FFFF, unix_secs=ms // 1000,
                                     unix_nsecs=(ms % 1000) * 1_000_000, sequence=0))
            recs.append(len(chunk))
        if sum(recs) >= n:
            break
    return Built("v5", out, recs)


BUILDERS = {"v5": build_v5, "v9": build_v9, "ipfix": build_ipfix}


def build(version: str, n: int, seed: int = 7) -> Built:
    return BUILDERS[version](n, seed)


def write(path: str, built: Built) -> None:
    with open(path, "wb") as fh:
        fh.write(MAGIC + struct.pack("<II", 1, len(built.datagrams)))
        fh.writelines(struct.pack("<HH", len(d), r) + d for d, r in zip(built.datagrams, built.records))


def records_sent(built: Built, datagrams: int) -> int:
    """Flow records in the first `datagrams` of a cyclic replay of `built` (cross-check of the
    sender's own count)."""
    full, rest = divmod(datagrams, len(built.datagrams))
    return full * built.total_records + sum(built.records[:rest])
