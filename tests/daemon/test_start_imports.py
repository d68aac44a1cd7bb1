"""`imflow run` on the default configuration imports none of the optional heavy modules (issue 21,
docs/performance.md "Memory"): each is megabytes of resident memory for a feature the default
configuration does not use (the Prometheus endpoint, the web page, dnstap, ASN databases,
ClickHouse, SNMP polling).

The daemon runs in a fresh interpreter through the console script's own entry point
(`collector.cli.main`); a thread waits until the daemon's socket is in /proc/net/udp and one flush
has run (`--refresh-time 1`), writes `sys.modules` to a file and stops the daemon with SIGTERM.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SIGTERM to itself, /proc")

# top-level module names that only an optional feature needs
HEAVY = {
    "prometheus_client": "metrics.listen (the Prometheus endpoint)",
    "http.server": "metrics.listen (the Prometheus endpoint)",
    "aiohttp": "the web page, the ClickHouse store",
    "aiochclient": "the ClickHouse store",
    "dns": "dnstap (dnspython)",
    "fstrm": "dnstap",
    "dnstap_pb": "dnstap",
    "google.protobuf": "dnstap",
    "maxminddb": "catalogue services with asns",
    "pysnmp": "SNMP polling",
    "multiprocessing": "--workers N",
}

PROBE = r"""
import json, os, signal, sys, threading, time
from collector.cli import main

port, out = int(sys.argv[1]), sys.argv[2]

def listening():  # read, not probed with a bind of our own: that could take the port from the daemon
    with open("/proc/net/udp") as fh:
        return any(line.split()[1].endswith(":%04X" % port) for line in list(fh)[1:])

def watch():
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not listening():
        time.sleep(0.05)
    time.sleep(1.6)  # one flush (every second here) has run
    with open(out, "w") as fh:
        json.dump(sorted(sys.modules), fh)
    os.kill(os.getpid(), signal.SIGTERM)

threading.Thread(target=watch, daemon=True).start()
sys.exit(main(sys.argv[3:]))
"""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_imflow_run_on_the_default_configuration_imports_no_optional_heavy_module(tmp_path):
    port = _free_port()
    out = tmp_path / "modules.json"
    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-c", PROBE, str(port), str(out), "run", "--listen", f"127.0.0.1:{port}",
                           "--db", str(tmp_path / "imflow.db"), "--refresh-time", "1"],
                          cwd=repo, capture_output=True, text=True, timeout=120, check=False)
    assert out.exists(), f"the daemon did not start (exit {proc.returncode}): {proc.stderr[-2000:]}"
    modules = set(json.loads(out.read_text()))
    assert "collector.daemon.app" in modules and "numpy" in modules  # the probe saw the running daemon
    loaded = {name: why for name, why in HEAVY.items() if name in modules}
    assert not loaded, f"imported at start though not configured: {loaded}"
