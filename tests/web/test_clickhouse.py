"""The web page on the ClickHouse backend: the same rows written through the ClickHouse store
into a real clickhouse-server on loopback, `imflow web` with `[store] backend = "clickhouse"`:
its tables equal `imflow top` on the same configuration, the SQLite page's, and the rows
written. One query path, two faces, two stores."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import urllib.request
from collections import Counter

import pytest

from collector.store.clickhouse import ClickHouseStore
from tests.report.conftest import NOW
from tests.web.conftest import Server, audit_rows, if_rows, write_config

pytestmark = pytest.mark.skipif(not shutil.which("clickhouse-server"), reason="clickhouse-server not installed")

Q = "?from=2026-01-01&to=2026-01-08"
PERIOD = ["--from", "2026-01-01", "--to", "2026-01-08"]


@pytest.fixture(scope="module")
def clickhouse(tmp_path_factory):
    from tests.store.clickhouse.server import Server as ClickHouse

    ch = ClickHouse(os.path.join(str(tmp_path_factory.mktemp("clickhouse")), "ch"))
    ch.configure([ch.tcp_port])
    ch.start()
    try:
        yield ch
    finally:
        ch.stop()


@pytest.fixture(scope="module")
def ch_server(clickhouse, web_rows, tmp_path_factory):
    async def write():
        store = ClickHouseStore([clickhouse.url], database="web", clock=lambda: NOW)
        await store.start()
        await store.write(web_rows, if_rows(web_rows), audit_rows())
        await store.stop()
    asyncio.run(write())
    cfg = write_config(tmp_path_factory.mktemp("chcfg") / "imflow.toml",
                       f'[store]\nbackend = "clickhouse"\n[store.clickhouse]\nurls = ["{clickhouse.url}"]\n'
                       'database = "web"\n')
    srv = Server(None, cfg)
    yield srv, cfg
    srv.stop()


def fetch_json(url: str) -> list[dict]:
    with urllib.request.urlopen(url, timeout=60) as r:
        return json.loads(r.read())


@pytest.mark.parametrize("path, table, by", [("/", "categories", "category"), ("/hosts", "hosts", "host"),
                                             ("/services", "services", "category,service"),
                                             ("/exporters", "exporters", "exporter"),
                                             ("/service/bittorrent", "hosts", "host")])
def test_clickhouse_page_equals_imflow_top_and_the_sqlite_page(ch_server, server, web_rows, path, table, by):
    srv, cfg = ch_server
    shown = fetch_json(f"{srv.url}{path}{Q}&table={table}&format=json")
    sqlite = fetch_json(f"{server.url}{path}{Q}&table={table}&format=json")
    extra = ["--service", "bittorrent"] if path.startswith("/service/") else []
    out = subprocess.run([sys.executable, "-m", "collector", "top", "--config", str(cfg), "--by", by, *extra, *PERIOD,
                          "--limit", "10" if path == "/" and table != "categories" else "0", "--format", "json"],
                         check=False, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    keys = by.split(",")
    def project(rows):
        return [(*(r[k] for k in keys), r["bytes"], r["packets"], r["flows"]) for r in rows]
    assert project(shown) == project(json.loads(out.stdout)) == project(sqlite) and shown
    if table == "categories":
        truth = Counter()
        for r in web_rows:
            truth[r.category] += r.bytes
        assert {r["category"]: r["bytes"] for r in shown} == dict(truth)


def test_clickhouse_host_page_violations_and_flows(ch_server, server):
    srv, _ = ch_server
    for path, table in (("/host/10.1.2.15", "services"), ("/violations", "violations"),
                        ("/host/10.1.2.15", "flows")):
        shown = fetch_json(f"{srv.url}{path}{Q}&table={table}&format=json")
        sqlite = fetch_json(f"{server.url}{path}{Q}&table={table}&format=json")
        assert shown == sqlite and shown, (path, table)
