"""NetFlow v5: a 24-octet header and fixed 48-octet records (Cisco's published layout)."""

from __future__ import annotations

from struct import Struct

HEADER_LEN = 24
RECORD_LEN = 48
# from offset 2: count, sysUpTime ms, unix secs, unix nsecs, flow sequence, engine type,
# engine id, sampling (a 2-bit mode and a 14-bit interval)
HEADER = Struct(">HIIIIBBH")

# record fields: column -> (offset, width)
READS = {"src_addr": (0, 4), "dst_addr": (4, 4), "in_if": (12, 2), "out_if": (14, 2), "packets": (16, 4),
         "bytes": (20, 4), "src_port": (32, 2), "dst_port": (34, 2), "proto": (38, 1)}
FIRST, LAST = (24, 4), (28, 4)  # sysUpTime ms at the flow's first and last packet
