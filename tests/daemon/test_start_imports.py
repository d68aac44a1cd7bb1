"""`imflow run` on the default configuration imports none of the optional heavy modules (issue 21,
docs/performance.md "Memory"): each is megabytes of resident memory for a feature the default
configuration does not use (the Prometheus endpoint, the web page, dnstap, ASN databases,
ClickHouse, SNMP polling). Nor, once NetFlow v5, v9 and IPFIX datagrams have gone through the
data path and a flush, any of the standard modules the daemon has no use for that a careless call
brings in for good (NumPy's masked arrays behind a plain `np.unique`, the zip reader behind
`importlib.resources`, `html`'s table of named references).

The daemon runs in a fresh interpreter through the console script's own entry point
(`collector.cli.main`); a thread waits until the daemon's socket is in /proc/net/udp, sends the
benchmark's datagrams of each version from a socket of its own (the test wrote them to a file),
waits for one flush (`--refresh-time 1`), writes `sys.modules` to a file and stops the daemon
with SIGTERM. Every flow record sent must be in the database: the probe saw a working data path.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import struct
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
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
# modules no configuration needs on the data path (each 0.5-1.4 MiB resident)
NEEDLESS = {
    "numpy.ma": "a plain np.unique (collector.kernels.grouping.distinct instead)",
    "zipfile": "importlib.resources (the package's data by path instead)",
    "importlib.resources": "the package's data files (read by path instead)",
    "html.entities": "html.escape (collector.text's own table instead)",
    "tempfile": "the template state's atomic write, at shutdown only (imported there)",
    "ssl": "TLS, which the default configuration makes none of (collector.daemon.tuning.leave_out_tls)",
    "hashlib": "a server name's hash (imported there): it loads OpenSSL's libcrypto",
}
# shared libraries of the same kind: megabytes of resident pages each
NEEDLESS_LIBRARIES = {
    "libssl": "ssl (collector.daemon.tuning.leave_out_tls)",
    "libcrypto": "ssl and hashlib",
}

PROBE = r"""
import json, os, signal, sys, threading, time
from collector.cli import main

port, out, traffic = int(sys.argv[1]), sys.argv[2], sys.argv[3]

def listening():  # read, not probed with a bind of our own: that could take the port from the daemon
    with open("/proc/net/udp") as fh:
        return any(line.split()[1].endswith(":%04X" % port) for line in list(fh)[1:])

def watch():
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not listening():
        time.sleep(0.05)
    import socket, struct
    with open(traffic, "rb") as fh:
        data = fh.read()
    off = 0
    socks = {}
    while off < len(data):  # (version, length, datagram)...: one exporter socket per version
        version, n = struct.unpack_from("<BH", data, off)
        if version not in socks:
            socks[version] = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        socks[version].sendto(data[off + 3:off + 3 + n], ("127.0.0.1", port))
        off += 3 + n
        time.sleep(0.0005)  # well below what the daemon takes: nothing is dropped
    time.sleep(1.6)  # one flush (every second here) has run
    with open(out, "w") as fh:  # a module set to None was left out on purpose (ssl): not imported
        libraries = sorted({line.split()[-1] for line in open("/proc/self/maps") if ".so" in line})
        json.dump({"modules": sorted(k for k, v in sys.modules.items() if v is not None),
                   "libraries": libraries}, fh)
    os.kill(os.getpid(), signal.SIGTERM)

threading.Thread(target=watch, daemon=True).start()
sys.exit(main(sys.argv[4:]))
"""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _traffic(path: Path) -> int:
    """The benchmark's datagrams of each version (IPv4 and IPv6 flows, templates first) written
    for the probe -> the flow records they carry."""
    sys.path.insert(0, str(REPO / "bench" / "ingest"))
    try:
        import datagrams as D
    finally:
        sys.path.remove(str(REPO / "bench" / "ingest"))
    records = 0
    with open(path, "wb") as fh:
        for n, version in enumerate(("v5", "v9", "ipfix")):
            built = D.build(version, 3000)
            fh.writelines(struct.pack("<BH", n, len(d)) + d for d in built.datagrams)
            records += built.total_records
    return records


def test_imflow_run_on_the_default_configuration_imports_nothing_it_does_not_use(tmp_path):
    port = _free_port()
    out = tmp_path / "modules.json"
    sent = _traffic(tmp_path / "traffic.bin")
    db = tmp_path / "imflow.db"
    proc = subprocess.run([sys.executable, "-c", PROBE, str(port), str(out), str(tmp_path / "traffic.bin"), "run",
                           "--listen", f"127.0.0.1:{port}", "--db", str(db), "--refresh-time", "1"],
                          cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert out.exists(), f"the daemon did not start (exit {proc.returncode}): {proc.stderr[-2000:]}"
    seen = json.loads(out.read_text())
    modules = set(seen["modules"])
    assert "collector.daemon.app" in modules and "numpy" in modules  # the probe saw the running daemon
    with sqlite3.connect(db) as con:
        stored = con.execute("SELECT coalesce(sum(flows), 0) FROM rollup_1m").fetchone()[0]
    assert stored == sent, f"{stored} of {sent} flow records stored: {proc.stderr[-2000:]}"
    loaded = {name: why for name, why in HEAVY.items() if name in modules}
    assert not loaded, f"imported though not configured: {loaded}"
    needless = {name: why for name, why in NEEDLESS.items() if name in modules}
    assert not needless, f"imported on the data path, which has no use for them: {needless}"
    mapped = {name: why for name, why in NEEDLESS_LIBRARIES.items()
              if any(Path(path).name.startswith(name + ".") for path in seen["libraries"])}
    assert not mapped, f"loaded though the default configuration has no use for them: {mapped}"
