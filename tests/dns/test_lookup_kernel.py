"""View.lookup (collector/dns/table.py) by the compiled kernel (`learned` in
collector/kernels/_kernels.c) and by NumPy: every test runs both ways and checks the answers
against a dict of the table's entries; `test_compiled_equals_numpy` holds the two paths equal on
the same tables, and the hostile-argument tests call the kernel directly."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector import kernels
from collector.dns import table as dns_table
from collector.dns.table import EMPTY, build_view
from collector.netflow.batch import ADDR, V4_MAPPED
from tests.kernels import both_ways

NOW = 1_000.0


def random_addrs(rng: np.random.Generator, n: int) -> np.ndarray:
    """n distinct addresses, about half IPv4 (mapped), half IPv6."""
    out = np.zeros(n, ADDR)
    v4 = rng.random(n) < 0.5
    out["lo"][v4] = V4_MAPPED | rng.integers(0, 2**32, v4.sum(), dtype=np.uint64)
    out["hi"][~v4] = rng.integers(0, 2**64, (~v4).sum(), dtype=np.uint64)
    out["lo"][~v4] = rng.integers(0, 2**64, (~v4).sum(), dtype=np.uint64)
    return np.unique(out)


def table_of(addr: np.ndarray, rng: np.random.Generator, expired_share: float = 0.0):
    """(view, {(hi, lo): service index or 0 when expired at NOW})."""
    n = len(addr)
    service = rng.integers(1, 60, n).astype(np.uint16)
    expires = np.where(rng.random(n) < expired_share, NOW - rng.random(n) * 10, NOW + 1 + rng.random(n) * 600)
    expires[: min(n, 3)] = NOW  # exactly now: expired (expires > now is required)
    view = build_view(addr["hi"].copy(), addr["lo"].copy(), service, expires)
    model = {(int(h), int(lo)): (int(s) if e > NOW else 0)
             for h, lo, s, e in zip(addr["hi"], addr["lo"], service, expires, strict=True)}
    return view, model


def queries(rng: np.random.Generator, addr: np.ndarray, n: int) -> np.ndarray:
    """n addresses, about half of them from `addr` (repeats included), the rest random."""
    other = random_addrs(rng, n)
    if not len(addr):
        return other
    take = rng.random(len(other)) < 0.5
    other[take] = addr[rng.integers(0, len(addr), take.sum())]
    return other


def expected(model: dict, q: np.ndarray, rows: np.ndarray | None) -> list[int]:
    out = [model.get((int(h), int(lo)), 0) for h, lo in zip(q["hi"], q["lo"], strict=True)]
    if rows is not None:
        keep = set(rows.tolist())
        out = [v if i in keep else 0 for i, v in enumerate(out)]
    return out


@both_ways
@pytest.mark.parametrize("entries", [0, 1, 1_000, 100_000])
@pytest.mark.parametrize("expired_share", [0.0, 0.3])
@pytest.mark.parametrize("with_rows", [False, True])
def test_lookup_matches_the_entries(kernels_on, entries, expired_share, with_rows):
    rng = np.random.default_rng(entries * 7 + int(expired_share * 10) + with_rows)
    addr = random_addrs(rng, entries)
    view, model = table_of(addr, rng, expired_share) if len(addr) else (EMPTY, {})
    q = queries(rng, addr, 20_000)
    rows = np.sort(rng.choice(len(q), len(q) // 3, replace=False)) if with_rows else None
    with kernels.use(kernels_on):
        got = view.lookup(q, NOW, rows)
    assert got.dtype == np.uint16 and len(got) == len(q)
    assert got.tolist() == expected(model, q, rows)


@both_ways
def test_rows_empty_unsorted_and_repeated(kernels_on):
    rng = np.random.default_rng(5)
    addr = random_addrs(rng, 500)
    view, model = table_of(addr, rng)
    q = queries(rng, addr, 300)
    with kernels.use(kernels_on):
        assert not view.lookup(q, NOW, np.zeros(0, np.intp)).any()
        assert not view.lookup(q[:0], NOW).size
        rows = np.array([299, 0, 17, 17, 3], np.intp)
        assert view.lookup(q, NOW, rows).tolist() == expected(model, q, rows)
        rows32 = rows.astype(np.int32)  # another integer type: the same rows
        assert view.lookup(q, NOW, rows32).tolist() == expected(model, q, rows)


@both_ways
@pytest.mark.parametrize("masks", ["both", "none", "src only", "dst only"])
def test_pair_sides_and_masks_apart(kernels_on, masks):
    """lookup_pair on two different columns, each with its own skip mask (the classifier's
    internal masks, in no pattern: the kernel reads both sides of a row without branching on
    them): each side answers for its own address where its mask does not skip it, and `hits`
    are the rows where either side answered, in order."""
    rng = np.random.default_rng(len(masks))
    addr = random_addrs(rng, 3_000)
    view, model = table_of(addr, rng, 0.2)
    src, dst = queries(rng, addr, 8_000), queries(rng, addr, 8_000)
    n = min(len(src), len(dst))
    src, dst = src[:n], dst[:n]
    src_skip = rng.random(n) < 0.5 if masks in ("both", "src only") else None
    dst_skip = rng.random(n) < 0.5 if masks in ("both", "dst only") else None
    want_s = [0 if src_skip is not None and src_skip[i] else v for i, v in enumerate(expected(model, src, None))]
    want_d = [0 if dst_skip is not None and dst_skip[i] else v for i, v in enumerate(expected(model, dst, None))]
    with kernels.use(kernels_on):
        s, d, hits = view.lookup_pair(src, dst, NOW, src_skip, dst_skip)
    assert s.tolist() == want_s and d.tolist() == want_d
    assert hits.tolist() == [i for i in range(n) if want_s[i] or want_d[i]]
    assert 0 < len(hits) < n


def colliding(addr: np.ndarray) -> np.ndarray:
    """For every address, two others: one with the same fingerprint (the mixed key's low 32 bits
    equal, its high bits not), one with the same mixed key altogether (so the same home slot):
    the key high(hi) ^ lo is the same for (hi', lo ^ high(hi) ^ high(hi')), where high is the
    seeded part (`_high`: which addresses collide depends on the seed)."""
    hi, lo = addr["hi"], addr["lo"]
    same_fp = addr.copy()
    same_fp["lo"] = lo ^ np.uint64(1 << 40)
    same_key = addr.copy()
    other_hi = hi ^ np.uint64(0x2001_0DB8 << 32)
    same_key["hi"] = other_hi
    same_key["lo"] = dns_table.mix(hi, lo) ^ dns_table._high(other_hi)
    return np.concatenate([same_fp, same_key])


def test_colliding_addresses_hash_alike():
    addr = random_addrs(np.random.default_rng(3), 50)
    twins = colliding(addr)
    shift = np.uint64(64 - 12)
    fp, home = dns_table._hash(addr["hi"], addr["lo"], shift)
    fp2, home2 = dns_table._hash(twins["hi"], twins["lo"], shift)
    assert (fp2[:50] == fp).all() and (fp2[50:] == fp).all() and (home2[50:] == home).all()


@both_ways
@pytest.mark.parametrize("entries", [20, 5_000])
def test_every_entry_is_found_among_colliding_ones(kernels_on, entries):
    """Addresses with the same fingerprint or the same whole key as others in the table are each
    found with their own service (a probe goes past a slot of another address), and asked
    twins that are not in the table are not found."""
    rng = np.random.default_rng(entries + 7)
    base = random_addrs(rng, entries)
    addr = np.unique(np.concatenate([base, colliding(base)]))
    view, model = table_of(addr, rng, 0.2)
    strangers = colliding(colliding(base)[entries:])  # twins of twins: mostly not in the table
    with kernels.use(kernels_on):
        assert view.lookup(addr, NOW).tolist() == expected(model, addr, None)
        assert view.lookup(strangers, NOW).tolist() == expected(model, strangers, None)


@pytest.mark.skipif(not kernels.available(), reason="the kernels were not built")
@pytest.mark.parametrize("entries", [1, 200, 100_000])
def test_compiled_equals_numpy(entries):
    """The same answers from both paths, also where addresses collide (in the table and asked)."""
    rng = np.random.default_rng(entries)
    base = random_addrs(rng, entries)
    addr = np.unique(np.concatenate([base, colliding(base[: max(1, entries // 10)])]))
    view, _ = table_of(addr, rng, 0.2)
    q = np.concatenate([queries(rng, addr, 50_000), colliding(base[-50:])])
    for rows in (None, np.flatnonzero(rng.random(len(q)) < 0.6)):
        with kernels.use(True):
            compiled = view.lookup(q, NOW, rows)
        with kernels.use(False):
            reference = view.lookup(q, NOW, rows)
        assert np.array_equal(compiled, reference)
        assert compiled.any() or entries == 1  # (its 3 entries expire exactly now)


@both_ways
@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 40)), unique=True, max_size=60),
       st.lists(st.tuples(st.integers(0, 3), st.integers(0, 40)), max_size=60),
       st.floats(0, 2_000))
def test_property_small_tables(kernels_on, entries, asked, now):
    """Small address spaces (hi 0-3, lo 0-40, with the IPv4 prefix on hi 0): many repeats."""
    def as_addr(pairs):
        a = np.zeros(len(pairs), ADDR)
        a["hi"] = [h if h else 0 for h, _ in pairs]
        a["lo"] = [(V4_MAPPED | lo) if h == 0 else lo for h, lo in pairs]
        return a
    table = as_addr(entries)
    service = (np.arange(len(entries)) % 50 + 1).astype(np.uint16)
    expires = np.arange(len(entries), dtype=np.float64) * 37.0
    view = build_view(table["hi"].copy(), table["lo"].copy(), service, expires) if entries else EMPTY
    model = {(int(h), int(lo)): (int(s) if e > now else 0)
             for h, lo, s, e in zip(table["hi"], table["lo"], service, expires, strict=True)}
    q = as_addr(asked)
    with kernels.use(kernels_on):
        got = view.lookup(q, now)
    assert got.tolist() == expected(model, q, None)


# The kernel itself, given hostile arguments: an error, never a read outside the buffers.

needs_kernels = pytest.mark.skipif(not kernels.available(), reason="the kernels were not built")


def kernel_args(view, q, **over):
    n = len(q)
    args = {"src": q, "dst": q, "src_skip": None, "dst_skip": None, "keys": view.keys, "entries": view.entries,
            "filter": view.filter, "now": NOW, "seed": int(dns_table._SEED), "mix": int(dns_table._MIX),
            "spread": int(dns_table._SPREAD), "shift": int(view.shift), "fshift": int(view.fshift),
            "rounds": view.rounds, "out_src": np.zeros(n, np.uint16), "out_dst": np.zeros(n, np.uint16),
            "hits": np.zeros(n, np.int64)}
    args.update(over)
    return list(args.values())


@needs_kernels
@pytest.mark.parametrize("over, error", [
    ({"dst": np.zeros(11, ADDR)}, ValueError),  # src and dst differ in length
    ({"src_skip": np.zeros(9, bool)}, ValueError),  # shorter than the addresses
    ({"dst_skip": np.zeros(10, np.uint16)}, ValueError),  # not one-octet items
    ({"keys": np.zeros(1000, np.uint32)}, ValueError),  # not a power of two
    ({"keys": np.zeros(0, np.uint32)}, ValueError),
    ({"keys": np.zeros(1024, np.uint64)}, TypeError),
    ({"filter": np.zeros(100, np.uint64)}, ValueError),  # not a power of two
    ({"filter": np.zeros(0, np.uint64)}, ValueError),
    ({"filter": np.zeros(64, np.uint32)}, TypeError),
    ({"entries": np.zeros(512, dns_table.ENTRY)}, TypeError),  # fewer entries than slots
    ({"entries": np.zeros(1024, np.uint64)}, TypeError),
    ({"src": np.zeros(10, np.uint64)}, TypeError),
    ({"dst": np.zeros(20, ADDR)[::2]}, ValueError),  # not contiguous
    ({"out_src": np.zeros(5, np.uint16)}, ValueError),
    ({"out_dst": np.zeros(10, np.uint32)}, TypeError),
    ({"hits": np.zeros(9, np.int64)}, ValueError),
    ({"hits": np.zeros(10, np.int32)}, TypeError),
    ({"shift": 0}, ValueError),
    ({"shift": 64}, ValueError),
    ({"fshift": 0}, ValueError),
    ({"fshift": 64}, ValueError),
    ({"rounds": -1}, ValueError),
])
def test_kernel_refuses_bad_arguments(over, error):
    rng = np.random.default_rng(1)
    view, _ = table_of(random_addrs(rng, 100), rng)
    assert len(view.keys) == 1024
    with pytest.raises(error):
        kernels.built.learned(*kernel_args(view, np.zeros(10, ADDR), **over))
    with pytest.raises(TypeError):
        kernels.built.learned(*kernel_args(view, np.zeros(10, ADDR))[:-1])


@needs_kernels
def test_kernel_masks_every_slot():
    """A shift too small for the table, rounds past its size, a filter shift too small for the
    filter still read only inside them."""
    rng = np.random.default_rng(2)
    addr = random_addrs(rng, 100)
    view, model = table_of(addr, rng)
    q = queries(rng, addr, 1_000)
    out, hits = np.zeros(len(q), np.uint16), np.zeros(len(q), np.int64)
    full = np.full(len(view.filter), 2**64 - 1, np.uint64)  # every address passes the prefilter
    kernels.built.learned(*kernel_args(view, q, shift=1, fshift=1, rounds=5_000, out_src=out))  # garbage, no crash
    kernels.built.learned(*kernel_args(view, q, rounds=0, out_src=out, filter=full))
    assert not out.any()
    k = kernels.built.learned(*kernel_args(view, q, rounds=len(view.keys) * 3, out_src=out, filter=full,
                                           hits=hits))
    assert out.tolist() == expected(model, q, None)
    assert hits[:k].tolist() == np.flatnonzero(out).tolist()
