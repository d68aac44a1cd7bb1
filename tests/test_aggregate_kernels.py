"""The aggregator's compiled reduction (collector/kernels/_aggregate.c, `bins`) against its
NumPy path: the same bins, flags, totals and clamp counts for random and hostile batches (end
times NaN, infinite, negative, far off; hosts IPv4, IPv6 and none; with and without methods,
violations and interfaces; one exporter and several), and the kernel's own groups against a
grouping made here in plain Python; keys made to collide give None, not a wrong answer."""

from __future__ import annotations

import math

import numpy as np
import pytest

from collector import kernels
from collector.aggregate import _HOST_GROUPS, _IF_GROUPS, BIN, Aggregator, _columns
from collector.classify.classifier import Classified
from collector.netflow.batch import ADDR, FlowBatch

pytestmark = pytest.mark.skipif(not kernels.available() or not hasattr(kernels.built, "bins"),
                                reason="the kernels were not built")

SERVICES = ["other", "msn", "bittorrent", "sip"]
CATEGORIES = ["other", "im", "p2p", "voip"]


def _batch(rng, n: int, now: float, v6: float, method: bool, violations: bool, one: bool = False,
           interfaces: bool = True):
    b = FlowBatch.empty(n)
    b.bytes[:] = rng.integers(0, 2**64, n, np.uint64, endpoint=False)  # sums wrap
    b.packets[:] = rng.integers(0, 10**6, n)
    end = now + rng.uniform(-5000, 500, n)
    odd = rng.random(n)
    end[odd < 0.02] = np.nan
    end[(odd >= 0.02) & (odd < 0.04)] = np.inf
    end[(odd >= 0.04) & (odd < 0.06)] = -np.inf
    end[(odd >= 0.06) & (odd < 0.08)] = -1e300
    b.end[:] = end
    if interfaces:
        b.in_if[:] = rng.choice([0, 1, 2, 70_000, 2**32 - 1], n)
        b.out_if[:] = rng.choice([0, 3, 2**31], n)
    else:  # as the decoder leaves columns it did not fill: a view of one 0
        b.in_if = b.out_if = np.broadcast_to(np.uint32(0), n)
    has = rng.random(n) < 0.9
    host = np.zeros(n, ADDR)
    host["lo"] = np.uint64(0xFFFF_0000_0000) | rng.integers(0, 64, n, np.uint64)
    six = has & (rng.random(n) < v6)
    host["hi"][six] = np.uint64(0xFD00 << 48)
    host["lo"][six] = rng.integers(0, 64, six.sum(), np.uint64)  # alike in the low 32 bits to IPv4 ones
    host[~has] = 0
    cls = Classified(rng.integers(0, len(SERVICES), n).astype(np.uint16), host, has, has & (rng.random(n) < 0.5),
                     rng.integers(0, 7, n).astype(np.uint8) if method else None)
    exporters = 1 if one else rng.integers(0, 3, n).astype(np.uint32)
    return b, cls, exporters, (rng.random(n) < 0.3) if violations else None


def _run(on: bool, batches, now: float):
    with kernels.use(on):
        agg = Aggregator(SERVICES, CATEGORIES, max_age=3600, max_skew=300)
        for b, cls, exp, vio in batches:
            agg.add(b, cls, exp, ["a", "b", "c"], now, vio)
        bins = sorted(agg.drain())
        ifs = sorted(agg.drain_interfaces())
    return bins, ifs, agg.service_totals(), agg.method_totals.tolist(), agg.totals.clamped, agg.totals.clamped_by


@pytest.mark.parametrize("now", [1_764_000_000.0, 1_764_000_059.999, 0.0, -1_000_000.5, -59.0])
@pytest.mark.parametrize("n", [1, 2, 9, 3000])
@pytest.mark.parametrize("v6", [0.0, 0.2])
@pytest.mark.parametrize("extras", [(True, True, False, True), (False, False, True, False)],
                         ids=["method-violations-exporters", "bare-one-exporter-no-interfaces"])
def test_add_matches_numpy(now, n, v6, extras):
    rng = np.random.default_rng(n + int(v6 * 10))
    batches = [_batch(rng, n, now, v6, *extras) for _ in range(3)]
    got = _run(True, batches, now)
    assert got == _run(False, batches, now)
    assert got[0] and sum(r.flows for r in got[0]) == 3 * n  # every flow in a bin


