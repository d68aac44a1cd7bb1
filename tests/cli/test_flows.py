"""`imflow flows` end to end: sessions written to a pcap with recent times, exported by real
softflowd to `imflow run` on loopback, then read back through the CLI. The audit rows must be
the pcap's flows of the watched categories, row for row (addresses, ports, proto, bytes,
packets, times to the millisecond), computed here from the packets written; the unwatched
flows must be absent. Output formats and hostile text are checked on a store written directly."""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import io
import ipaddress
import json
import socket
import time
from collections import Counter

import pytest

from collector.store import Store
from collector.store.rows import AuditRow
from tests.cli.conftest import imflow
from tests.daemon.test_daemon import (
    Daemon,
    expected_service,
    internal,
    send_with_softflowd,
)
from tests.daemon.test_workers import wait_workers
from tests.support import pcapgen as pg
from tests.support import softflowd, tshark
from tests.support.scenario import EXPORT_PORT, IM_SESSIONS, write_export_pcap

# written from the catalogue requirements, not read from the catalogue
CATEGORY = {"msn": "im", "yahoo": "im", "aim": "im", "xmpp": "im", "telegram": "im", "gadugadu": "im",
            "sip": "voip", "bittorrent": "p2p", "other": "other"}
WATCHED = {"im", "p2p", "voip", "collab"}


@pytest.fixture(scope="module")
def recent(tmp_path_factory):
    """The fixture sessions moved to ten minutes ago (the aggregator's clock checks keep them),
    plus web traffic (unwatched), a session between two internal hosts and one with no
    internal end."""
    tmp = tmp_path_factory.mktemp("flows")
    t = time.time() - 600
    t0 = IM_SESSIONS[0].start
    sessions = [dataclasses.replace(s, start=s.start - t0 + t) for s in IM_SESSIONS]
    sessions += [pg.Session("10.1.1.40", "198.51.100.99", 50010, 80, pg.TCP, [(0, 60), (1, 60), (0, 400), (1, 1400)],
                            start=t + 5),
                 pg.Session("10.5.5.6", "10.9.9.9", 50002, 5061, pg.TCP, [(0, 60), (1, 60), (0, 500), (1, 900)],
                            start=t + 6),
                 pg.Session("198.51.100.1", "203.0.113.9", 40000, 5060, pg.UDP, [(0, 400), (1, 400)], start=t + 7)]
    truth = pg.write_sessions(tmp / "s.pcap", sessions)
    return tmp / "s.pcap", truth


def expected_rows(truth: list[pg.FlowTruth], v5: bool = False) -> Counter:
    out: Counter = Counter()
    for f in truth:
        if v5 and ":" in f.src:
            continue
        service = expected_service(f)
        if CATEGORY[service] not in WATCHED:
            continue
        if internal(f.src) and internal(f.dst):  # both internal: the client side is the host
            src_is_host = f.sport > f.dport
        else:
            src_is_host = internal(f.src) or not internal(f.dst)
        direction = ("out" if src_is_host else "in") if internal(f.src) or internal(f.dst) else "none"
        host, peer = (f.src, f.dst) if src_is_host else (f.dst, f.src)
        hport, pport = (f.sport, f.dport) if src_is_host else (f.dport, f.sport)
        out[(host, peer, hport, pport, f.proto, service, CATEGORY[service], f.bytes, f.packets, direction,
             "127.0.0.1")] += 1
    return out


def got_rows(rows: list[dict]) -> Counter:
    return Counter((r["host"], r["peer"], r["host_port"], r["peer_port"], r["proto"], r["service"], r["category"],
                    r["bytes"], r["packets"], r["direction"], r["exporter"]) for r in rows)


def iso(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text).timestamp()


pytestmark_softflowd = pytest.mark.skipif(not softflowd.available(), reason="softflowd not on PATH")


