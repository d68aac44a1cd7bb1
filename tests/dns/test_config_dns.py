"""[dns] and classify.asn_prefixes: a bad value is one line naming the key, exit 2 (imflow
check-config refuses what a start would)."""

from __future__ import annotations

import subprocess
import sys

import pytest


def check(tmp_path, text: str) -> subprocess.CompletedProcess:
    cfg = tmp_path / "imflow.toml"
    cfg.write_text(text)
    return subprocess.run([sys.executable, "-m", "collector", "check-config", str(cfg)],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("value", ['"0.0.0.0:6000"', '"192.0.2.1:6000"', '"127.0.0.1:0"', '"unix:relative.sock"',
                                   '"localhost:6000"', '"tcp://127.0.0.1:6000"', "6000"])
def test_bad_dnstap_endpoint(tmp_path, value):
    p = check(tmp_path, f"[dns]\ndnstap = {value}\n")
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and "dns.dnstap" in p.stderr, p.stderr


@pytest.mark.parametrize("text, key", [("[dns]\nmax_addresses = 0\n", "dns.max_addresses"),
                                       ('[dns]\ngrace = "2d"\n', "dns.grace"),
                                       ("[dns]\nfoo = 1\n", "dns.foo")])
def test_bad_dns_keys(tmp_path, text, key):
    p = check(tmp_path, text)
    assert p.returncode == 2 and key in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_good_dns_section(tmp_path):
    p = check(tmp_path, '[dns]\ndnstap = "[::1]:6000"\nmax_addresses = 5000\ngrace = "60s"\n')
    assert p.returncode == 0, p.stderr


@pytest.mark.parametrize("content", ["64500 203.0.113.0/24\n", "# date: 2026-12-01\n64500 not-a-net\n"])
def test_bad_asn_snapshot(tmp_path, content):
    snap = tmp_path / "asn.txt"
    snap.write_text(content)
    p = check(tmp_path, f'[classify]\nasn_prefixes = "{snap}"\n')
    assert p.returncode == 2 and "classify.asn_prefixes" in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_missing_asn_snapshot(tmp_path):
    p = check(tmp_path, f'[classify]\nasn_prefixes = "{tmp_path}/nope.txt"\n')
    assert p.returncode == 2 and "classify.asn_prefixes" in p.stderr
