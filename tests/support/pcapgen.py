"""Write pcap files of known TCP/UDP sessions, with the flow records an exporter must produce.

The ground truth is computed from the packets we write, not from any exporter, so a test can
compare softflowd, tshark and imflow against it independently.

Byte counts follow what softflowd 1.1.0 counts (checked on this machine, see
tests/test_support.py): the length of the IP packet as captured, i.e. for IPv4 the total
length field and for IPv6 the 40-byte fixed header plus the payload length. Every packet is
kept at 46 bytes or more so that 60-byte minimum Ethernet frames never need padding, which
softflowd would count. Checksums (IPv4 header, TCP, UDP) are valid; softflowd does not check
them, but tshark and humans reading the files are happier.

Layout of a classic pcap file (the format tcpdump writes): a 24-byte file header (magic,
version 2.4, snaplen, link type) and per packet a 16-byte record header (seconds,
micro- or nanoseconds, captured length, original length) followed by the frame.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LINUX_SLL = 113
LINKTYPE_LINUX_SLL2 = 276

ETH_IPV4 = 0x0800
ETH_IPV6 = 0x86DD

TCP = 6
UDP = 17

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10

MIN_IP_LENGTH = 46  # Ethernet minimum payload: below it the frame is padded


# --- checksums and headers -------------------------------------------------------------


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of `data`."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _addr(text: str) -> bytes:
    return ipaddress.ip_address(text).packed


def _pseudo_header(src: str, dst: str, proto: int, length: int) -> bytes:
    s, d = _addr(src), _addr(dst)
    if len(s) == 4:
        return s + d + struct.pack("!BBH", 0, proto, length)
    return s + d + struct.pack("!IxxxB", length, proto)


def udp_segment(src: str, dst: str, sport: int, dport: int, payload: bytes) -> bytes:
    length = 8 + len(payload)
    raw = struct.pack("!HHHH", sport, dport, length, 0) + payload
    csum = checksum(_pseudo_header(src, dst, UDP, length) + raw) or 0xFFFF
    return raw[:6] + struct.pack("!H", csum) + raw[8:]


def tcp_segment(
    src: str, dst: str, sport: int, dport: int, seq: int, ack: int, flags: int, payload: bytes
) -> bytes:
    raw = struct.pack(
        "!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4, flags, 65535, 0, 0
    )
    raw += payload
    csum = checksum(_pseudo_header(src, dst, TCP, len(raw)) + raw)
    return raw[:16] + struct.pack("!H", csum) + raw[18:]


def ipv4_packet(
    src: str,
    dst: str,
    proto: int,
    payload: bytes,
    *,
    ident: int = 0,
    ttl: int = 64,
    dont_fragment: bool = False,
    more_fragments: bool = False,
    frag_offset: int = 0,
    options: bytes = b"",
) -> bytes:
    """An IPv4 packet. `frag_offset` is in bytes (a multiple of 8); `options` is padded to 4."""
    options += b"\0" * (-len(options) % 4)
    ihl = 5 + len(options) // 4
    flags = (0x4000 if dont_fragment else 0) | (0x2000 if more_fragments else 0)
    header = (
        struct.pack(
            "!BBHHHBBH4s4s",
            0x40 | ihl,
            0,
            ihl * 4 + len(payload),
            ident & 0xFFFF,
            flags | (frag_offset // 8),
            ttl,
            proto,
            0,
            _addr(src),
            _addr(dst),
        )
        + options
    )
    return header[:10] + struct.pack("!H", checksum(header)) + header[12:] + payload


def ipv6_packet(
    src: str, dst: str, next_header: int, payload: bytes, *, hop_limit: int = 64
) -> bytes:
    """An IPv6 packet; `payload` starts with the header `next_header` names (an extension
    header built with `ipv6_ext_header` / `ipv6_fragment_header`, or the transport header)."""
    return (
        struct.pack("!IHBB", 6 << 28, len(payload), next_header, hop_limit)
        + _addr(src)
        + _addr(dst)
        + payload
    )


def ipv6_ext_header(next_header: int, data: bytes = b"") -> bytes:
    """A hop-by-hop, routing or destination options header (RFC 8200 §4.3-4.6) whose body
    is `data` padded with zeros (Pad1/PadN-compatible) to a multiple of 8 octets."""
    body = data + b"\0" * (-(len(data) + 2) % 8)
    return struct.pack("!BB", next_header, (len(body) + 2) // 8 - 1) + body


def ipv6_fragment_header(next_header: int, offset: int, more: bool, ident: int) -> bytes:
    """An IPv6 fragment header (RFC 8200 §4.5); `offset` in bytes, a multiple of 8."""
    return struct.pack("!BBHI", next_header, 0, (offset // 8) << 3 | int(more), ident)


def ip_packet(src: str, dst: str, proto: int, l4: bytes, ident: int = 0) -> bytes:
    if ipaddress.ip_address(src).version == 4:
        return ipv4_packet(src, dst, proto, l4, ident=ident, dont_fragment=proto == TCP)
    return ipv6_packet(src, dst, proto, l4)


# --- link layers ---------------------------------------------------------------------------


def _ethertype(packet: bytes) -> int:
    return ETH_IPV6 if packet[0] >> 4 == 6 else ETH_IPV4


def ether_frame(
    packet: bytes,
    *,
    src_mac: bytes = b"\x02\0\0\0\0\x01",
    dst_mac: bytes = b"\x02\0\0\0\0\x02",
    vlans: Sequence[tuple[int, int]] = (),
    ethertype: int | None = None,
) -> bytes:
    """An Ethernet II frame; `vlans` is a list of (TPID, TCI), outermost first: each tag's
    TPID takes the EtherType's place and the real EtherType follows the last tag."""
    tags = b"".join(struct.pack("!HH", tpid, tci) for tpid, tci in vlans)
    inner = ethertype if ethertype is not None else _ethertype(packet)
    return dst_mac + src_mac + tags + struct.pack("!H", inner) + packet


