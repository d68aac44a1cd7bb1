"""deploy/systemd, deploy/sysctl, deploy/imflow.toml.example, grafana/provisioning."""

from __future__ import annotations

import pathlib
import shutil
import subprocess
import tomllib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
UNIT = ROOT / "deploy" / "systemd" / "imflow.service"
EXEC = "/opt/imflow/bin/imflow run --config /etc/imflow/imflow.toml --db /var/lib/imflow/imflow.db"


def unit() -> dict[str, dict[str, list[str]]]:
    """Section -> key -> every value given (systemd keys may repeat)."""
    parsed: dict[str, dict[str, list[str]]] = {}
    section = None
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = parsed.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        section.setdefault(key.strip(), []).append(value.strip())
    return parsed


def test_unit_is_hardened():
    s = unit()["Service"]
    one = {k: v[-1] for k, v in s.items()}
    assert one["User"] == "imflow" and one["Group"] == "imflow"
    assert one["ExecStart"] == EXEC
    assert one["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert one["KillSignal"] == "SIGTERM" and one["TimeoutStopSec"] == "60"
    assert one["Restart"] == "on-failure"
    # SNMP secrets: optional ("-"), read by systemd as root, never by imflow
    assert s["EnvironmentFile"] == ["-/etc/imflow/imflow.env"]
    for key, value in {
        "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
        "StateDirectory": "imflow", "ReadWritePaths": "/var/lib/imflow", "CapabilityBoundingSet": "",
        "AmbientCapabilities": "", "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
        "MemoryDenyWriteExecute": "yes", "SystemCallArchitectures": "native",
    }.items():
        assert one.get(key) == value, f"{key}={one.get(key)!r}"
    assert s["SystemCallFilter"][0] == "@system-service"
    assert s["ReadWritePaths"] == ["/var/lib/imflow"]
    sysusers = (ROOT / "deploy" / "systemd" / "imflow-sysusers.conf").read_text()
    assert any(line.split()[:2] == ["u", "imflow"] for line in sysusers.splitlines())


@pytest.fixture
def verifiable_unit(tmp_path) -> pathlib.Path:
    """The unit with its ExecStart pointed at an existing program: `verify` checks that the
    binary exists, and /opt/imflow/bin/imflow is only there once imflow is installed."""
    true = shutil.which("true") or "/bin/true"
    path = tmp_path / "imflow.service"
    path.write_text(UNIT.read_text().replace("ExecStart=/opt/imflow/bin/imflow ", f"ExecStart={true} "))
    return path


def test_systemd_analyze_verify(verifiable_unit):
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze not installed")
    out = subprocess.run([tool, "verify", str(verifiable_unit)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and not out.stderr.strip(), out.stdout + out.stderr


def test_systemd_security_exposure_is_low(verifiable_unit):
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze not installed")
    out = subprocess.run([tool, "security", "--offline=true", "--threshold=25", str(verifiable_unit)],
                         capture_output=True, text=True, timeout=60)
    if "--offline" in out.stderr or "unrecognized option" in out.stderr:
        pytest.skip("systemd-analyze too old for `security --offline` (needs systemd 250)")
    # --threshold=25: fail above an exposure of 2.5 (of 10); the unit scores about 1.5.
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr


def test_sysctl_raises_receive_buffers_to_32_mib():
    values = {}
    for line in (ROOT / "deploy" / "sysctl" / "90-imflow.conf").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith(("#", ";")):
            key, _, value = line.partition("=")
            values[key.strip()] = int(value.strip())
    assert values["net.core.rmem_max"] >= 32 << 20
    assert values["net.core.rmem_default"] >= 32 << 20


def test_config_example_is_toml_with_the_documented_sections():
    cfg = tomllib.loads((ROOT / "deploy" / "imflow.toml.example").read_text())
    assert set(cfg) == {"collector", "exporters", "store", "audit", "classify", "metrics", "log"}
    assert {"categories", "max_age", "max_rows", "max_pending"} <= set(cfg["audit"])
    assert {"listen", "rcvbuf", "refresh_time"} <= set(cfg["collector"])
    assert "sampling" in cfg["exporters"]
    assert {"path", "retention_minute", "retention_hour", "retention_day"} <= set(cfg["store"])
    assert "internal" in cfg["classify"]
    assert cfg["metrics"]["listen"] == "127.0.0.1:9750"      # what deploy/prometheus scrapes
    assert "max_host_series" in cfg["metrics"]
    assert "level" in cfg["log"]
    assert cfg["store"]["path"].startswith("/var/lib/imflow/")  # the unit's only writable path


def test_config_example_accepts_every_sender():
    """Copied as it is, the example must not drop real routers: the allow list is there, as a
    comment that explains it, not as a setting (its documentation ranges refuse everyone)."""
    from collector import config

    text = (ROOT / "deploy" / "imflow.toml.example").read_text()
    assert config.validate(tomllib.loads(text)).get("exporters.allow") == []
    section = text.split("[exporters]", 1)[1].split("\n[", 1)[0]
    assert "\n# allow = [" in section and "every sender is accepted" in section


def test_env_file_example_holds_only_comments():
    """deploy/imflow.env.example (the unit's EnvironmentFile) ships no value of its own, and
    names the variables the example configuration's *_env keys read."""
    env = (ROOT / "deploy" / "imflow.env.example").read_text()
    assert all(not line.strip() or line.startswith("#") for line in env.splitlines())
    example = (ROOT / "deploy" / "imflow.toml.example").read_text()
    for name in ("IMFLOW_SNMP_COMMUNITY", "IMFLOW_SNMP_AUTH", "IMFLOW_SNMP_PRIV"):
        assert f'"{name}"' in example and f"# {name}=" in env


def test_grafana_provisioning():
    yaml = pytest.importorskip("yaml")
    prov = ROOT / "grafana" / "provisioning"
    ds = yaml.safe_load((prov / "datasources" / "imflow.yaml").read_text())
    assert ds["apiVersion"] == 1
    (source,) = ds["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://localhost:9090"
    prom = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    assert source["jsonData"]["timeInterval"] == prom["global"]["scrape_interval"]

    dash = yaml.safe_load((prov / "dashboards" / "imflow.yaml").read_text())
    assert dash["apiVersion"] == 1
    (provider,) = dash["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards/imflow"


def test_a_bare_metrics_port_is_loopback():
    """`run --metrics 9750` binds 127.0.0.1 (the endpoint has no authentication); an address
    given with it is kept, so `--metrics 0.0.0.0:9750` still exposes it."""
    from collector.cli.commands import load_run_config
    from collector.cli.parser import build_parser

    def listen(*flags: str) -> str:
        return load_run_config(build_parser().parse_args(["run", *flags])).get("metrics.listen")

    assert listen("--metrics", "9750") == "127.0.0.1:9750"
    assert listen("--metrics", "0.0.0.0:9750") == "0.0.0.0:9750"
    assert listen("--metrics", "[::1]:9750") == "[::1]:9750"


def test_a_busy_metrics_port_is_named(tmp_path):
    """The service cannot start when its metrics port is taken: one line naming the address."""
    import os
    import socket
    import sys

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        p = subprocess.run([sys.executable, "-m", "collector", "run", "--listen", "127.0.0.1:0", "--db",
                            str(tmp_path / "i.db"), "--metrics", f"127.0.0.1:{port}"],
                           capture_output=True, text=True, timeout=60, cwd=tmp_path,
                           env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert p.returncode == 1, p.stderr
    assert f"127.0.0.1:{port}" in p.stderr.strip().splitlines()[-1], p.stderr
