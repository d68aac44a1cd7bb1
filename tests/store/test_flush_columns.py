"""The flush as columns (issue 21): what reaches the SQLite rollups, the method and interface
rollups, the telemetry and a supervisor's aggregator, against sums computed here flow by flow
with plain dicts from the flows the test made; and a refused write keeps every bin until a
later flush writes it (the fault is real: another connection holds the write lock)."""

from __future__ import annotations

import asyncio
import contextlib
import pickle
import sqlite3
from collections import Counter

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from collector import config as C
from collector.aggregate import Aggregator
from collector.classify.classifier import METHODS, Classified
from collector.daemon.app import App
from collector.daemon.telemetry import Health, Telemetry
from collector.metrics import Metrics
from collector.netflow.batch import ADDR, FlowBatch, addr_from_str
from collector.store import Store

SERVICES = ["other", "msn", "bittorrent", "sip", "zoom"]
CATEGORIES = ["other", "im", "p2p", "voip", "collab"]
EXPORTERS = ["192.0.2.9", "192.0.2.1", "2001:db8::1"]  # not in text order: ranks differ from indexes
HOSTS = ["10.0.0.1", "10.0.0.2", "fd00::5", "::a00:1", "10.0.0.10", "9.9.9.9", None]
NOW = 1_767_225_600.0 + 3 * 3600 + 59  # the last second of a minute: flows spread over 11 minutes, 2 hours
WIDTHS = {"1m": 60, "1h": 3600, "1d": 86400}

# (service, host, exporter, bytes, packets, seconds before NOW, in_if, out_if, method, violation)
flow = st.tuples(st.sampled_from(range(len(SERVICES))), st.sampled_from(HOSTS), st.sampled_from(range(3)),
                 st.integers(0, 10**12), st.integers(0, 10**6), st.integers(0, 600), st.sampled_from([0, 1, 7]),
                 st.sampled_from([0, 2, 70_000]), st.sampled_from(range(len(METHODS))), st.booleans())


def add(agg: Aggregator, flows) -> None:
    n = len(flows)
    b = FlowBatch.empty(n)
    host = np.zeros(n, ADDR)
    has = np.zeros(n, bool)
    for i, (svc, h, e, nbytes, pkts, ago, in_if, out_if, m, v) in enumerate(flows):
        b.bytes[i], b.packets[i], b.end[i], b.in_if[i], b.out_if[i] = nbytes, pkts, NOW - ago, in_if, out_if
        if h:
            host[i] = addr_from_str(h)
            has[i] = True
    cls = Classified(np.array([f[0] for f in flows], np.uint16), host, has, has.copy(),
                     method=np.array([f[8] for f in flows], np.uint8))
    agg.add(b, cls, np.array([f[2] for f in flows], np.uint32), EXPORTERS, NOW,
            violations=np.array([f[9] for f in flows], bool))


def expected(flows) -> dict[str, dict]:
    """Every table's rows, summed flow by flow: {table: {key: values}}."""
    out: dict[str, dict] = {}
    for svc, h, e, nbytes, pkts, ago, in_if, out_if, m, v in flows:
        minute = int(NOW - ago) // 60 * 60
        for suffix, width in WIDTHS.items():
            b = minute - minute % width
            key = (b, EXPORTERS[e], SERVICES[svc], h or "")
            c = out.setdefault(f"rollup_{suffix}", {}).setdefault(key, Counter())
            c.update(bytes=nbytes, packets=pkts, flows=1)
            c["violation"] = max(c["violation"], int(v))
            c["category"] = CATEGORIES[svc]
            c = out.setdefault(f"method_rollup_{suffix}", {}).setdefault(
                (b, EXPORTERS[e], SERVICES[svc], METHODS[m]), Counter())
            c.update(bytes=nbytes, packets=pkts, flows=1)
            c["category"] = CATEGORIES[svc]
            for ifindex, direction in ((in_if, "in"), (out_if, "out")):
                if ifindex:
                    c = out.setdefault(f"if_rollup_{suffix}", {}).setdefault(
                        (b, EXPORTERS[e], ifindex, direction, SERVICES[svc]), Counter())
                    c.update(bytes=nbytes, packets=pkts, flows=1)
                    c["category"] = CATEGORIES[svc]
                    c["if_name"] = f"{EXPORTERS[e]}/{ifindex}"
    return {t: {k: dict(c) for k, c in rows.items()} for t, rows in out.items()}


