"""The flow audit log on SQLite (docs/audit.md): what the store writes and what `imflow flows`
reads. The table is schema version 2's `audit_chunk` (collector/store/schema.py).

The log is kept in chunks, not a row per flow: each flush's flows are one `AuditBatch` of
NumPy columns (times in milliseconds, addresses as two 64-bit halves, services and exporters
as indexes into the chunk's own name lists), stored as one BLOB per `CHUNK_ROWS` rows with the
chunk's first start and last end beside it. A row per flow cost 6-8 us of the collector's one
Python core per flow (binding 17 values, B-tree inserts); a chunk costs a copy of its columns.
Reading decodes the chunks that overlap the period and filters them with NumPy masks.

`AuditBatch` is also what the pipeline hands to the store; iterating it gives `AuditRow`s, so
a backend that wants rows (ClickHouse) takes it as a list of them.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import struct
from collections.abc import Iterable, Iterator

import numpy as np

from collector import kernels
from collector.netflow.batch import addr_to_str
from collector.store import segments
from collector.store.rows import AuditRow

_V4_PREFIX = b"\x00" * 10 + b"\xff\xff"
_V4_HI, _V4_LO = 0, 0xFFFF << 32  # ::ffff:0.0.0.0 as (hi, lo)
CHUNK_ROWS = 65536  # rows per stored chunk: the row bound and the age bound drop whole chunks
_MAGIC = b"IMFA"
_FORMAT = 2  # what encode writes; decode reads 1 too
_NONE = np.zeros(0, np.uint64)
DIRECTIONS = ("none", "out", "in")  # code -> AuditRow.direction
# format 2's stored columns, in order (AuditBatch.encode)
_STORED = ("start_ms", "duration", "exporter", "host_port", "peer_port", "proto", "service", "bytes", "packets",
           "in_if", "out_if", "direction", "host4", "host_x", "host_xhi", "host_xlo", "peer4", "peer_x", "peer_xhi",
           "peer_xlo")

# column -> dtype, in stored order
COLUMNS: dict[str, np.dtype] = {
    "start_ms": np.dtype("<i8"), "end_ms": np.dtype("<i8"), "exporter": np.dtype("<u4"),
    "host_hi": np.dtype("<u8"), "host_lo": np.dtype("<u8"), "peer_hi": np.dtype("<u8"), "peer_lo": np.dtype("<u8"),
    "host_port": np.dtype("<u2"), "peer_port": np.dtype("<u2"), "proto": np.dtype("u1"), "service": np.dtype("<u2"),
    "bytes": np.dtype("<u8"), "packets": np.dtype("<u8"), "in_if": np.dtype("<u4"), "out_if": np.dtype("<u4"),
    "direction": np.dtype("u1"),
}

INSERT = "INSERT INTO audit_chunk (first_ms, last_ms, rows, data) VALUES (?, ?, ?, ?)"
# schema version 4: the octets in a segment file (collector/store/segments.py), `data` empty
INSERT_AT = ("INSERT INTO audit_chunk (first_ms, last_ms, rows, data, segment, at, size)"
             " VALUES (?, ?, ?, x'', ?, ?, ?)")
SEGMENTS = "SELECT DISTINCT segment FROM audit_chunk WHERE segment IS NOT NULL"
# the oldest chunks beyond the row bound (whole chunks, newest kept first)
TRIM = ("DELETE FROM audit_chunk WHERE id IN (SELECT id FROM (SELECT id, sum(rows) OVER (ORDER BY id DESC)"
        " AS total FROM audit_chunk) WHERE total > ?)")
PRUNE = "DELETE FROM audit_chunk WHERE last_ms < ?"  # a chunk goes when its newest flow is past the age
PRUNED_ROWS = "SELECT coalesce(sum(rows), 0) FROM audit_chunk WHERE last_ms < ?"


def _span(v: np.ndarray) -> tuple[int, int]:
    """(smallest value, octets per offset from it: 0 when all are equal)."""
    if not len(v):
        return 0, 0
    lo = int(v.min())
    return lo, _width(int(v.max()) - lo)


def _width(span: int) -> int:
    """Octets an offset up to `span` takes (0: every value is the base)."""
    return 0 if span == 0 else 1 if span < 1 << 8 else 2 if span < 1 << 16 else 4 if span < 1 << 32 else 8


def addr_key(text: str) -> bytes:
    """An address as 16 octets that sort like the addresses: IPv6 as is, IPv4 as
    ::ffff:a.b.c.d. Text that is no address keys as 16 zero octets."""
    try:
        if ":" in text:
            return socket.inet_pton(socket.AF_INET6, text)
        return _V4_PREFIX + socket.inet_pton(socket.AF_INET, text)
    except OSError:
        return bytes(16)


def _halves(key: bytes) -> tuple[int, int]:
    n = int.from_bytes(key, "big")
    return n >> 64, n & 0xFFFF_FFFF_FFFF_FFFF


class AuditBatch:
    """Flows of the audit log as columns (`COLUMNS`); `exporters`, `services` and `categories`
    are the names the index columns point into (`categories[i]` is `services[i]`'s)."""

    __slots__ = ("categories", "cols", "exporters", "services")

    def __init__(self, cols: dict[str, np.ndarray], exporters: list[str], services: list[str],
                 categories: list[str]):
        self.cols = {c: np.ascontiguousarray(cols[c], t) for c, t in COLUMNS.items()}
        self.exporters, self.services, self.categories = list(exporters), list(services), list(categories)

    @classmethod
    def empty(cls) -> AuditBatch:
        return cls({c: np.zeros(0, t) for c, t in COLUMNS.items()}, [], [], [])

    def __len__(self) -> int:
        return len(self.cols["bytes"])

    def __bool__(self) -> bool:
        return len(self) > 0

    def __iter__(self) -> Iterator[AuditRow]:
        names: dict[tuple[int, int], str] = {}

        def addr(hi: int, lo: int) -> str:
            s = names.get((hi, lo))
            if s is None:
                s = names[(hi, lo)] = addr_to_str(hi, lo)
            return s
        ex, sv, cat = self.exporters, self.services, self.categories
        for (s, e, x, hh, hl, ph, pl, hp, pp, pr, si, b, p, i_if, o_if, d) in zip(
                *(self.cols[c].tolist() for c in COLUMNS)):
            yield AuditRow(s / 1000.0, e / 1000.0, ex[x], addr(hh, hl), addr(ph, pl), hp, pp, pr, sv[si], cat[si],
                           b, p, i_if, o_if, DIRECTIONS[d])

    @classmethod
    def from_rows(cls, rows: Iterable[AuditRow]) -> AuditBatch:
        """`AuditRow`s (from a worker's pipe, a test, another backend) as a batch."""
        if isinstance(rows, AuditBatch):
            return rows
        if isinstance(rows, AuditChunks):
            return rows.batch()
        rows = list(rows)
        exporters: dict[str, int] = {}
        services: dict[tuple[str, str], int] = {}
        cols: dict[str, list] = {c: [] for c in COLUMNS}
        for r in rows:
            hh, hl = _halves(addr_key(r.host))
            ph, pl = _halves(addr_key(r.peer))
            for c, v in (("start_ms", round(r.start * 1000)), ("end_ms", round(r.end * 1000)),
                         ("exporter", exporters.setdefault(r.exporter, len(exporters))),
                         ("host_hi", hh), ("host_lo", hl), ("peer_hi", ph), ("peer_lo", pl),
                         ("host_port", r.host_port), ("peer_port", r.peer_port), ("proto", r.proto),
                         ("service", services.setdefault((r.service, r.category), len(services))),
                         ("bytes", r.bytes), ("packets", r.packets), ("in_if", r.in_if), ("out_if", r.out_if),
                         ("direction", DIRECTIONS.index(r.direction) if r.direction in DIRECTIONS else 0)):
                cols[c].append(v)
        return cls({c: np.array(v, COLUMNS[c]) for c, v in cols.items()}, list(exporters),
                   [s for s, _ in services], [c for _, c in services])

    @classmethod
    def concat(cls, batches: list[AuditBatch]) -> AuditBatch:
        """One batch of several; names are merged and the index columns renumbered."""
        batches = [b for b in batches if len(b)]
        if not batches:
            return cls.empty()
        if len(batches) == 1:
            return batches[0]
        exporters: dict[str, int] = {}
        services: dict[tuple[str, str], int] = {}
        parts = []
        for b in batches:
            emap = np.array([exporters.setdefault(e, len(exporters)) for e in b.exporters] or [0], np.uint32)
            smap = np.array([services.setdefault(k, len(services)) for k in zip(b.services, b.categories)] or [0],
                            np.uint16)
            cols = dict(b.cols)
            cols["exporter"], cols["service"] = emap[cols["exporter"]], smap[cols["service"]]
            parts.append(cols)
        return cls({c: np.concatenate([p[c] for p in parts]) for c in COLUMNS}, list(exporters),
                   [s for s, _ in services], [c for _, c in services])

    def take(self, index) -> AuditBatch:
        return AuditBatch({c: v[index] for c, v in self.cols.items()}, self.exporters, self.services,
                          self.categories)

    # --- storage -------------------------------------------------------------------------------

    def encode(self) -> bytearray:
        """MAGIC, u32 header length, the JSON header, then the stored columns (`_FORMAT` 2).

        Each stored column is kept as its offsets from its smallest value in the narrowest
        unsigned little-endian width that holds them (header `columns`: name, base, width in
        octets, values; width 0: every value is the base, nothing stored). What is stored is
        chosen for small offsets: the end as the duration, and each address as its IPv4 part
        (`host4`: the low 32 bits of ::ffff:a.b.c.d) with the rows that are not IPv4 listed
        apart (`host_x`: their row numbers, `host_xhi`/`host_xlo`: their halves), so one IPv6
        flow does not widen a chunk's addresses from 4 octets to 16. IPv4 flows take about 25
        octets instead of 84 as held: SQLite's cost of storing a BLOB grows with its size.
        Format 1 (every column of `COLUMNS` as is) is still read."""
        kernel = kernels.compiled
        if kernel is not None:  # the same octets in two compiled passes (collector/kernels/_audit.c)
            cols = tuple(self.cols[c] for c in COLUMNS)  # contiguous, of COLUMNS' types (__init__)
            spans = kernel.audit_spans(cols)
            meta = [(name, least, _width(most - least), count) for name, (least, most, count) in zip(_STORED, spans)]
            return kernel.audit_pack(cols, tuple(m[1] for m in meta), tuple(m[2] for m in meta),
                                     tuple(m[3] for m in meta), self._head(meta))
        c = self.cols
        stored = [("start_ms", c["start_ms"]), ("duration", c["end_ms"] - c["start_ms"])]
        stored += [(k, c[k]) for k in ("exporter", "host_port", "peer_port", "proto", "service", "bytes", "packets",
                                       "in_if", "out_if", "direction")]
        for side in ("host", "peer"):
            hi, lo = c[f"{side}_hi"], c[f"{side}_lo"]
            v4 = (hi == 0) & ((lo >> np.uint64(32)) == np.uint64(0xFFFF))
            low = lo & np.uint64(0xFFFF_FFFF)
            if v4.all():
                stored += [(f"{side}4", low), (f"{side}_x", _NONE), (f"{side}_xhi", _NONE), (f"{side}_xlo", _NONE)]
                continue
            x = np.flatnonzero(~v4)
            low[x] = 0
            stored += [(f"{side}4", low), (f"{side}_x", x.astype(np.uint32)), (f"{side}_xhi", hi[x]),
                       (f"{side}_xlo", lo[x])]
        meta = [(name, *_span(v), len(v)) for name, v in stored]
        head = self._head(meta)
        offset = len(head)
        out = bytearray(offset + sum(width * count for _, _, width, count in meta))
        out[:offset] = head
        for (_, v), (_, base, width, count) in zip(stored, meta):
            if width:  # the offsets written straight into the chunk, cut to the width
                np.subtract(v, v.dtype.type(base), out=np.frombuffer(out, f"<u{width}", count, offset),
                            casting="unsafe")
                offset += width * count
        return out  # a bytearray: SQLite binds it as a BLOB, no copy to bytes

    def _head(self, meta: list) -> bytes:
        """MAGIC, the header's length and the JSON header of a chunk of these rows."""
        header = json.dumps({"format": _FORMAT, "rows": len(self), "exporters": self.exporters,
                             "services": self.services, "categories": self.categories, "columns": meta},
                            separators=(",", ":")).encode()
        return _MAGIC + struct.pack("<I", len(header)) + header

    @classmethod
    def decode(cls, data: bytes) -> AuditBatch:
        if data[:4] != _MAGIC:
            raise ValueError("not an imflow audit chunk")
        (n,) = struct.unpack_from("<I", data, 4)
        header = json.loads(data[8:8 + n])
        version = header.get("format")
        if version == 1:
            return cls._decode_1(data, header, 8 + n)
        if version != _FORMAT:
            raise ValueError(f"audit chunk format {version!r}: written by a newer imflow")
        rows, offset, got, bases = int(header["rows"]), 8 + n, {}, {}
        for name, base, width, count in header["columns"]:
            base, width, count = int(base), int(width), int(count)
            bases[name] = base
            if width not in (0, 1, 2, 4, 8) or not 0 <= count <= rows:
                raise ValueError(f"audit chunk: column {name} of width {width}, {count} values")
            if not width:
                got[name] = np.zeros(count, np.uint8)  # every offset 0: the value is the base
                continue
            got[name] = np.frombuffer(data, f"<u{width}", count, offset)
            offset += count * width
        if offset != len(data):
            raise ValueError(f"audit chunk of {len(data)} octets, {offset} expected")
        start = got["start_ms"].astype(np.int64) + bases["start_ms"]
        cols = {"start_ms": start, "end_ms": start + got["duration"].astype(np.int64) + bases["duration"]}
        for k in ("exporter", "host_port", "peer_port", "proto", "service", "bytes", "packets", "in_if", "out_if",
                  "direction"):
            cols[k] = (got[k].astype(np.uint64) + np.uint64(bases[k])).astype(COLUMNS[k])
        for side in ("host", "peer"):
            lo = got[f"{side}4"].astype(np.uint64) + np.uint64(bases[f"{side}4"] | _V4_LO)
            hi = np.zeros(rows, np.uint64)
            x = got[f"{side}_x"].astype(np.int64) + bases[f"{side}_x"]
            if len(x):
                if len(x) != len(got[f"{side}_xhi"]) or len(x) != len(got[f"{side}_xlo"]) or x.max() >= rows:
                    raise ValueError(f"audit chunk: {side} addresses beyond its rows")
                hi[x] = got[f"{side}_xhi"].astype(np.uint64) + np.uint64(bases[f"{side}_xhi"])
                lo[x] = got[f"{side}_xlo"].astype(np.uint64) + np.uint64(bases[f"{side}_xlo"])
            cols[f"{side}_hi"], cols[f"{side}_lo"] = hi, lo
        if any(len(v) != rows for v in cols.values()):
            raise ValueError("audit chunk: columns of different lengths")
        return cls(cols, header["exporters"], header["services"], header["categories"])

    @classmethod
    def _decode_1(cls, data: bytes, header: dict, offset: int) -> AuditBatch:
        """Format 1 (written before 2026-12-05): every column of COLUMNS, offsets from a base."""
        rows, cols = header["rows"], {}
        for c, t in COLUMNS.items():
            base, width = int(header["base"][c]), int(header["width"][c])
            if width not in (0, 1, 2, 4, 8):
                raise ValueError(f"audit chunk: column {c} of width {width}")
            if not width:
                cols[c] = np.full(rows, base, t)
                continue
            off = np.frombuffer(data, f"<u{width}", rows, offset)
            offset += rows * width
            if t.kind == "i":
                cols[c] = off.astype(np.int64) + base
            else:
                cols[c] = (off.astype(np.uint64) + np.uint64(base)).astype(t)
        if offset != len(data):
            raise ValueError(f"audit chunk of {len(data)} octets, {offset} expected")
        return cls(cols, header["exporters"], header["services"], header["categories"])

    def chunks(self) -> Iterator[Chunk]:
        """(first start, last end, rows, data) per stored chunk of at most CHUNK_ROWS rows."""
        for i in range(0, len(self), CHUNK_ROWS):
            part = self.take(slice(i, i + CHUNK_ROWS)) if len(self) > CHUNK_ROWS else self  # views
            yield (int(part.cols["start_ms"].min()), int(part.cols["end_ms"].max()), len(part), part.encode())


Chunk = tuple[int, int, int, bytes]  # (first start, last end, rows, encoded data): a row of audit_chunk


class AuditChunks:
    """Flows of the audit log already encoded as stored chunks (`Chunk`s, oldest first): what
    the collector's buffer hands to the store, and a worker to its supervisor (a few octets a
    flow to pickle). SQLite inserts them as they are; iterating gives `AuditRow`s, for backends
    that want rows (ClickHouse)."""

    __slots__ = ("chunks", "rows")

    def __init__(self, chunks: list[Chunk]):
        self.chunks = list(chunks)
        self.rows = sum(c[2] for c in self.chunks)

    def __len__(self) -> int:
        return self.rows

    def __bool__(self) -> bool:
        return self.rows > 0

    def __iter__(self) -> Iterator[AuditRow]:
        for chunk in self.chunks:
            yield from AuditBatch.decode(chunk[3])

    def batch(self) -> AuditBatch:
        return AuditBatch.concat([AuditBatch.decode(c[3]) for c in self.chunks])


def encode_chunks(rows) -> list[Chunk]:
    """`rows` (AuditChunks, an AuditBatch or AuditRows) as stored chunks."""
    if isinstance(rows, AuditChunks):
        return list(rows.chunks)
    batch = AuditBatch.from_rows(rows)
    return list(batch.chunks()) if len(batch) else []


params = encode_chunks  # what `Store.write` inserts for its audit rows


# --- reading: `imflow flows` ----------------------------------------------------------------

PROTOCOLS = {"icmp": 1, "tcp": 6, "udp": 17, "gre": 47, "esp": 50, "icmpv6": 58, "ipv6-icmp": 58, "sctp": 132}
PROTO_NAMES = {1: "icmp", 6: "tcp", 17: "udp", 47: "gre", 50: "esp", 58: "icmpv6", 132: "sctp"}
FLOW_KEYS = ("start", "end", "exporter", "host", "peer", "host_port", "peer_port", "proto", "service",
             "category", "bytes", "packets", "in_if", "out_if", "direction")
SORTS = {"start": "start_ms, id", "end": "end_ms, id", "bytes": "bytes DESC, id", "packets": "packets DESC, id",
         "duration": "end_ms - start_ms DESC, id"}  # the order each sort means (as SQL, for other backends)
GROUPS = ("peer-net", "peer", "host", "service", "category", "exporter", "peer-port", "proto")
DEFAULT_PREFIX = (24, 48)  # --by peer-net: IPv4 /24, IPv6 /48
_MAX_FILTER_ITEMS = 1000  # each filter list, as a ceiling on the work built from it
_GROUP_COLUMN = {"peer": "peer", "host": "host", "service": "service", "category": "category",
                 "exporter": "exporter", "peer-port": "peer_port", "proto": "proto"}


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
    if prefix[:12] == _V4_PREFIX and len(prefix) == 12 + v4_bits // 8:
        addr = prefix[12:] + bytes(4 - len(prefix[12:]))
        return f"{ipaddress.IPv4Address(addr)}/{v4_bits}"
    addr = prefix + bytes(16 - len(prefix))
    return f"{ipaddress.IPv6Address(addr)}/{v6_bits}"


def check_prefix(v4: int, v6: int) -> None:
    if not (8 <= v4 <= 32 and v4 % 8 == 0 and 8 <= v6 <= 128 and v6 % 8 == 0):
        raise ValueError(f"peer-net prefix /{v4}, /{v6}: expected multiples of 8 (IPv4 8-32, IPv6 8-128)")


def _bounded(values, what: str) -> list:
    values = list(values)
    if len(values) > _MAX_FILTER_ITEMS:
        raise ValueError(f"{what} filter: at most {_MAX_FILTER_ITEMS} values")
    return values


def _in_ranges(hi: np.ndarray, lo: np.ndarray, ranges: list[tuple[int, int, int, int]]) -> np.ndarray:
    """Addresses (hi, lo) inside any of the (first hi, first lo, last hi, last lo) ranges."""
    out = np.zeros(len(hi), bool)
    for a_hi, a_lo, b_hi, b_lo in ranges:
        ge = (hi > np.uint64(a_hi)) | ((hi == np.uint64(a_hi)) & (lo >= np.uint64(a_lo)))
        le = (hi < np.uint64(b_hi)) | ((hi == np.uint64(b_hi)) & (lo <= np.uint64(b_lo)))
        out |= ge & le
    return out


class _Filter:
    """The filters of one query, checked once, applied to each chunk as NumPy masks."""

    def __init__(self, start, end, host, peer, port, proto, service, category, exporter):
        self.lo = None if start is None else int(start * 1000)
        self.hi = None if end is None else int(end * 1000)
        self.host = None if host is None else [(*_halves(a), *_halves(b)) for a, b in
                                               map(key_range, _bounded(host, "host"))]
        self.peer = None if peer is None else [(*_halves(a), *_halves(b)) for a, b in
                                               map(key_range, _bounded(peer, "peer"))]
        self.port = None if port is None else np.array([parse_port(p) for p in _bounded(port, "port")], np.uint16)
        self.proto = None if proto is None else np.array([parse_proto(p) for p in _bounded(proto, "proto")],
                                                         np.uint8)
        self.service = None if service is None else {str(s) for s in _bounded(service, "service")}
        self.category = None if category is None else {str(c) for c in _bounded(category, "category")}
        self.exporter = None if exporter is None else {str(e) for e in _bounded(exporter, "exporter")}

    def mask(self, b: AuditBatch) -> np.ndarray:
        c = b.cols
        m = np.ones(len(b), bool)
        if self.lo is not None:
            m &= c["end_ms"] >= self.lo
        if self.hi is not None:
            m &= c["start_ms"] < self.hi
        if self.host is not None:
            m &= _in_ranges(c["host_hi"], c["host_lo"], self.host)
        if self.peer is not None:
            m &= _in_ranges(c["peer_hi"], c["peer_lo"], self.peer)
        if self.port is not None:
            m &= np.isin(c["host_port"], self.port) | np.isin(c["peer_port"], self.port)
        if self.proto is not None:
            m &= np.isin(c["proto"], self.proto)
        ok = np.ones(len(b.services), bool)
        if self.service is not None:
            ok &= np.array([s in self.service for s in b.services], bool)
        if self.category is not None:
            ok &= np.array([s in self.category for s in b.categories], bool)
        if not ok.all():
            m &= ok[c["service"]] if len(ok) else False
        if self.exporter is not None:
            okx = np.array([e in self.exporter for e in b.exporters], bool)
            m &= okx[c["exporter"]] if len(okx) else False
        return m


def _order(b: AuditBatch, sort: str) -> np.ndarray:
    """Row order for `sort`; ties keep arrival order (a stable sort)."""
    c = b.cols
    if sort == "start":
        key = c["start_ms"]
    elif sort == "end":
        key = c["end_ms"]
    elif sort in ("bytes", "packets"):
        key = ~c[sort]  # biggest first: the complement reverses unsigned order
    else:
        key = -(c["end_ms"] - c["start_ms"])
    return np.argsort(key, kind="stable")


def chunks_of(conn, flt: _Filter) -> Iterator[AuditBatch]:
    where, params = [], []
    if flt.lo is not None:
        where.append("last_ms >= ?")
        params.append(flt.lo)
    if flt.hi is not None:
        where.append("first_ms < ?")
        params.append(flt.hi)
    cond = " WHERE " + " AND ".join(where) if where else ""
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if version < 4:  # every chunk in `data`
        for (data,) in conn.execute(f"SELECT data FROM audit_chunk{cond} ORDER BY id", params):
            yield _decoded(data)
        return
    # one snapshot: the segments it points into opened first (a segment the writer removes
    # after its grace stays readable once open), then the chunks read in order
    own = not conn.in_transaction
    if own:
        conn.execute("BEGIN")
    reader = None
    try:
        located = conn.execute(f"SELECT DISTINCT segment FROM audit_chunk{cond}{' AND' if cond else ' WHERE'}"
                               " segment IS NOT NULL", params).fetchall()
        reader = segments.SegmentReader(_conn_path(conn), (s for (s,) in located))
        for data, seg, at, size in conn.execute(
                f"SELECT data, segment, at, size FROM audit_chunk{cond} ORDER BY id", params):
            if seg is not None:
                if not (isinstance(seg, int) and isinstance(at, int) and isinstance(size, int)):
                    raise ValueError("audit log: a chunk's place in its segment is damaged")
                data = reader.read(seg, at, size)
            yield _decoded(data)
    finally:
        if reader is not None:
            reader.close()
        if own and conn.in_transaction:
            conn.execute("ROLLBACK")


def _decoded(data) -> AuditBatch:
    try:
        return AuditBatch.decode(data)
    except (ValueError, struct.error, KeyError, TypeError, IndexError, OverflowError, AttributeError) as exc:
        raise ValueError(f"audit log: a stored chunk cannot be read ({exc})") from None


def _conn_path(conn) -> str:
    """The file of the connection's main database."""
    for _, name, path in conn.execute("PRAGMA database_list"):
        if name == "main":
            return path
    raise ValueError("audit log: the database has no file")


def select(conn, start: float | None, end: float | None, *, host=None, peer=None, port=None, proto=None,
           service=None, category=None, exporter=None, sort: str = "start", limit: int | None = 100,
           by: tuple[str, ...] | None = None, prefix: tuple[int, int] = DEFAULT_PREFIX) -> list[dict]:
    """The audit log's flows that overlap [start, end) and pass every filter (a list of accepted
    values each; `host`/`peer` take addresses and CIDR networks, `port` matches either end's
    port, `proto` names or numbers), as dicts with FLOW_KEYS (times in UNIX seconds), sorted by
    `sort` (start/end: oldest first; bytes/packets/duration: biggest first; ties in arrival
    order), at most `limit` (None = all). With `by` (GROUPS), totals per group instead: the keys,
    bytes, packets, flows, hosts (distinct internal hosts), share_pct of the selection's bytes,
    biggest first; `peer-net` is the peer's network at `prefix` (IPv4, IPv6) bits. ValueError for
    bad arguments. Memory: a chunk at a time, plus `limit` rows (all of them with limit None)."""
    if sort not in SORTS:
        raise ValueError(f"sort {sort!r}: expected one of {', '.join(SORTS)}")
    if limit is not None and limit < 1:
        raise ValueError("limit must be at least 1 (or None for all rows)")
    if by:
        by = tuple(by)
        if len(set(by)) != len(by) or not set(by) <= set(GROUPS):
            raise ValueError(f"by: a non-empty list of distinct fields from {', '.join(GROUPS)}")
        check_prefix(*prefix)
    flt = _Filter(start, end, host, peer, port, proto, service, category, exporter)
    if by:
        return _grouped(chunks_of(conn, flt), flt, by, limit, prefix)
    parts: list[AuditBatch] = []
    held = 0
    for chunk in chunks_of(conn, flt):
        m = flt.mask(chunk)
        if not m.any():
            continue
        parts.append(chunk.take(m))
        held += len(parts[-1])
        if limit is not None and held > max(2 * limit, CHUNK_ROWS):  # keep the best `limit` only
            best = AuditBatch.concat(parts)
            parts = [best.take(_order(best, sort)[:limit])]
            held = len(parts[0])
    best = AuditBatch.concat(parts)
    best = best.take(_order(best, sort)[:limit] if limit is not None else _order(best, sort))
    return [r._asdict() for r in best]


def _groups(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of uint64 keys -> (an order that sorts them, the start of each run of equal rows)."""
    if not len(keys):
        return np.zeros(0, np.intp), np.zeros(0, np.intp)
    varying = [j for j in range(keys.shape[1]) if (keys[:, j] != keys[0, j]).any()]  # IPv4: hi is 0
    if not varying:
        return np.arange(len(keys)), np.zeros(1, np.intp)
    k = keys[:, varying]
    order = np.lexsort(k.T[::-1]) if len(varying) > 1 else np.argsort(k[:, 0], kind="stable")
    k = k[order]
    new = np.ones(len(k), bool)
    new[1:] = (k[1:] != k[:-1]).any(axis=1)
    return order, np.flatnonzero(new)


def _reduce(keys: np.ndarray, sums: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of uint64 keys and their sums -> the distinct keys (sorted) and the sums of each."""
    order, starts = _groups(keys)
    if not len(order):
        return keys, sums
    return keys[order[starts]], np.add.reduceat(sums[order], starts, axis=0)


def _distinct(rows: np.ndarray) -> np.ndarray:
    order, starts = _groups(rows)
    return rows[order[starts]] if len(order) else rows


def _grouped(chunks, flt: _Filter, by, limit, prefix) -> list[dict]:
    """Totals per group, all in NumPy: each chunk is reduced to its groups (and its distinct
    (group, host) pairs), the parts are reduced again as they pile up and at the end; only the
    `limit` biggest groups become Python objects."""
    v4, v6 = prefix
    v4_mask = np.uint64(((1 << v4) - 1) << (32 - v4))
    v6_hi = np.uint64(((1 << min(v6, 64)) - 1) << (64 - min(v6, 64)))
    v6_lo = np.uint64((((1 << (v6 - 64)) - 1) << (128 - v6)) if v6 > 64 else 0)
    names: dict[str, int] = {}  # global codes of the text keys
    width = sum(2 if k in ("peer-net", "peer", "host") else 1 for k in by)
    keys = np.zeros((0, width), np.uint64)
    sums = np.zeros((0, 3), np.uint64)
    pairs = np.zeros((0, width + 2), np.uint64)
    pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    held = 0
    for chunk in chunks:
        m = flt.mask(chunk)
        if not m.any():
            continue
        b = chunk.take(m)
        c = b.cols
        cols = []
        for k in by:
            if k == "peer-net":
                v4row = (c["peer_hi"] == 0) & ((c["peer_lo"] >> np.uint64(32)) == np.uint64(0xFFFF))
                cols += [np.where(v4row, c["peer_hi"], c["peer_hi"] & v6_hi),
                         np.where(v4row, (c["peer_lo"] & ~np.uint64(0xFFFF_FFFF)) | (c["peer_lo"] & v4_mask),
                                  c["peer_lo"] & v6_lo)]
            elif k in ("peer", "host"):
                cols += [c[f"{k}_hi"], c[f"{k}_lo"]]
            elif k in ("service", "category", "exporter"):
                texts = b.services if k == "service" else b.categories if k == "category" else b.exporters
                codes = np.array([names.setdefault(t, len(names)) for t in texts] or [0], np.uint64)
                cols.append(codes[c["exporter" if k == "exporter" else "service"]])
            else:
                cols.append(c[_GROUP_COLUMN[k]].astype(np.uint64))
        mat = np.stack(cols, axis=1)
        part = _reduce(mat, np.stack([c["bytes"], c["packets"], np.ones(len(b), np.uint64)], axis=1))
        hosts = _distinct(np.concatenate([mat, c["host_hi"][:, None], c["host_lo"][:, None]], axis=1))
        pending.append((*part, hosts))
        held += len(part[0]) + len(hosts)
        if held > 32_000_000:  # bound the parts (each chunk's are already reduced): reduce the pile
            keys, sums = _reduce(np.concatenate([keys, *(p[0] for p in pending)]),
                                 np.concatenate([sums, *(p[1] for p in pending)]))
            pairs = _distinct(np.concatenate([pairs, *(p[2] for p in pending)]))
            pending, held = [], len(keys) + len(pairs)
    if pending:
        keys, sums = _reduce(np.concatenate([keys, *(p[0] for p in pending)]),
                             np.concatenate([sums, *(p[1] for p in pending)]))
        pairs = _distinct(np.concatenate([pairs, *(p[2] for p in pending)]))
    if not len(keys):
        return []
    # distinct hosts per group: the pairs' group columns, counted (sorted like `keys`)
    _, starts = _groups(pairs[:, :width])
    host_counts = np.diff(np.append(starts, len(pairs)))
    total = int(sums[:, 0].sum(dtype=np.uint64)) if len(sums) < 1 << 20 else sum(int(x) for x in sums[:, 0])
    order = np.argsort(~sums[:, 0], kind="stable")
    if limit is not None:
        order = order[:limit]
    text = {v: k for k, v in names.items()}
    out = []
    for g in order.tolist():
        key = keys[g].tolist()
        d, i = {}, 0
        for k in by:
            if k == "peer-net":
                full = ((key[i] << 64) | key[i + 1]).to_bytes(16, "big")
                d[k] = _net_text(full[:12 + v4 // 8] if full[:12] == _V4_PREFIX else full[:v6 // 8], v4, v6)
                i += 2
            elif k in ("peer", "host"):
                d[k] = addr_to_str(key[i], key[i + 1])
                i += 2
            elif k in ("service", "category", "exporter"):
                d[k] = text[key[i]]
                i += 1
            else:
                d[k] = key[i]
                i += 1
        nbytes = int(sums[g, 0])
        d.update(bytes=nbytes, packets=int(sums[g, 1]), flows=int(sums[g, 2]), hosts=int(host_counts[g]),
                 share_pct=100.0 * nbytes / total if total else 0.0)
        out.append(d)
    return out
