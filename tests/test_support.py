"""The harness checked against independent truth before imflow is compared with it:
pcapgen's ground truth, softflowd's exports and tshark's decoding must all agree.

Needs softflowd and tshark on PATH (CI installs them); the tests that need one skip
without it."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest

from tests.support import pcapgen as pg
from tests.support import softflowd, tshark
from tests.support.scenario import (
    EXPORT_PORT,
    IM_SESSIONS,
    SOFTFLOWD_VARIANTS,
    T0,
    write_export_pcap,
)

FIXTURES = Path(__file__).parent / "fixtures"
TRUTH = json.loads((FIXTURES / "sessions.truth.json").read_text())

needs_tshark = pytest.mark.skipif(not tshark.available(), reason="tshark not on PATH")
needs_softflowd = pytest.mark.skipif(not softflowd.available(), reason="softflowd not on PATH")

KEY = ("src_addr", "dst_addr", "src_port", "dst_port", "proto")


def truth_records(stem: str, flows: list[pg.FlowTruth]) -> list[dict]:
    """What tshark should find in the export of `flows` by softflowd variant `stem`."""
    if "-b-" in stem:
        return pg.biflows(flows)
    records = [
        dict(
            src_addr=f.src,
            dst_addr=f.dst,
            src_port=f.sport,
            dst_port=f.dport,
            proto=f.proto,
            bytes=f.bytes,
            packets=f.packets,
        )
        for f in flows
        if not ("-v5-" in stem and ":" in f.src)  # NetFlow v5 cannot carry IPv6
    ]
    return records


def comparable(records: list[dict]) -> list[dict]:
    drop = {"version", "frame"}
    return sorted(
        ({k: v for k, v in r.items() if k not in drop} for r in records),
        key=lambda r: [r[k] for k in KEY],
    )


def stored_truth() -> list[pg.FlowTruth]:
    return [pg.FlowTruth(**f) for f in TRUTH["flows"]]


# --- the ground-truth generator --------------------------------------------------------------


def test_sessions_fixture_is_what_pcapgen_writes(tmp_path):
    truth = pg.write_sessions(tmp_path / "s.pcap", IM_SESSIONS)
    assert (tmp_path / "s.pcap").read_bytes() == (FIXTURES / "sessions.pcap").read_bytes()
    assert truth == stored_truth()
    assert TRUTH["biflows"] == pg.biflows(truth)


@needs_tshark
def test_truth_matches_packets_as_tshark_reads_them():
    """Count the sessions pcap per direction with tshark's IP/TCP/UDP dissectors: the
    FlowTruth records must say the same (bytes = IPv4 total length, IPv6 40 + payload)."""
    rows = tshark.fields(FIXTURES / "sessions.pcap", [
        "frame.time_epoch", "ip.src", "ip.dst", "ipv6.src", "ipv6.dst", "ip.proto", "ipv6.nxt",
        "tcp.srcport", "tcp.dstport", "udp.srcport", "udp.dstport", "ip.len", "ipv6.plen"])
    flows: dict[tuple, list] = defaultdict(lambda: [0, 0, None, None])
    for t, s4, d4, s6, d6, p4, p6, ts, td, us, ud, len4, plen6 in rows:
        key = (s4 or s6, d4 or d6, int(ts or us), int(td or ud), int(p4 or p6))
        f = flows[key]
        f[0] += int(len4) if len4 else 40 + int(plen6)
        f[1] += 1
        f[2] = f[2] if f[2] is not None else round(float(t), 6)
        f[3] = round(float(t), 6)
    expected = {t.key: [t.bytes, t.packets, t.first, t.last] for t in stored_truth()}
    assert dict(flows) == expected


def test_truth_merges_sessions_sharing_a_five_tuple(tmp_path):
    a = pg.Session("10.0.0.1", "192.0.2.1", 5000, 5060, pg.UDP, [(0, 100), (1, 200)])
    b = pg.Session("10.0.0.1", "192.0.2.1", 5000, 5060, pg.UDP, [(0, 50)], start=a.start + 10)
    truth = pg.write_sessions(tmp_path / "s.pcap", [a, b])
    assert [(t.bytes, t.packets, t.last - t.first) for t in truth] == [
        (150, 2, 10.0),
        (200, 1, 0.0),
    ]


def test_packets_shorter_than_ethernet_minimum_are_refused(tmp_path):
    with pytest.raises(ValueError, match="too short"):
        pg.write_sessions(
            tmp_path / "s.pcap", [pg.Session("10.0.0.1", "192.0.2.1", 1, 2, pg.TCP, [(0, 40)])]
        )


# --- the stored fixtures ---------------------------------------------------------------------


@needs_tshark
@pytest.mark.parametrize("stem", sorted(SOFTFLOWD_VARIANTS))
def test_stored_exports_decoded_by_tshark_match_truth(stem):
    records = tshark.decode(FIXTURES / f"{stem}.pcap", EXPORT_PORT)
    assert comparable(records) == comparable(truth_records(stem, stored_truth()))
    version = {"v5": 5, "v9": 9, "v10": 10}[stem.split("-")[1]]
    assert {r["version"] for r in records} == {version}


# --- softflowd run now -----------------------------------------------------------------------


@needs_softflowd
@needs_tshark
@pytest.mark.parametrize("stem", sorted(SOFTFLOWD_VARIANTS))
def test_softflowd_export_decoded_by_tshark_matches_truth(tmp_path, stem):
    """The end-to-end proof for the harness: ground truth -> softflowd -> tshark."""
    truth = pg.write_sessions(tmp_path / "s.pcap", IM_SESSIONS)
    datagrams = softflowd.export(tmp_path / "s.pcap", SOFTFLOWD_VARIANTS[stem])
    assert len(datagrams) > 1  # so later datagrams need templates from the first
    assert len({addr for _, addr in datagrams}) == 1 and datagrams[0][1][0] == "127.0.0.1"
    write_export_pcap(tmp_path / "x.pcap", datagrams, start=T0 + 10)
    records = tshark.decode(tmp_path / "x.pcap", EXPORT_PORT)
    assert comparable(records) == comparable(truth_records(stem, truth))


@needs_softflowd
def test_softflowd_v9_count_excludes_templates(tmp_path):
    """softflowd 1.1.0's v9 header count is the number of flow records only (RFC 3954 says
    all records); tshark reads it as a flowset limit, which is why tshark.decode patches it."""
    pg.write_sessions(tmp_path / "s.pcap", IM_SESSIONS[:2])
    (payload, _), *_ = softflowd.export(tmp_path / "s.pcap", ["-v", "9", "-a"])
    count = struct.unpack_from("!H", payload, 2)[0]
    assert (
        count == 4 and tshark._flowsets(payload) == 7
    )  # 4 templates, options template, its record, 1 data set


@needs_softflowd
@needs_tshark
def test_tshark_decode_patches_v9_count(tmp_path):
    pg.write_sessions(tmp_path / "s.pcap", IM_SESSIONS[:2])
    datagrams = softflowd.export(tmp_path / "s.pcap", ["-v", "9", "-a"])
    write_export_pcap(tmp_path / "x.pcap", datagrams, start=T0 + 10)
    assert tshark._run(str(tmp_path / "x.pcap"), EXPORT_PORT) == []  # unpatched: no flows seen
    assert len(tshark.decode(tmp_path / "x.pcap", EXPORT_PORT)) == 4


def test_sequence_check_finds_a_missing_datagram():
    def v5(seq, count):
        return struct.pack("!HHIIIIBBH", 5, count, 0, 0, 0, seq, 0, 0, 0) + b"\0" * 48 * count

    softflowd.check_sequence([(v5(0, 30), ("127.0.0.1", 1)), (v5(30, 2), ("127.0.0.1", 1))])
    with pytest.raises(softflowd.SoftflowdError, match="missing"):
        softflowd.check_sequence([(v5(0, 30), ("127.0.0.1", 1)), (v5(60, 2), ("127.0.0.1", 1))])


@needs_softflowd
def test_softflowd_missing_file_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        softflowd.export(tmp_path / "nope.pcap", ["-v", "5"])


def test_fixture_readme_lists_every_file():
    readme = (FIXTURES / "README.md").read_text()
    for path in FIXTURES.iterdir():
        if path.suffix in (".pcap", ".json"):
            assert path.name in readme, path.name


@pytest.mark.skipif(shutil.which("softflowd") is None, reason="softflowd not on PATH")
def test_softflowd_is_the_version_the_fixtures_describe():
    out = subprocess.run(["softflowd", "-h"], capture_output=True, text=True)
    assert "softflowd version 1.1.0" in out.stdout + out.stderr
