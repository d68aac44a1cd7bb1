"""ClickHouseStore: the daemon's writer when `[store] backend = "clickhouse"` (docs/stores.md).
The same interface as the SQLite `Store`: start / write / prune / stop.

Each flush's rows become one batch: one INSERT per table (the three rollups, interface rollups
and method rollups, the audit log), into the local tables of the node in use. A batch that cannot be
written (the server down, slow past `timeout`, a table dropped) stays in an in-memory queue, in
order, and the next flush writes the queue first; a table inserted already is not inserted
again, so a batch is never added twice (except in one case: a request that timed out after the
server had done it). The queue is bounded by `max_buffer_rows`: past it the OLDEST rows go,
counted in `dropped_rows`. `write` raises `BufferedError` (a StoreError) when the queue could not
be written: the rows are kept here, so the caller must not keep them too.

A table or the database found missing is created again (`recreated`) and the batch retried
once. Retention drops whole partitions (ClickHouse 18.16 has no TTL): a partition goes when
every bin in it is older than its resolution's retention; the audit log keeps whole days, up to
`audit_max_age` and about `audit_max_rows` rows (the oldest days go first).
"""

from __future__ import annotations

import asyncio
import collections
import datetime
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from collector import __version__
from collector.store import schema as sqlite_schema
from collector.store.clickhouse import schema
from collector.store.clickhouse.client import Connection, quote
from collector.store.errors import StoreError
from collector.store.rows import AuditRow, BinRow, IfRow

log = logging.getLogger(__name__)

DEFAULT_MAX_BUFFER_ROWS = 1_000_000


class BufferedError(StoreError):
    """The write failed and the store keeps the rows for the next write: do not keep them too."""
    kept = True


@dataclass
class _Batch:
    """One flush's rows as handed in (converted per table at insert time, so a queued row costs
    only its named tuple) and the tables not yet inserted."""
    rows: list[BinRow]
    if_rows: list[IfRow]
    audit_rows: list[AuditRow]
    todo: list[str] = field(default_factory=list)

    @property
    def size(self) -> int:
        return len(self.rows) + len(self.if_rows) + len(self.audit_rows)

    def insert(self, table: str) -> tuple[tuple[str, ...], list[tuple]]:
        """(columns, rows) for one table."""
        if table == schema.AUDIT:
            return schema.AUDIT_COLUMNS, _audit_rows(self.audit_rows)
        for res, (name, width, _) in schema.ROLLUPS.items():
            if table == name:
                return schema.ROLLUP_COLUMNS, _rollup_rows(self.rows, width)
            if table == schema.IF_ROLLUPS[res]:
                return schema.IF_COLUMNS, _if_rows(self.if_rows, width)
            if table == schema.METHOD_ROLLUPS[res]:
                return schema.METHOD_COLUMNS, _method_rows(self.rows, width)
        raise KeyError(table)


@dataclass
class BufferStats:
    buffered_rows: int = 0  # rows waiting in memory now
    dropped_rows: int = 0  # rows dropped because the queue was full (the oldest first)
    failed_writes: int = 0
    recreated: int = 0  # times a missing table or database was created again
    written_batches: int = 0
    failures: collections.Counter = field(default_factory=collections.Counter)  # by reason


def _rollup_rows(rows: list[BinRow], width: int) -> list[tuple]:
    # not merged here: SummingMergeTree adds rows of one key when it merges, and every query sums
    return [(r.bin - r.bin % width, r.exporter, r.service, r.host, r.category, r.bytes, r.packets, r.flows,
             1 if r.violation else 0) for r in rows]


def _method_rows(rows: list[BinRow], width: int) -> list[tuple]:
    return [(r.bin - r.bin % width, r.exporter, r.service, r.method, r.category, r.bytes, r.packets, r.flows)
            for r in rows if getattr(r, "method", "")]


def _if_rows(rows: list[IfRow], width: int) -> list[tuple]:
    return [(r.bin - r.bin % width, r.exporter, r.if_index, r.direction, r.service, r.if_name, r.category,
             r.bytes, r.packets, r.flows) for r in rows]


def _audit_rows(rows: list[AuditRow]) -> list[tuple]:
    return [(int(round(r.start * 1000)), int(round(r.end * 1000)), r.exporter, r.host, r.peer,
             r.host_port, r.peer_port, r.proto, r.service, r.category, r.bytes, r.packets,
             r.in_if, r.out_if, r.direction) for r in rows]


