"""Equivalence with plain dict sums: random rows in several flushes (repeats included) give the
same per-key totals in every rollup and through `top`, over any range; prune deletes exactly
the bins older than retention."""

from __future__ import annotations

import os
import tempfile
from collections import Counter

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.store import Store, query
from tests.store.helpers import T0, WIDTHS, expected, row, run, table_contents

SERVICES = {"msn": "im", "bittorrent": "p2p", "sip": "voip"}
HOSTS = ["10.0.0.1", "10.0.0.2", "192.168.5.5", "fd00::1", ""]
SPAN = 3 * 86400

rows_st = st.builds(
    lambda minute, second, exporter, service, host, nbytes, packets, flows: row(
        T0 + minute * 60 + second, host=host, service=service, category=SERVICES[service],
        exporter=exporter, nbytes=nbytes, packets=packets, flows=flows),
    st.integers(0, SPAN // 60 - 1), st.sampled_from([0, 0, 59]), st.sampled_from(["192.0.2.1", "2001:db8::1"]),
    st.sampled_from(sorted(SERVICES)), st.sampled_from(HOSTS), st.integers(0, 10**12),
    st.integers(0, 10**9), st.integers(0, 1000))
flushes_st = st.lists(st.lists(rows_st, max_size=25), min_size=1, max_size=4).map(
    lambda fl: fl + [fl[0][:3]])  # a restart re-sends part of the first flush
FORCE = {"minute": {"minute": float("inf")}, "hour": {"minute": 1, "hour": float("inf")},
         "day": {"minute": 1, "hour": 1, "day": float("inf")}}
NOW = T0 + SPAN


def write_all(path, flushes, **kw):
    async def go():
        store = Store(path, clock=lambda: NOW, **kw)
        await store.start()
        for flush in flushes:
            await store.write(flush)
        result = await store.prune() if "retention" in kw else None
        await store.stop()
        return result
    return run(go())


def expected_top(rows, width, start, end):
    sums: dict[tuple, Counter] = {}
    lo = None if start is None else start // width * width
    for r in rows:
        b = r.bin - r.bin % width
        if (lo is None or b >= lo) and (end is None or b < end):
            c = sums.setdefault((r.host, r.service), Counter())
            c.update(bytes=r.bytes, packets=r.packets, flows=r.flows)
    out = [{"host": h, "service": s, "bytes": c["bytes"], "packets": c["packets"], "flows": c["flows"]}
           for (h, s), c in sums.items()]
    return sorted(out, key=lambda d: (-d["bytes"], d["host"], d["service"]))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flushes=flushes_st, window=st.tuples(st.integers(0, SPAN), st.integers(0, SPAN)),
       open_start=st.booleans())
def test_rollups_and_top_equal_dict_sums(flushes, window, open_start):
    rows = [r for flush in flushes for r in flush]
    start, end = T0 + min(window), T0 + max(window)
    start = None if open_start else start
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "imflow.db")
        write_all(path, flushes)
        for res, width in WIDTHS.items():
            assert table_contents(path, res) == expected(rows, width)
            got = query.top(path, start, end, by=("host", "service"), limit=None, now=NOW,
                            retention=FORCE[res])
            total = sum(r["bytes"] for r in got)
            for r in got:  # the share of each row is of the whole selection
                assert r.pop("share_pct") == (100.0 * r["bytes"] / total if total else 0.0)
            assert got == expected_top(rows, width, start, end), res


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flushes=flushes_st, minute=st.integers(60, 2 * 86400), hour=st.integers(3600, 3 * 86400),
       day=st.integers(86400, 4 * 86400))
def test_prune_deletes_exactly_the_old_bins(flushes, minute, hour, day):
    rows = [r for flush in flushes for r in flush]
    retention = {"minute": minute, "hour": hour, "day": day}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "imflow.db")
        deleted = write_all(path, flushes, retention=retention)
        for res, width in WIDTHS.items():
            cutoff = (NOW - retention[res]) // width * width
            full = expected(rows, width)
            kept = {k: v for k, v in full.items() if k[0] >= cutoff}
            assert table_contents(path, res) == kept
            assert deleted[res] == len(full) - len(kept)
