"""The imflow SQLite schema (version 2), for people who query the database directly.

imflow keeps traffic totals per time bin in three rollup tables, one per resolution. Every
flush adds the same totals into all three, so each table on its own holds everything that was
written for its bins; they differ only in bin width and in how long they are kept::

    table       bin width   default retention
    rollup_1m   60 s        2 days
    rollup_1h   3600 s      90 days
    rollup_1d   86400 s     5 years

Columns (all tables)::

    bin       INTEGER  UNIX seconds (UTC) at which the bin starts; a multiple of the bin width
    exporter  TEXT     address of the router/firewall that exported the flows ("192.0.2.1")
    service   TEXT     service id from the catalogue ("msn", "bittorrent", "sip", "other")
    host      TEXT     internal host address ("10.1.2.3", "fd00::5"); "" = no internal end
    category  TEXT     "im", "p2p", "voip", "collab" or "other"
    bytes     INTEGER  octets, already multiplied by the exporter's sampling rate
    packets   INTEGER  packets, likewise
    flows     INTEGER  flow records counted into the row
    violation INTEGER  1 when the policy blocked this service for this host (see [policy])

Primary key ``(bin, exporter, service, host)``; the tables are ``WITHOUT ROWID``, so rows are
stored in key order and a range of bins is one contiguous scan. On rollup_1h and rollup_1d,
indexes ``<table>_host (host, bin)`` and ``<table>_service (service, bin)`` serve per-host and
per-service questions over long ranges; rollup_1m has none (its ranges are short, and every
index would cost each flush a second B-tree insert per row). Late flows and restarts add into
existing rows, never duplicate them.

Picking a table: use the finest one whose retention still reaches back to the start of your
range. A bin is counted when it overlaps the range, so rollup_1h and rollup_1d count whole
hours and days at the edges. All times are UTC; rollup_1d days run from 00:00 UTC.

Interface rollups ``if_rollup_1m``, ``if_rollup_1h``, ``if_rollup_1d`` (same widths and
retention) count the same traffic per exporter interface: columns ``bin, exporter, if_index``
(SNMP ifIndex as exported), ``direction`` ("in": entered through the interface, "out": left
through it), ``service, if_name`` (ifName when known, else ""), ``category, bytes, packets,
flows``; primary key ``(bin, exporter, if_index, direction, service)``.

The flow audit log (version 2, docs/audit.md) is ``audit_chunk (id INTEGER PRIMARY KEY,
first_ms, last_ms, rows, data BLOB, segment, at, size)``, indexes ``audit_chunk_last (last_ms)``
and ``audit_chunk_segment (segment)``: each row is a chunk of up to 65,536 flows of the watched
categories, ``first_ms``/``last_ms`` the first start and the last end of its flows (UNIX
milliseconds). Since version 4 the chunk's octets are ``size`` octets at ``at`` in the segment
file ``<database>-audit/<segment, 12 digits>.imfa`` and ``data`` is empty; rows written before
have ``segment`` NULL and the octets in ``data``. The octets are their columns as
``collector.store.audit.AuditBatch.encode`` writes them ("IMFA", a JSON header with the row
count, the exporter and service names and each stored column's base, width and length, then per
column its values minus the base as little-endian unsigned integers of that width; chunk format
2: start_ms, duration, exporter, ports, proto, service, bytes, packets, interfaces, direction,
and per address the IPv4 part with the rows that are not IPv4 apart; format 1, written before
2026-12-05 and still read: start_ms, end_ms, exporter, host_hi, host_lo, peer_hi, peer_lo,
host_port, peer_port, proto, service, bytes, packets, in_if, out_if, direction). It is not meant for SQL flow by flow: ``imflow flows
--format csv --limit 0`` exports any selection.

Method rollups ``method_rollup_1m``, ``method_rollup_1h``, ``method_rollup_1d`` (version 3; same
widths and retention) count the same traffic by how it was classified: columns ``bin, exporter,
service, method`` ("port", "prefix", "asn", "dns", "name", "app-id"; "none" for ``other``),
``category, bytes, packets, flows``; primary key ``(bin, exporter, service, method)``. Traffic
stored before version 3 has no method rows.

``meta (key TEXT PRIMARY KEY, value TEXT)`` holds ``created_at``, ``schema.<N>`` (when version
N was applied), ``retention.<resolution>`` (seconds, as configured at the last start) and
``pruned.<resolution>`` (the first bin kept after the last prune). ``PRAGMA user_version`` is the
schema version; ``PRAGMA application_id`` is 0x494D464C ("IMFL"). The database is in WAL mode,
so readers (Grafana, ``sqlite3 -readonly``) never block the collector.

Example — top 10 hosts by BitTorrent bytes over the last 24 hours (Grafana's SQLite data
source; the minute table covers 2 days)::

    SELECT host, SUM(bytes) AS bytes
    FROM rollup_1m
    WHERE service = 'bittorrent' AND bin >= strftime('%s', 'now') - 86400
    GROUP BY host ORDER BY bytes DESC LIMIT 10;

Example — IM, P2P and VoIP bytes per day over the last 30 days, as a time series::

    SELECT bin AS time, category, SUM(bytes) AS bytes
    FROM rollup_1d
    WHERE bin >= strftime('%s', 'now') - 30 * 86400 AND category IN ('im', 'p2p', 'voip')
    GROUP BY bin, category ORDER BY bin;
"""

