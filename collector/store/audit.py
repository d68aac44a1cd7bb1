"""The flow audit log on SQLite (docs/audit.md): what the store writes and what `imflow flows`
reads. The table is schema version 2's `audit` (collector/store/schema.py).

Writing: `params(rows)` turns `AuditRow`s into the statement's parameters (times to integer
milliseconds, addresses to 16-octet keys); `Store.write` inserts them in the flush's
transaction and then deletes the oldest rows beyond the row bound, so the table never holds
more than `max_rows` rows after a flush. Rows past the age bound go at each prune.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterable

from collector.store.rows import AuditRow

_V4_PREFIX = b"\x00" * 10 + b"\xff\xff"

INSERT = ("INSERT INTO audit (start_ms, end_ms, exporter, host, peer, host_port, peer_port, proto,"
          " service, category, bytes, packets, in_if, out_if, direction, host_key, peer_key)"
          " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
# the oldest rows beyond the bound; rowids grow with arrival, so this is one range
TRIM = "DELETE FROM audit WHERE id <= (SELECT max(id) FROM audit) - ?"
PRUNE = "DELETE FROM audit WHERE end_ms < ?"


def addr_key(text: str) -> bytes:
    """An address as 16 octets that sort like the addresses: IPv6 as is, IPv4 as
    ::ffff:a.b.c.d. Text that is no address (never from the decoder) keys as 16 zero octets."""
    try:
        if ":" in text:
            return socket.inet_pton(socket.AF_INET6, text)
        return _V4_PREFIX + socket.inet_pton(socket.AF_INET, text)
    except OSError:
        return bytes(16)


def _ms(t: float) -> int:
    return int(round(t * 1000.0))


def params(rows: Iterable[AuditRow]) -> list[tuple]:
    return [(_ms(r.start), _ms(r.end), r.exporter, r.host, r.peer, r.host_port, r.peer_port, r.proto,
             r.service, r.category, r.bytes, r.packets, r.in_if, r.out_if, r.direction,
             addr_key(r.host), addr_key(r.peer)) for r in rows]


# --- reading: `imflow flows` ----------------------------------------------------------------

PROTOCOLS = {"icmp": 1, "tcp": 6, "udp": 17, "gre": 47, "esp": 50, "icmpv6": 58, "ipv6-icmp": 58, "sctp": 132}
PROTO_NAMES = {1: "icmp", 6: "tcp", 17: "udp", 47: "gre", 50: "esp", 58: "icmpv6", 132: "sctp"}
FLOW_KEYS = ("start", "end", "exporter", "host", "peer", "host_port", "peer_port", "proto", "service",
             "category", "bytes", "packets", "in_if", "out_if", "direction")
SORTS = {"start": "start_ms, id", "end": "end_ms, id", "bytes": "bytes DESC, id", "packets": "packets DESC, id",
         "duration": "end_ms - start_ms DESC, id"}
GROUPS = ("peer-net", "peer", "host", "service", "category", "exporter", "peer-port", "proto")
DEFAULT_PREFIX = (24, 48)  # --by peer-net: IPv4 /24, IPv6 /48
_MAX_FILTER_ITEMS = 1000  # each filter list, as a ceiling on the SQL built from it


def parse_proto(text) -> int:
    """"tcp", "udp", "icmp" ... or a number 0-255 -> the protocol number; ValueError otherwise."""
    s = str(text).strip().lower()
    if s in PROTOCOLS:
        return PROTOCOLS[s]
    if s.isdigit() and int(s) <= 255:
        return int(s)
    raise ValueError(f"proto {str(text)[:40]!r}: expected tcp, udp, icmp, ... or a number 0-255")


def parse_port(text) -> int:
    s = str(text).strip()
    if s.isdigit() and int(s) <= 65535:
        return int(s)
    raise ValueError(f"port {s[:40]!r}: expected a number 0-65535")


def key_range(text: str) -> tuple[bytes, bytes]:
    """An address or CIDR network -> (first key, last key) of the 16-octet address keys."""
    import ipaddress

    item = str(text).strip()
    try:
        net = ipaddress.ip_network(item, strict=False)
    except ValueError as exc:
        raise ValueError(f"{item[:60]!r}: {exc}") from None
    first, last = int(net.network_address), int(net.broadcast_address)
    if net.version == 4:
        first, last = first | 0xFFFF_0000_0000, last | 0xFFFF_0000_0000
    return first.to_bytes(16, "big"), last.to_bytes(16, "big")


def _net_text(prefix: bytes, v4_bits: int, v6_bits: int) -> str:
    import ipaddress

    if prefix[:12] == _V4_PREFIX and len(prefix) == 12 + v4_bits // 8:
        addr = prefix[12:] + bytes(4 - len(prefix[12:]))
        return f"{ipaddress.IPv4Address(addr)}/{v4_bits}"
    addr = prefix + bytes(16 - len(prefix))
    return f"{ipaddress.IPv6Address(addr)}/{v6_bits}"


def check_prefix(v4: int, v6: int) -> None:
    if not (8 <= v4 <= 32 and v4 % 8 == 0 and 8 <= v6 <= 128 and v6 % 8 == 0):
        raise ValueError(f"peer-net prefix /{v4}, /{v6}: expected multiples of 8 (IPv4 8-32, IPv6 8-128)")


def select(conn, start: float | None, end: float | None, *, host=None, peer=None, port=None, proto=None,
           service=None, category=None, exporter=None, sort: str = "start", limit: int | None = 100,
           by: tuple[str, ...] | None = None, prefix: tuple[int, int] = DEFAULT_PREFIX) -> list[dict]:
    """The audit log's flows that overlap [start, end) and pass every filter (a list of accepted
    values each; `host`/`peer` take addresses and CIDR networks, `port` matches either end's
    port, `proto` names or numbers), as dicts with FLOW_KEYS (times in UNIX seconds), sorted by
    `sort` (start/end: oldest first; bytes/packets/duration: biggest first), at most `limit`
    (None = all). With `by` (GROUPS), totals per group instead: the keys, bytes, packets, flows,
    hosts (distinct internal hosts), share_pct of the selection's bytes, biggest first; `peer-net`
    is the peer's network at `prefix` (IPv4, IPv6) bits. ValueError for bad arguments."""
    if sort not in SORTS:
        raise ValueError(f"sort {sort!r}: expected one of {', '.join(SORTS)}")
    if limit is not None and limit < 1:
        raise ValueError("limit must be at least 1 (or None for all rows)")
    where, params = [], []
    if start is not None:
        where.append("end_ms >= ?")
        params.append(int(start * 1000))
    if end is not None:
        where.append("start_ms < ?")
        params.append(int(end * 1000))
    for column, values in (("host_key", host), ("peer_key", peer)):
        if values is not None:
            values = _bounded(values, column[:4])
            ranges = [key_range(v) for v in values]
            where.append("(" + " OR ".join([f"{column} BETWEEN ? AND ?"] * len(ranges)) + ")" if ranges else "0")
            params.extend(x for r in ranges for x in r)
    if port is not None:
        ports = [parse_port(p) for p in _bounded(port, "port")]
        where.append("(host_port IN (SELECT value FROM json_each(?)) OR peer_port IN (SELECT value FROM json_each(?)))")
        params += [json.dumps(ports)] * 2
    if proto is not None:
        where.append("proto IN (SELECT value FROM json_each(?))")
        params.append(json.dumps([parse_proto(p) for p in _bounded(proto, "proto")]))
    for column, values in (("service", service), ("category", category), ("exporter", exporter)):
        if values is not None:
            where.append(f"{column} IN (SELECT value FROM json_each(?))")
            params.append(json.dumps([str(v) for v in _bounded(values, column)]))
    clause = (" WHERE " + " AND ".join(where)) if where else ""
    if by:
        return _grouped(conn, tuple(by), clause, params, limit, prefix)
    sql = (f"SELECT {', '.join(c for c in _READ)} FROM audit{clause} ORDER BY {SORTS[sort]}"
           + (" LIMIT ?" if limit is not None else ""))
    if limit is not None:
        params.append(int(limit))
    out = []
    for row in conn.execute(sql, params):
        d = dict(zip(FLOW_KEYS, row))
        d["start"], d["end"] = d["start"] / 1000.0, d["end"] / 1000.0
        out.append(d)
    return out


