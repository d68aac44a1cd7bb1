"""The vectorized classifier against hand cases and against a slow, obvious per-flow reference
written here with the `ipaddress` module (docs/design.md §4 rules, restated independently), with the
compiled IPv4 lookup and with NumPy's.

Throughput is measured by bench/classify_bench.py (`python -m bench.classify_bench`), not here.
"""

from __future__ import annotations

import ipaddress
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector import kernels
from collector.classify.catalogue import CatalogueError, build_catalogue, load_catalogue
from collector.classify.classifier import DEFAULT_INTERNAL, Classifier
from collector.netflow.batch import ADDR, FlowBatch, addr_from_str, addr_to_str
from tests.kernels import both_ways

PROTO = {6: "tcp", 17: "udp", 132: "sctp"}
SHIPPED = load_catalogue()
CLASSIFIER = Classifier(SHIPPED)

# A small catalogue that exercises what the shipped one does not: nested and identical prefixes,
# an IPv6 prefix over the IPv4-mapped block, /128 and /32 prefixes, a prefix inside an internal
# network, adjacent ranges.
CUSTOM = build_catalogue({"snapshot": "2026-01-01", "service": [
    {"id": "alpha", "name": "A", "category": "im", "ports": ["tcp/7000", "udp/7001-7010", "5222"],
     "shared_ports": ["tcp/443"], "prefixes": ["198.18.0.0/15", "2001:db8::/32"]},
    {"id": "beta", "name": "B", "category": "voip", "ports": ["udp/7011", "tcp/443"],
     "shared_ports": ["tcp/443"],
     "prefixes": ["198.18.4.0/24", "198.19.255.255/32", "2001:db8:1::/48", "203.0.113.0/24"]},
    {"id": "gamma", "name": "G", "category": "p2p", "ports": ["tcp/80", "sctp/9"], "shared_ports": ["tcp/80"],
     "prefixes": ["203.0.113.0/24", "2001:db8:1::1/128", "10.9.0.0/16"]},
    {"id": "delta", "name": "D", "category": "collab", "ports": ["65535", "0"],
     "prefixes": ["::ffff:192.0.2.0/120", "192.0.2.128/25"]},
]})


# ---------------------------------------------------------------- the reference


def covers(text, proto, port):
    m = re.fullmatch(r"(?:(tcp|udp|sctp)/)?(\d+)(?:-(\d+))?", text)
    protos = {m.group(1)} if m.group(1) else {"tcp", "udp"}
    return PROTO.get(proto) in protos and int(m.group(2)) <= port <= int(m.group(3) or m.group(2))


def lists(service, proto, port):
    return any(covers(t, proto, port) for t in service.ports + service.shared_ports)


def owner(catalogue, proto, port):
    for s in catalogue.services[1:]:
        listed = any(covers(t, proto, port) for t in s.ports)
        if listed and not any(covers(t, proto, port) for t in s.shared_ports):
            return s
    return None


def in_net(addr, net):
    """`addr` in `net`, IPv4 addresses also seen as IPv4-mapped IPv6; returns the prefix length
    in the address's own family (IPv6 prefixes over mapped space count 96 less), or None."""
    if addr.version == net.version:
        return net.prefixlen if addr in net else None
    if addr.version == 4 and ipaddress.IPv6Address(f"::ffff:{addr}") in net:
        return net.prefixlen - 96
    return None


def prefix_service(catalogue, addr, proto, port):
    hits = [(plen, s) for s in catalogue.services for n in s.networks
            if (plen := in_net(addr, n)) is not None]
    if not hits:
        return None
    longest = max(p for p, _ in hits)
    candidates = [s for p, s in hits if p == longest]
    candidates.sort(key=lambda s: s.index)
    return next((s for s in candidates if lists(s, proto, port)), candidates[0])


def first_difference(pairs):
    for a, b in pairs:
        if a != b:
            return "src" if a else "dst"
    return "dst"


