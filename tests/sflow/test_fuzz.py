"""Hostile sFlow: hypothesis mutates valid datagrams (octets flipped, cut anywhere, lengths and
counts replaced by absurd values) and generates headers of nested encapsulations (VLAN tags,
MPLS stacks, IPv6 extension chains, cut anywhere). Properties, as for NetFlow
(tests/netflow/test_fuzz.py): nothing escapes `Decoder.decode` and nothing is counted as an
internal error; every datagram is counted once (decoded or skipped by reason); no flow is
invented (never more flows than the datagram has flow samples, none from a skipped one);
per-agent state stays within `Limits`."""

from __future__ import annotations

import os
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.netflow.decoder import Decoder
from collector.netflow.session import Limits
from collector.sflow import encode as E
from collector.sflow.decode import VERSION, VERSION_COLUMN
from tests.support import pcapgen as pg

PROFILE = settings(max_examples=int(os.environ.get("SFLOW_FUZZ_EXAMPLES", "200")), deadline=None,
                   suppress_health_check=[HealthCheck.too_slow])
SRC = ("192.0.2.7", 40000)


def valid(n_flows: int = 3, counters: bool = True) -> bytes:
    frame = pg.ether_frame(pg.ip_packet("10.0.0.1", "192.0.2.9", pg.TCP,
                                        pg.tcp_segment("10.0.0.1", "192.0.2.9", 40000, 443, 1, 0, pg.ACK, b"x" * 30)),
                           vlans=[(0x8100, 7)])
    samples = [E.flow_sample([E.extended_switch(7, 7), E.raw_header(frame[:64], len(frame) + 4)], seq=i + 1, rate=64,
                             pool=64 * (i + 1), in_if=3, out_if=4, expanded=bool(i % 2)) for i in range(n_flows)]
    if counters:
        samples.append(E.counter_sample([E.if_counters(3, 10**9, 12345, 67890)], seq=1, source=3))
    return E.datagram(samples, seq=1)


def check(datagrams: list[bytes], limits: Limits | None = None) -> Decoder:
    dec = Decoder(limits=limits)
    batch = dec.decode([(d, SRC, 1.0) for d in datagrams])
    s = dec.stats
    assert not any(reason == "internal" for (_, reason) in s.errors), dict(s.errors)
    assert s.total("datagrams") + s.total("errors") == len(datagrams)
    assert len(batch) <= s.total("flows")  # (a flipped version word may make it NetFlow v5: its records)
    if not s.total("datagrams"):
        assert len(batch) == 0
    for sess in dec.sessions.values():
        if sess.sflow is not None:
            assert len(sess.sflow.sources) <= dec.limits.max_samplers_per_session
            assert len(sess.sflow.interfaces) <= dec.limits.max_names_per_session
    sflow = batch.version == VERSION_COLUMN  # (not the rows of a datagram a flip made NetFlow v5)
    assert (batch.bytes[sflow] <= (65_535 + 64) * batch.sampling_rate[sflow].astype("u8")).all()
    # the same datagrams eight times over in one batch: the bulk path's turn, same properties
    bulk = Decoder(limits=limits)
    many = bulk.decode([(d, SRC, 1.0) for d in datagrams] * 8)
    s8 = bulk.stats
    assert not any(reason == "internal" for (_, reason) in s8.errors), dict(s8.errors)
    assert s8.total("datagrams") + s8.total("errors") == 8 * len(datagrams)
    assert len(many) <= s8.total("flows")
    return dec


def test_the_valid_datagram_decodes():
    dec = check([valid()])
    assert dec.stats.by_second("flows") == {VERSION: 3}
    assert not dec.stats.errors


@PROFILE
@given(st.data())
def test_flipped_octets(data):
    d = bytearray(valid())
    for _ in range(data.draw(st.integers(1, 8))):
        d[data.draw(st.integers(0, len(d) - 1))] = data.draw(st.integers(0, 255))
    check([bytes(d)])


@PROFILE
@given(st.data())
def test_cut_anywhere(data):
    d = valid()
    check([d[:data.draw(st.integers(0, len(d)))]])


