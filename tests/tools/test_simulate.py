"""The simulated exporter: its datagrams decode (ours and tshark's) to exactly the flows it
reports, its totals are ground truth for the classifier, and it only sends to loopback."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import struct
from collections import Counter

import numpy as np
import pytest

from collector.classify.catalogue import load_catalogue
from collector.classify.classifier import Classifier
from collector.netflow.batch import FlowBatch, addr_to_str
from collector.netflow.decoder import Decoder
from collector.tools.simulate import TEMPLATE_REFRESH, Exporter, Flow, Simulator, Stats
from tests.support import tshark
from tests.support.pcapgen import write_udp_pcap

T0 = 1_764_000_000  # a whole second: v9 headers then place flows to the millisecond
EXPORTER = ("127.0.0.1", 40000)
CATALOGUE = load_catalogue()
DOCUMENTATION = [ipaddress.ip_network(n) for n in
                 ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")]
INTERNAL = [ipaddress.ip_network(n) for n in ("10.20.0.0/16", "192.168.50.0/24", "fd00::/8")]

needs_tshark = pytest.mark.skipif(not tshark.available(), reason="tshark not on PATH")


def simulate(seconds: int, **kw) -> tuple[Simulator, list[Flow], list[bytes]]:
    """Tick once a second from T0, exporting each tick's flows at its end."""
    sim = Simulator(CATALOGUE, start=T0, **kw)
    flows, datagrams = [], []
    for k in range(1, seconds + 1):
        batch = sim.tick(T0 + k, 1.0)
        flows += batch
        datagrams += sim.datagrams(batch, T0 + k)
    return sim, flows, datagrams


def rows(batch: FlowBatch, classified=None) -> Counter:
    out = Counter()
    for i in range(len(batch)):
        row = (addr_to_str(*batch.src_addr[i]), addr_to_str(*batch.dst_addr[i]), int(batch.src_port[i]),
               int(batch.dst_port[i]), int(batch.proto[i]), int(batch.bytes[i]), int(batch.packets[i]),
               round(float(batch.start[i]), 3), round(float(batch.end[i]), 3), int(batch.in_if[i]),
               int(batch.out_if[i]))
        if classified is not None:
            row += (addr_to_str(*classified.host[i]), CATALOGUE.services[classified.service[i]].id)
        out[row] += 1
    return out


def truth(flows: list[Flow], sampling: int = 1, classes: bool = False) -> Counter:
    return Counter((f.src, f.dst, f.sport, f.dport, f.proto, f.bytes * sampling, f.packets * sampling,
                    f.first, f.last, f.in_if, f.out_if) + ((f.host, f.service) if classes else ())
                   for f in flows)


def decode(datagrams, source=EXPORTER) -> tuple[Decoder, FlowBatch]:
    dec = Decoder()
    return dec, dec.decode((d, source, 0.0) for d in datagrams)


@pytest.fixture(scope="module")
def minute():
    return simulate(60)


# --- the traffic -------------------------------------------------------------------------------


def test_hosts_and_peers(minute):
    sim, flows, _ = minute
    hosts = sim.hosts()
    assert len(hosts) == 40 and len({h.addr for h in hosts}) == 40
    assert {h.profile for h in hosts} == {"office", "im-heavy", "voip", "p2p", "idle"}
    assert sum(":" in h.addr for h in hosts) == 2
    assert any(h.addr.startswith("192.168.50.") for h in hosts)
    assert all(any(ipaddress.ip_address(h.addr) in n for n in INTERNAL) for h in hosts)
    vendor = [n for s in CATALOGUE.services for n in s.networks]
    for f in flows:
        peer = ipaddress.ip_address(f.dst if f.src == f.host else f.src)
        assert any(peer in n for n in DOCUMENTATION) or \
            any(peer in n for n in CATALOGUE.by_id[f.service].networks), f
        assert f.host in (f.src, f.dst)
        if any(peer in n for n in vendor):
            assert f.service != "other"
    v6 = [f for f in flows if ":" in f.src]
    assert v6 and all(":" in f.dst for f in v6)


