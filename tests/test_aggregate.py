"""Aggregation against a plain per-flow Python reduction of the same flows."""

from __future__ import annotations

from collections import Counter

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.aggregate import Aggregator
from collector.classify.classifier import Classified
from collector.netflow.batch import ADDR, FlowBatch, addr_from_str, addr_to_str

SERVICES = ["other", "msn", "bittorrent", "sip"]
CATEGORIES = ["other", "im", "p2p", "voip"]
HOSTS = ["10.0.0.1", "10.0.0.2", "fd00::5", None]
NOW = 1_764_000_000.0

flow = st.tuples(st.sampled_from(range(len(SERVICES))), st.sampled_from(HOSTS), st.integers(0, 2),
                 st.integers(0, 10**12), st.integers(0, 10**6), st.floats(-4000, 400))


def make(flows):
    n = len(flows)
    b = FlowBatch.empty(n)
    host = np.zeros(n, ADDR)
    has = np.zeros(n, bool)
    for i, (svc, h, exp, nbytes, pkts, dt) in enumerate(flows):
        b.bytes[i], b.packets[i], b.end[i] = nbytes, pkts, NOW + dt
        if h:
            host[i] = addr_from_str(h)
            has[i] = True
    cls = Classified(np.array([f[0] for f in flows], np.uint16), host, has, has.copy())
    return b, cls, np.array([f[2] for f in flows], np.uint32)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(flow, min_size=1, max_size=60), min_size=1, max_size=4))
def test_bins_equal_a_plain_reduction(batches):
    agg = Aggregator(SERVICES, CATEGORIES, max_age=3600, max_skew=300)
    names = ["192.0.2.1", "192.0.2.2", "2001:db8::1"]
    expect: Counter = Counter()
    for flows in batches:
        b, cls, exp = make(flows)
        agg.add(b, cls, exp, names, NOW)
        for svc, h, e, nbytes, pkts, dt in flows:
            t = NOW + dt if -3600 <= dt <= 300 else NOW
            key = (int(t // 60) * 60, names[e], SERVICES[svc], CATEGORIES[svc], h or "")
            expect[key + ("bytes",)] += nbytes
            expect[key + ("packets",)] += pkts
            expect[key + ("flows",)] += 1
    got: Counter = Counter()
    for r in agg.drain():
        key = (r.bin, r.exporter, r.service, r.category, r.host)
        got[key + ("bytes",)] += r.bytes
        got[key + ("packets",)] += r.packets
        got[key + ("flows",)] += r.flows
    assert +got == +expect
    assert agg.open_bins() == 0
    total = sum(f[3] for fl in batches for f in fl)
    assert int(agg.service_bytes.sum()) == total


def test_drain_before_keeps_open_bins_and_restore_puts_rows_back():
    agg = Aggregator(SERVICES, CATEGORIES)
    b, cls, exp = make([(1, "10.0.0.1", 0, 100, 1, -120), (1, "10.0.0.1", 0, 50, 1, 0)])
    agg.add(b, cls, exp, ["192.0.2.1"], NOW)
    closed = agg.drain(before=NOW // 60 * 60)
    assert [(r.bytes, r.host) for r in closed] == [(100, "10.0.0.1")]
    agg.restore(closed)
    assert sorted(r.bytes for r in agg.drain()) == [50, 100]


def test_open_bin_ceiling_counts_what_it_drops():
    agg = Aggregator(SERVICES, CATEGORIES, max_open_bins=3)
    flows = [(1, f"10.0.0.{i}", 0, 10, 1, 0) for i in range(1, 6)]
    b, cls, exp = make(flows)
    agg.add(b, cls, exp, ["192.0.2.1"], NOW)
    assert agg.open_bins() == 3 and agg.totals.dropped_bins == 2


def test_hosts_round_trip_text():
    assert addr_to_str(*addr_from_str("fd00::5")) == "fd00::5"
    assert addr_to_str(*addr_from_str("10.0.0.1")) == "10.0.0.1"
