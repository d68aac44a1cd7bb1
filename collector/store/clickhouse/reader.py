"""ClickHouseReader: the answers of `collector.store.query` (top, usage, has_traffic,
stored_services, time_range) and of the report, read from ClickHouse (docs/stores.md).

The same questions as the SQLite reader, with the same answers for the same traffic: the
finest rollup whose retention covers the start, bins that overlap the range, the same ranking
and shares. ClickHouse 18.16 has no window functions, so ClickHouse groups and sums and this
module ranks, shares and limits the grouped rows (`rank`), exactly as the SQLite query's
window functions do. With a cluster, every query reads the Distributed tables: all sites.

The methods are synchronous (the CLI's); each opens an HTTP session, checks the schema version
and closes it. Called from a running event loop (the web page), the query runs on a thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
import time

from collector.store import query
from collector.store import schema as sqlite_schema
from collector.store.clickhouse import schema
from collector.store.clickhouse.client import Connection, quote, quote_list
from collector.store.errors import StoreError

_IF_COLUMN = "if(if_name = '', toString(if_index), if_name)"


def _run(coro_fn):
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro_fn())
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(coro_fn())).result()


def rank(rows: list[tuple], by: tuple[str, ...], limit: int | None) -> list[dict]:
    """Grouped rows (keys…, bytes, packets, flows) -> what `query.top` returns: shares of the
    selection (or of each time bucket), ranked, limited and ordered as its SQL does."""
    buckets = [k for k in by if k in query.TIME_BUCKETS]
    part_idx = [by.index(k) for k in buckets] if buckets and len(buckets) < len(by) else []
    only_time = bool(buckets) and not part_idx
    nkeys = len(by)
    groups: dict[tuple, list[tuple]] = {}
    for row in rows:
        groups.setdefault(tuple(row[i] for i in part_idx), []).append(row)
    out = []
    for part in sorted(groups):
        members = groups[part]
        total = sum(r[nkeys] for r in members)
        if only_time:
            members.sort(key=lambda r: r[:nkeys], reverse=True)
        else:
            members.sort(key=lambda r: r[:nkeys])
            members.sort(key=lambda r: r[nkeys], reverse=True)
        if limit is not None:
            members = members[:limit]
        if only_time:
            members.reverse()
        for r in members:
            share = 100.0 * r[nkeys] / total if total else 0.0
            out.append(dict(zip((*by, *sqlite_schema.COUNTERS), r), share_pct=share))
    return out


class ClickHouseReader:
    """Read-only queries on imflow's ClickHouse database (through Distributed tables when a
    cluster is configured). `retention` is the collectors' (the same [store] keys)."""

    def __init__(self, urls: list[str], database: str = "imflow", cluster: str = "",
                 retention: dict[str, float] | None = None, timeout: float = 30.0):
        self.urls, self.timeout = list(urls), timeout
        self.names = schema.Names(database, cluster)
        self.retention = sqlite_schema.resolve_retention(retention)
        self.where = f"{self.urls[0]} (database {database})"

    # --- plumbing ----------------------------------------------------------------------------

    def _query(self, fn):
        async def go():
            async with Connection(self.urls, self.names.database, self.timeout) as c:
                try:
                    (version,), = await c.fetch(f"SELECT max(version) FROM {self.names.version_table}")
                except StoreError as exc:
                    if exc.reason == "missing":
                        raise StoreError(f"no imflow database {self.names.database} on {c.url} (has a "
                                         "collector written to it with this configuration?)",
                                         reason="missing", path=c.url) from None
                    raise
                schema.check_version(int(version or 0), f"{c.url} database {self.names.database}")
                self.where = f"{c.url} (database {self.names.database})"
                return await fn(c)
        return _run(go)

    def _t(self, table: str) -> str:
        return self.names.read(table)

    async def _time_range(self, c) -> tuple[int, int] | None:
        first = last = None
        for table, width, _ in schema.ROLLUPS.values():
            (n, lo, hi), = await c.fetch(f"SELECT count(), min(bin), max(bin) FROM {self._t(table)}")
            if not n:
                continue
            if first is None or lo < first - first % width:
                first = lo
            last = hi if last is None else last
        return None if first is None else (int(first), int(last))

    async def _range(self, c, start, end, now):
        """(resolution, table, width, lo, hi, where-terms) or None when nothing is stored."""
        span = await self._time_range(c) if start is None else None
        if start is None and span is None:
            return None
        first = start if start is not None else span[0]
        res = query.pick_resolution(first, now, self.retention, {})
        table, width, _ = schema.ROLLUPS[res]
        lo = None if start is None else math.floor(start / width) * width
        hi = None if end is None else math.ceil(end)
        where = []
        if lo is not None:
            where.append(f"bin >= {int(lo)}")
        if hi is not None:
            where.append(f"bin < {int(hi)}")
        return res, table, width, lo, hi, where

    async def _hosts(self, c, table: str, where: list[str], hosts: list[str]) -> list[str]:
        exact, networks = query.parse_hosts(hosts)
        if networks:
            cond = " AND ".join(["1", *where])
            # a second column: aiochclient reads a row of one empty string as a row of nothing
            rows = await c.fetch(f"SELECT DISTINCT host, 1 FROM {self._t(table)} WHERE {cond}")
            exact |= query.in_networks((text for text, _ in rows), networks)
        return sorted(exact)

    # --- the questions -----------------------------------------------------------------------

    def time_range(self) -> tuple[int, int] | None:
        return self._query(self._time_range)

    def stored_services(self) -> set[str]:
        async def fn(c):
            day = self._t(schema.ROLLUPS['day'][0])
            return {s for s, _ in await c.fetch(f"SELECT DISTINCT service, 1 FROM {day}")}
        return self._query(fn)

    def has_traffic(self, start, end, now: float | None = None) -> bool:
        async def fn(c):
            rng = await self._range(c, start, end, time.time() if now is None else now)
            if rng is None:
                return False
            cond = " AND ".join(["1", *rng[5]])
            return bool(await c.fetch(f"SELECT 1 FROM {self._t(rng[1])} WHERE {cond} LIMIT 1"))
        return self._query(fn)

    def top(self, start, end, by=("service",), service=None, category=None, host=None, exporter=None,
            limit: int | None = 20, now: float | None = None, retention=None) -> list[dict]:
        by = tuple(by)
        interfaces = bool(set(by) & {"interface", "direction"})
        methods = "method" in by and not interfaces
        dims = (query.IF_DIMENSIONS if interfaces else sqlite_schema.METHOD_DIMENSIONS if methods
                else sqlite_schema.DIMENSIONS)
        allowed = (*dims, *query.TIME_BUCKETS)
        if not by or len(set(by)) != len(by) or not set(by) <= set(allowed):  # query.top's words
            raise ValueError(f"by: a non-empty list of distinct fields from {', '.join(allowed)}"
                             + (" (interface and direction cannot be combined with host)" if interfaces else "")
                             + (" (method cannot be combined with host)" if methods else "")
                             + ("; or method with service, category, exporter" if not interfaces and not methods
                                else ""))
        if interfaces and host is not None:
            raise ValueError("host: interface rollups are not kept per host; drop --host or --by interface")
        if methods and host is not None:
            raise ValueError("host: method rollups are not kept per host; drop --host or --by method")
        if limit is not None and limit < 1:
            raise ValueError("limit must be at least 1 (or None for all rows)")

        async def fn(c):
            rng = await self._range(c, start, end, time.time() if now is None else now)
            if rng is None:
                return []
            res, table, width, _, _, where = rng
            if interfaces:
                table = schema.IF_ROLLUPS[res]
            elif methods:
                table = schema.METHOD_ROLLUPS[res]
            for key in by:
                if key in query.TIME_BUCKETS and query.TIME_BUCKETS[key] < width:
                    raise ValueError(f"by {key}: this range is answered from the {res} rollup (the finer "
                                     f"ones no longer reach back to its start): use --by {res} or a shorter range")
            hosts = await self._hosts(c, table, where, list(host)) if host is not None else None
            for column, values in (("service", service), ("category", category), ("exporter", exporter),
                                   ("host", hosts)):
                if values is not None:
                    where.append(f"{column} IN {quote_list(str(v) for v in values)}")

            def column(k: str) -> str:
                if k in query.TIME_BUCKETS:
                    return f"bin - bin % {query.TIME_BUCKETS[k]} AS {k}"
                return f"{_IF_COLUMN} AS interface" if interfaces and k == "interface" else k

            cond = " AND ".join(["1", *where])
            source, sums = f"{self._t(table)} WHERE {cond}", "sum(bytes), sum(packets), sum(flows)"
            if interfaces:
                # SQLite keeps one name per rollup key (the last one given): so does this, as the
                # key's non-empty name, before the rows are grouped by interface
                source = (f"(SELECT bin, exporter, if_index, direction, service, max(if_name) AS if_name,"
                          f" sum(bytes) AS nb, sum(packets) AS np, sum(flows) AS nf FROM {source}"
                          " GROUP BY bin, exporter, if_index, direction, service)")
                sums = "sum(nb), sum(np), sum(nf)"
            sql = f"SELECT {', '.join(map(column, by))}, {sums} FROM {source} GROUP BY {', '.join(by)}"
            rows = [tuple(int(v) if k in query.TIME_BUCKETS else v for k, v in zip(by, r)) + r[len(by):]
                    for r in await c.fetch(sql)]
            return rank(rows, by, limit)
        return self._query(fn)

    def usage(self, start, end, violations_only: bool = False, now: float | None = None,
              service=None, category=None, host=None) -> list[dict]:
        async def fn(c):
            rng = await self._range(c, start, end, time.time() if now is None else now)
            if rng is None:
                return []
            _, table, width, _, _, where = rng
            hosts = await self._hosts(c, table, where, list(host)) if host is not None else None
            where = ["host != ''", *where]
            for column, values in (("service", service), ("category", category), ("host", hosts)):
                if values is not None:
                    where.append(f"{column} IN {quote_list(str(v) for v in values)}")
            # per rollup key first, as SQLite stores it (one row, violation if any flush said so):
            # the parts of a key ClickHouse has not merged yet must count, or not, together
            having = " HAVING max(violation) > 0" if violations_only else ""
            keyed = (f"SELECT bin, exporter, service, host, category, sum(bytes) AS nb, sum(packets) AS np,"
                     f" sum(flows) AS nf, max(violation) AS nv FROM {self._t(table)} WHERE {' AND '.join(where)}"
                     f" GROUP BY bin, exporter, service, host, category{having}")
            sql = (f"SELECT host, service, category, sum(nb) AS b, sum(np), sum(nf), min(bin),"
                   f" max(bin) + {width}, max(nv) > 0 FROM ({keyed}) GROUP BY host, service, category")
            rows = sorted(await c.fetch(sql), key=lambda r: (-r[3], r[0], r[1]))
            names = ("host", "service", "category", "bytes", "packets", "flows", "first_seen", "last_seen",
                     "violation")
            return [dict(zip(names, r)) | {"violation": bool(r[-1])} for r in rows]
        return self._query(fn)

    def report_rows(self, start, end, now: float):
        """What the report is built from: (resolution, bin width, rows (category, service, host,
        bytes, packets, flows, first bin, last bin end, violation), daily bytes per category)."""
        async def fn(c):
            rng = await self._range(c, start, end, now)
            if rng is None:
                res = query.pick_resolution(start if start is not None else now, now, self.retention, {})
                return res, schema.ROLLUPS[res][1], [], []
            res, table, width, _, _, where = rng
            cond = " AND ".join(["1", *where])
            rows = await c.fetch(
                f"SELECT category, service, host, sum(bytes), sum(packets), sum(flows), min(bin),"
                f" max(bin) + {width}, max(violation) > 0 FROM {self._t(table)} WHERE {cond}"
                " GROUP BY category, service, host")
            daily: dict[int, dict[str, int]] = {}
            for day, cat, nbytes in sorted(await c.fetch(
                    f"SELECT bin - bin % 86400 AS day, category, sum(bytes) FROM {self._t(table)}"
                    f" WHERE {cond} GROUP BY day, category")):
                daily.setdefault(int(day), {})[cat] = nbytes
            return res, width, [tuple(r[:8]) + (int(r[8]),) for r in rows], daily
        return self._query(fn)


