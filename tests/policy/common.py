"""Helpers shared by the policy and firewall tests."""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

import pytest

from collector.classify.catalogue import Catalogue, build_catalogue
from collector.policy import Policy, parse_policy

GOLDEN = Path(__file__).parent / "golden"
HEADER = {"source": "/etc/imflow/imflow.toml", "generated": "2026-12-02T09:00:00Z"}
POLICIES = ("issue", "full")


def fixed_catalogue() -> Catalogue:
    with open(GOLDEN / "catalogue.toml", "rb") as f:
        return build_catalogue(tomllib.load(f))


def policy_file(name: str, catalogue: Catalogue) -> Policy:
    with open(GOLDEN / f"{name}.toml", "rb") as f:
        return parse_policy(tomllib.load(f)["policy"], catalogue)


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} not installed (Debian packages nftables, iptables)")
    return path
