"""The Grafana dashboards: Grafana's own schema, layout, data source and metric names.

The JSON schema comes from the TypeScript interface `Dashboard` in the npm package
@grafana/schema (versions pinned in dashboard-schema/package-lock.json); make-schema.sh
builds it on first use (npm ci into that folder, about 15 s).
"""

from __future__ import annotations

import copy
import json
import pathlib
import shutil
import subprocess

import pytest

from .promql import (
    CATEGORIES,
    METRICS,
    TARGET_LABELS,
    grafana_to_promql,
    grafana_variables,
    label_names,
    metric_names,
    selectors,
)

ROOT = pathlib.Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "grafana" / "dashboards"
SCHEMA_DIR = pathlib.Path(__file__).resolve().parent / "dashboard-schema"
SCHEMA = SCHEMA_DIR / "dashboard.schema.json"

DS = {"type": "prometheus", "uid": "${datasource}"}
UIDS = {"imflow-overview", "imflow-host", "imflow-service", "imflow-health"}
PANEL_TYPES = {"timeseries", "table", "stat", "piechart", "bargauge", "row"}


def load(path: pathlib.Path) -> dict:
    return json.loads(path.read_text())


FILES = sorted(DASHBOARDS.glob("*.json"))
DASHES = {p.stem: load(p) for p in FILES}


def panels(dash: dict):
    """Every panel, those nested in collapsed rows included."""
    for p in dash.get("panels", []):
        yield p
        yield from p.get("panels", [])


def exprs(dash: dict):
    for p in panels(dash):
        for t in p.get("targets", []):
            if "expr" in t:
                yield p, t["expr"]


@pytest.fixture(scope="session")
def schema() -> dict:
    lock = SCHEMA_DIR / "package-lock.json"
    if not SCHEMA.exists() or SCHEMA.stat().st_mtime < lock.stat().st_mtime:
        if shutil.which("npm") is None or shutil.which("node") is None:
            pytest.skip("node/npm not installed: cannot generate the Grafana dashboard schema")
        subprocess.run(["sh", str(SCHEMA_DIR / "make-schema.sh")], check=True, timeout=600)
    return load(SCHEMA)


@pytest.fixture(scope="session")
def validator(schema):
    jsonschema = pytest.importorskip("jsonschema")
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def test_the_four_dashboards_exist():
    assert {d["uid"] for d in DASHES.values()} == UIDS
    for name, d in DASHES.items():
        assert name == d["uid"], "file name and uid differ"
        assert len(d["uid"]) <= 40


@pytest.mark.parametrize("name", sorted(DASHES))
def test_matches_grafana_schema(name, validator):
    errors = sorted(validator.iter_errors(DASHES[name]), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:20])


def test_schema_is_strict_enough(validator):
    """The generated schema rejects what Grafana would not understand (guards the generator flags)."""
    d = DASHES["imflow-overview"]
    assert validator.is_valid(d)
    bad = copy.deepcopy(d)
    bad["panels"][1]["gridpos"] = bad["panels"][1].pop("gridPos")        # misspelt key
    assert not validator.is_valid(bad)
    bad = copy.deepcopy(d)
    del bad["panels"][1]["type"]                                           # required key
    assert not validator.is_valid(bad)
    bad = copy.deepcopy(d)
    bad["schemaVersion"] = "39"                                            # wrong type
    assert not validator.is_valid(bad)
    bad = copy.deepcopy(d)
    bad["templating"]["list"][0]["type"] = "prometheus"                    # not a variable type
    assert not validator.is_valid(bad)
    # ... and accepts what panel plugins define themselves (options, targets, custom config).
    ok = copy.deepcopy(d)
    ok["panels"][1]["options"]["somePluginOption"] = {"any": [1, 2]}
    ok["panels"][1]["targets"][0]["exemplar"] = True
    assert validator.is_valid(ok)


@pytest.mark.parametrize("name", sorted(DASHES))
def test_current_schema_version_and_panel_types(name):
    d = DASHES[name]
    assert d["schemaVersion"] >= 39
    assert d["id"] is None, "an exported dashboard must not carry a Grafana instance's id"
    for p in panels(d):
        assert p["type"] in PANEL_TYPES, p["type"]
        if p["type"] != "row":
            assert p["title"]
            assert p["targets"], p["title"]
            assert "fieldConfig" in p


@pytest.mark.parametrize("name", sorted(DASHES))
def test_panel_ids_unique_and_grid_inside_24_columns(name):
    d = DASHES[name]
    ids = [p["id"] for p in panels(d)]
    assert len(ids) == len(set(ids)), f"duplicate panel ids in {name}"
    cells = {}
    for p in panels(d):
        g = p["gridPos"]
        assert g["w"] >= 1 and g["h"] >= 1 and g["x"] >= 0 and g["y"] >= 0, p["title"]
        assert g["x"] + g["w"] <= 24, f"{p['title']}: x {g['x']} + w {g['w']} > 24"
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = p["title"]


