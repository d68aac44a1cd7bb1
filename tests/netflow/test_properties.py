"""Property tests: mutated valid datagrams never raise, never invent flows, always count,
with the compiled kernels on and off (`both_ways`)."""

from __future__ import annotations

import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector import kernels
from collector.netflow import encode as E
from collector.netflow import fields as F
from collector.netflow.batch import FlowBatch
from collector.netflow.decoder import Decoder
from collector.netflow.session import Limits
from tests.kernels import both_ways

T0 = 1_764_000_000
FIELDS = [(F.sourceIPv4Address, 4), (F.destinationIPv4Address, 4), (F.sourceTransportPort, 2),
          (F.destinationTransportPort, 2), (F.protocolIdentifier, 1), (F.octetDeltaCount, 4),
          (F.packetDeltaCount, 4), (F.flowStartSysUpTime, 4), (F.flowEndSysUpTime, 4),
          (F.applicationId, F.VARLEN)]
OPTIONS = ([(F.key(144), 4)], [(F.samplingPacketInterval, 4), (F.interfaceName, F.VARLEN)])

addresses = st.tuples(*[st.integers(1, 254)] * 4).map(lambda t: ".".join(map(str, t)))
rows = st.lists(st.fixed_dictionaries({
    F.sourceIPv4Address: addresses, F.destinationIPv4Address: addresses,
    F.sourceTransportPort: st.integers(0, 65535), F.destinationTransportPort: st.integers(0, 65535),
    F.protocolIdentifier: st.sampled_from([6, 17]), F.octetDeltaCount: st.integers(0, 2**32 - 1),
    F.packetDeltaCount: st.integers(0, 2**32 - 1), F.flowStartSysUpTime: st.integers(0, 2**32 - 1),
    F.flowEndSysUpTime: st.integers(0, 2**32 - 1), F.applicationId: st.binary(max_size=8),
}), min_size=1, max_size=20)


def v5_of(rs, seq):
    recs = [dict(src=r[8], dst=r[12], sport=r[7], dport=r[11], proto=r[4], packets=r[2], bytes=r[1],
                 first=r[22], last=r[21]) for r in rs]
    return E.v5_datagram(recs, uptime_ms=5, unix_secs=T0, sequence=seq, sampling=3)


def templated_of(version, rs, seq, with_template):
    ipfix = version == 10
    flds = FIELDS if ipfix else FIELDS[:-1]
    sets = []
    if with_template:
        sets.append(E.template_set([(256, flds)], ipfix))
        sets.append(E.options_template_set(257, OPTIONS[0], OPTIONS[1] if ipfix else OPTIONS[1][:1], ipfix)
                    if ipfix else E.options_template_set(257, [(F.V9_SCOPE_SYSTEM, 4)], [(34, 4)], False))
    sets.append(E.data_set(256, flds, rs))
    if ipfix:
        return E.ipfix_message(sets, export_time=T0, sequence=seq, domain=3)
    return E.v9_message(sets, uptime_ms=7, unix_secs=T0, sequence=seq, source_id=3)


mutation = st.one_of(
    st.tuples(st.just("truncate"), st.integers(0, 2000)),
    st.tuples(st.just("flip"), st.lists(st.tuples(st.integers(0, 2000), st.integers(1, 255)), max_size=6)),
    st.tuples(st.just("insert"), st.integers(0, 2000), st.binary(min_size=1, max_size=12)),
    st.tuples(st.just("delete"), st.integers(0, 2000), st.integers(1, 12)),
    st.tuples(st.just("none"),),
)


def mutate(data: bytes, m) -> bytes:
    b = bytearray(data)
    if m[0] == "truncate":
        return bytes(b[: m[1] % (len(b) + 1)])
    if m[0] == "flip":
        for pos, x in m[1]:
            b[pos % len(b)] ^= x
    elif m[0] == "insert":
        p = m[1] % (len(b) + 1)
        b[p:p] = m[2]
    elif m[0] == "delete":
        p = m[1] % len(b)
        del b[p:p + m[2]]
    return bytes(b)


@both_ways
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(version=st.sampled_from([5, 9, 10]), batches=st.lists(st.tuples(rows, mutation, st.booleans()),
                                                              min_size=1, max_size=6))
def test_mutated_datagrams(kernels_on, version, batches):
    lim = Limits(max_sessions=4, max_templates_per_session=4, max_pending_per_session=3)
    dec = Decoder(limits=lim)
    inputs = []
    for i, (rs, m, with_template) in enumerate(batches):
        good = v5_of(rs, i) if version == 5 else templated_of(version, rs, i, with_template or i == 0)
        inputs.append((mutate(good, m), ("192.0.2.1", 9000 + (i % 2)), float(i)))
    with kernels.use(kernels_on):  # must not raise
        # each session's first datagram in a call of its own: the rest may take the bulk path
        batch = FlowBatch.concat([dec.decode(inputs[:2]), dec.decode(inputs[2:])])

    s = dec.stats
    # every datagram is either decoded or counted as an error, exactly once
    # (a held set that fails when its template comes is counted again, as "held-<reason>")
    boundary = sum(n for (_, r), n in s.errors.items() if not r.startswith("held-"))
    assert s.total("datagrams") + boundary == len(inputs)
    assert s.by_second("errors").get("internal", 0) == 0
    # no flow the bytes do not hold: each flow's source address occurs in some input,
    # and there are no more flows than the input can carry
    blob = b"".join(d for d, _, _ in inputs)
    assert len(batch) <= len(blob) // (48 if version == 5 else 8) * (2 if version == 10 else 1) + 1
    lo = batch.src_addr["lo"] & 0xFFFFFFFF
    for v in set(lo.tolist()):
        assert struct.pack(">I", v) in blob
    # state within its ceilings
    assert len(dec.sessions) <= lim.max_sessions
    for sess in dec.sessions.values():
        assert len(sess.templates) <= lim.max_templates_per_session
        assert len(sess.pending) <= lim.max_pending_per_session
    assert s.total("flows") == len(batch)


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=0, max_size=300), st.sampled_from([b"\x00\x05", b"\x00\x09", b"\x00\x0a"]))
def test_random_bytes_after_a_version(tail, head):
    dec = Decoder()
    dec.decode([(head + tail, ("192.0.2.1", 1), 0.0)])
    assert dec.stats.total("datagrams") + dec.stats.total("errors") == 1
    assert dec.stats.by_second("errors").get("internal", 0) == 0
