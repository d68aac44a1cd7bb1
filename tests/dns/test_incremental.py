"""The learned-address table changed in place (collector/dns/table.py: View.apply, the expiry
heap, the prefilter): after any sequence of answers, evictions, expiries and views, every lookup
equals a plain dict model kept by this test (not the table's own dict), both with the compiled
kernel and in NumPy; the prefilter never hides an entry; nothing grows without bound under a flood;
and a view with nothing to change costs no pass over the table."""

from __future__ import annotations

import random

import numpy as np
import pytest

from collector import kernels
from collector.classify.catalogue import load_catalogue
from collector.dns import table as dns_table
from collector.dns.table import LearnedAddresses, build_view
from collector.netflow.batch import ADDR, V4_MAPPED
from tests.dns.test_lookup_kernel import colliding, random_addrs
from tests.kernels import both_ways

CAT = load_catalogue()
IDS = [s.id for s in CAT.services[1:]]


def as_addr(pairs) -> np.ndarray:
    a = np.zeros(len(pairs), ADDR)
    a["hi"] = [p[0] for p in pairs]
    a["lo"] = [p[1] for p in pairs]
    return a


def model_answer(model: dict, pairs, now: float) -> list[int]:
    """The service index each address should get: its last answer's service while now <
    expiry, else 0."""
    out = []
    for p in pairs:
        sid, expires = model.get(p, (None, 0.0))
        out.append(CAT.by_id[sid].index if sid is not None and expires > now else 0)
    return out


@both_ways
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_changes_match_a_model(kernels_on, seed):
    """Answers (new, repeated, another service, another TTL) over a small address space, a
    ceiling that evicts, time moving on so entries expire: after every view, the lookups of every
    address ever seen (and strangers) are the model's. The model keeps the LRU order itself."""
    rng = random.Random(seed)
    cap, grace = 400, 5.0
    t = LearnedAddresses(max_entries=cap, grace=grace, rebuild_every=1.0)
    model: dict[tuple[int, int], tuple[str, float]] = {}  # insertion order = learning order
    space = [(0, V4_MAPPED | (0xC0000200 + i)) for i in range(700)] + \
            [(0x2001_0DB8_0000_0000 | rng.getrandbits(16), rng.getrandbits(64)) for _ in range(300)]
    strangers = [(0, V4_MAPPED | (0xCB007100 + i)) for i in range(200)]
    now = 0.0
    views = set()
    with kernels.use(kernels_on):
        for step in range(40):
            for _ in range(rng.choice([0, 5, 50, 300])):
                a = rng.choice(space)
                sid = rng.choice(IDS[:5])
                ttl = rng.choice([0, 1, 3, 30, 600])
                t.learn(a[0], a[1], sid, ttl, now)
                # the model: TTL + grace, most recent last, oldest out past the ceiling, expired
                # entries gone before they are counted against it only when purged (as the table)
                value = (sid, now + ttl + grace)
                model.pop(a, None)
                model[a] = value
            now += rng.choice([0.3, 1.0, 2.5, 7.0])
            view = t.view(CAT.by_id, now, force=True)  # (else changes wait up to rebuild_every)
            views.add(id(view))
            # the model's ceiling: the table evicts the least recently learned among the entries
            # it still holds (expired ones are purged only at a view): compare holdings directly
            held = {k: v for k, v in model.items() if k in t.entries}
            assert all(t.entries[k] == v for k, v in held.items())
            asked = list(model) + strangers
            got = view.lookup(as_addr(asked), now).tolist()
            assert got == model_answer(held, asked, now), step
            assert len(t) <= cap
            assert len(view) == sum(1 for _, e in t.entries.values())  # every held entry is live in it
    assert len(views) > 1  # it was rebuilt at least once (grew) ...


def test_no_pass_over_the_table_without_changes():
    """A view with nothing learned and nothing expiring since is the same object, and taking it
    touches no entry: the per-second work is in proportion to the changes."""
    t = LearnedAddresses(max_entries=50_000, grace=0)
    for i in range(50_000):
        t.learn(0, V4_MAPPED | (0x0A000000 + i), "whatsapp", 3600, 0.0)
    v = t.view(CAT.by_id, 0.0)
    t.entries = _Untouchable(t.entries)  # any read of the table's entries fails the test
    for second in range(1, 20):
        assert t.view(CAT.by_id, float(second)) is v
    assert len(v) == 50_000


class _Untouchable(dict):
    def __init__(self, d):
        super().__init__(d)

    def __iter__(self):
        raise AssertionError("a pass over the table")

    items = values = keys = __iter__


