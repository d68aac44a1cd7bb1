"""Collector processes for the ingest benchmark: start, wait for the socket, watch CPU and
memory through /proc, stop, count the flow records each one stored.

Every collector listens on 127.0.0.1 only, with the same requested receive buffer, and writes
into its own temporary folder. Processes are started with exec semantics (Popen without a
shell), so the pid stopped is the collector's own.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
RCVBUF = 32 << 20  # imflow's default collector.rcvbuf; asked of every collector
REPO = Path(__file__).resolve().parents[2]


# --- /proc ----------------------------------------------------------------------------------

def descendants(pid: int) -> list[int]:
    """`pid` and every live descendant (via /proc/PID/task/TID/children)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as fh:
                    todo.extend(int(c) for c in fh.read().split())
        except OSError:
            continue
    return out


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of `pid`'s tree: live processes, plus what reaped children
    left in their parents' cutime/cstime."""
    ticks = 0
    for p in descendants(pid):
        try:
            with open(f"/proc/{p}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    return ticks / CLK_TCK


def _status_kib(pid: int, field: str) -> int:
    """Sum of a /proc/PID/status memory line (in kB there) over `pid`'s tree, bytes."""
    total = 0
    for p in descendants(pid):
        try:
            with open(f"/proc/{p}/status") as fh:
                for line in fh:
                    if line.startswith(field):
                        total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


def peak_rss(pid: int) -> int:
    """Peak resident set (VmHWM) of `pid`'s tree, bytes."""
    return _status_kib(pid, "VmHWM:")


def rss(pid: int) -> int:
    """Resident set (VmRSS) of `pid`'s tree, bytes."""
    return _status_kib(pid, "VmRSS:")


def udp_socket(port: int) -> tuple[int, int] | None:
    """(bytes queued, datagrams dropped) of the UDP sockets bound to 127.0.0.1:port, summed
    (imflow's workers share the port with SO_REUSEPORT, one socket each), from the rx_queue
    and drops columns of /proc/net/udp; None if there is no such socket."""
    local = f"0100007F:{port:04X}"
    found = None
    try:
        with open("/proc/net/udp") as fh:
            next(fh)
            for line in fh:
                cols = line.split()
                if cols[1] == local:
                    q, d = found or (0, 0)
                    found = (q + int(cols[4].split(":")[1], 16), d + int(cols[-1]))
    except OSError:
        pass
    return found


def machine_busy() -> float:
    """CPU seconds the whole machine has been busy (all cores; /proc/stat, idle and iowait
    excluded)."""
    with open("/proc/stat") as fh:
        cols = [int(x) for x in fh.readline().split()[1:]]
    return (sum(cols[:8]) - cols[3] - cols[4]) / CLK_TCK


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- rmem_max -------------------------------------------------------------------------------

class RmemMax:
    """Raise net.core.rmem_max to `want` if lower. It is one setting for the whole machine, and
    others may count on it once it is raised: it is never lowered, not even back to where it
    was (the machine's deploy/sysctl settings raise it for good anyway)."""

    PATH = "/proc/sys/net/core/rmem_max"

    def __init__(self, want: int):
        self.want = want
        self.note = ""

    def raise_(self) -> None:
        try:
            cur = int(Path(self.PATH).read_text())
        except OSError as exc:
            self.note = f"cannot read rmem_max: {exc}"
            return
        if cur >= self.want:
            self.note = f"net.core.rmem_max {cur} (left as is)"
            return
        try:
            Path(self.PATH).write_text(str(self.want))
            self.note = f"net.core.rmem_max raised {cur} -> {self.want} (and left there)"
        except OSError as exc:
            self.note = f"net.core.rmem_max {cur}: cannot raise ({exc.strerror}); buffers are smaller"


# --- collectors -----------------------------------------------------------------------------

class CollectorError(RuntimeError):
    pass


@dataclass
class Running:
    proc: subprocess.Popen
    port: int
    workdir: Path
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid


class Collector:
    name = ""
    stop_timeout = 60.0

    def available(self) -> str | None:
        """None if it can run here, else why not."""
        return None

    def command(self, workdir: Path, port: int) -> list[str]:
        raise NotImplementedError

    def full_command(self, workdir: Path, port: int) -> list[str]:
        """The command line started: `command` and whatever the harness adds."""
        return self.command(workdir, port)

    def env(self) -> dict[str, str] | None:
        return None

    def start(self, workdir: Path, port: int, extra: list[str] | None = None) -> Running:
        workdir.mkdir(parents=True, exist_ok=True)
        log = workdir / "collector.log"
        with open(log, "wb") as fh:
            proc = subprocess.Popen(self.full_command(workdir, port) + (extra or []), stdout=fh,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=workdir,
                                    env=self.env())
        run = Running(proc, port, workdir, log)
        deadline = time.monotonic() + 30
        while udp_socket(port) is None:
            if proc.poll() is not None or time.monotonic() > deadline:
                self.kill(run)
                raise CollectorError(f"{self.name} did not start listening on 127.0.0.1:{port}; "
                                     f"log: {log.read_text(errors='replace')[-800:]}")
            time.sleep(0.05)
        time.sleep(0.2)
        return run

    def stop(self, run: Running) -> None:
        """SIGTERM and wait (bounded) for a clean exit that writes everything out."""
        run.proc.send_signal(signal.SIGTERM)
        try:
            run.proc.wait(self.stop_timeout)
        except subprocess.TimeoutExpired:
            self.kill(run)
            raise CollectorError(f"{self.name} did not exit within {self.stop_timeout:.0f} s of SIGTERM")

    def kill(self, run: Running) -> None:
        if run.proc.poll() is None:
            for p in reversed(descendants(run.pid)):
                try:
                    os.kill(p, signal.SIGKILL)
                except OSError:
                    pass
            run.proc.wait(10)

    def count(self, run: Running) -> int:
        raise NotImplementedError


class Imflow(Collector):
    name = "imflow"
    workers = 1  # `imflow run --workers N` (run.py --imflow-workers)
    refresh = 1.0  # seconds between flushes to SQLite (run.py --imflow-refresh; imflow's default is 60)
    extra_toml = ""  # configuration the harness adds (run.py --template-sessions: [limits] max_sessions)

    def command(self, workdir: Path, port: int) -> list[str]:
        return [sys.executable, "-m", "collector", "run", "--listen", f"127.0.0.1:{port}",
                "--db", str(workdir / "imflow.db"), "--refresh-time", f"{self.refresh:g}",
                "--workers", str(self.workers)]

    def full_command(self, workdir: Path, port: int) -> list[str]:
        """`extra_toml` added to the command: appended to the last --config a subclass passes
        (audit_cost.py, dns_cost.py; theirs name other tables), or as a --config of its own."""
        cmd = self.command(workdir, port)
        if not self.extra_toml:
            return cmd
        at = max((i for i, a in enumerate(cmd) if a == "--config"), default=-1)
        text = Path(cmd[at + 1]).read_text() + "\n" if at >= 0 else ""
        conf = workdir / "bench-extra.toml"
        conf.write_text(text + self.extra_toml)
        return cmd[:at] + cmd[at + 2:] + ["--config", str(conf)] if at >= 0 else cmd + ["--config", str(conf)]

    def start(self, workdir: Path, port: int, extra: list[str] | None = None) -> Running:
        run = super().start(workdir, port, extra)
        if self.workers > 1:  # every worker's socket must be in the SO_REUSEPORT group first
            deadline = time.monotonic() + 30
            while run.log.read_text(errors="replace").count("collector.daemon.app: imflow listening") < self.workers:
                if time.monotonic() > deadline:
                    raise CollectorError(f"imflow workers did not all start; log: {run.log.read_text()[-800:]}")
                time.sleep(0.05)
            time.sleep(0.2)
        return run

    def env(self) -> dict[str, str]:
        path = os.environ.get("PYTHONPATH")
        return dict(os.environ, PYTHONPATH=str(REPO) + (os.pathsep + path if path else ""))

    def count(self, run: Running) -> int:
        db = run.workdir / "imflow.db"
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            return int(con.execute("SELECT coalesce(sum(flows), 0) FROM rollup_1m").fetchone()[0])
        finally:
            con.close()

    def audit_dropped(self, run: Running) -> int:
        """Watched flows the audit log dropped at `audit.max_pending` (the stop line's
        `audit-dropped`; 0 with the log off). The rollups count them all the same."""
        return audit_dropped(run.log.read_text(errors="replace"))


def audit_dropped(log: str) -> int:
    """`audit-dropped N` of the last status line in an imflow log, 0 without one."""
    found = re.findall(r" audit-dropped (\d+)", log)
    return int(found[-1]) if found else 0


class Nfcapd(Collector):
    name = "nfcapd"

    def available(self) -> str | None:
        missing = [p for p in ("nfcapd", "nfdump") if shutil.which(p) is None]
        return f"not installed: {', '.join(missing)} (apt-get install nfdump)" if missing else None

    def command(self, workdir: Path, port: int) -> list[str]:
        (workdir / "flows").mkdir(exist_ok=True)
        return ["nfcapd", "-b", "127.0.0.1", "-p", str(port), "-w", str(workdir / "flows"), "-t", "3600",
                "-B", str(RCVBUF)]

    def count(self, run: Running) -> int:
        out = subprocess.run(["nfdump", "-R", str(run.workdir / "flows"), "-I"], check=False, capture_output=True,
                             text=True, timeout=120)
        m = re.search(r"^Flows:\s+(\d+)", out.stdout, re.MULTILINE)
        if not m:
            raise CollectorError(f"nfdump -I: no flow count: {out.stdout[-300:]} {out.stderr[-300:]}")
        return int(m.group(1))


NFACCTD_CONF = """\
daemonize: false
nfacctd_ip: 127.0.0.1
nfacctd_port: {port}
nfacctd_pipe_size: {rcvbuf}
nfacctd_time_new: true
plugins: print[p]
aggregate[p]: src_host, dst_host, src_port, dst_port, proto, flows
print_output[p]: csv
print_output_file[p]: {dir}/flows.csv
print_refresh_time[p]: 3600
pidfile: {dir}/nfacctd.pid
logfile: {dir}/nfacctd.log
"""


class Nfacctd(Collector):
    """pmacct's collector with the print plugin: a cache keyed by the 5-tuple, written out as
    CSV with a FLOWS column at exit. nfacctd handles SIGTERM only when its socket wakes it, so
    `stop` nudges it with a junk datagram (not NetFlow: dropped, never counted)."""

    name = "nfacctd"

    def available(self) -> str | None:
        return None if shutil.which("nfacctd") else "not installed (apt-get install pmacct)"

    def command(self, workdir: Path, port: int) -> list[str]:
        conf = workdir / "nfacctd.conf"
        conf.write_text(NFACCTD_CONF.format(port=port, rcvbuf=RCVBUF, dir=workdir))
        return ["nfacctd", "-f", str(conf)]

    def stop(self, run: Running) -> None:
        run.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            while run.proc.poll() is None:
                if time.monotonic() > deadline:
                    self.kill(run)
                    raise CollectorError(f"nfacctd did not exit within {self.stop_timeout:.0f} s of SIGTERM")
                if udp_socket(run.port) is not None:
                    s.sendto(b"\0\0", ("127.0.0.1", run.port))
                time.sleep(0.25)

    def count(self, run: Running) -> int:
        path = run.workdir / "flows.csv"
        if not path.exists():
            return 0
        with open(path, newline="") as fh:
            rows = csv.reader(fh)
            head = next(rows, None)
            if not head:
                return 0
            col = head.index("FLOWS")
            return sum(int(r[col]) for r in rows if len(r) > col)


class ImflowClickhouse(Imflow):
    """imflow with `[store] backend = "clickhouse"`: a private clickhouse-server on loopback
    (tests/store/clickhouse/server.py) started with the collector and stopped after the count."""

    name = "imflow-clickhouse"

    def available(self) -> str | None:
        return None if shutil.which("clickhouse-server") else "not installed (apt-get install clickhouse-server)"

    def command(self, workdir: Path, port: int) -> list[str]:
        sys.path.insert(0, str(REPO))
        from tests.store.clickhouse.server import Server

        self.server = Server(str(workdir / "clickhouse"))
        self.server.configure([self.server.tcp_port])
        self.server.start()
        conf = workdir / "imflow.toml"
        conf.write_text(f'[store]\nbackend = "clickhouse"\n[store.clickhouse]\nurls = ["{self.server.url}"]\n')
        return super().command(workdir, port) + ["--config", str(conf)]

    def kill(self, run: Running) -> None:
        super().kill(run)
        self.server.stop()

    def count(self, run: Running) -> int:
        try:
            return int(self.server.query("SELECT sum(flows) FROM imflow.rollup_1m").strip() or 0)
        finally:
            self.server.stop()


COLLECTORS: dict[str, type[Collector]] = {"imflow": Imflow, "nfcapd": Nfcapd, "nfacctd": Nfacctd,
                                          "imflow-clickhouse": ImflowClickhouse}
