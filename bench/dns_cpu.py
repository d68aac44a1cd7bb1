"""What issue 19 costs the data path in CPU per flow, in one process (less disturbed by a busy
machine than the loss-free rate of `bench/ingest/dns_cost.py`): the ingest benchmark's
datagrams (bench/ingest/datagrams.py) fed through `Pipeline.process` a batch at a time, the
open bins drained once per second of traffic at 3.7 M flows/s,
the collector configured as dns_cost.py's three collectors, plus one where flows hit:

  noasn      an empty ASN snapshot (the classifier as before issue 19, but for method codes)
  asn        the shipped ASN snapshot (always on)
  dns100k    dnstap on, 100,000 addresses learned (198.18.0.0 + i for *.whatsapp.net, as
             dns_cost.py feeds them: no flow of the traffic goes to one)
  dns100k-hit  the same table, but a tenth of it is the traffic's external addresses (so the
             lookups find something and the flows are reclassified)

CPU time (`time.process_time`) per flow record, best of --reps passes, the variants interleaved
so that a busy machine slows each alike:

    python bench/dns_cpu.py [--versions v9] [--reps 7] [--flows 600000]
"""

from __future__ import annotations

import argparse
import gc
import mmap
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from bench.ingest import datagrams as D
from collector import config as C
from collector.daemon.pipeline import Pipeline
from collector.daemon.tuning import tune_malloc
from collector.intake import mmsg

LEARNED = 100_000
RATE = 3.7e6  # flows/s: the receive times of the batches, so the flush falls as in the daemon
SOURCE = ("127.0.0.1", 40000)


class _Arena:
    """What `mmsg.Batch` reads of a receiver: the arena and its generation."""

    def __init__(self, capacity: int):
        self.arena = mmap.mmap(-1, capacity * mmsg.PITCH)
        self.generation = 1


def batches(built: D.Built, size: int, t0: float) -> list[tuple[mmsg.Batch, int, float]]:
    """The datagrams as the intake receives them, `size` to a batch: [(batch, flow records,
    receive time)]."""
    out, sent = [], 0
    grams, recs = built.datagrams, built.records
    for i in range(0, len(grams), size):
        part = grams[i:i + size]
        rx = _Arena(len(part))
        for j, d in enumerate(part):
            rx.arena[j * mmsg.PITCH:j * mmsg.PITCH + len(d)] = d
        b = mmsg.Batch(rx, 1)
        now = t0 + sent / RATE
        b._add(np.arange(len(part), dtype=np.int64) * mmsg.PITCH, np.array([len(d) for d in part], np.uint32), [SOURCE] * len(part), now)
        out.append((b, sum(recs[i:i + size]), now))
        sent += out[-1][1]
    return out
VARIANTS = ("noasn", "asn", "dns100k", "dns100k-hit")


def config(variant: str, workdir: Path) -> C.Config:
    raw: dict = {"audit": {"categories": []}}
    if variant == "noasn":
        empty = workdir / "empty-asn.txt"
        empty.write_text("# date: 2026-12-04\n")
        raw["classify"] = {"asn_prefixes": str(empty)}
    if variant.startswith("dns"):  # the listener is not started: the table is filled here
        raw["dns"] = {"dnstap": f"unix:{workdir / 'dnstap.sock'}", "max_addresses": LEARNED}
    return C.validate(raw)


def fill(p: Pipeline, variant: str, servers: np.ndarray, now: float) -> None:
    table = p.learned
    if table is None:
        return
    ids = [s.id for s in p.catalogue.services if s.domains]
    if variant == "dns100k-hit":
        for k, a in enumerate(servers[: LEARNED // 10].tolist()):
            table.learn(int(a[0]), int(a[1]), ids[k % len(ids)], 3600, now)
    i = 0
    while len(table) < LEARNED:
        table.learn(0, 0xFFFF_0000_0000 | (0xC6120000 + i), "whatsapp", 3600, now)
        i += 1
    table.view(p.catalogue.by_id, now, force=True)


def one_pass(cfg: C.Config, variant: str, feed, servers: np.ndarray, flush_every: float = 1.0) -> float:
    """CPU seconds per flow of one pass with a fresh pipeline (its first batch untimed)."""
    t_end = feed[-1][2]
    p = Pipeline(cfg, clock=lambda: t_end)
    p.decoder.bulk = True
    fill(p, variant, servers, t_end)
    p.process(feed[0][0])
    flows = 0
    next_flush = feed[0][2] + flush_every
    gc.collect()
    t0 = time.process_time()
    for b, n, now in feed[1:]:
        p.process(b)
        flows += n
        if now >= next_flush:
            p.drain(now, None)
            next_flush += flush_every
    cpu = time.process_time() - t0
    p.drain(t_end, None)
    if p.internal_failures:  # a batch lost to a fault costs nothing: the figure would lie
        raise SystemExit(f"{variant}: {p.internal_failures} batches failed in Pipeline.process")
    errors = sum(p.decoder.stats.errors.values())
    if errors:  # nor does a datagram the decoder refused (a feed laid out wrongly, say)
        raise SystemExit(f"{variant}: {errors} datagrams refused by the decoder: {dict(p.decoder.stats.errors)}")
    return cpu / flows


def external_addresses(cfg: C.Config, feed) -> np.ndarray:
    """The distinct addresses of the traffic that are not internal, in a shuffled order."""
    p = Pipeline(cfg)
    p.decoder.bulk = True
    seen = []
    for b, _, _ in feed:
        batch = p.decoder.decode(b)
        if len(batch):
            c = p.classifier.classify_batch(batch, now=0.0)
            seen.append(np.where(c.host_is_src, batch.dst_addr, batch.src_addr))
    out = np.unique(np.concatenate(seen))
    np.random.default_rng(19).shuffle(out)
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--versions", default="v9")
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--flows", type=int, default=600_000)
    ap.add_argument("--batch", type=int, default=2048)
    a = ap.parse_args(argv)
    tune_malloc()
    gc.freeze()
    with tempfile.TemporaryDirectory() as tmp:
        cfgs = {v: config(v, Path(tmp)) for v in VARIANTS}
        print(f"CPU us per flow record, best of {a.reps} (median), variants interleaved; {LEARNED} learned")
        print("version | " + " | ".join(VARIANTS) + " | dns100k/noasn | dns100k-hit/noasn")
        for version in a.versions.split(","):
            built = D.build(version, a.flows)
            feed = batches(built, a.batch, time.time() - 30)
            servers = external_addresses(cfgs["asn"], feed)
            runs = {v: [] for v in VARIANTS}
            for _ in range(a.reps):
                for v in VARIANTS:
                    runs[v].append(one_pass(cfgs[v], v, feed, servers) * 1e6)
            best = {v: min(r) for v, r in runs.items()}
            med = {v: sorted(r)[len(r) // 2] for v, r in runs.items()}
            cells = " | ".join(f"{best[v]:.3f} ({med[v]:.3f})" for v in VARIANTS)
            print(f"{version} | {cells} | {best['noasn'] / best['dns100k']:.3f} | "
                  f"{best['noasn'] / best['dns100k-hit']:.3f}  (rate ratio: noasn CPU / variant CPU)",
                  flush=True)


if __name__ == "__main__":
    main()
