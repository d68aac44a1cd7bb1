"""`imflow demo`, the README's first command: it collects what its simulated router sends,
and stops cleanly on a timer, on SIGTERM and on Ctrl-C (SIGINT)."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time

import pytest


def _demo(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "collector", "demo", "--every", "1", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_demo_collects_and_stops_after_its_duration(tmp_path):
    db = tmp_path / "demo.db"
    p = _demo("--duration", "5", "--db", str(db))
    out, _ = p.communicate(timeout=60)
    assert p.returncode == 0, out
    assert "demo stopped; the data stays in" in out
    with sqlite3.connect(db) as con:
        flows, = con.execute("SELECT coalesce(sum(flows), 0) FROM rollup_1m").fetchone()
    assert flows > 0  # the simulated router's flows reached the store


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_demo_stops_on_a_signal(tmp_path, sig):
    p = _demo("--db", str(tmp_path / "demo.db"))
    deadline = time.monotonic() + 30
    line = ""
    while "Press Ctrl-C" not in line and time.monotonic() < deadline:
        line = p.stdout.readline()
    time.sleep(2)
    p.send_signal(sig)
    try:
        out, _ = p.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        p.kill()
        pytest.fail(f"imflow demo still running 20 s after {sig.name}")
    assert p.returncode == 0, out
    assert "demo stopped" in out
