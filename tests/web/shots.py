"""The screenshots in docs/web.md: `python -m tests.web.shots docs/web` writes them from the
tests' database (without its hostile rows) through `imflow web` and headless Chromium."""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from collector.classify.catalogue import load_catalogue
from collector.policy import parse_policy
from collector.store import Store
from tests.web.browser import Browser
from tests.web.conftest import (
    NOW,
    POLICY,
    Server,
    audit_rows,
    if_rows,
    make_rows,
    write_config,
)

Q = "?from=2026-01-01&to=2026-01-08"
SHOTS = {"overview": ("/", 1280, 1500), "host": ("/host/10.1.2.15", 1280, 1300),
         "service": ("/service/bittorrent", 1280, 1000), "violations": ("/violations", 1280, 900),
         "exporters": ("/exporters", 1280, 1100), "overview-phone": ("/", 390, 1400)}


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        db = str(Path(tmp) / "imflow.db")
        rows = make_rows(parse_policy(POLICY, load_catalogue()))

        async def write():
            store = Store(db, clock=lambda: NOW)
            await store.start()
            await store.write(rows, if_rows(rows, {1: "Gi0/0", 2: "Gi0/1", 3: "Gi0/2"}), audit_rows())
            await store.stop()
        asyncio.run(write())
        server = Server(db, write_config(Path(tmp) / "imflow.toml"))
        browser = Browser(Path(tmp) / "chromium")
        try:
            for name, (path, width, height) in SHOTS.items():
                browser.size(width, height, mobile=width < 600)
                browser.open(server.url + path + Q)
                browser.screenshot(out / f"{name}.png", full=False)
                print(out / f"{name}.png")
        finally:
            browser.close()
            server.stop()


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/web"))
