"""IPFIX packet sections (RFC 7133 §5; IANA IEs 315 dataLinkFrameSection, 313
ipHeaderPacketSection, 312 dataLinkFrameSize, 224 ipTotalLength, 410 sectionExportedOctets):
records that carry the sampled packet itself become flows through the sFlow header parser,
times the sampling rate the exporter announced in options data (PSAMP interval and space).
No exporter installable here sends them, so the test builds the datagrams; the truth is what
each sampled packet was built with, and tshark is the second decoder (its cflow dissector
takes the sections out, its own Ethernet/IP dissectors read them)."""

from __future__ import annotations

import pytest

from collector.netflow import encode as E
from collector.netflow import fields as F
from collector.netflow.batch import addr_to_str
from collector.netflow.decoder import Decoder
from tests.support import pcapgen as pg
from tests.support import tshark

T0 = 1_764_000_000
SRC = ("192.0.2.44", 4739)
INTERVAL, SPACE = 1, 99  # PSAMP: 1 packet selected, 99 skipped: 1 in 100
RATE = (INTERVAL + SPACE) // INTERVAL
OPTIONS = [(149, 4)], [(F.samplingPacketInterval, 4), (F.samplingPacketSpace, 4)]  # scope observationDomainId
FRAME_T = [(F.dataLinkFrameSection, F.VARLEN), (F.dataLinkFrameSize, 2), (F.ingressInterface, 4)]
IP_T = [(F.ipHeaderPacketSection, F.VARLEN), (F.ipTotalLength, 8)]
FIXED_T = [(F.dataLinkFrameSection, 64), (F.sectionExportedOctets, 2), (F.dataLinkFrameSize, 2)]


def packet(src, dst, proto, sport, dport, size):
    pay = bytes(size - (20 if ":" not in src else 40) - (20 if proto == pg.TCP else 8))
    l4 = (pg.tcp_segment(src, dst, sport, dport, 1, 0, pg.ACK, pay) if proto == pg.TCP
          else pg.udp_segment(src, dst, sport, dport, pay))
    return pg.ip_packet(src, dst, proto, l4)


# (sampled packet, frame or IP, truth: src, dst, proto, sport, dport, frame length, IP length)
PACKETS = [
    (pg.ether_frame(packet("10.0.0.5", "149.154.167.50", pg.TCP, 40000, 443, 1400)),
     ("10.0.0.5", "149.154.167.50", 6, 40000, 443, 1414, 1400)),
    (pg.ether_frame(packet("fd00::7", "2001:db8::9", pg.UDP, 6881, 51413, 300), vlans=[(0x8100, 12)]),
     ("fd00::7", "2001:db8::9", 17, 6881, 51413, 318, 300)),
    (pg.ether_frame(packet("10.0.0.6", "198.51.100.8", pg.UDP, 5060, 5060, 700)),
     ("10.0.0.6", "198.51.100.8", 17, 5060, 5060, 714, 700)),
]
ARP = pg.ether_frame(bytes(28), ethertype=0x0806)


def message(sets, seq=0):
    return E.ipfix_message(sets, export_time=T0, sequence=seq, domain=7)


def datagrams() -> list[bytes]:
    opts = [E.options_template_set(300, *OPTIONS, True), E.data_set(300, OPTIONS[0] + OPTIONS[1], [
        {149: 7, F.samplingPacketInterval: INTERVAL, F.samplingPacketSpace: SPACE}])]
    tmpl = E.template_set([(256, FRAME_T), (257, IP_T), (258, FIXED_T)], True)
    frames = E.data_set(256, FRAME_T, [{F.dataLinkFrameSection: f[:128], F.dataLinkFrameSize: len(f), F.ingressInterface: 3}
                                       for f, _ in PACKETS] + [{F.dataLinkFrameSection: ARP, F.dataLinkFrameSize: 60}])
    ips = E.data_set(257, IP_T, [{F.ipHeaderPacketSection: f[14 + (4 if i == 1 else 0):][:96], F.ipTotalLength: t[6]}
                                 for i, (f, t) in enumerate(PACKETS)])
    fixed = E.data_set(258, FIXED_T, [{F.dataLinkFrameSection: f[:64].ljust(64, b"\0"), F.sectionExportedOctets: min(64, len(f)),
                                       F.dataLinkFrameSize: len(f)} for f, _ in PACKETS])
    return [message([tmpl] + opts, 0), message([frames], 0), message([ips], 4), message([fixed], 7)]