from __future__ import annotations

import math

from collector.store.errors import StoreError

SCHEMA_VERSION = 4
APPLICATION_ID = 0x494D464C  # "IMFL"

# resolution name -> (table, bin width in seconds); finest first
RESOLUTIONS: dict[str, tuple[str, int]] = {
    "minute": ("rollup_1m", 60),
    "hour": ("rollup_1h", 3600),
    "day": ("rollup_1d", 86400),
}
DEFAULT_RETENTION: dict[str, float] = {"minute": 2 * 86400.0, "hour": 90 * 86400.0, "day": 1826 * 86400.0}
IF_TABLES = {"minute": "if_rollup_1m", "hour": "if_rollup_1h", "day": "if_rollup_1d"}
METHOD_TABLES = {"minute": "method_rollup_1m", "hour": "method_rollup_1h", "day": "method_rollup_1d"}
METHOD_DIMENSIONS = ("method", "service", "category", "exporter")
DIMENSIONS = ("host", "service", "category", "exporter")
COUNTERS = ("bytes", "packets", "flows")


def _rollup_ddl(table: str, indexed: bool) -> tuple[str, ...]:
    ddl: tuple[str, ...] = (
        (f"CREATE TABLE {table} (bin INTEGER NOT NULL, exporter TEXT NOT NULL, service TEXT NOT NULL,"
         " host TEXT NOT NULL, category TEXT NOT NULL, bytes INTEGER NOT NULL,"
         " packets INTEGER NOT NULL, flows INTEGER NOT NULL, violation INTEGER NOT NULL DEFAULT 0,"
         " PRIMARY KEY (bin, exporter, service, host)) WITHOUT ROWID"),
    )
    if indexed:
        ddl += (f"CREATE INDEX {table}_host ON {table} (host, bin)",
                f"CREATE INDEX {table}_service ON {table} (service, bin)")
    return ddl


def _method_rollup_ddl(table: str) -> tuple[str, ...]:
    return (
        (f"CREATE TABLE {table} (bin INTEGER NOT NULL, exporter TEXT NOT NULL, service TEXT NOT NULL,"
         " method TEXT NOT NULL, category TEXT NOT NULL, bytes INTEGER NOT NULL, packets INTEGER NOT NULL,"
         " flows INTEGER NOT NULL, PRIMARY KEY (bin, exporter, service, method)) WITHOUT ROWID"),
    )


def _if_rollup_ddl(table: str) -> tuple[str, ...]:
    return (
        (f"CREATE TABLE {table} (bin INTEGER NOT NULL, exporter TEXT NOT NULL,"
         " if_index INTEGER NOT NULL, direction TEXT NOT NULL, service TEXT NOT NULL,"
         " if_name TEXT NOT NULL, category TEXT NOT NULL, bytes INTEGER NOT NULL,"
         " packets INTEGER NOT NULL, flows INTEGER NOT NULL,"
         " PRIMARY KEY (bin, exporter, if_index, direction, service)) WITHOUT ROWID"),
    )