def stored(path) -> dict[str, dict]:
    queries = {
        "rollup": ("SELECT bin, exporter, service, host, bytes, packets, flows, violation, category FROM {}",
                   4, ("bytes", "packets", "flows", "violation", "category")),
        "method_rollup": ("SELECT bin, exporter, service, method, bytes, packets, flows, category FROM {}",
                          4, ("bytes", "packets", "flows", "category")),
        "if_rollup": ("SELECT bin, exporter, if_index, direction, service, bytes, packets, flows, category, if_name"
                      " FROM {}", 5, ("bytes", "packets", "flows", "category", "if_name")),
    }
    out: dict[str, dict] = {}
    with contextlib.closing(sqlite3.connect(path)) as conn:
        for prefix, (sql, nkey, names) in queries.items():
            for suffix in WIDTHS:
                table = f"{prefix}_{suffix}"
                rows = conn.execute(sql.format(table)).fetchall()
                if rows:
                    out[table] = {r[:nkey]: dict(zip(names, r[nkey:])) for r in rows}
    return out


def without_zero_violations(tables: dict) -> dict:
    """Counters leave out zeros: the expected rows have no violation key when it is 0."""
    return {t: {k: {n: v for n, v in vals.items() if not (n == "violation" and v == 0)} for k, vals in rows.items()}
            for t, rows in tables.items()}


def _aggregator() -> Aggregator:
    return Aggregator(SERVICES, CATEGORIES, max_age=3600, max_skew=300)


async def _write(path, *parts) -> None:
    store = Store(str(path))
    await store.start()
    try:
        for bins, if_bins in parts:
            await store.write(bins, if_bins)
    finally:
        await store.stop()


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(flow, min_size=1, max_size=40), min_size=1, max_size=3))
def test_columns_store_what_the_flows_add_up_to(tmp_path_factory, batches):
    """Several batches into one aggregator, one flush as columns: every rollup row (minute,
    hour, day; traffic, method, interface) equals the flows' plain sums."""
    agg = _aggregator()
    for flows in batches:
        add(agg, flows)
    path = tmp_path_factory.mktemp("flush") / "imflow.db"
    bins = agg.drain_columns()
    if_bins = agg.drain_interface_columns(lambda exporter, ifindex: f"{exporter}/{ifindex}")
    asyncio.run(_write(path, (bins, if_bins)))
    assert without_zero_violations(stored(path)) == without_zero_violations(expected(sum(batches, [])))


@settings(max_examples=15, deadline=None)
@given(st.lists(flow, min_size=1, max_size=40), st.lists(flow, min_size=1, max_size=40))
def test_rows_and_columns_and_two_flushes_add_up_alike(tmp_path_factory, first, second):
    """The first flush handed in as rows (a caller that still makes them), the second as
    columns, into one database: the sums of both, as the flows say."""
    path = tmp_path_factory.mktemp("flush") / "imflow.db"
    agg = _aggregator()
    add(agg, first)
    rows = agg.drain()
    if_rows = agg.drain_interfaces(lambda exporter, ifindex: f"{exporter}/{ifindex}")
    add(agg, second)
    parts = [(rows, if_rows),
             (agg.drain_columns(), agg.drain_interface_columns(lambda exporter, ifindex: f"{exporter}/{ifindex}"))]
    asyncio.run(_write(path, *parts))
    assert without_zero_violations(stored(path)) == without_zero_violations(expected(first + second))


