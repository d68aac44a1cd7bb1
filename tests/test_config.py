"""Configuration: every problem is one line naming the key, exit status 2, no traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from collector import config


def check(tmp_path, text: str) -> subprocess.CompletedProcess:
    path = tmp_path / "imflow.toml"
    path.write_text(text)
    return subprocess.run([sys.executable, "-m", "collector", "check-config", str(path)],
                          capture_output=True, text=True, timeout=60)


GOOD = """
[collector]
listen = ["127.0.0.1:2055", "[::1]:4739"]
refresh_time = "30s"
[exporters]
allow = ["192.0.2.0/24", "2001:db8::/32"]
sampling = { "192.0.2.1" = 100 }
[store]
path = "/var/lib/imflow/imflow.db"
retention_minute = "2d"
[classify]
internal = ["10.0.0.0/8"]
[metrics]
listen = "127.0.0.1:9750"
"""


def test_good_config(tmp_path):
    p = check(tmp_path, GOOD)
    assert p.returncode == 0 and p.stdout.strip().endswith(": ok"), p.stderr
    cfg = config.load(str(tmp_path / "imflow.toml"))
    assert cfg.get("collector.refresh_time") == 30.0
    assert cfg.get("exporters.sampling") == {"192.0.2.1": 100}
    assert cfg.get("limits.max_sessions") == 10_000  # defaults fill the rest


@pytest.mark.parametrize("text,key,words", [
    ("[collector]\nlisten = ['0.0.0.0:70000']", "collector.listen[0]", "out of range"),
    ("[collector]\nlisten = ['nonsense']", "collector.listen[0]", "expected ADDR:PORT"),
    ("[collector]\nlisten = '0.0.0.0:2055'", "collector.listen", "expected a list"),
    ("[collector]\nlistn = []", "collector.listn", "unknown key"),
    ("[colector]\n", "colector", "unknown section"),
    ("[exporters]\nallow = ['10.0.0.0/33']", "exporters.allow[0]", "not a network"),
    ("[classify]\ninternal = ['10.1.1.300/24']", "classify.internal[0]", "not a network"),
    ("[exporters]\nsampling = { 'router1' = 10 }", "exporters.sampling.router1", "not an IP address"),
    ("[exporters]\nsampling = { '192.0.2.1' = 0 }", "exporters.sampling.192.0.2.1", "out of range"),
    ("[store]\nretention_hour = '90 days'", "store.retention_hour", "not a duration"),
    ("[collector]\nrcvbuf = true", "collector.rcvbuf", "expected an integer"),
    ("[log]\nlevel = 'loud'", "log.level", "expected one of"),
    ("[collector\n", None, "not valid TOML"),
])
def test_bad_config_names_the_key(tmp_path, text, key, words):
    p = check(tmp_path, text)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in p.stderr
    assert words in lines[0]
    if key:
        assert f" {key}: " in lines[0]


def test_missing_file(tmp_path):
    p = subprocess.run([sys.executable, "-m", "collector", "check-config", str(tmp_path / "nope.toml")],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "no such file" in p.stderr


@pytest.mark.parametrize("text,expect", [
    ("0.0.0.0:2055", ("0.0.0.0", 2055)), ("[::]:4739", ("::", 4739)), (":2055", ("0.0.0.0", 2055)),
    ("2055", ("0.0.0.0", 2055)), ("127.0.0.1:0", ("127.0.0.1", 0)),
])
def test_endpoints(text, expect):
    assert config.parse_endpoint(text) == expect


@pytest.mark.parametrize("text,seconds", [("500ms", 0.5), ("90s", 90), ("15m", 900), ("24h", 86400),
                                          ("7d", 604800), ("2w", 1209600), ("5y", 5 * 31536000), ("42", 42),
                                          ("1.5s", 1.5)])
def test_durations(text, seconds):
    assert config.parse_duration(text) == seconds


def test_shipped_example_config_is_valid():
    from pathlib import Path

    example = Path(__file__).resolve().parent.parent / "deploy" / "imflow.toml.example"
    p = subprocess.run([sys.executable, "-m", "collector", "check-config", str(example)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr


@pytest.mark.parametrize("command", ["top", "violations", "report"])
def test_bad_since_is_a_usage_error(tmp_path, command):
    p = subprocess.run([sys.executable, "-m", "collector", command, "--db", str(tmp_path / "x.db"),
                        "--since", "9q"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "Traceback" not in p.stderr and "not a duration" in p.stderr
