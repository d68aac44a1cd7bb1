"""One schema owns every key: one duration grammar with a range per key, SNMP targets whose
keys default to the section's, each default in one place, and no writes after load."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from collector import config
from collector.config import INHERIT, SCHEMA, ConfigError, Tables

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "deploy" / "imflow.toml.example"
V2 = '[[snmp.targets]]\nexporter = "192.0.2.1"\ncommunity = "public"\n'


def imflow(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "collector", *args], check=False, capture_output=True, text=True,
                          timeout=60, env=dict(os.environ, **(env or {})))


def check(tmp_path, text: str, **env: str) -> subprocess.CompletedProcess:
    path = tmp_path / "imflow.toml"
    path.write_text(text)
    return imflow("check-config", str(path), env=env)


def one_line(p: subprocess.CompletedProcess, key: str) -> str:
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2 and len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
    assert lines[0].startswith(f"imflow: config: {key}: "), lines[0]
    return lines[0]


def duration_keys() -> list[tuple[str, object]]:
    """(dotted key, its check) for every duration key of the schema, SNMP targets' included."""
    out = []
    for section, keys in SCHEMA.items():
        for name, spec in keys.items():
            if isinstance(spec.check, Tables):
                out += [(f"{section}.{name}[0].{k}", s.check) for k, s in spec.check.keys.items()
                        if s.check.kind.startswith("duration")]
            elif spec.check.kind.startswith("duration"):
                out.append((f"{section}.{name}", spec.check))
    return out


# --- what the two grammars disagreed on ---------------------------------------------------

@pytest.mark.parametrize("text", [
    "[snmp]\ninterval = 30\n",  # documented, refused at the section's top level
    '[snmp]\ntimeout = "2s"\n',  # refused there while a target took "500ms"
    f'[snmp]\ntimeout = "2s"\n{V2}timeout = "2s"\n',
    f'{V2}interval = "1d"\n',  # refused in a target while "5y" passed elsewhere
    f'{V2}timeout = "500ms"\nbackoff_max = "1h"\n',
])
def test_snmp_keys_take_the_one_grammar(tmp_path, text):
    p = check(tmp_path, text)
    assert p.returncode == 0, p.stderr


def test_snmp_section_values_are_the_targets_defaults(tmp_path):
    path = tmp_path / "imflow.toml"
    path.write_text(f'[snmp]\ninterval = 30\ntimeout = "2s"\nretries = 3\nbackoff_max = "1h"\n{V2}'
                    f'[[snmp.targets]]\nexporter = "192.0.2.2"\ncommunity = "public"\ninterval = "1d"\n'
                    f'timeout = "500ms"\nretries = 0\nbackoff_max = "2h"\n')
    from collector.daemon.wiring import build_targets

    a, b = build_targets(config.load(str(path)))
    assert (a.interval, a.timeout, a.retries, a.backoff_max) == (30.0, 2.0, 3, 3600.0)
    assert (b.interval, b.timeout, b.retries, b.backoff_max) == (86400.0, 0.5, 0, 7200.0)


def test_every_duration_key_is_found():
    keys = {k for k, _ in duration_keys()}
    assert {"collector.refresh_time", "store.retention_day", "limits.pending_max_age", "snmp.timeout",
            "snmp.targets[0].interval", "snmp.targets[0].backoff_max"} <= keys


@pytest.mark.parametrize("key,check", duration_keys(), ids=[k for k, _ in duration_keys()])
@pytest.mark.parametrize("text,seconds", [("500ms", 0.5), ("2s", 2.0), ("1d", 86400.0)])
def test_one_duration_grammar_for_every_key(key, check, text, seconds):
    """Each key has its range; inside it, every key reads a duration as the CLI does."""
    assert config.parse_duration(text) == seconds
    try:
        value = check(key, text)
    except ConfigError as exc:
        assert exc.key == key and "out of range" in str(exc), exc
        with pytest.raises(ConfigError, match="out of range"):
            check(key, seconds)  # the same value as a number: refused alike
    else:
        assert value == check(key, seconds) == seconds


@pytest.mark.parametrize("key,check", duration_keys(), ids=[k for k, _ in duration_keys()])
@pytest.mark.parametrize("value", [-1, -0.5, "-5s", float("nan"), float("inf"), True, "5 parsecs"])
def test_no_duration_key_takes_a_negative_or_nonsense(key, check, value):
    with pytest.raises(ConfigError) as info:
        check(key, value)
    assert info.value.key == key and "\n" not in str(info.value)


