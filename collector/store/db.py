"""Store: the daemon's writer of the SQLite rollups (docs/design.md §5). The only aiosqlite user.

One flush is one transaction. The bins arrive as columns (store/columns.py); a thread, off the
event loop, merges repeats of a rollup key and sorts them in key order with NumPy (host text
made once per distinct host) and makes the parameters; they are bound once into a temporary
table (in key order: its rowid order) and added from there into the minute, hour and day tables
by three INSERT … SELECT upserts that add the counters. Key-ordered inserts are several
times cheaper for the B-trees than the random order bins are held in. The method rollups, a
few rows per (minute, exporter, service), are summed in the same thread.

After each flush a second connection checkpoints the WAL into the database file in the
background (PASSIVE: it never blocks the writer), so the flush does not wait for that copy and
its fsync; SQLite's own automatic checkpoint stays on, at a larger size, as a backstop.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import math
import sqlite3
import time
from collections.abc import Callable, Iterable

import aiosqlite

from collector.store import audit, schema, segments, staging
from collector.store.errors import from_sqlite
from collector.store.rows import AuditRow, BinRow, IfRow
from collector.turns import no_turns

log = logging.getLogger(__name__)

_COLUMNS = ("(bin INTEGER NOT NULL, exporter TEXT NOT NULL, service TEXT NOT NULL, host TEXT NOT NULL,"
            " category TEXT NOT NULL, bytes INTEGER NOT NULL, packets INTEGER NOT NULL, flows INTEGER NOT NULL,"
            " violation INTEGER NOT NULL")
# a plain table: the rows come merged and in key order (staging.staged), so its rowid order is
# the rollups' key order, and a key (a B-tree insert per row) cost a third more than appending
_TEMP_TABLES = (
    "DROP TABLE IF EXISTS temp.incoming",
    f"CREATE TEMP TABLE incoming {_COLUMNS})",
)
_ADD = ("ON CONFLICT (bin, exporter, service, host) DO UPDATE SET bytes = bytes + excluded.bytes,"
        " packets = packets + excluded.packets, flows = flows + excluded.flows,"
        " category = excluded.category, violation = max(violation, excluded.violation)")
# the flush's bins, merged per key and in key order (staging.staged); were a key repeated, the
# rollups' upserts would add the two
_STAGE = ("INSERT INTO temp.incoming (bin, exporter, service, host, category, bytes, packets, flows, violation)"
          " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
# per (bin, exporter, service, method), summed in staging.staged (schema.METHOD_TABLES)
_METHOD_ROLLUP = ("INSERT INTO {table} (bin, exporter, service, method, category, bytes, packets, flows)"
                  " VALUES (?1 - ?1 % {width}, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
                  " ON CONFLICT (bin, exporter, service, method) DO UPDATE SET bytes = bytes + excluded.bytes,"
                  " packets = packets + excluded.packets, flows = flows + excluded.flows,"
                  " category = excluded.category")
_ROLLUP = ("INSERT INTO {table} (bin, exporter, service, host, category, bytes, packets, flows, violation)"
           " SELECT bin - bin % {width}, exporter, service, host, category, bytes, packets, flows, violation"
           " FROM temp.incoming WHERE true " + _ADD)
_IF_ROLLUP = ("INSERT INTO {table} (bin, exporter, if_index, direction, service, if_name, category,"
              " bytes, packets, flows) VALUES (?1 - ?1 % {width}, ?2, ?3, ?5, ?6, ?4, ?7, ?8, ?9, ?10)"
              " ON CONFLICT (bin, exporter, if_index, direction, service) DO UPDATE"
              " SET bytes = bytes + excluded.bytes, packets = packets + excluded.packets,"
              " flows = flows + excluded.flows, category = excluded.category,"
              " if_name = CASE excluded.if_name WHEN '' THEN if_name ELSE excluded.if_name END")
# octets a page of a new database (docs/stores.md): SQLite's 4 KiB. From 2026-12-05 a database
# made with the audit log on got 16 KiB pages, which cut SQLite's cost of writing the log's
# chunks (system calls per page) by a third and cost the rollups at the first flush of an hour
# or day and host-range queries; since the chunks went to segment files (schema version 4)
# SQLite writes only their index rows, and its threads spent no more with 4 KiB (bench/RESULTS.md)
PAGE_SIZE = 4096
_AUTOCHECKPOINT_OCTETS = 64 << 20  # of WAL, if the background checkpoints lag
# The writer's page cache, in KiB (PRAGMA cache_size = -N). It was 64 MiB, and with the audit log
# on it fills: every flush appends a second of chunks (about 30 MiB at 1 M flows/s), whose pages
# are never read again by the writer, and the cache keeps them until it is full, so a collector's
# RSS grew by up to 64 MiB over its first minutes (issue 21). A transaction larger than the
# cache spills its dirty pages to the WAL, where the commit would write them anyway; the rollups'
# upserts touch the current minute's, hour's and day's keys, a few MiB at 100,000 bins, and the
# operating system's page cache holds the rest of the file. 1M-bin flushes took the same time
# with 8 and 64 MiB (bench/flush_stall.py; bench/RESULTS.md, "Memory, again").
WRITER_CACHE_KIB = 8192
# What SQLite does with the octets it deletes. Debian builds it with SQLITE_SECURE_DELETE, so
# by default every page freed is overwritten with zeros: once the audit log is at its row
# bound (a busy site gets there in hours) each flush's trim wrote the old chunks' pages again,
# to the WAL and by the checkpoint, as many octets as the new chunks (SQLite's threads 92-106
# CPU ticks in 10 s at 200,000 v5 datagrams/s, against 64-71 with FAST). FAST still clears
# what is deleted inside the pages kept (rollup rows, chunk index rows) but leaves freed pages
# as they were until they are reused, as SQLite's own default leaves them (docs/audit.md).
SECURE_DELETE = "FAST"


def _probe(path: str) -> None:
    sqlite3.connect(path).close()


def _utc(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).isoformat(timespec="seconds")


class Store:
    """The rollup database of one collector. `retention`: seconds per resolution ("minute",
    "hour", "day"); `busy_timeout`: seconds a write waits for another writer's lock;
    `max_size`: optional cap on the database size in bytes (writes past it fail as "full");
    `audit_max_age` (seconds) and `audit_max_rows`: the bounds of the flow audit log;
    `page_size`: octets a page if the database is new (an existing one keeps its own)."""

    def __init__(self, path: str, retention: dict[str, float] | None = None,
                 clock: Callable[[], float] = time.time, busy_timeout: float = 5.0,
                 max_size: int | None = None, audit_max_age: float = schema.DEFAULT_AUDIT_MAX_AGE,
                 audit_max_rows: int = schema.DEFAULT_AUDIT_MAX_ROWS, page_size: int = PAGE_SIZE,
                 audit_segments: bool = True):
        self.path = path
        self.retention = schema.resolve_retention(retention)
        self.clock = clock
        self.busy_timeout = busy_timeout
        self.max_size = max_size
        self.audit_max_age = audit_max_age
        self.audit_max_rows = audit_max_rows
        self.page_size = page_size
        self.audit_pruned = 0  # audit log rows the last prune deleted (past audit_max_age)
        # the audit log's chunks in segment files beside the database (collector/store/segments.py);
        # in `data` as before for a database with no directory of its own (in memory) or when asked
        self.segments = (segments.SegmentWriter(path) if audit_segments and path not in ("", ":memory:")
                         and not path.startswith("file:") else None)
        self._conn: aiosqlite.Connection | None = None
        self._checkpointer: aiosqlite.Connection | None = None
        self._checkpoint_task: asyncio.Task | None = None
        # called by the write's threads before each step of Python work (each chunk of
        # parameter tuples): the daemon sets its event loop's turn here (collector/turns.py)
        self.pause: Callable[[], None] = no_turns

    async def start(self) -> None:
        """Open (create if missing), switch to WAL, migrate to the current schema."""
        try:
            # A failed aiosqlite.connect leaves its worker thread to finish on a loop that may be
            # closed by then; opening once in plain sqlite3 first turns the usual failures
            # (missing directory, read-only file system) into a clean StoreError.
            await asyncio.to_thread(_probe, self.path)
            self._conn = await aiosqlite.connect(self.path, timeout=self.busy_timeout,
                                                 isolation_level=None)
        except sqlite3.Error as exc:
            raise from_sqlite(exc, self.path, "open") from None
        try:
            await self._setup()
        except BaseException as exc:
            await self._close()
            if isinstance(exc, sqlite3.Error):
                raise from_sqlite(exc, self.path, "open", self.busy_timeout) from None
            raise

    async def _setup(self) -> None:
        conn = self._conn
        if not await self._scalar("PRAGMA page_count"):
            # a new database only: an existing one keeps its page size (in WAL only a VACUUM
            # could change it, a rewrite of the whole file: not done at start)
            await conn.execute(f"PRAGMA page_size = {int(self.page_size)}")
        mode = await self._scalar("PRAGMA journal_mode = WAL")
        if str(mode).lower() != "wal":
            log.warning("%s: journal mode is %s, not WAL; readers may block the collector", self.path, mode)
        for pragma in ("synchronous = NORMAL", "temp_store = MEMORY", f"cache_size = -{WRITER_CACHE_KIB}",
                       f"secure_delete = {SECURE_DELETE}"):
            await conn.execute(f"PRAGMA {pragma}")
        if self.max_size is not None:
            page_size = await self._scalar("PRAGMA page_size")
            await conn.execute(f"PRAGMA max_page_count = {max(1, self.max_size // page_size)}")
        await conn.execute("BEGIN IMMEDIATE")
        try:
            await self._migrate()
            now = self.clock()
            meta = [("last_start", _utc(now))]
            meta += [(f"retention.{res}", repr(sec)) for res, sec in self.retention.items()]
            await conn.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", meta)
            await conn.execute("COMMIT")
        finally:
            if conn.in_transaction:
                await conn.execute("ROLLBACK")
        for stmt in _TEMP_TABLES:
            await conn.execute(stmt)
        page_size = await self._scalar("PRAGMA page_size")  # an existing database's own
        await conn.execute(f"PRAGMA wal_autocheckpoint = {_AUTOCHECKPOINT_OCTETS // page_size}")
        self._checkpointer = await aiosqlite.connect(self.path, timeout=0, isolation_level=None)
        await self._sweep()  # segments an earlier run left with no row: their grace starts now

    async def _migrate(self) -> None:
        version = await self._scalar("PRAGMA user_version")
        app_id = await self._scalar("PRAGMA application_id")
        has_tables = bool(await self._scalar("SELECT count(*) FROM sqlite_schema WHERE type = 'table'"))
        schema.check_version(version, app_id, has_tables, self.path)
        now = _utc(self.clock())
        for target in range(version + 1, schema.SCHEMA_VERSION + 1):
            for stmt in schema.MIGRATIONS[target]:
                await self._conn.execute(stmt)
            if target == 1:
                await self._conn.execute(f"PRAGMA application_id = {schema.APPLICATION_ID}")
                await self._conn.execute("INSERT INTO meta VALUES ('created_at', ?)", (now,))
            await self._conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (f"schema.{target}", now))
            await self._conn.execute(f"PRAGMA user_version = {target}")
            log.info("%s: schema migrated to version %d", self.path, target)

    async def write(self, rows: Iterable[BinRow], if_rows: Iterable[IfRow] = (),
                    audit_rows: Iterable[AuditRow] = ()) -> None:
        """Add `rows` (and per-interface `if_rows`: the flush's `BinColumns` / `IfColumns`, or
        `BinRow`s / `IfRow`s) into the minute, hour and day rollups and append `audit_rows` to the flow audit log (trimmed to its row bound), all in one
        transaction. On failure nothing is written and StoreError says why; the caller keeps
        the rows and retries."""
        conn = self._require()
        # rows and interface rows (BinColumns / IfColumns, or lists of BinRow / IfRow) become
        # parameters in a thread: no pass over them on the event loop. Each await is a turn of
        # the loop, which a busy loop gives late (a batch's time each): an audit-only write (the
        # daemon's early one) takes none it need not.
        no_bins = isinstance(rows, (list, tuple)) and not rows and isinstance(if_rows, (list, tuple)) and not if_rows
        staged = staging.Staged() if no_bins else await asyncio.to_thread(staging.staged, rows, if_rows, self.pause)
        # the audit rows as chunks: the daemon's come encoded; others (rows, a batch) are encoded
        # in a thread (NumPy passes over every flow: a million of them would stall the intake)
        if isinstance(audit_rows, audit.AuditChunks):  # encoded already: the daemon's
            audit_params = audit.params(audit_rows)
        else:
            audit_params = await asyncio.to_thread(audit.params, audit_rows) if audit_rows else []
        if not staged.n_rows and not staged.if_rows and not audit_params:
            return
        try:
            await conn.execute("BEGIN IMMEDIATE")
            if staged.n_rows:
                await conn.executemany(_STAGE, staged.rows)
                for res, (table, width) in schema.RESOLUTIONS.items():
                    await conn.execute(_ROLLUP.format(table=table, width=width))
                    if staged.methods:
                        await conn.executemany(_METHOD_ROLLUP.format(table=schema.METHOD_TABLES[res], width=width),
                                               staged.methods)
            if staged.if_rows:
                for res, (_, width) in schema.RESOLUTIONS.items():
                    await conn.executemany(_IF_ROLLUP.format(table=schema.IF_TABLES[res], width=width),
                                           staged.if_rows)
            if audit_params and self.segments is not None:
                next_id = await self._scalar("SELECT coalesce(max(id), 0) + 1 FROM audit_chunk")
                located = await asyncio.to_thread(self.segments.append, next_id, audit_params)
                await conn.executemany(audit.INSERT_AT, located)
            elif audit_params:
                await conn.executemany(audit.INSERT, audit_params)
            if audit_params:
                await conn.execute(audit.TRIM, (self.audit_max_rows,))
            if staged.n_rows:
                await conn.execute("DELETE FROM temp.incoming")
            await conn.execute("COMMIT")
        except sqlite3.Error as exc:
            await self._rollback()
            raise from_sqlite(exc, self.path, "write", self.busy_timeout) from None
        except BaseException:
            await self._rollback()
            raise
        if audit_params and self.segments is not None and self.segments.sweep_due():
            await self._sweep()
        if self._checkpoint_task is None or self._checkpoint_task.done():
            self._checkpoint_task = asyncio.create_task(self._checkpoint())

    async def _sweep(self) -> None:
        """The segments no chunk row points into any more removed (after their grace)."""
        if self.segments is None:
            return
        try:
            async with self._conn.execute(audit.SEGMENTS) as cur:
                rows = await cur.fetchall()
            largest = await self._scalar("SELECT coalesce(max(id), 0) FROM audit_chunk")
            await asyncio.to_thread(self.segments.sweep, [r[0] for r in rows], largest)
        except (sqlite3.Error, OSError) as exc:  # the next write sweeps again
            log.warning("%s: removing the audit log's unused segments: %s", self.path, exc)

    async def _checkpoint(self) -> None:
        try:
            await self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except (sqlite3.Error, ValueError, AttributeError) as exc:  # closed meanwhile, or busy
            log.debug("%s: background checkpoint: %s", self.path, exc)

    async def prune(self) -> dict[str, int]:
        """Delete the bins that retention no longer keeps, and audit log rows older than
        `audit_max_age`; rows deleted per resolution (traffic and interface rollups together;
        the audit log's count is `audit_pruned`)."""
        conn = self._require()
        now = self.clock()
        deleted: dict[str, int] = {}
        try:
            await conn.execute("BEGIN IMMEDIATE")
            for res, (table, width) in schema.RESOLUTIONS.items():
                cutoff = schema.horizon(now, self.retention[res], width)
                deleted[res] = 0
                if math.isinf(cutoff):
                    continue
                for name in (table, schema.IF_TABLES[res], schema.METHOD_TABLES[res]):
                    cur = await conn.execute(f"DELETE FROM {name} WHERE bin < ?", (int(cutoff),))
                    deleted[res] += cur.rowcount
                await conn.execute(
                    "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE"
                    " SET value = max(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER))",
                    (f"pruned.{res}", str(int(cutoff))))
            audit_deleted = 0
            if not math.isinf(self.audit_max_age):
                cutoff_ms = int((now - self.audit_max_age) * 1000)
                audit_deleted = await self._scalar(audit.PRUNED_ROWS, (cutoff_ms,))
                await conn.execute(audit.PRUNE, (cutoff_ms,))
            await conn.execute("COMMIT")
        except sqlite3.Error as exc:
            await self._rollback()
            raise from_sqlite(exc, self.path, "prune", self.busy_timeout) from None
        except BaseException:
            await self._rollback()
            raise
        if any(deleted.values()) or audit_deleted:
            log.info("%s: pruned %s", self.path, ", ".join(
                [f"{n} {r} rows" for r, n in deleted.items()] + [f"{audit_deleted} audit log rows"]))
        self.audit_pruned = audit_deleted
        if audit_deleted:
            await self._sweep()
        return deleted

    async def stop(self) -> None:
        """Close the database (the WAL is checkpointed by SQLite on the last close)."""
        await self._close()

    def _require(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise RuntimeError("Store.start() was not called (or stop() was)")
        return self._conn

    async def _scalar(self, sql: str, params=()):
        async with self._conn.execute(sql, params) as cur:
            row = await cur.fetchone()
        return row[0]

    async def _rollback(self) -> None:
        conn = self._conn
        try:
            if conn is not None and conn.in_transaction:
                await conn.execute("ROLLBACK")
        except sqlite3.Error as exc:  # SQLite may have rolled back already (FULL, IOERR)
            log.debug("%s: rollback: %s", self.path, exc)

    async def _close(self) -> None:
        if self._checkpoint_task is not None:
            await self._checkpoint_task
            self._checkpoint_task = None
        for attr in ("_checkpointer", "_conn"):  # the writer last: its close checkpoints fully
            conn = getattr(self, attr)
            setattr(self, attr, None)
            if conn is not None:
                try:
                    await conn.close()
                except sqlite3.Error as exc:
                    log.warning("%s: close: %s", self.path, exc)
