"""Run softflowd 1.1.0 over a pcap and collect what it exports, on loopback.

`softflowd -r FILE` reads the file, flushes every flow at end of file in one unpaced burst
and exits. What it does with each flag, as checked on this machine (Debian 12, softflowd
1.1.0; tests/fixtures/README.md has the full list):

- `-v 5 -a`: NetFlow v5, IPv4 only (IPv6 packets are ignored: v5 cannot carry them).
  Times are pcap times with `-a`, garbage without it. Sequence = flows sent before.
- `-v 9 -a`: v9 with templates 1024/1025 (IPv4 TCP-UDP / ICMP) and 2048/2049 (IPv6), an
  options template 256 (interface scope; sampling interval, algorithm, IF_NAME = the pcap
  file name) and its record. IPv6 is tracked without `-6`. The header's count is the number
  of *flow* records only, not templates and options records as RFC 3954 §5.1 says, and data
  sets are not padded to 4 octets. Sequence = export packets sent before, starting at 1.
- `-v 10 ...`: IPFIX, same template ids; the options record (template 256) carries
  systemInitTimeMilliseconds (IE 160) in every IPFIX mode, `-A milli`, `-a` and `-b` alike.
  `-A milli` gives flowStart/EndMilliseconds (152/153) from the pcap times but export time
  and IE 160 from the wall clock; `-a` gives sysUpTime-relative times (22/21) and an export
  time from the pcap. `-b` (RFC 5103) exports one record per session with reverse octets,
  packets, ToS and TCP flags under PEN 29305.
- `-c SOCKET` in pcap mode makes it block in accept() on the control socket forever.
- In pcap mode the exporter sends from a new ephemeral port each run; source id 0.
"""

from __future__ import annotations

import os
import select
import shutil
import socket
import struct
import subprocess
import tempfile
import time

SO_RXQ_OVFL = getattr(socket, "SO_RXQ_OVFL", 40)  # Linux: kernel reports socket drops
RCVBUF = 4 << 20

Export = list[tuple[bytes, tuple[str, int]]]


class SoftflowdError(RuntimeError):
    pass


def available() -> bool:
    return shutil.which("softflowd") is not None


def export(pcap_path, args: list[str], timeout: float = 30, quiet: float = 0.3) -> Export:
    """Run `softflowd -r PCAP -n 127.0.0.1:PORT *args` and return every datagram it sent, as
    (payload, (src_addr, src_port)) in arrival order. Raises SoftflowdError if it fails,
    runs longer than `timeout`, or the kernel dropped a datagram on our socket."""
    pcap_path = os.fspath(pcap_path)
    if not os.path.isfile(pcap_path):
        raise FileNotFoundError(pcap_path)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    received: Export = []
    drops = 0
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        overflow_reported = True
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RXQ_OVFL, 1)
        except OSError:
            overflow_reported = False
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        with tempfile.TemporaryDirectory(prefix="softflowd-") as run_dir:
            # -r runs in the foreground and opens no control socket; at exit it unlinks its pid
            # file, so point that at our own folder, not a real daemon's /var/run one. Never
            # pass -c: with a control socket, 1.1.0 in -r mode blocks in accept() forever.
            cmd = [
                "softflowd",
                "-r",
                pcap_path,
                "-n",
                f"127.0.0.1:{port}",
                "-p",
                os.path.join(run_dir, "pid"),
                *args,
            ]
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            deadline = time.monotonic() + timeout
            last = time.monotonic()
            try:
                while True:
                    now = time.monotonic()
                    if now > deadline:
                        raise SoftflowdError(
                            f"softflowd {' '.join(args)} still running after {timeout} s"
                        )
                    if proc.poll() is not None and now - last >= quiet:
                        break
                    ready, _, _ = select.select([sock], [], [], 0.05)
                    if not ready:
                        continue
                    data, anc, _, addr = sock.recvmsg(65535, socket.CMSG_SPACE(4))
                    received.append((data, addr))
                    last = time.monotonic()
                    for level, kind, value in anc:
                        if level == socket.SOL_SOCKET and kind == SO_RXQ_OVFL and len(value) >= 4:
                            drops = struct.unpack("=I", value[:4])[0]
            finally:
                if proc.poll() is None:
                    proc.kill()
                out, err = proc.communicate()
    finally:
        sock.close()
    if proc.returncode != 0:
        raise SoftflowdError(
            f"softflowd {' '.join(args)} exited {proc.returncode}: {err.decode(errors='replace')}"
        )
    if drops:
        raise SoftflowdError(
            f"the kernel dropped {drops} export datagrams on the collecting socket"
        )
    if not overflow_reported:
        check_sequence(received)  # without the kernel's drop counter, the numbers must do
    return received


def check_sequence(datagrams: Export) -> None:
    """Raise if the v5 or v9 sequence numbers show a missing datagram. IPFIX is not checked:
    softflowd's IPFIX sequence numbers are not the RFC 7011 ones (see fixtures README)."""
    expected: int | None = None
    for payload, _ in datagrams:
        if len(payload) < 20:
            raise SoftflowdError(f"short export datagram of {len(payload)} bytes")
        version, count = struct.unpack_from("!HH", payload)
        if version == 5:
            seq = struct.unpack_from("!I", payload, 16)[0]
            step = count
        elif version == 9:
            seq = struct.unpack_from("!I", payload, 12)[0]
            step = 1
        else:
            return
        if expected is not None and seq != expected:
            raise SoftflowdError(
                f"v{version} sequence {seq}, expected {expected}: a datagram is missing"
            )
        expected = (seq + step) & 0xFFFFFFFF
