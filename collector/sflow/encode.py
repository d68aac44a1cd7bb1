"""The agent side of sFlow v5, for benchmarks and tests: datagrams with flow samples (raw packet
header records, optionally sampled_ipv4/6 and extended switch records) and counter samples
(if_counters). Layouts as `datagram.py` reads them (sFlow v5 §5)."""

from __future__ import annotations

import ipaddress
import struct


def _opaque(data: bytes) -> bytes:
    return data + bytes(-len(data) % 4)


def record(fmt: int, body: bytes) -> bytes:
    body = _opaque(body)
    return struct.pack(">II", fmt, len(body)) + body


def raw_header(header: bytes, frame_length: int, protocol: int = 1, stripped: int = 4) -> bytes:
    """A raw packet header record (format 1)."""
    return record(1, struct.pack(">IIII", protocol, frame_length, stripped, len(header)) + _opaque(header))


def sampled_ip(length: int, proto: int, src: str, dst: str, sport: int, dport: int) -> bytes:
    """A sampled_ipv4 (format 3) or sampled_ipv6 (format 4) record."""
    s, d = ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed
    fmt = 3 if len(s) == 4 else 4
    return record(fmt, struct.pack(">II", length, proto) + s + d + struct.pack(">IIII", sport, dport, 0, 0))


def extended_switch(src_vlan: int, dst_vlan: int) -> bytes:
    return record(1001, struct.pack(">IIII", src_vlan, 0, dst_vlan, 0))


def flow_sample(records: list[bytes], seq: int, rate: int, pool: int = 0, drops: int = 0, source: int = 1,
                in_if: int = 0x3FFFFFFF, out_if: int = 0x3FFFFFFF, expanded: bool = False) -> bytes:
    if expanded:
        body = struct.pack(">11I", seq, 0, source, rate, pool, drops, 0, in_if, 0, out_if, len(records))
    else:
        body = struct.pack(">8I", seq, source, rate, pool, drops, in_if, out_if, len(records))
    body += b"".join(records)
    return struct.pack(">II", 3 if expanded else 1, len(body)) + body


def if_counters(if_index: int, speed: int, in_octets: int, out_octets: int, status: int = 3) -> bytes:
    body = struct.pack(">IIQII", if_index, 6, speed, 1, status) + struct.pack(">Q6I", in_octets, 0, 0, 0, 0, 0, 0)
    body += struct.pack(">Q6I", out_octets, 0, 0, 0, 0, 0, 0)
    return record(1, body)


def counter_sample(records: list[bytes], seq: int, source: int = 1) -> bytes:
    body = struct.pack(">III", seq, source, len(records)) + b"".join(records)
    return struct.pack(">II", 2, len(body)) + body


def datagram(samples: list[bytes], seq: int, agent: str = "192.0.2.1", sub_agent: int = 0,
             uptime: int = 0) -> bytes:
    a = ipaddress.ip_address(agent)
    head = struct.pack(">II", 5, 1 if a.version == 4 else 2) + a.packed
    return head + struct.pack(">IIII", sub_agent, seq, uptime, len(samples)) + b"".join(samples)