@pytest.mark.parametrize("text,key", [
    ("[store]\nretention_minute = 0\n", "store.retention_minute"),
    ('[store]\nretention_day = "0d"\n', "store.retention_day"),
    ("[collector]\nrefresh_time = -60\n", "collector.refresh_time"),
    ("[collector]\nstatus_interval = 0\n", "collector.status_interval"),
    ('[collector]\nbatch_delay = "-1s"\n', "collector.batch_delay"),
    ("[limits]\npending_max_age = 0\n", "limits.pending_max_age"),
    ("[snmp]\ninterval = 0.5\n", "snmp.interval"),
    ("[snmp]\ntimeout = 0\n", "snmp.timeout"),
    ('[snmp]\ntimeout = "1d"\n', "snmp.timeout"),
    (f"{V2}timeout = -2\n", "snmp.targets[0].timeout"),
    (f'{V2}interval = "0s"\n', "snmp.targets[0].interval"),
    (f'{V2}backoff_max = "2d"\n', "snmp.targets[0].backoff_max"),
])
def test_zero_negative_or_too_long_durations_exit_2_naming_the_key(tmp_path, text, key):
    line = one_line(check(tmp_path, text), key)
    assert "out of range" in line or "not a duration" in line


def test_zero_batch_delay_means_no_wait(tmp_path):
    assert check(tmp_path, "[collector]\nbatch_delay = 0\n").returncode == 0


@pytest.mark.parametrize("text,key,words", [
    ("[snmp]\ntimout = 1\n", "snmp.timout", "unknown key"),
    (f"{V2}comunity = 'x'\n", "snmp.targets[0].comunity", "unknown key"),
    ('[[snmp.targets]]\ncommunity = "public"\n', "snmp.targets[0].exporter", "required"),
    (f"{V2}version = '1'\n", "snmp.targets[0].version", "expected 2c or 3"),
    (f"{V2}retries = 11\n", "snmp.targets[0].retries", "out of range"),
    ('[[snmp.targets]]\nexporter = "192.0.2.1"\n', "snmp.targets[0].community", "required for version 2c"),
    (f"{V2}{V2}", "snmp.targets[1].exporter", "already used"),
])
def test_snmp_errors_exit_2_naming_the_key(tmp_path, text, key, words):
    assert words in one_line(check(tmp_path, text), key)


def test_secret_values_are_not_shown(tmp_path):
    text = ('[[snmp.targets]]\nexporter = "192.0.2.1"\nversion = "3"\nuser = "u"\nauth_protocol = "sha"\n'
            'auth_key = "hush-7"\n')
    line = one_line(check(tmp_path, text), "snmp.targets[0].auth_key")
    assert "too short" in line and "hush" not in line and "value not shown" in line
    line = one_line(check(tmp_path, V2.replace('"public"', '["hush-hush"]')), "snmp.targets[0].community")
    assert "hush" not in line
    p = check(tmp_path, '[[snmp.targets]]\nexporter = "192.0.2.1"\ncommunity_env = "C"\n', C="x")
    assert p.returncode == 0, p.stderr
    path = tmp_path / "imflow.toml"
    path.write_text(V2.replace("public", "hush-hush"))
    cfg = config.load(str(path))
    assert "hush" not in repr(cfg) and "hush" not in str(cfg.values)


def test_run_refuses_a_bad_config_with_one_line(tmp_path):
    for text, key in ((f'{V2}timeout = "2m"\n', "snmp.targets[0].timeout"),
                      ('[[snmp.targets]]\nexporter = "192.0.2.1"\n', "snmp.targets[0].community")):
        path = tmp_path / "imflow.toml"
        path.write_text(text)
        one_line(imflow("run", "--config", str(path), "--db", str(tmp_path / "x.db"), "--listen", "127.0.0.1:0"),
                 key)


# --- each default in one place ----------------------------------------------------------

def test_defaults_come_from_the_schema():
    from collector.daemon.wiring import limits_of
    from collector.netflow.session import Limits
    from collector.snmp import Target

    cfg = config.validate({})
    assert Limits() == limits_of(cfg)
    assert set(SCHEMA["limits"]) - set(Limits.__dataclass_fields__) == {"max_open_bins"}  # the aggregator's
    small = config.validate({"limits": {"max_sessions": 3, "pending_max_age": "5m"}})
    assert (limits_of(small).max_sessions, limits_of(small).pending_max_age) == (3, 300.0)
    t = Target("192.0.2.1", "192.0.2.1", 161, "2c")
    assert (t.interval, t.timeout, t.retries, t.backoff_max) == \
        tuple(cfg.get(f"snmp.{k}") for k in ("interval", "timeout", "retries", "backoff_max"))
    targets = SCHEMA["snmp"]["targets"].check.keys
    assert {k for k, s in targets.items() if s.default is INHERIT} == {"interval", "timeout", "retries",
                                                                       "backoff_max"}


def test_config_is_a_leaf():
    """Any package may read its defaults from collector.config: it imports nothing of ours."""
    code = "import sys, collector.config; print(sorted(m for m in sys.modules if m.startswith('collector')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['collector', 'collector.config']"


