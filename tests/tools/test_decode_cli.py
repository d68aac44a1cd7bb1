"""`imflow decode` end to end: real softflowd exports, compared with the sessions' own
ground truth (pcapgen) and, record by record, with a second decoder (tshark)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.support import pcapgen as pg
from tests.support import softflowd, tshark
from tests.support.scenario import EXPORT_PORT, IM_SESSIONS, SOFTFLOWD_VARIANTS, T0, write_export_pcap

FIXTURES = Path(__file__).parents[1] / "fixtures"
TRUTH = [pg.FlowTruth(**f) for f in json.loads((FIXTURES / "sessions.truth.json").read_text())["flows"]]
KEY = ("src_addr", "dst_addr", "src_port", "dst_port", "proto", "bytes", "packets")

needs_tshark = pytest.mark.skipif(not tshark.available(), reason="tshark not on PATH")
needs_softflowd = pytest.mark.skipif(not softflowd.available(), reason="softflowd not on PATH")


def imflow(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "collector", *args], capture_output=True, text=True,
                          timeout=120)


def decode(path, *extra) -> tuple[list[dict], str]:
    p = imflow("decode", str(path), *extra)
    assert p.returncode == 0, p.stderr
    return [json.loads(line) for line in p.stdout.splitlines()], p.stderr


def per_direction(truth: list[pg.FlowTruth], v5: bool) -> Counter:
    return Counter((t.src, t.dst, t.sport, t.dport, t.proto, t.bytes, t.packets)
                   for t in truth if not (v5 and ":" in t.src))


def as_keys(records) -> Counter:
    return Counter(tuple(r[k] for k in KEY) for r in records)


@pytest.mark.parametrize("stem", sorted(SOFTFLOWD_VARIANTS))
def test_stored_exports_match_the_sessions(stem):
    records, summary = decode(FIXTURES / f"{stem}.pcap")
    # biflow records (-b) come back as one flow per direction, like the others
    assert as_keys(records) == per_direction(TRUTH, "-v5-" in stem)
    version = {"v5": 5, "v9": 9, "v10": 10}[stem.split("-")[1]]
    assert {r["version"] for r in records} == {version}
    assert {r["sampling_rate"] for r in records} == {1}
    assert all(r["exporter"].startswith("127.0.0.1:") and r["domain"] == 0 for r in records)
    assert "errors: none" in summary and f"decoded: {len(records)} flows" in summary
    # times: the pcap's own packet times; v9 carries whole seconds, so up to 1 s early
    truth = {(t.src, t.dst, t.sport, t.dport, t.proto): t for t in TRUTH}
    slack = 1.0 if "-v9-" in stem else 0.06
    for r in records:
        t = truth[r["src_addr"], r["dst_addr"], r["src_port"], r["dst_port"], r["proto"]]
        assert t.first - slack <= r["start"] <= r["end"] <= t.last + 0.06


@needs_tshark
@pytest.mark.parametrize("stem", sorted(SOFTFLOWD_VARIANTS))
def test_agrees_with_tshark_record_by_record(stem):
    records, _ = decode(FIXTURES / f"{stem}.pcap")
    theirs = []
    for r in tshark.decode(FIXTURES / f"{stem}.pcap", EXPORT_PORT):
        theirs.append({k: r[k] for k in KEY})
        if r.get("reverse_bytes") or r.get("reverse_packets"):  # RFC 5103: the other direction
            theirs.append(dict(src_addr=r["dst_addr"], dst_addr=r["src_addr"], src_port=r["dst_port"],
                               dst_port=r["src_port"], proto=r["proto"], bytes=r["reverse_bytes"],
                               packets=r["reverse_packets"]))
    assert as_keys(records) == as_keys(theirs)


@needs_softflowd
@pytest.mark.parametrize("stem", sorted(SOFTFLOWD_VARIANTS))
def test_fresh_softflowd_run(tmp_path, stem):
    sessions = IM_SESSIONS + [pg.Session("10.7.7.7", "198.51.100.77", 50000, 5061, pg.TCP,
                                         [(0, 60), (1, 60), (0, 900), (1, 1400)], start=T0 + 5)]
    truth = pg.write_sessions(tmp_path / "s.pcap", sessions)
    datagrams = softflowd.export(tmp_path / "s.pcap", SOFTFLOWD_VARIANTS[stem])
    write_export_pcap(tmp_path / "x.pcap", datagrams, start=T0 + 10)
    records, _ = decode(tmp_path / "x.pcap")
    assert as_keys(records) == per_direction(truth, "-v5-" in stem)


@pytest.mark.parametrize("linktype,transport", [(1, "v6"), (101, "v4"), (113, "v4"), (276, "v6"), (0, "v4")])
def test_link_types_and_ipv6_transport(tmp_path, linktype, transport):
    """The same export datagrams, captured on other link types and over IPv6."""
    from collector.tools.capture import read_capture

    src, dst = ("2001:db8::2", "2001:db8::1") if transport == "v6" else ("192.0.2.2", "192.0.2.1")
    datagrams, _ = read_capture(FIXTURES / "softflowd-v9-a.pcap")
    grams = [(d.time, src, d.sport, dst, 9995, d.payload) for d in datagrams]
    pg.write_udp_pcap(tmp_path / "x.pcap", grams, linktype=linktype)
    records, _ = decode(tmp_path / "x.pcap")
    assert as_keys(records) == per_direction(TRUTH, False)
    exporter = f"[{src}]:" if transport == "v6" else f"{src}:"
    assert all(r["exporter"].startswith(exporter) for r in records)


def test_templates_carry_across_captures(tmp_path):
    """Data whose templates are in another capture: held and expired without the saved
    state, decoded with it."""
    from collector.tools.capture import read_capture

    datagrams = list(read_capture(FIXTURES / "softflowd-v10-A-milli.pcap")[0])
    grams = [(d.time, d.src, d.sport, d.dst, d.dport, d.payload) for d in datagrams]
    pg.write_udp_pcap(tmp_path / "first.pcap", grams[:1])
    pg.write_udp_pcap(tmp_path / "rest.pcap", grams[1:])
    alone, summary = decode(tmp_path / "rest.pcap")
    assert "never matched" in summary
    first, _ = decode(tmp_path / "first.pcap", "--save-templates", str(tmp_path / "t.json"))
    rest, _ = decode(tmp_path / "rest.pcap", "--templates", str(tmp_path / "t.json"))
    assert len(alone) < len(rest)
    assert as_keys(first + rest) == per_direction(TRUTH, False)


def test_table_format_and_summary():
    p = imflow("decode", str(FIXTURES / "softflowd-v5-a.pcap"), "--format", "table")
    assert p.returncode == 0
    lines = p.stdout.splitlines()
    assert lines[0].split()[:3] == ["start", "(UTC)", "exporter"]
    assert len(lines) == 1 + len(per_direction(TRUTH, True))
    assert "10.1.1.10:49152 -> 198.51.100.10:1863" in p.stdout
    assert "v5 5 datagrams 136 flows" in p.stderr


def test_unreadable_capture_is_a_clear_error(tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("not a capture\n")
    p = imflow("decode", str(bad))
    assert p.returncode == 1 and "Traceback" not in p.stderr and str(bad) in p.stderr
    p = imflow("decode", str(tmp_path / "missing.pcap"))
    assert p.returncode == 1 and "Traceback" not in p.stderr


def test_help_and_version():
    p = imflow("--help")
    assert p.returncode == 0 and "decode" in p.stdout and "check-config" in p.stdout
    p = imflow("--version")
    assert p.returncode == 0 and p.stdout.startswith("imflow ")


def test_exporter_sent_names_are_escaped(tmp_path):
    """Interface and application names are the exporter's text: the JSON lines carry them exactly
    but with no raw control, C1, separator or bidi character, and the table stays one line a flow."""
    from collector.netflow import encode as E
    from collector.netflow import fields as F
    from collector.text import UNSAFE

    evil = b"eth\x7f\x1b]0;pwned\x07\n\xc2\x9b\xe2\x80\xa8\xe2\x80\xae"
    opt_if = E.options_template_set(400, [(F.ingressInterface, 4)], [(F.interfaceName, F.VARLEN)], True)
    d_if = E.data_set(400, [(10, 4), (82, F.VARLEN)], [{10: 3, 82: evil}])
    flds = [(F.sourceIPv4Address, 4), (F.destinationIPv4Address, 4), (F.octetDeltaCount, 8),
            (F.packetDeltaCount, 8), (F.ingressInterface, 4)]
    tmpl = E.template_set([(256, flds)], True)
    data = E.data_set(256, flds, [{8: "10.0.0.1", 12: "192.0.2.9", 1: 1500, 2: 3, 10: 3}])
    msg = E.ipfix_message([opt_if, d_if, tmpl, data], export_time=int(T0), sequence=0, domain=1)
    pcap = tmp_path / "evil.pcap"
    pg.write_udp_pcap(pcap, [(T0, "192.0.2.1", 40000, "192.0.2.2", 4739, msg)])
    p = subprocess.run([sys.executable, "-m", "collector", "decode", str(pcap)], capture_output=True, timeout=120)
    assert p.returncode == 0, p.stderr
    out = p.stdout.decode()
    assert not UNSAFE.search(out.replace("\n", "")), out
    (rec,) = [json.loads(line) for line in out.splitlines()]
    assert rec["in_if_name"] == evil.decode()
    p = subprocess.run([sys.executable, "-m", "collector", "decode", "--format", "table", str(pcap)],
                       capture_output=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert not UNSAFE.search(p.stdout.decode().replace("\n", ""))
    assert len(p.stdout.decode().splitlines()) == 2
