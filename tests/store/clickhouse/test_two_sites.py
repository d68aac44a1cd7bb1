"""Two imflow collectors, each writing to its own shard of a two-shard ClickHouse cluster,
fed by real softflowd exports of a pcap the test writes: what `imflow top`, `violations`,
`report` and `flows` answer from the cluster (through the Distributed tables) must equal the
pcap's own totals, and what one SQLite collector that received both exports answers, row for
row (the audit log included)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from collector import config as C
from collector import report
from collector.store.reader import SqliteReader, open_reader
from tests.daemon.test_daemon import Daemon, db_totals, truth_totals
from tests.store.clickhouse.server import CLUSTER
from tests.support import softflowd

pytestmark = pytest.mark.skipif(not softflowd.available(), reason="softflowd not on PATH")

EXPORTS = (["-v", "9", "-a"], ["-v", "10", "-A", "milli"])  # site A: NetFlow v9; site B: IPFIX


def ch_config(tmp: Path, name: str, urls: list[str], database: str, cluster: str = CLUSTER) -> Path:
    path = tmp / f"{name}.toml"
    path.write_text(
        '[store]\nbackend = "clickhouse"\n'
        f'[store.clickhouse]\nurls = {json.dumps(urls)}\ndatabase = "{database}"\ncluster = "{cluster}"\n'
        # the pcap's flows are from 2023: keep them in the audit log, as in the SQLite run
        '[audit]\nmax_age = "30y"\n')
    return path


def imflow(*args: str) -> subprocess.CompletedProcess:
    p = subprocess.run([sys.executable, "-m", "collector", *args], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return p


def top_totals(*where: str) -> dict:
    out = {}
    p = imflow("top", *where, "--since", "all", "--by", "host,service", "--format", "json", "--limit", "0")
    for r in json.loads(p.stdout):
        out[(r["host"], r["service"], "bytes")] = r["bytes"]
        out[(r["host"], r["service"], "packets")] = r["packets"]
    return out


def _without_order(rows: list[dict]) -> list:
    """Rows as a sorted list. The pcap's flows are from 2023, so the daemon clamps their times
    to when it received them: two daemons agree on durations, not on milliseconds."""
    out = []
    for r in rows:
        r = dict(r)
        if isinstance(r.get("start"), float):
            r["duration"] = round(r.pop("end") - r.pop("start"), 3)
        elif "start" in r:  # the CLI's ISO 8601 times
            r.pop("start"), r.pop("end")
        out.append(json.dumps(r, sort_keys=True))
    return sorted(out)


def replay(datagrams, port: int) -> None:
    """The datagrams softflowd sent once, to a daemon: every receiver gets the same bytes, so the
    same flow times (softflowd stamps some from its own clock)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for i, (payload, _) in enumerate(datagrams):
            sock.sendto(payload, ("127.0.0.1", port))
            if i % 32 == 31:
                time.sleep(0.002)


def test_two_collectors_two_shards_equal_the_pcap_and_sqlite(tmp_path, sessions, pair, database):
    pcap, truth = sessions
    sites = [ch_config(tmp_path, f"site{i}", [s.url], database) for i, s in enumerate(pair)]
    sqlite_cfg = tmp_path / "sqlite.toml"
    sqlite_cfg.write_text('[audit]\nmax_age = "30y"\n')
    exports = [softflowd.export(pcap, args) for args in EXPORTS]
    db = tmp_path / "both.db"
    # all three at once: the clamped times (see _without_order) fall in the same minute bins
    both = Daemon(tmp_path, db, "--config", str(sqlite_cfg))
    site = [Daemon(tmp_path, tmp_path / f"site{i}.db", "--config", str(cfg)) for i, cfg in enumerate(sites)]
    for d, datagrams in zip(site, exports):
        replay(datagrams, d.port)
        replay(datagrams, both.port)
    for d in (*site, both):
        assert d.stop() == 0, d.text()
        assert "store-errors 0" in d.stopped_line(), d.text()

    expected = truth_totals(truth, times=2)
    # each shard holds its own site only; the Distributed tables read both, from either node
    for node in pair:
        reader_cfg = ch_config(tmp_path, "reader", [node.url], database)
        assert top_totals("--config", str(reader_cfg)) == expected
    assert db_totals(db) == expected
    for node, site in zip(pair, ("site0", "site1")):
        rows = node.query(f"SELECT host, service, sum(bytes) FROM {database}.rollup_1d_local GROUP BY host, service")
        assert sum(int(line.split("\t")[2]) for line in rows.splitlines()) == sum(
            v for k, v in truth_totals(truth).items() if k[2] == "bytes"), site

    cfg = C.load(str(reader_cfg))
    ch, sq = open_reader(cfg), SqliteReader(str(db))
    assert type(ch).__name__ == "ClickHouseReader"
    assert ch.usage(None, None) == sq.usage(None, None)
    assert ch.time_range() == sq.time_range()
    assert ch.stored_services() == sq.stored_services()
    for by in (("service",), ("exporter", "service"), ("category", "host"), ("day", "service"), ("interface",)):
        assert ch.top(None, None, by=by, limit=None) == sq.top(None, None, by=by, limit=None), by
    assert ch.top(None, None, by=("host",), limit=3, host=["10.0.0.0/8"]) == \
        sq.top(None, None, by=("host",), limit=3, host=["10.0.0.0/8"])

    # the audit log, row for row, and its questions
    assert len(sq.flows(None, None, limit=None)) > 0
    assert _without_order(ch.flows(None, None, limit=None)) == _without_order(sq.flows(None, None, limit=None))
    for kw in ({"by": ("peer-net",)}, {"by": ("service", "proto")}, {"by": ("host",), "limit": 2},
               {"host": ["10.0.0.0/8"], "sort": "bytes", "limit": 5}, {"port": ["1863"], "limit": None},
               {"peer": ["198.51.100.0/24"], "proto": ["tcp"], "limit": None}):
        a, b = ch.flows(None, None, **kw), sq.flows(None, None, **kw)
        if "by" in kw or kw.get("sort") == "bytes":
            assert [r["bytes"] for r in a] == [r["bytes"] for r in b], kw
        assert _without_order(a) == _without_order(b), kw

    # the report, through the same reader
    from collector.daemon import wiring
    catalogue = wiring.build_catalogue(cfg)
    policy = wiring.build_policy(cfg, catalogue)
    r_ch = report.build(ch, None, None, catalogue, policy, now=1_800_000_000)
    r_sq = report.build(str(db), None, None, catalogue, policy, now=1_800_000_000)
    for r in (r_ch, r_sq):
        r.pop("database")
    assert r_ch == r_sq

    # the CLI faces with the same --config
    p = imflow("violations", "--config", str(reader_cfg), "--since", "all", "--format", "json")
    q = imflow("violations", "--db", str(db), "--since", "all", "--format", "json")
    assert p.stdout == q.stdout
    p = imflow("flows", "--config", str(reader_cfg), "--since", "all", "--format", "json", "--limit", "0")
    q = imflow("flows", "--db", str(db), "--since", "all", "--format", "json", "--limit", "0")
    assert _without_order(json.loads(p.stdout)) == _without_order(json.loads(q.stdout))
