"""collector.kernels.grouping against plain Python grouping, over key widths that take each of its
ways: a 32-bit packed sort, a 64-bit one (int64 and uint64), argsort, and lexsort."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector import kernels
from collector.kernels import grouping
from collector.kernels.grouping import codes, dense, distinct, group_rows, group_sums, sole, unique_inverse
from tests.kernels import both_ways

# cardinalities per column: small ones pack into 32 bits, 2^40 and 2^62 into 64, two of 2^62 overflow
CARDS = [1, 2, 3, 300, 1 << 16, 1 << 40, 1 << 62]


@st.composite
def columns(draw):
    n = draw(st.integers(1, 300))
    cards = draw(st.lists(st.sampled_from(CARDS), min_size=1, max_size=4))
    cols = []
    for card in cards:
        # few distinct values, so groups are big enough to matter, spread over the range
        pool = draw(st.lists(st.integers(0, card - 1), min_size=1, max_size=5))
        picks = draw(st.lists(st.integers(0, len(pool) - 1), min_size=n, max_size=n))
        cols.append((np.array([pool[i] for i in picks], np.uint64), card))
    return cols


@settings(max_examples=300, deadline=None)
@given(columns())
def test_groups_are_the_distinct_keys_in_order(cols):
    n = len(cols[0][0])
    rows = [tuple(int(c[i]) for c, _ in cols) for i in range(n)]
    order, starts = group_rows(cols)
    assert sorted(order.tolist()) == list(range(n))  # a permutation
    keys = [rows[i] for i in order.tolist()]
    assert keys == sorted(keys)  # grouped in key order
    bounds = starts.tolist() + [n]
    assert [keys[a] for a in bounds[:-1]] == sorted(set(rows))  # one group per distinct key
    for a, b in zip(bounds, bounds[1:]):
        assert len(set(keys[a:b])) == 1
    got = codes(order, starts)
    index = {k: i for i, k in enumerate(sorted(set(rows)))}
    assert got.tolist() == [index[r] for r in rows]


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 5000), st.sampled_from([2, 300, 1 << 16, 1 << 20, 1 << 40]), st.integers(0, 2**32))
def test_unique_inverse_equals_numpy(n, size, seed):
    rng = np.random.default_rng(seed)
    col = rng.choice(rng.integers(0, size, 7), n).astype(np.int64)
    values, inverse = unique_inverse(col, size)
    want_values, want_inverse = np.unique(col, return_inverse=True)
    assert values.tolist() == want_values.tolist()
    assert inverse.tolist() == want_inverse.ravel().tolist()
    code, k = dense(col, size)
    assert k == len(want_values) and code.tolist() == want_inverse.ravel().tolist()


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 5000), st.sampled_from([2, 300, 1 << 16, 1 << 40]), st.integers(0, 2**32),
       st.sampled_from(["same", "first", "middle", "last"]))
def test_unique_inverse_of_one_value(n, size, seed, odd):
    """A column of one value (a batch from one exporter) and columns of one value but one row,
    which must not take the one-value shortcut."""
    rng = np.random.default_rng(seed)
    v = int(rng.integers(0, size))
    col = np.full(n, v, np.int64)
    if odd != "same" and n > 1:
        col[{"first": 0, "middle": n // 2, "last": n - 1}[odd]] = (v + 1) % size
    values, inverse = unique_inverse(col, size)
    want_values, want_inverse = np.unique(col, return_inverse=True)
    assert values.dtype == col.dtype
    assert values.tolist() == want_values.tolist()
    assert inverse.tolist() == want_inverse.ravel().tolist()


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 6000), st.integers(1, 30_000), st.sampled_from([np.int64, np.uint64, np.uint32]),
       st.integers(0, 2**32))
def test_unique_inverse_of_values_close_together(n, spread, dtype, seed):
    """Values far from 0 but close together (a batch's (session, set id) pairs), up to the
    top of the type, against NumPy."""
    rng = np.random.default_rng(seed)
    top = int(np.iinfo(dtype).max)
    low = random.Random(seed).randrange(top - spread + 2)
    col = dtype(low) + rng.integers(0, spread, n).astype(dtype)
    values, inverse = unique_inverse(col, top)
    want_values, want_inverse = np.unique(col, return_inverse=True)
    assert values.dtype == col.dtype
    assert values.tolist() == want_values.tolist()
    assert inverse.tolist() == want_inverse.ravel().tolist()


# --- grouped sums: the compiled kernel and the NumPy way, each against plain Python ----------

DTYPES = [np.uint8, np.uint16, np.uint32, np.int64, np.uint64]


def plain_group_sums(cols, values):
    """{key: ([sums], rows)} the slow, obvious way."""
    out = {}
    for i in range(len(cols[0][0])):
        key = tuple(int(c[i]) for c, _ in cols)
        sums, n = out.get(key, ([0] * len(values), 0))
        out[key] = ([(s + int(v[i])) % (1 << 64) for s, v in zip(sums, values)], n + 1)
    return out


def as_dict(cols, rows, sums, counts):
    """`group_sums`' result keyed by the key of the row it names for each group."""
    return {tuple(int(c[r]) for c, _ in cols): ([int(s[g]) for s in sums], int(counts[g]))
            for g, r in enumerate(rows.tolist())}


@both_ways
@settings(max_examples=200, deadline=None)
@given(columns(), st.data())
def test_group_sums_equal_plain_sums(kernels_on, cols, data):
    n = len(cols[0][0])
    dtypes = [data.draw(st.sampled_from([d for d in DTYPES if np.iinfo(d).max >= card - 1]))
              for _, card in cols]
    cols = [(c.astype(d), card) for (c, card), d in zip(cols, dtypes)]
    # sums that wrap: values up to 2^64 - 1
    values = [np.array(data.draw(st.lists(st.integers(0, 2**64 - 1), min_size=n, max_size=n)), np.uint64)
              for _ in range(data.draw(st.integers(0, 3)))]
    with kernels.use(kernels_on):
        first, sums, counts = grouping.group_sums(cols, values)
    assert as_dict(cols, first, sums, counts) == plain_group_sums(cols, values)
    assert len(first) == len(plain_group_sums(cols, values))  # one row per group, none twice


@both_ways
def test_group_sums_with_many_groups(kernels_on):
    """Past the kernel's first table (4,096 slots, kept at most half full) it grows."""
    rng = np.random.default_rng(5)
    cols = [(rng.integers(0, 1 << 20, 30_000).astype(np.uint32), 1 << 20), (rng.integers(0, 3, 30_000), 3)]
    values = [rng.integers(0, 1 << 40, 30_000).astype(np.uint64)]
    with kernels.use(kernels_on):
        first, sums, counts = grouping.group_sums(cols, values)
    assert len(first) > 20_000
    assert as_dict(cols, first, sums, counts) == plain_group_sums(cols, values)


def _mix(x):
    """The kernel's hash (collector/kernels/_kernels.c `mix`), for keys made to collide."""
    x = x ^ (x >> np.uint64(33))
    x = x * np.uint64(0xFF51AFD7ED558CCD)
    x = x ^ (x >> np.uint64(33))
    x = x * np.uint64(0xC4CEB9FE1A85EC53)
    return x ^ (x >> np.uint64(33))


@pytest.mark.skipif(not kernels.available(), reason="the kernel was not built")
def test_keys_sharing_a_slot_stay_apart(monkeypatch):
    """Keys that hash to one slot of the kernel's first table are told apart by the whole key:
    pairs one bit apart, and a chain of 40 in one slot."""
    monkeypatch.setattr(grouping, "SEED", 0)
    keys = np.arange(1 << 20, dtype=np.uint64)
    with np.errstate(over="ignore"):
        slots = _mix(keys) & np.uint64(4095)
    pairs = keys[(slots[::2] == slots[1::2]).repeat(2)]  # x and x ^ 1 in one slot
    chain = keys[slots == slots[0]][:40]
    assert len(pairs) > 100 and len(chain) == 40
    col = np.concatenate([pairs, chain, chain[::-1], pairs]).astype(np.uint64)
    cols = [(col, 1 << 20)]
    values = [np.arange(len(col), dtype=np.uint64)]
    with kernels.use(True):
        got = grouping.group_sums(cols, values)
    assert as_dict(cols, *got) == plain_group_sums(cols, values)


@pytest.mark.skipif(not kernels.available(), reason="the kernel was not built")
def test_keys_made_to_collide_fall_back_to_the_sort(monkeypatch):
    """Keys an attacker made to share one slot (knowing the seed) cost the kernel a bounded
    probe, then the batch is grouped by the sort: same result."""
    monkeypatch.setattr(grouping, "SEED", 0)
    keys = np.arange(1 << 20, dtype=np.uint64)
    with np.errstate(over="ignore"):
        slots = _mix(keys) & np.uint64(4095)
    same = keys[slots == slots[0]][:100]  # ~256 candidates share it
    assert len(same) == 100
    col = np.repeat(same, 3)
    cols, values = [(col, 1 << 20)], [np.ones(len(col), np.uint64)]
    first, sums, counts = np.empty(len(col), np.int64), (np.empty(len(col), np.uint64),), np.empty(len(col), np.uint64)
    with kernels.use(True):
        assert kernels.compiled.group_sums(((col, 1 << 20),), (values[0],), first, sums, counts, 0) == -1
        got = grouping.group_sums(cols, values)
        # with another seed the same keys spread out
        assert kernels.compiled.group_sums(((col, 1 << 20),), (values[0],), first, sums, counts, 12345) == 100
    assert as_dict(cols, *got) == plain_group_sums(cols, values)


@pytest.mark.skipif(not kernels.available(), reason="the kernel was not built")
def test_kernel_refuses_wrong_buffers():
    k = kernels.built
    ok = np.zeros(4, np.uint64)
    with pytest.raises(TypeError):
        k.group_sums(((np.zeros(4, np.float64), 2),), (), ok, (), ok, 0)
    # outputs shorter than the rows are room for that many groups: more groups give -3
    assert k.group_sums(((np.zeros(4, np.uint8), 2),), (), np.zeros(2, np.int64), (), ok, 0) == 1
    assert k.group_sums(((np.arange(4, dtype=np.uint8), 4),), (), np.zeros(2, np.int64), (), ok, 0) == -3
    with pytest.raises(TypeError):
        k.group_sums(((np.zeros(4, np.uint8), 2),), (np.zeros(4, np.uint32),), ok, (ok,), ok, 0)
    with pytest.raises(ValueError):
        k.group_sums(((np.zeros(4, np.uint8), 2), (np.zeros(3, np.uint8), 2)), (), ok, (), ok, 0)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 400), st.integers(1, 50), st.integers(1, 300), st.integers(0, 2**32 - 1))
