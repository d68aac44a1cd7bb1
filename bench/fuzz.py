"""The fuzz suite's long run: tests/netflow/test_fuzz.py's generators (driven by a seeded
`random.Random` instead of hypothesis) over a million or more generated datagrams, decoded in
batches of 2,048 like the daemon's, by one long-lived `Decoder` with the default ceilings.

    python bench/fuzz.py                       # 1,000,000 datagrams, at most 20 minutes
    python bench/fuzz.py --datagrams 200000 --seed 7 --max-seconds 300
    python bench/fuzz.py --template-budget 1000000000   # every template reaches the parser
    IMFLOW_KERNELS=0 python bench/fuzz.py      # the NumPy paths only

Each generated stream (a few v9, IPFIX or v5 datagrams: templates, options templates,
withdrawals, data, some of them lying about lengths and counts) comes from an exporter address
of its own, so its flows can be checked against what its own data sets can hold; many
thousands of addresses push the session, template and held-data ceilings. Prints a progress
line, then: datagrams/s, exceptions that escaped `decode` and "internal" errors (both must be
0), flows invented (must be 0), the state against `Limits`, the peak RSS, the kernels against
NumPy and the bulk against the per-datagram path on every `--agree-every`th stream, and the
decode errors by reason. Exit status 1 if anything must-be-0 is not.
"""

from __future__ import annotations

import argparse
import ipaddress
import random
import resource
import sys
import time
import traceback
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from collector import kernels
from collector.netflow import decoder as D
from collector.netflow.decoder import Decoder
from collector.netflow.session import Limits
from tests.netflow import test_fuzz as G

BATCH = 2048  # the daemon's collector.batch_size


def stream(d: G.Draw, rng: random.Random) -> G.Stream:
    kind = rng.random()
    if kind < 0.1:
        return G.v5(d, datagrams=rng.randint(1, 6))
    version = 9 if kind < 0.55 else 10
    if rng.random() < 0.02:  # one stream in fifty: wide templates, long names
        return G.templated(d, version, datagrams=3, max_fields=2000, max_sets=3, max_records=3)
    return G.templated(d, version, datagrams=rng.randint(1, 10), max_records=rng.choice([2, 6, 30]),
                       data=rng.random() > 0.05)


