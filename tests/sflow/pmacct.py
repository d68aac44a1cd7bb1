"""Run pmacct's `pmacctd` as a real sFlow v5 agent: its `sfprobe` plugin reads a pcap the test
wrote and exports a flow sample (raw packet header) for each sampled packet. Facts of Debian's
pmacct 1.7.7: it runs in the foreground with `daemonize:
false`, sleeps 2 s after the end of the file, sends from a new ephemeral port each run, puts
the agent address it is told into the datagrams, and reports frame_length as the frame on the
wire plus 4 (the FCS, as the sFlow spec says the frame length counts it)."""

from __future__ import annotations

import os
import select
import shutil
import socket
import subprocess
import tempfile
import time

FCS = 4  # octets of the Ethernet FCS, counted in sFlow's frame_length, absent from pcaps


def available() -> bool:
    return shutil.which("pmacctd") is not None


def config(pcap, port: int, rate: int = 1, agent: str = "127.0.0.1") -> str:
    return "\n".join([
        "daemonize: false",
        "plugins: sfprobe[sp]",
        f"sfprobe_receiver[sp]: 127.0.0.1:{port}",
        f"sfprobe_agentip[sp]: {agent}",
        f"sampling_rate: {rate}",
        f"pcap_savefile: {os.fspath(pcap)}",
        "pcap_savefile_wait: false",
        "plugin_buffer_size: 102400",
        "plugin_pipe_size: 10240000",
        "",
    ])


def send(pcap, port: int, rate: int = 1, timeout: float = 60) -> None:
    """Run pmacctd on `pcap` towards 127.0.0.1:`port` until it exits (stopped by pid after
    `timeout`)."""
    with tempfile.TemporaryDirectory(prefix="pmacctd-") as d:
        conf = os.path.join(d, "pmacctd.conf")
        with open(conf, "w") as fh:
            fh.write(config(pcap, port, rate))
        proc = subprocess.Popen(["pmacctd", "-f", conf], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError(f"pmacctd still running after {timeout} s")
        _check(proc.returncode, out)


def export(pcap, rate: int = 1, timeout: float = 60) -> list[tuple[bytes, tuple]]:
    """Every datagram pmacctd sends for `pcap`, received on our own loopback socket, as
    (payload, (address, port)) in arrival order."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.bind(("127.0.0.1", 0))
    got: list[tuple[bytes, tuple]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="pmacctd-") as d:
            conf = os.path.join(d, "pmacctd.conf")
            with open(conf, "w") as fh:
                fh.write(config(pcap, sock.getsockname()[1], rate))
            proc = subprocess.Popen(["pmacctd", "-f", conf], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            deadline = time.monotonic() + timeout
            try:
                while True:
                    ready, _, _ = select.select([sock], [], [], 0.05)
                    if ready:
                        data, addr = sock.recvfrom(65535)
                        got.append((data, addr))
                        continue
                    if proc.poll() is not None:
                        break
                    if time.monotonic() > deadline:
                        raise AssertionError(f"pmacctd still running after {timeout} s")
            finally:
                if proc.poll() is None:
                    proc.kill()
                out, _ = proc.communicate()
            _check(proc.returncode, out)
    finally:
        sock.close()
    return got


def _check(code: int, out: bytes) -> None:
    """pmacctd's exit status. With sampling, its core sometimes exits 1 after the plugin has
    shut down in order ("connection lost to 'sp-sfprobe'"): that is a race at exit, not a
    failure to export."""
    text = out.decode(errors="replace")
    if code == 0 or (code == 1 and "( sp/sfprobe ): Shutting down on user request" in text):
        return
    raise AssertionError(f"pmacctd exited {code}: {text}")
