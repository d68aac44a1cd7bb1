"""SQLite rollup storage (DESIGN.md §5): the daemon's async writer and the CLI's read-only queries.

`Store` (aiosqlite, in `db`) writes; `query.top` / `query.time_range` read with the standard
library; `report.render` formats query results. The schema is documented in `schema`.
"""

from collector.store.db import Store
from collector.store.errors import StoreError
from collector.store.rows import BinRow, IfRow

__all__ = ["BinRow", "IfRow", "Store", "StoreError"]
