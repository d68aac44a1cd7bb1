"""Read-only queries on the rollups for the CLI (`imflow top`): standard library sqlite3 only.

`top` answers nfdump-style "top N by …" questions over a time range. It reads the finest rollup
whose retention still reaches back to the start of the range; a bin counts when it overlaps the
range, so hour and day tables count whole hours and days at the edges. Time buckets (`minute`,
`hour`, `day`, like nfdump's `-t` bins or pmacct's `history`) group by the bin start, and every
row carries its share of the bytes of the same selection.

`usage` gives per (host, service) totals with the ingest-time `violation` flag; judging them
against today's policy is the caller's (the rollups keep the service and the internal host, all
that `Policy.action` needs).
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
import sqlite3
import time
import urllib.parse
from contextlib import closing

from collector.store import schema
from collector.store.errors import StoreError, from_sqlite


def connect(db_path: str, need: int = 1) -> sqlite3.Connection:
    """Open the database read-only and check that this imflow can read its schema; `need`: the
    schema version that added what the caller reads (the rollups: 1; the audit log: 2)."""
    if not os.path.exists(db_path):
        raise StoreError(f"no database at {db_path} (has the collector run with this path?)",
                         reason="missing", path=db_path)
    uri = "file:" + urllib.parse.quote(os.path.abspath(db_path)) + "?mode=ro"
    if _on_read_only_fs(db_path):
        # No writer can exist there, and a WAL database cannot make its -shm file: read the
        # file as it is (a snapshot, a mounted backup).
        uri += "&immutable=1"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=5.0)
        version, app_id, tables = conn.execute(
            "SELECT (SELECT user_version FROM pragma_user_version),"
            " (SELECT application_id FROM pragma_application_id),"
            " (SELECT count(*) FROM sqlite_schema WHERE type = 'table')").fetchone()
    except sqlite3.Error as exc:
        raise from_sqlite(exc, db_path, "read") from None
    try:
        schema.check_version(version, app_id, bool(tables), db_path)
        if version < need:  # an older database reads as it is, as far as it holds what is asked
            raise StoreError(f"{db_path} has schema version {version}; start the imflow daemon once"
                             f" to migrate it to version {schema.SCHEMA_VERSION}", reason="schema", path=db_path)
    except StoreError:
        conn.close()
        raise
    return conn


def _on_read_only_fs(path: str) -> bool:
    try:
        return bool(os.statvfs(os.path.dirname(os.path.abspath(path))).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def time_range(db_path: str) -> tuple[int, int] | None:
    """(first bin, last bin) stored, or None when the database holds no traffic.

    The first bin is given at the finest resolution that still holds the oldest data (the
    minute table is pruned first), the last one from the minute table; both are bin starts.
    """
    with closing(connect(db_path)) as conn:
        try:
            return _time_range(conn)
        except sqlite3.Error as exc:
            raise from_sqlite(exc, db_path, "read") from None


def _time_range(conn: sqlite3.Connection) -> tuple[int, int] | None:
    bounds = {res: conn.execute(f"SELECT min(bin), max(bin) FROM {table}").fetchone()
              for res, (table, _) in schema.RESOLUTIONS.items()}
    first = last = None
    for res, (_, width) in schema.RESOLUTIONS.items():
        lo, hi = bounds[res]
        if lo is None:
            continue
        if first is None or lo < first - first % width:
            first = lo  # a coarser table reaches further back
        last = hi if last is None else last
    return None if first is None else (first, last)


def _meta(conn: sqlite3.Connection) -> dict[str, str]:
    return dict(conn.execute("SELECT key, value FROM meta"))


def pick_resolution(start: float, now: float, retention: dict[str, float],
                    pruned: dict[str, float]) -> str:
    """The finest resolution whose retention (and last prune) still covers `start`."""
    for res, (_, width) in schema.RESOLUTIONS.items():
        edge = max(schema.horizon(now, retention[res], width), pruned.get(res, -math.inf))
        if start - start % width >= edge:
            return res
    return "day"


def parse_hosts(hosts: list[str]) -> tuple[set[str], list]:
    """A host filter's items -> (exact host texts, networks); "" is the no-host rows.
    ValueError names a bad item."""
    exact, networks = set(), []
    for item in hosts:
        item = item.strip()
        try:
            if item == "":
                exact.add("")
            elif "/" in item:
                networks.append(ipaddress.ip_network(item, strict=False))
            else:
                exact.add(ipaddress.ip_address(item).compressed)
        except ValueError as exc:
            raise ValueError(f"host filter {item!r}: {exc}") from None
    return exact, networks


def in_networks(texts, networks: list) -> set[str]:
    """The stored host texts inside any of `networks` (texts that are no address are not)."""
    out = set()
    for text in texts:
        try:
            addr = ipaddress.ip_address(text)
        except ValueError:
            continue
        if any(addr.version == net.version and addr in net for net in networks):
            out.add(text)
    return out


def _host_filter(conn: sqlite3.Connection, table: str, lo: int | None, hi: int | None,
                 hosts: list[str]) -> list[str]:
    """Addresses and networks → the stored host texts that match ("" matches no-host rows)."""
    exact, networks = parse_hosts(hosts)
    if networks:
        rows = conn.execute(f"SELECT DISTINCT host FROM {table} WHERE bin >= ? AND bin < ?",
                            (lo if lo is not None else -2**62, hi if hi is not None else 2**62))
        exact |= in_networks((text for (text,) in rows), networks)
    return sorted(exact)


class Range:
    """Which rollup resolution answers [start, end), and the WHERE terms selecting its bins."""

    def __init__(self, conn: sqlite3.Connection, start: float | None, end: float | None, now: float,
                 retention: dict[str, float] | None = None):
        meta = _meta(conn)
        if retention is None:
            retention = {res: float(meta[f"retention.{res}"]) for res in schema.RESOLUTIONS
                         if f"retention.{res}" in meta}
        retention = schema.resolve_retention(retention)
        pruned = {res: int(meta[f"pruned.{res}"]) for res in schema.RESOLUTIONS if f"pruned.{res}" in meta}
        span = _time_range(conn) if start is None else None
        self.empty = start is None and span is None
        first = start if start is not None else (span[0] if span else now)
        self.resolution = pick_resolution(first, now, retention, pruned)
        self.table, self.width = schema.RESOLUTIONS[self.resolution]
        self.lo = None if start is None else math.floor(start / self.width) * self.width
        self.hi = None if end is None else math.ceil(end)
        self.where: list[str] = []
        self.params: list = []
        if self.lo is not None:
            self.where.append("bin >= ?")
            self.params.append(self.lo)
        if self.hi is not None:
            self.where.append("bin < ?")
            self.params.append(self.hi)


IF_DIMENSIONS = ("interface", "direction", "service", "category", "exporter")
TIME_BUCKETS = {"minute": 60, "hour": 3600, "day": 86400}  # `by` keys: the bin start, UNIX seconds
# an interface is shown by name (SNMP ifName or the exporter's options data), else its ifIndex
_IF_COLUMN = {"interface": "CASE if_name WHEN '' THEN CAST(if_index AS TEXT) ELSE if_name END AS interface"}


def top(db_path: str, start: float | None, end: float | None, by: tuple[str, ...] = ("service",),
        service: list[str] | None = None, category: list[str] | None = None,
        host: list[str] | None = None, exporter: list[str] | None = None,
        limit: int | None = 20, now: float | None = None,
        retention: dict[str, float] | None = None) -> list[dict]:
    """Totals grouped by `by` over [start, end), biggest first (bytes desc, then the keys).

    `start=None`: from the first bin stored; `end=None`: up to the last. Filters are lists of
    accepted values; `host` also takes CIDR networks (IPv4 and IPv6). `retention` defaults to
    what the collector recorded at its last start. Raises StoreError (missing database, newer
    schema, I/O) and ValueError (bad arguments).

    `by` may hold time buckets (`minute`, `hour`, `day`: the bucket's start in UNIX seconds).
    With a bucket and other keys, rows come in time order, `limit` counts rows per bucket and
    `share_pct` is of the bucket's bytes; otherwise `share_pct` is of the bytes of the whole
    selection (the same range and filters), whatever `limit` leaves out. With buckets alone,
    rows come in time order and `limit` keeps the latest.
    """
    by = tuple(by)
    interfaces = bool(set(by) & {"interface", "direction"})
    methods = "method" in by and not interfaces
    dims = IF_DIMENSIONS if interfaces else schema.METHOD_DIMENSIONS if methods else schema.DIMENSIONS
    allowed = (*dims, *TIME_BUCKETS)
    if not by or len(set(by)) != len(by) or not set(by) <= set(allowed):
        raise ValueError(f"by: a non-empty list of distinct fields from {', '.join(allowed)}"
                         + (" (interface and direction cannot be combined with host)" if interfaces else "")
                         + (" (method cannot be combined with host)" if methods else "")
                         + ("; or method with service, category, exporter" if not interfaces and not methods else ""))
    if interfaces and host is not None:
        raise ValueError("host: interface rollups are not kept per host; drop --host or --by interface")
    if methods and host is not None:
        raise ValueError("host: method rollups are not kept per host; drop --host or --by method")
    if limit is not None and limit < 1:
        raise ValueError("limit must be at least 1 (or None for all rows)")
    with closing(connect(db_path)) as conn:
        try:
            return _top(conn, db_path, start, end, by, service, category, host, exporter, limit,
                        time.time() if now is None else now, retention)
        except sqlite3.Error as exc:
            raise from_sqlite(exc, db_path, "read") from None


def _top(conn, db_path, start, end, by, service, category, host, exporter, limit, now, retention):
    rng = Range(conn, start, end, now, retention)
    if rng.empty:
        return []
    table = rng.table
    interfaces = bool(set(by) & {"interface", "direction"})
    if interfaces:
        table = schema.IF_TABLES[rng.resolution]
    elif "method" in by:
        table = schema.METHOD_TABLES[rng.resolution]
    for key in by:
        if key in TIME_BUCKETS and TIME_BUCKETS[key] < rng.width:
            raise ValueError(f"by {key}: this range is answered from the {rng.resolution} rollup (the "
                             f"finer ones no longer reach back to its start): use --by {rng.resolution} "
                             "or a shorter range")
    lo, hi, where, params = rng.lo, rng.hi, rng.where, rng.params
    if host is not None:
        host = _host_filter(conn, table, lo, hi, list(host))
    for column, values in (("service", service), ("category", category), ("exporter", exporter),
                           ("host", host)):
        if values is not None:
            where.append(f"{column} IN (SELECT value FROM json_each(?))")
            params.append(json.dumps([str(v) for v in values]))
    keys = ", ".join(by)
    buckets = [k for k in by if k in TIME_BUCKETS]
    # per bucket only when there is something else to rank within it
    part = ", ".join(buckets) if buckets and len(buckets) < len(by) else ""
    over = f"PARTITION BY {part}" if part else ""

    def column(k: str) -> str:
        if k in TIME_BUCKETS:
            return f"bin - bin % {TIME_BUCKETS[k]} AS {k}"
        return _IF_COLUMN.get(k, k) if interfaces else k

    grouped = (f"SELECT {', '.join(map(column, by))}, sum(bytes) AS b, sum(packets) AS p, sum(flows) AS f"
               f" FROM {table}" + (" WHERE " + " AND ".join(where) if where else "") + f" GROUP BY {keys}")
    only_time = bool(buckets) and not part
    order = (f"{part}, " if part else "") + (keys if only_time else f"b DESC, {keys}")
    # `limit` keeps the biggest rows (of each bucket), or with time buckets alone the latest ones
    rank = " DESC, ".join(by) + " DESC" if only_time else f"b DESC, {keys}"
    sql = (f"SELECT {keys}, b, p, f, 100.0 * b / nullif(sum(b) OVER ({over}), 0),"
           f" row_number() OVER ({over} ORDER BY {rank}) AS n FROM ({grouped})")
    sql = f"SELECT * FROM ({sql})" + (" WHERE n <= ?" if limit is not None else "") + f" ORDER BY {order}"
    if limit is not None:
        params.append(int(limit))
    names = (*by, *schema.COUNTERS, "share_pct")
    return [dict(zip(names, row[:-1]), share_pct=row[-2] or 0.0) for row in conn.execute(sql, params)]


def stored_services(db_path: str) -> set[str]:
    """Every service id the day rollup holds (the longest kept; its service index answers)."""
    with closing(connect(db_path)) as conn:
        try:
            table = schema.RESOLUTIONS["day"][0]
            return {s for (s,) in conn.execute(f"SELECT DISTINCT service FROM {table}")}
        except sqlite3.Error as exc:
            raise from_sqlite(exc, db_path, "read") from None


def has_traffic(db_path: str, start: float | None, end: float | None, now: float | None = None) -> bool:
    """Whether the flow rollups hold any traffic in [start, end)."""
    with closing(connect(db_path)) as conn:
        try:
            rng = Range(conn, start, end, time.time() if now is None else now)
            if rng.empty:
                return False
            where = " AND ".join(["1", *rng.where])
            return conn.execute(f"SELECT EXISTS (SELECT 1 FROM {rng.table} WHERE {where})",
                                rng.params).fetchone()[0] == 1
        except sqlite3.Error as exc:
            raise from_sqlite(exc, db_path, "read") from None


def usage(db_path: str, start: float | None, end: float | None, violations_only: bool = False,
          now: float | None = None, service: list[str] | None = None, category: list[str] | None = None,
          host: list[str] | None = None) -> list[dict]:
    """Per (host, service): bytes, packets, flows, first and last seen (bin starts and ends),
    and `violation`: whether the collector recorded any of it as a violation at ingest, under
    the policy of that time; internal hosts only, biggest first. `violations_only` keeps the rows
    so recorded. Filters as in `top` (`host` takes addresses and CIDR networks)."""
    with closing(connect(db_path)) as conn:
        try:
            rng = Range(conn, start, end, time.time() if now is None else now)
            if rng.empty:
                return []
            table, width = rng.table, rng.width
            where, params = ["host != ''"] + rng.where, rng.params
            if violations_only:
                where.append("violation = 1")
            if host is not None:
                host = _host_filter(conn, table, rng.lo, rng.hi, list(host))
            for column, values in (("service", service), ("category", category), ("host", host)):
                if values is not None:
                    where.append(f"{column} IN (SELECT value FROM json_each(?))")
                    params.append(json.dumps([str(v) for v in values]))
            sql = (f"SELECT host, service, category, sum(bytes) AS b, sum(packets), sum(flows), min(bin),"
                   f" max(bin) + {width}, max(violation) FROM {table} WHERE " + " AND ".join(where)
                   + " GROUP BY host, service, category ORDER BY b DESC, host, service")
            names = ("host", "service", "category", "bytes", "packets", "flows", "first_seen", "last_seen",
                     "violation")
            return [dict(zip(names, row)) | {"violation": bool(row[-1])} for row in conn.execute(sql, params)]
        except sqlite3.Error as exc:
            raise from_sqlite(exc, db_path, "read") from None


def flows(db_path: str, start: float | None, end: float | None, **kw) -> list[dict]:
    """The flow audit log (schema version 2): single flows, or totals per group with `by`;
    arguments and rows as `collector.store.audit.select` says."""
    from collector.store import audit

    with closing(connect(db_path, need=2)) as conn:
        try:
            return audit.select(conn, start, end, **kw)
        except sqlite3.Error as exc:
            raise from_sqlite(exc, db_path, "read") from None
