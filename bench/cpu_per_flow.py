"""CPU per flow of the data path, in one process: the ingest benchmark's datagrams
(`bench/ingest/datagrams.py`) laid out in an arena as the intake receives them (`mmsg.Batch`,
one slot per datagram) and fed through `Pipeline.process` a batch at a time, with the open
bins drained as the daemon's one-second flush does (rows built, not stored; the last drain of
a pass is reported apart).

    python bench/cpu_per_flow.py [--versions v5,v9,ipfix] [--reps 5] [--flows 600000]
                                 [--batch 2048] [--flush-every 1.0] [--audit] [--pace 0.02]

CPU time (`time.process_time`) per flow record, best of `--reps` passes over the datagrams
(each pass a fresh `Pipeline`, its first batch untimed: there the sessions and templates are
new, and the whole batch takes the per-datagram path, as only at the daemon's start); the flush
runs once per `--flush-every` seconds of traffic at 3.7 M flows/s (the issue's rate), 0 turns
it off. `--audit` keeps the flow audit log on (its default categories); by default it is off
(`[audit] categories = []`), the base path issue 21 is about. `--stages` adds the time of
decode, classification and the rest of `_process` on their own, in ns a flow: five batches
each passed at least 15 times, the fastest pass of each batch by the wall clock (`stages`).
`--pace S` sleeps S seconds before each batch, as the daemon's batches come apart at a fixed
rate (a 2,048-datagram batch every 25 ms at 80,000 datagrams/s): what a batch costs when its
working set has left the caches since the last one (docs/performance.md, "What limits it").
"""

from __future__ import annotations

import argparse
import gc
import mmap
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from bench.ingest import datagrams as D  # noqa: E402
from collector import config as C  # noqa: E402
from collector.daemon.pipeline import Pipeline  # noqa: E402
from collector.daemon.tuning import tune_malloc  # noqa: E402
from collector.intake import mmsg  # noqa: E402

RATE = 3.7e6  # flows/s: where the flush falls, as in the daemon at the rate
SOURCE = ("127.0.0.1", 40000)


class _Arena:
    """What `mmsg.Batch` reads of a receiver: the arena and its generation."""

    def __init__(self, size: int):
        self.arena = mmap.mmap(-1, size + getattr(mmsg, "TAIL", 4096))
        self.generation = 1


