"""Classification rate with addresses learned from DNS (issue 19), next to the classifier as it
was before (no ASN tables, no learned table), in the same run on the same 1M-flow batch
(bench/classify_bench.py's mix).

The batch gets 2% of flows to tcp/5222 in Meta's network (WhatsApp by ASN).
Rows: `today` (the classifier of --baseline, before issue 19), `no asn` (this one with an empty
ASN snapshot and no learned table), `asn` (the shipped ASN snapshot), `asn+dns`
(and a learned table of --learned addresses, 10% of the flows' servers among them), and the
view rebuild of that table (what a changing table costs once a second).

    python -m bench.dns_bench [--rows 1000000] [--learned 100000] [--repeat 7]   (from the repo root)
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import socket
import subprocess
import sys
import tempfile
import time

import dns.message
import dns.rrset
import numpy as np
from dnstap_pb import dnstap_pb2

from bench.classify_bench import make_batch
from collector.classify import asn as asn_data
from collector.classify.catalogue import load_catalogue
from collector.classify.classifier import METHODS, Classifier
from collector.daemon.tuning import tune_malloc
from collector.dns.dnstap import DnstapListener
from collector.dns.table import LearnedAddresses
from collector.netflow.batch import addr_from_str

NOW = 1_000.0


def old_classifier(rev: str):
    """The Classifier class of collector/classify/classifier.py at git revision `rev` (the
    classifier as it was before issue 19: no ASN, no learned table, no method codes)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    text = subprocess.run(["git", "show", f"{rev}:collector/classify/classifier.py"], cwd=root, check=True,
                          capture_output=True, text=True).stdout
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(text)
    spec = importlib.util.spec_from_file_location("classifier_before", f.name)
    module = importlib.util.module_from_spec(spec)
    sys.modules["classifier_before"] = module
    spec.loader.exec_module(module)
    os.unlink(f.name)
    return module.Classifier


