"""What the pipeline keeps of a batch does not change what it counts: with the audit log off the
aggregator gets only the columns it reads (`FlowBatch.only`: the addresses and ports are freed
before its arrays are made, issue 21's memory at a batch's peak), with it on the whole batch.
Both are checked against the flows as they were encoded."""

from __future__ import annotations

import random
import time
from collections import Counter

import pytest

from collector import config as C
from collector.daemon.pipeline import Pipeline
from collector.netflow import encode as E

T0 = int(time.time()) - 30
EXPORTERS = [("192.0.2.1", 2055), ("192.0.2.2", 2055)]


def _traffic(seed: int):
    """v5 datagrams from two exporters -> (datagrams, bytes by (exporter, internal host, in_if))."""
    rng = random.Random(seed)
    datagrams, want = [], Counter()
    seqs = Counter()
    for n in range(40):
        src = rng.choice(EXPORTERS)
        recs = []
        for _ in range(rng.randint(1, 30)):
            host = f"10.0.{rng.randint(0, 3)}.{rng.randint(1, 20)}"
            r = dict(src=host, dst=f"198.51.100.{rng.randint(1, 250)}", sport=rng.randint(1024, 65535),
                     dport=rng.choice([443, 1863, 5050, 6881, 5060]), proto=rng.choice([6, 17]),
                     packets=rng.randint(1, 100), bytes=rng.randint(40, 10**6), first=1000, last=2000,
                     in_if=rng.randint(0, 3), out_if=rng.randint(1, 3))
            recs.append(r)
            want[src[0], host, r["in_if"]] += r["bytes"]
        datagrams.append((E.v5_datagram(recs, uptime_ms=3000, unix_secs=T0, sequence=seqs[src]), src, float(T0)))
        seqs[src] += len(recs)
    return datagrams, want


def _counted(p: Pipeline) -> tuple[Counter, Counter]:
    rows, if_rows = p.drain(T0 + 120, lambda e, i: "")
    hosts, ifs = Counter(), Counter()
    for r in rows:
        hosts[r.exporter, r.host] += r.bytes
    for r in if_rows:
        if r.direction == "in":
            ifs[r.exporter, r.if_index] += r.bytes
    return hosts, ifs


@pytest.mark.parametrize("seed", range(4))
def test_audit_log_off_or_on_every_flow_counts_by_its_exporter_host_and_interface(seed):
    datagrams, want = _traffic(seed)
    want_hosts, want_ifs = Counter(), Counter()
    for (exporter, host, in_if), b in want.items():
        want_hosts[exporter, host] += b
        if in_if:
            want_ifs[exporter, in_if] += b
    for categories in ([], ["im", "p2p", "voip"]):
        p = Pipeline(C.validate({"audit": {"categories": categories}}), clock=lambda: T0 + 1)
        for a in range(0, len(datagrams), 16):
            p.process(datagrams[a:a + 16])  # batches from both exporters and from one
        assert p.internal_failures == 0
        assert _counted(p) == (want_hosts, want_ifs), categories
