"""The page size of the database file (collector/store/db.py): a database the collector creates
gets SQLite's 4 KiB pages, the audit log on or off (16 KiB with it on from 2026-12-05 until its
chunks went to segment files); a store asked for another size on a new database makes it so; an
existing database keeps its own and works as before. The page size is read from the file's
header (octets 16-17, big-endian: SQLite's file format), not asked of SQLite; the rows written
are the truth of what is read back."""

from __future__ import annotations

import asyncio

import pytest

from collector import config as C
from collector.daemon.app import App
from collector.store import query
from collector.store.db import PAGE_SIZE
from tests.store.helpers import T0, expected, row, table_contents
from tests.store.test_audit import as_tuple, make_rows, write


def header_page_size(path) -> int:
    with open(path, "rb") as fh:
        head = fh.read(18)
    assert head[:16] == b"SQLite format 3\x00"
    n = int.from_bytes(head[16:18], "big")
    return 65536 if n == 1 else n


def _check(path, rows, audit_rows) -> None:
    assert table_contents(path, "minute") == expected(rows, 60)
    assert table_contents(path, "hour") == expected(rows, 3600)
    assert sorted(as_tuple(r) for r in query.flows(str(path), None, None, limit=None)) == \
        sorted(map(as_tuple, audit_rows))


def test_a_new_database_gets_the_page_size_asked_for(tmp_path):
    path = tmp_path / "imflow.db"
    rows, audit_rows = [row(T0 + 60 * i, host=f"10.0.{i}.1") for i in range(5)], make_rows(3000, seed=3)
    write(path, [(rows[:2], audit_rows[:1000]), (rows[2:], audit_rows[1000:])], page_size=16384)
    assert header_page_size(path) == 16384
    _check(path, rows, audit_rows)


def test_an_existing_database_keeps_its_pages_and_works(tmp_path):
    path = tmp_path / "imflow.db"
    first, later = make_rows(800, seed=4), make_rows(700, seed=5)
    rows = [row(T0 + 60 * i, host=f"10.0.{i}.1") for i in range(4)]
    write(path, [(rows[:2], first)], page_size=16384)  # as imflow made it with the log on, 2026-12-05/06
    assert header_page_size(path) == 16384
    write(path, [(rows[2:], later)])  # today's collector: 4 KiB for a new database
    assert PAGE_SIZE == 4096 and header_page_size(path) == 16384
    _check(path, rows, first + later)


@pytest.mark.parametrize("audit", [{}, {"categories": []}], ids=["audit-on", "audit-off"])
def test_the_collector_makes_4_kib_pages_with_the_audit_log_on_or_off(tmp_path, audit):
    path = tmp_path / "imflow.db"
    app = App(C.validate({"store": {"path": str(path)}, "collector": {"listen": ["127.0.0.1:0"]}, "audit": audit}))

    async def go():
        await app.start()
        app.intake.close()
        await app.store.stop()
    asyncio.run(go())
    assert header_page_size(path) == 4096