def test_group_sums_with_little_room_equals_numpy(n, card, room, seed):
    """Room for fewer groups than the batch holds: grouped again with room for all, the same
    groups and sums as NumPy's way."""
    rng = np.random.default_rng(seed)
    cols = [(rng.integers(0, card, n).astype(np.uint16), card), (rng.integers(0, 3, n).astype(np.uint8), 3)]
    vals = [rng.integers(0, 2**40, n, dtype=np.uint64)]
    with kernels.use(True):
        first, (sums,), counts = group_sums(cols, vals, room=room)
    with kernels.use(False):
        ref_first, (ref_sums,), ref_counts = group_sums(cols, vals)
    got = sorted(zip((tuple(int(c[f]) for c, _ in cols) for f in first), sums.tolist(), counts.tolist()))
    ref = sorted(zip((tuple(int(c[f]) for c, _ in cols) for f in ref_first), ref_sums.tolist(), ref_counts.tolist()))
    assert got == ref


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 3), max_size=40), st.integers(1, 3))
def test_sole_is_one_distinct_value(values, step):
    """`sole` against a set of the values, on columns, strided views and views of one value."""
    col = np.array(values, np.uint32)
    for c in (col, col[::step], np.broadcast_to(col[:1], (len(values),)) if values else col):
        assert sole(c) == (len(set(c.tolist())) == 1)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-(2**63), 2**63 - 1), max_size=60), st.sampled_from([np.int64, np.uint32, np.float64]))
def test_distinct_is_the_sorted_set(values, dtype):
    col = np.array(values, np.int64).astype(dtype)
    got = distinct(col)
    assert got.dtype == col.dtype
    assert got.tolist() == sorted(set(col.tolist()))