_READ = ("start_ms", "end_ms", "exporter", "host", "peer", "host_port", "peer_port", "proto", "service",
         "category", "bytes", "packets", "in_if", "out_if", "direction")
_GROUP_COLUMN = {"peer": "peer", "host": "host", "service": "service", "category": "category",
                 "exporter": "exporter", "peer-port": "peer_port", "proto": "proto"}


def _bounded(values, what: str) -> list:
    values = list(values)
    if len(values) > _MAX_FILTER_ITEMS:
        raise ValueError(f"{what} filter: at most {_MAX_FILTER_ITEMS} values")
    return values


def _grouped(conn, by, clause, params, limit, prefix) -> list[dict]:
    if len(set(by)) != len(by) or not set(by) <= set(GROUPS):
        raise ValueError(f"by: a non-empty list of distinct fields from {', '.join(GROUPS)}")
    v4, v6 = prefix
    check_prefix(v4, v6)
    cols = []
    for k in by:
        if k == "peer-net":
            cols.append(f"CASE WHEN substr(peer_key, 1, 12) = X'{_V4_PREFIX.hex()}'"
                        f" THEN substr(peer_key, 1, {12 + v4 // 8}) ELSE substr(peer_key, 1, {v6 // 8}) END")
        else:
            cols.append(_GROUP_COLUMN[k])
    keys = ", ".join(f"k{i}" for i in range(len(by)))
    inner = (f"SELECT {', '.join(f'{c} AS k{i}' for i, c in enumerate(cols))}, sum(bytes) AS b,"
             f" sum(packets) AS p, count(*) AS f, count(DISTINCT host_key) AS h FROM audit{clause}"
             f" GROUP BY {keys}")
    sql = (f"SELECT {keys}, b, p, f, h, 100.0 * b / nullif(sum(b) OVER (), 0) FROM ({inner})"
           f" ORDER BY b DESC, {keys}" + (" LIMIT ?" if limit is not None else ""))
    if limit is not None:
        params = [*params, int(limit)]
    out = []
    for row in conn.execute(sql, params):
        d = {}
        for i, k in enumerate(by):
            d[k] = _net_text(row[i], v4, v6) if k == "peer-net" else row[i]
        n = len(by)
        d.update(bytes=row[n], packets=row[n + 1], flows=row[n + 2], hosts=row[n + 3], share_pct=row[n + 4] or 0.0)
        out.append(d)
    return out
