"""collector.tools.capture: pcap / pcapng reading, link layers, IP, fragments, and failure modes.

Ground truth is what tests.support.pcapgen wrote; real tools (editcap, dumpcap, tshark)
provide files and readings that do not come from our own writer."""

from __future__ import annotations

import gzip
import random
import shutil
import socket
import struct
import subprocess
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.tools.capture import Capture, CaptureError, CaptureStats, Datagram, read_capture
from tests.support import pcapgen as pg
from tests.support import tshark

T0 = 1_700_000_000.0

DATAGRAMS = [
    (T0 + 0.000001, "192.0.2.1", 40000, "127.0.0.1", 2055, b"hello, collector"),
    (T0 + 1.5, "2001:db8::1", 40001, "2001:db8::2", 4739, bytes(range(256)) * 4),
    (T0 + 2.25, "10.0.0.1", 1, "10.0.0.2", 65535, b"x" * 18),
    (T0 + 3.0, "::1", 9995, "::1", 9996, b""),
]


def accounted(stats: CaptureStats) -> bool:
    return stats.frames == stats.datagrams - stats.reassembled + stats.fragments + sum(
        stats.skipped.values()
    )


def read_all(path) -> tuple[list[tuple], CaptureStats]:
    datagrams, stats = read_capture(path)
    rows = [(d.time, d.src, d.sport, d.dst, d.dport, d.payload) for d in datagrams]
    assert accounted(stats), stats
    return rows, stats


def quantized(rows, scale=1_000_000):
    return [(pg.quantize(t, scale), *rest) for t, *rest in rows]


def write_frames(path, linktype, frames, **kw):
    with pg.PcapWriter(path, linktype, **kw) as out:
        for t, frame, *orig in frames:
            out.write(t, frame, *orig)


def udp_packet(src, dst, sport, dport, payload, **kw):
    segment = pg.udp_segment(src, dst, sport, dport, payload)
    if ":" in src:
        return pg.ipv6_packet(src, dst, pg.UDP, segment)
    return pg.ipv4_packet(src, dst, pg.UDP, segment, **kw)


# --- formats and link types -------------------------------------------------------------------


@pytest.mark.parametrize(
    "linktype",
    [
        pg.LINKTYPE_ETHERNET,
        pg.LINKTYPE_RAW,
        pg.LINKTYPE_LINUX_SLL,
        pg.LINKTYPE_LINUX_SLL2,
        pg.LINKTYPE_NULL,
    ],
)
@pytest.mark.parametrize("byteorder", ["<", ">"])
@pytest.mark.parametrize("nanosecond", [False, True])
def test_classic_pcap_round_trip(tmp_path, linktype, byteorder, nanosecond):
    path = tmp_path / "x.pcap"
    pg.write_udp_pcap(path, DATAGRAMS, linktype, nanosecond=nanosecond, byteorder=byteorder)
    rows, stats = read_all(path)
    assert rows == quantized(DATAGRAMS, 1_000_000_000 if nanosecond else 1_000_000)
    assert stats.frames == stats.datagrams == len(DATAGRAMS) and not stats.skipped


def test_datagram_is_frozen_value():
    d = Datagram(1.0, "192.0.2.1", 1, "192.0.2.2", 2, b"x")
    with pytest.raises(AttributeError):
        d.sport = 3  # type: ignore[misc]
    assert d == Datagram(1.0, "192.0.2.1", 1, "192.0.2.2", 2, b"x")


@pytest.mark.parametrize("linktype", [12, 14, 228, 229])
def test_other_raw_ip_link_types(tmp_path, linktype):
    want = [d for d in DATAGRAMS if (":" in d[1]) == (linktype == 229) or linktype in (12, 14)]
    frames = [(t, udp_packet(s, d, sp, dp, p)) for t, s, sp, d, dp, p in want]
    write_frames(tmp_path / "x.pcap", linktype, frames)
    assert read_all(tmp_path / "x.pcap")[0] == quantized(want)