def _plain(end, lo, hi, now, method, has, vio, host, service, exporters, b, p, in_if, out_if):
    """The kernel's groups made row by row in Python: (clamped, host groups, interface groups),
    each group a tuple of the layout's columns, in the order of their first rows."""
    clamped, hosts, ifs = 0, {}, {}
    for i in range(len(end)):
        e = float(end[i])
        if not lo <= e <= hi:
            clamped, e = clamped + 1, now
        minute = math.floor(e) // BIN * BIN
        x = int(exporters if np.isscalar(exporters) else exporters[i])
        flag = (int(has[i]) | (int(vio[i]) << 1 if vio is not None else 0)
                | (int(method[i]) << 2 if method is not None else 0)) & 0xFF
        h_hi, h_lo = int(host["hi"][i]), int(host["lo"][i])
        key = (minute, x, int(service[i]), flag) + ((h_hi, h_lo) if has[i] else (0, h_lo & 0xFFFF_FFFF))
        g = hosts.setdefault(key, [minute, h_hi, h_lo, 0, 0, 0, x, int(service[i]), flag])
        g[3], g[4], g[5] = (g[3] + int(b[i])) % 2**64, (g[4] + int(p[i])) % 2**64, g[5] + 1
        if in_if is not None and (in_if[i] or out_if[i]):
            key = (minute, x, int(service[i]), int(in_if[i]), int(out_if[i]))
            g = ifs.setdefault(key, [minute, 0, 0, 0, int(in_if[i]), int(out_if[i]), x, int(service[i])])
            g[1], g[2], g[3] = (g[1] + int(b[i])) % 2**64, (g[2] + int(p[i])) % 2**64, g[3] + 1
    return clamped, [tuple(g) for g in hosts.values()], [tuple(g) for g in ifs.values()]


def _rows(buf, k, layout):
    cols = _columns(buf, k, layout) if k else {name: [] for name, _ in layout}
    return list(zip(*(np.asarray(cols[name]).tolist() for name, _ in layout)))


def _inputs(rng, n: int, now: float, hosts: int, many: bool, extras: bool):
    end = now + rng.uniform(-4000, 400, n)
    end[rng.random(n) < 0.05] = np.nan
    end[: (n + 3) // 4] -= 1e7  # far in the past: replaced by now
    has = rng.random(n) < 0.8
    host = np.zeros(n, ADDR)
    host["lo"] = np.uint64(0xFFFF_0000_0000) | rng.integers(0, hosts, n, np.uint64)
    six = rng.random(n) < 0.2
    host["hi"][six], host["lo"][six] = rng.integers(1, 4, six.sum(), np.uint64), rng.integers(0, hosts, six.sum(),
                                                                                               np.uint64)
    host["lo"][~has & (rng.random(n) < 0.5)] |= np.uint64(0xAB << 40)  # a hostless row's stray high bits
    method = rng.integers(0, 256, n).astype(np.uint8) if extras else None
    vio = (rng.random(n) < 0.3).view(np.uint8) if extras else None
    return (end, now - 3600.0, now + 300.0, now, method, has.view(np.uint8), vio, host,
            rng.integers(0, 5, n).astype(np.uint16),
            rng.integers(0, 2**16, n).astype(np.uint32) if many else 7,
            rng.integers(0, 2**64, n, np.uint64, endpoint=False), rng.integers(0, 10**6, n).astype(np.uint64),
            *((rng.choice([0, 0, 1, 2**32 - 1], n).astype(np.uint32), rng.choice([0, 5], n).astype(np.uint32))
              if extras else (None, None)))


@pytest.mark.parametrize("n", [1, 7, 1000, 20_000])
@pytest.mark.parametrize("many", [True, False], ids=["exporters", "one-exporter"])
@pytest.mark.parametrize("extras", [True, False], ids=["methods-violations-interfaces", "bare"])
def test_kernel_groups_equal_a_plain_grouping(n, many, extras):
    rng = np.random.default_rng(n)
    now = -59.5 if n == 7 else 1_764_000_030.25  # before 1970 too: floor divisions, not truncations
    args = _inputs(rng, n, now, 6000 if n > 1000 else 40, many, extras)  # 20,000 rows: tables grown
    base = math.floor(min(args[1], now)) // BIN
    got = kernels.built.bins(*args[:4], base, *args[4:], 12345)
    clamped, hosts, ifs = _plain(*args)
    assert got[0] == clamped and clamped
    assert _rows(got[1], got[2], _HOST_GROUPS) == hosts
    if extras:
        assert _rows(got[3], got[4], _IF_GROUPS) == ifs and (ifs or n < 10)
    else:
        assert got[3] is None and got[4] == 0


def test_kernel_refuses_what_it_cannot_key():
    rng = np.random.default_rng(1)
    args = list(_inputs(rng, 50, 1000.0, 10, True, True))
    base = math.floor(args[1]) // BIN

    def call(a, b=base):
        return kernels.built.bins(*a[:4], b, *a[4:], 1)
    assert call(args)[2] >= 1
    with pytest.raises(ValueError, match="minute"):
        call(args, base + 30)  # flows before their base
    with pytest.raises(ValueError, match="minute"):
        call(args, base - (1 << 24))
    with pytest.raises(ValueError, match="base"):  # its first second past int64 otherwise
        call(args, -(1 << 60))
    wide = list(args)
    wide[9] = args[9].copy()
    wide[9][3] = 1 << 16
    with pytest.raises(ValueError, match="exporter"):
        call(wide)
    with pytest.raises(ValueError, match="exporter"):
        call(args[:9] + [1 << 16] + args[10:])
    for i, bad in ((0, args[0][:-1]), (5, args[5][:-1].copy()), (7, np.zeros(50, np.uint64)), (8, args[8][:-1]),
                   (9, args[9].astype(np.uint64)), (10, args[10][:-1]), (12, args[12][::2]), (1, 2e11), (3, 1e12)):
        wrong = list(args)
        wrong[i] = bad
        with pytest.raises(ValueError):
            call(wrong)
    with pytest.raises(TypeError):
        kernels.built.bins(*args)


def test_keys_made_to_collide_give_none_and_the_aggregator_still_counts_them(monkeypatch):
    """Hosts chosen (knowing the seed, as no exporter does) so that their hashes share the
    table's first slot: the probe sequence passes MAX_PROBE, the kernel keeps nothing and says
    None, and the aggregator groups the batch the NumPy way, losing no flow."""
    seed, base, service = 99, 28_000_000, 3
    k1, k2, k3 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xC2B2AE3D27D4EB4F), np.uint64(0x165667B19E3779F9)
    with np.errstate(over="ignore"):  # the kernel's hash (collector/kernels/_aggregate.c), replayed
        a = np.uint64(service << 8 | 1)  # minute 0 from the base, exporter 0, flag 1 (a host)
        s = np.uint64(seed)
        lo = np.uint64(0xFFFF_0000_0000) | np.arange(1 << 20, dtype=np.uint64)
        h = (a ^ s) * k1 ^ (lo + (s ^ k3) * k1) * k2 ^ s * k3
    same = lo[(h >> np.uint64(52)) == 0][:80]  # the first slot of the table's 4,096
    assert len(same) == 80
    n = len(same)
    host = np.zeros(n, ADDR)
    host["lo"] = same
    args = (np.full(n, base * 60 + 1.0), base * 60.0, base * 60 + 59.0, base * 60 + 1.0, base, None,
            np.ones(n, np.uint8), None, host, np.full(n, service, np.uint16), 0, np.ones(n, np.uint64),
            np.ones(n, np.uint64), None, None, seed)
    assert kernels.built.bins(*args) is None
    # the same rows through the aggregator, with its seed made this one
    monkeypatch.setattr("collector.aggregate.SEED", seed)
    b = FlowBatch.empty(n)
    b.end[:], b.bytes[:], b.packets[:] = base * 60 + 1.0, 1, 1
    cls = Classified(np.full(n, service, np.uint16), host, np.ones(n, bool), np.ones(n, bool), None)
    agg = Aggregator(SERVICES, CATEGORIES)
    agg.add(b, cls, 0, ["a"], base * 60 + 1.0)
    rows = agg.drain()
    assert len(rows) == n and sum(r.flows for r in rows) == n


