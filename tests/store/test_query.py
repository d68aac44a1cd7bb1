"""query.top and query.time_range: grouping, filters (CIDR, IPv4 and IPv6), table choice and
edges, read-only access, and the errors the CLI shows."""

from __future__ import annotations

import contextlib
import os
import sqlite3

import pytest

from collector.store import Store, StoreError, query
from collector.store.schema import SCHEMA_VERSION
from tests.store.helpers import T0, row, run

NOW = T0 + 3 * 86400  # the clock of the tests: three days after T0
HOSTS = ["10.0.0.1", "10.0.1.5", "192.168.1.1", "fd00::1", "2001:db8::5", ""]


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "imflow.db"
    rows = []
    for i, host in enumerate(HOSTS):
        rows.append(row(NOW - 3600 + 60 * i, host=host, service="bittorrent", category="p2p",
                        nbytes=1000 * (i + 1), packets=10, flows=1))
        rows.append(row(NOW - 1800, host=host, service="msn", nbytes=10 + i, packets=1, flows=1,
                        exporter="2001:db8::1" if i % 2 else "192.0.2.1"))

    async def go():
        store = Store(str(path), clock=lambda: NOW)
        await store.start()
        await store.write(rows)
        await store.stop()
    run(go())
    return str(path)


def test_top_by_service_sums_everything(db):
    assert query.top(db, None, None, now=NOW) == [
        {"service": "bittorrent", "bytes": 21000, "packets": 60, "flows": 6, "share_pct": 100 * 21000 / 21075},
        {"service": "msn", "bytes": 75, "packets": 6, "flows": 6, "share_pct": 100 * 75 / 21075},
    ]


def test_top_by_several_keys_sorted_by_bytes_then_keys(db):
    rows = query.top(db, NOW - 7200, NOW, by=("category", "exporter"), now=NOW)
    assert [(r["category"], r["exporter"], r["bytes"]) for r in rows] == [
        ("p2p", "192.0.2.1", 21000), ("im", "2001:db8::1", 11 + 13 + 15), ("im", "192.0.2.1", 10 + 12 + 14)]


def test_limit_and_no_limit(db):
    assert len(query.top(db, None, None, by=("host",), limit=2, now=NOW)) == 2
    assert len(query.top(db, None, None, by=("host",), limit=None, now=NOW)) == len(HOSTS)


@pytest.mark.parametrize("filt, hosts", [
    (["10.0.0.0/16"], {"10.0.0.1", "10.0.1.5"}),
    (["10.0.0.0/24", "192.168.1.1"], {"10.0.0.1", "192.168.1.1"}),
    (["fd00::/8"], {"fd00::1"}),
    (["2001:db8:0::5"], {"2001:db8::5"}),           # written out in full, matched normalised
    (["::/0"], {"fd00::1", "2001:db8::5"}),         # IPv6 networks never match IPv4 hosts
    (["0.0.0.0/0"], {"10.0.0.1", "10.0.1.5", "192.168.1.1"}),
    ([""], {""}),                                   # traffic with no internal end
    (["172.16.0.0/12"], set()),
])
def test_host_filter_addresses_and_networks(db, filt, hosts):
    rows = query.top(db, None, None, by=("host",), host=filt, limit=None, now=NOW)
    assert {r["host"] for r in rows} == hosts


def test_service_category_exporter_filters(db):
    rows = query.top(db, None, None, by=("host", "service"), service=["msn"], exporter=["2001:db8::1"],
                     limit=None, now=NOW)
    assert {(r["host"], r["service"]) for r in rows} == {("10.0.1.5", "msn"), ("fd00::1", "msn"), ("", "msn")}
    assert query.top(db, None, None, category=["voip"], now=NOW) == []
    assert query.top(db, None, None, category=["p2p", "im"], now=NOW)[0]["service"] == "bittorrent"


def test_time_range_and_its_edges(db):
    assert query.time_range(db) == (NOW - 3600, NOW - 1800)
    # minutes: [NOW-3600, NOW-3540) holds the first bittorrent bin only
    assert query.top(db, NOW - 3600, NOW - 3540, now=NOW) == [
        {"service": "bittorrent", "bytes": 1000, "packets": 10, "flows": 1, "share_pct": 100.0}]
    # a start in the middle of a minute counts that whole minute
    assert query.top(db, NOW - 3601 + 60, NOW - 3540 + 1, now=NOW)[0]["bytes"] == 1000 + 2000
    assert query.top(db, NOW, None, now=NOW) == []


