"""A real imflow database for the report tests: a week of office traffic written through Store,
with the policy decisions the collector would have recorded."""

from __future__ import annotations

import asyncio
import random

import pytest

from collector.classify.catalogue import load_catalogue
from collector.policy import parse_policy
from collector.store import BinRow, Store

T0 = 1_767_225_600  # 2026-01-01 00:00 UTC
NOW = T0 + 7 * 86400
START, END = NOW - 7 * 86400, NOW
HOSTS = ["10.1.2.15", "10.1.2.20", "10.1.5.33", "10.9.9.9", "fd00::5", ""]
SERVICES = [("msn", "im"), ("xmpp", "im"), ("bittorrent", "p2p"), ("edonkey", "p2p"), ("sip", "voip"),
            ("zoom", "collab"), ("other", "other")]
POLICY = {"categories": {"p2p": "block"}, "services": {"msn": "block"},
          "exceptions": [{"service": "bittorrent", "hosts": ["10.1.2.0/24"], "action": "allow",
                          "note": "release mirrors"}]}
HOST_MAP = """\
[[host]]
match = "10.1.2.15"
name = "build-server-3"
owner = "release team"

[[host]]
match = "10.1.2.0/24"
owner = "engineering"

[[host]]
match = "10.1.5.0/24"
name = "guest wifi"
"""
# not every host uses every service
ABSENT = {("10.1.5.33", "xmpp"), ("10.1.5.33", "bittorrent"), ("10.9.9.9", "zoom"), ("fd00::5", "msn"),
          ("10.1.2.20", "zoom"), ("10.1.2.20", "msn"), ("", "zoom")}
# Recorded as a violation under an earlier policy; today xmpp is only monitored.
OLD_VIOLATION = ("10.9.9.9", "xmpp")


@pytest.fixture(scope="session")
def catalogue():
    return load_catalogue()


@pytest.fixture(scope="session")
def policy(catalogue):
    return parse_policy(POLICY, catalogue)


def make_rows(policy) -> list[BinRow]:
    rng = random.Random(2004)
    rows = []
    for host in HOSTS:
        for sid, category in SERVICES:
            if (host, sid) in ABSENT:
                continue
            blocked = bool(host) and policy.action(sid, host) == "block"
            for _ in range(rng.randint(1, 12)):
                minute = rng.randrange(START // 60 + 30, (END - 3600) // 60)  # inside the period
                scale = 50_000 if category == "other" else 4_000 if category == "p2p" else 300
                packets = rng.randint(1, 400)
                rows.append(BinRow(minute * 60, rng.choice(["192.0.2.1", "2001:db8::1"]), sid, category,
                                   host, packets * rng.randint(60, 1400) + scale * rng.randint(0, 500),
                                   packets, rng.randint(1, 20),
                                   violation=blocked or (host, sid) == OLD_VIOLATION))
    return rows


@pytest.fixture(scope="session")
def rows(policy):
    return make_rows(policy)


@pytest.fixture(scope="session")
def db(tmp_path_factory, rows):
    path = str(tmp_path_factory.mktemp("report") / "imflow.db")

    async def write():
        store = Store(path, clock=lambda: NOW)
        await store.start()
        await store.write(rows)
        await store.stop()
    asyncio.run(write())
    return path


@pytest.fixture(scope="session")
def host_map(tmp_path_factory):
    path = tmp_path_factory.mktemp("names") / "hosts.toml"
    path.write_text(HOST_MAP)
    return str(path)
