"""Range tables against brute force over random nested prefixes, both families."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector import kernels
from collector.classify.ranges import RangeTable, elementary
from collector.netflow.batch import ADDR, V4_MAPPED
from tests.kernels import both_ways

U64 = (1 << 64) - 1


def combine(tags):
    """Longest prefix wins; among equals the smallest value (any deterministic rule will do)."""
    if not tags:
        return 0
    longest = max(plen for plen, _ in tags)
    return min(v for plen, v in tags if plen == longest)


def prefixes(width):
    # Prefixes clustered around a few bases so that they nest, touch and split table cells.
    bases = [0, 0x0A00_0000, 0xC0A8_0000, 0xFFFF_FFFF]
    def make(args):
        plen, base, noise, value = args
        addr = ((bases[base] << (width - 32)) ^ noise) & ((1 << width) - 1)
        first = addr & ~((1 << (width - plen)) - 1) if plen < width else addr
        return first, first + (1 << (width - plen)) - 1, (plen, value)
    v6_lengths = [0, 3, 16, 17, 32, 33, 48, 63, 64, 65, 100, 128]
    lengths = st.integers(0, width) if width == 32 else st.sampled_from(v6_lengths)
    return st.tuples(lengths, st.integers(0, 3), st.integers(0, (1 << width) - 1) | st.integers(0, 1 << 20),
                     st.integers(1, 9)).map(make)


def check(width, strides, items, extra_keys):
    starts, values = elementary(items, width, combine)
    table = RangeTable(starts, values, width, strides)
    keys = set(extra_keys) | {0, (1 << width) - 1}
    for first, last, _ in items:
        keys |= {first, last, max(first - 1, 0), min(last + 1, (1 << width) - 1)}
    keys = sorted(keys)
    expected = [combine([tag for first, last, tag in items if first <= k <= last]) for k in keys]
    if width == 32:
        got = table.lookup(np.array(keys, np.uint32))
        check_addr(table, keys, expected)
    else:
        got = table.lookup(np.array([k >> 64 for k in keys], np.uint64),
                           np.array([k & U64 for k in keys], np.uint64))
    assert got.tolist() == expected


def check_addr(table, keys, expected):
    """`lookup_addr` (by the compiled kernel when they are on) on an ADDR column of the keys as
    IPv4-mapped addresses, with IPv6 ones (zero, ::ffff:0:0/96's neighbours, a v4-compatible
    one) between them."""
    six = [(0, 0), (0, 0xFFFE_0A00_0001), (1, 0xFFFF_0A00_0001), (0x2001_0DB8 << 32, 7), (0, 0x0A00_0001)]
    addr = np.zeros(len(keys) + len(six), ADDR)
    pos = np.arange(len(keys)) + np.minimum(np.arange(len(keys)), len(six))  # interleaved
    addr["lo"][pos] = np.array(keys, np.uint64) | V4_MAPPED
    other = np.setdiff1d(np.arange(len(addr)), pos)
    addr["hi"][other] = [h for h, _ in six]
    addr["lo"][other] = [lo for _, lo in six]
    values, rows = table.lookup_addr(addr)
    assert values[pos].tolist() == expected
    assert rows.tolist() == other.tolist() and not values[other].any()


@both_ways
@settings(max_examples=150, deadline=None)
@given(st.lists(prefixes(32), max_size=25), st.lists(st.integers(0, 2**32 - 1), max_size=20))
def test_ipv4_table(kernels_on, items, keys):
    with kernels.use(kernels_on):
        check(32, (16, 8), items, keys)


@settings(max_examples=150, deadline=None)
@given(st.lists(prefixes(128), max_size=25), st.lists(st.integers(0, 2**128 - 1), max_size=20))
def test_ipv6_table(items, keys):
    check(128, (16, 16), items, keys)  # NumPy only: the kernel looks up IPv4 tables


def test_elementary_merges_equal_neighbours():
    starts, values = elementary([(0, 9, (28, 1)), (10, 19, (28, 1)), (20, 29, (28, 2))], 32, combine)
    assert (starts, values) == ([0, 20, 30], [1, 2, 0])


def test_lookup4_refuses_a_level1_pointer_past_level2():
    """The compiled lookup (the range lookup it shares with the classify kernel, _kernels.h)
    says so instead of reading past level2, and the same table with the pointer mended reads."""
    if not kernels.available():
        pytest.skip("kernels not built")
    t = RangeTable([0, 0x0A00_0000, 0x0A00_0080], [0, 5, 0], 32, (16, 8))
    addr = np.zeros(2, ADDR)
    addr["lo"] = np.array([0x0A00_0001, 0x0B00_0001], np.uint64) | V4_MAPPED
    out, other = np.empty(2, np.uint16), np.empty(2, np.uint8)
    args = (t.starts, t.values, t.s1, t.s2, out, other)
    assert kernels.built.lookup4(addr, t.level1, t.level2, *args) == 0
    assert out.tolist() == [5, 0]
    bad = t.level1.copy()
    bad[0x0A00] = 0x8000 | 0x7FFF  # the row of 10.0.0.0/16 points past level2
    with pytest.raises(ValueError, match="past level2"):
        kernels.built.lookup4(addr, bad, t.level2, *args)
