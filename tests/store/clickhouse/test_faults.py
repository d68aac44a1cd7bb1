"""Faults against a real clickhouse-server: stopped mid-run and restarted (the daemon's bins wait
in the writer's queue and are written later: totals still exact), a table dropped (created
again, counted), the queue's bound reached (the oldest rows dropped, counted), a newer schema
(refused)."""

from __future__ import annotations

import asyncio
import random
import time
import urllib.request

import pytest

from collector.store import BinRow, StoreError
from collector.store.clickhouse import BufferedError, ClickHouseReader, ClickHouseStore
from tests.daemon.test_daemon import Daemon, truth_totals
from tests.store.clickhouse.server import free_port
from tests.store.clickhouse.test_two_sites import ch_config, replay, top_totals
from tests.support import softflowd

T0 = 1_700_000_000 - 1_700_000_000 % 86400


def scrape(port: int) -> dict[str, float]:
    """The unlabelled samples of the daemon's /metrics (the endpoint starts after the listeners)."""
    deadline = time.monotonic() + 10
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                text = r.read().decode()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    return {line.split()[0]: float(line.split()[1]) for line in text.splitlines()
            if line and not line.startswith("#") and "{" not in line}


def rows(n: int, seed: int) -> list[BinRow]:
    rnd = random.Random(seed)
    return [BinRow(T0 + rnd.randrange(0, 3600, 60), "192.0.2.1", rnd.choice(["msn", "sip", "other"]), "im",
                   f"10.0.0.{rnd.randrange(1, 50)}", rnd.randrange(1, 10**6), rnd.randrange(1, 100), 1)
            for _ in range(n)]


def total(node, database: str, table: str) -> int:
    return int(node.query(f"SELECT sum(bytes) FROM {database}.{table}").strip() or 0)


def store(node, database: str, **kw) -> ClickHouseStore:
    return ClickHouseStore([node.url], database=database, clock=lambda: T0 + 3600, **kw)


@pytest.mark.skipif(not softflowd.available(), reason="softflowd not on PATH")
def test_server_stopped_mid_run_and_a_table_dropped_lose_nothing_else(tmp_path, sessions, pair, database):
    pcap, truth = sessions
    node = pair[0]
    cfg = ch_config(tmp_path, "site", [node.url], database, cluster="")
    first, second = (softflowd.export(pcap, args) for args in (["-v", "9", "-a"], ["-v", "10", "-A", "milli"]))
    metrics = free_port()
    d = Daemon(tmp_path, tmp_path / "site.db", "--config", str(cfg), "--metrics", f"127.0.0.1:{metrics}")
    replay(first, d.port)
    time.sleep(1.5)  # flushed (refresh time 1 s)
    node.stop()
    try:
        replay(second, d.port)
        deadline = time.monotonic() + 20
        while scrape(metrics).get("imflow_store_buffered_rows", 0) == 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        figures = scrape(metrics)
        assert figures["imflow_store_buffered_rows"] > 0 and figures["imflow_store_errors_total"] > 0, figures
        assert "rows kept in memory" in d.text()
    finally:
        node.start()
    deadline = time.monotonic() + 20
    while scrape(metrics).get("imflow_store_buffered_rows", 1) > 0 and time.monotonic() < deadline:
        time.sleep(0.2)  # the next flushes write the queue
    assert scrape(metrics)["imflow_store_dropped_rows_total"] == 0
    # a table dropped under the running collector: created again at the next flush, logged
    node.query(f"DROP TABLE {database}.rollup_1d")
    replay(first, d.port)
    deadline = time.monotonic() + 20
    while "creating it again" not in d.text() and time.monotonic() < deadline:
        time.sleep(0.2)
    deadline = time.monotonic() + 10
    while scrape(metrics).get("imflow_store_tables_recreated_total", 0) == 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert scrape(metrics)["imflow_store_tables_recreated_total"] == 1
    assert d.stop() == 0, d.text()
    assert "rollup_1d" in d.text() and "creating it again" in d.text()
    line = d.stopped_line()
    assert "store-errors 0" not in line, line
    assert top_totals("--config", str(cfg)) == truth_totals(truth, times=3)  # the minute rollup
    day_bytes = int(node.query(f"SELECT sum(bytes) FROM {database}.rollup_1d").strip())
    assert day_bytes == sum(v for k, v in truth_totals(truth).items() if k[2] == "bytes")  # the third only