# --- the flow audit log ------------------------------------------------------------------------

def _key(column: str) -> str:
    """An address column as the 16-octet key the SQLite audit log stores (IPv4 as ::ffff:a.b.c.d)."""
    # one conversion, not one per branch: current releases evaluate both branches of if() and
    # IPv4StringToNum throws on IPv6 text
    return f"IPv6StringToNum(if(position({column}, ':') > 0, {column}, concat('::ffff:', {column})))"


def _between(column: str, values) -> str:
    from collector.store import audit

    ranges = [audit.key_range(v) for v in values]
    if not ranges:
        return "0"
    key = _key(column)
    return "(" + " OR ".join(f"{key} BETWEEN unhex('{lo.hex()}') AND unhex('{hi.hex()}')"
                             for lo, hi in ranges) + ")"


# SQLite's SORTS, with the rest of the row as the tie-break (ClickHouse has no arrival id)
_SORTS = {"start": "start_ms", "end": "end_ms", "bytes": "bytes DESC", "packets": "packets DESC",
          "duration": "end_ms - start_ms DESC"}
_TIE = "start_ms, end_ms, exporter, host, peer, host_port, peer_port, proto, service"


def flows(self, start, end, *, host=None, peer=None, port=None, proto=None, service=None, category=None,
          exporter=None, sort: str = "start", limit: int | None = 100, by=None, prefix=None) -> list[dict]:
    """`collector.store.audit.select`'s answers from ClickHouse's audit table."""
    from collector.store import audit

    prefix = prefix or audit.DEFAULT_PREFIX
    if sort not in _SORTS:
        raise ValueError(f"sort {sort!r}: expected one of {', '.join(audit.SORTS)}")
    if limit is not None and limit < 1:
        raise ValueError("limit must be at least 1 (or None for all rows)")
    where = ["1"]
    if start is not None:
        where.append(f"end_ms >= {int(start * 1000)}")
    if end is not None:
        where.append(f"start_ms < {int(end * 1000)}")
    for column, values in (("host", host), ("peer", peer)):
        if values is not None:
            where.append(_between(column, audit._bounded(values, column)))
    if port is not None:
        ports = ", ".join(str(audit.parse_port(p)) for p in audit._bounded(port, "port")) or "-1"
        where.append(f"(host_port IN ({ports}) OR peer_port IN ({ports}))")
    if proto is not None:
        protos = ", ".join(str(audit.parse_proto(p)) for p in audit._bounded(proto, "proto")) or "-1"
        where.append(f"proto IN ({protos})")
    for column, values in (("service", service), ("category", category), ("exporter", exporter)):
        if values is not None:
            where.append(f"{column} IN {quote_list(str(v) for v in audit._bounded(values, column))}")
    cond = " AND ".join(where)
    table = self._t(schema.AUDIT)
    if by:
        by = tuple(by)
        if len(set(by)) != len(by) or not set(by) <= set(audit.GROUPS):
            raise ValueError(f"by: a non-empty list of distinct fields from {', '.join(audit.GROUPS)}")
        v4, v6 = prefix
        audit.check_prefix(v4, v6)
        peer_key = _key("peer")
        cols = [f"hex(if(substring({peer_key}, 1, 12) = unhex('{audit._V4_PREFIX.hex()}'),"
                f" substring({peer_key}, 1, {12 + v4 // 8}), substring({peer_key}, 1, {v6 // 8})))"
                if k == "peer-net" else audit._GROUP_COLUMN[k] for k in by]
        keys = ", ".join(f"k{i}" for i in range(len(by)))

        def literal(k: str, v) -> str:
            return quote(v) if isinstance(v, str) else str(int(v))

        async def grouped(c):
            # ranked and limited by ClickHouse (hex sorts as the octets do, text bytewise as in
            # SQLite); distinct hosts counted for the groups kept only: counting them for every
            # group of a large log is what exhausts a server's memory
            exprs = [f"{col} AS k{i}" for i, col in enumerate(cols)]
            rows = await c.fetch(
                f"SELECT {', '.join(exprs)}, sum(bytes) AS b, sum(packets), count() FROM {table} WHERE {cond}"
                f" GROUP BY {keys} ORDER BY b DESC, {keys}" + (f" LIMIT {int(limit)}" if limit is not None else ""))
            if not rows:
                return []
            (total, _), = await c.fetch(f"SELECT sum(bytes), 1 FROM {table} WHERE {cond}")
            n = len(by)
            wanted = ", ".join("(" + ", ".join(literal(k, v) for k, v in zip(by, r[:n])) + ")" for r in rows)
            hosts = {tuple(r[:n]): r[n] for r in await c.fetch(
                f"SELECT {', '.join(exprs)}, uniqExact(host) FROM {table} WHERE {cond}"
                f" AND ({', '.join(cols)}) IN ({wanted}) GROUP BY {keys}")}
            out = []
            for r in rows:
                d = {k: audit._net_text(bytes.fromhex(r[i]), v4, v6) if k == "peer-net" else r[i]
                     for i, k in enumerate(by)}
                d.update(bytes=r[n], packets=r[n + 1], flows=r[n + 2], hosts=hosts.get(tuple(r[:n]), 0),
                         share_pct=100.0 * r[n] / total if total else 0.0)
                out.append(d)
            return out
        return self._query(grouped)

    async def single(c):
        sql = (f"SELECT {', '.join(schema.AUDIT_COLUMNS)} FROM {table} WHERE {cond}"
               f" ORDER BY {_SORTS[sort]}, {_TIE}" + (f" LIMIT {int(limit)}" if limit is not None else ""))
        out = []
        for row in await c.fetch(sql):
            d = dict(zip(audit.FLOW_KEYS, row))
            d["start"], d["end"] = d["start"] / 1000.0, d["end"] / 1000.0
            out.append(d)
        return out
    return self._query(single)


ClickHouseReader.flows = flows