def best_of(repeat: int, fn) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--learned", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--baseline", default="e981c73", metavar="REV",
                    help="git revision whose classifier is `today` (default e981c73, before issue 19)")
    args = ap.parse_args()
    tune_malloc()  # as the daemon does: batch-sized arrays are not page-faulted in anew each time
    catalogue = load_catalogue()
    batch = make_batch(args.rows)
    batch.pop("app_id")
    rng = np.random.default_rng(19)
    # 2% of the flows to WhatsApp's chat port in Meta's network (an ASN match), in both directions
    meta = asn_data.shipped().networks(catalogue.by_id["whatsapp"].asns[0])[0]
    rows = np.flatnonzero(rng.random(args.rows) < 0.02)
    server_is_src = batch["src_port"][rows] < batch["dst_port"][rows]
    for side, port, pick in (("src", "src_port", rows[server_is_src]), ("dst", "dst_port", rows[~server_is_src])):
        batch[f"{side}_addr"][pick] = addr_from_str(str(meta.network_address + 1))
        batch[port][pick] = 5222
        batch["proto"][pick] = 6
    table = LearnedAddresses(max_entries=args.learned)
    ids = [s.id for s in catalogue.services if s.domains]
    servers = np.where(batch["src_port"] < batch["dst_port"], batch["src_addr"], batch["dst_addr"])
    picked = np.unique(servers[rng.random(args.rows) < 0.10])[: args.learned]
    for k, a in enumerate(picked.tolist()):  # 10% of the flows go to learned addresses
        table.learn(int(a[0]), int(a[1]), ids[k % len(ids)], 600, NOW)
    while len(table) < args.learned:  # and the rest of the table is addresses no flow uses
        table.learn(0, 0xFFFF_0000_0000 | int(rng.integers(0xE0000000, 0xEFFFFFFF)), ids[0], 600, NOW)
    empty = asn_data.AsnSnapshot("2026-12-04", "none")
    variants = [(f"today ({args.baseline})", old_classifier(args.baseline)(catalogue))]
    for name, snap, learned in (("no asn", empty, None), ("asn", None, None), ("asn+dns", None, table)):
        c = Classifier(catalogue, asn=snap)
        c.learned_addresses = learned
        variants.append((name, c))
    best = {name: float("inf") for name, _ in variants}
    outs = {}
    for _ in range(args.repeat):  # interleaved, so a busy machine slows every variant alike
        for name, c in variants:
            kw = {"now": NOW} if name.startswith(("no asn", "asn")) else {}
            t, outs[name] = best_of(1, lambda c=c, kw=kw: c.classify(**batch, **kw))
            best[name] = min(best[name], t)
    rows = [(name, best[name], outs[name]) for name, _ in variants]
    base = rows[0][1]
    print(f"{args.rows} flows, {len(table)} learned addresses ({len(picked)} of them flows' servers), "
          f"best of {args.repeat}")
    for name, t, out in rows:
        if getattr(out, "method", None) is not None:
            methods = np.bincount(out.method, minlength=len(METHODS))
            share = ", ".join(f"{METHODS[i]} {m / args.rows:.1%}" for i, m in enumerate(methods) if m and i)
        else:
            share = f"classified {np.count_nonzero(out.service) / args.rows:.1%}"
        print(f"  {name:16s} {t * 1e3:7.1f} ms  {args.rows / t / 1e6:5.1f}M flows/s  {t / base:5.2f}x  ({share})")
    def rebuild():
        table._by_id = None  # as after a reload: the whole table into a new view
        return table.view(catalogue.by_id, NOW, force=True)
    t, _ = best_of(3, rebuild)
    print(f"  view built whole from {len(table)} addresses: {t * 1e3:.0f} ms (at start and after a reload only)")
    clock = [NOW]
    def second(n):  # a second's answers (new addresses, evicting), then the view takes them in
        base = 0xF0000000 + int(clock[0] - NOW) * n
        for k in range(n):
            table.learn(0, 0xFFFF_0000_0000 | (base + k), ids[k % len(ids)], 300, clock[0])
        clock[0] += 1.0
        t0 = time.perf_counter()
        table.view(catalogue.by_id, clock[0])
        return time.perf_counter() - t0
    for n in (0, 100, 1_000, 10_000):
        times = sorted(second(n) for _ in range(5))
        print(f"  view update after a second of {n:6d} new answers: {times[2] * 1e3:6.2f} ms (median of 5; "
              f"the longest {times[-1] * 1e3:.1f} ms)")
    t0 = time.perf_counter()
    for k in range(100_000):
        table.learn(0, 0xFFFF_0000_0000 | (0xF0000000 + k), ids[k % len(ids)], 300, NOW)
    t = time.perf_counter() - t0
    print(f"  learn: {t / 100_000 * 1e9:.0f} ns per answer record into a full table (evicting)")
    for label, name in (("a service's name", "n.whatsapp.net."), ("no service's name", "www.example.com.")):
        frames = dnstap_frames(name, 10_000)
        best = float("inf")
        for _ in range(3):
            listener = DnstapListener("unix:/nonexistent", LearnedAddresses(), lambda: catalogue)
            listener._dnspb = dnstap_pb2  # not started: frames are handed to take() directly
            t0 = time.process_time()
            for f in frames:
                listener.take(f)
            best = min(best, time.process_time() - t0)
        print(f"  dnstap: {best / len(frames) * 1e6:.1f} us CPU per frame answering {label} (one A record; "
              f"{dict(listener.frames)})")


def dnstap_frames(name: str, n: int) -> list[bytes]:
    """n dnstap CLIENT_RESPONSE messages answering `name` with one A record each."""
    q = dns.message.make_query(name, "A")
    response = dns.message.make_response(q)
    out = []
    for i in range(n):
        response.answer = [dns.rrset.from_text(name, 3600, "IN", "A", socket.inet_ntoa((0xC6120000 + i).to_bytes(4, "big")))]
        d = dnstap_pb2.Dnstap()
        d.type = dnstap_pb2.Dnstap.MESSAGE
        d.message.type = dnstap_pb2.Message.CLIENT_RESPONSE
        d.message.query_address = bytes([10, 0, 0, i % 200])
        d.message.response_message = response.to_wire()
        out.append(d.SerializeToString())
    return out


if __name__ == "__main__":
    main()
