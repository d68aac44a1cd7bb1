"""A store written by the store's own writer, with recent traffic (so the minute table answers),
a config that points at it, and `imflow` run as a subprocess from a directory that holds no
./imflow.db. Expected figures are summed here from the rows, independently of the queries."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from collector.store import BinRow, IfRow, Store

REPO = Path(__file__).resolve().parents[2]
HOUR = 3600
NOW = int(time.time())
BASE = NOW - NOW % HOUR - 3 * HOUR  # three whole hours ago: the data spans four hour buckets
HOSTS = ["10.1.2.15", "10.1.5.33", "fd00::5", ""]
SERVICES = [("bittorrent", "p2p"), ("msn", "im"), ("sip", "voip"), ("other", "other")]
# The ingest-time verdict: the collector ran with no policy, except that sip from 10.1.5.33 was
# recorded as a violation under an older policy (today sip is only monitored).
OLD_VIOLATION = ("10.1.5.33", "sip")
POLICY = """\
[policy]
default = "monitor"
[policy.categories]
p2p = "block"
[policy.services]
msn = "block"
[[policy.exceptions]]
service = "bittorrent"
hosts = ["10.1.2.0/24"]
action = "allow"
"""
HOST_MAP = """\
[[host]]
match = "10.1.2.15"
name = "build-server-3"
owner = "release team"
"""


def make_rows() -> list[BinRow]:
    rows = []
    for h, host in enumerate(HOSTS):
        for s, (sid, category) in enumerate(SERVICES):
            for k in range(0, 200, 7 + h + s):  # minutes after BASE, under 3 h 20 min
                nbytes = 1000 * (h + 1) * (s + 1) + 37 * k
                rows.append(BinRow(BASE + 60 * k, "192.0.2.1" if k % 2 else "2001:db8::1", sid, category,
                                   host, nbytes, 1 + k % 9, 1 + k % 3,
                                   violation=(host, sid) == OLD_VIOLATION))
    return rows


ROWS = make_rows()


def if_rows() -> list[IfRow]:
    """Each flow's traffic in on interface 1 and out on interface 2, as the aggregator keeps it."""
    out = []
    for r in ROWS:
        for if_index, direction in ((1, "in"), (2, "out")):
            out.append(IfRow(r.bin, r.exporter, if_index, f"ge-0/0/{if_index}", direction, r.service,
                             r.category, r.bytes, r.packets, r.flows))
    return out


def sums(rows, key) -> dict:
    """key(row) -> Counter of bytes, packets, flows."""
    out: dict = {}
    for r in rows:
        c = out.setdefault(key(r), Counter())
        c.update({"bytes": r.bytes, "packets": r.packets, "flows": r.flows})
    return out


def write_store(path: Path, rows=ROWS, interface_rows=()) -> Path:
    async def go():
        store = Store(str(path))
        await store.start()
        await store.write(rows, list(interface_rows))
        await store.stop()
    asyncio.run(go())
    return path


def imflow(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith("IMFLOW_")}
    full["PYTHONPATH"] = str(REPO) + os.pathsep + full.get("PYTHONPATH", "")
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "collector", *args], capture_output=True, text=True,
                          cwd=cwd, env=full, timeout=120)


@pytest.fixture(scope="session")
def site(tmp_path_factory):
    """A server's layout: /var/lib-like database, /etc-like config naming it, and an empty
    working directory to run the commands from."""
    root = tmp_path_factory.mktemp("site")
    (root / "var").mkdir()
    (root / "etc").mkdir()
    (root / "work").mkdir()
    db = write_store(root / "var" / "imflow.db", interface_rows=if_rows())
    (root / "etc" / "hosts.toml").write_text(HOST_MAP)
    cfg = root / "etc" / "imflow.toml"
    hosts = root / "etc" / "hosts.toml"
    cfg.write_text(f'[store]\npath = "{db}"\n\n'
                   + POLICY.replace("[policy]\n", f'[policy]\nhosts_file = "{hosts}"\n', 1))
    return {"root": root, "db": db, "config": cfg, "cwd": root / "work"}
