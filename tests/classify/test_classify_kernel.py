"""The classifier's compiled pass (collector/kernels/_classify.c) against its NumPy path: the
same service, host, sides and method for every flow of random and hostile batches, on
catalogues with identical and nested prefixes, ASNs, learned addresses and application ids
(the rows the kernel leaves to NumPy, and the later steps that patch its rows)."""

from __future__ import annotations

import ipaddress

import numpy as np
import pytest

from collector import kernels
from collector.classify import asn as asn_data
from collector.classify.catalogue import load_catalogue
from collector.classify.classifier import Classifier, _port_blocks
from collector.dns.table import LearnedAddresses
from collector.netflow.batch import ADDR, addr_from_str
from tests.classify.test_classifier import CUSTOM, SHIPPED

pytestmark = pytest.mark.skipif(not kernels.available() or not hasattr(kernels.built, "classify"),
                                reason="the kernels were not built")

SNAP = asn_data.parse_snapshot("# date: 2026-12-01\n64500 203.0.113.0/24\n64501 198.51.100.0/24\n"
                               "64501 2001:db8:77::/48\n", "test")
WITH_ASN = load_catalogue(extra={"service": [{"id": "zoom", "asns": [64500]},
                                             {"id": "whatsapp", "asns": [64501]},
                                             {"id": "messenger", "asns": [64501]}]})
LEARNED = {"192.0.2.80": "signal", "149.154.167.50": "whatsapp", "2001:db8::53": "threema", "10.9.9.9": "signal"}


