"""Store flush benchmark: how long one flush of N distinct (host, service) rows takes.

Prints, for a fresh database: the first flush (every key new in all three rollups), the next
minute's flush of the same keys (new minute rows, hour and day rows updated), rows/s, and the
database size. Rows arrive in random order, the worst case for the B-trees. Wall time is what
the daemon waits; CPU time (this process) is steadier on a machine shared with other work.

    python bench/store_bench.py [--rows 100000] [--repeat 5] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
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


async def timed(coro) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    await coro
    return time.perf_counter() - wall, time.process_time() - cpu


async def one_run(directory: str, n: int) -> tuple[tuple[float, float], tuple[float, float], int]:
    path = os.path.join(directory, "bench.db")
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    start = 1_700_000_000 - 1_700_000_000 % 86400
    first, second = make_rows(n, start, 1), make_rows(n, start + 60, 2)
    store = Store(path)
    await store.start()
    cold = await timed(store.write(first))
    warm = await timed(store.write(second))
    await store.stop()
    return cold, warm, os.path.getsize(path)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--dir", default=None, help="where to put the database (default: a temp dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as directory:
        runs = [await one_run(directory, args.rows) for _ in range(args.repeat)]
    print(f"store flush of {args.rows} distinct (host, service) rows, {args.repeat} runs, wall (cpu):")
    for label, i in (("first flush (all keys new)", 0), ("next minute (hour/day updated)", 1)):
        wall = statistics.median(r[i][0] for r in runs)
        cpu = statistics.median(r[i][1] for r in runs)
        best = min(r[i][0] for r in runs)
        print(f"  {label:32s} median {wall:.3f} s ({cpu:.3f} s)  best {best:.3f} s"
              f"  {args.rows / wall:,.0f} rows/s")
    size = runs[-1][2]
    print(f"  database after both flushes      {size / 1e6:.1f} MB ({size / (2 * args.rows):.0f} bytes per minute row)")


if __name__ == "__main__":
    asyncio.run(main())
