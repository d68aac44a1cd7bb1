"""NetFlow v5: a 24-octet header and fixed 48-octet records (Cisco's published layout)."""

from __future__ import annotations

from struct import unpack_from

import numpy as np

from collector.netflow.errors import BadLength, ShortHeader

HEADER_LEN = 24
RECORD_LEN = 48

RECORD = np.dtype({
    "names": ["src", "dst", "in_if", "out_if", "packets", "bytes", "first", "last",
              "sport", "dport", "proto"],
    "formats": [">u4", ">u4", ">u2", ">u2", ">u4", ">u4", ">u4", ">u4", ">u2", ">u2", "u1"],
    "offsets": [0, 4, 12, 14, 16, 20, 24, 28, 32, 34, 38],
    "itemsize": RECORD_LEN,
})


def header(data: bytes) -> tuple[int, int, float, int, int, int]:
    """-> (count, sys_uptime_ms, export time in UNIX seconds, flow_sequence, domain, sampling rate).

    The domain is engine_type << 8 | engine_id. The sampling field holds a 2-bit mode and a
    14-bit interval; an interval of 0 means unsampled whatever the mode.
    """
    if len(data) < HEADER_LEN:
        raise ShortHeader(f"{len(data)} octets", version=5)
    count, uptime, secs, nsecs, seq, etype, eid, sampling = unpack_from(">HIIIIBBH", data, 2)
    if HEADER_LEN + count * RECORD_LEN > len(data):
        raise BadLength(f"{count} records need {HEADER_LEN + count * RECORD_LEN} octets, "
                        f"datagram has {len(data)}", version=5)
    interval = sampling & 0x3FFF
    return count, uptime, secs + nsecs / 1e9, seq, (etype << 8) | eid, interval or 1
