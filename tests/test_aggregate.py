"""Aggregation against a plain per-flow Python reduction of the same flows, with the compiled
grouped sums and with NumPy's."""

from __future__ import annotations

from collections import Counter

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from collector import kernels
from collector.aggregate import Aggregator
from collector.classify.classifier import METHODS, Classified
from collector.netflow.batch import ADDR, FlowBatch, addr_from_str, addr_to_str
from tests.kernels import both_ways

SERVICES = ["other", "msn", "bittorrent", "sip"]
CATEGORIES = ["other", "im", "p2p", "voip"]
HOSTS = ["10.0.0.1", "10.0.0.2", "fd00::5", "fd00::a00:1", None]  # the last address: 10.0.0.1 in its low 32 bits
NOW = 1_764_000_000.0

IFS = [0, 1, 2, 70_000]  # 0: not given; above 2^16 takes the dense-code path
flow = st.tuples(st.sampled_from(range(len(SERVICES))), st.sampled_from(HOSTS), st.integers(0, 2),
                 st.integers(0, 10**12), st.integers(0, 10**6), st.floats(-4000, 400),
                 st.sampled_from(IFS), st.sampled_from(IFS))


def make(flows):
    n = len(flows)
    b = FlowBatch.empty(n)
    host = np.zeros(n, ADDR)
    has = np.zeros(n, bool)
    for i, (svc, h, exp, nbytes, pkts, dt, in_if, out_if) in enumerate(flows):
        b.bytes[i], b.packets[i], b.end[i], b.in_if[i], b.out_if[i] = nbytes, pkts, NOW + dt, in_if, out_if
        if h:
            host[i] = addr_from_str(h)
            has[i] = True
    cls = Classified(np.array([f[0] for f in flows], np.uint16), host, has, has.copy())
    return b, cls, np.array([f[2] for f in flows], np.uint32)


@both_ways
@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(flow, min_size=1, max_size=60), min_size=1, max_size=4))
def test_bins_equal_a_plain_reduction(kernels_on, batches):
    with kernels.use(kernels_on):
        check_bins(batches)


@both_ways
@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(flow, min_size=1, max_size=60), min_size=2, max_size=8))
def test_bins_merged_between_batches_equal_a_plain_reduction(kernels_on, batches):
    """The open bins merged as they go (a few rows pending at most), not only when read."""
    with kernels.use(kernels_on), _pending(5):
        check_bins(batches, settle=True)


@both_ways
@settings(max_examples=60, deadline=None)
@given(st.lists(flow, min_size=1, max_size=60), st.integers(0, 2))
def test_one_exporter_index_for_every_flow_equals_a_column_of_it(kernels_on, flows, e):
    """A batch from one exporter passes its index once: the same bins, interface bins, totals
    and clamped counts as a column holding it for every flow."""
    names = ["192.0.2.1", "192.0.2.2", "2001:db8::1"]
    b, cls, _ = make(flows)
    out = []
    with kernels.use(kernels_on):
        for exporters in (np.full(len(flows), e, np.uint32), e):
            agg = Aggregator(SERVICES, CATEGORIES, max_age=3600, max_skew=300)
            agg.add(b, cls, exporters, names, NOW)
            out.append((sorted(agg.drain()), sorted(agg.drain_interfaces()), agg.service_totals(),
                        agg.totals.clamped, agg.totals.clamped_by))
    assert out[0] == out[1]