def _slot(n: int) -> int:
    """Octets a datagram of `n` takes in the arena: a slot of `mmsg.PITCH`, or as the intake's
    large region places longer ones (whole, at 64-octet boundaries)."""
    return mmsg.PITCH if n <= mmsg.PITCH else -(-n // 64) * 64


def batches(built: D.Built, size: int, t0: float) -> list[tuple[mmsg.Batch, int, float]]:
    """The datagrams as received batches of `size`: [(batch, flow records, receive time)],
    every batch in an arena of its own (as the intake's one arena, reused, holds one)."""
    out = []
    grams, recs = built.datagrams, built.records
    sent = 0
    for i in range(0, len(grams), size):
        part = grams[i:i + size]
        offsets = np.zeros(len(part), np.int64)
        np.cumsum([_slot(len(d)) for d in part[:-1]], out=offsets[1:])
        rx = _Arena(int(offsets[-1]) + _slot(len(part[-1])))
        for at, d in zip(offsets.tolist(), part):
            rx.arena[at:at + len(d)] = d
        b = mmsg.Batch(rx, 1)
        now = t0 + sent / RATE
        b._add(offsets, np.array([len(d) for d in part], np.uint32), [SOURCE] * len(part), now, SOURCE)
        n = sum(recs[i:i + size])
        sent += n
        out.append((b, n, now))
    return out


def one_pass(cfg: C.Config, feed, flush_every: float, prepare=None, pace: float = 0.0) -> tuple[float, int, float]:
    """-> (CPU seconds, flows, CPU seconds of the last drain) of one pass over the batches
    with a fresh pipeline (`prepare(pipeline)` first, untimed). The last drain (every bin still
    open) is timed apart: a pass is far shorter than a second of traffic at `RATE`, so counting
    it would charge a whole second's flush to a fraction of a second's flows. Stops the run when
    a batch failed or the decoder refused a datagram: their flows would cost nothing."""
    t_end = feed[-1][2]
    p = Pipeline(cfg, clock=lambda: t_end)
    p.decoder.bulk = True
    if prepare is not None:
        prepare(p)
    p.process(feed[0][0])  # warm-up, not timed: sessions and templates are new in it (per-datagram path)
    flows = 0
    next_flush = feed[0][2] + flush_every if flush_every else float("inf")
    gc.collect()
    cpu = time.process_time
    t0 = cpu()
    for b, n, now in feed[1:]:
        if pace:
            time.sleep(pace)  # not CPU time: process_time leaves it out
        p.process(b)
        flows += n
        if now >= next_flush:
            p.drain(now, None)
            next_flush += flush_every
    t1 = cpu()
    p.drain(t_end, None)
    errors = sum(p.decoder.stats.errors.values())
    if p.internal_failures or errors:
        raise SystemExit(f"{p.internal_failures} batches failed in Pipeline.process, {errors} datagrams "
                         f"refused by the decoder {dict(p.decoder.stats.errors)}: the figure would lie")
    return t1 - t0, flows, cpu() - t1


def stages(cfg: C.Config, feed, reps: int, batches: int = 5) -> tuple[dict, int]:
    """Decode, classification and the rest of `Pipeline._process` timed apart on the same
    `batches` batches, each passed `reps` times: -> ({stage: the sum over the batches of each
    one's fastest time}, flows). The fastest of many passes of one batch is what a busy
    machine disturbs least."""
    t_end = feed[-1][2]
    p = Pipeline(cfg, clock=lambda: t_end)
    p.process(feed[0][0])  # warm-up: new sessions and templates
    best: dict = {}
    flows: dict = {}
    clock = time.perf_counter

    def timed(key, fn):
        t0 = clock()
        out = fn()
        best[key] = min(best.get(key, float("inf")), clock() - t0)
        return out

    decode, classify = p.decoder.decode, p.classifier.classify_batch
    for _ in range(reps):
        for i, (b, _, now) in enumerate(feed[1:1 + batches]):
            batch = timed(("decode", i), lambda: decode(b))
            flows[i] = len(batch)
            cls = timed(("classify", i), lambda: classify(batch))
            p.decoder.decode, p.classifier.classify_batch = (lambda _: batch), (lambda _: cls)
            try:
                timed(("rest", i), lambda: p._process(b))
            finally:
                p.decoder.decode, p.classifier.classify_batch = decode, classify
        p.drain(now, None)
    return {st: sum(best[st, i] for i in flows) for st in ("decode", "classify", "rest")}, sum(flows.values())


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--versions", default="v5,v9,ipfix")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--flows", type=int, default=600_000)
    ap.add_argument("--batch", type=int, default=2048)
    ap.add_argument("--flush-every", type=float, default=1.0)
    ap.add_argument("--audit", action="store_true")
    ap.add_argument("--stages", action="store_true")
    ap.add_argument("--pace", type=float, default=0.0, metavar="S",
                    help="sleep S seconds before each batch (batches apart, as at a fixed rate)")
    a = ap.parse_args(argv)
    tune_malloc()
    gc.freeze()
    cfg = C.validate({} if a.audit else {"audit": {"categories": []}})
    print(f"batch {a.batch} datagrams, flush every {a.flush_every} s of traffic at {RATE / 1e6} M flows/s, "
          f"audit {'on' if a.audit else 'off'}, best of {a.reps}"
          + (f", {a.pace * 1e3:g} ms apart" if a.pace else ""))
    print("version | flows | datagrams | CPU us/flow (best) | median | last drain ms"
          + (" | decode ns | classify ns | rest ns" if a.stages else ""))
    for v in a.versions.split(","):
        built = D.build(v, a.flows)
        feed = batches(built, a.batch, time.time() - 30)
        runs = [one_pass(cfg, feed, a.flush_every, pace=a.pace) for _ in range(a.reps)]
        per = sorted(c / f * 1e6 for c, f, _ in runs)
        drain = min(d for _, _, d in runs)
        line = (f"{v} | {runs[0][1]} | {len(built.datagrams)} | {per[0]:.3f} | {per[len(per) // 2]:.3f} | "
                f"{drain * 1e3:.1f}")
        if a.stages:
            st, f = stages(cfg, feed, max(a.reps, 15))
            line += " | " + " | ".join(f"{st[k] / f * 1e9:.1f}" for k in ("decode", "classify", "rest"))
        print(line, flush=True)


if __name__ == "__main__":
    main()
