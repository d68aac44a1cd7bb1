"""The learned-address table (collector/dns/table.py): TTL + grace, the LRU ceiling, counters,
and the view the classifier reads, checked against a plain dict model of the same answers."""

from __future__ import annotations

import ipaddress
import random

import numpy as np

from collector.classify.catalogue import load_catalogue
from collector.dns.table import LearnedAddresses
from collector.netflow.batch import ADDR, addr_from_str

CAT = load_catalogue()


def addrs(texts) -> np.ndarray:
    out = np.zeros(len(texts), ADDR)
    for i, t in enumerate(texts):
        out[i] = addr_from_str(t)
    return out


def service_ids(table, texts, now) -> list[str]:
    view = table.view(CAT.by_id, now, force=True)
    return [CAT.services[i].id for i in view.lookup(addrs(texts), now)]


def test_ttl_plus_grace_then_gone():
    t = LearnedAddresses(grace=30)
    t.learn(*addr_from_str("192.0.2.1"), "whatsapp", 60, now=1000.0)
    t.learn(*addr_from_str("2001:db8::1"), "signal", 10, now=1000.0)
    assert service_ids(t, ["192.0.2.1", "2001:db8::1", "192.0.2.2"], 1039.9) == ["whatsapp", "signal", "other"]
    assert service_ids(t, ["192.0.2.1", "2001:db8::1"], 1041.0) == ["whatsapp", "other"]
    assert service_ids(t, ["192.0.2.1"], 1090.0) == ["other"]
    assert t.counters.expired == 2 and len(t) == 0


def test_ceiling_evicts_least_recently_learned():
    t = LearnedAddresses(max_entries=3, grace=0)
    for i in range(3):
        t.learn(*addr_from_str(f"198.51.100.{i}"), "telegram", 300, now=0.0)
    t.learn(*addr_from_str("198.51.100.0"), "telegram", 300, now=1.0)  # refreshed: to the back
    t.learn(*addr_from_str("198.51.100.9"), "zoom", 300, now=2.0)
    assert len(t) == 3 and t.counters.evicted == 1 and t.counters.refreshed == 1
    assert service_ids(t, ["198.51.100.0", "198.51.100.1", "198.51.100.2", "198.51.100.9"], 3.0) == [
        "telegram", "other", "telegram", "zoom"]


def test_ttl_capped_and_clients_bounded():
    t = LearnedAddresses(grace=0, max_ttl=100, max_clients=2)
    for i in range(5):
        t.learn(*addr_from_str("192.0.2.7"), "line", 10_000, now=0.0, client=f"10.0.0.{i}")
    assert service_ids(t, ["192.0.2.7"], 99.0) == ["line"]
    assert service_ids(t, ["192.0.2.7"], 101.0) == ["other"]
    assert len(t.clients) == 2 and t.counters.clients_dropped == 3


def test_view_matches_a_dict_model_on_random_addresses():
    rng = random.Random(19)
    t = LearnedAddresses(max_entries=50_000, grace=0)
    model = {}
    ids = [s.id for s in CAT.services[1:]]
    for _ in range(20_000):
        if rng.random() < 0.5:
            a = str(ipaddress.IPv4Address(rng.getrandbits(32)))
        else:
            a = str(ipaddress.IPv6Address(rng.getrandbits(128)))
        sid = rng.choice(ids)
        t.learn(*addr_from_str(a), sid, 600, now=0.0)
        model[a] = sid
    probe = list(model)[:5000] + [str(ipaddress.IPv4Address(rng.getrandbits(32))) for _ in range(5000)]
    got = service_ids(t, probe, 1.0)
    assert got == [model.get(a, "other") for a in probe]


def test_view_rebuilt_at_most_once_per_interval():
    t = LearnedAddresses(rebuild_every=1.0)
    t.learn(*addr_from_str("192.0.2.1"), "whatsapp", 60, now=0.0)
    v1 = t.view(CAT.by_id, 0.0)
    t.learn(*addr_from_str("192.0.2.2"), "whatsapp", 60, now=0.1)
    assert t.view(CAT.by_id, 0.5) is v1  # not yet
    assert len(t.view(CAT.by_id, 1.1)) == 2