def reference(catalogue, internal, app_map, src, sport, dst, dport, proto, app):
    """-> (service id, host address or None, host_is_src)."""
    # An IPv4-mapped IPv6 address is the IPv4 address (RFC 4291 §2.5.5.2), as in ADDR.
    src = getattr(src, "ipv4_mapped", None) or src
    dst = getattr(dst, "ipv4_mapped", None) or dst
    src_int = any(in_net(src, n) is not None for n in internal)
    dst_int = any(in_net(dst, n) is not None for n in internal)
    ps, pd = prefix_service(catalogue, src, proto, sport), prefix_service(catalogue, dst, proto, dport)
    side, service = None, "other"
    if ps or pd:
        if ps and pd:
            side = first_difference([(not src_int, not dst_int),
                                     (lists(ps, proto, sport), lists(pd, proto, dport)),
                                     (sport < 32768, dport < 32768), (sport < dport, dport < sport)])
        else:
            side = "src" if ps else "dst"
        service = (ps if side == "src" else pd).id
    else:
        os_, od = owner(catalogue, proto, sport), owner(catalogue, proto, dport)
        if os_ and od:
            side = first_difference([(sport < 32768, dport < 32768), (not src_int, not dst_int),
                                     (sport < dport, dport < sport)])
        elif os_ or od:
            side = "src" if os_ else "dst"
        if side:
            service = (os_ if side == "src" else od).id
    if app in app_map:
        service = app_map[app]
    if src_int and dst_int:
        host_is_src = side == "dst" if side else sport >= dport
    else:
        host_is_src = src_int
    host = (src if host_is_src else dst) if (src_int or dst_int) else None
    return service, host, host_is_src and host is not None


# ---------------------------------------------------------------- helpers


def addrs(texts):
    out = np.zeros(len(texts), ADDR)
    for i, t in enumerate(texts):
        out[i] = addr_from_str(str(t))
    return out


def run(classifier, flows, app=None):
    src, sport, dst, dport, proto = zip(*flows, strict=True)
    return classifier.classify(addrs(src), addrs(dst), np.array(sport, np.uint16), np.array(dport, np.uint16),
                               np.array(proto, np.uint8), None if app is None else np.array(app, np.uint64))


def rows(catalogue, result):
    for i in range(len(result)):
        h = result.host[i]
        yield (catalogue.services[result.service[i]].id,
               addr_to_str(h["hi"], h["lo"]) if result.has_host[i] else None, bool(result.host_is_src[i]))


# ---------------------------------------------------------------- hand cases

