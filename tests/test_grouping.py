"""collector.grouping against plain Python grouping, over key widths that take each of its
ways: a 32-bit packed sort, a 64-bit one (int64 and uint64), argsort, and lexsort."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.grouping import codes, dense, group_rows, unique_inverse

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