@both_ways
def test_prefilter_never_hides_an_entry(kernels_on):
    """100k entries, half of them put in by changes after the table was built, with colliding
    twins among them: every one is found with its service, every filter bit of an entry is set,
    and the filter lets through few strangers."""
    rng = np.random.default_rng(19)
    base = random_addrs(rng, 100_000)
    base = np.unique(np.concatenate([base, colliding(base[:2_000])]))
    n = len(base)
    service = rng.integers(1, 60, n).astype(np.uint16)
    expires = np.full(n, 2_000.0)
    half = n // 2
    view = build_view(base["hi"][:half].copy(), base["lo"][:half].copy(), service[:half], expires[:half],
                      room=n)
    assert view.apply(base["hi"][half:].copy(), base["lo"][half:].copy(), service[half:], expires[half:])
    assert len(view) == n
    _, _, word, bits = dns_table._place(base["hi"], base["lo"], view.shift, view.fshift, len(view.filter))
    assert ((view.filter[word] & bits) == bits).all()
    with kernels.use(kernels_on):
        assert np.array_equal(view.lookup(base, 1_000.0), service)
        strangers = random_addrs(np.random.default_rng(7), 200_000)
        strangers = strangers[~np.isin(strangers, base)]
        assert not view.lookup(strangers, 1_000.0).any()
    _, _, word, bits = dns_table._place(strangers["hi"], strangers["lo"], view.shift, view.fshift, len(view.filter))
    assert ((view.filter[word] & bits) == bits).mean() < 0.05  # 16 filter bits an entry: ~1-2%


@both_ways
def test_removed_slots_and_revived_addresses(kernels_on):
    """Entries removed in place (dead slots) are not found, the addresses probing past them are,
    and an address that comes back takes its old slot."""
    rng = np.random.default_rng(4)
    base = random_addrs(rng, 3_000)
    addr = np.unique(np.concatenate([base, colliding(base)]))  # long probe chains
    n = len(addr)
    service = rng.integers(1, 60, n).astype(np.uint16)
    view = build_view(addr["hi"].copy(), addr["lo"].copy(), service, np.full(n, 50.0), room=n)
    gone = rng.random(n) < 0.5
    assert view.apply(addr["hi"][gone], addr["lo"][gone], np.zeros(gone.sum(), np.uint16),
                      np.zeros(gone.sum()))
    used = view.used
    with kernels.use(kernels_on):
        assert view.lookup(addr, 10.0).tolist() == np.where(gone, 0, service).tolist()
        back = gone & (rng.random(n) < 0.5)
        assert view.apply(addr["hi"][back], addr["lo"][back], service[back] % 7 + 1, np.full(back.sum(), 60.0))
        assert view.used == used  # they took their old slots
        want = np.where(gone & ~back, 0, np.where(back, service % 7 + 1, service))
        assert view.lookup(addr, 10.0).tolist() == want.tolist()
        assert view.lookup(addr, 55.0).tolist() == np.where(back, service % 7 + 1, 0).tolist()  # expiry
        assert len(view) == int((want != 0).sum())


def test_a_flood_stays_bounded():
    """Ten times the ceiling of distinct addresses, applied a second at a time: the table holds
    the ceiling, its arrays stay within 8 slots an entry, the expiry heap and the pending
    changes within their bounds."""
    cap = 5_000
    t = LearnedAddresses(max_entries=cap, grace=0)
    for second in range(50):
        for i in range(1_000):
            t.learn(0, V4_MAPPED | (second * 1_000 + i), "signal", 60, float(second))
        assert len(t._pending) <= cap + 1_000
        v = t.view(CAT.by_id, second + 0.5)
        assert len(t) <= cap and len(v) == len(t)
        assert len(v.keys) <= 8 * 4 * cap and 3 * v.used <= len(v.keys)
        assert len(t._expiry) <= 2 * len(t) + 1024
    assert t.counters.evicted + t.counters.expired == 50_000 - len(t)


@both_ways
def test_a_table_turned_over_in_one_second(kernels_on):
    """More changes than half the table in one second (the view is then built from the table
    instead): the new addresses are found, the evicted ones not."""
    cap = 10_000
    t = LearnedAddresses(max_entries=cap, grace=0)
    old = [(0, V4_MAPPED | (0x0A000000 + i)) for i in range(cap)]
    new = [(0, V4_MAPPED | (0x0B000000 + i)) for i in range(cap)]
    for a in old:
        t.learn(*a, "whatsapp", 600, 0.0)
    v1 = t.view(CAT.by_id, 0.0)
    for a in new:
        t.learn(*a, "signal", 600, 0.5)
    v2 = t.view(CAT.by_id, 1.0)
    assert v2 is not v1 and t.counters.evicted == cap
    with kernels.use(kernels_on):
        got = v2.lookup(as_addr(old + new), 1.0)
    assert got.tolist() == [0] * cap + [CAT.by_id["signal"].index] * cap
