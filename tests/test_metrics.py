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
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest

from collector.metrics import HostSeries, Metrics, Snapshot
from tests.daemon.test_daemon import Daemon, expected_service, send_with_softflowd
from tests.support import softflowd

ROOT = Path(__file__).resolve().parent.parent
needs_prometheus = pytest.mark.skipif(not shutil.which("prometheus"), reason="prometheus not on PATH")


# --- unit: the bounded host series ---------------------------------------------------------

def test_host_series_ceiling_keeps_sums_exact():
    hs = HostSeries(max_series=3)
    expect = Counter()
    for i in range(10):
        for svc in ("msn", "sip"):
            hs.add("192.0.2.1", f"10.0.0.{i}", svc, "im", 100 + i)
            expect[svc] += 100 + i
    named = [k for k in hs.series if k[1] != "other"]
    assert len(named) == 3
    assert len(hs.series) <= 3 + 2  # + one "other" per service
    got = Counter()
    for (_, host, svc, _), v in hs.series.items():
        got[svc] += v
    assert got == expect


def test_host_series_of_two_exporters_share_the_ceiling_and_fold_per_exporter():
    hs = HostSeries(max_series=2)
    for e in ("192.0.2.1", "192.0.2.2"):
        for i in range(3):
            hs.add(e, f"10.0.0.{i}", "msn", "im", 10)
    assert len([k for k in hs.series if k[1] != "other"]) == 2
    assert hs.series[("192.0.2.2", "other", "msn", "im")] == 30
    assert hs.series[("192.0.2.1", "other", "msn", "im")] == 10
    assert sum(hs.series.values()) == 60


def test_registry_exposes_the_snapshot():
    m = Metrics(max_host_series=10)
    m.swap(Snapshot(services={("192.0.2.1", "msn", "im"): (1000, 10, 2), ("192.0.2.2", "other", "other"): (5, 1, 1)},
                    hosts={("192.0.2.1", "10.0.0.1", "msn", "im"): 1000}, host_names={"10.0.0.1": "build-3"},
                    datagrams={("192.0.2.1", "9"): 3}, errors={("192.0.2.1", "bad-length"): 1},
                    clamped={"192.0.2.1": 7}, exporters=1, sessions=4))
    get = m.registry.get_sample_value
    assert get("imflow_service_bytes_total", {"exporter": "192.0.2.1", "service": "msn", "category": "im"}) == 1000
    assert get("imflow_service_flows_total", {"exporter": "192.0.2.2", "service": "other", "category": "other"}) == 1
    assert get("imflow_host_bytes_total", {"exporter": "192.0.2.1", "host": "10.0.0.1", "host_name": "build-3",
                                           "service": "msn", "category": "im"}) == 1000
    assert get("imflow_datagrams_total", {"exporter": "192.0.2.1", "version": "9"}) == 3
    assert get("imflow_decode_errors_total", {"exporter": "192.0.2.1", "reason": "bad-length"}) == 1
    assert get("imflow_clamped_flows_total", {"exporter": "192.0.2.1"}) == 7
    assert get("imflow_exporters") == 1
    assert get("imflow_exporter_sessions") == 4
    assert get("imflow_build_info", {"version": __import__("collector").__version__}) == 1


def _full_snapshot() -> Snapshot:
    """A snapshot with every family populated, SNMP included."""
    iface = SimpleNamespace(index=1, name="ge-0/0/0", alias="uplink", speed_bits=10**9, counter_bits=64,
                            in_octets=5, out_octets=6)
    agent = SimpleNamespace(exporter="192.0.2.1", up=True, last_duration=0.1, errors={"timeout": 1},
                            interfaces={1: iface})
    return Snapshot(services={("192.0.2.1", "msn", "im"): (1, 2, 3)}, hosts={("192.0.2.1", "10.0.0.1", "msn", "im"): 5},
                    active_hosts={("192.0.2.1", "msn", "im"): 1}, violations={("192.0.2.1", "msn", "im"): 1},
                    violation_hosts={("192.0.2.1", "10.0.0.1", "msn", "im"): 1}, datagrams={("192.0.2.1", "9"): 1},
                    flows={("192.0.2.1", "9"): 1}, errors={("192.0.2.1", "bad-length"): 1}, held={"192.0.2.1": 1},
                    expired={"192.0.2.1": 1}, seq_lost={"192.0.2.1": 1}, clamped={"192.0.2.1": 1},
                    socket_drops={"127.0.0.1:2055": 1}, evicted={"sessions": 1}, snmp=(agent,),
                    interface_service={("192.0.2.1", "ge-0/0/0", "in", "im"): 3})