@settings(max_examples=25, deadline=None)
@given(st.lists(flow, min_size=1, max_size=60))
def test_a_supervisor_absorbs_a_workers_columns_through_a_pipe(flows):
    """A worker's flush sends its columns pickled; the supervisor, whose exporter and service
    codes differ (it heard other exporters first), ends with the flows' bins and totals."""
    worker = _aggregator()
    add(worker, flows)
    sent = pickle.loads(pickle.dumps(worker.drain_columns()))
    sent_ifs = pickle.loads(pickle.dumps(worker.drain_interface_columns(lambda e, i: f"{e}/{i}")))
    supervisor = Aggregator(list(reversed(SERVICES)), list(reversed(CATEGORIES)))
    supervisor._exporter("198.51.100.1")
    supervisor._exporter("2001:db8::1")
    supervisor.absorb(sent, sent_ifs)
    want = expected(flows)
    got: dict = {}
    for r in supervisor.drain():  # a host's bins with and without a violation are two bins
        c = got.setdefault((r.bin, r.exporter, r.service, r.host), Counter())
        c.update(bytes=r.bytes, packets=r.packets, flows=r.flows)
    assert {k: (c["bytes"], c["packets"], c["flows"]) for k, c in got.items()} == \
        {k: (v.get("bytes", 0), v.get("packets", 0), v["flows"]) for k, v in want["rollup_1m"].items()}
    got_if = Counter()
    for r in supervisor.drain_interfaces(lambda e, i: f"{e}/{i}"):
        got_if[(r.bin, r.exporter, r.if_index, r.direction, r.service, r.if_name)] += r.bytes
    assert got_if == Counter({k + (v["if_name"],): v["bytes"] for k, v in want.get("if_rollup_1m", {}).items()
                              if v["bytes"]})
    totals = Counter()
    for svc, h, e, nbytes, pkts, *_ in flows:
        totals[(EXPORTERS[e], SERVICES[svc], CATEGORIES[svc])] += nbytes
    assert {k: v[0] for k, v in supervisor.service_totals().items() if v[0]} == {k: v for k, v in totals.items() if v}


