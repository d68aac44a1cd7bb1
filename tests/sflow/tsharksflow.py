"""tshark's `sflow` dissector as the second decoder of sFlow v5 captures: one dict per flow
sample that carries a raw packet header, in capture order, with what tshark dissected of the
sampled header (addresses, protocol, ports) and the sample's rate and frame length.

Read from PDML in document order: a flow sample starts at its `sflow.flow_sample.sampling_rate`
field (expanded samples: `sflow.flow_sample.sampling_rate` too); the sampled header's protocols
are nested inside the sample, so the first ip/ipv6 and tcp/udp fields after a sample's
`sflow_245.header.frame_length` are that header's; the protocol is TCP or UDP when tshark
dissected one (ipv6.nxt names the first extension header), else ip.proto / ipv6.nxt."""

from __future__ import annotations

import os
import subprocess
import xml.etree.ElementTree as ET

_SRC = ("ip.src", "ipv6.src")
_DST = ("ip.dst", "ipv6.dst")
_SPORT = ("tcp.srcport", "udp.srcport")
_DPORT = ("tcp.dstport", "udp.dstport")


def decode(pcap_path, port: int) -> list[dict]:
    cmd = ["tshark", "-n", "-r", os.fspath(pcap_path), "-d", f"udp.port=={port},sflow", "-Y", "sflow",
           "-T", "pdml"]
    proc = subprocess.run(cmd, capture_output=True, timeout=300)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.decode(errors='replace')}")
    out: list[dict] = []
    for packet in ET.fromstring(proc.stdout).iter("packet"):
        cur: dict | None = None
        in_sflow = False
        for el in packet.iter():
            name = el.get("name") or ""
            if el.tag == "proto" and name == "sflow":
                in_sflow = True
                continue
            if not in_sflow or el.tag != "field":
                continue
            show = el.get("show")
            if name == "sflow.flow_sample.sampling_rate":
                cur = {"rate": int(show)}
                out.append(cur)
            elif cur is None:
                continue
            elif name == "sflow_245.header.frame_length":
                cur["frame_length"] = int(show)
            elif name in _SRC and "src_addr" not in cur:
                cur["src_addr"] = show
            elif name in _DST and "dst_addr" not in cur:
                cur["dst_addr"] = show
            elif name in ("ip.proto", "ipv6.nxt") and "proto" not in cur:
                cur["proto"] = int(show)
            elif name in _SPORT and "src_port" not in cur:
                cur["src_port"] = int(show)
                cur["proto"] = 6 if name.startswith("tcp") else 17  # past any IPv6 extension headers
            elif name in _DPORT and "dst_port" not in cur:
                cur["dst_port"] = int(show)
    return out