def _pool(catalogue) -> list[tuple[int, int]]:
    """Addresses at and around every prefix's edges, internal ones, the learned ones and odd ones."""
    texts = {"0.0.0.0", "255.255.255.255", "::", "::1", "ffff::1", "::ffff:0:1", "10.0.0.1", "192.168.1.1",
             "100.64.0.1", "fd00::1", "fc00::", "172.31.255.255", *LEARNED}
    out = {addr_from_str(t) for t in texts}
    for s in catalogue.services:
        for net in s.networks:
            first, last = int(net.network_address), int(net.broadcast_address)
            for value in (first, last, (first + last) // 2, first - 1, last + 1):
                if 0 <= value < 1 << net.max_prefixlen:
                    a = ipaddress.ip_address(value) if net.version == 4 else ipaddress.IPv6Address(value)
                    out.add(addr_from_str(str(a)))
    return sorted(out)


def _batch(rng, catalogue, n: int):
    pool = np.array(_pool(catalogue), ADDR)

    def addrs():
        out = pool[rng.integers(0, len(pool), n)]
        kind = rng.integers(0, 4, n)
        v4 = kind == 1  # random IPv4 (mapped)
        out["hi"][v4] = 0
        out["lo"][v4] = np.uint64(0xFFFF_0000_0000) | rng.integers(0, 1 << 32, v4.sum(), np.uint64)
        v6 = kind == 2  # random 128 bits, now and then IPv4-mapped-like in the low half only
        out["hi"][v6] = rng.integers(0, 1 << 64, v6.sum(), np.uint64, endpoint=False)
        out["lo"][v6] = rng.integers(0, 1 << 64, v6.sum(), np.uint64, endpoint=False)
        return out

    ports = np.array([0, 1, 80, 443, 1863, 3478, 5222, 7000, 7011, 8801, 9000, 32767, 32768, 65535], np.uint16)

    def port():
        return np.where(rng.random(n) < 0.5, ports[rng.integers(0, len(ports), n)],
                        rng.integers(0, 65536, n)).astype(np.uint16)

    proto = np.array([6, 17, 132, 1, 0, 47, 255], np.uint8)[rng.integers(0, 7, n)]
    app = np.where(rng.random(n) < 0.1, rng.choice([5, 6, 77, (13 << 56) | 453], n), 0).astype(np.uint64)
    return addrs(), addrs(), port(), port(), proto, app


def _both(classifier, cols, now=50.0):
    out = []
    for on in (True, False):
        with kernels.use(on):
            r = classifier.classify(*cols[:5], app_id=cols[5], session=np.zeros(len(cols[0]), np.uint32), now=now)
        out.append(r)
    return out


def _same(a, b):
    for f in ("service", "host", "has_host", "host_is_src", "method"):
        x, y = getattr(a, f), getattr(b, f)
        assert x.dtype == y.dtype, f
        assert np.array_equal(x, y), (f, np.flatnonzero(x != y)[:10])


def _learned():
    t = LearnedAddresses(grace=10)
    for text, sid in LEARNED.items():
        t.learn(*addr_from_str(text), sid, 60, now=0.0)
    return t


@pytest.mark.parametrize("case", ["shipped", "custom", "asn", "learned-and-app-ids"])
@pytest.mark.parametrize("n", [0, 1, 2, 7, 5000])
def test_kernel_matches_numpy(case, n):
    catalogue = {"shipped": SHIPPED, "custom": CUSTOM}.get(case, WITH_ASN)
    internal = ("10.0.0.0/8", "198.18.0.0/16", "2001:db8:1::/64", "::ffff:192.0.2.0/126") if case == "custom" else None
    kw = {"internal": internal} if internal else {}
    if case == "asn":
        kw["asn"] = SNAP
    if case == "learned-and-app-ids":
        kw.update(asn=SNAP, app_ids={5: catalogue.services[1].id, 6: "other", (13 << 56) | 453: "teams"})
    classifier = Classifier(catalogue, **kw)
    if case == "learned-and-app-ids":
        classifier.learned_addresses = _learned()
    rng = np.random.default_rng(n * 7 + len(case))
    for _ in range(3):
        _same(*_both(classifier, _batch(rng, catalogue, n)))


def test_kernel_on_huge_values_and_views():
    """Every address bit set, the highest ports and protocols, columns that are views."""
    classifier = Classifier(SHIPPED)
    n = 64
    src = np.zeros(2 * n, ADDR)
    src["hi"], src["lo"] = np.uint64(2**64 - 1), np.uint64(2**64 - 1)
    src["lo"][::4] = np.uint64(0xFFFF_FFFF_FFFF)  # ::ffff:255.255.255.255
    src["hi"][::4] = 0
    dst = np.zeros(2 * n, ADDR)
    dst["lo"] = np.uint64(0xFFFF_0A00_0001)  # 10.0.0.1
    ports = np.full(2 * n, 65535, np.uint16)
    protos = np.full(2 * n, 255, np.uint8)
    cols = (src[::2], dst[::2], ports[::2], ports[1::2], protos[::2], np.zeros(n, np.uint64))
    a, b = _both(classifier, cols)
    _same(a, b)
    assert a.has_host.all() and not a.host_is_src.any()


def test_kernel_refuses_tables_that_do_not_fit():
    classifier = Classifier(SHIPPED)
    n = 3
    a = np.zeros(n, ADDR)
    a["lo"] = np.uint64(0xFFFF_0000_0000)  # 0.0.0.0
    outs = [np.empty(n, np.uint16), np.empty(n, np.uint8), *(np.empty(n, bool) for _ in range(4)),
            np.empty(n, ADDR), np.empty(n, bool), np.empty(n, bool), np.empty(n, np.int32)]
    args = [a, a, np.zeros(n, np.uint16), np.zeros(n, np.uint16), np.zeros(n, np.uint8), *classifier._kernel_tables,
            classifier._proto_offset64, classifier._owned_blocks, classifier._n, *outs]
    assert kernels.built.classify(*args) == 0
    short = list(args)
    short[10] = np.empty(n - 1, np.uint16)
    with pytest.raises(ValueError, match="service"):
        kernels.built.classify(*short)
    bad = list(args)
    bad[7] = np.full(256, 4 * 65536, np.int64)
    with pytest.raises(ValueError, match="proto_offset"):
        kernels.built.classify(*bad)
    with pytest.raises(TypeError):
        kernels.built.classify(*args[:-1])
    top, blocks = args[8]
    far = top.copy()
    far[5] = len(blocks) // 256  # one block past the last
    with pytest.raises(ValueError, match="owned top"):
        kernels.built.classify(*args[:8], (far, blocks), *args[9:])
    with pytest.raises(ValueError, match="owned blocks"):
        kernels.built.classify(*args[:8], (top, blocks[:-1]), *args[9:])
    table6 = list(args[6])
    table6[0] = table6[0][:-1]  # level1 one entry short
    with pytest.raises(ValueError, match="level1"):
        kernels.built.classify(*args[:6], tuple(table6), *args[7:])
    pointer = list(args[5])
    pointer[0] = np.full_like(pointer[0], 0x8000 | 0x7FFF)  # every cell points past level2
    with pytest.raises(ValueError, match="past level2"):
        kernels.built.classify(*args[:5], tuple(pointer), *args[6:])


@pytest.mark.parametrize("case", ["shipped", "custom", "random"])
def test_the_owned_ports_two_levels_are_the_flat_table(case):
    """The kernel's (top, blocks) give every (protocol row, port) the flat table's service:
    the shipped and a custom catalogue's, and a table with a service on a random port of every
    block (more distinct blocks than any catalogue)."""
    if case == "random":
        rng = np.random.default_rng(7)
        flat = np.zeros(4 * 65536, np.uint16)
        flat[np.arange(0, 4 * 65536, 256) + rng.integers(0, 256, 1024)] = rng.integers(1, 900, 1024)
    else:
        flat = Classifier(SHIPPED if case == "shipped" else CUSTOM)._owned
    top, blocks = _port_blocks(flat)
    assert top.shape == (1024,) and not blocks[:256].any()
    again = blocks.reshape(-1, 256)[top].ravel()
    assert np.array_equal(again, flat)