@pytest.mark.parametrize("name", sorted(DASHES))
def test_datasource_is_the_variable(name):
    d = DASHES[name]
    variables = d["templating"]["list"]
    ds = [v for v in variables if v["name"] == "datasource"]
    assert len(ds) == 1 and ds[0]["type"] == "datasource" and ds[0]["query"] == "prometheus"

    def walk(node, where):
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "datasource":
                    assert v == DS, f"{where}: datasource {v!r}"
                walk(v, f"{where}/{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{where}/{i}")

    walk(d, name)
    for p in panels(d):
        if p["type"] != "row":
            assert p.get("datasource") == DS, p["title"]
            for t in p["targets"]:
                assert t.get("datasource") == DS, p["title"]


@pytest.mark.parametrize("name", sorted(DASHES))
def test_queries_use_only_imflow_metrics_and_their_labels(name):
    d = DASHES[name]
    defined = {v["name"] for v in d["templating"]["list"]}
    for p, expr in exprs(d):
        used = metric_names(expr)
        assert used, f"{p['title']}: no metric in {expr!r}"
        unknown = used - set(METRICS)
        assert not unknown, f"{p['title']}: unknown metrics {unknown} in {expr!r}"
        labels = set(TARGET_LABELS).union(*(METRICS[m] for m in used))
        stray = label_names(expr) - labels
        assert not stray, f"{p['title']}: labels {stray} not on {used}"
        assert grafana_variables(expr) <= defined, f"{p['title']}: undefined variable in {expr!r}"
        if "rate(" in expr:
            assert "[$__rate_interval]" in expr or "[$__range]" in expr, f"{p['title']}: fixed rate window"


def test_dashboards_cover_what_they_promise():
    def used(name):
        return set().union(*(metric_names(e) for _, e in exprs(DASHES[name])))

    overview = used("imflow-overview")
    assert {"imflow_service_bytes_total", "imflow_service_active_hosts", "imflow_host_bytes_total",
            "imflow_policy_violation_bytes_total", "imflow_interface_service_bytes_total",
            "imflow_interface_bytes_total", "imflow_interface_speed_bytes"} <= overview
    top = [e for _, e in exprs(DASHES["imflow-overview"]) if "topk" in e and "imflow_host_bytes_total" in e]
    assert top and all('host!="other"' in e for e in top)
    # a share of all traffic divides by every category, other included
    shares = [e for p, e in exprs(DASHES["imflow-overview"]) if p["fieldConfig"]["defaults"].get("unit") == "percentunit"
              and "imflow_service_bytes_total" in e]
    assert shares
    for e in shares:
        denominator = e.split("/")[-1]
        assert "category" not in denominator.replace("ignoring (category)", ""), e

    health = used("imflow-health")
    assert {"imflow_datagrams_total", "imflow_flows_total", "imflow_decode_errors_total",
            "imflow_template_held_total", "imflow_template_expired_total", "imflow_sequence_lost_flows_total",
            "imflow_socket_drops_total", "imflow_flush_duration_seconds_bucket", "imflow_store_errors_total",
            "imflow_exporters", "imflow_snmp_up", "imflow_snmp_errors_total"} <= health

    host_var = [v for v in DASHES["imflow-host"]["templating"]["list"] if v["name"] == "host"][0]
    assert host_var["query"]["query"] == \
        'label_values(imflow_host_bytes_total{instance=~"$instance", exporter=~"$exporter"}, host)'
    assert all('host="$host"' in e for _, e in exprs(DASHES["imflow-host"]))
    assert all('service="$service"' in e for _, e in exprs(DASHES["imflow-service"]))


@pytest.mark.parametrize("name", sorted(DASHES))
def test_instance_and_exporter_selectors_are_used_by_every_query(name):
    """Every dashboard selects imflow instances and exporters; every metric selector of every
    query takes the instance, and the exporter where the metric has that label."""
    variables = {v["name"]: v for v in DASHES[name]["templating"]["list"]}
    for var in ("instance", "exporter"):
        v = variables.get(var)
        assert v is not None, f"{name}: no ${var} selector"
        assert v["type"] == "query" and v["multi"] and v["includeAll"] and v["allValue"] == ".*", var
    assert "imflow_build_info" in variables["instance"]["query"]["query"]
    assert 'instance=~"$instance"' in variables["exporter"]["query"]["query"]
    for p, expr in exprs(DASHES[name]):
        found = selectors(expr)
        assert found, f"{p['title']}: no metric selector in {expr!r}"
        for metric, matchers in found:
            assert 'instance=~"$instance"' in matchers, f"{p['title']}: {metric} without $instance"
            if "exporter" in METRICS.get(metric, ()):
                assert 'exporter=~"$exporter"' in matchers, f"{p['title']}: {metric} without $exporter"


