"""Sampled packet headers -> flow columns, many headers at once (docs/sflow.md).

Both sFlow's raw packet header record (sFlow v5 §5.2, `sampled_header`) and IPFIX/v9 packet
sections (IANA IEs 315 dataLinkFrameSection and 313 ipHeaderPacketSection, RFC 7133 §5) carry
the first octets of a sampled packet. This module reads them as columns: the headers of a
batch sit in one zero-padded octet matrix (one row each) and every step below (Ethernet,
802.1Q / 802.1ad / QinQ tags, an MPLS label stack, IPv4 or IPv6 with its extension headers,
then TCP / UDP / SCTP ports or the ICMP type and code) is a NumPy operation over all rows,
each row with its own offset. Rows of different layouts parse together; no Python per header.

A header is untrusted: octets past a row's own length are zeroed first and the matrix is
padded, so no read finds anything but the header; a field that would lie past the length makes
the row `TRUNCATED`; the tags, labels and extension headers walked are bounded (`MAX_TAGS`,
`MAX_LABELS`, `MAX_EXTENSIONS`), so nothing in a header can make the work per row grow.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from collector.netflow.batch import ADDR, V4_MAPPED

# header_protocol values of the sFlow raw packet header record (sFlow v5 §5.2)
ETHERNET = 1  # ISO 8802-3 / Ethernet II
IPV4 = 11
IPV6 = 12
MPLS = 13
IP_ANY = -1  # not sFlow's: IPv4 or IPv6 by the version nibble (IPFIX ipHeaderPacketSection, IE 313)

MAX_HEADER = 256  # octets of a header read; sFlow agents send 128 by default
MAX_TAGS = 4  # VLAN tags walked (802.1Q, 802.1ad, QinQ 0x9100)
MAX_LABELS = 8  # MPLS labels walked
MAX_EXTENSIONS = 4  # IPv6 extension headers walked

_VLAN_TYPES = (0x8100, 0x88A8, 0x9100, 0x9200)
_MPLS_TYPES = (0x8847, 0x8848)
_V6_EXT = (0, 43, 60)  # hop-by-hop, routing, destination options: (len + 1) * 8 octets
_V6_FRAG = 44
_PORTS = (6, 17, 132, 136)  # TCP, UDP, SCTP, UDP-Lite: source and destination port first
_ICMP = (1, 58)  # NetFlow's convention: type << 8 | code in the destination port

# Result codes of `Parsed.status`
OK = 0
TRUNCATED = 1  # the header ends before the IP addresses
NOT_IP = 2  # a layer 3 protocol other than IPv4 / IPv6 (ARP, LLDP, ...), or an unknown header protocol


@dataclass(slots=True)
class Parsed:
    """One row per header. Addresses are in the `ADDR` representation (IPv4 mapped)."""

    status: np.ndarray  # u1: OK, TRUNCATED, NOT_IP
    src_addr: np.ndarray
    dst_addr: np.ndarray
    src_port: np.ndarray  # u2
    dst_port: np.ndarray  # u2
    proto: np.ndarray  # u1
    ip_length: np.ndarray  # u4: IPv4 total length, or 40 + IPv6 payload length; 0 when unknown
    l3_offset: np.ndarray  # i8: where the IP header starts in the header (-1 when not IP)

    def __len__(self) -> int:
        return len(self.status)


def matrix(headers: list[bytes], width: int = MAX_HEADER) -> tuple[np.ndarray, np.ndarray]:
    """Headers -> (octet matrix of the widest header (at most `width`) + 64 zero columns, the
    lengths capped at `width`). The headers are padded and joined in one pass (C speed), then
    copied into the matrix at once."""
    n = len(headers)
    lengths = np.fromiter(map(len, headers), np.int64, n)
    widest = int(min(lengths.max(initial=0), width))
    lengths = np.minimum(lengths, widest)
    mat = np.zeros((n, widest + 64), np.uint8)
    if n and widest:
        joined = b"".join([h[:widest].ljust(widest, b"\0") for h in headers])
        mat[:, :widest] = np.frombuffer(joined, np.uint8).reshape(n, widest)
    return mat, lengths


def parse(mat: np.ndarray, lengths: np.ndarray, protocol: np.ndarray) -> Parsed:
    """Parse every row of `mat` (from `matrix`, or any octet matrix with 64 zero columns past
    the widest row): `lengths` octets valid per row, `protocol` the sFlow header_protocol of each
    row (ETHERNET, IPV4, IPV6 or MPLS) or IP_ANY."""
    n, width = mat.shape
    rows = np.arange(n)
    limit = width - 8  # reads at offsets past this are clamped (the row is truncated anyway)
    lengths = lengths.astype(np.int64)
    # what lies past a row's length (padding, or the rest of a datagram) is never read as the
    # header's: zeroed, in place
    mat *= np.arange(width) < lengths[:, None]
    protocol = np.asarray(protocol, np.int64)

    def u8(pos):
        return mat[rows, np.minimum(pos, limit)].astype(np.int64)

    def u16(pos):
        p = np.minimum(pos, limit)
        return (mat[rows, p].astype(np.int64) << 8) | mat[rows, p + 1]

    # layer 2: the EtherType after the MAC addresses, then any VLAN tags
    pos = np.where(protocol == ETHERNET, 14, 0)
    etype = np.where(protocol == ETHERNET, u16(np.full(n, 12)), 0)
    etype = np.where(protocol == IPV4, 0x0800, np.where(protocol == IPV6, 0x86DD, etype))
    etype = np.where(protocol == MPLS, 0x8847, etype)
    nibble = u8(np.zeros(n, np.int64)) >> 4
    etype = np.where(protocol == IP_ANY, np.where(nibble == 4, 0x0800, np.where(nibble == 6, 0x86DD, 0)), etype)
    for _ in range(MAX_TAGS):
        tagged = np.isin(etype, _VLAN_TYPES)
        if not tagged.any():
            break
        etype = np.where(tagged, u16(pos + 2), etype)
        pos = np.where(tagged, pos + 4, pos)
    # MPLS: walk the label stack to its bottom, then guess IPv4/IPv6 from the version nibble
    mpls = np.isin(etype, _MPLS_TYPES)
    if mpls.any():
        inside = mpls.copy()
        for _ in range(MAX_LABELS):
            bottom = (u8(pos + 2) & 1) == 1
            pos = np.where(inside, pos + 4, pos)
            inside &= ~bottom
            if not inside.any():
                break
        nibble = u8(pos) >> 4
        etype = np.where(mpls & ~inside, np.where(nibble == 4, 0x0800, np.where(nibble == 6, 0x86DD, 0)), etype)
        etype = np.where(inside, 0, etype)  # a stack deeper than MAX_LABELS: not read
    v4 = (etype == 0x0800) & ((u8(pos) >> 4) == 4)
    v6 = (etype == 0x86DD) & ((u8(pos) >> 4) == 6)
    ip = v4 | v6
    l3 = np.where(ip, pos, -1)
    need = np.where(v4, pos + 20, np.where(v6, pos + 40, 0))
    # not IP: truncated when the header ends before the layer 3 protocol could be told
    status = np.where(~ip, np.where(pos >= lengths, TRUNCATED, NOT_IP),
                      np.where(need > lengths, TRUNCATED, OK)).astype(np.uint8)
    good = status == OK

    # addresses: 16 octets from where each starts, into the ADDR halves
    src = np.zeros(n, ADDR)
    dst = np.zeros(n, ADDR)
    for col, off4, off6 in ((src, 12, 8), (dst, 16, 24)):
        start = np.where(v6, pos + off6, pos + off4)
        octets = np.ascontiguousarray(mat[rows[:, None], np.minimum(start, limit - 8)[:, None] + np.arange(16)])
        halves = octets.view(">u8").astype(np.uint64)  # (n, 2): the two big-endian halves
        hi, lo = halves[:, 0], halves[:, 1]
        a4 = (hi >> np.uint64(32)) | V4_MAPPED  # the first four octets are the IPv4 address
        col["hi"] = np.where(v6 & good, hi, 0)
        col["lo"] = np.where(v6 & good, lo, np.where(v4 & good, a4, 0))

    # IPv4: header length, protocol, fragment offset; IPv6: next header through extensions
    ihl = (u8(pos) & 0xF) * 4
    proto = np.where(v4, u8(pos + 9), np.where(v6, u8(pos + 6), 0))
    frag_later = np.where(v4, (u16(pos + 6) & 0x1FFF) != 0, False)
    ip_length = np.where(v4, u16(pos + 2), np.where(v6, 40 + u16(pos + 4), 0))
    l4 = np.where(v4, pos + ihl, pos + 40)
    bad_ihl = v4 & (ihl < 20)
    for _ in range(MAX_EXTENSIONS):
        ext = v6 & np.isin(proto, _V6_EXT) & (l4 + 8 <= lengths)
        frag = v6 & (proto == _V6_FRAG) & (l4 + 8 <= lengths)
        if not (ext.any() or frag.any()):
            break
        frag_later |= frag & ((u16(l4 + 2) & 0xFFF8) != 0)
        step = np.where(ext, (u8(l4 + 1) + 1) * 8, 8)
        proto = np.where(ext | frag, u8(l4), proto)
        l4 = np.where(ext | frag, l4 + step, l4)
    # an extension chain cut by the header: the protocol is not known
    unknown = v6 & (np.isin(proto, _V6_EXT) | (proto == _V6_FRAG))
    proto = np.where(unknown | ~good, 0, proto)

    ported = good & ~frag_later & ~bad_ihl & np.isin(proto, _PORTS) & (l4 + 4 <= lengths)
    icmp = good & ~frag_later & ~bad_ihl & np.isin(proto, _ICMP) & (l4 + 2 <= lengths)
    sport = np.where(ported, u16(l4), 0)
    dport = np.where(ported, u16(l4 + 2), np.where(icmp, u16(l4), 0))
    return Parsed(status, src, dst, sport.astype(np.uint16), dport.astype(np.uint16), proto.astype(np.uint8),
                  np.where(good, ip_length, 0).astype(np.uint32), np.where(good, l3, -1))