def sll_frame(packet: bytes, packet_type: int = 0) -> bytes:
    """Linux cooked capture v1 (LINKTYPE_LINUX_SLL): 16-byte header, protocol last."""
    return (
        struct.pack("!HHH8sH", packet_type, 1, 6, b"\x02\0\0\0\0\x01", _ethertype(packet)) + packet
    )


def sll2_frame(packet: bytes, ifindex: int = 1, packet_type: int = 0) -> bytes:
    """Linux cooked capture v2 (LINKTYPE_LINUX_SLL2): 20-byte header, protocol first."""
    return (
        struct.pack(
            "!HHIHBB8s", _ethertype(packet), 0, ifindex, 1, packet_type, 6, b"\x02\0\0\0\0\x01"
        )
        + packet
    )


def null_frame(packet: bytes, byteorder: str = "<", af_inet6: int = 24) -> bytes:
    """BSD loopback (LINKTYPE_NULL): the address family in the capturing host's byte order."""
    family = 2 if packet[0] >> 4 == 4 else af_inet6
    return struct.pack(byteorder + "I", family) + packet


def link_frame(packet: bytes, linktype: int) -> bytes:
    if linktype == LINKTYPE_ETHERNET:
        return ether_frame(packet)
    if linktype == LINKTYPE_RAW:
        return packet
    if linktype == LINKTYPE_LINUX_SLL:
        return sll_frame(packet)
    if linktype == LINKTYPE_LINUX_SLL2:
        return sll2_frame(packet)
    if linktype == LINKTYPE_NULL:
        return null_frame(packet)
    raise ValueError(f"no frame builder for link type {linktype}")


# --- the file ------------------------------------------------------------------------------


class PcapWriter:
    """A classic pcap file. `nanosecond` selects the a1b23c4d magic; `byteorder` "<" or ">"."""

    def __init__(
        self,
        path,
        linktype: int = LINKTYPE_ETHERNET,
        *,
        nanosecond: bool = False,
        byteorder: str = "<",
        snaplen: int = 262144,
    ) -> None:
        self._file = open(path, "wb")
        self._bo = byteorder
        self._scale = 1_000_000_000 if nanosecond else 1_000_000
        magic = 0xA1B23C4D if nanosecond else 0xA1B2C3D4
        self._file.write(struct.pack(byteorder + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype))

    def write(self, time: float, frame: bytes, orig_len: int | None = None) -> None:
        """One record; `orig_len` larger than the frame makes it a snapped (truncated) capture."""
        ticks = round(time * self._scale)
        sec, frac = divmod(ticks, self._scale)
        self._file.write(
            struct.pack(self._bo + "IIII", sec, frac, len(frame), orig_len or len(frame)) + frame
        )

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> PcapWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def quantize(time: float, scale: int = 1_000_000) -> float:
    """The timestamp as a reader will see it after `PcapWriter.write` rounded it."""
    return round(time * scale) / scale