@pytest.mark.parametrize("byteorder", ["<", ">"])
@pytest.mark.parametrize("af_inet6", [10, 24, 28, 30])
def test_bsd_loopback_family_in_either_byte_order(tmp_path, byteorder, af_inet6):
    frames = [
        (t, pg.null_frame(udp_packet(s, d, sp, dp, p), byteorder, af_inet6))
        for t, s, sp, d, dp, p in DATAGRAMS
    ]
    write_frames(tmp_path / "x.pcap", pg.LINKTYPE_NULL, frames)
    assert read_all(tmp_path / "x.pcap")[0] == quantized(DATAGRAMS)
    # LINKTYPE_LOOP (108) is the same header, always in network byte order.
    frames = [
        (t, pg.null_frame(udp_packet(s, d, sp, dp, p), ">", af_inet6))
        for t, s, sp, d, dp, p in DATAGRAMS
    ]
    write_frames(tmp_path / "y.pcap", 108, frames)
    assert read_all(tmp_path / "y.pcap")[0] == quantized(DATAGRAMS)


@pytest.mark.parametrize(
    "vlans",
    [
        [(0x8100, 100)],
        [(0x88A8, 10), (0x8100, 20)],
        [(0x9100, 1), (0x8100, 2)],
        [(0x8100, 1), (0x8100, 2), (0x8100, 3)],
    ],
)
def test_vlan_tags(tmp_path, vlans):
    frames = [
        (t, pg.ether_frame(udp_packet(s, d, sp, dp, p), vlans=vlans))
        for t, s, sp, d, dp, p in DATAGRAMS
    ]
    write_frames(tmp_path / "x.pcap", pg.LINKTYPE_ETHERNET, frames)
    assert read_all(tmp_path / "x.pcap")[0] == quantized(DATAGRAMS)


def test_ethernet_padding_and_fcs_are_not_payload(tmp_path):
    packet = udp_packet("192.0.2.1", "192.0.2.2", 1000, 2055, b"ab")  # 30 bytes of IP
    frame = pg.ether_frame(packet)
    padded = frame + b"\0" * (60 - len(frame))
    fcs_linktype = 1 | 0x04000000 | (2 << 28)  # frames end in a 4-byte FCS
    write_frames(tmp_path / "x.pcap", pg.LINKTYPE_ETHERNET, [(T0, padded)])
    write_frames(tmp_path / "y.pcap", fcs_linktype, [(T0, padded + b"\xde\xad\xbe\xef")])
    for name in ("x.pcap", "y.pcap"):
        rows, _ = read_all(tmp_path / name)
        assert [r[-1] for r in rows] == [b"ab"]


def test_ipv4_options(tmp_path):
    segment = pg.udp_segment("192.0.2.1", "192.0.2.2", 5, 6, b"opt")
    packet = pg.ipv4_packet(
        "192.0.2.1", "192.0.2.2", pg.UDP, segment, options=b"\x94\x04\0\0" + b"\x01" * 8
    )
    write_frames(tmp_path / "x.pcap", pg.LINKTYPE_RAW, [(T0, packet)])
    assert read_all(tmp_path / "x.pcap")[0] == [(T0, "192.0.2.1", 5, "192.0.2.2", 6, b"opt")]