WORDS = st.sampled_from([0, 1, 3, 4, 7, 8, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0xFFFFFFFC, 65536, 65599, 65600])


@PROFILE
@given(st.data())
def test_absurd_words(data):
    """Any 32-bit word (lengths, counts, rates, frame lengths, address types) replaced by an
    absurd value."""
    d = bytearray(valid())
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(d) // 4 - 1)) * 4
        struct.pack_into(">I", d, at, data.draw(WORDS))
    check([bytes(d)])


LAYERS = st.lists(st.sampled_from(["vlan", "qinq", "mpls", "v6ext", "frag"]), max_size=12)


@PROFILE
@given(LAYERS, st.integers(0, 200), st.booleans(), st.sampled_from([1, 11, 12, 13, 2, 0, 0xFFFFFFFF]))
def test_nested_encapsulations(layers, cut, v6, protocol):
    l4 = pg.udp_segment("fd00::1" if v6 else "10.0.0.1", "fd00::2" if v6 else "10.0.0.2", 1, 2, b"y" * 20)
    if v6:
        nh, body = pg.UDP, l4
        for layer in layers:
            if layer == "v6ext":
                body, nh = pg.ipv6_ext_header(nh, b"z") + body, 60
            elif layer == "frag":
                body, nh = pg.ipv6_fragment_header(nh, 0, True, 1) + body, 44
        packet = pg.ipv6_packet("fd00::1", "fd00::2", nh, body)
    else:
        packet = pg.ipv4_packet("10.0.0.1", "10.0.0.2", pg.UDP, l4)
    labels = layers.count("mpls")
    if labels:
        packet = b"".join(struct.pack(">I", (i + 16) << 12 | (i == labels - 1) << 8) for i in range(labels)) + packet
    vlans = [(0x88A8 if x == "qinq" else 0x8100, 1) for x in layers if x in ("vlan", "qinq")]
    frame = pg.ether_frame(packet, vlans=vlans, ethertype=0x8847 if labels else None)
    if protocol != 1:
        frame = packet
    header = frame[:cut] if cut else frame
    d = E.datagram([E.flow_sample([E.raw_header(header or b"\0", len(frame) + 4, protocol=protocol)], seq=1, rate=2)],
                   seq=1)
    check([d])


def test_more_sources_than_the_ceiling_are_counted():
    limits = Limits(max_samplers_per_session=4)
    grams = [E.datagram([E.flow_sample([E.raw_header(pg.ether_frame(pg.ip_packet(
        "10.0.0.1", "10.0.0.2", pg.UDP, pg.udp_segment("10.0.0.1", "10.0.0.2", 1, 2, b"q" * 20))), 70)],
        seq=1, rate=1, source=k)], seq=k + 1) for k in range(10)]
    dec = check(grams, limits)
    assert dec.stats.evicted["sflow-sources"] == 6


def test_one_agent_never_reaches_another_agents_state():
    """Two agents behind one source address and port are two sessions: their datagram sequence
    numbers and sources stay apart (no loss is invented by interleaving them)."""
    grams = []
    for seq in range(1, 6):
        for agent in ("192.0.2.1", "192.0.2.2"):
            grams.append(E.datagram([E.flow_sample([E.sampled_ip(100, 6, "10.0.0.1", "10.0.0.2", 1, 2)],
                                                   seq=seq, rate=1)], seq=seq, agent=agent))
    dec = check(grams)
    assert len([s for s in dec.sessions.values() if s.sflow]) == 2
    assert dec.stats.total("seq_lost") == 0


def test_lost_datagrams_are_estimated_from_sequence_numbers():
    grams = [E.datagram([E.flow_sample([E.sampled_ip(100, 6, "10.0.0.1", "10.0.0.2", 1, 2)], seq=s, rate=1)] * 2,
                        seq=s) for s in (1, 2, 5, 6)]  # datagrams 3 and 4 lost: 2 x 2 samples
    dec = check(grams)
    assert dec.stats.total("seq_lost") == 4
