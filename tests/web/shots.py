"""The screenshots in docs/web.md: `python -m tests.web.shots docs/web` writes them from the
tests' database (without its hostile rows) through `imflow web` and headless Chromium."""

from __future__ import annotations

import asyncio
import struct
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np

from collector.classify.catalogue import load_catalogue
from collector.policy import parse_policy
from collector.store import Store
from tests.report import png
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
         "exporters": ("/exporters", 1280, 1100), "hosts": ("/hosts", 1280, 700),
         "services": ("/services", 1280, 700), "report": ("/report", 1280, 1000),
         "overview-phone": ("/", 390, 1400)}


def indexed(pixels: np.ndarray) -> bytes:
    """An 8-bit palette PNG (RFC 2083 colour type 3): the colours of flat areas (runs of 3
    equal pixels: backgrounds, bars, swatches, however small) first, then the most used; every
    other colour (anti-aliased edges, about 1 % of the pixels) drawn in its nearest one. A third
    of the size of the RGB screenshot, for the docs."""
    rgb = pixels[..., :3].astype(np.int32)
    flat = rgb[..., 0] << 16 | rgb[..., 1] << 8 | rgb[..., 2]
    colours, inverse, counts = np.unique(flat, return_inverse=True, return_counts=True)
    runs = (flat[:, :-2] == flat[:, 1:-1]) & (flat[:, 1:-1] == flat[:, 2:])
    in_runs = np.isin(colours, np.unique(flat[:, 1:-1][runs]))
    palette = colours[np.lexsort((-counts, ~in_runs))[:256]]
    split = np.stack([colours >> 16, colours >> 8 & 255, colours & 255], axis=1)
    psplit = np.stack([palette >> 16, palette >> 8 & 255, palette & 255], axis=1)
    nearest = ((split[:, None, :] - psplit[None, :, :]) ** 2).sum(axis=2).argmin(axis=1)
    index = nearest[inverse.reshape(flat.shape)].astype(np.uint8)
    height, width = index.shape
    raw = b"".join(b"\0" + row.tobytes() for row in index)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return (png.SIGNATURE + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 3, 0, 0, 0))
            + chunk(b"PLTE", psplit.astype(np.uint8).tobytes()) + chunk(b"IDAT", zlib.compress(raw, 9))
            + chunk(b"IEND", b""))


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
                shot = browser.screenshot(Path(tmp) / f"{name}.png", full=False)
                (out / f"{name}.png").write_bytes(indexed(png.read(shot)))
                print(out / f"{name}.png", (out / f"{name}.png").stat().st_size)
        finally:
            browser.close()
            server.stop()


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/web"))
