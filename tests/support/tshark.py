"""Decode NetFlow v5/v9/IPFIX export captures with tshark's `cflow` dissector, as an
independent reference for imflow's own decoder.

Facts about tshark 4.0.17 (Debian 12) behind the choices here:

- We read `-T pdml`, not `-T fields`: with fields, each column is a comma-joined list per
  frame, so once records of both families (`cflow.srcaddr` vs `cflow.srcaddrv6`) or options
  records share a datagram the columns no longer line up, and RFC 5103 reverse counters
  reuse the forward field names. In PDML each record is its own element (`pdu i/n` for
  v5, `Flow i` for v9/IPFIX) and a reverse field's showname ends in "(Reverse Type ...)".
- Field names used: cflow.version, cflow.srcaddr / cflow.srcaddrv6, cflow.dstaddr /
  cflow.dstaddrv6, cflow.srcport, cflow.dstport, cflow.protocol, cflow.octets,
  cflow.packets (64-bit fields whatever the record's width; there is no cflow.octets64 or
  cflow.packets64). A name that does not exist makes `-T fields` print empty columns.
- tshark stops reading a v9 datagram after `count` flowsets. softflowd 1.1.0 puts the number
  of *flow* records there (not templates and options records as RFC 3954 §5.1 says), so in a
  datagram that also carries its templates tshark never reaches the data. `decode` therefore
  rewrites, in a temporary copy, each v9 header's count to at least the number of flowsets
  in the datagram. Nothing else is touched.
- Reverse (PEN 29305) octets and packets are reported as `reverse_bytes` / `reverse_packets`.
  tshark shows reverse fields by their forward names and does not mark other enterprise
  fields, so nothing else of a biflow is exposed.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import tempfile
import xml.etree.ElementTree as ET

from collector.tools.capture import read_capture

from .pcapgen import write_udp_pcap

_INT = {
    "cflow.srcport": "src_port",
    "cflow.dstport": "dst_port",
    "cflow.protocol": "proto",
    "cflow.octets": "bytes",
    "cflow.packets": "packets",
}
_ADDR = {
    "cflow.srcaddr": "src_addr",
    "cflow.srcaddrv6": "src_addr",
    "cflow.dstaddr": "dst_addr",
    "cflow.dstaddrv6": "dst_addr",
}


class TsharkError(RuntimeError):
    pass


def available() -> bool:
    return shutil.which("tshark") is not None


def fields(pcap_path, names: list[str], display_filter: str | None = None) -> list[list[str]]:
    """tshark's own dissectors: one row per packet (matching `display_filter`), the values of
    the fields `names` ("" where a packet has none)."""
    cmd = ["tshark", "-n", "-r", os.fspath(pcap_path), "-T", "fields", "-E", "separator=,"]
    if display_filter:
        cmd += ["-Y", display_filter]
    for name in names:
        cmd += ["-e", name]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return [line.split(",") for line in out.splitlines()]


def decode(pcap_path, port: int) -> list[dict]:
    """One dict per flow record in the capture's export datagrams to UDP `port`, in capture
    order: version, src_addr, dst_addr (text), src_port, dst_port, proto, bytes, packets,
    frame (1-based), and reverse_bytes / reverse_packets for RFC 5103 biflows. Options
    records and records of unknown templates are left out."""
    pcap_path = os.fspath(pcap_path)
    with tempfile.TemporaryDirectory(prefix="tshark-") as tmp:
        fixed = _fix_v9_counts(pcap_path, port, os.path.join(tmp, "fixed.pcap"))
        return _run(fixed or pcap_path, port)


def _flowsets(payload: bytes) -> int:
    offset, n = 20, 0
    while offset + 4 <= len(payload):
        length = struct.unpack_from("!H", payload, offset + 2)[0]
        if length < 4:
            break
        offset += length
        n += 1
    return n


def _fix_v9_counts(path: str, port: int, out: str) -> str | None:
    """Write `out` with v9 counts raised to the flowset count; None if nothing needs it."""
    datagrams, _ = read_capture(path)
    rows, changed = [], False
    for d in datagrams:
        payload = d.payload
        if d.dport == port and len(payload) >= 20 and payload[:2] == b"\0\x09":
            count, sets = struct.unpack_from("!H", payload, 2)[0], _flowsets(payload)
            if count < sets:
                payload = payload[:2] + struct.pack("!H", sets) + payload[4:]
                changed = True
        rows.append((d.time, d.src, d.sport, d.dst, d.dport, payload))
    if not changed:
        return None
    write_udp_pcap(out, rows, nanosecond=True)
    return out


def _run(path: str, port: int) -> list[dict]:
    cmd = ["tshark", "-n", "-r", path, "-d", f"udp.port=={port},cflow", "-Y", "cflow", "-T", "pdml"]
    proc = subprocess.run(cmd, capture_output=True, timeout=120)
    if proc.returncode != 0:
        raise TsharkError(
            f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.decode(errors='replace')}"
        )
    root = ET.fromstring(proc.stdout)
    records: list[dict] = []
    for packet in root.iter("packet"):
        frame = None
        for proto in packet.iter("proto"):
            if proto.get("name") == "geninfo":
                for f in proto.iter("field"):
                    if f.get("name") == "num":
                        frame = int(f.get("show"))
            if proto.get("name") != "cflow":
                continue
            version = None
            for f in proto:
                if f.get("name") == "cflow.version":
                    version = int(f.get("show"))
            for container in proto.iter("field"):
                show = container.get("show") or ""
                if container.get("name") or not (
                    show.startswith("Flow ") or show.startswith("pdu ")
                ):
                    continue
                record = _record(container)
                if record is not None:
                    record.update(version=version, frame=frame)
                    records.append(record)
    return records


def _record(container: ET.Element) -> dict | None:
    record: dict = {}
    for f in container.iter("field"):
        name = f.get("name")
        reverse = "(Reverse" in (f.get("showname") or "")
        if name in _ADDR and not reverse:
            record.setdefault(_ADDR[name], f.get("show"))
        elif name in _INT:
            key = ("reverse_" if reverse else "") + _INT[name]
            show = f.get("show")
            record.setdefault(key, int(show, 16) if show.startswith("0x") else int(show))
    if "src_addr" not in record:
        return None  # an options record (sampling, system init time) or undissected data
    return record