CASES = [
    # src, sport, dst, dport, proto -> service, host, host_is_src
    (("10.1.1.5", 51000, "198.51.100.7", 1863, 6), ("msn", "10.1.1.5", True)),
    (("198.51.100.7", 1863, "10.1.1.5", 51000, 6), ("msn", "10.1.1.5", False)),
    (("10.1.1.5", 51000, "198.51.100.7", 1863, 17), ("msn", "10.1.1.5", True)),  # bare "1863": tcp+udp
    (("10.1.1.5", 51000, "198.51.100.7", 1863, 132), ("other", "10.1.1.5", True)),
    (("10.1.1.5", 51000, "149.154.167.51", 443, 6), ("telegram", "10.1.1.5", True)),
    (("149.154.167.51", 443, "10.1.1.5", 51000, 6), ("telegram", "10.1.1.5", False)),
    (("10.1.1.5", 51000, "198.51.100.7", 443, 6), ("other", "10.1.1.5", True)),
    (("10.1.1.5", 51000, "198.51.100.7", 5222, 6), ("xmpp", "10.1.1.5", True)),  # IANA owner
    (("10.1.1.5", 51000, "149.154.167.51", 5222, 6), ("telegram", "10.1.1.5", True)),  # prefix wins
    (("10.1.1.5", 51000, "198.51.100.7", 5223, 6), ("other", "10.1.1.5", True)),  # APNs: shared
    (("10.1.1.5", 51000, "52.113.20.4", 3478, 17), ("teams", "10.1.1.5", True)),
    (("10.1.1.5", 51000, "198.51.100.7", 3478, 17), ("stun", "10.1.1.5", True)),
    (("10.1.1.5", 51413, "198.51.100.7", 1863, 6), ("msn", "10.1.1.5", True)),  # ephemeral src port
    (("10.1.1.5", 6881, "198.51.100.7", 1863, 6), ("msn", "10.1.1.5", True)),  # both owned: external
    (("10.1.1.5", 51000, "192.168.1.10", 6881, 6), ("bittorrent", "10.1.1.5", True)),  # both internal
    (("192.168.1.10", 6881, "10.1.1.5", 51000, 6), ("bittorrent", "10.1.1.5", False)),
    (("10.1.1.5", 51000, "10.2.2.2", 40000, 6), ("other", "10.1.1.5", True)),  # higher port = client
    (("10.2.2.2", 40000, "10.1.1.5", 51000, 6), ("other", "10.1.1.5", False)),
    (("10.1.1.5", 40000, "10.2.2.2", 40000, 17), ("other", "10.1.1.5", True)),  # equal ports: src
    (("198.51.100.7", 51000, "203.0.113.9", 5060, 17), ("sip", None, False)),  # no internal host
    (("203.0.113.9", 5060, "198.51.100.7", 5060, 132), ("sip", None, False)),
    (("100.64.3.4", 40000, "198.51.100.7", 6346, 6), ("gnutella", "100.64.3.4", True)),  # CGNAT space
    (("fd00::5", 51000, "2001:67c:4e8::1", 443, 6), ("telegram", "fd00::5", True)),
    (("2001:67c:4e8::1", 443, "fd00::5", 51000, 6), ("telegram", "fd00::5", False)),
    (("fd00::5", 51000, "2a00:1450::1", 1863, 6), ("msn", "fd00::5", True)),
    (("fd00::5", 51000, "2001:4860:4864:4:8000::", 3478, 17), ("meet", "fd00::5", True)),  # the /128
    (("fd00::5", 51000, "2001:4860:4864:4:8000::1", 3478, 17), ("stun", "fd00::5", True)),
    (("2001:db8::1", 40000, "2603:1063::10", 443, 6), ("teams", None, False)),
    (("10.1.1.5", 0, "149.154.167.51", 2048, 1), ("telegram", "10.1.1.5", True)),  # ICMP: prefix only
    (("10.1.1.5", 0, "198.51.100.7", 1863, 1), ("other", "10.1.1.5", True)),
    (("10.1.1.5", 51000, "44.234.52.193", 9000, 17), ("webex", "10.1.1.5", True)),  # /26
    (("10.1.1.5", 51000, "44.234.52.191", 9000, 17), ("webex", "10.1.1.5", True)),  # owned udp/9000
    (("10.1.1.5", 51000, "44.234.52.191", 443, 6), ("other", "10.1.1.5", True)),  # just outside
    # Both sides in prefixes, both external: telegram's side lists its port (443), webex's not.
    (("149.154.167.51", 443, "62.109.200.1", 50000, 6), ("telegram", None, False)),
]


@pytest.mark.parametrize("flow,expected", CASES, ids=["{}:{}>{}:{}/{}".format(*c[0]) for c in CASES])
def test_hand_cases(flow, expected):
    result = run(CLASSIFIER, [flow])
    assert next(rows(SHIPPED, result)) == expected
    assert reference(SHIPPED, _nets(DEFAULT_INTERNAL), {}, *_ip(flow), 0) == _expected_ip(expected)


def _nets(texts):
    return [ipaddress.ip_network(t) for t in texts]


def _ip(flow):
    src, sport, dst, dport, proto = flow
    return ipaddress.ip_address(src), sport, ipaddress.ip_address(dst), dport, proto


def _expected_ip(expected):
    sid, host, is_src = expected
    return sid, None if host is None else ipaddress.ip_address(host), is_src


