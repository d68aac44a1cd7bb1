"""The daemon serves the web page when `[web] listen` is set: NetFlow v5 sent to `imflow run`
on loopback shows up on the page with the bytes the test sent, and SIGTERM stops both."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

from collector.netflow.encode import v5_datagram


def free_port(kind=socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_daemon_serves_the_page(tmp_path):
    udp, web = free_port(socket.SOCK_DGRAM), free_port()
    cfg = tmp_path / "imflow.toml"
    cfg.write_text(f'[collector]\nlisten = ["127.0.0.1:{udp}"]\nrefresh_time = "1s"\n'
                   f'[store]\npath = "{tmp_path / "imflow.db"}"\n[web]\nlisten = "{web}"\n')
    proc = subprocess.Popen([sys.executable, "-m", "collector", "run", "--config", str(cfg)], stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        log = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any("imflow listening" in line for line in log):
            line = proc.stderr.readline()
            if not line:
                break
            log.append(line)
        assert any(f"web page on http://127.0.0.1:{web}/" in line for line in log), "".join(log)
        now = int(time.time())
        records = [{"src": "10.5.5.5", "dst": "198.51.100.7", "sport": 40000 + i, "dport": 6881, "proto": 6,
                    "packets": 10, "bytes": 1000 * (i + 1), "first": 1000, "last": 2000} for i in range(5)]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(v5_datagram(records, uptime_ms=3000, unix_secs=now, sequence=0), ("127.0.0.1", udp))
        want = sum(r["bytes"] for r in records)
        url = f"http://127.0.0.1:{web}/host/10.5.5.5?since=1h&table=services&format=json"
        rows = []
        for _ in range(40):  # the next flush writes them; at most 20 s
            time.sleep(0.5)
            with urllib.request.urlopen(url, timeout=10) as r:
                rows = json.loads(r.read())
            if rows:
                break
        assert [(r["service"], r["bytes"], r["flows"]) for r in rows] == [("bittorrent", want, 5)]
        with urllib.request.urlopen(f"http://127.0.0.1:{web}/?since=1h", timeout=10) as r:
            page = r.read().decode()  # an hour from the minute rollup: a bar per minute
            assert r.status == 200 and "Bytes by category, per minute (UTC)" in page and "<svg" in page
            assert re.search(r"<rect [^>]*><title>[^<]* UTC Peer-to-peer file sharing: 15.0 kB</title>", page)
        # a policy reloaded with SIGHUP reaches the page: BitTorrent blocked, its user listed
        violations = f"http://127.0.0.1:{web}/violations?since=1h&table=violations&format=json"
        with urllib.request.urlopen(violations, timeout=10) as r:
            assert json.loads(r.read()) == []  # the default policy monitors everything
        cfg.write_text(cfg.read_text() + '[policy]\ncategories = { p2p = "block" }\n')
        proc.send_signal(signal.SIGHUP)
        for _ in range(40):
            time.sleep(0.5)
            with urllib.request.urlopen(violations, timeout=10) as r:
                rows = json.loads(r.read())
            if rows:
                break
        assert [(r["host"], r["service"], r["bytes"], r["policy"]) for r in rows] == \
            [("10.5.5.5", "bittorrent", want, "block")]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=30)
            assert code == 0, "".join(log) + proc.stderr.read()
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    with socket.socket() as s:  # nothing listens on the page's port any more
        assert s.connect_ex(("127.0.0.1", web)) != 0
