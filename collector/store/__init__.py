"""SQLite rollup storage (docs/design.md §5): the daemon's async writer and the CLI's
read-only queries.

`Store` (aiosqlite, in `db`) writes; `query.top`, `query.usage` and `query.time_range` read with
the standard library; `collector.report` renders what they return. The schema is documented in `schema`.
"""

from collector.store.db import Store
from collector.store.errors import StoreError
from collector.store.rows import BinRow, IfRow

__all__ = ["BinRow", "IfRow", "Store", "StoreError"]