def test_telemetry_from_columns_counts_what_the_flows_say():
    flows = [(1, "10.0.0.1", 0, 100, 1, 0, 0, 0, 1, False), (1, "10.0.0.1", 0, 50, 1, 10, 0, 0, 2, True),
             (2, "10.0.0.2", 1, 40, 1, 0, 0, 0, 1, True), (2, "10.0.0.2", 1, 7, 1, 120, 0, 0, 1, False),
             (3, None, 2, 9, 1, 0, 0, 0, 0, False), (1, "fd00::5", 0, 5, 1, 0, 0, 0, 1, False)]
    agg = _aggregator()
    add(agg, flows)
    t = Telemetry(Metrics(), Health(), set())
    t.count(agg.drain_columns(), [])
    hosts = Counter()
    violations = Counter()
    newest = max(int(NOW - ago) // 60 for *_, ago, _i, _o, _m, _v in flows)
    active: dict = {}
    for svc, h, e, nbytes, pkts, ago, *_, v in flows:
        key = (EXPORTERS[e], SERVICES[svc], CATEGORIES[svc])
        if h:
            hosts[(EXPORTERS[e], h, SERVICES[svc], CATEGORIES[svc])] += nbytes
            if int(NOW - ago) // 60 == newest:
                active.setdefault(key, set()).add(h)
        if v:
            violations[key] += nbytes
    assert t.metrics.hosts.series == dict(hosts)
    assert t.violations == dict(violations)
    assert t.active_hosts == {k: len(v) for k, v in active.items()}


def test_a_refused_write_keeps_every_bin_and_a_later_flush_writes_them(tmp_path):
    """Another connection holds the write lock: the flush fails (counted), the bins stay in
    the aggregator, more arrive; once the lock is gone the next flush writes all of them."""
    path = tmp_path / "imflow.db"
    cfg = C.validate({"store": {"path": str(path)}, "collector": {"listen": ["127.0.0.1:0"]}})
    first = [(1, "10.0.0.1", 0, 100, 2, 0, 1, 2, 1, False), (2, "fd00::5", 1, 40, 1, 61, 0, 2, 2, True),
             (3, None, 2, 9, 1, 0, 7, 0, 0, False)]
    second = [(1, "10.0.0.1", 0, 11, 1, 0, 1, 2, 1, False), (4, "10.0.0.2", 0, 5, 1, 0, 0, 0, 3, False)]

    async def main():
        app = App(cfg, clock=lambda: NOW, store=Store(str(path), busy_timeout=0.05, clock=lambda: NOW))
        app.aggregator.set_services(SERVICES, CATEGORIES)
        await app.start()
        try:
            add(app.aggregator, first)
            held = app.aggregator.open_bins()
            lock = sqlite3.connect(path, isolation_level=None)
            lock.execute("BEGIN IMMEDIATE")
            assert await app.flush() is True  # refused: kept for the next flush
            assert app.health.store_errors == 1
            assert app.aggregator.open_bins() == held
            add(app.aggregator, second)
            lock.execute("ROLLBACK")
            lock.close()
            assert await app.flush() is True
            assert app.health.store_errors == 1 and app.aggregator.open_bins() == 0
        finally:
            app.intake.close()
            await app.store.stop()

    asyncio.run(main())
    want = expected(first + second)
    for rows in want.get("if_rollup_1m", {}), want.get("if_rollup_1h", {}), want.get("if_rollup_1d", {}):
        for v in rows.values():
            v["if_name"] = v["if_name"].rsplit("/", 1)[1]  # no SNMP and no options data: the index
    assert without_zero_violations(stored(path)) == without_zero_violations(want)


def test_telemetry_at_the_host_series_ceiling_folds_the_rest_into_other():
    """max_host_series 3: the series equal plain `HostSeries.add`s of the flush's per-key sums
    in key order (exporter, service, host text), the rest in each exporter's "other" host."""
    from collector.metrics import HostSeries

    flows = [(svc, h, e, 10 * (i + 1), 1, 60 * (i % 3), 0, 0, 1, i % 4 == 0)
             for i, (svc, h, e) in enumerate((svc, h, e) for svc in (1, 2) for h in HOSTS[:-1] for e in (0, 2))]
    agg = _aggregator()
    add(agg, flows)
    t = Telemetry(Metrics(max_host_series=3), Health(), set())
    t.count(agg.drain_columns(), [])
    sums = Counter()
    for svc, h, e, nbytes, *_ in flows:
        sums[(e, svc, h)] += nbytes
    reference = HostSeries(3)
    for e, svc, h in sorted(sums):
        reference.add(EXPORTERS[e], h, SERVICES[svc], CATEGORIES[svc], sums[(e, svc, h)])
    assert t.metrics.hosts.series == reference.series
    assert sum(t.metrics.hosts.series.values()) == sum(f[3] for f in flows)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(flow, min_size=0, max_size=40), min_size=1, max_size=3), st.integers(0, 8))
def test_telemetry_series_over_several_flushes_equal_plain_adds_in_key_order(flushes, ceiling):
    """Flush after flush (series the flush has and has not, hosts that left, the ceiling met
    or not), the host and violation series equal plain `HostSeries.add`s of each flush's
    per-key sums in key order (exporter, service, host text), and the violations the flows'
    sums: the columns' vectorised adds against the one-key-at-a-time reference."""
    from collector.metrics import HostSeries

    t = Telemetry(Metrics(max_host_series=ceiling), Health(), set())
    hosts, violation_hosts, violations = HostSeries(ceiling), HostSeries(ceiling), Counter()
    for flows in flushes:
        agg = _aggregator()
        if flows:
            add(agg, flows)
        t.count(agg.drain_columns(), [])
        sums, vsums = Counter(), Counter()
        for svc, h, e, nbytes, *_, v in flows:
            if h:
                sums[(e, svc, h)] += nbytes
            if v:
                vsums[(e, svc, h or "")] += nbytes
                violations[(EXPORTERS[e], SERVICES[svc], CATEGORIES[svc])] += nbytes
        for reference, per_key in ((hosts, sums), (violation_hosts, vsums)):
            for e, svc, h in sorted(per_key):
                reference.add(EXPORTERS[e], h, SERVICES[svc], CATEGORIES[svc], per_key[(e, svc, h)])
        assert t.metrics.hosts.series == hosts.series
        assert t.metrics.violation_hosts.series == violation_hosts.series
        assert t.violations == {k: v for k, v in violations.items()}
