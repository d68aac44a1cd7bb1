"""Item 6 of issue 17: times in UTC or with an explicit offset; the per-interface double count
said out loud, and why an interface answer is empty; `decode` of a capture that holds no flow
export; an exception without `action`."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tests.cli.conftest import BASE, ROWS, imflow, sums, write_store

FIXTURES = Path(__file__).parents[1] / "fixtures"


@pytest.mark.parametrize("command", ["top", "violations", "report"])
def test_time_flags_say_utc(site, command):
    p = imflow(command, "--help", cwd=site["cwd"])
    text = " ".join(p.stdout.split())
    assert "--from TIME" in text and "--until TIME" in text
    assert "UTC unless it gives an offset" in text


def test_from_with_an_offset_is_the_same_instant(site):
    start = BASE + 3600
    local = datetime.fromtimestamp(start, timezone(timedelta(hours=2))).isoformat()  # ...+02:00
    utc = datetime.fromtimestamp(start, timezone.utc).strftime("%Y-%m-%d %H:%M")
    answers = []
    for text in (local, utc, str(start)):
        p = imflow("top", "--config", str(site["config"]), "--from", text, "--format", "json", cwd=site["cwd"])
        assert p.returncode == 0, p.stderr
        answers.append(json.loads(p.stdout))
    want = sums([r for r in ROWS if r.bin >= start], lambda r: r.service)
    assert answers[0] == answers[1] == answers[2]
    assert {r["service"]: r["bytes"] for r in answers[0]} == {k: c["bytes"] for k, c in want.items()}


def test_interface_direction_says_each_flow_counts_twice(site):
    p = imflow("top", "--config", str(site["config"]), "--since", "all", "--by", "interface,direction",
               "--format", "json", cwd=site["cwd"])
    assert p.returncode == 0, p.stderr
    got = {(r["interface"], r["direction"]): r["bytes"] for r in json.loads(p.stdout)}
    total = sum(r.bytes for r in ROWS)
    assert got == {("ge-0/0/1", "in"): total, ("ge-0/0/2", "out"): total}
    assert "twice" in p.stderr  # a note, outside the JSON
    assert "twice" in imflow("top", "--help", cwd=site["cwd"]).stdout


def test_interface_answer_empty_because_of_ifindex_zero(tmp_path):
    db = write_store(tmp_path / "noif.db")  # traffic, but no interface rollups
    p = imflow("top", "--db", str(db), "--since", "all", "--by", "interface", cwd=tmp_path)
    assert p.returncode == 0
    assert "ifIndex 0" in p.stderr and "imflow decode" in p.stderr


def test_decode_of_a_capture_without_flow_export(tmp_path):
    # sessions.pcap is the traffic softflowd is fed with: TCP and UDP, no NetFlow at all
    p = imflow("decode", str(FIXTURES / "sessions.pcap"), cwd=tmp_path)
    assert p.returncode == 1
    assert "not a capture of NetFlow/IPFIX/sFlow export" in p.stderr
    assert p.stdout == ""


def test_check_config_refuses_an_exception_without_action(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[[policy.exceptions]]\nservice = "bittorrent"\nhosts = ["10.1.2.0/24"]\n')
    p = imflow("check-config", str(cfg), cwd=tmp_path)
    assert p.returncode == 2
    assert "policy.exceptions[0].action" in p.stderr and "allow, monitor or block" in p.stderr