# --- sessions and their truth --------------------------------------------------------------


@dataclass
class Session:
    """One connection. `packets` are (direction, IP length): direction 0 is client to
    server, 1 server to client; the IP length is the whole IP packet (for IPv6 the 40-byte
    header included). Packet k is sent at `start + k * gap`."""

    client: str
    server: str
    cport: int
    sport: int
    proto: int
    packets: list[tuple[int, int]]
    start: float = 1_700_000_000.0
    gap: float = 0.05


@dataclass(frozen=True)
class FlowTruth:
    """One direction of one session: what a flow record must say."""

    src: str
    dst: str
    sport: int
    dport: int
    proto: int
    bytes: int
    packets: int
    first: float
    last: float

    @property
    def key(self) -> tuple[str, str, int, int, int]:
        return (self.src, self.dst, self.sport, self.dport, self.proto)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Direction:
    src: str
    dst: str
    sport: int
    dport: int
    seq: int
    started: bool = False
    sent: list[int] = field(default_factory=list)


def _session_packets(session: Session, index: int) -> Iterable[tuple[float, bytes, int]]:
    """(time, IP packet, direction) for every packet of the session."""
    if session.proto not in (TCP, UDP):
        raise ValueError(f"session {index}: proto must be 6 or 17, not {session.proto}")
    v6 = ipaddress.ip_address(session.client).version == 6
    ends = [
        _Direction(
            session.client, session.server, session.cport, session.sport, 1000 + index * 7919
        ),
        _Direction(
            session.server, session.client, session.sport, session.cport, 5000 + index * 104729
        ),
    ]
    last_of = {
        d: max((k for k, (dd, _) in enumerate(session.packets) if dd == d), default=-1)
        for d in (0, 1)
    }
    l4_header = 20 if session.proto == TCP else 8
    ip_header = 40 if v6 else 20
    for k, (direction, length) in enumerate(session.packets):
        if length < MIN_IP_LENGTH or length < ip_header + l4_header:
            raise ValueError(f"session {index} packet {k}: IP length {length} is too short")
        me, peer = ends[direction], ends[1 - direction]
        payload = bytes((k + i) & 0xFF for i in range(length - ip_header - l4_header))
        if session.proto == UDP:
            l4 = udp_segment(me.src, me.dst, me.sport, me.dport, payload)
        else:
            if not me.started:
                flags = SYN if direction == 0 else SYN | ACK
            elif k == last_of[direction]:
                flags = FIN | ACK
            else:
                flags = PSH | ACK
            ack = peer.seq if peer.started else 0
            l4 = tcp_segment(me.src, me.dst, me.sport, me.dport, me.seq, ack, flags, payload)
            me.seq += len(payload) + (1 if flags & (SYN | FIN) else 0)
        me.started = True
        yield (
            session.start + k * session.gap,
            ip_packet(me.src, me.dst, session.proto, l4, k),
            direction,
        )


def write_sessions(
    path, sessions: Sequence[Session], linktype: int = LINKTYPE_ETHERNET
) -> list[FlowTruth]:
    """Write the sessions' packets, interleaved in time order, and return one FlowTruth per
    direction that has packets, in order of first packet. Two sessions with the same 5-tuple
    make one flow, as softflowd makes of them in pcap mode (its timeouts never fire there)."""
    packets = []
    for index, session in enumerate(sessions):
        for time, packet, direction in _session_packets(session, index):
            packets.append((quantize(time), index, packet, direction))
    packets.sort(key=lambda p: (p[0], p[1]))
    truth: dict[tuple, FlowTruth] = {}
    with PcapWriter(path, linktype) as out:
        for time, index, packet, direction in packets:
            out.write(time, link_frame(packet, linktype))
            s = sessions[index]
            key = (
                (s.client, s.server, s.cport, s.sport, s.proto)
                if direction == 0
                else (s.server, s.client, s.sport, s.cport, s.proto)
            )
            old = truth.get(key)
            if old is None:
                truth[key] = FlowTruth(*key, bytes=len(packet), packets=1, first=time, last=time)
            else:
                truth[key] = FlowTruth(
                    *key,
                    bytes=old.bytes + len(packet),
                    packets=old.packets + 1,
                    first=old.first,
                    last=time,
                )
    return list(truth.values())