@pytest.mark.skipif(not shutil.which("promtool"), reason="promtool not on PATH")
def test_promtool_check_metrics_is_clean():
    from prometheus_client import generate_latest

    m = Metrics()
    m.swap(_full_snapshot())
    m.flush_duration.observe(0.1)
    text = generate_latest(m.registry)
    assert b"imflow_interface_speed_bytes" in text
    out = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, timeout=60, check=False)
    assert out.returncode == 0, (out.stdout + out.stderr).decode()


def test_names_say_bytes_not_octets_and_speed_in_bytes_per_second():
    from prometheus_client import generate_latest

    m = Metrics()
    m.swap(_full_snapshot())
    names = {line.split()[2] for line in generate_latest(m.registry).decode().splitlines() if line.startswith("# TYPE")}
    assert not [n for n in names if "octets" in n or n.endswith("_bits")]
    get = m.registry.get_sample_value
    assert get("imflow_interface_speed_bytes", {"exporter": "192.0.2.1", "if_name": "ge-0/0/0"}) == 10**9 / 8
    assert get("imflow_interface_bytes_total", {"exporter": "192.0.2.1", "if_name": "ge-0/0/0", "direction": "in"}) == 5


# --- unit: the HTTP endpoint -------------------------------------------------------------------

def _get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.headers["Content-Type"], r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


def test_endpoint_serves_metrics_health_index_and_404():
    state = {"ok": False}
    m = Metrics(health=lambda: (state["ok"], {"listening": state["ok"]}))
    host, port = m.serve("127.0.0.1", 0)
    base = f"http://{host}:{port}"
    try:
        status, ctype, body = _get(base + "/healthz")
        assert status == 503 and ctype == "application/json"
        assert json.loads(body) == {"status": "unavailable", "listening": False}
        state["ok"] = True
        status, _, body = _get(base + "/healthz")
        assert status == 200 and json.loads(body)["status"] == "ok"
        status, ctype, body = _get(base + "/metrics")
        assert status == 200 and ctype.startswith("text/plain") and "imflow_build_info" in body
        status, _, body = _get(base + "/")
        assert status == 200 and "/metrics" in body and "/healthz" in body and "imflow_build_info" not in body
        for path in ("/health", "/nothing"):
            status, _, body = _get(base + path)
            assert status == 404 and "imflow_build_info" not in body
    finally:
        m.close()


def test_a_busy_metrics_port_names_the_address():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(OSError, match=rf"127\.0\.0\.1:{port}"):
            Metrics().serve("127.0.0.1", port)


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
                       ("${category}", "im"), ("$category", "im"), ("${exporter}", ".*"), ("$exporter", ".*"),
                       ("${instance}", ".*"), ("$instance", ".*")):
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
        got = {r["metric"]["service"]: float(r["value"][1])
               for r in prom.query("sum by (service) (imflow_service_bytes_total)")}
        assert got == {k: float(v) for k, v in want.items() if v}
        # one exporter (softflowd on loopback), whatever its source ports and sessions
        assert {r["metric"]["exporter"] for r in prom.query("imflow_service_bytes_total")} == {"127.0.0.1"}
        assert prom.query("imflow_exporters")[0]["value"][1] == "1"
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


def test_flush_durations_are_the_histogram_prometheus_reads():
    """The flush histogram is kept as plain counts (no prometheus_client until a scrape): its
    samples are those of a Prometheus histogram, counted here by hand."""
    m = Metrics()
    for seconds in (0.003, 0.005, 0.05, 0.3, 20.0):
        m.flush_duration.observe(seconds)
    get = m.registry.get_sample_value
    name = "imflow_flush_duration_seconds"
    # le is inclusive: 0.005 falls in the 0.005 bucket
    expected = {"0.005": 2, "0.01": 2, "0.025": 2, "0.05": 3, "0.1": 3, "0.25": 3, "0.5": 4, "1.0": 4,
                "2.5": 4, "5.0": 4, "10.0": 4, "+Inf": 5}
    assert {le: get(f"{name}_bucket", {"le": le}) for le in expected} == expected
    assert get(f"{name}_count") == 5
    assert get(f"{name}_sum") == pytest.approx(20.358)