def _ah(next_header: int) -> bytes:
    icv = b"\xaa" * 12
    return struct.pack("!BBHII", next_header, (12 + len(icv)) // 4 - 2, 0, 0x100, 1) + icv


def test_ipv6_extension_headers(tmp_path):
    src, dst = "2001:db8::1", "2001:db8::2"
    udp = pg.udp_segment(src, dst, 7, 8, b"ext")
    chain = (
        pg.ipv6_ext_header(43, b"\x05\x02\0\0")  # hop-by-hop (router alert) -> routing
        + pg.ipv6_ext_header(60, b"\0\0\0\0\0\0")  # routing -> destination options
        + pg.ipv6_ext_header(51, b"")  # destination options -> AH
        + _ah(17)
        + udp
    )
    atomic = pg.ipv6_fragment_header(17, 0, False, 99) + udp  # RFC 6946 atomic fragment
    frames = [
        (T0, pg.ipv6_packet(src, dst, 0, chain)),
        (T0 + 1, pg.ipv6_packet(src, dst, 44, atomic)),
    ]
    write_frames(tmp_path / "x.pcap", pg.LINKTYPE_RAW, frames)
    rows, stats = read_all(tmp_path / "x.pcap")
    assert rows == [(T0, src, 7, dst, 8, b"ext"), (T0 + 1, src, 7, dst, 8, b"ext")]
    assert stats.reassembled == 0


# --- what is skipped, and why ----------------------------------------------------------------


def test_skip_reasons(tmp_path):
    src, dst = "192.0.2.1", "192.0.2.2"
    good = udp_packet(src, dst, 1, 2, b"payload!" * 4)
    tcp = pg.ipv4_packet(src, dst, pg.TCP, pg.tcp_segment(src, dst, 1, 2, 0, 0, pg.SYN, b"\0" * 10))
    icmp6 = pg.ipv6_packet("2001:db8::1", "2001:db8::2", 58, b"\x80\0\0\0\0\0\0\0" + b"\0" * 8)
    bad_version = bytes([0x55]) + good[1:]
    short_ihl = bytes([0x44]) + good[1:]
    frames = [
        (T0, pg.ether_frame(good)),
        (T0, pg.ether_frame(tcp)),  # not-udp
        (T0, pg.ether_frame(icmp6)),  # not-udp
        (T0, pg.ether_frame(b"\0" * 28, ethertype=0x0806)),  # ARP: not-ip
        (T0, pg.ether_frame(b"\xaa\xaa\x03" + b"\0" * 43, ethertype=46)),  # 802.3 length: not-ip
        (T0, pg.ether_frame(bad_version, ethertype=0x0800)),  # malformed
        (T0, pg.ether_frame(short_ihl)),  # malformed
        (T0, pg.ether_frame(good)[: 14 + 12]),  # cut inside the IP header: truncated
        (T0, pg.ether_frame(good)[: 14 + 20 + 5]),  # cut inside the UDP header: truncated
        (T0, b"\x02\0\0"),  # shorter than an Ethernet header: truncated
    ]
    write_frames(tmp_path / "x.pcap", pg.LINKTYPE_ETHERNET, frames)
    rows, stats = read_all(tmp_path / "x.pcap")
    assert len(rows) == 1
    assert stats.skipped == {"not-udp": 2, "not-ip": 2, "malformed": 2, "truncated": 3}
    write_frames(tmp_path / "y.pcap", 147, [(T0, good)])  # LINKTYPE_USER0
    assert read_all(tmp_path / "y.pcap")[1].skipped == {"unknown-linktype": 1}


def test_udp_length_is_trusted_up_to_what_was_captured(tmp_path):
    src, dst = "192.0.2.1", "192.0.2.2"
    payload = bytes(range(200))
    frame = pg.ether_frame(udp_packet(src, dst, 1, 2, payload))
    snapped = frame[:100]  # snaplen 100: the record's original length says 242
    # UDP length larger than the IP payload says (a lying exporter, not a snap)
    seg = bytearray(pg.udp_segment(src, dst, 1, 2, b"abcd"))
    seg[4:6] = struct.pack("!H", 500)
    lying = pg.ipv4_packet(src, dst, pg.UDP, bytes(seg))
    # UDP length smaller than the IP payload: the rest is padding, not payload
    seg = bytearray(pg.udp_segment(src, dst, 1, 2, b"abcd" + b"\0" * 20))
    seg[4:6] = struct.pack("!H", 12)
    padded = pg.ipv4_packet(src, dst, pg.UDP, bytes(seg))
    write_frames(
        tmp_path / "x.pcap",
        pg.LINKTYPE_ETHERNET,
        [(T0, snapped, len(frame)), (T0, pg.ether_frame(lying)), (T0, pg.ether_frame(padded))],
    )
    rows, stats = read_all(tmp_path / "x.pcap")
    assert [r[-1] for r in rows] == [payload[: 100 - 14 - 20 - 8], b"abcd", b"abcd"]
    assert stats.truncated == 2 and not stats.skipped


# --- fragments -------------------------------------------------------------------------------


def v4_fragments(src, dst, sport, dport, payload, ident, size=1480, proto=pg.UDP):
    whole = pg.udp_segment(src, dst, sport, dport, payload)
    return [
        pg.ipv4_packet(
            src,
            dst,
            proto,
            whole[off : off + size],
            ident=ident,
            more_fragments=off + size < len(whole),
            frag_offset=off,
        )
        for off in range(0, len(whole), size)
    ]


def v6_fragments(src, dst, sport, dport, payload, ident, size=1232, dest_opts=True):
    fragmentable = pg.udp_segment(src, dst, sport, dport, payload)
    first = pg.UDP
    if dest_opts:
        fragmentable = pg.ipv6_ext_header(pg.UDP, b"\x01\x02\0\0") + fragmentable
        first = 60
    return [
        pg.ipv6_packet(
            src,
            dst,
            0,
            pg.ipv6_ext_header(44, b"")  # hop-by-hop before the fragment header
            + pg.ipv6_fragment_header(first, off, off + size < len(fragmentable), ident)
            + fragmentable[off : off + size],
        )
        for off in range(0, len(fragmentable), size)
    ]


def test_ipv4_reassembly_out_of_order(tmp_path):
    payload = bytes(random.Random(1).randrange(256) for _ in range(4000))
    frags = v4_fragments("192.0.2.1", "192.0.2.2", 4000, 2055, payload, ident=77)
    assert len(frags) == 3
    other = udp_packet("192.0.2.9", "192.0.2.2", 1, 2055, b"between")
    order = [frags[2], other, frags[0], frags[1]]
    write_frames(tmp_path / "x.pcap", pg.LINKTYPE_RAW, [(T0 + i, f) for i, f in enumerate(order)])
    rows, stats = read_all(tmp_path / "x.pcap")
    assert rows == [
        (T0 + 1, "192.0.2.9", 1, "192.0.2.2", 2055, b"between"),
        (T0 + 3, "192.0.2.1", 4000, "192.0.2.2", 2055, payload),
    ]
    assert (stats.reassembled, stats.fragments, stats.skipped) == (1, 3, {})


def test_ipv6_reassembly_with_extension_headers(tmp_path):
    payload = bytes(range(256)) * 12
    for dest_opts in (True, False):
        frags = v6_fragments(
            "2001:db8::1", "2001:db8::2", 4000, 4739, payload, ident=0xDEADBEEF, dest_opts=dest_opts
        )
        write_frames(
            tmp_path / "x.pcap",
            pg.LINKTYPE_ETHERNET,
            [(T0 + i, pg.ether_frame(f)) for i, f in enumerate(reversed(frags))],
        )
        rows, stats = read_all(tmp_path / "x.pcap")
        assert rows == [(T0 + len(frags) - 1, "2001:db8::1", 4000, "2001:db8::2", 4739, payload)]
        assert (stats.reassembled, stats.fragments) == (1, len(frags))


def test_fragments_that_never_complete_are_counted(tmp_path):
    a = v4_fragments("192.0.2.1", "192.0.2.2", 1, 2, b"a" * 3000, ident=1)
    b = v4_fragments("192.0.2.1", "192.0.2.2", 1, 2, b"b" * 3000, ident=2)
    c = v6_fragments("2001:db8::1", "2001:db8::2", 1, 2, b"c" * 3000, ident=3)
    tcp = pg.ipv4_packet("192.0.2.1", "192.0.2.2", pg.TCP, b"\0" * 40, ident=4, more_fragments=True)
    frames = [a[0], a[2], b[1], c[0], tcp]
    write_frames(tmp_path / "x.pcap", pg.LINKTYPE_RAW, [(T0, f) for f in frames])
    rows, stats = read_all(tmp_path / "x.pcap")
    assert rows == [] and stats.skipped == {"fragment": 4, "not-udp": 1}


def test_overlapping_fragments_are_dropped(tmp_path):
    whole = pg.udp_segment("192.0.2.1", "192.0.2.2", 1, 2, b"z" * 2000)
    first = pg.ipv4_packet(
        "192.0.2.1", "192.0.2.2", pg.UDP, whole[:1480], ident=5, more_fragments=True
    )
    evil = pg.ipv4_packet(
        "192.0.2.1", "192.0.2.2", pg.UDP, b"X" * 1480, ident=5, more_fragments=True, frag_offset=8
    )
    last = pg.ipv4_packet("192.0.2.1", "192.0.2.2", pg.UDP, whole[1480:], ident=5, frag_offset=1480)
    write_frames(tmp_path / "x.pcap", pg.LINKTYPE_RAW, [(T0, first), (T0, evil), (T0, last)])
    rows, stats = read_all(tmp_path / "x.pcap")
    assert rows == [] and stats.skipped == {"fragment": 3}


def test_fragments_age_out(tmp_path):
    a = v4_fragments("192.0.2.1", "192.0.2.2", 1, 2, b"a" * 2000, ident=1)
    b = v4_fragments("192.0.2.3", "192.0.2.2", 1, 2, b"b" * 2000, ident=1)
    frames = [(T0, a[0]), (T0 + 40, b[0]), (T0 + 40, b[1]), (T0 + 41, a[1])]
    write_frames(tmp_path / "x.pcap", pg.LINKTYPE_RAW, frames)
    rows, stats = read_all(tmp_path / "x.pcap")
    assert [r[1] for r in rows] == ["192.0.2.3"]
    assert stats.skipped == {"fragment": 2}


# --- pcapng ----------------------------------------------------------------------------------


def test_pcapng_sections_interfaces_and_resolutions(tmp_path):
    d4 = udp_packet("192.0.2.1", "192.0.2.2", 10, 20, b"four")
    d6 = udp_packet("2001:db8::1", "2001:db8::2", 30, 40, b"six")
    le = [
        pg.pcapng_shb("<", options=[(4, b"imflow tests")]),
        pg.pcapng_idb(pg.LINKTYPE_ETHERNET, "<"),  # default resolution: microseconds
        pg.pcapng_idb(pg.LINKTYPE_RAW, "<", tsresol=9),  # nanoseconds
        pg.pcapng_block(4, b"\0\0\0\0", "<"),  # name resolution block: skipped
        pg.pcapng_epb(0, 1_700_000_000_250_000, pg.ether_frame(d4), "<"),
        pg.pcapng_epb(1, 1_700_000_001_123_456_789, d6, "<"),
        pg.pcapng_spb(pg.ether_frame(d6), "<"),  # no timestamp: the previous one
        pg.pcapng_block(5, struct.pack("<III", 0, 0, 0), "<"),  # interface statistics
        pg.pcapng_block(0x40000BAD, b"custom", "<"),
    ]
    be = [
        pg.pcapng_shb(">"),  # a new section: interface ids start over
        pg.pcapng_idb(pg.LINKTYPE_LINUX_SLL2, ">", tsresol=0x80 | 20, tsoffset=1_000_000_000),
        pg.pcapng_epb(0, 700_000_002 << 20 | 1 << 19, pg.sll2_frame(d4), ">"),  # +0.5 s
    ]
    (tmp_path / "x.pcapng").write_bytes(b"".join(le + be))
    rows, stats = read_all(tmp_path / "x.pcapng")
    assert rows == [
        (1_700_000_000.25, "192.0.2.1", 10, "192.0.2.2", 20, b"four"),
        (1_700_000_001.123456789, "2001:db8::1", 30, "2001:db8::2", 40, b"six"),
        (1_700_000_001.123456789, "2001:db8::1", 30, "2001:db8::2", 40, b"six"),
        (1_700_000_002.5, "192.0.2.1", 10, "192.0.2.2", 20, b"four"),
    ]
    assert stats.frames == 4


def test_pcapng_simple_packet_block_is_cut_to_snaplen(tmp_path):
    frame = pg.ether_frame(udp_packet("192.0.2.1", "192.0.2.2", 1, 2, b"0123456789"))
    blocks = [
        pg.pcapng_shb(),
        pg.pcapng_idb(pg.LINKTYPE_ETHERNET, snaplen=len(frame) - 4),
        pg.pcapng_spb(frame),
    ]
    (tmp_path / "x.pcapng").write_bytes(b"".join(blocks))
    rows, stats = read_all(tmp_path / "x.pcapng")
    assert rows[0][-1] == b"012345" and stats.truncated == 1


# --- broken files ----------------------------------------------------------------------------


def small_pcap(tmp_path) -> bytes:
    pg.write_udp_pcap(tmp_path / "small.pcap", DATAGRAMS[:3])
    return (tmp_path / "small.pcap").read_bytes()


def small_pcapng() -> bytes:
    d = udp_packet("192.0.2.1", "192.0.2.2", 10, 20, b"abc")
    return b"".join(
        [
            pg.pcapng_shb(),
            pg.pcapng_idb(1),
            pg.pcapng_epb(0, 1, pg.ether_frame(d)),
            pg.pcapng_spb(pg.ether_frame(d)),
        ]
    )


def read_or_fail(path):
    """Read everything; return rows, or the CaptureError. Anything else propagates."""
    try:
        return read_all(path)[0]
    except CaptureError as e:
        return e


@pytest.mark.parametrize(
    "content, words",
    [
        (b"", "empty"),
        (b"<!DOCTYPE html><html>", "not a pcap or pcapng"),
        (b"\xd4\xc3\xb2\xa1\x02\x00", "truncated"),
        (struct.pack("<IHHiIII", 0xA1B2C3D4, 9, 4, 0, 0, 65535, 1), "unsupported pcap version 9"),
        (
            struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
            + struct.pack("<IIII", 0, 0, 0xFFFFFFF0, 60),
            "corrupt",
        ),
        (pg.pcapng_shb()[:8] + b"\x01\x02\x03\x04" + b"\0" * 16, "byte-order magic"),
        (pg.pcapng_shb() + struct.pack("<II", 6, 13) + b"\0" * 5, "corrupt pcapng block"),
        (pg.pcapng_shb() + pg.pcapng_epb(3, 0, b"\0" * 20), "names interface 3"),
        (pg.pcapng_shb() + pg.pcapng_idb(1)[:-4] + b"\0\0\0\0", "trailing length"),
        (pg.pcapng_shb() + pg.pcapng_block(6, b"\0" * 8), "too short"),
        (pg.pcapng_shb() + pg.pcapng_spb(b"\0" * 20), "before any interface"),
    ],
)
def test_broken_files_raise_capture_error_naming_the_file(tmp_path, content, words):
    path = tmp_path / "broken.cap"
    path.write_bytes(content)
    result = read_or_fail(path)
    assert isinstance(result, CaptureError), result
    assert str(path) in str(result) and words in str(result)


def test_missing_file_and_directory(tmp_path):
    for path in (tmp_path / "nope.pcap", tmp_path):
        with pytest.raises(CaptureError, match="cannot open"):
            read_capture(path)


def test_every_prefix_reads_or_fails_cleanly(tmp_path):
    for name, whole in (("p.pcap", small_pcap(tmp_path)), ("p.pcapng", small_pcapng())):
        complete = read_all_bytes(tmp_path / name, whole)
        for cut in range(len(whole)):
            result = read_or_fail_bytes(tmp_path / name, whole[:cut])
            if isinstance(result, CaptureError):
                assert (
                    "truncated" in str(result) or "empty" in str(result) or "corrupt" in str(result)
                )
            else:  # a cut at a record boundary is a shorter, valid file
                assert result == complete[: len(result)]


def read_all_bytes(path, content):
    path.write_bytes(content)
    return read_all(path)[0]


def read_or_fail_bytes(path, content):
    path.write_bytes(content)
    return read_or_fail(path)


def test_gzipped_capture(tmp_path):
    whole = small_pcap(tmp_path)
    (tmp_path / "x.pcap.gz").write_bytes(gzip.compress(whole))
    assert read_all(tmp_path / "x.pcap.gz")[0] == quantized(DATAGRAMS[:3])
    (tmp_path / "y.pcap.gz").write_bytes(gzip.compress(whole)[:-30])
    assert isinstance(read_or_fail(tmp_path / "y.pcap.gz"), CaptureError)


def test_datagrams_before_the_damage_are_delivered(tmp_path):
    whole = small_pcap(tmp_path)
    (tmp_path / "x.pcap").write_bytes(whole[:-5])
    got = []
    with pytest.raises(CaptureError, match="truncated"):
        for d in Capture(tmp_path / "x.pcap"):
            got.append(d)
    assert len(got) == 2


def test_streams_without_reading_the_whole_file(tmp_path):
    path = tmp_path / "x.pcap"
    pg.write_udp_pcap(
        path, [(T0 + i, "192.0.2.1", 1, "192.0.2.2", 2, b"p" * 1000) for i in range(2000)]
    )
    with Capture(path) as capture:
        first = next(iter(capture))
        assert first.payload == b"p" * 1000
        assert capture._file.tell() < 256 << 10  # only the reader's buffer, not 2 MB


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_mutated_captures_never_crash(tmp_path, data):
    base = data.draw(st.sampled_from([small_pcap(tmp_path), small_pcapng()]))
    content = bytearray(base)
    for _ in range(data.draw(st.integers(1, 8))):
        content[data.draw(st.integers(0, len(content) - 1))] = data.draw(st.integers(0, 255))
    path = tmp_path / "m.cap"
    path.write_bytes(bytes(content))
    read_or_fail(path)  # rows (with the stats invariant checked) or CaptureError; nothing else


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    frame=st.binary(max_size=120), linktype=st.sampled_from([0, 1, 101, 113, 276, 108, 228, 229])
)
def test_arbitrary_frames_are_counted_not_crashed(tmp_path, frame, linktype):
    write_frames(tmp_path / "f.pcap", linktype, [(T0, frame)])
    rows, stats = read_all(tmp_path / "f.pcap")
    assert stats.frames == 1


