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
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from bench import cpu_per_flow
from bench.ingest import datagrams as D
from collector import config as C
from collector.daemon.pipeline import Pipeline
from collector.daemon.tuning import tune_malloc

LEARNED = 100_000


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
    """CPU seconds per flow of one pass with a fresh pipeline, its table filled first (the
    first batch untimed; bench/cpu_per_flow.py's pass, which stops on refused datagrams)."""
    cpu, flows, _ = cpu_per_flow.one_pass(cfg, feed, flush_every,
                                          prepare=lambda p: fill(p, variant, servers, feed[-1][2]))
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
            feed = cpu_per_flow.batches(built, a.batch, time.time() - 30)
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
