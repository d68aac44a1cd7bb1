"""The aggregator's compiled per-flow columns (collector/kernels/_aggregate.c, `bin_columns`)
against its NumPy path: the same bins, flags, totals and clamp counts for random and hostile
batches (end times NaN, infinite, negative, far off; hosts IPv4, IPv6 and none; with and
without methods and violations), and the kernel's own outputs against the NumPy formulas."""

from __future__ import annotations

import numpy as np
import pytest

from collector import kernels
from collector.aggregate import BIN, Aggregator, host_codes
from collector.classify.classifier import Classified
from collector.netflow.batch import ADDR, FlowBatch

pytestmark = pytest.mark.skipif(not kernels.available() or not hasattr(kernels.built, "bin_columns"),
                                reason="the kernels were not built")

SERVICES = ["other", "msn", "bittorrent", "sip"]
CATEGORIES = ["other", "im", "p2p", "voip"]


def _batch(rng, n: int, now: float, v6: float, method: bool, violations: bool):
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
    b.in_if[:] = rng.choice([0, 1, 2, 70_000, 2**32 - 1], n)
    b.out_if[:] = rng.choice([0, 3, 2**31], n)
    has = rng.random(n) < 0.9
    host = np.zeros(n, ADDR)
    host["lo"] = np.uint64(0xFFFF_0000_0000) | rng.integers(0, 64, n, np.uint64)
    six = has & (rng.random(n) < v6)
    host["hi"][six] = np.uint64(0xFD00 << 48)
    host["lo"][six] = rng.integers(0, 64, six.sum(), np.uint64)  # alike in the low 32 bits to IPv4 ones
    host[~has] = 0
    cls = Classified(rng.integers(0, len(SERVICES), n).astype(np.uint16), host, has, has & (rng.random(n) < 0.5),
                     rng.integers(0, 7, n).astype(np.uint8) if method else None)
    exporters = rng.integers(0, 3, n).astype(np.uint32)
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
@pytest.mark.parametrize("extras", [(True, True), (False, False)], ids=["method-violations", "bare"])
def test_add_matches_numpy(now, n, v6, extras):
    rng = np.random.default_rng(n + int(v6 * 10))
    batches = [_batch(rng, n, now, v6, *extras) for _ in range(3)]
    assert _run(True, batches, now) == _run(False, batches, now)


def _numpy(end, lo, hi, now, method, has, vio, host):
    bad = ~((end >= lo) & (end <= hi))
    minute = np.floor(np.where(bad, now, end)).astype(np.int64) // BIN
    flag = has.astype(np.uint8)
    if method is not None:
        flag |= np.left_shift(method, np.uint8(2))
    if vio is not None:
        flag |= np.left_shift(vio.astype(np.uint8), np.uint8(1))
    codes, card = host_codes(host["hi"], host["lo"], has)
    m0 = int(minute.min()) if len(minute) else 0
    return int(bad.sum()), m0, minute - m0, flag, codes, card == 1 << 32


@pytest.mark.parametrize("n", [0, 1, 5, 1000])
def test_kernel_outputs_equal_the_numpy_formulas(n):
    rng = np.random.default_rng(n)
    now = 1_000.25
    end = rng.uniform(-10_000, 10_000, n)
    end[: n // 3] = -end[: n // 3] - 0.5  # negative seconds: a floor division, not a truncation
    method = rng.integers(0, 256, n).astype(np.uint8)  # shifted out past bit 7, as NumPy's uint8 does
    has = rng.random(n) < 0.5
    vio = rng.random(n) < 0.5
    host = np.zeros(n, ADDR)
    host["lo"][has] = np.uint64(0xFFFF_0000_0000) | rng.integers(0, 2**32, has.sum(), np.uint64)
    mrel, flag, code, other = (np.empty(n, np.int32), np.empty(n, np.uint8), np.empty(n, np.uint64),
                               np.empty(n, np.int32))
    got = kernels.built.bin_columns(end, now - 5000.0, now + 300.0, now, method, has.view(np.uint8),
                                    vio.view(np.uint8), host, mrel, flag, code, other)
    clamped, m0, rel, want_flag, codes, v4 = _numpy(end, now - 5000.0, now + 300.0, now, method, has, vio, host)
    assert got[0] == clamped and got[3] == 0 and v4
    if n:
        assert got[1] == m0 and got[2] == int(rel.max()) + 1
    assert np.array_equal(mrel, rel) and np.array_equal(flag, want_flag) and np.array_equal(code, codes)
    if n > 1:  # IPv6 hosts (and one that is, but has no host): their rows, for the caller to code
        host["hi"][:2], has[:2] = 1, [True, False]
        k = kernels.built.bin_columns(end, 0.0, 1.0, 0.5, None, has.view(np.uint8), None, host, mrel, flag, code,
                                      other)[3]
        assert other[:k].tolist() == [0]


def test_kernel_refuses_what_does_not_fit():
    n = 4
    args = [np.zeros(n), 0.0, 1.0, 0.5, None, np.zeros(n, np.uint8), None, np.zeros(n, ADDR), np.empty(n, np.int32),
            np.empty(n, np.uint8), np.empty(n, np.uint64), np.empty(n, np.int32)]
    assert kernels.built.bin_columns(*args)[0] == 0
    for i, bad in ((5, np.zeros(n - 1, np.uint8)), (8, np.empty(n, np.int64)), (7, np.zeros(n, np.uint64)),
                   (1, -2e11), (2, float("nan")), (3, 1e12),  # minutes past int32
                   (4, np.zeros(n + 1, np.uint8)), (11, np.empty(n, np.uint64)[:2])):
        wrong = list(args)
        wrong[i] = bad
        with pytest.raises(ValueError):
            kernels.built.bin_columns(*wrong)
    with pytest.raises(TypeError):
        kernels.built.bin_columns(*args[:-1])
    with pytest.raises(TypeError):
        kernels.built.bin_columns(args[0], "x", *args[2:])