# --- real tools ------------------------------------------------------------------------------

needs_wireshark_tools = pytest.mark.skipif(
    not (shutil.which("editcap") and shutil.which("tshark")), reason="editcap/tshark not on PATH"
)


@needs_wireshark_tools
@pytest.mark.parametrize(
    "fmt, magic", [("pcapng", b"\x0a\x0d\x0d\x0a"), ("nsecpcap", b"\x4d\x3c\xb2\xa1")]
)
def test_files_converted_by_editcap(tmp_path, fmt, magic):
    src = tmp_path / "src.pcap"
    pg.write_udp_pcap(src, DATAGRAMS)
    out = tmp_path / f"out.{fmt}"
    subprocess.run(["editcap", "-F", fmt, str(src), str(out)], check=True, capture_output=True)
    assert out.read_bytes()[:4] == magic
    assert read_all(out)[0] == quantized(DATAGRAMS)


def tshark_udp(path) -> list[tuple]:
    rows = []
    for t, sport, dport, length, src4, src6 in tshark.fields(
            path, ["frame.time_epoch", "udp.srcport", "udp.dstport", "udp.length", "ip.src", "ipv6.src"], "udp"):
        rows.append((round(float(t), 6), int(sport), int(dport), int(length) - 8, src4 or src6))
    return rows


