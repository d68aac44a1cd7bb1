"""Store lifecycle, upserts into all three rollups, schema versioning and migration, prune."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3

import pytest

from collector.store import BinRow, IfRow, Store, StoreError
from collector.store.schema import APPLICATION_ID, SCHEMA_VERSION
from tests.store.helpers import T0, expected, row, run, table_contents


def test_write_adds_into_all_three_resolutions(tmp_path):
    db = tmp_path / "imflow.db"
    flushes = [
        [row(T0 + 60), row(T0 + 120, nbytes=50), row(T0 + 3600, host="fd00::5", service="sip", category="voip")],
        [row(T0 + 60, nbytes=7, packets=1), row(T0 + 86400 + 60, host="")],  # late row, next day
        [row(T0 + 60, nbytes=7, packets=1)],  # a restart re-sends: adds, never duplicates
    ]

    async def go():
        store = Store(str(db))
        await store.start()
        for flush in flushes:
            await store.write(flush)
        await store.stop()
    run(go())
    everything = [r for flush in flushes for r in flush]
    for res, width in (("minute", 60), ("hour", 3600), ("day", 86400)):
        assert table_contents(db, res) == expected(everything, width)
    assert table_contents(db, "minute")[(T0 + 60, "192.0.2.1", "msn", "10.0.0.1")] == (114, 4, 3)
    assert table_contents(db, "hour")[(T0, "192.0.2.1", "msn", "10.0.0.1")] == (164, 6, 4)


def test_repeats_within_one_flush_merge_and_bins_are_floored(tmp_path):
    db = tmp_path / "imflow.db"
    rows = [row(T0 + 60), row(T0 + 60), row(T0 + 61, nbytes=1)]  # 61 belongs to the minute at 60

    async def go():
        store = Store(str(db))
        await store.start()
        await store.write(rows)
        await store.write([])
        await store.stop()
    run(go())
    assert table_contents(db, "minute") == {(T0 + 60, "192.0.2.1", "msn", "10.0.0.1"): (201, 6, 3)}


def test_category_follows_the_latest_write(tmp_path):
    db = tmp_path / "imflow.db"

    async def go():
        store = Store(str(db))
        await store.start()
        await store.write([row(T0, service="teams", category="im")])
        await store.write([row(T0, service="teams", category="collab")])
        await store.stop()
    run(go())
    with contextlib.closing(sqlite3.connect(db)) as conn:
        assert {c for (c,) in conn.execute("SELECT category FROM rollup_1h")} == {"collab"}


def test_new_database_is_wal_versioned_and_documented_in_meta(tmp_path):
    db = tmp_path / "new.db"
    run(_open_close(db, Store(str(db), retention={"minute": 3600})))
    with contextlib.closing(sqlite3.connect(db)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        meta = dict(conn.execute("SELECT key, value FROM meta"))
        assert {"created_at", "schema.1", "last_start"} <= meta.keys()
        assert float(meta["retention.minute"]) == 3600
        assert float(meta["retention.day"]) == 1826 * 86400
        indexes = {n for (n,) in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'index'"
                                              " AND name NOT LIKE 'sqlite_%'")}
        assert {"rollup_1h_host", "rollup_1h_service", "rollup_1d_host", "rollup_1d_service"} <= indexes
        plans = " ".join(r[3] for r in conn.execute(
            "EXPLAIN QUERY PLAN SELECT service, sum(bytes) FROM rollup_1h WHERE host = ? AND bin >= ?"
            " GROUP BY service", ("10.0.0.1", T0)))
        assert "rollup_1h_host" in plans


async def _open_close(db, store):
    await store.start()
    await store.stop()


def test_migration_from_an_empty_file_then_reopen_keeps_data(tmp_path):
    db = tmp_path / "empty.db"
    db.touch()  # version 0: an empty file, as `touch` or a provisioning tool leaves it

    async def first():
        store = Store(str(db))
        await store.start()
        await store.write([row(T0 + 60, nbytes=5)])
        await store.stop()
    run(first())
    with contextlib.closing(sqlite3.connect(db)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        created = dict(conn.execute("SELECT key, value FROM meta"))["created_at"]

    async def again():
        store = Store(str(db))
        await store.start()
        await store.write([row(T0 + 60, nbytes=6)])
        await store.stop()
    run(again())
    with contextlib.closing(sqlite3.connect(db)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        meta = dict(conn.execute("SELECT key, value FROM meta"))
        assert meta["created_at"] == created and meta["schema.1"] == created
    assert table_contents(db, "minute") == {(T0 + 60, "192.0.2.1", "msn", "10.0.0.1"): (11, 4, 2)}


def test_newer_schema_is_refused_and_left_alone(tmp_path):
    db = tmp_path / "future.db"
    run(_open_close(db, Store(str(db))))
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    before = db.read_bytes()
    with pytest.raises(StoreError) as err:
        run(Store(str(db)).start())
    assert err.value.reason == "schema"
    message = str(err.value)
    assert f"schema version {SCHEMA_VERSION + 1}" in message and "upgrade imflow" in message
    assert str(db) in message and "\n" not in message
    assert db.read_bytes() == before


def test_a_foreign_database_is_refused(tmp_path):
    db = tmp_path / "other.db"
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute("CREATE TABLE accounts (id INTEGER PRIMARY KEY)")
    with pytest.raises(StoreError) as err:
        run(Store(str(db)).start())
    assert err.value.reason == "schema" and "not an imflow database" in str(err.value)


def test_not_a_database_at_all(tmp_path):
    db = tmp_path / "junk.db"
    db.write_bytes(b"this is not SQLite" * 100)
    with pytest.raises(StoreError) as err:
        run(Store(str(db)).start())
    assert err.value.reason == "corrupt" and str(db) in str(err.value)


def test_missing_directory_is_a_clear_error(tmp_path):
    db = tmp_path / "no" / "such" / "dir" / "imflow.db"
    with pytest.raises(StoreError) as err:
        run(Store(str(db)).start())
    assert err.value.reason == "cantopen" and "does not exist" in str(err.value)


def test_write_before_start_is_a_programming_error(tmp_path):
    with pytest.raises(RuntimeError):
        run(Store(str(tmp_path / "x.db")).write([row(T0)]))


def test_bad_retention_is_refused_at_construction():
    with pytest.raises(ValueError, match="unknown resolution"):
        Store("x.db", retention={"week": 1})
    with pytest.raises(ValueError, match="positive"):
        Store("x.db", retention={"minute": 0})


def test_prune_deletes_exactly_the_bins_older_than_retention(tmp_path):
    db = tmp_path / "imflow.db"
    now = T0 + 10 * 86400 + 5 * 3600 + 30 * 60 + 17  # 10 days, 5 h 30 min 17 s after T0
    retention = {"minute": 3 * 3600, "hour": 2 * 86400, "day": 7 * 86400}
    bins = range(T0, now, 1800)  # a row every 30 minutes over 10 days
    rows = [row(b, nbytes=b % 997 + 1) for b in bins]

    async def go():
        store = Store(str(db), retention=retention, clock=lambda: now)
        await store.start()
        await store.write(rows)
        deleted = await store.prune()
        again = await store.prune()
        await store.stop()
        return deleted, again
    deleted, again = run(go())
    assert again == {"minute": 0, "hour": 0, "day": 0}
    for res, width in (("minute", 60), ("hour", 3600), ("day", 86400)):
        cutoff = (now - retention[res]) // width * width
        full = expected(rows, width)
        kept = {k: v for k, v in full.items() if k[0] >= cutoff}
        assert table_contents(db, res) == kept
        assert deleted[res] == len(full) - len(kept) > 0
        with contextlib.closing(sqlite3.connect(db)) as conn:
            assert int(dict(conn.execute("SELECT key, value FROM meta"))[f"pruned.{res}"]) == cutoff


def test_infinite_retention_keeps_everything(tmp_path):
    db = tmp_path / "imflow.db"

    async def go():
        store = Store(str(db), retention={"day": float("inf")}, clock=lambda: T0 + 10**9)
        await store.start()
        await store.write([row(T0)])
        deleted = await store.prune()
        await store.stop()
        return deleted
    assert run(go()) == {"minute": 1, "hour": 1, "day": 0}
    assert len(table_contents(db, "day")) == 1


def test_binrow_is_frozen_and_slotted():
    r = BinRow(T0, "192.0.2.1", "msn", "im", "10.0.0.1", 1, 1, 1)
    with pytest.raises(AttributeError):
        r.bytes = 2
    assert not hasattr(r, "__dict__")


def test_interface_rows_roll_up_with_the_traffic(tmp_path):
    db = tmp_path / "imflow.db"
    ifr = [IfRow(T0 + 60, "192.0.2.1", 3, "", "in", "msn", "im", 100, 2, 1),
           IfRow(T0 + 120, "192.0.2.1", 3, "ge-0/0/3", "in", "msn", "im", 50, 1, 1),
           IfRow(T0 + 180, "192.0.2.1", 3, "", "in", "msn", "im", 5, 1, 1),  # name unknown: kept
           IfRow(T0 + 60, "192.0.2.1", 3, "", "out", "msn", "im", 7, 1, 1)]

    async def go():
        store = Store(str(db), clock=lambda: T0 + 10 * 86400)
        await store.start()
        await store.write([row(T0 + 60)], ifr[:2])
        await store.write([], ifr[2:])
        deleted = await store.prune()
        await store.stop()
        return deleted
    assert run(go()) == {"minute": 1 + 4, "hour": 0, "day": 0}
    with contextlib.closing(sqlite3.connect(db)) as conn:
        assert conn.execute("SELECT bin, direction, if_name, bytes, packets, flows FROM if_rollup_1h"
                            " ORDER BY direction").fetchall() == [
            (T0, "in", "ge-0/0/3", 155, 4, 3), (T0, "out", "", 7, 1, 1)]
        assert conn.execute("SELECT sum(bytes) FROM if_rollup_1d").fetchone() == (162,)


def test_flushes_reach_the_main_file_while_the_store_runs(tmp_path):
    """The background checkpoint copies each flush from the WAL into the database file: a copy
    of that file alone (no -wal) already holds the rows while the collector keeps running."""
    db = tmp_path / "imflow.db"
    copy = tmp_path / "copy.db"

    def copied() -> dict:
        copy.write_bytes(db.read_bytes())
        try:
            return table_contents(copy, "minute")
        except sqlite3.OperationalError:  # not even the schema in the main file yet
            return {}
        finally:
            for suffix in ("-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(f"{copy}{suffix}")

    async def go():
        store = Store(str(db))
        await store.start()
        try:
            await store.write([row(T0 + 60, nbytes=42)])
            for _ in range(100):
                if copied():
                    break
                await asyncio.sleep(0.05)
            assert os.path.exists(f"{db}-wal")  # still open, still in WAL mode
        finally:
            await store.stop()
    run(go())
    assert table_contents(copy, "minute") == {(T0 + 60, "192.0.2.1", "msn", "10.0.0.1"): (42, 2, 1)}
