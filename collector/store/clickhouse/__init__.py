"""The ClickHouse backend (docs/stores.md): `ClickHouseStore` writes what the SQLite `Store`
writes, `ClickHouseReader` answers what `collector.store.query` answers. aiochclient is used
only in `client`; `schema` documents the tables."""

from collector.store.clickhouse.reader import ClickHouseReader
from collector.store.clickhouse.writer import BufferedError, ClickHouseStore

__all__ = ["BufferedError", "ClickHouseReader", "ClickHouseStore", "settings"]


def settings(cfg) -> dict:
    """The keyword arguments both classes take, from a Config's [store] section."""
    ch = cfg.get("store.clickhouse")
    return {"urls": ch["urls"], "database": ch["database"], "cluster": ch["cluster"],
            "retention": {"minute": cfg.get("store.retention_minute"), "hour": cfg.get("store.retention_hour"),
                          "day": cfg.get("store.retention_day")}}