def test_table_choice_by_retention_counts_whole_hours_and_days(db):
    start = NOW - 1800 + 1  # one second into the msn minute, half an hour after bittorrent
    exact = query.top(db, start, None, now=NOW)
    # minute retention shorter than the range: the hour table answers and counts the whole
    # hour that holds the start, bittorrent included; likewise the whole day
    by_hour = query.top(db, start, None, now=NOW, retention={"minute": 600})
    by_day = query.top(db, start, None, now=NOW, retention={"minute": 600, "hour": 600})
    assert exact == [{"service": "msn", "bytes": 75, "packets": 6, "flows": 6, "share_pct": 100.0}]
    assert by_hour == by_day == query.top(db, None, None, now=NOW)


def test_retention_recorded_by_the_collector_is_used(tmp_path):
    path = tmp_path / "imflow.db"

    async def go():
        store = Store(str(path), retention={"minute": 600}, clock=lambda: NOW)
        await store.start()
        await store.write([row(NOW - 1800 + 60, nbytes=5), row(NOW - 1800 - 60, nbytes=7)])
        await store.stop()
    run(go())
    # recorded minute retention is 10 min: a 30-min query reads the hour table (whole hour)
    assert query.top(str(path), NOW - 1800, None, now=NOW)[0]["bytes"] == 12
    assert query.top(str(path), NOW - 1800, None, now=NOW, retention={"minute": 86400})[0]["bytes"] == 5


def test_pick_resolution_respects_pruning():
    retention = {"minute": 2 * 86400, "hour": 90 * 86400, "day": float("inf")}
    assert query.pick_resolution(NOW - 3600, NOW, retention, {}) == "minute"
    assert query.pick_resolution(NOW - 3600, NOW, retention, {"minute": NOW - 60}) == "hour"
    assert query.pick_resolution(NOW - 3 * 86400, NOW, retention, {}) == "hour"
    assert query.pick_resolution(NOW - 100 * 86400, NOW, retention, {}) == "day"
    assert query.pick_resolution(NOW - 100 * 86400, NOW, retention, {"day": NOW}) == "day"  # last resort


def test_bad_arguments(db):
    for by in ((), ("host", "host"), ("port",)):
        with pytest.raises(ValueError, match="by"):
            query.top(db, None, None, by=by)
    with pytest.raises(ValueError, match="limit"):
        query.top(db, None, None, limit=0)
    with pytest.raises(ValueError, match="10.0.0.300"):
        query.top(db, None, None, host=["10.0.0.300"])


def test_missing_database_is_not_created(tmp_path):
    path = tmp_path / "nope.db"
    for call in (lambda: query.top(str(path), None, None), lambda: query.time_range(str(path))):
        with pytest.raises(StoreError) as err:
            call()
        assert err.value.reason == "missing" and str(path) in str(err.value)
    assert not path.exists()


def test_newer_schema_is_refused(db):
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 3}")
    with pytest.raises(StoreError) as err:
        query.top(db, None, None)
    assert err.value.reason == "schema" and f"version {SCHEMA_VERSION + 3}" in str(err.value)
    assert "upgrade imflow" in str(err.value)


def test_queries_never_write(db):
    os.chmod(db, 0o444)

    def state():
        with open(db, "rb") as f:
            return os.stat(db).st_mtime_ns, f.read()
    before = state()
    query.top(db, None, None, by=("host",), host=["10.0.0.0/8"])
    query.time_range(db)
    assert state() == before
    with pytest.raises(sqlite3.OperationalError, match="readonly"), contextlib.closing(query.connect(db)) as conn:
        conn.execute("DELETE FROM meta")


def test_empty_database(tmp_path):
    path = tmp_path / "imflow.db"

    async def go():
        store = Store(str(path))
        await store.start()
        await store.stop()
    run(go())
    assert query.time_range(str(path)) is None
    assert query.top(str(path), None, None) == []
