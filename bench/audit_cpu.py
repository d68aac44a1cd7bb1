"""What the flow audit log costs in CPU and memory, measured in one process: the ingest
harness's recorded datagrams (bench/ingest/datagrams.py) fed through `Pipeline` and written by
`Store` at a flush every --flush flows (the harness flushes every second: about a million
flows at the loss-free rate), with the audit log on (default categories) and off, alternating.

CPU time is the process's, all threads (`getrusage(RUSAGE_SELF)`: the store's SQLite thread and
its checkpointer included), per flow of all the traffic, best of --reps; a machine shared with
other work disturbs it far less than the loss-free rate. `held` is the largest memory the audit
buffer held before a flush (its own accounting, `AuditBuffer.nbytes`), `peak RSS` the process's
growth over the run of each mode (ru_maxrss only grows: run one mode per process to compare it).
Each run writes a new database with the page size the daemon would give it
(`collector/store/db.py`: 4 KiB; from 2026-12-05 until the segment files, 16 KiB with the
audit log on), or --page-size for both.

    python bench/audit_cpu.py [--version v9] [--flows 2000000] [--flush 1000000] [--reps 3] [--page-size 4096]
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

from collector import config as C  # noqa: E402
from collector.daemon.pipeline import Pipeline  # noqa: E402
from collector.store import db as store_db  # noqa: E402
from collector.store.db import Store  # noqa: E402

BATCH = 2048  # datagrams per pipeline batch (the intake hands on at most 2048 at once: full at these rates)


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _page_kw(audit: bool, page_size: int | None) -> dict:
    """The daemon's page size for a new database (collector/daemon/app.py); older trees: none."""
    if not hasattr(store_db, "PAGE_SIZE"):  # a tree whose Store takes no page size
        return {}
    if page_size:
        return {"page_size": page_size}
    if not hasattr(store_db, "AUDIT_PAGE_SIZE"):  # one page size for both (since the segment files)
        return {}
    return {"page_size": store_db.AUDIT_PAGE_SIZE if audit else store_db.PAGE_SIZE}


async def one(built: D.Built, audit: bool, flows: int, flush: int, workdir: str, page_size: int | None = None) -> dict:
    cfg = C.validate({} if audit else {"audit": {"categories": []}})
    pipe = Pipeline(cfg, clock=time.time)
    db = os.path.join(workdir, f"bench-{'on' if audit else 'off'}-{time.monotonic_ns()}.db")
    store = Store(db, **_page_kw(audit, page_size))
    await store.start()
    dgrams = [(d, ("127.0.0.1", 9995), 0.0) for d in built.datagrams]
    recs = built.records
    fed = since = 0
    held = 0
    flush_cpu = 0.0  # of which in the flushes (drain and Store.write, its threads included)
    i = 0
    c0, t0 = _cpu(), time.perf_counter()
    while fed < flows:
        batch = dgrams[i:i + BATCH]
        if not batch:
            i = 0
            continue
        pipe.process(batch)
        n = sum(recs[i:i + BATCH])
        i += BATCH
        fed += n
        since += n
        if since >= flush or fed >= flows:
            if pipe.audit is not None:
                held = max(held, getattr(pipe.audit, "nbytes", 0))  # (older trees: 0)
            w0 = _cpu()
            rows, if_rows = pipe.drain(time.time(), lambda *_: "")
            await store.write(rows, if_rows, pipe.drain_audit())
            flush_cpu += _cpu() - w0
            since = 0
    await store.stop()
    cpu, wall = _cpu() - c0, time.perf_counter() - t0
    size = os.path.getsize(db)
    folder = db + "-audit"  # the audit log's segment files (schema version 4)
    if os.path.isdir(folder):
        size += sum(e.stat().st_size for e in os.scandir(folder))
    os.unlink(db)
    return {"cpu_us": cpu / fed * 1e6, "flush_us": flush_cpu / fed * 1e6, "wall_us": wall / fed * 1e6, "held_mib": held / 2**20,
            "db_mib": size / 2**20, "kept": pipe.audit.kept if pipe.audit else 0,
            "dropped": pipe.audit.dropped if pipe.audit else 0}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--version", default="v9", choices=("v5", "v9", "ipfix"))
    ap.add_argument("--flows", type=int, default=2_000_000, help="flows fed per rep and mode")
    ap.add_argument("--flush", type=int, default=1_000_000, help="flows between flushes")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--modes", default="off,on", help="comma list of on, off (one mode per process for RSS)")
    ap.add_argument("--dir", default=None, help="where the databases go (default: a temp dir)")
    ap.add_argument("--page-size", type=int, default=None, help="octets a page of the new databases, both modes"
                    " (default: the daemon's choice)")
    a = ap.parse_args(argv)
    built = D.build(a.version, 200_000)
    modes = a.modes.split(",")
    best: dict[str, dict] = {}
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with tempfile.TemporaryDirectory(dir=a.dir) as tmp:
        for rep in range(a.reps):
            for mode in modes:
                r = asyncio.run(one(built, mode == "on", a.flows, a.flush, tmp, a.page_size))
                print(f"rep {rep + 1} audit {mode:3}: {r['cpu_us']:.3f} us CPU/flow ({r['flush_us']:.3f} in flushes),"
                      f" {r['wall_us']:.3f} us wall/flow,"
                      f" held {r['held_mib']:.1f} MiB, db {r['db_mib']:.1f} MiB, kept {r['kept']}, dropped {r['dropped']}",
                      flush=True)
                if mode not in best or r["cpu_us"] < best[mode]["cpu_us"]:
                    best[mode] = r
    rss = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
    print(f"best: " + ", ".join(f"{m} {r['cpu_us']:.3f}" for m, r in best.items()) + " us CPU/flow"
          + (f"; on/off {best['off']['cpu_us'] / best['on']['cpu_us']:.2f}" if len(best) == 2 else "")
          + f"; peak RSS growth {rss:.0f} MiB; load {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
