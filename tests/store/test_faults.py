"""Real SQLite faults, no mocks: a lock held by another connection, a read-only file system,
a full database (size cap and a full tmpfs), and write errors from an immutable ext4 file.

After each fault the failed flush left nothing behind, and the retried flush makes the totals
exact. The file-system tests mount their own tmpfs / loop ext4 (root); they skip with the
reason where the machine does not allow mounting.
"""

from __future__ import annotations

import os
import sqlite3
import time

import pytest

from collector.store import Store, StoreError, query
from tests.store.helpers import T0, chattr, expected, ext4, remount, row, run, table_contents, tmpfs, totals


def batch(n: int, bin_: int = T0 + 60, offset: int = 0):
    return [row(bin_, host=f"10.0.{i >> 8 & 255}.{i & 255}", service=f"svc{i % 7}", nbytes=1000 + i + offset)
            for i in range(n)]


def assert_exact(db, rows):
    for res, width in (("minute", 60), ("hour", 3600), ("day", 86400)):
        assert table_contents(db, res) == expected(rows, width)


def test_locked_by_another_writer_then_retry(tmp_path):
    db = tmp_path / "imflow.db"
    first, second = batch(50), batch(50, offset=7)

    async def go():
        store = Store(str(db), busy_timeout=0.2)
        await store.start()
        await store.write(first)
        other = sqlite3.connect(db, isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")
        t = time.monotonic()
        with pytest.raises(StoreError) as err:
            await store.write(second)
        waited = time.monotonic() - t
        other.execute("ROLLBACK")
        other.close()
        await store.write(second)  # the caller kept the rows and retries
        await store.stop()
        return err.value, waited
    err, waited = run(go())
    assert err.reason == "locked" and waited >= 0.19
    assert str(db) in str(err) and "0.2 s" in str(err) and "\n" not in str(err)
    assert_exact(db, first + second)


def test_full_at_the_size_cap_leaves_nothing_half_written(tmp_path):
    db = tmp_path / "imflow.db"
    small, big = batch(20), batch(5000, bin_=T0 + 120)

    async def capped():
        store = Store(str(db), max_size=256 * 1024)
        await store.start()
        await store.write(small)
        before = totals(db)
        with pytest.raises(StoreError) as err:
            await store.write(big)
        assert totals(db) == before
        await store.write(small)  # still usable for what fits
        await store.stop()
        return err.value
    err = run(capped())
    assert err.reason == "full" and str(db) in str(err)

    async def uncapped():
        store = Store(str(db))
        await store.start()
        await store.write(big)
        await store.stop()
    run(uncapped())
    assert_exact(db, small + small + big)


def test_full_file_system_then_space_freed(tmp_path):
    with tmpfs(tmp_path / "fs", size="1m") as fs:
        db = fs / "imflow.db"
        ballast = fs / "ballast"
        ballast.write_bytes(b"\0" * (600 * 1024))
        written = []

        async def go():
            store = Store(str(db))
            await store.start()
            err = None
            for i in range(40):
                rows = batch(400, bin_=T0 + 60 * (i + 1))
                before = totals(db)
                try:
                    await store.write(rows)
                except StoreError as exc:
                    err = exc
                    assert totals(db) == before
                    ballast.unlink()
                    await store.write(rows)
                written.extend(rows)
                if err:
                    break
            await store.stop()
            return err
        err = run(go())
        assert err is not None, "the tmpfs never filled up"
        assert err.reason == "full" and str(db) in str(err)
        assert_exact(db, written)


def test_read_only_file_system(tmp_path):
    with tmpfs(tmp_path / "fs") as fs:
        db = fs / "imflow.db"
        rows = batch(30)

        async def fill():
            store = Store(str(db))
            await store.start()
            await store.write(rows)
            await store.stop()
        run(fill())
        remount(fs, "ro")
        try:
            for path in (db, fs / "new.db"):
                with pytest.raises(StoreError) as err:
                    run(Store(str(path)).start())
                assert err.value.reason == "readonly", err.value
                assert str(path) in str(err.value) and "read-only file system" in str(err.value)
            assert not (fs / "new.db").exists()
            # the CLI still reads a database on read-only media (a snapshot, a mounted backup)
            got = query.top(str(db), None, None, by=("service",), limit=None)
            assert [{k: v for k, v in r.items() if k != "share_pct"} for r in got] == [
                {"service": s, **_sums([r for r in rows if r.service == s])}
                for s in sorted({r.service for r in rows}, key=lambda s: -_sums([r for r in rows if r.service == s])["bytes"])]
        finally:
            remount(fs, "rw")
        more = batch(30, offset=1)

        async def retry():
            store = Store(str(db))
            await store.start()
            await store.write(more)
            await store.stop()
        run(retry())
        assert_exact(db, rows + more)


def _sums(rows):
    return {"bytes": sum(r.bytes for r in rows), "packets": sum(r.packets for r in rows),
            "flows": sum(r.flows for r in rows)}


def test_write_error_from_an_immutable_file_then_recovered(tmp_path):
    with ext4(tmp_path / "ext4") as fs:
        db = fs / "imflow.db"
        first, second = batch(100), batch(100, bin_=T0 + 120)

        async def go():
            store = Store(str(db))
            await store.start()
            await store.write(first)
            before = totals(db)
            chattr("+i", db, f"{db}-wal")
            try:
                with pytest.raises(StoreError) as err:
                    await store.write(second)
            finally:
                chattr("-i", db, f"{db}-wal")
            assert totals(db) == before
            await store.write(second)
            await store.stop()
            return err.value
        err = run(go())
        assert err.reason == "io" and str(db) in str(err)
        assert_exact(db, first + second)
        assert not os.path.exists(f"{db}-wal")  # closed cleanly: WAL checkpointed and removed
