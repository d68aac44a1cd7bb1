"""The container image (deploy/container, scripts/build-container): built with no registry, on a
Debian root made with debootstrap and the .deb, it runs imflow, which receives NetFlow on
loopback and stores exactly what was sent; `podman stop` (SIGTERM) flushes it.

Needs root, podman and runc (scripts/install-test-deps); skips, saying why, where podman cannot
run a container (this VM's kind needs `--runtime runc` and lower rlimits: deploy/container/README.md).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from collector.netflow import encode as E
from tests.deploy.test_package import debian_root  # noqa: F401  (the cached clean root)

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "localhost/imflow:latest"
FLAGS = ["--runtime", "runc", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (podman, debootstrap)"),
    pytest.mark.skipif(not all(shutil.which(t) for t in ("podman", "runc", "debootstrap", "dpkg-deb")),
                       reason="needs podman, runc, debootstrap, dpkg-deb (scripts/install-test-deps)"),
]


@pytest.fixture(scope="module")
def image(debian_root):  # noqa: F811
    env = dict(os.environ, IMFLOW_DEBIAN_ROOT=str(debian_root), PODMAN_RUN_FLAGS=" ".join(FLAGS))
    built = subprocess.run([str(ROOT / "scripts" / "build-container"), "imflow"], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=1500)
    if built.returncode:
        pytest.fail(f"scripts/build-container failed:\n{built.stdout[-2000:]}{built.stderr[-2000:]}")
    probe = subprocess.run(["podman", "run", "--rm", *FLAGS, IMAGE, "--version"], capture_output=True, text=True,
                           timeout=120)
    if probe.returncode:
        pytest.skip(f"podman cannot run a container here: {probe.stderr.strip()[-300:]}")
    return IMAGE


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_image_collects_flows_sent_to_it(tmp_path, image):
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(0o777)  # the container runs as its own user imflow
    port = _free_udp_port()
    name = f"imflow-test-{os.getpid()}"
    subprocess.run(["podman", "run", "-d", "--name", name, "--network", "host", *FLAGS, "-v", f"{data}:/var/lib/imflow",
                    image, "run", "--listen", f"127.0.0.1:{port}", "--db", "/var/lib/imflow/imflow.db",
                    "--refresh-time", "1"], check=True, capture_output=True, timeout=120)
    try:
        deadline = time.monotonic() + 60
        logs = ""
        while "imflow listening" not in logs and time.monotonic() < deadline:
            time.sleep(0.3)
            logs = subprocess.run(["podman", "logs", name], capture_output=True, text=True, timeout=30).stderr
        assert "imflow listening" in logs, logs
        rec = dict(src="10.1.1.1", dst="198.51.100.9", sport=50000, dport=1863, proto=6, packets=7, bytes=7000,
                   first=1000, last=2000)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for seq in range(3):
                s.sendto(E.v5_datagram([rec, rec], uptime_ms=3000, unix_secs=int(time.time()), sequence=2 * seq),
                         ("127.0.0.1", port))
        time.sleep(1.5)
        subprocess.run(["podman", "stop", "-t", "30", name], check=True, capture_output=True, timeout=90)
        logs = subprocess.run(["podman", "logs", name], capture_output=True, text=True, timeout=30).stderr
        assert "stopped: datagrams 3 flows 6" in logs, logs
    finally:
        subprocess.run(["podman", "rm", "-f", name], capture_output=True, timeout=90)
    top = subprocess.run([sys.executable, "-m", "collector", "top", "--db", str(data / "imflow.db"), "--since", "all",
                          "--by", "host,service", "--format", "json"], capture_output=True, text=True, check=True,
                         cwd=tmp_path, timeout=60)
    rows = json.loads(top.stdout)
    assert [(r["host"], r["service"], r["bytes"], r["packets"]) for r in rows] == [("10.1.1.1", "msn", 42000, 42)]


def _port_free(port: int, kind: int) -> bool:
    with socket.socket(socket.AF_INET, kind) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_the_compose_file_runs_imflow_and_prometheus_together(tmp_path, image):
    """deploy/container/compose.yaml's imflow and Prometheus (Grafana's image needs a registry):
    flows sent to the published UDP port reach Prometheus through its scrape of imflow by
    service name."""
    compose = shutil.which("podman-compose")
    if compose is None:
        pytest.skip("podman-compose not installed (pip, the test extra)")
    busy = [p for p, kind in ((2055, socket.SOCK_DGRAM), (9090, socket.SOCK_STREAM), (9750, socket.SOCK_STREAM))
            if not _port_free(p, kind)]
    if busy:
        pytest.skip(f"the compose file publishes ports in use here: {busy}")
    subprocess.run(["podman", "build", *FLAGS, "--network", "host", "-t", "localhost/imflow-prometheus:latest",
                    "-f", "Containerfile.prometheus", "."], cwd=ROOT / "deploy" / "container", check=True,
                   capture_output=True, timeout=900)
    project = f"imflowtest{os.getpid()}"
    args = [compose, "-p", project, "--podman-args=--runtime runc",
            "--podman-run-args=--ulimit nofile=1024:1024 --ulimit nproc=1024:1024"]
    where = ROOT / "deploy" / "container"
    try:
        up = subprocess.run([*args, "up", "-d", "imflow", "prometheus"], cwd=where, capture_output=True, text=True,
                            timeout=300)
        assert up.returncode == 0, up.stdout + up.stderr
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "imflow listening" not in subprocess.run(
                ["podman", "logs", f"{project}_imflow_1"], capture_output=True, text=True, timeout=30).stderr:
            time.sleep(0.5)
        rec = dict(src="10.1.1.1", dst="198.51.100.9", sport=50000, dport=1863, proto=6, packets=7, bytes=7000,
                   first=1000, last=2000)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for seq in range(3):
                s.sendto(E.v5_datagram([rec, rec], uptime_ms=3000, unix_secs=int(time.time()), sequence=2 * seq),
                         ("127.0.0.1", 2055))
        query = "http://127.0.0.1:9090/api/v1/query?query=sum(imflow_service_bytes_total%7Bservice%3D%22msn%22%7D)"
        got, deadline = None, time.monotonic() + 90  # Prometheus scrapes every 30 s
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(query, timeout=10) as resp:
                    result = json.load(resp)["data"]["result"]
            except OSError:
                result = []
            if result:
                got = float(result[0]["value"][1])
                if got == 42000:
                    break
            time.sleep(2)
        assert got == 42000
    finally:
        subprocess.run([*args, "down", "-v"], cwd=where, capture_output=True, timeout=300)
