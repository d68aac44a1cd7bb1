"""A real imflow database for the web page tests (the report tests' week of office traffic,
written through Store, plus per-interface rows and rows whose names are hostile), and
`imflow web` itself, started as the console script on a free loopback port and stopped by pid."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from collector.store import BinRow, IfRow, Store
from collector.store.rows import AuditRow
from tests.report.conftest import END, NOW, POLICY, START, make_rows  # noqa: F401  (re-exported)
from tests.web.browser import Browser

# Outside text that reaches the page: interface names come from SNMP agents and exporters'
# options data; a service id or category the catalogue no longer knows is shown as stored.
HOSTILE_IF = '<script>alert("if")</script>\x1b[2J\u202eevil'
HOSTILE_SERVICE = "=HYPERLINK(\"http://x\")<b>svc</b>\u202e"
HOSTILE_CATEGORY = "@SUM(1)<i>cat</i>"
IF_NAMES = {1: "Gi0/0", 2: "Gi0/1", 3: HOSTILE_IF}


def if_rows(rows: list[BinRow], names: dict[int, str] = IF_NAMES) -> list[IfRow]:
    """Each flow row in on one interface and out on another, as an exporter reports it."""
    out = []
    for i, r in enumerate(rows):
        a, b = (1, 2) if i % 3 else (3, 1)
        for index, direction in ((a, "in"), (b, "out")):
            out.append(IfRow(r.bin, r.exporter, index, names[index], direction, r.service, r.category,
                             r.bytes, r.packets, r.flows))
    return out


def hostile_rows() -> list[BinRow]:
    t = START + 86400
    return [BinRow(t, "192.0.2.1", HOSTILE_SERVICE, HOSTILE_CATEGORY, "10.66.6.6", 123_456, 100, 3),
            BinRow(t + 60, "192.0.2.1", HOSTILE_SERVICE, HOSTILE_CATEGORY, "", 1_000, 10, 1)]


def audit_rows() -> list[AuditRow]:
    """Single BitTorrent flows of 10.1.2.15 (and a few of another host) for the audit log."""
    import random

    rng = random.Random(22)
    out = []
    for i in range(140):
        host = "10.1.2.15" if i % 7 else "10.1.2.20"
        t = START + 3600 + i * 1800 + rng.random()
        out.append(AuditRow(round(t, 3), round(t + rng.uniform(1, 300), 3), "192.0.2.1", host,
                            f"198.51.100.{i % 200 + 1}", 40000 + i, 6881, 6, "bittorrent", "p2p",
                            rng.randint(100, 10**7), rng.randint(1, 5000), 1, 2, "out"))
    return out


@pytest.fixture(scope="session")
def web_rows():
    from collector.classify.catalogue import load_catalogue
    from collector.policy import parse_policy

    return make_rows(parse_policy(POLICY, load_catalogue())) + hostile_rows()


@pytest.fixture(scope="session")
def web_db(tmp_path_factory, web_rows):
    path = str(tmp_path_factory.mktemp("web") / "imflow.db")

    async def write():
        store = Store(path, clock=lambda: NOW)
        await store.start()
        await store.write(web_rows, if_rows(web_rows), audit_rows())
        await store.stop()
    asyncio.run(write())
    return path


def write_config(path: Path, extra: str = "") -> Path:
    lines = ['[policy]', 'categories = { p2p = "block" }', 'services = { msn = "block" }',
             '[[policy.exceptions]]', 'service = "bittorrent"', 'hosts = ["10.1.2.0/24"]', 'action = "allow"',
             'note = "release mirrors"']
    path.write_text("\n".join(lines) + "\n" + extra)
    return path


class Server:
    """`imflow web` as a subprocess; `url` once it says where it serves."""

    def __init__(self, db: str | None, config: Path, *extra: str, env: dict | None = None):
        self.proc = subprocess.Popen([sys.executable, "-m", "collector", "web", *(["--db", db] if db else []),
                                      "--config", str(config),
                                      "--listen", "127.0.0.1:0", *extra], stderr=subprocess.PIPE, text=True,
                                     env={**os.environ, **(env or {})}, start_new_session=True)
        deadline = time.monotonic() + 30
        self.log: list[str] = []
        self.url = ""
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            self.log.append(line)
            m = re.search(r"serving (http://\S+/)", line)
            if m:
                self.url = m.group(1).rstrip("/")
                return
        self.stop()
        raise AssertionError("imflow web did not start: " + "".join(self.log))

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode


@pytest.fixture(scope="session")
def server(web_db, tmp_path_factory):
    cfg = write_config(tmp_path_factory.mktemp("webcfg") / "imflow.toml")
    srv = Server(web_db, cfg)
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def browser(tmp_path_factory):
    b = Browser(tmp_path_factory.mktemp("chromium"))
    yield b
    b.close()