def test_dropped_table_is_created_again_and_counted(pair, database):
    node = pair[0]
    a, b = rows(200, 1), rows(200, 2)

    async def run():
        s = store(node, database)
        await s.start()
        await s.write(a)
        node.query(f"DROP TABLE {database}.rollup_1h")
        await s.write(b)
        await s.stop()
        return s.stats

    stats = asyncio.run(run())
    assert stats.recreated == 1
    assert total(node, database, "rollup_1m") == sum(r.bytes for r in a + b)
    assert total(node, database, "rollup_1h") == sum(r.bytes for r in b)  # a went with the table
    assert total(node, database, "rollup_1d") == sum(r.bytes for r in a + b)


def test_queue_bound_drops_the_oldest_and_counts(pair, database):
    node = pair[0]
    batches = [rows(400, seed) for seed in (3, 4, 5)]

    async def run():
        s = store(node, database, max_buffer_rows=1000, timeout=2)
        await s.start()
        node.stop()
        try:
            for batch in batches:
                with pytest.raises(BufferedError) as exc:
                    await s.write(batch)
                assert exc.value.reason == "unreachable" and exc.value.kept
        finally:
            node.start()
        assert (s.stats.buffered_rows, s.stats.dropped_rows) == (800, 400)
        await s.write([])  # the queue, oldest first
        assert (s.stats.buffered_rows, s.stats.dropped_rows) == (0, 400)
        await s.stop()

    asyncio.run(run())
    assert total(node, database, "rollup_1m") == sum(r.bytes for r in batches[1] + batches[2])


def test_newer_schema_is_refused(pair, database):
    node = pair[0]

    async def run(s):
        await s.start()
        await s.stop()

    asyncio.run(run(store(node, database)))
    node.query(f"INSERT INTO {database}.schema_version VALUES (99, now(), 'future')")
    with pytest.raises(StoreError, match="newer imflow") as exc:
        asyncio.run(run(store(node, database)))
    assert exc.value.reason == "schema"
    with pytest.raises(StoreError, match="newer imflow"):
        ClickHouseReader([node.url], database=database).time_range()


def test_prune_drops_whole_partitions_past_retention(pair, database):
    """Minute rollups kept 2 days and the audit log 3 days: a partition (a UTC day) goes once
    all of it is older than that; the hour and day rollups keep everything."""
    from collector.store.rows import AuditRow

    node = pair[0]
    now = T0 + 10 * 86400 + 3600  # 01:00 on day 10
    days = range(0, 11)
    bins = [BinRow(T0 + d * 86400 + 120, "192.0.2.1", "msn", "im", "10.0.0.1", 1000 + d, 1, 1) for d in days]
    flows = [AuditRow(T0 + d * 86400 + 5.5, T0 + d * 86400 + 6.25, "192.0.2.1", "10.0.0.1", "198.51.100.7",
                      50000, 1863, 6, "msn", "im", 2000 + d, 2, 0, 0, "out") for d in days]

    async def run():
        s = ClickHouseStore([node.url], database=database, clock=lambda: now,
                            retention={"minute": 2 * 86400}, audit_max_age=3 * 86400)
        await s.start()
        await s.write(bins, (), flows)
        dropped = await s.prune()
        await s.stop()
        return dropped, s.audit_pruned

    dropped, audit_pruned = asyncio.run(run())
    # minute: day 8 starts before now - 2 d (day 8, 01:00) and ends after it: kept; days 0-7 go
    assert dropped == {"minute": 8, "hour": 0, "day": 0}
    assert total(node, database, "rollup_1m") == sum(1000 + d for d in range(8, 11))
    assert total(node, database, "rollup_1h") == sum(1000 + d for d in days)
    assert audit_pruned == 7  # days 0-6 end before day 7, 01:00
    assert total(node, database, "audit") == sum(2000 + d for d in range(7, 11))


def test_version_1_is_migrated_to_2(pair, database):
    """A database a version-1 imflow made (no method rollups) gets them at the next start, and
    the version table records both versions."""
    from collector.store.clickhouse import schema

    node = pair[0]
    names = schema.Names(database)
    for stmt in schema.MIGRATIONS[1](names):
        node.query(stmt)
    node.query(f"INSERT INTO {names.version_table} VALUES (1, now(), 'v1')")
    assert "method_rollup_1m" not in node.query(f"SHOW TABLES FROM {database}")
    written = [r._replace(method="port") for r in rows(50, 9)]

    async def run():
        s = store(node, database)
        await s.start()
        await s.write(written)
        await s.stop()

    asyncio.run(run())
    assert node.query(f"SELECT version FROM {names.version_table} ORDER BY version").split() == ["1", "2"]
    assert total(node, database, "method_rollup_1h") == sum(r.bytes for r in written)