def test_flows_end_inside_the_tick():
    sim = Simulator(CATALOGUE, start=T0, seed=7)
    for now, seconds in ((T0 + 1, 1.0), (T0 + 1.25, 0.25), (T0 + 61.25, 60.0)):
        flows = sim.tick(now, seconds)
        assert flows
        assert all(now - seconds < f.last <= now and f.first <= f.last for f in flows)
        assert all(f.last - f.first <= 60 for f in flows)
        assert [f.last for f in flows] == sorted(f.last for f in flows)
    assert sim.tick(T0, 0.0) == []


def test_both_directions_with_plausible_sizes(minute):
    _, flows, _ = minute
    keys = Counter((f.src, f.dst, f.sport, f.dport, f.proto, f.first > 0) for f in flows)
    for f in flows:
        assert keys[f.dst, f.src, f.dport, f.sport, f.proto, True], f  # the other direction too
        assert 28 * f.packets <= f.bytes <= 1500 * f.packets
        assert f.bytes < 1 << 32 and f.packets < 1 << 32


def test_every_flow_classifies_as_the_simulator_says(minute):
    _, flows, datagrams = minute
    _, batch = decode(datagrams)
    assert rows(batch, Classifier(CATALOGUE).classify_batch(batch)) == truth(flows, classes=True)


def test_mix_over_a_minute(minute):
    _, flows, _ = minute
    share = Counter()
    for f in flows:
        share[CATALOGUE.by_id[f.service].category] += f.bytes
    assert set(share) == {"other", "im", "p2p", "voip", "collab"}
    assert share.most_common(1)[0][0] == "other"
    services = {f.service for f in flows}
    assert {"msn", "yahoo", "aim", "xmpp", "irc", "telegram", "bittorrent", "edonkey", "sip",
            "stun", "teams", "slack"} <= services


def test_deterministic_for_a_seed():
    a, b, c = (simulate(5, seed=s)[2] for s in (3, 3, 4))
    assert a == b and a != c


# --- the export packets ------------------------------------------------------------------------


def test_decodes_to_exactly_the_simulated_flows(minute):
    _, flows, datagrams = minute
    dec, batch = decode(datagrams)
    assert len(batch) == len(flows) > 1000
    assert rows(batch) == truth(flows)  # addresses, ports, counters, times to the ms, interfaces
    assert set(batch.version.tolist()) == {9}
    assert not dec.stats.errors and not dec.stats.held and not dec.stats.seq_lost
    (sess,) = dec.sessions.values()
    assert sess.if_names == {1: "Gi0/0", 2: "Gi0/1", 3: "Vlan50"}
    assert sess.sampling_rate == 1