@needs_wireshark_tools
def test_cross_check_with_tshark(tmp_path):
    """A mixed file (VLANs, options, extension headers, fragments both ways): the UDP
    datagrams we deliver are those tshark (with its own IP reassembly) sees."""
    rnd = random.Random(7)
    frames = []
    t = T0
    for i in range(40):
        t += 0.01
        size = rnd.choice([0, 10, 200, 1400, 3000, 5000])
        payload = bytes(rnd.randrange(256) for _ in range(size))
        if i % 2:
            src, dst = f"2001:db8::{i:x}", "2001:db8::ffff"
            packets = (
                v6_fragments(src, dst, 1000 + i, 2055, payload, ident=i)
                if size > 1400
                else [udp_packet(src, dst, 1000 + i, 2055, payload)]
            )
        else:
            src, dst = f"192.0.2.{i}", "198.51.100.1"
            packets = (
                v4_fragments(src, dst, 1000 + i, 2055, payload, ident=i)
                if size > 1400
                else [udp_packet(src, dst, 1000 + i, 2055, payload)]
            )
        vlans = [(0x8100, i)] if i % 3 == 0 else []
        for p in packets:
            t += 0.001
            frames.append((t, pg.ether_frame(p, vlans=vlans)))
    write_frames(tmp_path / "mixed.pcap", pg.LINKTYPE_ETHERNET, frames)
    rows, stats = read_all(tmp_path / "mixed.pcap")
    ours = [(round(r[0], 6), r[2], r[4], len(r[5]), r[1]) for r in rows]
    assert ours == tshark_udp(tmp_path / "mixed.pcap")
    assert stats.datagrams == 40 and stats.reassembled > 5