def own_source(s: G.Stream, n: int) -> None:
    """Give stream number `n` exporter addresses of its own (10.0.0.0/8, 2001:db8::/32)."""
    v4, v6 = str(ipaddress.IPv4Address(0x0A00_0000 + n % (1 << 24))), f"2001:db8::{n:x}"
    s.items = [(data, (v6 if ":" in src[0] else v4, src[1]), t) for data, src, t in s.items]


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datagrams", type=int, default=1_000_000)
    p.add_argument("--seed", type=int, default=16)
    p.add_argument("--max-seconds", type=float, default=1200.0, help="stop after this long, whatever is left")
    p.add_argument("--agree-every", type=int, default=200, metavar="N",
                   help="compare kernels/NumPy and bulk/per-datagram on every Nth stream (0: never)")
    p.add_argument("--findings", metavar="FILE", help="write the first failing streams here, as hex")
    p.add_argument("--template-budget", type=int, metavar="OCTETS",
                   help="limits.max_new_template_bytes_per_batch (default: the default ceiling; its run sheds "
                        "most of the generated streams' template datagrams, all from new sessions: a large "
                        "budget makes every template reach the parser)")
    args = p.parse_args(argv)

    rng = random.Random(args.seed)
    d = G.Draw(rng=rng)
    limits = Limits() if args.template_budget is None else Limits(max_new_template_bytes_per_batch=args.template_budget)
    dec = Decoder(limits)
    t0 = time.monotonic()
    gen_s = dec_s = 0.0
    sent = streams = exceptions = flows = invented = disagree = compared = 0
    over: Counter = Counter()  # ceiling -> times found over it
    findings: list[str] = []
    by_addr: dict[str, G.Stream] = {}
    pending: list[G.Stream] = []
    items: list = []
    last = t0
    start_rss = rss_mib()  # imports, generator and an empty decoder
    print(f"# fuzz long run: {args.datagrams:,} datagrams, seed {args.seed}, {kernels.status()}, batches of "
          f"{BATCH:,}, default Limits ({limits.max_sessions:,} sessions, {limits.max_templates:,} templates, "
          f"{limits.max_pending_bytes / 2**20:.0f} MiB held, "
          f"{getattr(limits, 'max_new_template_bytes_per_batch', 0):,} octets of new sessions' templates a batch)",
          flush=True)

    def note(what: str, s: G.Stream) -> None:
        if len(findings) < 20:
            findings.append(G.report(s, [what]))

    while sent < args.datagrams and time.monotonic() - t0 < args.max_seconds:
        g0 = time.monotonic()
        while len(items) < BATCH:
            s = stream(d, rng)
            own_source(s, streams)
            streams += 1
            if args.agree_every and streams % args.agree_every == 0:
                compared += 1
                wrong = G.agree(s)
                if wrong:
                    disagree += 1
                    note("; ".join(wrong), s)
            pending.append(s)
            for it in s.items:
                by_addr[it[1][0]] = s
            items += s.items
        batch_items, items = items[:BATCH], items[BATCH:]
        d0 = time.monotonic()
        gen_s += d0 - g0
        try:
            batch = dec.decode(batch_items)
        except Exception:  # noqa: BLE001 - what the property says never happens, counted
            exceptions += 1
            sent += len(batch_items)  # counted by the decoder before it raised
            findings.append(traceback.format_exc(limit=-3))
            continue
        dec_s += time.monotonic() - d0
        sent += len(batch_items)
        flows += len(batch)
        # flows per exporter address -> against that stream's bound (streams may span batches)
        if len(batch):
            sids, counts = np.unique(batch.session, return_counts=True)
            for sid, n in zip(sids.tolist(), counts.tolist()):
                sess = dec.by_sid.get(sid)
                s = by_addr.get(sess.exporter) if sess else None
                if s is None:
                    continue
                s.flows_out = getattr(s, "flows_out", 0) + n
                if s.flows_out > s.flow_bound():
                    invented += s.flows_out - s.flow_bound()
                    note(f"invented flows: {s.flows_out} out, at most {s.flow_bound()}", s)
                    s.flows_out = s.flow_bound()
        if len(pending) > 4096:
            for s in pending[:-2048]:
                for it in s.items:
                    by_addr.pop(it[1][0], None)
            pending = pending[-2048:]
        if sent // BATCH % 16 == 0:
            over.update(ceilings(dec, limits))
        now = time.monotonic()
        if now - last >= 10:
            last = now
            print(f"  {sent:>10,} datagrams  {sent / (now - t0):>8,.0f}/s  flows {flows:,}  sessions "
                  f"{len(dec.sessions):,}  exceptions {exceptions}  invented {invented}  RSS max "
                  f"{rss_mib():,.0f} MiB", flush=True)

    took = time.monotonic() - t0
    s = dec.stats
    errors = s.by_second("errors")
    boundary = sum(n for (_, r), n in s.errors.items() if not r.startswith("held-"))
    waiting = G.waiting_datagrams(dec)  # new sessions' templates held for a later call's budget
    uncounted = sent - s.total("datagrams") - boundary - waiting
    internal = errors.get("internal", 0)
    print(f"\ndatagrams      {sent:,} in {streams:,} streams, {took:,.0f} s: {sent / took:,.0f} datagrams/s "
          f"({sent / dec_s:,.0f}/s of decode time; generating took {gen_s:,.0f} s)")
    print(f"exceptions     {exceptions} escaped decode, {internal:,} caught as 'internal'")
    print(f"uncounted      {uncounted:,} datagrams neither decoded, counted as an error nor waiting "
          f"({waiting:,} wait for the next call's template budget)")
    print(f"flows          {flows:,} out; invented {invented:,}")
    print("ceilings       " + (", ".join(f"{k}: over {v}x" for k, v in over.items()) or
                                f"never over (sessions {len(dec.sessions):,} of {limits.max_sessions:,}, "
                                f"templates {sum(len(x.templates) for x in dec.sessions.values()):,} of "
                                f"{limits.max_templates:,}, held {sum(x.pending_bytes for x in dec.sessions.values()):,} "
                                f"of {limits.max_pending_bytes:,} octets)"))
    octets = (getattr(limits, "max_template_bytes", 0) + getattr(limits, "max_name_bytes", 0)
              + limits.max_pending_bytes + getattr(D, "DEFER_OCTETS", 0) + (1 << 20)) / 2**20  # + the 1 MiB memo
    print(f"max RSS        {rss_mib():,.0f} MiB (ru_maxrss: generator, decoder and Python), {rss_mib() - start_rss:,.0f} MiB "
          f"above the start ({start_rss:,.0f} MiB); the octet ceilings of what senders make the decoder hold "
          f"(template, name, held, waiting, memo) add up to {octets:,.0f} MiB")
    print(f"agreement      {compared:,} streams compared (kernels {'on and off' if kernels.available() else 'not built'}"
          f", bulk and per-datagram): {disagree} differ")
    print("evictions      " + (", ".join(f"{k} {v:,}" for k, v in sorted(s.evicted.items())) or "none"))
    print("decode errors  " + ", ".join(f"{r} {n:,}" for r, n in sorted(errors.items(), key=lambda x: -x[1])))
    if args.findings and findings:
        Path(args.findings).write_text("\n\n".join(findings) + "\n")
        print(f"findings       {len(findings)} written to {args.findings}")
    return 1 if exceptions or internal or invented or uncounted or over else 0


def ceilings(dec: Decoder, limits: Limits) -> list[str]:
    """`check`'s state half, for a long-lived decoder: ['over <what>', ...]."""
    out = []
    sessions = dec.sessions.values()
    if len(dec.sessions) > limits.max_sessions:
        out.append("over sessions")
    if sum(len(x.templates) for x in sessions) > limits.max_templates:
        out.append("over templates")
    if sum(x.pending_bytes for x in sessions) > limits.max_pending_bytes:
        out.append("over held-bytes")
    for x in sessions:
        if len(x.templates) > limits.max_templates_per_session:
            out.append("over templates-per-session")
        if max(len(x.if_names), len(x.app_names)) > limits.max_names_per_session:
            out.append("over names-per-session")
        if len(x.pending) > limits.max_pending_per_session or x.pending_bytes > limits.max_pending_bytes_per_session:
            out.append("over held-per-session")
    return out + G.octet_ceilings(dec, limits)


if __name__ == "__main__":
    sys.exit(main())