Datagram = tuple[float, str, int, str, int, bytes]


def write_udp_pcap(
    path,
    datagrams: Iterable[Datagram],
    linktype: int = LINKTYPE_ETHERNET,
    *,
    nanosecond: bool = False,
    byteorder: str = "<",
) -> None:
    """Write UDP datagrams (time, src, sport, dst, dport, payload), one frame each, over
    IPv4 or IPv6 by the source address, framed for `linktype`."""
    with PcapWriter(path, linktype, nanosecond=nanosecond, byteorder=byteorder) as out:
        for ident, (time, src, sport, dst, dport, payload) in enumerate(datagrams):
            packet = ip_packet(src, dst, UDP, udp_segment(src, dst, sport, dport, payload), ident)
            out.write(time, link_frame(packet, linktype))


def biflows(truths: Iterable[FlowTruth]) -> list[dict]:
    """The RFC 5103 records softflowd `-b` makes of the per-direction truth: one per
    session, oriented with the numerically lower address as source (lower port if the
    addresses are equal), whoever opened the connection; the other direction's counts go
    to reverse_bytes / reverse_packets. Keys as in tests.support.tshark.decode."""
    out: dict[tuple, dict] = {}
    for t in truths:
        a, b = ipaddress.ip_address(t.src), ipaddress.ip_address(t.dst)
        forward = (int(a), t.sport) <= (int(b), t.dport)
        key = (
            (t.src, t.dst, t.sport, t.dport, t.proto)
            if forward
            else (t.dst, t.src, t.dport, t.sport, t.proto)
        )
        rec = out.setdefault(
            key,
            dict(
                src_addr=key[0],
                dst_addr=key[1],
                src_port=key[2],
                dst_port=key[3],
                proto=key[4],
                bytes=0,
                packets=0,
                reverse_bytes=0,
                reverse_packets=0,
            ),
        )
        prefix = "" if forward else "reverse_"
        rec[prefix + "bytes"] += t.bytes
        rec[prefix + "packets"] += t.packets
    return list(out.values())


# --- pcapng (draft-ietf-opsawg-pcapng), for reader tests -------------------------------------


def pcapng_block(btype: int, body: bytes, bo: str = "<") -> bytes:
    body += b"\0" * (-len(body) % 4)
    length = 12 + len(body)
    return struct.pack(bo + "II", btype, length) + body + struct.pack(bo + "I", length)


def pcapng_options(options: Sequence[tuple[int, bytes]], bo: str = "<") -> bytes:
    out = b"".join(
        struct.pack(bo + "HH", code, len(v)) + v + b"\0" * (-len(v) % 4) for code, v in options
    )
    return out + struct.pack(bo + "HH", 0, 0) if options else b""


def pcapng_shb(bo: str = "<", options: Sequence[tuple[int, bytes]] = ()) -> bytes:
    return pcapng_block(
        0x0A0D0D0A, struct.pack(bo + "IHHq", 0x1A2B3C4D, 1, 0, -1) + pcapng_options(options, bo), bo
    )


def pcapng_idb(
    linktype: int,
    bo: str = "<",
    *,
    snaplen: int = 0,
    tsresol: int | None = None,
    tsoffset: int | None = None,
) -> bytes:
    """`tsresol` is the raw if_tsresol byte: n for 10^-n s, 0x80 | n for 2^-n s."""
    options = []
    if tsresol is not None:
        options.append((9, bytes([tsresol])))
    if tsoffset is not None:
        options.append((14, struct.pack(bo + "q", tsoffset)))
    return pcapng_block(
        1, struct.pack(bo + "HHI", linktype, 0, snaplen) + pcapng_options(options, bo), bo
    )


def pcapng_epb(
    interface: int, ticks: int, frame: bytes, bo: str = "<", orig_len: int | None = None
) -> bytes:
    head = struct.pack(
        bo + "IIIII", interface, ticks >> 32, ticks & 0xFFFFFFFF, len(frame), orig_len or len(frame)
    )
    return pcapng_block(6, head + frame, bo)


def pcapng_spb(frame: bytes, bo: str = "<", orig_len: int | None = None) -> bytes:
    return pcapng_block(3, struct.pack(bo + "I", orig_len or len(frame)) + frame, bo)
