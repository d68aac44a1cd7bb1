"""Memory and flush time of open bins (issue: the daemon).

    python bench/bins_memory.py [--keys 100000]

Feeds classified batches with `--keys` distinct (internal host, service) pairs into the
daemon's Aggregator, then reports the process RSS growth while they sit in open bins (target
<= 200 MiB for 100k keys) and the time to flush them into a fresh SQLite store (drain + one
transaction; target < 1 s), median of 3 flushes.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from collector.aggregate import Aggregator  # noqa: E402
from collector.classify.classifier import Classified  # noqa: E402
from collector.netflow.batch import ADDR, FlowBatch, V4_MAPPED  # noqa: E402
from collector.store import Store  # noqa: E402
from collector.daemon.tuning import tune_malloc  # noqa: E402


def rss_mib() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def fill(agg: Aggregator, keys: int, services: int, now: float) -> None:
    hosts = keys // services
    n = 50_000
    done = 0
    while done < keys:
        idx = np.arange(done, min(done + n, keys))
        b = FlowBatch.empty(len(idx))
        b.bytes[:] = 1500
        b.packets[:] = 1
        b.end[:] = now
        host = np.zeros(len(idx), ADDR)
        host["lo"] = V4_MAPPED | (np.uint64(0x0A000000) + (idx // services).astype(np.uint64))
        cls = Classified((1 + idx % services).astype(np.uint16), host, np.ones(len(idx), bool),
                         np.ones(len(idx), bool))
        agg.add(b, cls, np.zeros(len(idx), np.uint32), ["192.0.2.1"], now)
        done += len(idx)
    assert agg.open_bins() == keys, (agg.open_bins(), keys, hosts)


async def flush(agg: Aggregator, path: str) -> float:
    store = Store(path)
    await store.start()
    t0 = time.perf_counter()
    await store.write(agg.drain_columns(), agg.drain_interface_columns())  # as the daemon's flush hands them
    dt = time.perf_counter() - t0
    await store.stop()
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keys", type=int, default=100_000)
    args = ap.parse_args()
    tune_malloc()
    services = [f"s{i}" for i in range(21)]
    now = time.time()
    times, held_first = [], None
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(3):
            agg = Aggregator(["other"] + services, ["other"] + ["im"] * len(services))
            before = rss_mib()
            fill(agg, args.keys, len(services), now)
            held = rss_mib() - before
            held_first = held if held_first is None else held_first  # later runs reuse freed pages
            times.append(asyncio.run(flush(agg, f"{tmp}/bench{run}.db")))
            print(f"run {run + 1}: {args.keys:,} open (host, service) bins, RSS +{held:.0f} MiB "
                  f"(process {rss_mib():.0f} MiB), flush {times[-1]:.2f} s")
    print(f"median flush of {args.keys:,} bins: {statistics.median(times):.2f} s "
          f"(target < 1 s); RSS of the open bins (first run): {held_first:.0f} MiB (target <= 200 MiB)")


if __name__ == "__main__":
    main()
