"""Store flush benchmark: how long one flush of N distinct (host, service) rows takes.

Prints, for a fresh database: the first flush (every key new in all three rollups), the next
minute's flush of the same keys (new minute rows, hour and day rows updated), rows/s, and the
database size. Rows arrive in random order, the worst case for the B-trees. Wall time is what
the daemon waits; CPU time (this process) is steadier on a machine shared with other work.
Each run also times a reference on the same rows: binding them into an in-memory table with
no key, the least any SQLite write of these rows costs from Python; the ratio to it is steadier
than seconds on a busy machine. Flushes are --pause seconds apart (the daemon's refresh_time is 60 s), which leaves the
store's background WAL checkpoint time to finish, as it has in the daemon.

    python bench/store_bench.py [--rows 100000] [--repeat 5] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sqlite3
import statistics
import tempfile
import time

from collector.store import BinRow, Store

SERVICES = [f"svc{i:02d}" for i in range(40)]


def make_rows(n: int, bin_: int, seed: int) -> list[BinRow]:
    rows = []
    for i in range(n):
        h = i // len(SERVICES)
        rows.append(BinRow(bin_, "192.0.2.1", SERVICES[i % len(SERVICES)], "p2p",
                           f"10.{h >> 16 & 255}.{h >> 8 & 255}.{h & 255}", 1500 * (i % 97 + 1), i % 97 + 1, 1))
    random.Random(seed).shuffle(rows)
    return rows


def reference(rows: list[BinRow]) -> float:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.execute("CREATE TABLE t (bin, exporter, service, category, host, bytes, packets, flows)")
    t = time.perf_counter()
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO t VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                     [(r.bin, r.exporter, r.service, r.category, r.host, r.bytes, r.packets, r.flows) for r in rows])
    conn.execute("COMMIT")
    elapsed = time.perf_counter() - t
    conn.close()
    return elapsed


async def timed(coro) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    await coro
    return time.perf_counter() - wall, time.process_time() - cpu


async def one_run(directory: str, n: int, pause: float):
    path = os.path.join(directory, "bench.db")
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    start = 1_700_000_000 - 1_700_000_000 % 86400
    first, second = make_rows(n, start, 1), make_rows(n, start + 60, 2)
    store = Store(path)
    await store.start()
    ref = reference(first)
    cold = await timed(store.write(first))
    await asyncio.sleep(pause)
    warm = await timed(store.write(second))
    await store.stop()
    return cold, warm, os.path.getsize(path), ref


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--pause", type=float, default=2.0, help="seconds between the two flushes")
    parser.add_argument("--dir", default=None, help="where to put the database (default: a temp dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as directory:
        runs = [await one_run(directory, args.rows, args.pause) for _ in range(args.repeat)]
    print(f"store flush of {args.rows} distinct (host, service) rows, {args.repeat} runs, wall (cpu):")
    for label, i in (("first flush (all keys new)", 0), ("next minute (hour/day updated)", 1)):
        wall = statistics.median(r[i][0] for r in runs)
        cpu = statistics.median(r[i][1] for r in runs)  # includes the background checkpoint
        best = min(r[i][0] for r in runs)
        ratio = statistics.median(r[i][0] / r[3] for r in runs)
        print(f"  {label:32s} median {wall:.3f} s ({cpu:.3f} s)  best {best:.3f} s"
              f"  {args.rows / wall:,.0f} rows/s  {ratio:.1f}x reference")
    print(f"  reference (bind rows, no key)    median {statistics.median(r[3] for r in runs):.3f} s")
    size = runs[-1][2]
    print(f"  database after both flushes      {size / 1e6:.1f} MB ({size / (2 * args.rows):.0f} bytes per minute row)")


if __name__ == "__main__":
    asyncio.run(main())
