"""The sFlow bulk path (collector/sflow/bulk.py) against the per-datagram path, which is the
reference (`Decoder(bulk=False)`): the same rows, counters and per-agent state for real
pmacctd exports, for generated batches that mix everything the bulk path hands on (counter
samples, expanded samples, sampled IPv4 records, IPv6 agents, malformed datagrams inside a
session, sequence gaps, non-IP and cut headers, rate 0, data source ceilings), and for
hypothesis-mutated batches."""

from __future__ import annotations

import os
import random
import struct

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.netflow.batch import COLUMNS
from collector.netflow.decoder import Decoder
from collector.netflow.session import Limits
from collector.sflow import encode as E
from tests.sflow import pmacct
from tests.sflow.test_fuzz import valid
from tests.support import pcapgen as pg


def frame(rng: random.Random) -> bytes:
    v6 = rng.random() < 0.3
    src, dst = ("fd00::%x" % rng.randrange(1, 999), "2001:db8::1") if v6 else (
        "10.0.%d.%d" % (rng.randrange(4), rng.randrange(1, 255)), "198.51.100.%d" % rng.randrange(1, 255))
    proto = rng.choice((pg.TCP, pg.UDP))
    l4 = (pg.tcp_segment(src, dst, rng.randrange(1024, 65535), 443, 1, 0, pg.ACK, bytes(rng.randrange(30)))
          if proto == pg.TCP else pg.udp_segment(src, dst, 5060, rng.randrange(1024, 65535), bytes(40)))
    vlans = [(0x8100, 5)] if rng.random() < 0.3 else []
    return pg.ether_frame(pg.ip_packet(src, dst, proto, l4), vlans=vlans)


def mixed(seed: int, n: int = 300, rare: float = 1.0) -> list[tuple[bytes, tuple, float]]:
    """`rare` scales how often what the bulk path hands on occurs."""
    rng = random.Random(seed)
    seqs: dict = {}
    out = []
    for i in range(n):
        agent = rng.choice(["192.0.2.1", "192.0.2.2", "2001:db8::7"] if rng.random() < 0.1 * rare
                           else ["192.0.2.1", "192.0.2.2"])
        sub = rng.choice((0, 0, 1))
        key = (agent, sub)
        seqs[key] = seqs.get(key, 0) + (2 if rng.random() < 0.05 else 1)  # some datagrams "lost"
        samples = []
        for k in range(rng.randrange(0, 9)):
            src = rng.randrange(1, 6)
            f = frame(rng)
            if rng.random() < 0.05:
                f = pg.ether_frame(bytes(28), ethertype=0x0806)  # ARP: no flow
            head = f[:rng.choice((128, 128, 128, 30))]  # some cut before the addresses
            records = [E.extended_switch(5, 5)] if rng.random() < 0.5 else []
            records.append(E.raw_header(head, len(f) + 4))
            if rng.random() < 0.03 * rare:
                records.append(E.sampled_ip(100, 6, "10.9.9.9", "10.8.8.8", 1, 2))
            if rng.random() < 0.05:
                records.append(E.record(2000, b"\1\2\3\4"))  # unknown: skipped
            rate = 0 if rng.random() < 0.02 else rng.choice((1, 64, 1000))
            samples.append(E.flow_sample(records, seq=seqs[key] * 10 + k, rate=rate, pool=seqs[key] * 100 + k,
                                         drops=seqs[key] // 7, source=src, in_if=rng.randrange(1, 5),
                                         out_if=rng.choice((2, 0x3FFFFFFF, 1 << 30 | 3)), expanded=rng.random() < 0.2))
        if rng.random() < 0.2:
            samples.append(E.counter_sample([E.if_counters(rng.randrange(1, 5), 10**9, i * 1000, i * 999)], seq=i))
        if rng.random() < 0.03:
            samples.append(E.record(7, b"\0" * 8))  # a sample of an unknown format
        d = E.datagram(samples, seq=seqs[key], agent=agent, sub_agent=sub)
        if rng.random() < 0.03 * rare:
            d = d[:rng.randrange(len(d))]  # malformed, inside a session
        out.append((d, ("127.0.0.1", 40000 + rng.randrange(2)), 1000.0 + i * 0.01))
    return out


