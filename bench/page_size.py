"""What SQLite's page size does to the two writers sharing the database (issue 18): the audit
log's chunks and the rollups. Both measured as CPU time of the process, all threads (the
store's SQLite thread and its checkpointer), on a new database per page size, alternating:

- `chunks`: the encoded chunks of the ingest harness's v9 traffic (bench/ingest/datagrams.py,
  27 % of the flows watched) written by `Store.write` with the background checkpoint awaited;
  best of 4 writes per database, CPU per MiB of chunks and per flow of all the traffic.
- `hour`: a database holding --hours hours of --keys rollup keys (one flush an hour), then the
  first flush of each of the next 4 hours: CPU and octets written (/proc/self/io wchar: the WAL
  and the checkpoint) per flush. A new hour adds entries all over the hour and day tables' host
  indexes, the rollups' worst case for large pages; other flushes write in key order.

    python bench/page_size.py [--sizes 4096,16384,65536] [--reps 2] [--keys 20000] [--hours 72]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE / "ingest"))

import datagrams as D  # noqa: E402
from store_bench import make_rows  # noqa: E402

from collector import config as C  # noqa: E402
from collector.daemon.pipeline import Pipeline  # noqa: E402
from collector.store.db import Store  # noqa: E402


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _written() -> int:
    with open("/proc/self/io") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("wchar"))


async def _flush(store: Store, *args) -> None:
    await store.write(*args)
    if store._checkpoint_task is not None:  # the background checkpoint's CPU is the write's too
        await store._checkpoint_task


def chunks_of_traffic(flows: int):
    built = D.build("v9", 200_000)
    pipe = Pipeline(C.validate({}), clock=time.time)
    dgrams = [(d, ("127.0.0.1", 9995), 0.0) for d in built.datagrams]
    fed = 0
    while fed < flows:
        for i in range(0, len(dgrams), 2048):
            pipe.process(dgrams[i:i + 2048])
        fed += sum(built.records)
    pipe.drain(time.time(), lambda *_: "")
    return pipe.drain_audit(), fed


async def chunks_cost(chunks, page_size: int, workdir: str) -> float:
    store = Store(os.path.join(workdir, f"chunks-{page_size}-{time.monotonic_ns()}.db"), audit_max_rows=10**9,
                  page_size=page_size)
    await store.start()
    best = float("inf")
    for _ in range(4):
        c = _cpu()
        await _flush(store, [], [], chunks)
        best = min(best, _cpu() - c)
    await store.stop()
    return best


async def hour_cost(page_size: int, keys: int, hours: int, workdir: str, new_hours: int = 4) -> tuple[float, float]:
    start = 1_700_000_000 - 1_700_000_000 % 86400
    store = Store(os.path.join(workdir, f"hours-{page_size}-{time.monotonic_ns()}.db"), page_size=page_size,
                  clock=lambda: start + 3600 * (hours + new_hours))
    await store.start()
    for h in range(hours):
        await _flush(store, make_rows(keys, start + 3600 * h, h))
    rows = [make_rows(keys, start + 3600 * h, h) for h in range(hours, hours + new_hours)]
    c, w = _cpu(), _written()
    for r in rows:
        await _flush(store, r)
    c, w = _cpu() - c, _written() - w
    await store.stop()
    return c / new_hours, w / new_hours


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="4096,16384,65536", help="page sizes, comma-separated")
    ap.add_argument("--reps", type=int, default=2, help="rounds over the sizes (best of them)")
    ap.add_argument("--flows", type=int, default=1_000_000, help="traffic whose watched flows make the chunks")
    ap.add_argument("--keys", type=int, default=20_000, help="rollup keys a flush (hour test)")
    ap.add_argument("--hours", type=int, default=72, help="hours held before the measured flushes (0: skip)")
    ap.add_argument("--dir", default=None, help="where the databases go (default: a temp dir)")
    a = ap.parse_args(argv)
    sizes = [int(s) for s in a.sizes.split(",")]
    chunks, fed = chunks_of_traffic(a.flows)
    mib = sum(len(c[3]) for c in chunks.chunks) / 2**20
    print(f"{len(chunks):,} watched flows of {fed:,}: {mib:.1f} MiB of chunks")
    best: dict[int, list[float]] = {}
    with tempfile.TemporaryDirectory(dir=a.dir) as tmp:
        for _ in range(a.reps):
            for ps in sizes:
                cpu = asyncio.run(chunks_cost(chunks, ps, tmp))
                hour = asyncio.run(hour_cost(ps, a.keys, a.hours, tmp)) if a.hours else (0.0, 0.0)
                b = best.setdefault(ps, [float("inf")] * 3)
                best[ps] = [min(b[0], cpu), min(b[1], hour[0]), min(b[2], hour[1])]
                print(f"page {ps:>6}: chunks {cpu / mib * 1000:.2f} ms/MiB ({cpu / fed * 1e9:.1f} ns a flow);"
                      f" new-hour flush of {a.keys:,} keys on {a.hours} h: {hour[0] * 1000:.0f} ms CPU,"
                      f" {hour[1] / 2**20:.1f} MiB written", flush=True)
    print("best: " + "; ".join(f"{ps} chunks {b[0] / mib * 1000:.2f} ms/MiB, hour {b[1] * 1000:.0f} ms"
                               f" {b[2] / 2**20:.1f} MiB" for ps, b in best.items()) + f"; load {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
