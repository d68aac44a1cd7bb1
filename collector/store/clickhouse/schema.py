"""imflow's ClickHouse schema (version 2): the same rollups as SQLite (collector/store/schema.py)
and the flow audit log, as ClickHouse tables (docs/stores.md).

    table        engine             partition (retention drops whole ones)   order key
    rollup_1m    SummingMergeTree   intDiv(bin, 86400): one UTC day           (bin, exporter, service, host)
    rollup_1h    SummingMergeTree   intDiv(bin, 2592000): 30 days             the same
    rollup_1d    SummingMergeTree   intDiv(bin, 31536000): 365 days           the same
    if_rollup_*  SummingMergeTree   as rollup_*                              (bin, exporter, if_index, direction, service, if_name)
    audit        MergeTree          intDiv(end_ms, 86400000): one UTC day     (end_ms, exporter, host)
    method_rollup_*  SummingMergeTree  as rollup_* (version 2)                (bin, exporter, service, method)
    schema_version  MergeTree       -                                       version

Columns are those of the SQLite tables, with ClickHouse types (bin UInt32, counters UInt64,
text String). SummingMergeTree adds rows of one key when it merges parts, some time after the
insert, so every query sums with GROUP BY and never reads a single row as the total.
`violation` is summed too: greater than 0 means some flush recorded a violation. `if_name` is
in the interface rollups' key (a merge would keep an arbitrary one of a key's names, the empty
one too): readers take a key's non-empty name, as SQLite keeps it.

Written for the oldest server imflow is tested on, Debian's clickhouse-server 18.16: no TTL
(retention is `ALTER TABLE … DROP PARTITION` by the writer's prune), no LowCardinality, no
DateTime64 (times are UInt32 seconds and UInt64 milliseconds), no window functions (ranking and
shares are computed by the reader), partition keys are integers so that no server time zone
can move a bin to another partition. Every statement also runs on current releases.

With `cluster` set, each table above is `<name>_local` on the node a collector writes to, and
`<name>` is a `Distributed(cluster, database, <name>_local, rand())` table over the shards: the
collector inserts into its node's local tables, readers query the Distributed ones, so a
query on any node adds up every site. DDL is run per node (no ON CLUSTER: that needs
ZooKeeper), by each collector on the node it writes to.
"""

from __future__ import annotations

from collector.store.errors import StoreError

SCHEMA_VERSION = 2

# name -> (bin width, partition width in seconds); the SQLite tables' names and widths
ROLLUPS = {"minute": ("rollup_1m", 60, 86400), "hour": ("rollup_1h", 3600, 2592000),
           "day": ("rollup_1d", 86400, 31536000)}
IF_ROLLUPS = {"minute": "if_rollup_1m", "hour": "if_rollup_1h", "day": "if_rollup_1d"}
AUDIT = "audit"
METHOD_ROLLUPS = {"minute": "method_rollup_1m", "hour": "method_rollup_1h", "day": "method_rollup_1d"}
METHOD_COLUMNS = ("bin", "exporter", "service", "method", "category", "bytes", "packets", "flows")
AUDIT_PARTITION_MS = 86_400_000

ROLLUP_COLUMNS = ("bin", "exporter", "service", "host", "category", "bytes", "packets", "flows", "violation")
IF_COLUMNS = ("bin", "exporter", "if_index", "direction", "service", "if_name", "category",
              "bytes", "packets", "flows")
AUDIT_COLUMNS = ("start_ms", "end_ms", "exporter", "host", "peer", "host_port", "peer_port", "proto",
                 "service", "category", "bytes", "packets", "in_if", "out_if", "direction")

_ROLLUP_DDL = ("(bin UInt32, exporter String, service String, host String, category String,"
               " bytes UInt64, packets UInt64, flows UInt64, violation UInt64)"
               " ENGINE = SummingMergeTree((bytes, packets, flows, violation))"
               " PARTITION BY intDiv(bin, {part}) ORDER BY (bin, exporter, service, host)")
