"""Helpers for the store tests: running coroutines, summing rows, and real file-system faults
(tmpfs and loop-mounted ext4 that the tests mount themselves, as root)."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sqlite3
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from collector.store import BinRow

WIDTHS = {"minute": 60, "hour": 3600, "day": 86400}
TABLES = {"minute": "rollup_1m", "hour": "rollup_1h", "day": "rollup_1d"}
T0 = 1_767_225_600  # 2026-01-01 00:00 UTC, a day boundary


def run(coro):
    return asyncio.run(coro)


def row(bin_, host="10.0.0.1", service="msn", nbytes=100, packets=2, flows=1,
        exporter="192.0.2.1", category="im") -> BinRow:
    return BinRow(bin_, exporter, service, category, host, nbytes, packets, flows)


def expected(rows, width: int) -> dict[tuple, tuple[int, int, int]]:
    """(bin floored to width, exporter, service, host) → (bytes, packets, flows), by plain dicts."""
    sums: dict[tuple, Counter] = {}
    for r in rows:
        key = (r.bin - r.bin % width, r.exporter, r.service, r.host)
        c = sums.setdefault(key, Counter())
        c["bytes"] += r.bytes
        c["packets"] += r.packets
        c["flows"] += r.flows
    return {k: (c["bytes"], c["packets"], c["flows"]) for k, c in sums.items()}


def table_contents(path, resolution: str) -> dict[tuple, tuple[int, int, int]]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return {(b, e, s, h): (nb, p, f) for b, e, s, h, nb, p, f in conn.execute(
            f"SELECT bin, exporter, service, host, bytes, packets, flows FROM {TABLES[resolution]}")}


def totals(path) -> dict[str, tuple[int, int, int]]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return {res: conn.execute(f"SELECT total(bytes), total(packets), total(flows) FROM {t}").fetchone()
                for res, t in TABLES.items()}


def _sh(*cmd) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


@contextlib.contextmanager
def tmpfs(where: Path, size: str = "8m"):
    """A tmpfs of `size` mounted at `where` (skips the test where mounting is not allowed)."""
    where.mkdir(parents=True, exist_ok=True)
    done = _sh("mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(where))
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield where
    finally:
        if _sh("umount", str(where)).returncode:
            _sh("umount", "-l", str(where))


def remount(where: Path, mode: str) -> None:
    done = _sh("mount", "-o", f"remount,{mode}", str(where))
    assert done.returncode == 0, done.stderr


@contextlib.contextmanager
def ext4(where: Path, size_mb: int = 16):
    """An ext4 file system on a loop device at `where` (skips where that is not possible)."""
    if not (shutil.which("mkfs.ext4") and shutil.which("chattr")):
        pytest.skip("mkfs.ext4 and chattr (e2fsprogs) are needed for the ext4 fault tests")
    image = where.with_suffix(".img")
    with open(image, "wb") as f:
        f.truncate(size_mb << 20)
    made = _sh("mkfs.ext4", "-q", "-F", str(image))
    if made.returncode:
        pytest.skip(f"mkfs.ext4 failed: {made.stderr.strip()}")
    where.mkdir(parents=True, exist_ok=True)
    done = _sh("mount", "-o", "loop", str(image), str(where))
    if done.returncode:
        pytest.skip(f"cannot loop-mount an ext4 image here: {done.stderr.strip()}")
    try:
        yield where
    finally:
        for p in where.iterdir():
            _sh("chattr", "-i", str(p))
        if _sh("umount", str(where)).returncode:
            _sh("umount", "-l", str(where))
        image.unlink()


def chattr(flag: str, *paths) -> None:
    for p in paths:
        done = _sh("chattr", flag, str(p))
        if done.returncode:
            pytest.skip(f"chattr {flag} {p} failed: {done.stderr.strip()}")