def test_totals_add_each_group_once_and_refuse_rows_outside_the_tables():
    """`totals` against sums made here row by row (wrapping at 2^64); a row outside either
    table is an IndexError before anything is added."""
    rng = np.random.default_rng(5)
    k, n_exp, n_svc, n_met = 500, 3, 4, 7
    cols = (rng.integers(0, n_exp, k).astype(np.uint32), rng.integers(0, n_svc, k).astype(np.uint16),
            (rng.integers(0, n_met, k) << 2 | rng.integers(0, 4, k)).astype(np.uint8),
            rng.integers(0, 2**64, k, np.uint64, endpoint=False), rng.integers(0, 2**40, k).astype(np.uint64),
            rng.integers(0, 100, k).astype(np.uint64))
    et, mt = np.zeros((n_exp, n_svc, 3), np.uint64), np.zeros((n_svc, n_met, 3), np.uint64)
    want_e, want_m = {}, {}
    for e, s, f, *sums in zip(*(c.tolist() for c in cols)):
        for want, key in ((want_e, (e, s)), (want_m, (s, f >> 2))):
            want[key] = [(a + b) % 2**64 for a, b in zip(want.get(key, [0, 0, 0]), sums)]
    kernels.built.totals(*cols, et, mt)
    assert {key: et[key].tolist() for key in want_e} == want_e and int(et.astype(bool).sum()) <= 3 * len(want_e)
    assert {key: mt[key].tolist() for key in want_m} == want_m and int(mt.astype(bool).sum()) <= 3 * len(want_m)
    for bad in ((0, n_exp), (1, n_svc), (2, n_met << 2)):  # exporter, service, method one past the table
        col = cols[bad[0]].copy()
        col[k // 2] = bad[1]
        before_e, before_m = et.copy(), mt.copy()
        with pytest.raises(IndexError, match="outside the tables"):
            kernels.built.totals(*cols[:bad[0]], col, *cols[bad[0] + 1:], et, mt)
        assert (et == before_e).all() and (mt == before_m).all()
    with pytest.raises(ValueError):  # a table not (rows, columns, 3)
        kernels.built.totals(*cols, np.zeros((n_exp, n_svc * 3), np.uint64), mt)