_IF_DDL = ("(bin UInt32, exporter String, if_index UInt32, direction String, service String,"
           " if_name String, category String, bytes UInt64, packets UInt64, flows UInt64)"
           " ENGINE = SummingMergeTree((bytes, packets, flows))"
           " PARTITION BY intDiv(bin, {part}) ORDER BY (bin, exporter, if_index, direction, service, if_name)")
_AUDIT_DDL = ("(start_ms UInt64, end_ms UInt64, exporter String, host String, peer String,"
              " host_port UInt16, peer_port UInt16, proto UInt8, service String, category String,"
              " bytes UInt64, packets UInt64, in_if UInt32, out_if UInt32, direction String)"
              f" ENGINE = MergeTree() PARTITION BY intDiv(end_ms, {AUDIT_PARTITION_MS})"
              " ORDER BY (end_ms, exporter, host)")
_METHOD_DDL = ("(bin UInt32, exporter String, service String, method String, category String,"
               " bytes UInt64, packets UInt64, flows UInt64) ENGINE = SummingMergeTree((bytes, packets, flows))"
               " PARTITION BY intDiv(bin, {part}) ORDER BY (bin, exporter, service, method)")
_VERSION_DDL = "(version UInt32, applied DateTime, imflow String) ENGINE = MergeTree() ORDER BY version"


def tables(version: int = SCHEMA_VERSION) -> dict[str, str]:
    """Every data table of a schema version -> its column list and engine (after the name)."""
    out = {}
    for res, (name, _, part) in ROLLUPS.items():
        out[name] = _ROLLUP_DDL.format(part=part)
        out[IF_ROLLUPS[res]] = _IF_DDL.format(part=part)
        if version >= 2:
            out[METHOD_ROLLUPS[res]] = _METHOD_DDL.format(part=part)
    out[AUDIT] = _AUDIT_DDL
    return out


class Names:
    """Table names in one database: where a collector writes (`local`) and where readers read
    (`read`); the same unless there is a cluster."""

    def __init__(self, database: str, cluster: str = ""):
        self.database, self.cluster = database, cluster

    def local(self, table: str) -> str:
        return f"{self.database}.{table}_local" if self.cluster else f"{self.database}.{table}"

    def read(self, table: str) -> str:
        return f"{self.database}.{table}"

    @property
    def version_table(self) -> str:
        return f"{self.database}.schema_version"


# MIGRATIONS[n](names): the statements that take a database from version n-1 to n. Every one
# is idempotent (IF NOT EXISTS), so the writer runs them all at each check, which also creates
# a dropped table again.
def _create(names: Names, wanted: dict[str, str]) -> list[str]:
    stmts = []
    for table, ddl in wanted.items():
        stmts.append(f"CREATE TABLE IF NOT EXISTS {names.local(table)} {ddl}")
        if names.cluster:
            stmts.append(f"CREATE TABLE IF NOT EXISTS {names.read(table)} AS {names.local(table)}"
                         f" ENGINE = Distributed({names.cluster}, {names.database}, {table}_local, rand())")
    return stmts


def _v1(names: Names) -> list[str]:
    return [f"CREATE DATABASE IF NOT EXISTS {names.database}",
            f"CREATE TABLE IF NOT EXISTS {names.version_table} {_VERSION_DDL}",
            *_create(names, tables(1))]


def _v2(names: Names) -> list[str]:  # how each flow was classified, per service (method rollups)
    return _create(names, {t: ddl for t, ddl in tables(2).items() if t in METHOD_ROLLUPS.values()})


MIGRATIONS = {1: _v1, 2: _v2}
assert max(MIGRATIONS) == SCHEMA_VERSION


def check_version(version: int, where: str) -> None:
    if version > SCHEMA_VERSION:
        raise StoreError(f"{where} has imflow schema version {version}, written by a newer imflow; this "
                         f"imflow knows versions up to {SCHEMA_VERSION}: upgrade imflow",
                         reason="schema", path=where)


def partitions_before(partitions: list[str], width: int, horizon: float) -> list[str]:
    """The integer partitions (as system.parts names them) whose whole span ends at or before
    `horizon`, i.e. that retention no longer needs."""
    out = []
    for text in partitions:
        try:
            k = int(text)
        except ValueError:
            continue
        if (k + 1) * width <= horizon:
            out.append(text)
    return out
