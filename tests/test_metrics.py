"""Metrics end to end: `imflow run --metrics`, flows from real softflowd, a real Prometheus
scraping it, and every PromQL expression of every dashboard panel and alert rule evaluated
through Prometheus' HTTP API. Service byte counters must equal the pcap's totals."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from collector.metrics import HostSeries, Metrics, Snapshot
from tests.support import softflowd
from tests.daemon.test_daemon import Daemon, expected_service, send_with_softflowd

ROOT = Path(__file__).resolve().parent.parent
needs_prometheus = pytest.mark.skipif(not shutil.which("prometheus"), reason="prometheus not on PATH")


# --- unit: the bounded host series ---------------------------------------------------------

def test_host_series_ceiling_keeps_sums_exact():
    hs = HostSeries(max_series=3)
    expect = Counter()
    for i in range(10):
        for svc in ("msn", "sip"):
            hs.add(f"10.0.0.{i}", svc, "im", 100 + i)
            expect[svc] += 100 + i
    named = [k for k in hs.series if k[0] != "other"]
    assert len(named) == 3
    assert len(hs.series) <= 3 + 2  # + one "other" per service
    got = Counter()
    for (host, svc, _), v in hs.series.items():
        got[svc] += v
    assert got == expect


def test_registry_exposes_the_snapshot():
    m = Metrics(max_host_series=10)
    m.swap(Snapshot(services={("msn", "im"): (1000, 10, 2), ("other", "other"): (5, 1, 1)},
                    hosts={("10.0.0.1", "msn", "im"): 1000}, datagrams={("192.0.2.1", "9"): 3},
                    errors={("192.0.2.1", "bad-length"): 1}, exporters=1))
    get = m.registry.get_sample_value
    assert get("imflow_service_bytes_total", {"service": "msn", "category": "im"}) == 1000
    assert get("imflow_service_flows_total", {"service": "other", "category": "other"}) == 1
    assert get("imflow_host_bytes_total", {"host": "10.0.0.1", "service": "msn", "category": "im"}) == 1000
    assert get("imflow_datagrams_total", {"exporter": "192.0.2.1", "version": "9"}) == 3
    assert get("imflow_decode_errors_total", {"exporter": "192.0.2.1", "reason": "bad-length"}) == 1
    assert get("imflow_exporters") == 1
    assert get("imflow_build_info", {"version": __import__("collector").__version__}) == 1


# --- end to end with Prometheus ------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.load(r)


class Prometheus:
    def __init__(self, tmp: Path, target: str):
        self.port = free_port()
        cfg = tmp / "prometheus.yml"
        cfg.write_text(f"global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                       f"scrape_configs:\n  - job_name: imflow\n    static_configs:\n"
                       f"      - targets: ['{target}']\n")
        self.log = open(tmp / "prometheus.log", "w")
        self.proc = subprocess.Popen(
            ["prometheus", f"--config.file={cfg}", f"--storage.tsdb.path={tmp / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}"], stdout=self.log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(self.url + "/-/ready", timeout=1)
                return
            except OSError:
                assert self.proc.poll() is None, (tmp / "prometheus.log").read_text()
                time.sleep(0.2)
        raise AssertionError("prometheus did not become ready")

    def query(self, expr: str) -> list:
        r = get_json(self.url + "/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        assert r["status"] == "success", (expr, r)
        return r["data"]["result"]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def dashboard_exprs() -> list[tuple[str, str]]:
    out = []
    for path in sorted((ROOT / "grafana" / "dashboards").glob("*.json")):
        def walk(panels):
            for p in panels:
                yield p
                yield from walk(p.get("panels", []))
        dash = json.loads(path.read_text())
        for panel in walk(dash.get("panels", [])):
            for t in panel.get("targets", []):
                if t.get("expr"):
                    out.append((f"{path.name}: {panel.get('title')}", t["expr"]))
    return out


def alert_exprs() -> list[tuple[str, str]]:
    import yaml

    path = ROOT / "deploy" / "prometheus" / "alerts.yml"
    if not path.exists():
        return []
    doc = yaml.safe_load(path.read_text())
    return [(f"alert {r.get('alert') or r.get('record')}", r["expr"]) for g in doc["groups"] for r in g["rules"]]


def substitute(expr: str, host: str) -> str:
    for var, value in (("$__rate_interval", "1m"), ("$__interval", "15s"), ("$__range", "5m"),
                       ("${host}", host), ("$host", host), ("${service}", "msn"), ("$service", "msn"),
                       ("${category}", "im"), ("$category", "im"), ("${exporter}", ".*"), ("$exporter", ".*")):
        expr = expr.replace(var, value)
    return expr


@needs_prometheus
@pytest.mark.skipif(not softflowd.available(), reason="softflowd not on PATH")
def test_prometheus_scrapes_exact_totals_and_every_panel_query_works(tmp_path, sessions):
    pcap, truth = sessions
    mport = free_port()
    cfg = tmp_path / "imflow.toml"
    cfg.write_text("[metrics]\nmax_host_series = 4\n")
    d = Daemon(tmp_path, tmp_path / "imflow.db", "--metrics", f"127.0.0.1:{mport}", "--config", str(cfg))
    prom = Prometheus(tmp_path, f"127.0.0.1:{mport}")
    try:
        send_with_softflowd(pcap, d.port, ["-v", "9", "-a"])
        want = Counter()
        for f in truth:
            want[expected_service(f)] += f.bytes
        # wait for a flush, a snapshot and two scrapes
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            res = prom.query('imflow_service_bytes_total{service="msn"}')
            if res and float(res[0]["value"][1]) == want["msn"]:
                break
            time.sleep(0.5)
        time.sleep(2.5)
        got = {r["metric"]["service"]: float(r["value"][1]) for r in prom.query("imflow_service_bytes_total")}
        assert got == {k: float(v) for k, v in want.items() if v} | {k: 0.0 for k in got if not want[k]}
        # per-host series stay at the cap, and their sums still equal the service totals
        hosts = prom.query("imflow_host_bytes_total")
        assert len({r["metric"]["host"] for r in hosts if r["metric"]["host"] != "other"}) <= 4
        sums = Counter()
        for r in hosts:
            sums[r["metric"]["service"]] += float(r["value"][1])
        for svc, v in sums.items():
            assert v <= got[svc]
        host = next(r["metric"]["host"] for r in hosts if r["metric"]["host"] != "other")

        exprs = dashboard_exprs() + alert_exprs()
        assert exprs, "no dashboards or alert rules found"
        empty = []
        for where, expr in exprs:
            result = prom.query(substitute(expr, host))  # must parse and evaluate
            if not result:
                empty.append(where)
        # series that must exist with this data: traffic, hosts, datagrams, flows
        for name in ("imflow_datagrams_total", "imflow_flows_total", "imflow_exporters",
                     "imflow_service_active_hosts", "imflow_flush_duration_seconds_count",
                     "process_resident_memory_bytes"):
            assert prom.query(name), name
        assert any("traffic" in w.lower() or "rate" in w.lower() for w, _ in exprs if w not in empty)
    finally:
        prom.stop()
        d.stop()
    assert re.search(r"metrics on http://127\.0\.0\.1:\d+/metrics", d.text())