def test_overview_compares_this_week_with_last_week():
    panel = [p for p in panels(DASHES["imflow-overview"]) if p.get("title") == "This week vs last week"]
    assert len(panel) == 1 and panel[0]["type"] == "timeseries"
    now, before = (t["expr"] for t in panel[0]["targets"])
    assert "offset" not in now and "offset 1w" in before
    assert before.replace(" offset 1w", "") == now  # the same query, a week earlier


def test_category_variable_lists_the_categories():
    var = [v for v in DASHES["imflow-overview"]["templating"]["list"] if v["name"] == "category"][0]
    assert var["query"].split(",") == list(CATEGORIES)


def test_every_query_parses(tmp_path):
    """Each query, Grafana variables replaced, given to Prometheus' own parser (promtool)."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian: apt-get install prometheus)")
    rules = []
    for name, d in DASHES.items():
        for i, (p, expr) in enumerate(exprs(d)):
            rules.append({"record": f"dashboard:{name.replace('-', '_')}:{i}", "expr": grafana_to_promql(expr)})
    path = tmp_path / "dashboard_queries.yml"
    path.write_text(json.dumps({"groups": [{"name": "dashboards", "rules": rules}]}, indent=1))  # JSON is YAML
    out = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(rules)} rules found" in out.stdout


def _query(dash: str, title: str, ref: str = "A") -> str:
    for p in panels(DASHES[dash]):
        if p.get("title") == title:
            for t in p["targets"]:
                if t["refId"] == ref:
                    return t["expr"]
    raise KeyError(f"{dash}: no panel {title!r} with query {ref}")


def test_queries_compute_what_their_titles_say(tmp_path):
    """Some panels' queries run by Prometheus' engine (promtool) on series with known rates."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian: apt-get install prometheus)")
    t = 'job="imflow", instance="127.0.0.1:9750"'
    per_s = lambda rate: f"0+{rate * 60}x90"    # a counter growing by `rate` per second, 1m samples
    series = [
        (f'imflow_service_bytes_total{{{t}, service="msn", category="im"}}', per_s(100)),
        (f'imflow_service_bytes_total{{{t}, service="bittorrent", category="p2p"}}', per_s(300)),
        (f'imflow_service_bytes_total{{{t}, service="other", category="other"}}', per_s(600)),
        (f'imflow_host_bytes_total{{{t}, host="10.0.0.1", service="msn", category="im"}}', per_s(100)),
        (f'imflow_host_bytes_total{{{t}, host="10.0.0.2", service="bittorrent", category="p2p"}}', per_s(300)),
        (f'imflow_host_bytes_total{{{t}, host="other", service="bittorrent", category="p2p"}}', per_s(900)),
        (f'imflow_host_bytes_total{{{t}, host="10.0.0.3", service="other", category="other"}}', per_s(50)),
        (f'imflow_interface_service_bytes_total{{{t}, exporter="192.0.2.1", if_name="ge-0/0/0", direction="in", category="im"}}', per_s(128)),
        (f'imflow_interface_bytes_total{{{t}, exporter="192.0.2.1", if_name="ge-0/0/0", direction="in"}}', per_s(1024)),
        (f'imflow_interface_speed_bytes{{{t}, exporter="192.0.2.1", if_name="ge-0/0/0"}}', "512x90"),
    ]
    default = {"category": "im|p2p|voip|collab", "instance": ".*", "exporter": ".*"}   # the default selections
    cases = [
        (_query("imflow-overview", "Share of all traffic per category"),
         [('{category="im"}', 0.1), ('{category="p2p"}', 0.3)]),
        (_query("imflow-overview", "IM + P2P + VoIP + collab share of all traffic"), [("{}", 0.4)]),
        (_query("imflow-overview", "Top internal hosts"),             # host="other" left out
         [('{host="10.0.0.1"}', 100 * 3600), ('{host="10.0.0.2"}', 300 * 3600)]),
        (_query("imflow-overview", "Share of each link by category"),
         [('{exporter="192.0.2.1", if_name="ge-0/0/0", direction="in", category="im"}', 0.125)]),
        (_query("imflow-overview", "Link utilisation by category"),   # 128 B/s on a 512 B/s (4096 bit/s) link
         [('{exporter="192.0.2.1", if_name="ge-0/0/0", direction="in", category="im"}', 0.25)]),
        (_query("imflow-service", "Rate now").replace("$service", "bittorrent"), [("{}", 8 * 300)]),
        (_query("imflow-overview", "This week vs last week"), [("{}", 8 * (100 + 300))]),   # other not shown
        (_query("imflow-overview", "This week vs last week", "B"), []),   # the series began 80 minutes ago
    ]
    test = {
        "rule_files": [],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [{"series": s, "values": v} for s, v in series],
            "promql_expr_test": [
                {"expr": grafana_to_promql(expr, default), "eval_time": "80m",
                 "exp_samples": [{"labels": lab, "value": val} for lab, val in samples]}
                for expr, samples in cases
            ],
        }],
    }
    path = tmp_path / "dashboard_test.yml"
    path.write_text(json.dumps(test, indent=1))
    out = subprocess.run([promtool, "test", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
