"""The flow audit log on SQLite (docs/audit.md): what the store writes and what `imflow flows`
reads. The table is schema version 2's `audit` (collector/store/schema.py).

Writing: `params(rows)` turns `AuditRow`s into the statement's parameters (times to integer
milliseconds, addresses to 16-octet keys); `Store.write` inserts them in the flush's
transaction and then deletes the oldest rows beyond the row bound, so the table never holds
more than `max_rows` rows after a flush. Rows past the age bound go at each prune.
"""

from __future__ import annotations

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