def test_every_key_is_documented_in_one_line():
    for section, keys in SCHEMA.items():
        assert config.SECTIONS[section]
        for spec in keys.values():
            for s in (spec, *(spec.check.keys.values() if isinstance(spec.check, Tables) else ())):
                assert s.doc and "\n" not in s.doc and "|" not in s.doc and s.check.kind


# --- no writes after load ---------------------------------------------------------------

def test_replaced_returns_a_new_checked_config(tmp_path):
    path = tmp_path / "imflow.toml"
    path.write_text(f'[collector]\nrefresh_time = "30s"\n{V2}')
    cfg = config.load(str(path))
    before = repr(cfg.values)
    new = cfg.replaced({"collector.refresh_time": "2m", "store.path": "other.db",
                        "classify.internal": ["10.1.0.0/16"], "policy": {"default": "block"},
                        "snmp.targets": []})
    assert repr(cfg.values) == before  # the old one is left as it was
    assert new.path == cfg.path and new is not cfg
    assert (new.get("collector.refresh_time"), new.get("store.path"), new.get("policy.default")) == \
        (120.0, "other.db", "block")
    assert new.get("policy.services") == {} and new.get("snmp.targets") == []
    assert new.get("collector.listen") == cfg.get("collector.listen")
    assert new["classify"]["internal"] is not cfg["classify"]["internal"]
    with pytest.raises(ConfigError, match=r"^collector.refresh_time: -1: out of range"):
        cfg.replaced({"collector.refresh_time": -1})
    with pytest.raises(ConfigError, match=r"^collector.refresh: unknown key"):
        cfg.replaced({"collector.refresh": 1})
    with pytest.raises(ConfigError, match=r"^colector: unknown section"):
        cfg.replaced({"colector.refresh_time": 1})


def with_examples_uncommented() -> str:
    """The example file with its commented-out keys and tables switched on."""
    return re.sub(r"(?m)^# ((?:\[\[?[\w.]+\]\]?|\"?[\w.]+\"? = ).*)$", r"\1", EXAMPLE.read_text())


def test_a_checked_config_checks_again_to_itself(tmp_path):
    """What `replaced` relies on: every check accepts its own output unchanged."""
    import tomllib

    for raw in ({}, tomllib.loads(EXAMPLE.read_text()), tomllib.loads(with_examples_uncommented()),
                tomllib.loads(f'[metrics]\nlisten = ""\n{V2}address = "[2001:DB8::1]:1161"\n'
                              f'[[snmp.targets]]\nexporter = "2001:db8::2"\nversion = "3"\nuser = "u"\n'
                              f'auth_protocol = "SHA-256"\nauth_key = "12345678"\n')):
        cfg = config.validate(raw)
        assert config.validate(cfg.values).values == cfg.values
        assert cfg.replaced({}).values == cfg.values


def test_a_loaded_config_is_never_written_replaced_checks_and_copies():
    cfg = config.validate({})
    assert not hasattr(cfg, "set")
    new = cfg.replaced({"collector.refresh_time": "30s"})
    assert new.get("collector.refresh_time") == 30.0 and cfg.get("collector.refresh_time") == 60.0
    with pytest.raises(ConfigError, match="^store.path: 3: expected a string"):
        cfg.replaced({"store.path": 3})


# --- the shipped example ----------------------------------------------------------------

def test_example_with_every_commented_key_switched_on_is_valid(tmp_path):
    env = {"IMFLOW_SNMP_COMMUNITY": "public", "IMFLOW_SNMP_AUTH": "auth-key-1", "IMFLOW_SNMP_PRIV": "priv-key-1"}
    text = with_examples_uncommented()
    assert "\n[snmp]\n" in text and "[[snmp.targets]]" in text and "[[classify.service]]" in text
    p = check(tmp_path, text, **env)
    assert p.returncode == 0, p.stderr


def test_example_sets_defaults_only():
    """Its uncommented values are the schema's defaults ("what is left out takes the default
    shown here"), apart from the few it shows filled in."""
    import tomllib

    raw = tomllib.loads(EXAMPLE.read_text())
    cfg, defaults = config.validate(raw), config.validate({})
    differs = {f"{s}.{k}" for s, keys in raw.items() for k in keys if cfg.get(f"{s}.{k}") != defaults.get(f"{s}.{k}")}
    assert differs == {"store.path", "metrics.listen"}  # exporters.allow stays commented: every sender


@pytest.mark.parametrize("given, means", [("9109", "127.0.0.1:9109"), (":9109", "127.0.0.1:9109"),
                                          ("0.0.0.0:9109", "0.0.0.0:9109"), ("[::1]:9109", "[::1]:9109")])
def test_a_bare_metrics_port_in_the_file_is_loopback_as_on_the_command_line(given, means):
    assert config.validate({"metrics": {"listen": given}}).get("metrics.listen") == means
