"""A real Unbound on loopback for the dnstap tests: local-data answers only (no upstream), dnstap
to a unix socket that the test's imflow listens on (docs/dns.md; real-peers.md has the config
checked on this machine). Started with a private config in a temp dir, stopped by pid."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path


def available() -> bool:
    return shutil.which("unbound") is not None and shutil.which("dig") is not None


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Unbound:
    def __init__(self, tmp: Path, socket_path: str, records: list[tuple[str, int, str, str]]):
        """records: (name, ttl, type, address); a static local zone per parent of each name."""
        self.dir = tmp / "unbound"
        self.dir.mkdir()
        self.port = free_udp_port()
        zones = sorted({name.split(".", 1)[1] for name, *_ in records})
        lines = ["server:", "  do-daemonize: no", '  username: ""', '  chroot: ""', f'  directory: "{self.dir}"',
                 '  pidfile: ""', "  use-syslog: no", f'  logfile: "{self.dir}/unbound.log"', "  verbosity: 1",
                 f"  interface: 127.0.0.1@{self.port}", f"  port: {self.port}", "  do-ip6: no",
                 "  access-control: 127.0.0.0/8 allow", "  num-threads: 1"]
        lines += [f'  local-zone: "{z}." static' for z in zones]
        lines += [f'  local-data: "{n}. {ttl} IN {t} {a}"' for n, ttl, t, a in records]
        lines += ["remote-control:", "  control-enable: no", "dnstap:", "  dnstap-enable: yes",
                  "  dnstap-bidirectional: yes", f'  dnstap-socket-path: "{socket_path}"',
                  "  dnstap-log-client-query-messages: yes", "  dnstap-log-client-response-messages: yes"]
        conf = self.dir / "unbound.conf"
        conf.write_text("\n".join(lines) + "\n")
        self.proc = subprocess.Popen(["unbound", "-c", str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log()
            if "start of service" in self.log():
                return
            time.sleep(0.1)
        self.stop()
        raise AssertionError("unbound did not start:\n" + self.log())

    def log(self) -> str:
        path = self.dir / "unbound.log"
        return path.read_text() if path.exists() else ""

    def query(self, name: str, rtype: str = "A") -> list[str]:
        out = subprocess.run(["dig", f"@127.0.0.1", "-p", str(self.port), name, rtype, "+short", "+tries=1",
                              "+time=3"], capture_output=True, text=True, timeout=20, check=True).stdout
        return out.split()

    def query_batch(self, names: list[str], rtype: str = "A") -> None:
        batch = self.dir / "batch.txt"
        batch.write_text("".join(f"{n} {rtype}\n" for n in names))
        subprocess.run(["dig", "@127.0.0.1", "-p", str(self.port), "+short", "+tries=1", "+time=3", "-f",
                        str(batch)], capture_output=True, timeout=120, check=True)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
