"""The sampled-header parser (collector/sflow/headers.py) over headers of every layout it reads,
all parsed together as one batch. Truth is what each header was built with (tests.support.pcapgen
writes the packets); tshark's sflow dissector decodes the same headers inside sFlow datagrams
as a second reader."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from collector.netflow.batch import addr_to_str
from collector.netflow.decoder import Decoder
from collector.sflow import encode as E
from collector.sflow import headers as H
from tests.sflow import tsharksflow
from tests.support import pcapgen as pg
from tests.support import tshark

PAYLOAD = bytes(range(40))


def tcp(src, dst, sp, dp):
    return pg.ip_packet(src, dst, pg.TCP, pg.tcp_segment(src, dst, sp, dp, 1, 0, pg.ACK, PAYLOAD))


def udp(src, dst, sp, dp):
    return pg.ip_packet(src, dst, pg.UDP, pg.udp_segment(src, dst, sp, dp, PAYLOAD))


def mpls(labels: int, packet: bytes) -> bytes:
    stack = b"".join(struct.pack(">I", (100 + i) << 12 | (1 if i == labels - 1 else 0) << 8 | 64)
                     for i in range(labels))
    return stack + packet


V6_EXT = pg.ipv6_packet("2001:db8::1", "2001:db8::2", 0, pg.ipv6_ext_header(60, b"\1\2") + pg.ipv6_ext_header(
    pg.TCP, b"\3") + pg.tcp_segment("2001:db8::1", "2001:db8::2", 1111, 2222, 1, 0, pg.ACK, PAYLOAD))
V6_FRAG_FIRST = pg.ipv6_packet("2001:db8::1", "2001:db8::2", 44, pg.ipv6_fragment_header(
    pg.UDP, 0, True, 7) + pg.udp_segment("2001:db8::1", "2001:db8::2", 3333, 4444, PAYLOAD))
V6_FRAG_LATER = pg.ipv6_packet("2001:db8::1", "2001:db8::2", 44, pg.ipv6_fragment_header(
    pg.UDP, 1480, False, 7) + PAYLOAD)
V4_FRAG_LATER = pg.ipv4_packet("10.1.1.1", "10.2.2.2", pg.UDP, PAYLOAD, frag_offset=1480)
ICMP = pg.ipv4_packet("10.1.1.1", "10.2.2.2", 1, bytes([8, 0, 0, 0]) + PAYLOAD)
ICMP6 = pg.ipv6_packet("fd00::1", "fd00::2", 58, bytes([128, 0, 0, 0]) + PAYLOAD)
ARP = bytes(28)

# (name, header protocol, header, want: status, src, dst, proto, sport, dport, ip length)
CASES = [
    ("ethernet-ipv4-tcp", H.ETHERNET, pg.ether_frame(tcp("10.0.0.1", "192.0.2.9", 40000, 443)),
     (H.OK, "10.0.0.1", "192.0.2.9", 6, 40000, 443, 80)),
    ("ethernet-ipv6-udp", H.ETHERNET, pg.ether_frame(udp("fd00::1", "2001:db8::9", 5353, 53)),
     (H.OK, "fd00::1", "2001:db8::9", 17, 5353, 53, 88)),
    ("dot1q", H.ETHERNET, pg.ether_frame(tcp("10.0.0.2", "192.0.2.9", 40001, 5222), vlans=[(0x8100, 10)]),
     (H.OK, "10.0.0.2", "192.0.2.9", 6, 40001, 5222, 80)),
    ("qinq", H.ETHERNET, pg.ether_frame(udp("10.0.0.3", "192.0.2.9", 5060, 5060), vlans=[(0x88A8, 100), (0x8100, 10)]),
     (H.OK, "10.0.0.3", "192.0.2.9", 17, 5060, 5060, 68)),
    ("mpls-2-labels-ipv4", H.ETHERNET, pg.ether_frame(mpls(2, tcp("10.0.0.4", "192.0.2.9", 1863, 50000)), ethertype=0x8847),
     (H.OK, "10.0.0.4", "192.0.2.9", 6, 1863, 50000, 80)),
    ("vlan-mpls-ipv6", H.ETHERNET, pg.ether_frame(mpls(1, udp("fd00::4", "2001:db8::9", 6881, 6881)), ethertype=0x8847,
                                                  vlans=[(0x8100, 5)]),
     (H.OK, "fd00::4", "2001:db8::9", 17, 6881, 6881, 88)),
    ("ipv6-extension-headers", H.ETHERNET, pg.ether_frame(V6_EXT),
     (H.OK, "2001:db8::1", "2001:db8::2", 6, 1111, 2222, 40 + 8 + 8 + 20 + 40)),
    ("ipv6-first-fragment", H.ETHERNET, pg.ether_frame(V6_FRAG_FIRST),
     (H.OK, "2001:db8::1", "2001:db8::2", 17, 3333, 4444, 40 + 8 + 8 + 40)),
    ("ipv6-later-fragment", H.ETHERNET, pg.ether_frame(V6_FRAG_LATER),
     (H.OK, "2001:db8::1", "2001:db8::2", 17, 0, 0, 40 + 8 + 40)),
    ("ipv4-later-fragment", H.ETHERNET, pg.ether_frame(V4_FRAG_LATER),
     (H.OK, "10.1.1.1", "10.2.2.2", 17, 0, 0, 60)),
    ("icmp", H.ETHERNET, pg.ether_frame(ICMP), (H.OK, "10.1.1.1", "10.2.2.2", 1, 0, 8 << 8, 64)),
    ("icmpv6", H.ETHERNET, pg.ether_frame(ICMP6), (H.OK, "fd00::1", "fd00::2", 58, 0, 128 << 8, 84)),
    ("raw-ipv4", H.IPV4, tcp("10.0.0.5", "192.0.2.9", 40002, 80), (H.OK, "10.0.0.5", "192.0.2.9", 6, 40002, 80, 80)),
    ("raw-ipv6", H.IPV6, udp("fd00::5", "2001:db8::9", 40003, 443), (H.OK, "fd00::5", "2001:db8::9", 17, 40003, 443, 88)),
    ("mpls-protocol", H.MPLS, mpls(3, tcp("10.0.0.6", "192.0.2.9", 40004, 8074)),
     (H.OK, "10.0.0.6", "192.0.2.9", 6, 40004, 8074, 80)),
    ("cut-before-ports", H.ETHERNET, pg.ether_frame(tcp("10.0.0.7", "192.0.2.9", 40005, 443))[:14 + 20 + 2],
     (H.OK, "10.0.0.7", "192.0.2.9", 6, 0, 0, 80)),
    ("cut-in-addresses", H.ETHERNET, pg.ether_frame(tcp("10.0.0.8", "192.0.2.9", 40006, 443))[:14 + 18],
     (H.TRUNCATED, "::", "::", 0, 0, 0, 0)),
    ("arp", H.ETHERNET, pg.ether_frame(ARP, ethertype=0x0806), (H.NOT_IP, "::", "::", 0, 0, 0, 0)),
    ("unknown-protocol", 7, tcp("10.0.0.9", "192.0.2.9", 1, 2), (H.NOT_IP, "::", "::", 0, 0, 0, 0)),
    ("deeper-mpls-than-walked", H.ETHERNET, pg.ether_frame(mpls(H.MAX_LABELS + 1, tcp("10.0.0.1", "10.0.0.2", 1, 2)),
                                                           ethertype=0x8847), (H.NOT_IP, "::", "::", 0, 0, 0, 0)),
    ("empty", H.ETHERNET, b"", (H.TRUNCATED, "::", "::", 0, 0, 0, 0)),
    ("cut-in-the-ethertype", H.ETHERNET, pg.ether_frame(ARP, ethertype=0x0806)[:13], (H.TRUNCATED, "::", "::", 0, 0, 0, 0)),
]


def parsed_rows(cases) -> list[tuple]:
    mat, lengths = H.matrix([c[2] for c in cases])
    p = H.parse(mat, lengths, np.array([c[1] for c in cases]))
    return [(int(p.status[i]), addr_to_str(*p.src_addr[i].tolist()), addr_to_str(*p.dst_addr[i].tolist()),
             int(p.proto[i]), int(p.src_port[i]), int(p.dst_port[i]), int(p.ip_length[i])) for i in range(len(p))]


def test_every_layout_in_one_batch():
    assert dict(zip([c[0] for c in CASES], parsed_rows(CASES))) == {c[0]: c[3] for c in CASES}


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_each_layout_alone(case):
    assert parsed_rows([case]) == [case[3]]


def test_reads_stop_at_the_header_length():
    """A header cut anywhere never yields a field from past its end (the matrix row beyond it
    holds another, longer header's octets)."""
    full = pg.ether_frame(tcp("10.0.0.1", "192.0.2.9", 40000, 443))
    for cut in range(len(full)):
        mat, lengths = H.matrix([full[:cut], full])
        mat[0, cut:] = mat[1, cut:]  # garbage past the end: must not be read
        p = H.parse(mat, lengths, np.array([H.ETHERNET, H.ETHERNET]))
        status, src, _, _, sport, dport, _ = parsed_rows_of(p)[0]
        if cut < 14 + 20:
            assert status != H.OK
        elif cut < 14 + 20 + 4:
            assert (status, sport, dport) == (H.OK, 0, 0)
        else:
            assert (src, sport, dport) == ("10.0.0.1", 40000, 443)


def parsed_rows_of(p):
    return [(int(p.status[i]), addr_to_str(*p.src_addr[i].tolist()), addr_to_str(*p.dst_addr[i].tolist()),
             int(p.proto[i]), int(p.src_port[i]), int(p.dst_port[i]), int(p.ip_length[i])) for i in range(len(p))]


@pytest.mark.skipif(not tshark.available(), reason="tshark not on PATH")
def test_tshark_reads_the_same_headers(tmp_path):
    # fragments left out: tshark reassembles, so it shows no ports for a first fragment alone
    ok = [c for c in CASES if c[3][0] == H.OK and c[1] == H.ETHERNET and c[3][3] in (6, 17)
          and "fragment" not in c[0]]
    samples = [E.flow_sample([E.raw_header(c[2], len(c[2]) + 4)], seq=i + 1, rate=1) for i, c in enumerate(ok)]
    dgram = E.datagram(samples, seq=1)
    pg.write_udp_pcap(tmp_path / "h.pcap", [(1.0, "127.0.0.1", 40000, "127.0.0.1", 6343, dgram)])
    theirs = tsharksflow.decode(tmp_path / "h.pcap", 6343)
    batch = Decoder().decode([(dgram, ("127.0.0.1", 40000), 1.0)])
    mine = [{"rate": 1, "frame_length": int(batch.bytes[i]), "src_addr": addr_to_str(*batch.src_addr[i].tolist()),
             "dst_addr": addr_to_str(*batch.dst_addr[i].tolist()), "proto": int(batch.proto[i]),
             "src_port": int(batch.src_port[i]), "dst_port": int(batch.dst_port[i])} for i in range(len(batch))]
    assert len(theirs) == len(ok)
    for t in theirs:  # a header cut before the ports: tshark shows none, imflow's columns say 0
        t.setdefault("src_port", 0)
        t.setdefault("dst_port", 0)
    assert theirs == mine
