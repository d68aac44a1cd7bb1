"""A simulated NetFlow v9 exporter (RFC 3954) for `imflow demo`, tests and benchmarks.

`Simulator` invents the traffic of a few dozen internal hosts, each with a profile (office,
IM-heavy, P2P, VoIP, idle), and exports it the way a router does: one record per direction,
long flows cut at a 60 s active timeout, an IPv4 and an IPv6 template (§5.2), an options
template for the sampling interval and one for interface names (§6), all re-sent every 20
export packets, and a sequence number that counts export packets (§5.1). Every flow carries
the internal host and the catalogue service it should classify as, so the totals an
`Exporter` sends are ground truth for tests of everything downstream.

External peers are documentation addresses (RFC 5737, RFC 3849) except where only a vendor
prefix from the catalogue makes a flow what it is (Telegram, Teams, Webex, Meet, Slack ...).
Pure apart from `Exporter`, which owns a UDP socket and refuses non-loopback targets unless told.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import random
import socket
import struct
import time
from collections import Counter, deque
from dataclasses import dataclass, field

import numpy as np

from collector.classify.catalogue import Catalogue
from collector.netflow import encode as E
from collector.netflow import fields as F

log = logging.getLogger(__name__)

TCP, UDP = 6, 17
ACTIVE_TIMEOUT_MS = 60_000  # long flows are exported in slices of this
TEMPLATE_REFRESH = 20  # export packets between re-sends of the templates and options data
MAX_RECORDS = 27  # data records per export packet
MAX_PAYLOAD = 1400  # octets: an export packet stays inside a 1500-octet MTU
V4_TID, V6_TID, SAMPLING_TID, IFACE_TID = 256, 257, 258, 259
IP_CLASS_OF_SERVICE, TCP_CONTROL_BITS = 5, 6  # IANA IEs that fields.py does not name
_COMMON = ((F.sourceTransportPort, 2), (F.destinationTransportPort, 2), (F.protocolIdentifier, 1),
           (TCP_CONTROL_BITS, 1), (IP_CLASS_OF_SERVICE, 1), (F.ingressInterface, 2),
           (F.egressInterface, 2), (F.octetDeltaCount, 4), (F.packetDeltaCount, 4),
           (F.flowStartSysUpTime, 4), (F.flowEndSysUpTime, 4))
V4_FIELDS = ((F.sourceIPv4Address, 4), (F.destinationIPv4Address, 4)) + _COMMON
V6_FIELDS = ((F.sourceIPv6Address, 16), (F.destinationIPv6Address, 16)) + _COMMON
SAMPLING_SCOPE = ((F.V9_SCOPE_SYSTEM, 4),)
SAMPLING_OPTIONS = ((F.samplingInterval, 4), (F.samplingAlgorithm, 1))
IFACE_SCOPE = ((F.V9_SCOPE_INTERFACE, 4),)
IFACE_OPTIONS = ((F.interfaceName, 16), (F.interfaceDescription, 32))
LAN, WAN, GUEST = 1, 2, 3
INTERFACES = {LAN: ("Gi0/0", "office LAN 10.20.0.0/16 fd00:20::/64"), WAN: ("Gi0/1", "uplink"),
              GUEST: ("Vlan50", "guest wifi 192.168.50.0/24")}
PROFILES = {"office": 0.40, "im-heavy": 0.22, "voip": 0.12, "p2p": 0.08, "idle": 0.18}


def _record_struct(flds) -> struct.Struct:
    """Addresses as packed octets, everything else as unsigned integers."""
    addrs = {F.sourceIPv4Address, F.destinationIPv4Address, F.sourceIPv6Address, F.destinationIPv6Address}
    codes = (f"{n}s" if k in addrs else {1: "B", 2: "H", 4: "I"}[n] for k, n in flds)
    return struct.Struct(">" + "".join(codes))


_V4_REC, _V6_REC = _record_struct(V4_FIELDS), _record_struct(V6_FIELDS)


@dataclass
class SimHost:
    addr: str
    name: str
    profile: str  # one of PROFILES


@dataclass(slots=True)
class Flow:
    """One exported record: one direction of a conversation, as the exporter counted it
    (after sampling: `packets`/`bytes` are what goes on the wire)."""

    src: str
    dst: str
    sport: int
    dport: int
    proto: int
    packets: int
    bytes: int
    first: float  # UNIX seconds, millisecond resolution
    last: float
    tcp_flags: int = 0
    tos: int = 0
    in_if: int = 0
    out_if: int = 0
    host: str = ""  # the internal endpoint
    service: str = "other"  # catalogue id this flow classifies as with the shipped catalogue


@dataclass(frozen=True)
class _Activity:
    """Conversations a host starts at random (Poisson): host -> peer and back."""

    service: str
    proto: int
    peer: str  # peer pool: "web", "dns", "p2p", or a service id (fixed servers, vendor prefixes)
    ports: tuple[int, ...]  # the peer's port; () = any free high port
    rate: float  # conversations per host-second at the daily peak
    packets: tuple[int, int] = (1, 1)  # host -> peer packets, log-uniform
    up: int = 100  # mean packet size host -> peer
    down: int = 100  # mean packet size peer -> host
    ratio: float = 1.0  # peer -> host packets per host -> peer packet
    duration: tuple[float, float] = (0.0, 1.0)  # seconds
    local: tuple[int, ...] = ()  # the host's port; () = ephemeral
    pps: float = 0.0  # media: packets per second for the duration instead of `packets`
    tos: int = 0
    call: bool = False  # SIP call: signalling on `ports` plus RTP between high ports


@dataclass(frozen=True)
class _Persistent:
    """A connection held open all day (IM, SIP registration): a record every active timeout."""

    service: str
    proto: int
    peer: str  # address
    dport: int
    sport: int
    phase_ms: int  # slices end at phase_ms + k * ACTIVE_TIMEOUT_MS
    packets: tuple[int, int]  # host -> peer packets per slice
    up: int
    down: int
    tos: int = 0


_BT_PORTS = tuple(range(6881, 6890)) + (51413,)
_WEB = (
    _Activity("other", TCP, "web", (443,), 0.35, (6, 120), 220, 1250, 1.6, (0.2, 30)),
    _Activity("other", UDP, "web", (443,), 0.12, (8, 300), 250, 1200, 1.8, (0.5, 40)),
    _Activity("other", TCP, "web", (443,), 0.012, (400, 20000), 60, 1400, 1.9, (20, 60)),
    _Activity("other", TCP, "web", (80,), 0.04, (4, 40), 300, 1100, 1.5, (0.1, 10)),
    _Activity("other", UDP, "dns", (53,), 0.8, (1, 2), 70, 160, 1.0, (0.0, 0.05)),
)
_MIXES: dict[str, tuple[_Activity, ...]] = {
    "office": _WEB + (
        _Activity("teams", UDP, "teams", (3478, 3479, 3480, 3481), 0.004, up=900, down=1000,
                  duration=(20, 60), local=tuple(range(50000, 50060)), pps=90, tos=0xB8),
        _Activity("webex", UDP, "webex", (9000,), 0.0015, up=800, down=950, duration=(20, 60),
                  pps=80, tos=0xB8),
        _Activity("meet", UDP, "meet", tuple(range(19302, 19310)), 0.0015, up=850, down=1000,
                  duration=(20, 60), pps=80),
        _Activity("zoom", UDP, "zoom", (8801,), 0.001, up=800, down=1000, duration=(20, 60), pps=80),
    ),
    "im-heavy": _WEB[:2] + _WEB[4:] + (
        _Activity("telegram", TCP, "telegram", (443,), 0.02, (10, 900), 120, 1300, 1.4, (1, 30)),
        _Activity("discord", TCP, "discord", (443,), 0.005, (20, 600), 200, 1200, 1.3, (5, 60)),
    ),
    "voip": _WEB[:2] + _WEB[4:] + (
        _Activity("sip", UDP, "sip", (5060,), 0.004, (4, 9), 650, 500, 1.0, (20, 60),
                  local=(5060,), tos=0x68, call=True),
        _Activity("iax2", UDP, "iax2", (4569,), 0.002, up=90, down=90, duration=(20, 60),
                  local=(4569,), pps=50, tos=0xB8),
        _Activity("stun", UDP, "stun", (3478,), 0.03, (1, 2), 60, 72, 1.0, (0.0, 0.2)),
    ),
    "p2p": _WEB[:2] + _WEB[4:] + (
        _Activity("bittorrent", TCP, "p2p", _BT_PORTS, 0.45, (5, 2500), 700, 1300, 1.1, (2, 60)),
        _Activity("bittorrent", TCP, "p2p", (), 0.25, (5, 2500), 1300, 700, 0.9, (2, 60),
                  local=(51413,)),
        _Activity("bittorrent", UDP, "p2p", (), 3.0, (1, 3), 110, 220, 1.0, (0.0, 2.0),
                  local=(6881,)),
        _Activity("edonkey", TCP, "p2p", (4662,), 0.05, (5, 1500), 900, 1300, 1.0, (2, 60)),
        _Activity("edonkey", UDP, "p2p", (4672,), 0.4, (1, 2), 80, 120, 1.0, (0.0, 0.5)),
    ),
    "idle": (
        _Activity("other", UDP, "dns", (53,), 0.05, (1, 2), 70, 160, 1.0, (0.0, 0.05)),
        _Activity("other", TCP, "web", (443,), 0.01, (6, 60), 220, 1200, 1.4, (0.2, 10)),
        _Activity("other", UDP, "ntp", (123,), 0.001, (1, 1), 76, 76, 1.0, (0.0, 0.05), local=(123,)),
    ),
}
_LEGACY_IM = (("msn", 1863), ("yahoo", 5050), ("aim", 5190), ("xmpp", 5222), ("irc", 6667))
# Fixed servers: documentation addresses for services that classify by port.
_SERVERS = {
    "dns": ("192.0.2.53", "2001:db8::53"), "ntp": ("192.0.2.123", "2001:db8::123"),
    "msn": ("192.0.2.18",), "yahoo": ("192.0.2.50",), "aim": ("192.0.2.51",),
    "xmpp": ("192.0.2.52", "2001:db8::5222"), "irc": ("192.0.2.67", "2001:db8::6667"),
    "sip": ("203.0.113.60", "2001:db8::5060"), "iax2": ("203.0.113.69",),
    "stun": ("203.0.113.78", "2001:db8::3478"), "zoom": ("198.51.100.201",),
}
_VENDORS = ("telegram", "discord", "teams", "webex", "meet", "slack")


class Simulator:
    """Traffic of `hosts` internal hosts, exported as NetFlow v9. Deterministic for a seed and a
    sequence of calls. `sampling` N: each packet is counted with probability 1/N and the
    sampling interval is announced in options data, so a collector renormalises by N."""

    def __init__(self, catalogue: Catalogue, hosts: int = 40, seed: int = 1,
                 start: float | None = None, sampling: int = 1):
        if not 1 <= hosts <= 500:
            raise ValueError(f"hosts: {hosts}: expected 1-500")
        if not 1 <= sampling < 1 << 32:
            raise ValueError(f"sampling: {sampling}: expected a packet interval >= 1")
        self.catalogue = catalogue
        self.sampling = sampling
        self.start = time.time() if start is None else float(start)
        self.source_id = 0
        self._rng = random.Random(seed)
        self._np = np.random.default_rng(seed)
        # the router booted days before the simulation starts; uptime wraps at 2^32 ms
        self._boot_ms = round(self.start * 1000) - self._rng.randrange(3 * 86_400_000, 20 * 86_400_000)
        self._sent = 0  # export packets made: the next sequence number
        self._owned = _owned_ports(catalogue)
        self._peers = self._peer_pools()
        self._hosts = self._make_hosts(hosts)
        self._ephemeral = {h.addr: self._rng.choice(((49152, 65535), (32768, 60999))) for h in self._hosts}
        self._plans = {h.addr: [a for a in _MIXES[h.profile] if self._usable(a.service, a.peer, h)]
                       for h in self._hosts}
        self._held = {h.addr: self._persistent(h) for h in self._hosts}
        self._head, self._head_records = self._template_sets()

    def hosts(self) -> list[SimHost]:
        return list(self._hosts)

    # --- traffic ---------------------------------------------------------------------------

    def tick(self, now: float, seconds: float) -> list[Flow]:
        """The records of flows that ended in (now - seconds, now], ordered by end time."""
        hi, lo = round(now * 1000), round((now - seconds) * 1000)
        if hi <= lo:
            return []
        scale = diurnal(now) * (hi - lo) / 1000
        flows: list[Flow] = []
        for h in self._hosts:
            for act in self._plans[h.addr]:
                for _ in range(int(self._np.poisson(act.rate * scale))):
                    flows += self._conversation(h, act, lo, hi)
            for conn in self._held[h.addr]:
                k = -((conn.phase_ms - lo - 1) // ACTIVE_TIMEOUT_MS)  # the first slice ending after lo
                for end in range(conn.phase_ms + k * ACTIVE_TIMEOUT_MS, hi + 1, ACTIVE_TIMEOUT_MS):
                    flows += self._slice(h, conn, end, lo)
        if self.sampling > 1:
            flows = self._sample(flows)
        flows.sort(key=lambda f: (f.last, f.first))
        return flows

    def _conversation(self, h: SimHost, act: _Activity, lo: int, hi: int) -> list[Flow]:
        r = self._rng
        peer = self._peer(act.peer, h)
        local = r.choice(act.local) if act.local else self._free_port(act.proto, *self._ephemeral[h.addr])
        remote = r.choice(act.ports) if act.ports else self._free_port(act.proto, 1024, 65535)
        dur = min(round(r.uniform(*act.duration) * 1000), ACTIVE_TIMEOUT_MS)
        last = r.randint(lo + 1, hi)
        first = last - dur
        if act.pps:
            up = max(1, round(dur / 1000 * act.pps * r.uniform(0.9, 1.1)))
        else:
            up = _log_uniform(r, *act.packets)
        down = max(1, round(up * act.ratio * r.uniform(0.85, 1.15)))
        flags = 0
        if act.proto == TCP:  # SYN..FIN, or only ACK|PSH for a slice cut by the active timeout
            flags = 0x1B if dur < ACTIVE_TIMEOUT_MS else 0x18
        out = self._pair(h, peer, local, remote, act.proto, up, down, act.up, act.down, first, last,
                         flags, act.tos, act.service)
        if act.call:  # media of a SIP call: RTP between even high ports, with the same peer
            lp, rp = (self._free_port(UDP, 10000, 20000, even=True) for _ in range(2))
            media = max(1, round((last - first) / 1000 * 50 * r.uniform(0.95, 1.0)))  # 20 ms frames
            # RTP's ports are shared in the catalogue (too common to classify alone): "other"
            out += self._pair(h, peer, lp, rp, UDP, media, media, 200, 200, first + 150, last, 0, 0xB8,
                              "other")
        return out

    def _slice(self, h: SimHost, conn: _Persistent, end: int, lo: int) -> list[Flow]:
        r = self._rng
        up = _log_uniform(r, *conn.packets)
        down = max(1, round(up * r.uniform(0.7, 1.3)))
        first = end - ACTIVE_TIMEOUT_MS + r.randint(0, 2000)
        last = max(lo + 1, end - r.randint(0, 8000))  # the last keepalive or message
        flags = 0x18 if conn.proto == TCP else 0
        return self._pair(h, conn.peer, conn.sport, conn.dport, conn.proto, up, down, conn.up, conn.down,
                          first, last, flags, conn.tos, conn.service)

    def _pair(self, h, peer, local, remote, proto, up, down, up_size, down_size, first, last,
              flags, tos, service) -> list[Flow]:
        """Both directions of one conversation as two records (like softflowd)."""
        r = self._rng
        v6 = ":" in h.addr
        floor = (48 if v6 else 28) + (12 if proto == TCP else 0)  # IP + transport headers
        host_if = GUEST if h.addr.startswith("192.168.50.") else LAN
        back_first = min(first + r.randint(5, 80), last)  # one round trip later
        return [
            Flow(h.addr, peer, local, remote, proto, up, _octets(r, up, up_size, floor), first / 1000,
                 last / 1000, flags, tos, host_if, WAN, h.addr, service),
            Flow(peer, h.addr, remote, local, proto, down, _octets(r, down, down_size, floor),
                 back_first / 1000, last / 1000, flags, tos, WAN, host_if, h.addr, service),
        ]

    def _sample(self, flows: list[Flow]) -> list[Flow]:
        """Random 1-in-N packet sampling: the exporter counts only the packets it samples."""
        kept = []
        counted = self._np.binomial([f.packets for f in flows], 1 / self.sampling) if flows else []
        for f, n in zip(flows, counted):
            if n:
                f.bytes = max(int(n), round(f.bytes * int(n) / f.packets))
                f.packets = int(n)
                kept.append(f)
        return kept

    # --- export packets ----------------------------------------------------------------------

    def datagrams(self, flows: list[Flow], now: float) -> list[bytes]:
        """Export `flows` (ended by `now`) as NetFlow v9 packets exported at `now`."""
        return [d for d, _ in self._export(flows, now)]

    def _export(self, flows: list[Flow], now: float) -> list[tuple[bytes, list[Flow]]]:
        """Export packets, each with the flows it carries. Packets are numbered as made."""
        now_ms = round(now * 1000)
        uptime, unix_secs = (now_ms - self._boot_ms) & 0xFFFF_FFFF, now_ms // 1000
        out, i = [], 0
        while i < len(flows):
            sets, records, room = [], 0, MAX_PAYLOAD - 20
            if self._sent % TEMPLATE_REFRESH == 0:
                sets.append(self._head)
                records, room = self._head_records, room - len(self._head)
            v4, v6 = [], []
            while i < len(flows) and len(v4) + len(v6) < MAX_RECORDS:
                f = flows[i]
                rows, rec = (v6, _V6_REC) if ":" in f.src else (v4, _V4_REC)
                need = rec.size + (8 if not rows else 0)  # a new set: header and padding
                if need > room:
                    break
                room -= need
                rows.append(rec.pack(
                    _packed(f.src), _packed(f.dst), f.sport, f.dport, f.proto, f.tcp_flags, f.tos,
                    f.in_if, f.out_if, f.bytes, f.packets,
                    (round(f.first * 1000) - self._boot_ms) & 0xFFFF_FFFF,
                    (round(f.last * 1000) - self._boot_ms) & 0xFFFF_FFFF))
                i += 1
            carried = flows[i - len(v4) - len(v6):i]
            for tid, rows in ((V4_TID, v4), (V6_TID, v6)):
                if rows:
                    body = b"".join(rows)
                    body += b"\0" * (-len(body) % 4)
                    sets.append(struct.pack(">HH", tid, len(body) + 4) + body)
            records += len(carried)
            out.append((E.v9_message(sets, uptime_ms=uptime, unix_secs=unix_secs,
                                     sequence=self._sent & 0xFFFF_FFFF, source_id=self.source_id,
                                     count=records), carried))
            self._sent += 1
        return out

    def _rewind(self, n: int) -> None:
        """Forget the last `n` export packets made but never sent: no gap in the sequence."""
        self._sent -= n

    def _template_sets(self) -> tuple[bytes, int]:
        sampling = [{F.V9_SCOPE_SYSTEM: 0, F.samplingInterval: self.sampling,
                     F.samplingAlgorithm: 2 if self.sampling > 1 else 0}]
        ifaces = [{F.V9_SCOPE_INTERFACE: i, F.interfaceName: name.encode().ljust(16, b"\0"),
                   F.interfaceDescription: desc.encode()[:32].ljust(32, b"\0")}
                  for i, (name, desc) in INTERFACES.items()]
        head = b"".join((
            E.template_set([(V4_TID, V4_FIELDS), (V6_TID, V6_FIELDS)], ipfix=False),
            E.options_template_set(SAMPLING_TID, SAMPLING_SCOPE, SAMPLING_OPTIONS, ipfix=False),
            E.options_template_set(IFACE_TID, IFACE_SCOPE, IFACE_OPTIONS, ipfix=False),
            E.data_set(SAMPLING_TID, SAMPLING_SCOPE + SAMPLING_OPTIONS, sampling),
            E.data_set(IFACE_TID, IFACE_SCOPE + IFACE_OPTIONS, ifaces),
        ))
        return head, 2 + 2 + len(sampling) + len(ifaces)

    # --- hosts, peers, ports -------------------------------------------------------------------

    def _make_hosts(self, n: int) -> list[SimHost]:
        r = self._rng
        counts = {p: int(w * n) for p, w in PROFILES.items()}
        for p in sorted(PROFILES, key=lambda p: PROFILES[p] * n - counts[p], reverse=True):
            if sum(counts.values()) >= n:
                break
            counts[p] += 1
        profiles = [p for p, c in counts.items() for _ in range(c)]
        r.shuffle(profiles)
        n6 = 2 if n >= 20 else 1 if n >= 5 else 0
        hosts, lan, guest = [], 0, 0
        for i, profile in enumerate(profiles):
            if i >= n - n6:
                addr, name = f"fd00:20::{0x1a0 + i - (n - n6):x}", f"lab6-{i - (n - n6) + 1}"
            elif i % 5 == 4:
                addr, name = f"192.168.50.{100 + guest}", f"wifi-{guest + 1:02d}"
                guest += 1
            else:
                addr, name = f"10.20.{1 + lan % 3}.{10 + lan // 3}", f"pc-{lan + 1:02d}"
                lan += 1
            hosts.append(SimHost(addr, name, profile))
        return hosts

    def _persistent(self, h: SimHost) -> list[_Persistent]:
        r = self._rng
        held = []

        def hold(service, proto, peer, dport, packets, up, down, sport=0, tos=0):
            if self._usable(service, peer, h):
                port = sport or self._free_port(proto, *self._ephemeral[h.addr])
                held.append(_Persistent(service, proto, self._peer(peer, h), dport, port,
                                        r.randrange(ACTIVE_TIMEOUT_MS), packets, up, down, tos))

        if h.profile == "im-heavy":
            for sid, port in r.sample(_LEGACY_IM, r.randint(2, 4)):
                hold(sid, TCP, sid, port, (2, 40), 140, 180)
            if r.random() < 0.7:
                hold("telegram", TCP, "telegram", 443, (2, 30), 150, 260)
        if h.profile in ("office", "im-heavy") and r.random() < 0.5:
            hold("slack", TCP, "slack", 443, (2, 20), 180, 420)
        if h.profile == "office" and r.random() < 0.6:
            hold("teams", TCP, "teams", 443, (3, 25), 250, 600)
        if h.profile == "voip":
            hold("sip", UDP, "sip", 5060, (1, 3), 520, 480, sport=5060, tos=0x68)
        return held

    def _usable(self, service: str, peer: str, h: SimHost) -> bool:
        return (service == "other" or service in self.catalogue.by_id) and \
            (peer == "p2p" or bool(self._peers.get((peer, _family(h.addr)))))

    def _peer_pools(self) -> dict[tuple[str, int], list[str]]:
        r = self._rng
        web4 = [f"198.51.100.{i}" for i in range(10, 90, 4)] + [f"203.0.113.{i}" for i in range(10, 90, 4)]
        web6 = [f"2001:db8:100::{i:x}" for i in range(1, 21)]
        r.shuffle(web4)
        pools = {("web", 4): web4, ("web", 6): web6}
        for key, addrs in _SERVERS.items():
            for a in addrs:
                pools.setdefault((key, _family(a)), []).append(a)
        for sid in _VENDORS:
            service = self.catalogue.by_id.get(sid)
            if service is None:
                continue
            for net in service.networks:
                a = self._vendor_address(net, sid)
                if a is not None and len(pools.get((sid, net.version), ())) < 3:
                    pools.setdefault((sid, net.version), []).append(a)
        return pools

    def _vendor_address(self, net, sid: str) -> str | None:
        """A fixed address inside `net` that no other service's prefix also covers."""
        offset = min(net.num_addresses // 2 + 17, net.num_addresses - 1) if net.num_addresses > 4 else 0
        a = net.network_address + offset
        for s in self.catalogue.services:
            if s.id != sid and any(a in n for n in s.networks if n.version == net.version):
                return None
        return str(a)

    def _peer(self, pool: str, h: SimHost) -> str:
        fam = _family(h.addr)
        if pool == "p2p":  # a peer anywhere in the documentation ranges
            if fam == 6:
                return str(ipaddress.IPv6Address(0x2001_0db8_0f2f << 80 | self._rng.getrandbits(64)))
            return f"{self._rng.choice(('192.0.2', '198.51.100', '203.0.113'))}.{self._rng.randint(1, 254)}"
        return self._pick(self._peers[pool, fam], pool)

    def _pick(self, addrs: list[str], pool: str) -> str:
        if pool == "web":  # a few popular sites, a long tail of others
            return self._rng.choices(addrs, cum_weights=_zipf(len(addrs)))[0]
        return self._rng.choice(addrs)

    def _free_port(self, proto: int, lo: int, hi: int, even: bool = False) -> int:
        """A port in lo..hi that no catalogue service owns, so it cannot decide a flow."""
        owned = self._owned.get(proto)
        for _ in range(64):
            p = self._rng.randint(lo, hi) & (~1 if even else ~0)
            if p >= lo and (owned is None or not owned[p]):
                return p
        return p


@dataclass
class Stats:
    """What an exporter sent: the ground truth a collector should report. `bytes`/`packets`
    per (internal host, service id) are renormalised (exported counts x sampling interval)."""

    datagrams: int = 0
    flows: int = 0
    octets: int = 0  # UDP payload octets sent
    send_errors: int = 0  # export packets the socket refused (lost)
    dropped_flows: int = 0  # flows over the per-tick bound, never exported
    bytes: Counter = field(default_factory=Counter)
    packets: Counter = field(default_factory=Counter)

    def add(self, datagram: bytes, flows: list[Flow], sampling: int) -> None:
        self.datagrams += 1
        self.octets += len(datagram)
        self.flows += len(flows)
        for f in flows:
            self.bytes[f.host, f.service] += f.bytes * sampling
            self.packets[f.host, f.service] += f.packets * sampling

    def by_category(self, catalogue: Catalogue) -> Counter:
        out: Counter = Counter()
        for (_, sid), n in self.bytes.items():
            out[catalogue.by_id[sid].category if sid in catalogue.by_id else "other"] += n
        return out


class Exporter:
    """Sends a simulator's export packets to one collector address over UDP, every `interval`
    seconds of wall-clock time. Bounded: at most `max_flows_per_tick` flows per tick."""

    def __init__(self, target: tuple[str, int], simulator: Simulator, interval: float = 1.0, *,
                 allow_remote: bool = False, max_flows_per_tick: int = 20_000, clock=time.time):
        host, port = target[0], target[1]
        host = "127.0.0.1" if host == "localhost" else host
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"target: {host!r}: expected an IP address") from None
        if not ip.is_loopback and not allow_remote:
            raise ValueError(f"target: {host}: not a loopback address (pass allow_remote=True "
                             "to export elsewhere)")
        if not 1 <= int(port) <= 65535:
            raise ValueError(f"target: port {port}: out of range 1-65535")
        if not interval > 0:
            raise ValueError(f"interval: {interval}: expected > 0")
        self.target = (str(ip), int(port))
        self.simulator = simulator
        self.interval = float(interval)
        self.max_flows_per_tick = max_flows_per_tick
        self.clock = clock
        self.stats = Stats()  # cumulative over run() and run_for()
        self._sim_now: float | None = None  # simulated clock of run_for(rate=...)
        self._warned = 0.0

    async def run(self, stop: asyncio.Event) -> None:
        """Tick and send every `interval` seconds until `stop` is set."""
        sock = self._socket()
        sock.setblocking(False)
        try:
            now = self._aligned(self.clock())
            while not stop.is_set():
                self._tick(sock, now)
                now += self.interval
                if self.clock() - now > 10 * self.interval:  # suspended or starved: skip ahead
                    now = self._aligned(self.clock())
                delay = now - self.clock()
                if delay > 0:
                    try:
                        await asyncio.wait_for(stop.wait(), delay)
                    except TimeoutError:
                        pass
                else:
                    await asyncio.sleep(0)
        finally:
            sock.close()

    def run_for(self, seconds: float, rate: float | None = None, max_datagrams: int = 100_000) -> Stats:
        """Block for at most `seconds` and `max_datagrams` export packets. Without `rate`, in
        real time like `run`; with `rate`, simulated time runs as fast as needed to send `rate`
        export packets per second (for benchmarks)."""
        deadline = time.monotonic() + seconds
        limit = self.stats.datagrams + max_datagrams
        sock = self._socket()
        try:
            if rate is None:
                now = self._aligned(self.clock())
                while self.stats.datagrams < limit:
                    self._tick(sock, now, limit)
                    now += self.interval
                    wait = now - self.clock()
                    if time.monotonic() + max(wait, 0.0) >= deadline:
                        break
                    time.sleep(max(wait, 0.0))
                return self.stats
            queue: deque = deque()
            t0, k = time.monotonic(), 0
            if self._sim_now is None:
                self._sim_now = self._aligned(self.simulator.start)
            while self.stats.datagrams < limit:
                if not queue:
                    now = self._sim_now
                    flows = self._bounded(self.simulator.tick(now, self.interval))
                    queue.extend(self.simulator._export(flows, now))
                    self._sim_now = now + self.interval
                    if time.monotonic() >= deadline:
                        break
                    continue
                wait = t0 + k / rate - time.monotonic()
                if time.monotonic() + max(wait, 0.0) >= deadline:
                    break
                if wait > 0:
                    time.sleep(wait)
                self._send(sock, *queue.popleft())
                k += 1
            self.simulator._rewind(len(queue))
            return self.stats
        finally:
            sock.close()

    def _tick(self, sock: socket.socket, now: float, limit: int | None = None) -> None:
        packets = self.simulator._export(self._bounded(self.simulator.tick(now, self.interval)), now)
        for i, (data, flows) in enumerate(packets):
            if limit is not None and self.stats.datagrams >= limit:
                self.simulator._rewind(len(packets) - i)
                return
            self._send(sock, data, flows)

    def _bounded(self, flows: list[Flow]) -> list[Flow]:
        if len(flows) > self.max_flows_per_tick:
            self.stats.dropped_flows += len(flows) - self.max_flows_per_tick
            del flows[self.max_flows_per_tick:]
        return flows

    def _send(self, sock: socket.socket, data: bytes, flows: list[Flow]) -> None:
        try:
            sock.send(data)
        except OSError as e:  # refused (nobody listening yet), buffer full: the packet is lost
            self.stats.send_errors += 1
            if time.monotonic() - self._warned > 60:
                self._warned = time.monotonic()
                log.warning("export to %s:%d failed: %s", *self.target, e)
            return
        self.stats.add(data, flows, self.simulator.sampling)

    def _socket(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.target[0] else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.connect(self.target)  # the only address this socket can send to
        return sock

    def _aligned(self, t: float) -> float:
        """`t` rounded down to the interval grid: with whole-second intervals the v9 header's
        unix_secs is then exact and collectors place flows to the millisecond."""
        return math.floor(t / self.interval) * self.interval


def diurnal(t: float) -> float:
    """Activity relative to the daily peak: 0.45 at night, 1.0 mid-afternoon (UTC hours)."""
    hour = (t % 86400) / 3600
    return 0.45 + 0.55 * max(0.0, math.sin(math.pi * (hour - 6) / 14)) if 6 <= hour <= 20 else 0.45


def _owned_ports(catalogue: Catalogue) -> dict[int, np.ndarray]:
    """proto -> bool[65536]: ports that classify a flow alone (in `ports`, not shared)."""
    owned = {TCP: np.zeros(65536, bool), UDP: np.zeros(65536, bool)}
    for s in catalogue.services[1:]:
        mine = {p: np.zeros(65536, bool) for p in owned}
        for r in s.port_ranges:
            if r.proto in mine:
                mine[r.proto][r.lo:r.hi + 1] = True
        for r in s.shared_ranges:
            if r.proto in mine:
                mine[r.proto][r.lo:r.hi + 1] = False
        for p in owned:
            owned[p] |= mine[p]
    return owned


def _family(addr: str) -> int:
    return 6 if ":" in addr else 4


def _log_uniform(r: random.Random, lo: int, hi: int) -> int:
    return lo if hi <= lo else round(math.exp(r.uniform(math.log(lo), math.log(hi))))


def _octets(r: random.Random, packets: int, size: int, floor: int) -> int:
    per = min(1500, max(floor, size * r.uniform(0.85, 1.15)))
    return max(packets * floor, round(packets * per))


_ZIPF: dict[int, list[float]] = {}


def _zipf(n: int) -> list[float]:
    if n not in _ZIPF:
        _ZIPF[n] = list(np.cumsum([1 / (k + 1) for k in range(n)]))
    return _ZIPF[n]


_PACKED: dict[str, bytes] = {}


def _packed(addr: str) -> bytes:
    b = _PACKED.get(addr)
    if b is None:
        b = ipaddress.ip_address(addr).packed
        if len(_PACKED) < 65536:
            _PACKED[addr] = b
    return b
