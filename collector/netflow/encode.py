"""Build NetFlow v5, v9 and IPFIX datagrams: the exporter side, for `imflow demo`, the
benchmarks and tests that need datagrams of a shape no real exporter here produces
(enterprise fields, variable-length fields, options data, biflow, sampling).
"""

from __future__ import annotations

import ipaddress
import struct
from typing import Mapping, Sequence

from collector.netflow import fields as F

Field = tuple[int, int]  # (element key, length)


def _element(k: int, length: int, ipfix: bool) -> bytes:
    if k >= 1 << 16 and k < F.V9_SCOPE:
        if not ipfix:
            raise ValueError("enterprise elements need IPFIX")
        return struct.pack(">HHI", 0x8000 | (k & 0x7FFF), length, k >> 16)
    return struct.pack(">HH", k & 0xFFFF, length)


def _pad(body: bytes, to: int = 4) -> bytes:
    return body + b"\0" * (-len(body) % to)


def template_set(templates: Sequence[tuple[int, Sequence[Field]]], ipfix: bool) -> bytes:
    body = b"".join(struct.pack(">HH", tid, len(flds)) + b"".join(_element(k, n, ipfix) for k, n in flds)
                    for tid, flds in templates)
    return struct.pack(">HH", 2 if ipfix else 0, len(body) + 4) + body


def withdrawal_set(tids: Sequence[int], options: bool = False) -> bytes:
    """IPFIX template withdrawal records (RFC 7011 §8.1)."""
    body = b"".join(struct.pack(">HH", tid, 0) for tid in tids)
    return struct.pack(">HH", 3 if options else 2, len(body) + 4) + body


def options_template_set(tid: int, scope: Sequence[Field], options: Sequence[Field], ipfix: bool) -> bytes:
    if ipfix:
        body = struct.pack(">HHH", tid, len(scope) + len(options), len(scope))
        body += b"".join(_element(k, n, True) for k, n in list(scope) + list(options))
        return struct.pack(">HH", 3, len(body) + 4) + body
    body = struct.pack(">HHH", tid, 4 * len(scope), 4 * len(options))
    body += b"".join(struct.pack(">HH", k & 0xFFFF, n) for k, n in scope)
    body += b"".join(struct.pack(">HH", k, n) for k, n in options)
    body = _pad(body)
    return struct.pack(">HH", 1, len(body) + 4) + body


def value_bytes(value, length: int) -> bytes:
    """An int, address text or bytes -> the octets of a field of `length` (VARLEN: prefixed)."""
    if isinstance(value, str):
        if length == F.VARLEN:
            value = value.encode()
        else:
            value = ipaddress.ip_address(value).packed
    if isinstance(value, (bytes, bytearray)):
        if length == F.VARLEN:
            n = len(value)
            return (bytes([n]) if n < 255 else b"\xff" + struct.pack(">H", n)) + bytes(value)
        return bytes(value).rjust(length, b"\0")[-length:]
    return int(value).to_bytes(length, "big")


def data_set(tid: int, flds: Sequence[Field], rows: Sequence[Mapping[int, object]], pad: bool = True) -> bytes:
    body = b"".join(b"".join(value_bytes(row.get(k, 0), n) for k, n in flds) for row in rows)
    if pad:
        body = _pad(body)
    return struct.pack(">HH", tid, len(body) + 4) + body


def v9_message(sets: Sequence[bytes], *, uptime_ms: int, unix_secs: int, sequence: int,
               source_id: int = 0, count: int | None = None) -> bytes:
    if count is None:
        count = len(sets)
    return struct.pack(">HHIIII", 9, count, uptime_ms, unix_secs, sequence, source_id) + b"".join(sets)


def ipfix_message(sets: Sequence[bytes], *, export_time: int, sequence: int, domain: int = 0) -> bytes:
    body = b"".join(sets)
    return struct.pack(">HHIII", 10, 16 + len(body), export_time, sequence, domain) + body


V5_RECORD = struct.Struct(">IIIHHIIIIHHxBBBHHBBxx")


def v5_datagram(records: Sequence[Mapping[str, object]], *, uptime_ms: int, unix_secs: int,
                sequence: int, engine_type: int = 0, engine_id: int = 0, sampling: int = 0,
                unix_nsecs: int = 0) -> bytes:
    """`records`: dicts with src, dst (text), sport, dport, proto, packets, bytes, first, last
    (sysUpTime ms), and optionally in_if, out_if, tcp_flags, tos."""
    head = struct.pack(">HHIIIIBBH", 5, len(records), uptime_ms, unix_secs, unix_nsecs, sequence,
                       engine_type, engine_id, sampling)
    body = b"".join(V5_RECORD.pack(
        int(ipaddress.IPv4Address(r["src"])), int(ipaddress.IPv4Address(r["dst"])), 0,
        r.get("in_if", 0), r.get("out_if", 0), r["packets"], r["bytes"], r["first"], r["last"],
        r["sport"], r["dport"], r.get("tcp_flags", 0), r["proto"], r.get("tos", 0), 0, 0, 0, 0)
        for r in records)
    return head + body
