"""Query time of `imflow flows` on a big flow audit log (issue 18): N flows (default 10 M) over
7 days written through the store's own writer (flushes of 100,000 flows, as a collector
storing ~170 watched flows/s would write them every 10 minutes), then the usual questions
asked through the CLI, each timed from process start to exit (best of --reps).

    python bench/audit_query.py                 # 10 M flows, ~2-3 minutes to write
    python bench/audit_query.py --flows 1000000 --keep /tmp/audit.db
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from collector.store import Store
from collector.store.audit import COLUMNS, AuditBatch

SERVICES = ["msn", "bittorrent", "sip", "teams", "telegram", "edonkey"]
CATEGORIES = ["im", "p2p", "voip", "collab", "im", "p2p"]
DAY = 86400


def batch(rng: np.random.Generator, n: int, t0: float, span: float) -> AuditBatch:
    start = np.sort(rng.uniform(t0, t0 + span, n))
    cols = {
        "start_ms": (start * 1000).astype(np.int64),
        "end_ms": ((start + rng.exponential(30, n)) * 1000).astype(np.int64),
        "exporter": rng.integers(0, 4, n),
        "host_hi": np.zeros(n, np.uint64),
        "host_lo": (0xFFFF_0A00_0000 + rng.integers(0, 2000, n)).astype(np.uint64),  # 2,000 hosts in 10.0.0.0/16
        "peer_hi": np.zeros(n, np.uint64),
        "peer_lo": (0xFFFF_0000_0000 + rng.integers(0x0100_0000, 0xDF00_0000, n)).astype(np.uint64),
        "host_port": rng.integers(1024, 65535, n), "peer_port": rng.choice([443, 1863, 5060, 6881, 3478], n),
        "proto": rng.choice([6, 17], n), "service": rng.integers(0, len(SERVICES), n),
        "bytes": rng.integers(60, 10**7, n), "packets": rng.integers(1, 10**4, n),
        "in_if": rng.integers(1, 5, n), "out_if": rng.integers(1, 5, n), "direction": rng.integers(1, 3, n),
    }
    return AuditBatch({c: cols[c].astype(t) for c, t in COLUMNS.items()},
                      ["192.0.2.1", "192.0.2.2", "192.0.2.3", "2001:db8::1"], SERVICES, CATEGORIES)


async def fill(db: str, flows: int, now: float, per_flush: int = 100_000) -> float:
    rng = np.random.default_rng(18)
    store = Store(db, audit_max_rows=flows + 1, clock=lambda: now)
    await store.start()
    t = time.perf_counter()
    span = 7 * DAY / max(flows // per_flush, 1)
    for i, t0 in enumerate(np.arange(now - 7 * DAY, now, span)[: max(flows // per_flush, 1)]):
        await store.write([], [], batch(rng, per_flush, t0, span))
    took = time.perf_counter() - t
    await store.stop()
    return took


QUESTIONS = [
    ("one host, one service, a 5-minute window", ["--host", "10.0.3.7", "--service", "msn", "--from", "{t5}",
                                                  "--to", "{t5end}"]),
    ("one host, the last 24 h, every flow", ["--host", "10.0.3.7", "--since", "24h", "--limit", "0"]),
    ("one host, all 7 days, top 100 by bytes", ["--host", "10.0.3.7", "--since", "all", "--sort", "bytes"]),
    ("a peer /16 on udp/5060, all 7 days", ["--peer", "198.51.0.0/16", "--port", "5060", "--proto", "udp",
                                            "--since", "all", "--limit", "0"]),
    ("top peer networks (/24), all 7 days", ["--since", "all", "--by", "peer-net", "--limit", "10"]),
    ("top peer networks (/24) of p2p, last 24 h", ["--since", "24h", "--category", "p2p", "--by", "peer-net",
                                                   "--limit", "10"]),
]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--flows", type=int, default=10_000_000)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--keep", metavar="DB", help="write the database here and keep it (reused if it exists)")
    args = p.parse_args(argv)
    tmp = tempfile.mkdtemp(prefix="imflow-audit-")
    db = args.keep or os.path.join(tmp, "imflow.db")
    now = time.time()
    if not os.path.exists(db):
        took = asyncio.run(fill(db, args.flows, now))
        print(f"# wrote {args.flows:,} flows in {took:.1f} s ({args.flows / took:,.0f} flows/s through Store.write)")
    size = sum(os.path.getsize(db + s) for s in ("", "-wal") if os.path.exists(db + s))
    print(f"# database {size / 2**20:,.0f} MiB ({size / args.flows:.0f} bytes per flow)")
    t5 = now - 3 * DAY
    print(f"{'question':48} {'seconds':>8} {'rows':>7}")
    for name, q in QUESTIONS:
        q = [x.format(t5=f"{t5:.0f}", t5end=f"{t5 + 300:.0f}") for x in q]
        best, rows = None, 0
        for _ in range(args.reps):
            t = time.perf_counter()
            out = subprocess.run([sys.executable, "-m", "collector", "flows", "--db", db, "--format", "csv", *q],
                                 capture_output=True, text=True, cwd=tmp, timeout=600, check=False)
            el = time.perf_counter() - t
            if out.returncode != 0:
                print(out.stderr, file=sys.stderr)
                return 1
            rows = out.stdout.count("\n") - 1
            best = el if best is None else min(best, el)
        print(f"{name:48} {best:8.2f} {rows:7,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