@both_ways
def test_batch_of_all_hand_cases_at_once(kernels_on):
    with kernels.use(kernels_on):
        result = run(CLASSIFIER, [c[0] for c in CASES])
    assert list(rows(SHIPPED, result)) == [c[1] for c in CASES]
    assert result.service.dtype == np.uint16 and result.host.dtype == ADDR
    assert result.has_host.dtype == bool and result.host_is_src.dtype == bool


def test_app_id_wins():
    classifier = Classifier(SHIPPED, app_ids={0x0D00_0042: "skype", 7: "other"})
    flows = [("10.1.1.5", 51000, "198.51.100.7", 1863, 6)] * 3 + [("10.1.1.5", 51000, "198.51.100.7", 443, 6)]
    result = run(classifier, flows, app=[0x0D00_0042, 7, 99, 0x0D00_0042])
    assert [r[0] for r in rows(SHIPPED, result)] == ["skype", "other", "msn", "skype"]
    assert all(r[1] == "10.1.1.5" for r in rows(SHIPPED, result))


def test_app_ids_can_change_at_run_time_and_are_checked():
    classifier = Classifier(SHIPPED)
    classifier.set_app_ids({5: "zoom"})
    result = run(classifier, [("10.1.1.5", 51000, "198.51.100.7", 443, 6)], app=[5])
    assert SHIPPED.services[result.service[0]].id == "zoom"
    with pytest.raises(CatalogueError, match=r"^app_ids\[5\]: \"nope\": no such service"):
        classifier.set_app_ids({5: "nope"})


def test_internal_networks_are_validated():
    with pytest.raises(CatalogueError, match=r"^internal\[1\]: "):
        Classifier(SHIPPED, internal=["10.0.0.0/8", "10.0.0.1/8"])


def test_custom_internal_networks():
    classifier = Classifier(SHIPPED, internal=["198.51.100.0/24"])
    result = run(classifier, [("10.1.1.5", 51000, "198.51.100.7", 1863, 6)])
    assert next(rows(SHIPPED, result)) == ("msn", "198.51.100.7", False)


def test_empty_batch_and_flowbatch():
    classifier = Classifier(SHIPPED)
    result = classifier.classify_batch(FlowBatch.empty())
    assert len(result) == 0 and result.host.dtype == ADDR
    batch = FlowBatch.empty(2)
    batch.src_addr[:] = addrs(["10.1.1.5", "198.51.100.7"])
    batch.dst_addr[:] = addrs(["198.51.100.7", "10.1.1.5"])
    batch.src_port[:] = [51000, 1863]
    batch.dst_port[:] = [1863, 51000]
    batch.proto[:] = 6
    assert [r[0] for r in rows(SHIPPED, classifier.classify_batch(batch))] == ["msn", "msn"]


def test_non_contiguous_address_columns():
    classifier = Classifier(SHIPPED)
    src = addrs(["10.1.1.5", "0.0.0.0"] * 2)[::2]
    dst = addrs(["149.154.167.51", "0.0.0.0"] * 2)[::2]
    result = classifier.classify(src, dst, np.array([51000, 51000]), np.array([443, 443]), np.array([6, 6]))
    assert [r[0] for r in rows(SHIPPED, result)] == ["telegram", "telegram"]


def test_category_index():
    classifier = Classifier(SHIPPED)
    cats = [SHIPPED.categories[c] for c in classifier.category]
    assert cats == [s.category for s in SHIPPED.services]


# ---------------------------------------------------------------- property test vs the reference