@pytest.mark.skipif(
    not (shutil.which("dumpcap") and shutil.which("tshark")), reason="dumpcap/tshark not on PATH"
)
@pytest.mark.parametrize(
    "interface, dlt", [("lo", None), ("any", "LINUX_SLL"), ("any", "LINUX_SLL2")]
)
def test_live_capture_by_dumpcap(tmp_path, interface, dlt):
    """pcapng written by a real capture of datagrams we send to ourselves on loopback."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]  # bound, so the kernel gives the port to no one else
    out = tmp_path / "live.pcapng"
    cmd = [
        "dumpcap",
        "-q",
        "-i",
        interface,
        "-f",
        f"udp dst port {port}",
        "-c",
        "5",
        "-a",
        "duration:10",
        "-w",
        str(out),
    ]
    if dlt:
        cmd[4:4] = ["-y", dlt]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    sent = []
    try:
        deadline = time.monotonic() + 15
        while proc.poll() is None and time.monotonic() < deadline:
            payload = b"imflow-%04d-" % len(sent) + b"x" * len(sent)
            sock.sendto(payload, ("127.0.0.1", port))
            sent.append(payload)
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            proc.kill()
        err = proc.communicate()[1].decode(errors="replace")
        sock.close()
    if proc.returncode != 0:
        pytest.skip(f"dumpcap cannot capture here: {err.strip()[-200:]}")
    rows, stats = read_all(out)
    assert 1 <= len(rows) <= 5
    payloads = [r[5] for r in rows]
    start = sent.index(payloads[0])
    assert payloads == sent[start : start + len(payloads)]  # what we sent, in order, none lost
    assert all(r[1] == "127.0.0.1" and r[4] == port for r in rows)
    assert [(round(r[0], 6), r[2], r[4], len(r[5]), r[1]) for r in rows] == tshark_udp(out)


def test_ipv6_fragments_of_other_protocols(tmp_path):
    src, dst = "2001:db8::1", "2001:db8::2"
    tcp_inside_options = pg.ipv6_ext_header(pg.TCP, b"") + b"\0" * 1600
    frags = [
        pg.ipv6_packet(
            src,
            dst,
            44,
            pg.ipv6_fragment_header(60, off, off + 1232 < len(tcp_inside_options), 1)
            + tcp_inside_options[off : off + 1232],
        )
        for off in (0, 1232)
    ]
    direct_tcp = pg.ipv6_packet(
        src, dst, 44, pg.ipv6_fragment_header(pg.TCP, 0, True, 2) + b"\0" * 64
    )
    write_frames(tmp_path / "x.pcap", pg.LINKTYPE_RAW, [(T0, f) for f in [*frags, direct_tcp]])
    rows, stats = read_all(tmp_path / "x.pcap")
    assert rows == [] and stats.skipped == {"not-udp": 3}


def test_fragment_buffer_is_bounded(tmp_path, monkeypatch):
    import collector.tools.capture as capture

    monkeypatch.setattr(capture, "FRAG_PENDING", 2)
    firsts = [v4_fragments("192.0.2.1", "192.0.2.2", 1, 2, b"q" * 2000, ident=i) for i in range(3)]
    frames = [f[0] for f in firsts] + [firsts[0][1], firsts[2][1]]
    write_frames(tmp_path / "x.pcap", pg.LINKTYPE_RAW, [(T0, f) for f in frames])
    rows, stats = read_all(tmp_path / "x.pcap")
    # ident 0 was evicted for ident 2; its second half then waits alone and is given up at
    # the end; ident 1 never completes; ident 2 does.
    assert len(rows) == 1 and stats.skipped == {"fragment": 3}
