"""deploy/prometheus: promtool check config, check rules, and the rule unit tests."""

from __future__ import annotations

import pathlib
import shutil
import subprocess

import pytest

from .promql import METRICS, TARGET_LABELS, label_names, metric_names

ROOT = pathlib.Path(__file__).resolve().parents[2]
PROM = ROOT / "deploy" / "prometheus"

ALERTS = {
    "ImflowDown", "ImflowExporterSilent", "ImflowDecodeErrorsRising", "ImflowSocketDrops",
    "ImflowSequenceLoss", "ImflowTemplateDataExpiring", "ImflowStoreErrors",
    "ImflowUnwantedServiceTraffic", "ImflowPolicyViolation",
}


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool not installed (Debian: apt-get install prometheus)")
    return path


def run(promtool: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([promtool, *args], cwd=PROM, capture_output=True, text=True, timeout=120)


def test_check_config(promtool):
    out = run(promtool, "check", "config", "prometheus.yml")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS: 1 rule files found" in out.stdout + out.stderr


def test_check_rules(promtool):
    out = run(promtool, "check", "rules", "alerts.yml")
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in out.stdout + out.stderr


def test_rule_unit_tests(promtool):
    out = run(promtool, "test", "rules", "alerts_test.yml")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


# --- what promtool does not check ---------------------------------------------------------

def load(name: str):
    yaml = pytest.importorskip("yaml")
    return yaml.safe_load((PROM / name).read_text())


def rules():
    return [r for g in load("alerts.yml")["groups"] for r in g["rules"]]


def test_scrape_job():
    cfg = load("prometheus.yml")
    assert cfg["rule_files"] == ["alerts.yml"]
    jobs = {j["job_name"]: j for j in cfg["scrape_configs"]}
    assert jobs["imflow"]["static_configs"][0]["targets"] == ["127.0.0.1:9750"]


def test_alerts_are_the_documented_ones():
    assert {r["alert"] for r in rules()} == ALERTS
    for r in rules():
        assert r["labels"]["severity"] in ("warning", "critical"), r["alert"]
        assert r["annotations"]["summary"] and r["annotations"]["description"], r["alert"]


def test_alerts_use_imflow_metrics_and_their_labels():
    for r in rules():
        used = metric_names(r["expr"])
        assert used and used <= set(METRICS) | {"up"}, (r["alert"], used)
        labels = set(TARGET_LABELS).union(*(METRICS.get(m, ()) for m in used))
        assert label_names(r["expr"]) <= labels, r["alert"]


def test_down_and_unwanted_service_rules_are_as_documented():
    by_name = {r["alert"]: r for r in rules()}
    assert by_name["ImflowDown"]["expr"].strip() == 'up{job="imflow"} == 0'
    unwanted = by_name["ImflowUnwantedServiceTraffic"]["expr"]
    assert 'service=~"bittorrent|edonkey|gnutella|kazaa"' in unwanted
    assert 'service=~"bittorrent|edonkey|gnutella|kazaa"' in (ROOT / "deploy" / "README.md").read_text()
    assert "EDIT HERE" in (PROM / "alerts.yml").read_text()
    assert "imflow_policy_violation_bytes_total" in by_name["ImflowPolicyViolation"]["expr"]


def test_every_alert_has_a_firing_and_a_quiet_case():
    fires, quiet = set(), set()
    for case in load("alerts_test.yml")["tests"]:
        for check in case.get("alert_rule_test", []):
            (fires if check.get("exp_alerts") else quiet).add(check["alertname"])
    assert fires == ALERTS, f"no firing case for {ALERTS - fires}"
    assert quiet == ALERTS, f"no quiet case for {ALERTS - quiet}"


def test_exporters_with_sequence_quirks_are_labelled_by_prometheus_and_left_out_of_the_alert():
    """prometheus.yml labels the listed exporters' sequence-loss series; the alert takes only
    unlabelled ones (the alert's unit tests feed both kinds)."""
    import re

    relabel = [r for r in load("prometheus.yml")["scrape_configs"][0]["metric_relabel_configs"]
               if r.get("target_label") == "sequence_quirk"]
    assert len(relabel) == 1
    r = relabel[0]
    assert r["source_labels"] == ["__name__", "exporter"] and r["replacement"] == "softflowd-ipfix"
    anchored = lambda regex: re.compile(f"^(?:{regex})$")   # Prometheus anchors relabel regexes
    shipped = anchored(r["regex"])
    assert not shipped.match("imflow_sequence_lost_flows_total;192.0.2.7")   # as shipped: nobody
    edited = anchored(r["regex"].replace("NONE", r"192\.0\.2\.7|2001:db8::7"))
    assert edited.match("imflow_sequence_lost_flows_total;192.0.2.7")
    assert edited.match("imflow_sequence_lost_flows_total;2001:db8::7")
    assert not edited.match("imflow_sequence_lost_flows_total;192.0.2.70")
    assert not edited.match("imflow_flows_total;192.0.2.7")    # only the loss series is labelled
    expr = {x["alert"]: x for x in rules()}["ImflowSequenceLoss"]["expr"]
    assert 'imflow_sequence_lost_flows_total{sequence_quirk=""}' in expr
    docs = (ROOT / "docs" / "dashboards.md").read_text()
    assert "sequence_quirk" in docs and "softflowd" in docs