@pytestmark_softflowd
@pytest.mark.parametrize("args", [["-v", "10", "-A", "milli"], ["-v", "5", "-a"]], ids=["ipfix-milli", "v5"])
def test_the_audit_log_holds_the_pcaps_watched_flows_row_for_row(tmp_path, recent, args):
    pcap, truth = recent
    db = tmp_path / "imflow.db"
    d = Daemon(tmp_path, db)
    send_with_softflowd(pcap, d.port, args)
    assert d.stop() == 0, d.text()
    p = imflow("flows", "--db", str(db), "--since", "all", "--limit", "0", "--format", "json", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    rows = json.loads(p.stdout)
    want = expected_rows(truth, v5=args[1] == "5")
    assert got_rows(rows) == want
    assert any(r["direction"] == "none" for r in rows) and any(r["host"] == "10.5.5.6" for r in rows)
    assert not any(r["host"] == "10.1.1.40" for r in rows)  # web: not a watched category
    if args[1] == "10":
        # flowStart/EndMilliseconds from the pcap times, cut to the millisecond. softflowd keeps
        # one flow per session and gives both of its records the session's first and last packet
        # times (as observed with softflowd 1.1.0), so the truth is per session here.
        span: dict[frozenset, tuple[float, float]] = {}
        for f in truth:
            k = frozenset([(f.src, f.sport), (f.dst, f.dport)])
            a, b = span.get(k, (f.first, f.last))
            span[k] = (min(a, f.first), max(b, f.last))
        for r in rows:
            first, last = span[frozenset([(r["host"], r["host_port"]), (r["peer"], r["peer_port"])])]
            assert -0.0015 < iso(r["start"]) - first <= 0.0005 and -0.0015 < iso(r["end"]) - last <= 0.0005, r
    # the peer networks of the same rows, summed here
    p = imflow("flows", "--db", str(db), "--since", "all", "--limit", "0", "--format", "json", "--by", "peer-net",
               cwd=tmp_path)
    nets: Counter = Counter()
    for key, n in want.items():
        peer, nbytes = key[1], key[7]
        nets[str(ipaddress.ip_network(f"{peer}/{24 if '.' in peer else 48}", strict=False))] += nbytes * n
    assert {g["peer-net"]: g["bytes"] for g in json.loads(p.stdout)} == nets
    # one incident question: who did 10.1.1.10 talk to over MSN
    p = imflow("flows", "--db", str(db), "--since", "all", "--host", "10.1.1.0/24", "--service", "msn",
               "--format", "csv", cwd=tmp_path)
    got = list(csv.DictReader(io.StringIO(p.stdout)))
    assert {(r["host"], r["peer"], r["peer_port"]) for r in got} == {("10.1.1.10", "198.51.100.10", "1863")}
    assert len(got) == 2  # one flow each way


@pytestmark_softflowd
def test_no_audit_rows_when_the_audit_log_is_off(tmp_path, recent):
    pcap, _ = recent
    cfg = tmp_path / "imflow.toml"
    cfg.write_text("[audit]\ncategories = []\n")
    db = tmp_path / "imflow.db"
    d = Daemon(tmp_path, db, "--config", str(cfg))
    send_with_softflowd(pcap, d.port, ["-v", "10", "-A", "milli"])
    assert d.stop() == 0, d.text()
    p = imflow("flows", "--db", str(db), "--config", str(cfg), "--since", "all", cwd=tmp_path)
    assert p.returncode == 0 and "0 flows" in p.stdout
    assert "the audit log is off" in p.stderr


@pytestmark_softflowd
def test_only_the_configured_categories_are_kept(tmp_path, recent):
    pcap, truth = recent
    cfg = tmp_path / "imflow.toml"
    cfg.write_text('[audit]\ncategories = ["voip"]\n')
    db = tmp_path / "imflow.db"
    d = Daemon(tmp_path, db, "--config", str(cfg))
    send_with_softflowd(pcap, d.port, ["-v", "9", "-a"])
    assert d.stop() == 0, d.text()
    p = imflow("flows", "--db", str(db), "--since", "all", "--limit", "0", "--format", "json", cwd=tmp_path)
    want = Counter({k: n for k, n in expected_rows(truth).items() if k[6] == "voip"})
    assert want and got_rows(json.loads(p.stdout)) == want


# --- formats and hostile text, on a store written directly ------------------------------------

HOSTILE = "evil\x1b[2J<script>,\"=cmd|' /C calc'!A0\n"
NOW = time.time()


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("flowsfmt") / "imflow.db"
    rows = [AuditRow(NOW - 100.25, NOW - 99.5, "192.0.2.1", "10.1.2.3", "203.0.113.5", 50000, 1863, 6, "msn", "im",
                     1234, 5, 3, 4, "out"),
            AuditRow(NOW - 50.0, NOW - 40.0, HOSTILE, "fd00::7", "2001:db8:1::9", 5060, 5060, 17, HOSTILE, "voip",
                     999, 3, 0, 0, "in")]

    async def go():
        s = Store(str(path))
        await s.start()
        await s.write([], [], rows)
        await s.stop()
    asyncio.run(go())
    return path


def test_json_rows_carry_the_issue_keys(store, tmp_path):
    p = imflow("flows", "--db", str(store), "--since", "1h", "--format", "json", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    rows = json.loads(p.stdout)
    assert [r["host"] for r in rows] == ["10.1.2.3", "fd00::7"]
    r = rows[0]
    for k in ("start", "end", "exporter", "host", "peer", "host_port", "peer_port", "proto", "service", "category",
              "bytes", "packets"):
        assert k in r
    assert abs(iso(r["start"]) - (NOW - 100.25)) < 0.001 and r["proto"] == 6 and r["in_if"] == 3
    assert rows[1]["exporter"] == HOSTILE  # JSON escapes, the value is the same
    assert "\x1b" not in p.stdout


def test_table_and_csv_escape_hostile_text(store, tmp_path):
    p = imflow("flows", "--db", str(store), "--since", "1h", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "\x1b" not in p.stdout and "2 flows" in p.stdout and "<-" in p.stdout
    assert len(p.stdout.splitlines()) == 6  # header, rule, 2 rows, rule, footer: no row broken by the newline
    p = imflow("flows", "--db", str(store), "--since", "1h", "--format", "csv", cwd=tmp_path)
    got = list(csv.DictReader(io.StringIO(p.stdout)))
    assert len(got) == 2 and not got[1]["service"].startswith(("=", "+", "-", "@"))


@pytest.mark.parametrize("args, message", [
    (["--by", "colour"], "--by: expected"), (["--host", "10.1.2.300"], "10.1.2.300"),
    (["--port", "x"], "port"), (["--peer-prefix", "20,48"], "multiples of 8"), (["--limit", "-1"], "--limit"),
    (["--category", "chat"], "category")])
def test_bad_usage_exits_2_with_one_line(store, tmp_path, args, message):
    p = imflow("flows", "--db", str(store), *args, cwd=tmp_path)
    assert p.returncode == 2 and message in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_a_missing_database_is_exit_1(tmp_path):
    p = imflow("flows", "--db", str(tmp_path / "nope.db"), cwd=tmp_path)
    assert p.returncode == 1 and "no database" in p.stderr


@pytestmark_softflowd
def test_workers_hand_their_audit_rows_to_the_supervisor(tmp_path, recent):
    pcap, truth = recent
    db = tmp_path / "imflow.db"
    d = Daemon(tmp_path, db, "--workers", "2")
    wait_workers(d, 2)
    send_with_softflowd(pcap, d.port, ["-v", "10", "-A", "milli"])
    assert d.stop() == 0, d.text()
    p = imflow("flows", "--db", str(db), "--since", "all", "--limit", "0", "--format", "json", cwd=tmp_path)
    assert got_rows(json.loads(p.stdout)) == expected_rows(truth), d.text()


@pytestmark_softflowd
@pytest.mark.skipif(not tshark.available(), reason="tshark not on PATH")
def test_audit_rows_equal_tshark_decoding_the_same_export(tmp_path, recent):
    """A second decoder: tshark reads a capture of the very datagrams the daemon received; its
    records of watched services, oriented host-first, are the audit rows."""
    pcap, _ = recent
    datagrams = softflowd.export(pcap, ["-v", "9", "-a"])
    write_export_pcap(tmp_path / "export.pcap", datagrams, time.time())
    records = tshark.decode(tmp_path / "export.pcap", EXPORT_PORT)
    want: Counter = Counter()
    for r in records:
        f = pg.FlowTruth(r["src_addr"], r["dst_addr"], r["src_port"], r["dst_port"], r["proto"], r["bytes"],
                         r["packets"], 0.0, 0.0)
        if CATEGORY[expected_service(f)] in WATCHED:
            want[(f.src, f.dst, f.sport, f.dport, f.proto, f.bytes, f.packets)] += 1
    db = tmp_path / "imflow.db"
    d = Daemon(tmp_path, db)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for payload, _ in datagrams:
            sock.sendto(payload, ("127.0.0.1", d.port))
    time.sleep(0.5)
    assert d.stop() == 0, d.text()
    p = imflow("flows", "--db", str(db), "--since", "all", "--limit", "0", "--format", "json", cwd=tmp_path)
    got: Counter = Counter()
    for r in json.loads(p.stdout):
        src, dst, sport, dport = ((r["peer"], r["host"], r["peer_port"], r["host_port"]) if r["direction"] == "in"
                                  else (r["host"], r["peer"], r["host_port"], r["peer_port"]))
        got[(src, dst, sport, dport, r["proto"], r["bytes"], r["packets"])] += 1
    assert len(want) > 50 and got == want
