"""Open vSwitch as a real sFlow agent, on a private database and a veth pair of its own.

Facts checked on this machine (Debian 12, openvswitch-switch 3.1): the kernel datapath module
is not there, but the userspace datapath works: `ovs-vswitchd --disable-system` with a bridge of
`datapath_type=netdev` reads a veth end through AF_PACKET. Frames written into the other end
are switched, sampled and exported as sFlow v5 (raw packet headers of 128 octets, frame length
= the frame + 4 for the FCS, input/output ports as OVS's ifIndex values) with counter samples
of the ports. The bridge's own internal port appears as a tap device, left down; the veth ends
get no IPv6 link-local address (addrgenmode none), or the kernel's own MLD and neighbour
solicitation frames would be switched and sampled with the test's. Everything is
torn down by name and pid at the end; nothing is routed: the veth pair has no address."""

from __future__ import annotations

import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
from contextlib import contextmanager

SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"


def available() -> bool:
    return (os.geteuid() == 0 and all(shutil.which(b) for b in ("ovsdb-server", "ovs-vswitchd", "ovs-vsctl",
                                                                 "ovsdb-tool", "ip"))
            and os.path.exists(SCHEMA) and hasattr(socket, "AF_PACKET"))


def _run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, timeout=30)


def _stop(pidfile: str) -> None:
    try:
        pid = int(open(pidfile).read().strip())
    except (OSError, ValueError):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)


@contextmanager
def switch(port: int, sampling: int = 1):
    """A bridge sampling 1 in `sampling` frames towards 127.0.0.1:`port`; yields the name of
    the veth end to write frames into."""
    tag = f"{os.getpid() % 100000:05d}"
    a, b, br = f"sfa{tag}", f"sfb{tag}", f"sfbr{tag}"
    with tempfile.TemporaryDirectory(prefix="ovs-") as d:
        env = dict(os.environ, OVS_RUNDIR=d, OVS_LOGDIR=d, OVS_DBDIR=d, OVS_SYSCONFDIR=d)
        db, sock = os.path.join(d, "conf.db"), os.path.join(d, "db.sock")
        vsctl = ["ovs-vsctl", f"--db=unix:{sock}", "--timeout=10"]
        try:
            _run("ovsdb-tool", "create", db, SCHEMA)
            subprocess.run(["ovsdb-server", db, f"--remote=punix:{sock}", f"--pidfile={d}/ovsdb.pid", "--detach",
                            f"--log-file={d}/ovsdb.log"], check=True, capture_output=True, timeout=30, env=env)
            subprocess.run(vsctl + ["--no-wait", "init"], check=True, capture_output=True, timeout=30, env=env)
            subprocess.run(["ovs-vswitchd", f"unix:{sock}", f"--pidfile={d}/vswitchd.pid", "--detach",
                            f"--log-file={d}/vswitchd.log", "--disable-system"], check=True, capture_output=True,
                           timeout=30, env=env)
            _run("ip", "link", "add", a, "type", "veth", "peer", "name", b)
            for end in (a, b):  # no IPv6 of its own: the kernel's MLD and DAD frames would be sampled too
                _run("ip", "link", "set", end, "addrgenmode", "none")
            _run("ip", "link", "set", a, "up")
            _run("ip", "link", "set", b, "up")
            subprocess.run(vsctl + ["add-br", br, "--", "set", "bridge", br, "datapath_type=netdev"], check=True,
                           capture_output=True, timeout=30, env=env)
            subprocess.run(vsctl + ["add-port", br, a], check=True, capture_output=True, timeout=30, env=env)
            subprocess.run(vsctl + ["--", "--id=@s", "create", "sflow", "agent=lo", f'target="127.0.0.1:{port}"',
                                    "header=128", f"sampling={sampling}", "polling=1", "--", "set", "bridge", br,
                                    "sflow=@s"], check=True, capture_output=True, timeout=30, env=env)
            time.sleep(0.5)
            yield b
        finally:
            subprocess.run(vsctl + ["--if-exists", "del-br", br], capture_output=True, timeout=30, env=env)
            _stop(os.path.join(d, "vswitchd.pid"))
            _stop(os.path.join(d, "ovsdb.pid"))
            subprocess.run(["ip", "link", "del", a], capture_output=True, timeout=30)
            subprocess.run(["ip", "link", "del", br], capture_output=True, timeout=30)


def pcap_frames(path) -> list[bytes]:
    """The frames of a classic little-endian pcap (what tests.support.pcapgen writes)."""
    data = open(path, "rb").read()
    out, pos = [], 24
    while pos + 16 <= len(data):
        incl = struct.unpack_from("<I", data, pos + 8)[0]
        out.append(data[pos + 16:pos + 16 + incl])
        pos += 16 + incl
    return out


def export(pcap, sampling: int = 1, quiet: float = 2.5, timeout: float = 30) -> list[tuple[bytes, tuple]]:
    """Write every frame of `pcap` into the switch and return the sFlow datagrams it sent."""
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    rx.bind(("127.0.0.1", 0))
    got: list[tuple[bytes, tuple]] = []
    try:
        with switch(rx.getsockname()[1], sampling) as veth:
            tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
            try:
                tx.bind((veth, 0))
                for k, f in enumerate(pcap_frames(pcap)):
                    tx.send(f)
                    if k % 20 == 19:
                        time.sleep(0.002)  # the userspace datapath polls: do not outrun its socket
            finally:
                tx.close()
            deadline, last = time.monotonic() + timeout, time.monotonic()
            while time.monotonic() < deadline and time.monotonic() - last < quiet:
                ready, _, _ = select.select([rx], [], [], 0.1)
                if ready:
                    got.append(rx.recvfrom(65535))
                    last = time.monotonic()
    finally:
        rx.close()
    return got