def test_headers_templates_and_sequence(minute):
    _, flows, datagrams = minute
    seen = 0
    for i, d in enumerate(datagrams):
        version, count, uptime, secs, seq, source = struct.unpack_from(">HHIIII", d)
        assert (version, seq, source) == (9, i, 0)
        assert len(d) <= 1400
        sets, off = [], 20
        while off < len(d):
            sid, length = struct.unpack_from(">HH", d, off)
            sets.append(sid)
            off += length
        assert off == len(d)
        refresh = i % TEMPLATE_REFRESH == 0
        assert (sets[:3] == [0, 1, 1]) == refresh and (0 in sets) == refresh
        data = sum(1 for s in sets if s in (256, 257))
        assert 1 <= data <= 2
        n = sum((length - 4) // size for s, length, size in _data_sets(d))
        assert 1 <= n <= 27
        assert count == n + (8 if refresh else 0)  # RFC 3954 §5.1: every record, templates too
        seen += n
        # uptime and unix_secs describe the same instant, at or after every record's end
        for first, last in _times(d):
            assert first <= last <= uptime
        assert secs in range(T0 + 1, T0 + 61)
    assert seen == len(flows)
    dec, _ = decode(datagrams)
    assert dec.stats.templates[EXPORTER[0]] == 4 * len(range(0, len(datagrams), TEMPLATE_REFRESH))
    assert not dec.stats.seq_lost


def _data_sets(d: bytes):
    off = 20
    while off < len(d):
        sid, length = struct.unpack_from(">HH", d, off)
        if sid in (256, 257):
            yield sid, length, 35 if sid == 256 else 59
        off += length


def _times(d: bytes):
    off = 20
    while off < len(d):
        sid, length = struct.unpack_from(">HH", d, off)
        if sid in (256, 257):
            size = 35 if sid == 256 else 59
            for r in range((length - 4) // size):
                yield struct.unpack_from(">II", d, off + 4 + r * size + size - 8)  # start, end
        off += length


def test_sampling_is_announced_and_renormalises():
    _, flows, datagrams = simulate(20, sampling=10)
    _, batch = decode(datagrams)
    assert set(batch.sampling_rate.tolist()) == {10}
    assert rows(batch) == truth(flows, sampling=10)
    whole = simulate(20)[1]
    assert 0.5 < sum(f.bytes for f in flows) * 10 / sum(f.bytes for f in whole) < 2


def test_datagrams_continue_the_sequence_across_calls():
    sim = Simulator(CATALOGUE, start=T0)
    first = sim.datagrams(sim.tick(T0 + 1, 1.0), T0 + 1)
    assert sim.datagrams([], T0 + 2) == []
    second = sim.datagrams(sim.tick(T0 + 3, 2.0), T0 + 3)
    seqs = [struct.unpack_from(">I", d, 12)[0] for d in first + second]
    assert seqs == list(range(len(seqs)))
    dec, _ = decode(first + second)
    assert not dec.stats.seq_lost


@needs_tshark
def test_tshark_agrees(tmp_path, minute):
    _, flows, datagrams = minute
    port = 2055
    pcap = tmp_path / "sim.pcap"
    write_udp_pcap(pcap, [(T0 + i * 0.01, "127.0.0.1", 40000, "127.0.0.1", port, d)
                          for i, d in enumerate(datagrams)])
    theirs = tshark.decode(pcap, port)
    key = ("src_addr", "dst_addr", "src_port", "dst_port", "proto", "bytes", "packets")
    assert Counter(tuple(r[k] for k in key) for r in theirs) == \
        Counter((f.src, f.dst, f.sport, f.dport, f.proto, f.bytes, f.packets) for f in flows)
    assert sum(r["bytes"] for r in theirs) == sum(f.bytes for f in flows)


# --- the exporter ------------------------------------------------------------------------------


@pytest.fixture
def collector():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    sock.bind(("127.0.0.1", 0))
    yield sock
    sock.close()


def drain(sock: socket.socket) -> list[tuple[bytes, tuple, float]]:
    sock.settimeout(0.2)
    out = []
    try:
        while True:
            data, source = sock.recvfrom(65535)
            out.append((data, source, 0.0))
    except TimeoutError:
        return out


def check_against_stats(received, stats: Stats) -> None:
    assert len(received) == stats.datagrams > 0
    assert sum(len(d) for d, _, _ in received) == stats.octets
    dec = Decoder()
    batch = dec.decode(received)
    assert len(batch) == stats.flows > 0
    assert not dec.stats.seq_lost and not dec.stats.errors
    classified = Classifier(CATALOGUE).classify_batch(batch)
    got_bytes, got_packets = Counter(), Counter()
    for i in range(len(batch)):
        key = addr_to_str(*classified.host[i]), CATALOGUE.services[classified.service[i]].id
        got_bytes[key] += int(batch.bytes[i])
        got_packets[key] += int(batch.packets[i])
    assert got_bytes == stats.bytes and got_packets == stats.packets


def test_exporter_real_time(collector):
    sim = Simulator(CATALOGUE, seed=5)
    exporter = Exporter(collector.getsockname(), sim, interval=0.25)
    stats = exporter.run_for(1.0)
    check_against_stats(drain(collector), stats)
    assert stats.send_errors == 0 and stats.dropped_flows == 0


def test_exporter_rate_and_bounds(collector):
    sim = Simulator(CATALOGUE, seed=6, start=T0)
    exporter = Exporter(collector.getsockname(), sim)
    stats = exporter.run_for(5.0, rate=500, max_datagrams=40)
    assert stats.datagrams == 40
    stats = exporter.run_for(5.0, rate=500, max_datagrams=25)  # the sequence carries on, no gap
    assert stats.datagrams == 65
    received = drain(collector)
    check_against_stats(received, stats)
    secs = [struct.unpack_from(">I", d, 8)[0] for d, _, _ in received]  # unix_secs: simulated time
    assert secs == sorted(secs) and secs[0] == T0 and secs[-1] - T0 >= 2
    bounded = Exporter(collector.getsockname(), Simulator(CATALOGUE, start=T0), max_flows_per_tick=10)
    stats = bounded.run_for(5.0, rate=500, max_datagrams=3)  # a datagram a tick, 10 flows each
    assert stats.datagrams == 3 and stats.flows == 30 and stats.dropped_flows > 0
    check_against_stats(drain(collector), stats)


def test_exporter_async(collector):
    exporter = Exporter(collector.getsockname(), Simulator(CATALOGUE, seed=8), interval=0.2)

    async def main():
        stop = asyncio.Event()
        task = asyncio.create_task(exporter.run(stop))
        await asyncio.sleep(0.7)
        stop.set()
        await asyncio.wait_for(task, 2)

    asyncio.run(main())
    assert exporter.stats.datagrams >= 2
    check_against_stats(drain(collector), exporter.stats)


def test_exporter_over_ipv6_loopback():
    try:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        sock.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback")
    with sock:
        stats = Exporter(sock.getsockname()[:2], Simulator(CATALOGUE, seed=9), interval=0.5).run_for(0.1)
        check_against_stats(drain(sock), stats)


@pytest.mark.parametrize("target", [("192.0.2.1", 2055), ("10.20.0.1", 2055), ("2001:db8::1", 2055),
                                    ("collector.example", 2055)])
def test_refuses_non_loopback(target):
    sim = Simulator(CATALOGUE, hosts=5)
    with pytest.raises(ValueError, match="target"):
        Exporter(target, sim)
    if target[0] != "collector.example":
        assert Exporter(target, sim, allow_remote=True).target == target  # constructing sends nothing


def test_refuses_bad_arguments():
    with pytest.raises(ValueError, match="hosts"):
        Simulator(CATALOGUE, hosts=0)
    with pytest.raises(ValueError, match="port"):
        Exporter(("127.0.0.1", 0), Simulator(CATALOGUE, hosts=5))


def test_small_and_large_networks():
    for n in (1, 5, 200):
        sim = Simulator(CATALOGUE, hosts=n, start=T0)
        assert len({h.addr for h in sim.hosts()}) == n
        flows = sim.tick(T0 + 30, 30.0)
        _, batch = decode(sim.datagrams(flows, T0 + 30))
        assert rows(batch) == truth(flows)


def test_send_errors_are_counted_not_raised():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    target = sock.getsockname()
    sock.close()  # nobody listens: the kernel refuses after the first datagram
    stats = Exporter(target, Simulator(CATALOGUE, seed=2, start=T0)).run_for(2.0, rate=200,
                                                                              max_datagrams=20)
    assert stats.datagrams + stats.send_errors >= 2
    assert stats.send_errors > 0
    assert np.all(np.array(list(stats.bytes.values())) > 0)