class ClickHouseStore:
    """The rollups and the audit log of one collector, in ClickHouse. `urls`: HTTP interfaces
    tried in order; `cluster`: write local tables and read through Distributed ones."""

    def __init__(self, urls: list[str], database: str = "imflow", cluster: str = "",
                 retention: dict[str, float] | None = None, clock: Callable[[], float] = time.time,
                 timeout: float = 10.0, max_buffer_rows: int = DEFAULT_MAX_BUFFER_ROWS,
                 audit_max_age: float = sqlite_schema.DEFAULT_AUDIT_MAX_AGE,
                 audit_max_rows: int = sqlite_schema.DEFAULT_AUDIT_MAX_ROWS):
        self.names = schema.Names(database, cluster)
        self.conn = Connection(urls, database, timeout)
        self.retention = sqlite_schema.resolve_retention(retention)
        self.clock = clock
        self.max_buffer_rows = max_buffer_rows
        self.audit_max_age = audit_max_age
        self.audit_max_rows = audit_max_rows
        self.audit_pruned = 0
        self.stats = BufferStats()
        self.path = self.where = f"{self.conn.url} (database {database})"
        self._queue: collections.deque[_Batch] = collections.deque()
        self._ready = False  # schema checked on the node in use

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Check and migrate the schema. A server that does not answer is logged, and the rows
        wait in memory; anything else it refuses (a newer schema, an unknown cluster, a user
        without the rights) raises StoreError: the daemon does not start."""
        await self.conn.open()
        try:
            await self._ensure()
        except StoreError as exc:
            if exc.reason != "unreachable":
                await self.conn.close()
                raise
            log.warning("clickhouse: %s; flows are kept in memory (up to %d rows) until it answers",
                        exc, self.max_buffer_rows)

    async def stop(self) -> None:
        """One last try to write what is queued; what cannot be written is logged as lost."""
        try:
            if self._queue:
                await self._drain()
        except StoreError as exc:
            log.error("clickhouse: %d rows could not be written at stop: %s", self.stats.buffered_rows, exc)
        finally:
            await self.conn.close()

    async def _ensure(self) -> None:
        """Bring the node in use to SCHEMA_VERSION (refusing a newer one)."""
        c, names = self.conn, self.names
        await c.execute(f"CREATE DATABASE IF NOT EXISTS {names.database}", "create the database")
        await c.execute(f"CREATE TABLE IF NOT EXISTS {names.version_table} {schema._VERSION_DDL}",
                        "create the version table")
        (version,), = await c.fetch(f"SELECT max(version) FROM {names.version_table}", "read the schema version")
        version = int(version or 0)
        schema.check_version(version, f"{c.url} database {names.database}")
        for target in range(1, schema.SCHEMA_VERSION + 1):  # idempotent: recreates dropped tables
            for stmt in schema.MIGRATIONS[target](names):
                await c.execute(stmt, "migrate the schema")
            if target > version:
                now = datetime.datetime.fromtimestamp(self.clock(), datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")
                await c.insert(names.version_table, ("version", "applied", "imflow"),
                               [(target, now, __version__)], "record the schema version")
                log.info("clickhouse %s: schema migrated to version %d", c.url, target)
        self._ready = True
        self.path = self.where = f"{c.url} (database {names.database})"

    # --- writing -----------------------------------------------------------------------------

    async def write(self, rows: Iterable[BinRow], if_rows: Iterable[IfRow] = (),
                    audit_rows: Iterable[AuditRow] = ()) -> None:
        """Queue one flush's rows and write the queue, oldest first. Raises BufferedError when
        some of it could not be written (it stays queued; see the module docstring)."""
        # the flush hands columns (store/columns.py): their rows are built in a thread, off the loop
        rows, if_rows = await asyncio.to_thread(lambda: (list(rows), list(if_rows)))
        audit_rows = list(audit_rows)
        if rows or if_rows or audit_rows:
            batch = _Batch(rows, if_rows, audit_rows)
            for res, (table, _, _) in schema.ROLLUPS.items():
                if rows:
                    batch.todo.append(table)
                    if any(getattr(r, "method", "") for r in rows):
                        batch.todo.append(schema.METHOD_ROLLUPS[res])
                if if_rows:
                    batch.todo.append(schema.IF_ROLLUPS[res])
            if audit_rows:
                batch.todo.append(schema.AUDIT)
            self._queue.append(batch)
            self.stats.buffered_rows += batch.size
            self._bound()
        if self._queue:
            await self._drain()

    def _bound(self) -> None:
        while self.stats.buffered_rows > self.max_buffer_rows and len(self._queue) > 1:
            old = self._queue.popleft()
            self.stats.buffered_rows -= old.size
            self.stats.dropped_rows += old.size
            log.error("clickhouse: the write queue is full (%d rows): dropped the oldest flush's %d rows",
                      self.max_buffer_rows, old.size)
        if self.stats.buffered_rows > self.max_buffer_rows:  # one flush alone is over the bound
            only = self._queue[0]
            excess = self.stats.buffered_rows - self.max_buffer_rows
            self._queue.clear()
            self.stats.buffered_rows = 0
            self.stats.dropped_rows += only.size
            log.error("clickhouse: one flush of %d rows is over the write queue's bound (%d): dropped "
                      "(%d over)", only.size, self.max_buffer_rows, excess)

    async def _drain(self) -> None:
        try:
            if not self._ready:
                await self._ensure()
            while self._queue:
                batch = self._queue[0]
                while batch.todo:
                    await self._insert(batch.todo[0], *batch.insert(batch.todo[0]))
                    batch.todo.pop(0)  # done: never inserted twice
                self._queue.popleft()
                self.stats.buffered_rows -= batch.size
                self.stats.written_batches += 1
        except StoreError as exc:
            self.stats.failed_writes += 1
            self.stats.failures[exc.reason] += 1
            if exc.reason in ("unreachable", "schema"):
                self._ready = False  # check the schema again where we land next
            raise BufferedError(f"{exc} ({self.stats.buffered_rows} rows kept in memory)",
                                reason=exc.reason, path=exc.path) from None

    async def _insert(self, table: str, columns: tuple[str, ...], rows: list[tuple]) -> None:
        target = self.names.local(table)
        try:
            await self.conn.insert(target, columns, rows, f"insert into {target}")
        except StoreError as exc:
            if exc.reason != "missing":
                raise
            log.warning("clickhouse: %s; creating it again", exc)
            self.stats.recreated += 1
            await self._ensure()
            await self.conn.insert(target, columns, rows, f"insert into {target}")

    # --- retention ---------------------------------------------------------------------------

    async def prune(self) -> dict[str, int]:
        """Drop the partitions retention no longer keeps. Returns partitions dropped per
        resolution (traffic and interface rollups together); the audit log's in
        `audit_pruned`."""
        now = self.clock()
        deleted: dict[str, int] = {}
        for res, (table, width, part) in schema.ROLLUPS.items():
            horizon = sqlite_schema.horizon(now, self.retention[res], width)
            deleted[res] = 0
            if math.isinf(horizon):
                continue
            for name in (table, schema.IF_ROLLUPS[res], schema.METHOD_ROLLUPS[res]):
                deleted[res] += await self._drop(
                    name, lambda parts, part=part, horizon=horizon: schema.partitions_before(parts, part, horizon))
        self.audit_pruned = await self._drop(schema.AUDIT, lambda parts: self._audit_drops(parts, now))
        if any(deleted.values()) or self.audit_pruned:
            log.info("clickhouse: dropped partitions: %s", ", ".join(
                [f"{n} {r}" for r, n in deleted.items()] + [f"{self.audit_pruned} audit log"]))
        return deleted

    def _audit_drops(self, parts: list[tuple[str, int]], now: float) -> list[str]:
        drop = []
        if not math.isinf(self.audit_max_age):
            horizon_ms = (now - self.audit_max_age) * 1000
            drop = schema.partitions_before([p for p, _ in parts], schema.AUDIT_PARTITION_MS, horizon_ms)
        kept = sorted(((int(p), n) for p, n in parts if p not in drop and p.lstrip("-").isdigit()),
                      reverse=True)
        total = 0
        for k, n in kept:  # newest first: the days beyond the row bound go
            total += n
            if total > self.audit_max_rows and total - n > 0:
                drop.append(str(k))
        return drop

    async def _drop(self, table: str, choose) -> int:
        local = self.names.local(table)
        db, name = local.split(".", 1)
        rows = await self.conn.fetch(
            f"SELECT partition, sum(rows) FROM system.parts WHERE active AND database = {quote(db)}"
            f" AND table = {quote(name)} GROUP BY partition", f"list the partitions of {local}")
        parts = [(str(p), int(n)) for p, n in rows]
        chosen = choose(parts) if table == schema.AUDIT else choose([p for p, _ in parts])
        for p in chosen:
            await self.conn.execute(f"ALTER TABLE {local} DROP PARTITION {int(p)}", f"drop a partition of {local}")
        return len(chosen)