# The flow audit log (docs/audit.md): flows of the watched categories, kept in chunks of up to
# 65,536 flows, each one BLOB of columns (collector/store/audit.py) with the first start and the
# last end of its flows (UNIX milliseconds) and its row count; rowid in arrival order, so the
# row bound deletes the oldest chunks. A row per flow cost the collector 6-8 us of its Python
# core per flow (binding 17 values, B-tree inserts); a chunk is a copy of its columns.
AUDIT_TABLE = "audit_chunk"
DEFAULT_AUDIT_MAX_AGE = 7 * 86400.0
DEFAULT_AUDIT_MAX_ROWS = 10_000_000
_AUDIT_DDL = (
    ("CREATE TABLE audit_chunk (id INTEGER PRIMARY KEY, first_ms INTEGER NOT NULL, last_ms INTEGER NOT NULL,"
     " rows INTEGER NOT NULL, data BLOB NOT NULL)"),
    "CREATE INDEX audit_chunk_last ON audit_chunk (last_ms)",
)

# Version 4: a chunk's octets in a segment file beside the database (collector/store/segments.py):
# `segment` (the file's number), `at` and `size` (where in it); `data` is then empty. Chunks
# written before keep their octets in `data`, with `segment` NULL.
_AUDIT_SEGMENTS_DDL = (
    "ALTER TABLE audit_chunk ADD COLUMN segment INTEGER",
    "ALTER TABLE audit_chunk ADD COLUMN at INTEGER",
    "ALTER TABLE audit_chunk ADD COLUMN size INTEGER",
    # the segments still pointed into, after each write: read from here, not the table, whose
    # older rows hold their chunks' octets (reaching a column after them reads them through)
    "CREATE INDEX audit_chunk_segment ON audit_chunk (segment)",
)

# MIGRATIONS[n]: the statements that take a database from version n-1 to n, run in one
# transaction together with `PRAGMA user_version = n`.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: ("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
        *(stmt for table, width in RESOLUTIONS.values() for stmt in _rollup_ddl(table, width > 60)),
        *(stmt for table in IF_TABLES.values() for stmt in _if_rollup_ddl(table))),
    2: _AUDIT_DDL,
    3: tuple(stmt for table in METHOD_TABLES.values() for stmt in _method_rollup_ddl(table)),
    4: _AUDIT_SEGMENTS_DDL,
}
assert max(MIGRATIONS) == SCHEMA_VERSION


def check_version(version: int, application_id: int, has_tables: bool, path: str) -> None:
    """Refuse a database written by a newer imflow, or one that is not imflow's at all."""
    if application_id not in (0, APPLICATION_ID) or (version == 0 and has_tables):
        raise StoreError(f"{path} is not an imflow database (it has other tables and no imflow "
                         "schema version); point imflow at a new file", reason="schema", path=path)
    if version > SCHEMA_VERSION:
        raise StoreError(f"{path} has schema version {version}, written by a newer imflow; this "
                         f"imflow knows versions up to {SCHEMA_VERSION}: upgrade imflow",
                         reason="schema", path=path)


def resolve_retention(retention: dict[str, float] | None) -> dict[str, float]:
    """Defaults filled in; seconds per resolution, `math.inf` (or None) keeps forever."""
    out = dict(DEFAULT_RETENTION)
    for key, value in (retention or {}).items():
        if key not in RESOLUTIONS:
            raise ValueError(f"retention: unknown resolution {key!r} (expected minute, hour or day)")
        value = math.inf if value is None else float(value)
        if not value > 0:
            raise ValueError(f"retention.{key}: must be a positive number of seconds, got {value!r}")
        out[key] = value
    return out


def horizon(now: float, retention_seconds: float, width: int) -> float:
    """The first bin that retention keeps: bins that start before it are old enough to prune."""
    if math.isinf(retention_seconds):
        return -math.inf
    return math.floor((now - retention_seconds) / width) * width
