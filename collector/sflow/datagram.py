"""sFlow version 5 datagrams (sFlow.org, "sFlow Version 5", July 2004): the XDR walk.

`parse` checks a whole datagram and returns what it carries, or raises a `DecodeError`
naming the reason; nothing is applied before the whole datagram is known to be sound (the
caller applies it). Everything is XDR: big-endian 32-bit words, opaque data padded to four
octets. Read here:

- the datagram header (§5.3 `sample_datagram_v5`): agent address, sub-agent id, sequence
  number, uptime, the samples;
- flow samples (§5.4 `flow_sample`, format 1) and expanded flow samples (`flow_sample_expanded`,
  format 3): sequence number, source id, sampling rate, sample pool, drops, input and output
  interface, and of their flow records the raw packet header (format 1, §5.2
  `sampled_header`), sampled IPv4 (format 3) and IPv6 (format 4), used when no header came;
  extended switch (1001) and router (1002) records are checked and kept for `imflow decode`;
- counter samples (format 2) and expanded counter samples (format 4): of their records the
  generic interface counters (format 1, `if_counters`).

Anything of another enterprise or format is skipped by its length, as the spec asks.
Ceilings: a datagram's claimed counts must fit its octets (every sample and record is at least
8), a header is read up to `headers.MAX_HEADER` octets, a frame length above `MAX_FRAME` is
refused with the sample it came in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from struct import unpack_from

from collector.netflow.errors import BadLength, BadVersion, DecodeError, RecordOverrun, ShortHeader
from collector.sflow.headers import MAX_HEADER

MAGIC = b"\0\0\0\5"  # the version word: NetFlow v5/v9 and IPFIX start 00 05, 00 09, 00 0a
MAX_FRAME = 65_535 + 64  # octets: an IP packet at most 64 KiB, plus link headers and FCS
UNKNOWN_IF = 0x3FFFFFFF  # "interface not known" in the 30-bit interface value (§5.4)


class BadSample(DecodeError):
    """A sample or record whose fields cannot be valid (zero-length header, absurd frame size)."""
    reason = "sflow-bad-sample"


@dataclass(slots=True)
class Flow:
    """One flow sample: what becomes one flow row."""

    seq: int
    source: int  # source id (type << 24 | index)
    rate: int
    pool: int
    drops: int
    in_if: int
    out_if: int
    header_protocol: int = 0  # 0: no raw header record
    frame_length: int = 0
    stripped: int = 0
    header: bytes = b""
    ip: tuple | None = None  # sampled_ipv4/6: (length, proto, src bytes, dst bytes, sport, dport)
    switch: tuple | None = None  # (src vlan, src priority, dst vlan, dst priority)
    router: tuple | None = None  # (next hop bytes, src mask, dst mask)


@dataclass(slots=True)
class Counters:
    """Generic interface counters from a counter sample (`if_counters`)."""

    seq: int
    source: int
    if_index: int
    if_type: int
    speed: int  # bits/s
    direction: int
    status: int  # bit 0 admin up, bit 1 oper up
    in_octets: int
    out_octets: int


@dataclass(slots=True)
class Datagram:
    agent: bytes  # 4 or 16 octets
    sub_agent: int
    seq: int
    uptime: int  # ms
    flows: list[Flow] = field(default_factory=list)
    counters: list[Counters] = field(default_factory=list)
    skipped: int = 0  # samples and records of other formats or enterprises


def is_sflow(data) -> bool:
    return len(data) >= 4 and data[0] == 0 and data[1] == 0 and data[2] == 0 and data[3] == 5


def _interface(word: int) -> int:
    """A compact flow sample's interface word: format in the top two bits; only format 0 is an
    ifIndex (1: dropped, 2: several interfaces); 0x3FFFFFFF is "unknown"."""
    if word >> 30:
        return 0
    value = word & 0x3FFFFFFF
    return 0 if value == UNKNOWN_IF else value


def parse(data) -> Datagram:
    """One datagram, checked whole. Raises ShortHeader, BadVersion, BadLength, RecordOverrun,
    BadSample."""
    end = len(data)
    if end < 28:
        raise ShortHeader(f"sFlow datagram of {end} octets")
    version, atype = unpack_from(">II", data, 0)
    if version != 5:
        raise BadVersion(f"sFlow version {version}")
    if atype == 1:
        alen = 4
    elif atype == 2:
        alen = 16
    else:
        raise DecodeError(f"agent address type {atype}", reason="sflow-bad-agent")
    if 8 + alen + 16 > end:
        raise ShortHeader(f"sFlow datagram of {end} octets")
    agent = bytes(data[8:8 + alen])
    sub_agent, seq, uptime, nsamples = unpack_from(">IIII", data, 8 + alen)
    pos = 24 + alen
    if nsamples * 8 > end - pos:
        raise BadLength(f"{nsamples} samples cannot fit in {end - pos} octets")
    dg = Datagram(agent, sub_agent, seq, uptime)
    for _ in range(nsamples):
        if pos + 8 > end:
            raise BadLength(f"sample header at {pos} past the datagram's {end} octets")
        fmt, length = unpack_from(">II", data, pos)
        body, stop = pos + 8, pos + 8 + length
        if length % 4 or stop > end:
            raise BadLength(f"sample of {length} octets at {pos}, datagram {end}")
        if fmt == 1 or fmt == 3:
            dg.flows.append(_flow_sample(data, body, stop, fmt == 3, dg))
        elif fmt == 2 or fmt == 4:
            _counter_sample(data, body, stop, fmt == 4, dg)
        else:
            dg.skipped += 1
        pos = stop
    return dg


def _records(data, pos: int, stop: int, count: int):
    """(format, body start, body end) of `count` records between pos and stop."""
    if count * 8 > stop - pos:
        raise BadLength(f"{count} records cannot fit in {stop - pos} octets")
    for _ in range(count):
        if pos + 8 > stop:
            raise RecordOverrun(f"record header at {pos} past its sample")
        fmt, length = unpack_from(">II", data, pos)
        if length % 4 or pos + 8 + length > stop:
            raise RecordOverrun(f"record of {length} octets at {pos} past its sample (ends {stop})")
        yield fmt, pos + 8, pos + 8 + length
        pos += 8 + length


def _flow_sample(data, pos: int, stop: int, expanded: bool, dg: Datagram) -> Flow:
    if expanded:
        if stop - pos < 44:
            raise BadLength(f"expanded flow sample of {stop - pos} octets")
        seq, stype, sindex, rate, pool, drops, in_fmt, in_val, out_fmt, out_val, nrec = unpack_from(">11I", data, pos)
        source = (stype & 0xFF) << 24 | (sindex & 0xFFFFFF)
        in_if = in_val if in_fmt == 0 and in_val != UNKNOWN_IF else 0
        out_if = out_val if out_fmt == 0 and out_val != UNKNOWN_IF else 0
        pos += 44
    else:
        if stop - pos < 32:
            raise BadLength(f"flow sample of {stop - pos} octets")
        seq, source, rate, pool, drops, in_word, out_word, nrec = unpack_from(">8I", data, pos)
        in_if, out_if = _interface(in_word), _interface(out_word)
        pos += 32
    flow = Flow(seq, source, rate, pool, drops, in_if, out_if)
    for fmt, body, end in _records(data, pos, stop, nrec):
        size = end - body
        if fmt == 1:  # sampled_header
            if size < 16:
                raise RecordOverrun(f"raw packet header record of {size} octets")
            proto, frame, stripped, hlen = unpack_from(">IIII", data, body)
            if hlen > size - 16:
                raise RecordOverrun(f"header of {hlen} octets in a record of {size}")
            if hlen == 0 or frame > MAX_FRAME:
                raise BadSample(f"header of {hlen} octets, frame of {frame}")
            flow.header_protocol, flow.frame_length, flow.stripped = proto, frame, stripped
            flow.header = bytes(data[body + 16:body + 16 + min(hlen, MAX_HEADER)])
        elif fmt == 3 and size >= 32:  # sampled_ipv4
            length, proto = unpack_from(">II", data, body)
            sport, dport = unpack_from(">II", data, body + 16)
            flow.ip = (length, proto, bytes(data[body + 8:body + 12]), bytes(data[body + 12:body + 16]), sport, dport)
        elif fmt == 4 and size >= 56:  # sampled_ipv6
            length, proto = unpack_from(">II", data, body)
            sport, dport = unpack_from(">II", data, body + 40)
            flow.ip = (length, proto, bytes(data[body + 8:body + 24]), bytes(data[body + 24:body + 40]), sport, dport)
        elif fmt == 1001 and size >= 16:  # extended_switch
            flow.switch = unpack_from(">IIII", data, body)
        elif fmt == 1002 and size >= 12:  # extended_router
            atype = unpack_from(">I", data, body)[0]
            alen = 4 if atype == 1 else 16 if atype == 2 else 0
            if alen and size >= 12 + alen:
                masks = unpack_from(">II", data, body + 4 + alen)
                flow.router = (bytes(data[body + 4:body + 4 + alen]),) + masks
        else:
            dg.skipped += 1
    if flow.ip is not None:
        length = flow.ip[0]
        if length > MAX_FRAME or flow.ip[4] > 0xFFFF or flow.ip[5] > 0xFFFF or flow.ip[1] > 0xFF:
            raise BadSample(f"sampled IP record: length {length}, protocol {flow.ip[1]}, ports {flow.ip[4:]}")
    return flow


def _counter_sample(data, pos: int, stop: int, expanded: bool, dg: Datagram) -> None:
    if expanded:
        if stop - pos < 16:
            raise BadLength(f"expanded counter sample of {stop - pos} octets")
        seq, stype, sindex, nrec = unpack_from(">4I", data, pos)
        source = (stype & 0xFF) << 24 | (sindex & 0xFFFFFF)
        pos += 16
    else:
        if stop - pos < 12:
            raise BadLength(f"counter sample of {stop - pos} octets")
        seq, source, nrec = unpack_from(">3I", data, pos)
        pos += 12
    for fmt, body, end in _records(data, pos, stop, nrec):
        if fmt == 1 and end - body >= 88:  # if_counters
            index, itype, speed, direction, status, in_octets = unpack_from(">IIQIIQ", data, body)
            out_octets = unpack_from(">Q", data, body + 56)[0]
            dg.counters.append(Counters(seq, source, index, itype, speed, direction, status, in_octets, out_octets))
        else:
            dg.skipped += 1