def state(dec: Decoder) -> dict:
    s = dec.stats
    out = {name: dict(getattr(s, name)) for name in ("datagrams", "flows", "errors", "seq_lost", "notices",
                                                      "evicted", "sampling")}
    agents = {}
    for key, sess in dec.sessions.items():
        a = sess.sflow
        if a is not None:
            agents[key] = (a.samples, a.pool, a.drops, a.lost, sorted((k, v.seq, v.pool, v.drops)
                                                                        for k, v in a.sources.items()),
                           sorted((k, c.in_octets, c.out_octets) for k, c in a.interfaces.items()),
                           sess.next_seq, sess.records_seen, sess.packets_seen)
    out["agents"] = agents
    return out


def rows(batch) -> list:
    order = np.argsort(batch.seq, kind="stable")
    return [tuple(getattr(batch, c)[i].tolist() for c in COLUMNS if c != "session") for i in order]


def both(grams, calls: int = 1, limits: Limits | None = None):
    results = []
    for bulk in (True, False):
        dec = Decoder(bulk=bulk, limits=limits)
        got = []
        step = -(-len(grams) // calls)
        for i in range(0, len(grams), step):
            got += rows(dec.decode(grams[i:i + step]))
        results.append((got, state(dec)))
    return results


def per_datagram_calls(grams) -> int:
    """How many datagrams the per-datagram path decoded (the rest took the bulk path)."""
    dec = Decoder()
    calls = []
    one = dec.sflow.datagram
    dec.sflow.datagram = lambda *a: calls.append(1) or one(*a)
    dec.decode(grams)
    return len(calls)


def test_generated_batches_decode_the_same_both_ways():
    for seed in range(8):
        grams = mixed(seed, rare=(1.0, 0.1, 0.0)[seed % 3])
        (a, sa), (b, sb) = both(grams, calls=1 + seed % 3)
        assert a == b
        assert sa == sb
        assert len(a) > 100


def test_the_bulk_path_takes_the_usual_datagrams():
    assert per_datagram_calls(mixed(3, rare=0.0)) == 0
    assert per_datagram_calls(mixed(4, rare=0.1)) < 150  # of 300: a session's later ones only
    grams = [(valid(5), ("127.0.0.1", 9), 1.0) for _ in range(20)]
    assert per_datagram_calls(grams) == 0


def test_a_ceiling_on_sources_decodes_the_same_both_ways():
    (a, sa), (b, sb) = both(mixed(11), limits=Limits(max_samplers_per_session=2))
    assert a == b and sa == sb
    assert sa["evicted"].get("sflow-sources")


def test_real_pmacctd_exports_decode_the_same_both_ways(sessions):
    if not pmacct.available():
        return
    pcap, _ = sessions
    grams = [(p, a, 1.0) for p, a in pmacct.export(pcap)]
    (a, sa), (b, sb) = both(grams)
    assert a == b and sa == sb and len(a) > 100


@settings(max_examples=int(os.environ.get("SFLOW_BULK_EXAMPLES", "60")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_batches_decode_the_same_both_ways(data):
    grams = mixed(data.draw(st.integers(0, 1000)), n=24, rare=data.draw(st.sampled_from([0.0, 0.2, 1.0])))
    for _ in range(data.draw(st.integers(1, 6))):
        j = data.draw(st.integers(0, len(grams) - 1))
        d = bytearray(grams[j][0])
        if len(d) >= 4:
            at = data.draw(st.integers(0, len(d) // 4 - 1)) * 4
            struct.pack_into(">I", d, at, data.draw(st.sampled_from([0, 1, 2, 3, 5, 8, 0xFFFFFFFF, 1 << 30, 65600])))
        grams[j] = (bytes(d),) + grams[j][1:]
    (a, sa), (b, sb) = both(grams)
    assert a == b
    assert sa == sb