@both_ways
@settings(max_examples=60, deadline=None)
@given(st.lists(flow, min_size=1, max_size=60), st.integers(0, 2**32))
def test_what_the_aggregator_reads_is_in_its_columns(kernels_on, flows, seed):
    """The pipeline hands the aggregator `batch.only(Aggregator.COLUMNS)` (the rest freed
    first): the same bins, interface bins and totals as the whole batch, whose other columns
    hold values of their own here."""
    b, cls, exp = make(flows)
    rng = np.random.default_rng(seed)
    for name in ("session", "src_port", "dst_port", "proto", "sampling_rate", "app_id", "seq"):
        col = getattr(b, name)
        col[:] = rng.integers(1, np.iinfo(col.dtype).max, len(col), dtype=col.dtype, endpoint=True)
    for name in ("src_addr", "dst_addr"):
        getattr(b, name)["lo"] = rng.integers(1, 2**63, len(b), np.uint64)
    b.start[:] = b.end - rng.uniform(0, 100, len(b))
    out = []
    with kernels.use(kernels_on):
        for batch in (b, b.only(Aggregator.COLUMNS)):
            agg = Aggregator(SERVICES, CATEGORIES, max_age=3600, max_skew=300)
            agg.add(batch, cls, exp, ["192.0.2.1", "192.0.2.2", "2001:db8::1"], NOW)
            out.append((sorted(agg.drain()), sorted(agg.drain_interfaces()), agg.service_totals(),
                        agg.totals.clamped, agg.totals.clamped_by))
    assert out[0] == out[1]


@both_ways
def test_at_the_ceiling_the_keys_met_first_are_kept_across_merges(kernels_on):
    """Merged as they come, bins at the ceiling keep the keys that arrived first, as a dict
    refusing new keys would, whichever way the groups were found (the hash kernel numbers them
    by their first row, NumPy's sort by their key)."""
    hosts = [f"10.0.0.{i}" for i in range(20, 0, -1)]  # arrive in falling address order
    with kernels.use(kernels_on), _pending(1):
        agg = Aggregator(SERVICES, CATEGORIES, max_open_bins=5)
        for h in hosts:
            b, cls, exp = make([(1, h, 0, 10, 1, 0, 0, 0)])
            agg.add(b, cls, exp, ["192.0.2.1"], NOW)
            agg.settle()
        b, cls, exp = make([(1, h, 0, 1, 1, 0, 0, 0) for h in hosts])
        agg.add(b, cls, exp, ["192.0.2.1"], NOW)
        assert sorted((r.host, r.bytes) for r in agg.drain()) == sorted((h, 11) for h in hosts[:5])
        assert agg.dropped_bins >= 15  # each merge counts the keys it refuses


class _pending:
    """Bins merge once `n` rows are pending (and at least as many as they hold)."""

    def __init__(self, n: int):
        self.n = n

    def __enter__(self):
        from collector.aggregate import Bins
        self.old, Bins.PENDING = Bins.PENDING, self.n

    def __exit__(self, *exc):
        from collector.aggregate import Bins
        Bins.PENDING = self.old


