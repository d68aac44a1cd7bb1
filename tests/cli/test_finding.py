"""Item 1 of issue 17: every query command finds the server's database through the config
(`--config`, `IMFLOW_CONFIG`, /etc/imflow/imflow.toml) and `store.path`, or `IMFLOW_DB`;
precedence flag > environment > config > default. Host names of the host map show in `top`."""

from __future__ import annotations

import json
import sqlite3

import pytest

from collector.store import BinRow
from tests.cli.conftest import BASE, ROWS, imflow, sums, write_store


def service_bytes(stdout: str) -> dict[str, int]:
    return {r["service"]: r["bytes"] for r in json.loads(stdout)}


EXPECTED = {k: c["bytes"] for k, c in sums(ROWS, lambda r: r.service).items()}


@pytest.fixture(scope="module")
def other_db(tmp_path_factory):
    """A second database with one row, to tell which one a command read."""
    path = tmp_path_factory.mktemp("other") / "other.db"
    return write_store(path, [BinRow(BASE, "192.0.2.9", "msn", "im", "10.7.7.7", 4242, 3, 1)])


def test_top_reads_store_path_of_config(site):
    p = imflow("top", "--config", str(site["config"]), "--since", "all", "--format", "json", cwd=site["cwd"])
    assert p.returncode == 0, p.stderr
    assert service_bytes(p.stdout) == EXPECTED


def test_imflow_config_environment(site):
    p = imflow("top", "--since", "all", "--format", "json", cwd=site["cwd"],
               env={"IMFLOW_CONFIG": str(site["config"])})
    assert p.returncode == 0, p.stderr
    assert service_bytes(p.stdout) == EXPECTED


def test_precedence_db_flag_then_imflow_db_then_store_path(site, other_db):
    env = {"IMFLOW_CONFIG": str(site["config"]), "IMFLOW_DB": str(other_db)}
    p = imflow("top", "--since", "all", "--format", "json", cwd=site["cwd"], env=env)
    assert p.returncode == 0, p.stderr
    assert service_bytes(p.stdout) == {"msn": 4242}  # IMFLOW_DB beats the config's store.path
    p = imflow("top", "--since", "all", "--format", "json", "--db", str(site["db"]), cwd=site["cwd"], env=env)
    assert service_bytes(p.stdout) == EXPECTED  # --db beats IMFLOW_DB
    p = imflow("top", "--since", "all", "--format", "json", "--config", str(site["config"]), cwd=site["cwd"],
               env={"IMFLOW_CONFIG": "/nonexistent/imflow.toml"})
    assert service_bytes(p.stdout) == EXPECTED  # --config beats IMFLOW_CONFIG


def test_missing_config_named_by_environment_is_an_error(site):
    p = imflow("top", "--since", "all", cwd=site["cwd"], env={"IMFLOW_CONFIG": str(site["root"] / "nope.toml")})
    assert p.returncode == 2
    assert "nope.toml" in p.stderr


@pytest.mark.parametrize("command", [["violations"], ["report", "--format", "json"]])
def test_violations_and_report_read_store_path(site, command):
    p = imflow(*command, "--since", "all", cwd=site["cwd"], env={"IMFLOW_CONFIG": str(site["config"])})
    assert p.returncode == 0, p.stderr
    if command[0] == "report":
        assert json.loads(p.stdout)["totals"]["bytes"] == sum(EXPECTED.values())
        assert json.loads(p.stdout)["database"] == str(site["db"])


def test_policy_render_and_services_take_the_config_from_the_environment(site):
    env = {"IMFLOW_CONFIG": str(site["config"])}
    p = imflow("policy", "render", "--format", "nftables", cwd=site["cwd"], env=env)
    assert p.returncode == 0, p.stderr
    assert "bittorrent" in p.stdout and "msn" in p.stdout
    assert str(site["config"]) in p.stdout  # the header names the policy file used


def test_top_shows_host_names_from_the_host_map(site):
    p = imflow("top", "--config", str(site["config"]), "--since", "all", "--by", "host", "--format", "json",
               cwd=site["cwd"])
    assert p.returncode == 0, p.stderr
    names = {r["host"]: r["name"] for r in json.loads(p.stdout)}
    assert names["10.1.2.15"] == "build-server-3" and names["10.1.5.33"] == ""
    table = imflow("top", "--config", str(site["config"]), "--since", "all", "--by", "host,service",
                   cwd=site["cwd"]).stdout
    assert "build-server-3" in table
    assert table.splitlines()[0].split()[:2] == ["host", "name"]


def test_demo_takes_the_policy_of_its_config(tmp_path):
    cfg = tmp_path / "demo.toml"
    cfg.write_text('[policy]\n[policy.categories]\np2p = "block"\n')
    db = tmp_path / "demo.db"
    p = imflow("demo", "--config", str(cfg), "--db", str(db), "--duration", "4", "--every", "1", cwd=tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr
    with sqlite3.connect(db) as con:
        cats = dict(con.execute("SELECT category, max(violation) FROM rollup_1m WHERE host != ''"
                                " GROUP BY category").fetchall())
    assert cats.get("p2p") == 1 and not cats.get("im")  # the config's policy judged the demo's flows


def test_etc_default_when_present_and_nothing_else_says(tmp_path, monkeypatch):
    from collector.cli import where

    monkeypatch.delenv("IMFLOW_CONFIG", raising=False)
    etc = tmp_path / "imflow.toml"
    assert where.config_path(None, default=str(etc)) is None  # absent: the built-in defaults
    etc.write_text("")
    assert where.config_path(None, default=str(etc)) == str(etc)
    monkeypatch.setenv("IMFLOW_CONFIG", "/elsewhere.toml")
    assert where.config_path(None, default=str(etc)) == "/elsewhere.toml"
    assert where.config_path("flag.toml", default=str(etc)) == "flag.toml"
