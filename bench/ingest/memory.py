"""Where imflow's resident memory goes: its RSS at start, at peak and by kind of mapping, while
the benchmark's traffic arrives at a fixed rate (docs/performance.md, "Memory").

    python bench/ingest/memory.py                          # v9, 40,000 datagrams/s, 5 s, audit off
    python bench/ingest/memory.py --versions v5,v9,ipfix --rate 60000
    python bench/ingest/memory.py --audit                  # imflow's default audit categories
    python bench/ingest/memory.py --toml '[collector]\\nbatch_size = 1024'

One `imflow run` per version (the harness's command line: `--refresh-time 1`, 127.0.0.1 only),
with `[audit] categories = []` unless `--audit`; sender.c replays the datagram file at `--rate`
for `--duration` seconds from one exporter; then, once imflow is idle, /proc/PID/smaps is read
and every mapping's resident size summed by kind:

| kind | what it is |
|---|---|
| heap | the main malloc arena (brk): Python objects, NumPy arrays (below the mmap threshold that `collector.daemon.tuning` raises), what freed memory glibc keeps |
| thread arenas | glibc's per-thread malloc arenas (64 MiB reserved each, 64 MiB-aligned): the store and helper threads |
| receive arena | the recvmmsg arena (`collector/intake/mmsg.py`; a shared anonymous mapping, `/dev/zero`) |
| other anonymous | pymalloc's 1 MiB arenas, NumPy and library allocations served by mmap, thread stacks |
| code and data of files | libpython, NumPy's extension module and OpenBLAS, libc, SQLite, ... |

Peak RSS is VmHWM (the kernel's high-water mark of the whole process); the kinds are read at the
end, so they add up to the RSS then, not to the peak. `CPU s` is the process's user and system time at the
end (start-up included): what a setting that trades memory for time costs. Every flow sent is counted against what
imflow stored, and kernel drops are shown: a lossy run is not "at the loss-free rate".
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))
sys.path.insert(0, str(HERE))

import datagrams as D
import procs as P
import run as R

KINDS = ("heap", "thread arenas", "receive arena", "other anonymous", "code and data of files")
_RANGE = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) ")
ARENA_ALIGN = 64 << 20  # glibc's non-main arenas: HEAP_MAX_SIZE-aligned 64 MiB heaps


def smaps(pid: int) -> Counter:
    """Resident octets of `pid` by kind (KINDS) from /proc/PID/smaps."""
    out: Counter = Counter()
    kind = None
    with open(f"/proc/{pid}/smaps") as fh:
        for line in fh:
            m = _RANGE.match(line)
            if m:
                lo, hi = int(m.group(1), 16), int(m.group(2), 16)
                cols = line.split()
                name = cols[5] if len(cols) > 5 else ""
                if name == "[heap]":
                    kind = "heap"
                elif name.startswith("/dev/zero"):
                    kind = "receive arena"
                elif name.startswith("/"):
                    kind = "code and data of files"
                elif not name and lo % ARENA_ALIGN == 0 and (hi - lo) % ARENA_ALIGN == 0:
                    kind = "thread arenas"
                else:
                    kind = "other anonymous"
            elif line.startswith("Rss:") and kind:
                out[kind] += int(line.split()[1]) * 1024
    return out


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of `pid` so far (its threads included), from /proc/PID/stat:
    what the memory costs in time, for settings that trade one for the other."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(args, version: str, workdir: Path, sender: Path) -> dict:
    built = D.build(version, args.records)
    path = workdir / f"{version}.bin"
    D.write(str(path), built)
    coll = P.Imflow()
    coll.extra_toml = ("" if args.audit else "[audit]\ncategories = []\n") + args.toml.replace("\\n", "\n")
    port = P.free_port()
    run = coll.start(workdir / f"imflow-{version}", port)
    try:
        time.sleep(1.0)
        start = P.rss(run.pid)
        count = int(args.rate * args.duration)
        out = subprocess.run([str(sender), str(path), str(port), f"{args.rate:.0f}", str(count),
                              f"{args.duration:.3f}", "1"],
                             check=True, capture_output=True, text=True, timeout=args.duration + 30)
        stats = dict(kv.split("=") for kv in out.stdout.split())
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # idle: the socket queue empty twice, 0.3 s apart
            sock = P.udp_socket(port)
            time.sleep(0.3)
            if sock and sock[0] == 0 and (P.udp_socket(port) or (1, 0))[0] == 0:
                break
        time.sleep(1.5)  # a flush (every second here) has run since
        kinds = smaps(run.pid)
        peak, end = P.peak_rss(run.pid), P.rss(run.pid)
        cpu = cpu_seconds(run.pid)
        drops = (P.udp_socket(port) or (0, 0))[1]
        coll.stop(run)
        counted = coll.count(run)
    finally:
        coll.kill(run)
    return {"version": version, "start": start, "peak": peak, "end": end, "kinds": kinds, "drops": drops,
            "sent": int(stats["records"]), "counted": counted, "cpu": cpu, "rate": int(stats["records"]) / float(stats["seconds"])}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--versions", default="v9", help="comma list of v5, v9, ipfix (default v9)")
    p.add_argument("--rate", type=float, default=40_000.0, help="datagrams/s (default 40000)")
    p.add_argument("--duration", type=float, default=5.0, help="seconds of sending (default 5)")
    p.add_argument("--records", type=int, default=100_000, help="flow records in the datagram file")
    p.add_argument("--audit", action="store_true", help="keep imflow's default audit categories")
    p.add_argument("--toml", default="", help="more imflow configuration (TOML; \\n for newlines)")
    args = p.parse_args(argv)
    if not 0 < args.rate <= 2_000_000 or not 0 < args.duration <= 60:
        p.error("--rate 0-2000000 datagrams/s, --duration 0-60 s")
    versions = [v.strip() for v in args.versions.split(",") if v.strip()]
    for v in versions:
        if v not in R.VERSIONS:
            p.error(f"--versions: unknown {v!r}")
    workdir = Path(tempfile.mkdtemp(prefix="imflow-memory-"))
    try:
        sender = R.build_sender(workdir)
        mib = 1 / 2**20
        print(f"# imflow {'with' if args.audit else 'without'} the audit log, {args.rate:,.0f} datagrams/s for "
              f"{args.duration:g} s{', ' + args.toml if args.toml else ''}")
        print(f"{'version':7} {'flows/s':>10} {'stored':>7} {'drops':>6} {'CPU s':>6} {'start':>6} {'peak':>6} {'end':>6}  "
              + "  ".join(f"{k:>{max(len(k), 6)}}" for k in KINDS) + "   (MiB)")
        for v in versions:
            r = measure(args, v, workdir, sender)
            stored = "all" if r["counted"] == r["sent"] else f"{r['counted'] / max(r['sent'], 1):.0%}"
            print(f"{v:7} {r['rate']:>10,.0f} {stored:>7} {r['drops']:>6} {r['cpu']:>6.2f} {r['start'] * mib:>6.1f} "
                  f"{r['peak'] * mib:>6.1f} {r['end'] * mib:>6.1f}  "
                  + "  ".join(f"{r['kinds'][k] * mib:>{max(len(k), 6)}.1f}" for k in KINDS), flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