def check_bins(batches, settle=False):
    agg = Aggregator(SERVICES, CATEGORIES, max_age=3600, max_skew=300)
    names = ["192.0.2.1", "192.0.2.2", "2001:db8::1"]
    expect: Counter = Counter()
    expect_if: Counter = Counter()
    for flows in batches:
        b, cls, exp = make(flows)
        agg.add(b, cls, exp, names, NOW)
        if settle:
            agg.settle()
        for svc, h, e, nbytes, pkts, dt, in_if, out_if in flows:
            t = NOW + dt if -3600 <= dt <= 300 else NOW
            key = (int(t // 60) * 60, names[e], SERVICES[svc], CATEGORIES[svc], h or "")
            expect[key + ("bytes",)] += nbytes
            expect[key + ("packets",)] += pkts
            expect[key + ("flows",)] += 1
            for ifindex, direction in ((in_if, "in"), (out_if, "out")):
                if ifindex:
                    k = (int(t // 60) * 60, names[e], ifindex, direction, SERVICES[svc])
                    expect_if[k + ("bytes",)] += nbytes
                    expect_if[k + ("packets",)] += pkts
                    expect_if[k + ("flows",)] += 1
    got_if: Counter = Counter()
    for r in agg.drain_interfaces(lambda exporter, ifindex: f"{exporter}/{ifindex}"):
        assert r.if_name == f"{r.exporter}/{r.if_index}"
        k = (r.bin, r.exporter, r.if_index, r.direction, r.service)
        got_if[k + ("bytes",)] += r.bytes
        got_if[k + ("packets",)] += r.packets
        got_if[k + ("flows",)] += r.flows
    assert +got_if == +expect_if
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
    per_exporter: Counter = Counter()
    for fl in batches:
        for svc, _, e, nbytes, *_ in fl:
            per_exporter[names[e], SERVICES[svc]] += nbytes
    got_totals = Counter({(e, s): b for (e, s, _), (b, _, _) in agg.service_totals().items()})
    assert +got_totals == +per_exporter


def _method(nbytes: int) -> int:
    return nbytes % len(METHODS)  # a method per flow, from its values (any will do)


def _violation(pkts: int, host) -> bool:
    return bool(host) and pkts % 2 == 1


@both_ways
@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(flow, min_size=1, max_size=60), min_size=1, max_size=4))
def test_methods_violations_and_totals_equal_a_plain_reduction(kernels_on, batches):
    """With the classifier's method and the policy's violations (what the daemon passes): each
    bin's flags, the totals per (exporter, service) and per (service, method) against plain sums."""
    with kernels.use(kernels_on):
        agg = Aggregator(SERVICES, CATEGORIES, max_age=3600, max_skew=300)
        names = ["192.0.2.1", "192.0.2.2", "2001:db8::1"]
        totals: Counter = Counter()
        methods: Counter = Counter()
        flagged: Counter = Counter()
        for flows in batches:
            b, cls, exp = make(flows)
            cls.method = np.array([_method(f[3]) for f in flows], np.uint8)
            violations = np.array([_violation(f[4], f[1]) for f in flows], bool)
            agg.add(b, cls, exp, names, NOW, violations)
            for svc, h, e, nbytes, pkts, *_ in flows:
                totals[names[e], SERVICES[svc]] += np.array([nbytes, pkts, 1], object)
                methods[SERVICES[svc], METHODS[_method(nbytes)]] += nbytes
                flagged[h or "", SERVICES[svc], METHODS[_method(nbytes)], _violation(pkts, h)] += nbytes
        got_totals = {(e, s): v for (e, s, _), v in agg.service_totals().items()}
        assert got_totals == {k: tuple(int(x) for x in v) for k, v in totals.items()}
        figures = agg.method_figures()["imflow_classified_bytes"][3]
        assert {(s, m): v for (s, _, m), v in figures.items() if v} == {k: v for k, v in methods.items() if v}
        got: Counter = Counter()
        for r in agg.drain():
            got[r.host, r.service, r.method, r.violation] += r.bytes
        assert +got == +flagged


@both_ways
def test_hosts_alike_in_their_low_32_bits_stay_apart(kernels_on):
    # IPv4 hosts are coded by their 32-bit value; IPv6 hosts ending in the same 32 bits must
    # not share their bins (the property test above rarely puts them in one bin)
    agg = Aggregator(SERVICES, CATEGORIES)
    flows = [(1, "10.0.0.1", 0, 10, 1, 0, 0, 0), (1, "fd00::a00:1", 0, 20, 1, 0, 0, 0),
             (1, "::a00:1", 0, 40, 1, 0, 0, 0), (1, "10.0.0.1", 0, 100, 1, 0, 0, 0)]
    b, cls, exp = make(flows)
    with kernels.use(kernels_on):
        agg.add(b, cls, exp, ["192.0.2.1"], NOW)
    assert sorted((r.host, r.bytes) for r in agg.drain()) == [("10.0.0.1", 110), ("::a00:1", 40), ("fd00::a00:1", 20)]


@both_ways
def test_minutes_after_2038_start_at_their_own_second(kernels_on):
    """The kernel gives minutes as int32 (minutes from the first); a bin's start in seconds
    passes 2^31 on 2038-01-19 and must not wrap, in the host bins nor the interface bins."""
    later = 2_300_000_000.0  # 2042-11
    b, cls, exp = make([(1, "10.0.0.1", 0, 10, 1, 0, 3, 0), (1, "10.0.0.2", 0, 20, 1, -61, 0, 4)])
    b.end[:] += later - NOW
    agg = Aggregator(SERVICES, CATEGORIES)
    with kernels.use(kernels_on):
        agg.add(b, cls, exp, ["192.0.2.1"], later)
    want = sorted(int(e) // 60 * 60 for e in b.end)
    assert want[0] > 2**31 and sorted(r.bin for r in agg.drain()) == want
    assert sorted(r.bin for r in agg.drain_interfaces()) == want


def test_drain_before_keeps_open_bins_and_restore_puts_rows_back():
    agg = Aggregator(SERVICES, CATEGORIES)
    b, cls, exp = make([(1, "10.0.0.1", 0, 100, 1, -120, 3, 0), (1, "10.0.0.1", 0, 50, 1, 0, 3, 0)])
    agg.add(b, cls, exp, ["192.0.2.1"], NOW)
    closed = agg.drain(before=NOW // 60 * 60)
    assert [(r.bytes, r.host) for r in closed] == [(100, "10.0.0.1")]
    agg.restore(closed)
    assert sorted(r.bytes for r in agg.drain()) == [50, 100]
    if_rows = agg.drain_interfaces()
    assert sorted((r.bytes, r.if_index, r.direction) for r in if_rows) == [(50, 3, "in"), (100, 3, "in")]
    agg.restore([], if_rows)
    agg.restore([], if_rows)
    assert sorted(r.bytes for r in agg.drain_interfaces()) == [100, 200]


def test_open_bin_ceiling_counts_what_it_drops():
    agg = Aggregator(SERVICES, CATEGORIES, max_open_bins=3)
    flows = [(1, f"10.0.0.{i}", 0, 10, 1, 0, 0, 0) for i in range(1, 6)]
    b, cls, exp = make(flows)
    agg.add(b, cls, exp, ["192.0.2.1"], NOW)
    assert agg.open_bins() == 3 and agg.dropped_bins == 2


def test_at_the_ceiling_open_bins_keep_adding_and_new_ones_are_dropped():
    agg = Aggregator(SERVICES, CATEGORIES, max_open_bins=3)
    b, cls, exp = make([(1, h, 0, 10, 1, 0, 0, 0) for h in ("10.0.0.1", "fd00::5", None)])
    agg.add(b, cls, exp, ["192.0.2.1"], NOW)
    assert agg.open_bins() == 3 and agg.dropped_bins == 0
    b, cls, exp = make([(1, h, 0, 5, 1, 0, 0, 0) for h in ("10.0.0.9", "fd00::5", "fd00::9", None)])
    agg.add(b, cls, exp, ["192.0.2.1"], NOW)
    assert agg.open_bins() == 3 and agg.dropped_bins == 2
    assert sorted((r.host, r.bytes) for r in agg.drain()) == [("", 15), ("10.0.0.1", 10), ("fd00::5", 15)]


def test_hosts_round_trip_text():
    assert addr_to_str(*addr_from_str("fd00::5")) == "fd00::5"
    assert addr_to_str(*addr_from_str("10.0.0.1")) == "10.0.0.1"


def test_totals_per_exporter_and_service_and_clamped_times_per_exporter():
    agg = Aggregator(SERVICES, CATEGORIES, max_age=3600, max_skew=300)
    # (service, host, exporter, bytes, packets, end - now, in_if, out_if); exporter 1's clock is a day off
    flows = [(1, "10.0.0.1", 0, 100, 1, 0, 0, 0), (1, "10.0.0.1", 1, 50, 1, -86400, 0, 0),
             (2, None, 1, 7, 1, 0, 0, 0), (1, "10.0.0.2", 0, 1, 1, 10**6, 0, 0)]
    b, cls, exp = make(flows)
    agg.add(b, cls, exp, ["192.0.2.1", "192.0.2.2"], NOW)
    assert agg.service_totals() == {("192.0.2.1", "msn", "im"): (101, 2, 2), ("192.0.2.2", "msn", "im"): (50, 1, 1),
                                    ("192.0.2.2", "bittorrent", "p2p"): (7, 1, 1)}
    assert agg.totals.clamped == 2
    assert agg.totals.clamped_by == {"192.0.2.1": 1, "192.0.2.2": 1}
    assert agg.service_bytes.tolist() == [0, 151, 7, 0]
    # a worker's rows add to the same totals; a reloaded catalogue keeps them
    agg.absorb(agg.drain())
    agg.set_services(SERVICES + ["new"], CATEGORIES + ["other"])
    assert agg.service_totals()[("192.0.2.1", "msn", "im")] == (202, 4, 4)
    assert agg.service_flows.tolist() == [0, 6, 2, 0, 0]
