"""`imflow run --workers N`: totals exact across SO_REUSEPORT workers, a killed worker is
restarted and counted, and the daemon keeps collecting."""

from __future__ import annotations

import os
import re
import signal
import socket
import sqlite3
import time

import pytest

from collector.netflow import encode as E
from collector.netflow import fields as F
from tests.support import softflowd
from tests.daemon.test_daemon import Daemon, db_totals, send_with_softflowd, truth_totals

pytestmark = pytest.mark.skipif(not softflowd.available(), reason="softflowd not on PATH")


def worker_pids(d: Daemon) -> dict[int, int]:
    return {int(i): int(p) for i, p in re.findall(r"worker (\d+) started \(pid (\d+)\)", d.text())}


def wait_workers(d: Daemon, n: int) -> dict[int, int]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if len(re.findall(r"worker-\d+ [\w.]+: imflow listening", d.text())) >= n:
            return worker_pids(d)
        time.sleep(0.1)
    raise AssertionError(d.text())


def test_two_workers_add_up_exactly(tmp_path, sessions):
    pcap, truth = sessions
    d = Daemon(tmp_path, tmp_path / "imflow.db", "--workers", "2")
    pids = wait_workers(d, 2)
    for pid in pids.values():  # a worker makes no TLS connection: OpenSSL left out (collector.daemon.spawned)
        with open(f"/proc/{pid}/maps") as fh:
            assert not [line for line in fh if "libssl" in line or "libcrypto" in line], pid
    runs = 6  # each softflowd run is a new source port: the sessions spread over both workers
    for _ in range(runs):
        send_with_softflowd(pcap, d.port, ["-v", "9", "-a"])
    time.sleep(1.5)
    assert d.stop() == 0, d.text()
    assert db_totals(tmp_path / "imflow.db") == truth_totals(truth, times=runs)
    served = re.findall(r"worker-(\d) [\w.]+: stopped: datagrams (\d+)", d.text())
    assert len(served) == 2 and sum(int(n) for _, n in served) > 0
    assert "worker-restarts 0" in d.stopped_line()


def test_a_killed_worker_is_restarted_and_counted(tmp_path, sessions):
    pcap, truth = sessions
    d = Daemon(tmp_path, tmp_path / "imflow.db", "--workers", "2")
    pids = wait_workers(d, 2)
    send_with_softflowd(pcap, d.port, ["-v", "9", "-a"])
    time.sleep(2.0)  # a worker flush: the first run's bins reach the supervisor
    os.kill(pids[0], signal.SIGKILL)
    deadline = time.monotonic() + 30
    while len(re.findall(r"worker 0 started", d.text())) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "worker 0 exited" in d.text() and len(re.findall(r"worker 0 started", d.text())) == 2
    time.sleep(2.0)  # the new worker is listening
    send_with_softflowd(pcap, d.port, ["-v", "9", "-a"])
    time.sleep(1.5)
    assert d.stop() == 0, d.text()
    assert "worker-restarts 1" in d.stopped_line()
    assert db_totals(tmp_path / "imflow.db") == truth_totals(truth, times=2)


def test_large_deltas_cross_the_pipe_whole(tmp_path):
    """Thousands of distinct hosts make a worker's delta larger than a pipe buffer: every flow
    must still arrive (the supervisor once read such deltas non-blocking and dropped them)."""
    flds = [(F.sourceIPv4Address, 4), (F.destinationIPv4Address, 4), (F.sourceTransportPort, 2),
            (F.destinationTransportPort, 2), (F.protocolIdentifier, 1), (F.octetDeltaCount, 4),
            (F.packetDeltaCount, 4)]
    d = Daemon(tmp_path, tmp_path / "imflow.db", "--workers", "2")
    wait_workers(d, 2)
    sent = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for i in range(300):
            rows = [{8: f"10.{(i * 27 + j) >> 8 & 255}.{(i * 27 + j) & 255}.7", 12: "198.51.100.1", 7: 40000,
                     11: 6881, 4: 6, 1: 1000 + j, 2: 1} for j in range(27)]
            sets = [E.data_set(256, flds, rows)]
            if i % 20 == 0:
                sets.insert(0, E.template_set([(256, flds)], False))
            s.sendto(E.v9_message(sets, uptime_ms=1, unix_secs=int(time.time()), sequence=i), ("127.0.0.1", d.port))
            sent += sum(r[1] for r in rows)
            time.sleep(0.002)
    time.sleep(1.5)
    assert d.stop() == 0, d.text()
    assert "worker-restarts 0" in d.stopped_line() and "supervisor gone" not in d.text()
    con = sqlite3.connect(tmp_path / "imflow.db")
    assert con.execute("SELECT sum(bytes), count(DISTINCT host) FROM rollup_1m").fetchone() == (sent, 8100)
    con.close()


def test_clamped_times_of_workers_reach_the_supervisor(tmp_path):
    """A worker counts flows whose exporter clock is far off; the supervisor reports them."""
    d = Daemon(tmp_path, tmp_path / "imflow.db", "--workers", "2")
    wait_workers(d, 2)
    rec = dict(src="10.0.0.1", dst="198.51.100.1", sport=1000, dport=443, proto=6, packets=1, bytes=100,
               first=1000, last=2000)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for seq in range(3):  # an exporter whose clock says 2001
            s.sendto(E.v5_datagram([rec, rec], uptime_ms=5000, unix_secs=1_000_000_000, sequence=2 * seq),
                     ("127.0.0.1", d.port))
    time.sleep(2.5)  # a worker's delta each second
    assert d.stop() == 0, d.text()
    assert "clamped-times 6" in d.stopped_line(), d.stopped_line()
