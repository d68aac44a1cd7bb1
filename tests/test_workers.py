"""`imflow run --workers N`: totals exact across SO_REUSEPORT workers, a killed worker is
restarted and counted, and the daemon keeps collecting."""

from __future__ import annotations

import os
import re
import signal
import time

import pytest

from tests.support import softflowd
from tests.test_daemon import Daemon, db_totals, send_with_softflowd, truth_totals

pytestmark = pytest.mark.skipif(not softflowd.available(), reason="softflowd not on PATH")


def worker_pids(d: Daemon) -> dict[int, int]:
    return {int(i): int(p) for i, p in re.findall(r"worker (\d+) started \(pid (\d+)\)", d.text())}


def wait_workers(d: Daemon, n: int) -> dict[int, int]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if len(re.findall(r"worker-\d+ collector\.app: imflow listening", d.text())) >= n:
            return worker_pids(d)
        time.sleep(0.1)
    raise AssertionError(d.text())


def test_two_workers_add_up_exactly(tmp_path, sessions):
    pcap, truth = sessions
    d = Daemon(tmp_path, tmp_path / "imflow.db", "--workers", "2")
    wait_workers(d, 2)
    runs = 6  # each softflowd run is a new source port: the sessions spread over both workers
    for _ in range(runs):
        send_with_softflowd(pcap, d.port, ["-v", "9", "-a"])
    time.sleep(1.5)
    assert d.stop() == 0, d.text()
    assert db_totals(tmp_path / "imflow.db") == truth_totals(truth, times=runs)
    served = re.findall(r"worker-(\d) collector\.app: stopped: datagrams (\d+)", d.text())
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
