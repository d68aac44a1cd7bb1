"""Item 2 of issue 17: violations are judged against the policy in force when you ask, from
the stored rollups; the collector's ingest-time verdict stays as history, named as such."""

from __future__ import annotations

import json

from collector.classify.catalogue import load_catalogue
from collector.policy import parse_policy
from tests.cli.conftest import OLD_VIOLATION, POLICY, ROWS, imflow, sums

import tomllib

TODAY = parse_policy(tomllib.loads(POLICY)["policy"], load_catalogue())


def expected_now() -> dict[tuple[str, str], dict]:
    """(host, service) -> counters, for what today's policy blocks; worked out per row."""
    blocked = [r for r in ROWS if r.host and TODAY.action(r.service, r.host) == "block"]
    return sums(blocked, lambda r: (r.host, r.service))


def test_violations_use_the_policy_of_today(site):
    want = expected_now()
    assert want and all(not r.violation for r in ROWS if (r.host, r.service) in want)  # none at ingest
    p = imflow("violations", "--config", str(site["config"]), "--since", "all", "--format", "json",
               cwd=site["cwd"])
    assert p.returncode == 0, p.stderr
    got = json.loads(p.stdout)
    assert {(r["host"], r["service"]): {"bytes": r["bytes"], "packets": r["packets"], "flows": r["flows"]}
            for r in got} == {k: dict(c) for k, c in want.items()}
    assert all(r["policy"] == "block" and r["violation_at_ingest"] is False for r in got)
    assert [r["bytes"] for r in got] == sorted((r["bytes"] for r in got), reverse=True)


def test_ingest_time_verdicts_are_history(site):
    p = imflow("violations", "--config", str(site["config"]), "--since", "all", "--recorded", "--format", "json",
               cwd=site["cwd"])
    assert p.returncode == 0, p.stderr
    got = json.loads(p.stdout)
    assert [(r["host"], r["service"], r["policy"]) for r in got] == [(*OLD_VIOLATION, "monitor")]
    table = imflow("violations", "--config", str(site["config"]), "--since", "all", cwd=site["cwd"]).stdout
    assert f"{len(expected_now())} violations under the current policy" in table
    assert "1 more recorded at ingest" in table


def test_report_judges_with_todays_policy(site):
    want = expected_now()
    p = imflow("report", "--config", str(site["config"]), "--since", "all", "--format", "json", cwd=site["cwd"])
    assert p.returncode == 0, p.stderr
    rep = json.loads(p.stdout)
    assert rep["totals"]["violations"] == len(want)
    assert rep["totals"]["violation_bytes"] == sum(c["bytes"] for c in want.values())
    assert sorted((v["host"], v["service"]) for v in rep["violations"]) == sorted(want)
    hosts = {(s["id"], h["host"]): h for c in rep["categories"] for s in c["services"] for h in s["hosts"]}
    old = hosts[(OLD_VIOLATION[1], OLD_VIOLATION[0])]
    assert old["recorded_violation"] is True and old["violation"] is False and old["policy"] == "monitor"
    assert any("policy in force when the report was generated" in n for n in rep["notes"])
    csv_head = imflow("report", "--config", str(site["config"]), "--since", "all", "--format", "csv",
                      cwd=site["cwd"]).stdout.splitlines()[0].split(",")
    assert csv_head[-2:] == ["violation", "violation_at_ingest"]


def test_violation_filters_and_limit(site):
    blocked = [r for r in ROWS if r.host and TODAY.action(r.service, r.host) == "block"]
    cfg = str(site["config"])
    p = imflow("violations", "--config", cfg, "--since", "all", "--service", "bittorrent", "--format", "json",
               cwd=site["cwd"])
    assert p.returncode == 0, p.stderr
    assert {r["host"] for r in json.loads(p.stdout)} == {r.host for r in blocked if r.service == "bittorrent"}
    p = imflow("violations", "--config", cfg, "--since", "all", "--category", "im", "--host", "10.1.0.0/16",
               "--format", "json", cwd=site["cwd"])
    assert {(r["host"], r["service"]) for r in json.loads(p.stdout)} == {
        (r.host, r.service) for r in blocked if r.category == "im" and r.host.startswith("10.1.")}
    p = imflow("violations", "--config", cfg, "--since", "all", "--limit", "2", "--format", "json",
               cwd=site["cwd"])
    top2 = sorted(expected_now().items(), key=lambda kv: -kv[1]["bytes"])[:2]
    assert [(r["host"], r["service"]) for r in json.loads(p.stdout)] == [k for k, _ in top2]
    cut = min(r.bin for r in blocked) + 3600
    p = imflow("violations", "--config", cfg, "--from", str(cut), "--until", str(cut + 1800), "--format", "json",
               cwd=site["cwd"])
    assert p.returncode == 0, p.stderr
    inside = sums([r for r in blocked if cut <= r.bin < cut + 1800], lambda r: (r.host, r.service))
    assert {(r["host"], r["service"]): r["bytes"] for r in json.loads(p.stdout)} == {
        k: c["bytes"] for k, c in inside.items()}
