"""The flush and the event loop (issue 21): how long a flush of N open bins takes, and how long
it keeps the event loop (and so the sockets) waiting.

    python bench/flush_stall.py [--sizes 10000,100000,1000000] [--reps 2] [--rate 5000]

For each size, a real daemon (`App`: pipeline, SQLite store, telemetry, the daemon's own
`flush`) on a loopback port of its own gets N distinct open bins, spread like real traffic over
2 minutes, 4 exporters, the catalogue's services, hosts (1 in 20 of them IPv6) with a few
services each, classification methods and policy violations, plus interface bins, fed through
`Aggregator.add` as classified batches. Then `App.flush()` runs while a probe task sleeps 1 ms
at a time and records the longest gap between its wake-ups: the longest the event loop was
blocked. Reported per flush: wall time, CPU of the whole process (the store's thread too) and
of the event loop's thread, the longest loop stall.

The second row of each size does the same with NetFlow v5 datagrams arriving on the daemon's
UDP socket during the flush: a sender process (paced `--rate` datagrams/s, from 0.3 s before the
flush until 0.3 s after it) and a thread that samples the socket's kernel queue every 2 ms.
Reported: datagrams received by the decoder, dropped by the kernel, the most that were
waiting in the kernel queue at once, in KiB (the kernel's accounting: about 2.3 KiB per
1,464-byte datagram of 30 v5 records).

`batch`, `GIL`, `runq` (with traffic, Linux): over the loop's batches during the flush, the
longest one (ms, wall), the longest one of them waited for the GIL (wall - its thread's CPU -
its run-queue time, from /proc/thread-self/schedstat) and for a core (run queue). A stall is one
batch: GIL is what the flush's threads cost it, runq mostly the machine's load.

`no-flush` is the probe's longest gap in the 0.3 s before the flush (with the same traffic in
the second row): what the loop waits without a flush, for its own work on the datagrams and
for the CPU on a busy machine. On a machine shared with other work the stalls follow its load;
compare the stall with `no-flush`, or run on a quiet machine.

Each size runs `--reps` times on a fresh database each (the first flush of every key: the worst
case for the rollups' B-trees); the table shows every run. Bins are built before the clock
starts; nothing here is a pass/fail threshold (targets: 100k bins < 1 s, stall <= 50 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from collector import config as C  # noqa: E402
from collector.classify.classifier import Classified  # noqa: E402
from collector.daemon.app import App  # noqa: E402
from collector.daemon.tuning import tune_gc  # noqa: E402
from collector.netflow.batch import ADDR, V4_MAPPED, FlowBatch  # noqa: E402

EXPORTERS = ["192.0.2.1", "192.0.2.2", "198.51.100.7", "2001:db8::1"]
MINUTES = 2
CHUNK = 50_000  # flows per Aggregator.add call while filling


def fill(app: App, n: int, now: float) -> int:
    """N distinct (minute, exporter, service, host) bins: key i -> minute i % 2, exporter
    (i // 2) % 4, and per group of 8 keys a (host, service) pair; each host has 3 services.
    Returns the number of distinct hosts."""
    agg = app.aggregator
    nserv = len(agg.services)
    m0 = (int(now) // 60 - MINUTES + 1) * 60 + 1.5
    for start in range(0, n, CHUNK):
        i = np.arange(start, min(start + CHUNK, n), dtype=np.int64)
        j = i // (MINUTES * len(EXPORTERS))
        host = j // 3
        service = 1 + (host * 5 + j % 3) % (nserv - 1)
        b = FlowBatch.empty(len(i))
        b.bytes[:] = 64 + (i * 7919) % 150_000
        b.packets[:] = 1 + i % 100
        b.end[:] = m0 + (i % MINUTES) * 60
        b.in_if[:] = 1 + host % 6
        b.out_if[:] = 1 + (host + 1) % 6
        addr = np.zeros(len(i), ADDR)
        six = host % 20 == 19
        addr["lo"] = np.where(six, np.uint64(0x1000_0000) + host.astype(np.uint64),
                              V4_MAPPED | (np.uint64(0x0A00_0000) + host.astype(np.uint64)))
        addr["hi"] = np.where(six, np.uint64(0xFD00_0000_0000_0000), np.uint64(0))
        has_host = np.ones(len(i), bool)
        method = (i // 3 % 6).astype(np.uint8)
        cls = Classified(service.astype(np.uint16), addr, has_host, np.ones(len(i), bool), method=method)
        exporters = ((i // MINUTES) % len(EXPORTERS)).astype(np.uint32)
        agg.add(b, cls, exporters, EXPORTERS, now, violations=(host % 50 == 0))
    return int(n // (MINUTES * len(EXPORTERS) * 3)) + 1


class Probe:
    """A task that sleeps 1 ms at a time; `worst` is the longest gap between its wake-ups."""

    def __init__(self):
        self.worst = 0.0
        self.on = True

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        while self.on:
            await asyncio.sleep(0.001)
            now = loop.time()
            self.worst = max(self.worst, now - last)
            last = now


def _schedstat() -> tuple[float, float] | None:
    """(seconds on a CPU, seconds waiting in the run queue) of the calling thread (Linux)."""
    try:
        with open("/proc/thread-self/schedstat") as fh:
            ran, queued, _ = fh.read().split()
    except OSError:
        return None
    return int(ran) / 1e9, int(queued) / 1e9


class Batches:
    """The loop's batches during the flush: the longest one (wall), and the longest time one
    waited for the GIL (wall - CPU - run queue) and in the run queue (for a core: the machine's
    load, and our own threads). The stall is one batch; this says what it waited for."""

    def __init__(self, intake):
        self.on, self.worst = False, (0.0, 0.0, 0.0)
        process = intake.on_batch

        def timed(datagrams):
            if not self.on:
                return process(datagrams)
            t, a = time.perf_counter(), _schedstat()
            try:
                return process(datagrams)
            finally:
                wall, b = time.perf_counter() - t, _schedstat()
                if a is not None and b is not None:
                    ran, queued = b[0] - a[0], b[1] - a[1]
                    gil = max(wall - ran - queued, 0.0)
                    self.worst = (max(self.worst[0], wall), max(self.worst[1], gil), max(self.worst[2], queued))

        intake.on_batch = timed


class QueueSampler(threading.Thread):
    """Samples the daemon's socket queue (bytes waiting in the kernel) every 2 ms."""

    def __init__(self, intake):
        super().__init__(daemon=True)
        self.intake, self.most, self.on = intake, 0, True

    def run(self) -> None:
        while self.on:
            queued = sum(q for q, _ in self.intake.queue_stats().values())
            self.most = max(self.most, queued)
            time.sleep(0.002)


def sender_main(port: int, rate: float, seconds: float, path: str) -> None:
    """The sender process: datagrams from `path` (length-prefixed), paced, for `seconds`."""
    data = Path(path).read_bytes()
    grams, k = [], 0
    while k < len(data):
        ln = int.from_bytes(data[k:k + 4], "little")
        grams.append(data[k + 4:k + 4 + ln])
        k += 4 + ln
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    print("ready", flush=True)
    t0 = time.monotonic()
    sent = 0
    while True:
        now = time.monotonic() - t0
        if now >= seconds:
            break
        due = int(now * rate) + 1
        while sent < due:
            s.sendto(grams[sent % len(grams)], ("127.0.0.1", port))
            sent += 1
        time.sleep(0.0005)
    print(sent, flush=True)


async def one_flush(app: App, traffic: tuple | None) -> dict:
    probe = Probe()
    loop = asyncio.get_running_loop()
    task = loop.create_task(probe.run())
    await asyncio.sleep(0.05)
    sender = sampler = None
    d0 = app.decoder.stats.total("datagrams")
    drops0 = sum(d for _, d in app.intake.queue_stats().values())
    if traffic is not None:
        rate, path = traffic
        sampler = QueueSampler(app.intake)
        sampler.start()
        sender = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--sender", str(app.intake_port), str(rate), "3600", path,
            stdout=subprocess.PIPE)
        await sender.stdout.readline()  # started (a Python start-up can take a second on a busy machine)
    await asyncio.sleep(0.3)
    calm = probe.worst  # 0.3 s before the flush (with its traffic): the loop's longest gap without it
    probe.worst = 0.0
    batches = Batches(app.intake)
    batches.on = True
    wall, cpu, loop_cpu = time.perf_counter(), time.process_time(), time.thread_time()
    ok = await app.flush()
    wall, cpu, loop_cpu = time.perf_counter() - wall, time.process_time() - cpu, time.thread_time() - loop_cpu
    batches.on = False
    stall = probe.worst
    out = {"wall": wall, "cpu": cpu, "loop_cpu": loop_cpu, "stall": stall, "ok": ok, "calm": calm,
           "batch": batches.worst}
    if sender is not None:
        await asyncio.sleep(0.3)
        sender.terminate()  # it prints nothing then: count from the decoder and the kernel
        await sender.wait()
        await app.intake.drain()
        sampler.on = False
        sampler.join()
        out["received"] = app.decoder.stats.total("datagrams") - d0
        out["dropped"] = sum(d for _, d in app.intake.queue_stats().values()) - drops0
        out["waiting"] = sampler.most
    probe.on = False
    await task
    return out


