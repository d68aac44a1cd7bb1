"""One query path for every face of imflow (the CLI's `top`, `violations`, `report`, and the web
page): a `Reader` answers the questions they ask, whichever backend holds the data.

`open_reader(cfg, db)` picks the backend the configuration names (`[store] backend`); `--db`
(or IMFLOW_DB) names a SQLite file and always means SQLite. Every method raises StoreError for
a store that cannot answer (missing, newer schema, unreachable) and ValueError for bad
arguments, as `collector.store.query` does.
"""

from __future__ import annotations

import os
import sqlite3
from contextlib import closing
from typing import Protocol

from collector.store import query
from collector.store.errors import from_sqlite


class Reader(Protocol):
    """What the commands ask of a store; see `collector.store.query` for the meaning of each."""

    where: str  # for messages: the file or server the answers come from

    def top(self, start: float | None, end: float | None, **kw) -> list[dict]: ...

    def usage(self, start: float | None, end: float | None, **kw) -> list[dict]: ...

    def has_traffic(self, start: float | None, end: float | None) -> bool: ...

    def stored_services(self) -> set[str]: ...

    def time_range(self) -> tuple[int, int] | None: ...

    def flows(self, start: float | None, end: float | None, **kw) -> list[dict]: ...


class SqliteReader:
    """The embedded default: read-only queries on the collector's SQLite file."""

    def __init__(self, path: str):
        self.path = self.where = path

    def top(self, start, end, **kw) -> list[dict]:
        return query.top(self.path, start, end, **kw)

    def usage(self, start, end, **kw) -> list[dict]:
        return query.usage(self.path, start, end, **kw)

    def has_traffic(self, start, end) -> bool:
        return query.has_traffic(self.path, start, end)

    def stored_services(self) -> set[str]:
        return query.stored_services(self.path)

    def time_range(self) -> tuple[int, int] | None:
        return query.time_range(self.path)

    def report_rows(self, start, end, now: float):
        """What the report is built from: (resolution, bin width, rows (category, service, host,
        bytes, packets, flows, first bin, last bin end, violation), {day: {category: bytes}}),
        read in one snapshot."""
        with closing(query.connect(self.path)) as conn:
            try:
                conn.execute("BEGIN")
                rng = query.Range(conn, start, end, now)
                cond = " AND ".join(["1", *rng.where])
                rows = conn.execute(
                    f"SELECT category, service, host, sum(bytes), sum(packets), sum(flows), min(bin),"
                    f" max(bin) + {rng.width}, max(violation) FROM {rng.table} WHERE {cond}"
                    f" GROUP BY category, service, host", rng.params).fetchall()
                daily: dict[int, dict[str, int]] = {}
                for day, category, nbytes in conn.execute(
                        f"SELECT bin - bin % 86400, category, sum(bytes) FROM {rng.table} WHERE {cond}"
                        f" GROUP BY 1, 2 ORDER BY 1", rng.params):
                    daily.setdefault(day, {})[category] = nbytes
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise from_sqlite(exc, self.path, "read") from None
        return rng.resolution, rng.width, rows, daily

    def flows(self, start, end, **kw) -> list[dict]:
        return query.flows(self.path, start, end, **kw)


def open_reader(cfg, db: str | None = None) -> Reader:
    """The reader for this configuration; `db` (the --db flag) names a SQLite file."""
    from collector.cli import where

    if not (db or os.environ.get(where.DB_ENV)) and cfg.get("store.backend") == "clickhouse":
        from collector.store.clickhouse import ClickHouseReader, settings

        return ClickHouseReader(**settings(cfg), timeout=max(30.0, cfg.get("store.clickhouse")["timeout"]))
    return SqliteReader(where.db_path(db, cfg))
