"""One query path for every face of imflow (the CLI's `top`, `violations`, `report`, and the web
page): a `Reader` answers the questions they ask, whichever backend holds the data.

`open_reader(cfg, db)` picks the backend the configuration names (`[store] backend`); `--db`
(or IMFLOW_DB) names a SQLite file and always means SQLite. Every method raises StoreError for
a store that cannot answer (missing, newer schema, unreachable) and ValueError for bad
arguments, as `collector.store.query` does.
"""

from __future__ import annotations

from typing import Protocol

from collector.store import query


class Reader(Protocol):
    """What the commands ask of a store; see `collector.store.query` for the meaning of each."""

    where: str  # for messages: the file or server the answers come from

    def top(self, start: float | None, end: float | None, **kw) -> list[dict]: ...

    def usage(self, start: float | None, end: float | None, **kw) -> list[dict]: ...

    def has_traffic(self, start: float | None, end: float | None) -> bool: ...

    def stored_services(self) -> set[str]: ...

    def time_range(self) -> tuple[int, int] | None: ...


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


def open_reader(cfg, db: str | None = None) -> Reader:
    """The reader for this configuration; `db` (the --db flag) names a SQLite file."""
    from collector.cli import where

    return SqliteReader(where.db_path(db, cfg))