async def run_size(n: int, directory: str, traffic: tuple | None) -> tuple[dict, int]:
    cfg = C.validate({"store": {"path": os.path.join(directory, f"flush{n}-{time.monotonic_ns()}.db")},
                      "collector": {"listen": ["127.0.0.1:0"], "refresh_time": 3600.0}})
    app = App(cfg)
    await app.start()
    try:
        app.intake_port = int(app.bound[0].rsplit(":", 1)[1])
        now = time.time()
        hosts = fill(app, n, now)
        open_bins = len(app.aggregator.bins)
        if open_bins != n:
            raise SystemExit(f"filled {open_bins} bins, wanted {n}")
        out = await one_flush(app, traffic)
        out["open"] = open_bins
        return out, hosts
    finally:
        app.intake.close()
        await app.store.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000,1000000", help="open bins per flush, comma-separated")
    ap.add_argument("--reps", type=int, default=2, help="flushes per size and mode (fresh database each)")
    ap.add_argument("--rate", type=float, default=5000.0, help="datagrams/s arriving during the flush (30 flows each)")
    ap.add_argument("--no-traffic", action="store_true", help="only the flushes without datagrams arriving")
    ap.add_argument("--traffic-only", action="store_true", help="only the flushes with datagrams arriving")
    ap.add_argument("--dir", default=None, help="where the databases go (default: a temporary directory)")
    ap.add_argument("--sender", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.sender:
        port, rate, seconds, path = args.sender
        return sender_main(int(port), float(rate), float(seconds), path)
    from bench.ingest.datagrams import build_v5
    from collector.daemon.app import run_loop

    tune_gc()
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = os.path.join(tmp, "v5.dat")
        with open(path, "wb") as fh:
            fh.writelines(len(d).to_bytes(4, "little") + d for d in build_v5(3000).datagrams)
        print(f"{'bins':>9} {'hosts':>7} {'traffic':>10} {'wall s':>7} {'CPU s':>6} {'loop CPU s':>10} "
              f"{'stall ms':>8} {'no-flush':>8} {'recv':>6} {'dropped':>7} {'queue KiB':>9} "
              f"{'batch':>7} {'GIL':>7} {'runq':>7}")
        for n in sizes:
            modes = [None] if args.no_traffic else [(args.rate, path)] if args.traffic_only else [None, (args.rate, path)]
            for mode in modes:
                for _ in range(args.reps):
                    r, hosts = run_loop(run_size(n, tmp, mode))
                    extra = (f"{r['received']:>6} {r['dropped']:>7} {r['waiting'] // 1024:>9} "
                             + " ".join(f"{v * 1000:>7.1f}" for v in r["batch"])
                             if mode else f"{'-':>6} {'-':>7} {'-':>9} {'-':>7} {'-':>7} {'-':>7}")
                    print(f"{r['open']:>9,} {hosts:>7,} {f'{mode[0]:g}/s' if mode else 'none':>10} "
                          f"{r['wall']:>7.2f} {r['cpu']:>6.2f} {r['loop_cpu']:>10.2f} {r['stall'] * 1000:>8.1f} {r['calm'] * 1000:>8.1f} "
                          f"{extra}{'' if r['ok'] else '  (write failed)'}", flush=True)


if __name__ == "__main__":
    main()