def rows(batch) -> list[tuple]:
    order = batch.seq.argsort(kind="stable")
    return [(addr_to_str(*batch.src_addr[i].tolist()), addr_to_str(*batch.dst_addr[i].tolist()), int(batch.proto[i]),
             int(batch.src_port[i]), int(batch.dst_port[i]), int(batch.bytes[i]), int(batch.packets[i]),
             int(batch.sampling_rate[i])) for i in order.tolist()]


def test_sections_become_flows_times_the_announced_rate():
    dec = Decoder()
    batch = dec.decode([(d, SRC, float(T0)) for d in datagrams()])
    want = []
    for kind in ("frame", "ip", "fixed"):
        for _, (src, dst, proto, sport, dport, frame, ip) in PACKETS:
            size = ip if kind == "ip" else frame
            want.append((src, dst, proto, sport, dport, size * RATE, RATE, RATE))
    assert rows(batch) == want
    assert dec.stats.by_second("notices") == {"section-not-ip": 1}  # the ARP frame: no flow
    assert not dec.stats.errors


def test_the_bulk_and_per_datagram_paths_agree():
    grams = [(d, SRC, float(T0)) for d in datagrams()]
    assert rows(Decoder(bulk=True).decode(grams)) == rows(Decoder(bulk=False).decode(grams))


def test_a_template_of_only_a_section_is_not_refused():
    t = [(F.dataLinkFrameSection, F.VARLEN)]
    f, (src, dst, proto, sport, dport, _, ip) = PACKETS[0]
    grams = [message([E.template_set([(260, t)], True), E.data_set(260, t, [{F.dataLinkFrameSection: f}])])]
    batch = Decoder().decode([(d, SRC, float(T0)) for d in grams])
    assert rows(batch) == [(src, dst, proto, sport, dport, ip, 1, 1)]  # no size field: the IP length


@pytest.mark.skipif(not tshark.available(), reason="tshark not on PATH")
def test_tshark_reads_the_same_sections(tmp_path):
    grams = datagrams()
    pg.write_udp_pcap(tmp_path / "x.pcap", [(T0 + i, SRC[0], SRC[1], "127.0.0.1", 4739, d) for i, d in enumerate(grams)])
    out = tshark.fields(tmp_path / "x.pcap", ["cflow.data_link_frame_section", "cflow.data_link_frame_size"],
                        display_filter="frame.number == 2")
    cells = out[0]
    n = len(PACKETS) + 1
    sections, sizes = cells[:n], cells[n:]
    assert len(sections) == n and len(sizes) == n
    frames = [bytes.fromhex(s.replace(":", "")) for s in sections]
    with pg.PcapWriter(tmp_path / "sections.pcap", pg.LINKTYPE_ETHERNET) as w:
        for i, f in enumerate(frames):
            w.write(T0 + i, f)
    theirs = []
    for row, size in zip(tshark.fields(tmp_path / "sections.pcap", [
            "ip.src", "ipv6.src", "ip.dst", "ipv6.dst", "tcp.srcport", "udp.srcport", "tcp.dstport", "udp.dstport"]),
            sizes):
        if not any(row):
            continue  # not IP: imflow makes no flow of it either
        src, dst = row[0] or row[1], row[2] or row[3]
        proto = 6 if row[4] else 17
        theirs.append((src, dst, proto, int(row[4] or row[5]), int(row[6] or row[7]), int(size) * RATE, RATE, RATE))
    batch = Decoder().decode([(d, SRC, float(T0)) for d in grams[:2]])
    assert rows(batch) == theirs
