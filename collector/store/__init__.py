"""SQLite rollup storage (docs/design.md §5): the daemon's async writer and the CLI's
read-only queries.

`Store` (aiosqlite, in `db`) writes; `query.top`, `query.usage` and `query.time_range` read with
the standard library; `collector.report` renders what they return. The schema is documented in `schema`.
"""

from collector.store.errors import StoreError
from collector.store.rows import BinRow, IfRow

__all__ = ["BinRow", "IfRow", "Store", "StoreError"]


def __getattr__(name: str):
    """`Store` is imported when first asked for: it brings aiosqlite and asyncio, which the
    command line's error handling (`StoreError`) has no use for, and `imflow run` decides what
    asyncio may import before it (`collector.daemon.tuning.leave_out_tls`)."""
    if name == "Store":
        from collector.store.db import Store

        return Store
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