def address_pool(catalogue, internal):
    pool = {ipaddress.ip_address(a) for a in ("0.0.0.0", "255.255.255.255", "::", "::1", "ffff::1",
                                              "198.51.100.7", "2001:db8:ffff::1", "::ffff:0:1", "1.2.3.4")}
    for net in [n for s in catalogue.services for n in s.networks] + list(internal):
        first, last = int(net.network_address), int(net.broadcast_address)
        top = (1 << net.max_prefixlen) - 1
        for value in (first, last, (first + last) // 2, first - 1, last + 1):
            if 0 <= value <= top:
                pool.add(ipaddress.ip_address(value) if net.version == 4 else ipaddress.IPv6Address(value))
    return sorted(pool, key=lambda a: (a.version, a))


def port_pool(catalogue):
    ports = {0, 1, 80, 443, 1023, 1024, 32767, 32768, 40000, 51000, 65535}
    for s in catalogue.services:
        for t in s.ports + s.shared_ports:
            for n in re.findall(r"\d+", t.split("/")[-1]):
                ports |= {max(int(n) - 1, 0), int(n), min(int(n) + 1, 65535)}
    return sorted(ports)


def flows_strategy(catalogue, internal):
    a = st.one_of(st.sampled_from(address_pool(catalogue, internal)),
                  st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address),
                  st.integers(0, 2**128 - 1).map(ipaddress.IPv6Address))
    p = st.one_of(st.sampled_from(port_pool(catalogue)), st.integers(0, 65535))
    flow = st.tuples(a, p, a, p, st.sampled_from([6, 17, 132, 1, 47]), st.sampled_from([0, 0, 0, 5, 6, 77]))
    return st.lists(flow, min_size=1, max_size=60)


@pytest.mark.parametrize("catalogue,internal", [
    (SHIPPED, DEFAULT_INTERNAL),
    (CUSTOM, ("10.0.0.0/8", "198.18.0.0/16", "2001:db8:1::/64", "::ffff:192.0.2.0/126")),
], ids=["shipped", "custom"])
@both_ways
def test_matches_reference(catalogue, internal, kernels_on):
    app_map = {5: catalogue.services[1].id, 6: "other"}
    classifier = Classifier(catalogue, internal=internal, app_ids=app_map)
    nets = _nets(internal)

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(flows_strategy(catalogue, nets))
    def check(flows):
        result = run(classifier, [f[:5] for f in flows], app=[f[5] for f in flows])
        for i, flow in enumerate(flows):
            want = reference(catalogue, nets, app_map, *flow)
            h = result.host[i]
            got = (catalogue.services[result.service[i]].id,
                   ipaddress.ip_address(addr_to_str(h["hi"], h["lo"])) if result.has_host[i] else None,
                   bool(result.host_is_src[i]))
            assert got == want, (flow, got, want)
            if not result.has_host[i]:
                assert h["hi"] == 0 and h["lo"] == 0

    with kernels.use(kernels_on):
        check()


def test_custom_catalogue_tie_breaks():
    classifier = Classifier(CUSTOM, internal=["10.0.0.0/8"])
    flows = [
        ("10.1.1.1", 40000, "203.0.113.5", 443, 6),  # identical prefix beta+gamma: beta lists 443
        ("10.1.1.1", 40000, "203.0.113.5", 80, 6),  # gamma lists 80
        ("10.1.1.1", 40000, "203.0.113.5", 22, 6),  # neither: the first in catalogue order
        ("10.1.1.1", 40000, "198.18.4.9", 7000, 6),  # nested: the /24 (beta) beats the /15
        ("10.1.1.1", 40000, "198.18.5.9", 22, 6),  # the /15 (alpha)
        ("10.1.1.1", 40000, "192.0.2.200", 22, 6),  # ::ffff:192.0.2.0/120 vs 192.0.2.128/25 (same service)
        ("10.9.1.1", 40000, "10.1.1.1", 22, 6),  # a service prefix inside internal space
    ]
    assert [r[0] for r in rows(CUSTOM, run(classifier, flows))] == [
        "beta", "gamma", "beta", "beta", "alpha", "delta", "gamma"]
    # The self-hosted gamma server is the service side, so the host is the other internal end.
    assert list(rows(CUSTOM, run(classifier, flows[-1:])))[0][1:] == ("10.1.1.1", False)
