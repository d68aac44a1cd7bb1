"""The decoder's bulk path against its per-datagram path (`Decoder(bulk=False)`).

The per-datagram path is checked against softflowd's pcap totals and record by record against
tshark elsewhere; here random streams from several exporters (v5, v9, IPFIX; template refreshes,
redefinitions and withdrawals, options that change or repeat, sequence gaps and restarts, data
before its template, malformed datagrams) are decoded both ways, in the same batches, and must
give the same flows, counters and exporter state. Every comparison runs with the compiled
kernels on and off (`both_ways`): the bulk path's set walk and the field reads are the
kernels' in one run and NumPy's in the other.
"""

from __future__ import annotations

import os
import struct

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector import kernels
from collector.netflow import decoder as D
from collector.netflow import encode as E
from collector.netflow import fields as F
from collector.netflow.decoder import Decoder
from collector.netflow.session import Limits
from tests.kernels import both_ways

T0 = 1_764_000_000
A = [(F.sourceIPv4Address, 4), (F.destinationIPv4Address, 4), (F.sourceTransportPort, 2),
     (F.destinationTransportPort, 2), (F.protocolIdentifier, 1), (F.octetDeltaCount, 4),
     (F.packetDeltaCount, 4), (F.flowStartSysUpTime, 4), (F.flowEndSysUpTime, 4), (F.ingressInterface, 2)]
B = [(F.sourceIPv6Address, 16), (F.destinationIPv6Address, 16), (F.sourceTransportPort, 2),
     (F.destinationTransportPort, 2), (F.protocolIdentifier, 1), (F.octetDeltaCount, 8),
     (F.packetDeltaCount, 8), (F.flowStartMilliseconds, 8), (F.flowEndMilliseconds, 8)]
SWAPPED = [A[1], A[0]] + A[2:]  # a redefinition of template 256
SOURCES = [("192.0.2.1", 2055), ("192.0.2.1", 2056), ("2001:db8::7", 9995)]

row = st.fixed_dictionaries({
    F.sourceIPv4Address: st.integers(1, 2**32 - 1), F.destinationIPv4Address: st.integers(1, 2**32 - 1),
    F.sourceIPv6Address: st.binary(min_size=16, max_size=16), F.destinationIPv6Address: st.binary(min_size=16, max_size=16),
    F.sourceTransportPort: st.integers(0, 65535), F.destinationTransportPort: st.integers(0, 65535),
    F.protocolIdentifier: st.sampled_from([6, 17]), F.octetDeltaCount: st.integers(0, 2**32 - 1),
    F.packetDeltaCount: st.integers(0, 2**20), F.flowStartSysUpTime: st.integers(0, 2**32 - 1),
    F.flowEndSysUpTime: st.integers(0, 2**32 - 1), F.ingressInterface: st.integers(0, 65535),
    F.flowStartMilliseconds: st.integers(T0 * 1000 - 10**6, T0 * 1000),
    F.flowEndMilliseconds: st.integers(T0 * 1000 - 10**6, T0 * 1000)})

event = st.tuples(
    st.integers(0, len(SOURCES) - 1),  # exporter
    st.sampled_from([5, 9, 10]),  # version
    st.integers(0, 1),  # domain / engine
    st.sampled_from(["data", "data", "data", "refresh", "options", "options-same", "redefine",
                     "withdraw", "unknown", "gap", "restart", "junk", "two-sets"]),
    st.lists(row, min_size=0, max_size=6),
    st.integers(1, 4),  # sampling interval
)


def _options(version: int, rate: int) -> list[bytes]:
    ipfix = version == 10
    scope = [(F.key(144), 4)] if ipfix else [(F.V9_SCOPE_SYSTEM, 4)]
    opts = [(F.samplingInterval, 4), (F.ingressInterface, 4), (F.interfaceName, 8)]
    return [E.options_template_set(300, scope, opts, ipfix),
            E.data_set(300, scope + opts, [{scope[0][0]: 1, F.samplingInterval: rate, F.ingressInterface: 3,
                                            F.interfaceName: b"ge-0/0/3"}])]


def stream(events) -> list[tuple[bytes, tuple, float]]:
    seqs: dict = {}
    out = []
    for n, (src, version, domain, kind, rs, rate) in enumerate(events):
        key = (src, version, domain)
        seq = seqs.get(key, 0)
        if kind == "gap":
            seq += 5
        elif kind == "restart":
            seq = 0
        received = T0 + n * 0.01
        if version == 5:
            recs = [dict(src=str(r[F.sourceIPv4Address] >> 24) + ".0.0.1", dst="198.51.100.9",
                         sport=r[F.sourceTransportPort], dport=r[F.destinationTransportPort],
                         proto=r[F.protocolIdentifier], packets=r[F.packetDeltaCount], bytes=r[F.octetDeltaCount],
                         first=r[F.flowStartSysUpTime], last=r[F.flowEndSysUpTime]) for r in rs]
            d = E.v5_datagram(recs, uptime_ms=5000, unix_secs=T0, sequence=seq, engine_id=domain,
                              sampling=rate if kind == "options" else 0)
            seqs[key] = seq + len(recs)
        else:
            ipfix = version == 10
            flds = B if ipfix and kind == "two-sets" else (SWAPPED if kind == "redefine" else A)
            sets = []
            if kind in ("refresh", "redefine") or n == 0:
                sets.append(E.template_set([(256, flds)] + ([(257, B)] if ipfix else []), ipfix))
            if kind in ("options", "options-same"):
                sets += _options(version, rate if kind == "options" else 1)
            if kind == "withdraw" and ipfix:
                sets.append(E.withdrawal_set([256]))
            tid = 999 if kind == "unknown" else 256
            sets.append(E.data_set(tid, A if tid == 256 and flds is not SWAPPED else flds, rs))
            if kind == "two-sets":
                sets.append(E.data_set(257, B, rs) if ipfix else E.data_set(256, A, rs[:2]))
            records = len(rs) + (len(rs) if kind == "two-sets" else 0) + (1 if "options" in kind else 0)
            if ipfix:
                d = E.ipfix_message(sets, export_time=T0, sequence=seq, domain=domain)
                seqs[key] = seq + records
            else:
                d = E.v9_message(sets, uptime_ms=90_000, unix_secs=T0, sequence=seq, source_id=domain)
                seqs[key] = seq + 1
        if kind == "junk":
            d = d[: max(0, len(d) - 7)] + b"\x00\x01"
        out.append((d, SOURCES[src], received))
    return out


def _flows(batch) -> list[tuple]:
    order = np.argsort(batch.seq, kind="stable")
    cols = [batch.seq, batch.session, batch.version, batch.src_addr["hi"], batch.src_addr["lo"],
            batch.dst_addr["lo"], batch.src_port, batch.dst_port, batch.proto, batch.bytes, batch.packets,
            batch.sampling_rate, batch.start, batch.end, batch.in_if]
    return list(zip(*(c[order].tolist() for c in cols)))


def _state(dec: Decoder) -> dict:
    counters = {name: dict(getattr(dec.stats, name)) for name in
                ("datagrams", "flows", "errors", "seq_lost", "templates", "held", "expired", "notices",
                 "replayed", "evicted")}
    sessions = {key: (s.sid, s.next_seq, s.packets_seen, s.records_seen, s.sampling_rate, dict(s.samplers),
                      sorted((tid, t.fields) for tid, t in s.templates.items()), dict(s.if_names), len(s.pending))
                for key, s in dec.sessions.items()}
    return {"counters": counters, "sessions": sessions}


def _both(datagrams, cuts, kernels_on: bool, limits=None):
    got = []
    with kernels.use(kernels_on):
        for bulk in (True, False):
            dec = Decoder(limits, bulk=bulk)
            flows = []
            for a, b in zip([0] + cuts, cuts + [len(datagrams)]):
                flows += _flows(dec.decode(datagrams[a:b]))
            got.append((flows, _state(dec)))
    return got


@both_ways
@settings(max_examples=int(os.environ.get("BULK_EXAMPLES", 150)), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(event, min_size=1, max_size=60), st.lists(st.integers(0, 60), max_size=4))
def test_bulk_path_equals_per_datagram_path(kernels_on, events, cuts):
    datagrams = stream(events)
    cuts = sorted({c for c in cuts if 0 < c < len(datagrams)})
    (bulk_flows, bulk_state), (ref_flows, ref_state) = _both(datagrams, cuts, kernels_on)
    assert bulk_flows == ref_flows
    for name, counter in ref_state["counters"].items():
        assert bulk_state["counters"][name] == counter, name
    assert bulk_state["sessions"] == ref_state["sessions"]


@both_ways
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(event, min_size=1, max_size=30), st.booleans())
def test_each_flow_s_session_is_its_datagram_s_exporter(kernels_on, events, one_exporter):
    """The session column against the datagrams themselves: each flow's session (its capture
    order names the datagram) is the (address, port, version) that datagram came from. A batch
    from one session holds the id once, as a view of no memory (memory at a batch's peak)."""
    if one_exporter:
        events = [(0, 9, 0, *e[3:]) for e in events]
    datagrams = stream(events)
    dec = Decoder()
    with kernels.use(kernels_on):
        batches = [dec.decode(datagrams[:1]), dec.decode(datagrams[1:])]
    for batch in batches:
        for sid, seq in zip(batch.session.tolist(), batch.seq.tolist()):
            n = (seq >> 20) - 1  # the datagram's number in capture order, from 1
            sess = dec.by_sid[sid]
            assert (sess.exporter, sess.port, sess.version) == (*datagrams[n][1], events[n][1])
        if len(batch) > 1:  # one row is a view whatever made it
            assert (batch.session.strides == (0,)) == (len(set(batch.session.tolist())) == 1)


LEAN = ("src_addr", "dst_addr", "src_port", "dst_port", "proto", "bytes", "packets", "end", "in_if")


@both_ways
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(event, min_size=1, max_size=60), st.lists(st.integers(0, 60), max_size=4))
def test_a_column_subset_decodes_those_columns_alike(kernels_on, events, cuts):
    """`Decoder(columns=...)` (the daemon's way) fills what it is asked for exactly as the
    full decode does, and leaves the rest zero."""
    datagrams = stream(events)
    cuts = sorted({c for c in cuts if 0 < c < len(datagrams)})
    rows = []
    for columns in (None, LEAN):
        dec = Decoder(columns=columns)
        got = []
        for a, b in zip([0] + cuts, cuts + [len(datagrams)]):
            with kernels.use(kernels_on):
                batch = dec.decode(datagrams[a:b])
            if columns is not None:
                for skipped in ("seq", "start", "version", "sampling_rate", "out_if", "app_id"):
                    assert not getattr(batch, skipped).any(), skipped
            cols = [batch.session, batch.src_addr["hi"], batch.src_addr["lo"], batch.dst_addr["lo"],
                    batch.src_port, batch.dst_port, batch.proto, batch.bytes, batch.packets, batch.end,
                    batch.in_if]
            got += zip(*(c.tolist() for c in cols))
        rows.append(sorted(got))
    assert rows[0] == rows[1]


@both_ways
def test_bulk_path_takes_the_usual_datagrams(monkeypatch, kernels_on):
    """Plain data of known templates is decoded in bulk (not by the per-datagram path), and a
    template refresh or repeated options do not send the rest of a batch the slow way."""
    events = [(0, 9, 0, "data", [], 1)]
    rows = [{F.sourceIPv4Address: 0x0A000001 + i, F.destinationIPv4Address: 0xC6336409, F.octetDeltaCount: 100 + i,
             F.packetDeltaCount: 1, F.protocolIdentifier: 6} for i in range(5)]
    events += [(0, 9, 0, "options-same", rows, 1), (0, 9, 0, "options-same", rows, 1)]
    events += [(0, 9, 0, kind, rows, 1) for kind in ["data"] * 20 + ["refresh", "options-same"] + ["data"] * 20]
    datagrams = stream(events)
    dec = Decoder()
    dec.decode(datagrams[:3])  # defines the templates; the options become known to change nothing
    taken = {}
    real = D.bulk

    def spy(d, items, base):
        rest = real(d, items, base)
        taken["bulk"] = len(items) - len(rest)
        return rest

    monkeypatch.setattr(D, "bulk", spy)
    with kernels.use(kernels_on):
        batch = dec.decode(datagrams[3:])
    assert taken["bulk"] == len(datagrams) - 3
    assert len(batch) == 5 * (len(datagrams) - 3)
    assert sorted(batch.bytes.tolist()) == sorted([100 + i for i in range(5)] * (len(datagrams) - 3))


@both_ways
def test_bulk_path_with_session_eviction_and_malformed_headers(kernels_on):
    limits = Limits(max_sessions=2)
    events = [(i % 3, 10, 0, "data" if i > 2 else "refresh", [{F.octetDeltaCount: i}], 1) for i in range(30)]
    datagrams = stream(events)
    datagrams.insert(10, (b"\x00\x0a\x00\x05", SOURCES[0], T0))  # IPFIX header claiming 5 octets
    datagrams.insert(12, (struct.pack(">HH", 10, 400) + bytes(12), SOURCES[1], T0))  # length past the end
    (bf, bs), (rf, rs) = _both(datagrams, [7, 19], kernels_on, limits)
    assert bf == rf
    assert bs == rs


@both_ways
def test_sets_like_the_first_of_their_kind_but_changed_are_judged_on_their_own(kernels_on):
    """In one batch, after an identical template refresh and repeated options data, a template
    set of the same length and template id that redefines it (src and dst swapped), and options
    data of the same length with another sampling interval: each must be seen as a change,
    not given the verdict of the unchanged set before it."""
    rows = [{F.sourceIPv4Address: 0x0A000001 + i, F.destinationIPv4Address: 0xC6336409 + i,
             F.octetDeltaCount: 100 + i, F.packetDeltaCount: 1, F.protocolIdentifier: 6} for i in range(3)]
    for version in (9, 10):
        # the first batch defines the templates and makes the options known to change nothing
        first = [(0, version, 0, kind, rows, 1) for kind in ("data", "options-same", "options-same")]
        for changed in ("redefine", "options"):
            events = first + [(0, version, 0, kind, rows, 1) for kind in
                              ("refresh", "options-same", "data", changed, "data", "refresh", "options-same")]
            (bulk_flows, bulk_state), (ref_flows, ref_state) = _both(stream(events), [3], kernels_on)
            assert bulk_flows == ref_flows, (version, changed)
            assert bulk_state == ref_state, (version, changed)


@both_ways
def test_datagrams_with_more_sets_than_the_bulk_walk_takes(kernels_on):
    """Up to MAX_SETS sets a datagram may take the bulk path; with more (or ending in a set
    too short for its header, or in padding) it takes the other path or walks to its end:
    the flows are the same either way."""
    from collector.netflow.bulk import MAX_SETS
    rows = [{F.sourceIPv4Address: 0x0A000001, F.destinationIPv4Address: 0xC6336409, F.octetDeltaCount: 7,
             F.packetDeltaCount: 1, F.protocolIdentifier: 17}]
    for version in (9, 10):
        ipfix = version == 10
        first = stream([(0, version, 0, "data", rows, 1)])  # defines the template
        out = []
        for count in (MAX_SETS - 1, MAX_SETS, MAX_SETS + 1, MAX_SETS + 4):
            sets = [E.data_set(256, A, [{**rows[0], F.octetDeltaCount: 100 * count + i}]) for i in range(count)]
            for tail in (b"", b"\x00\x00", b"\x01\x00\x00\x02"):  # nothing, padding, a set header too short
                body = b"".join(sets) + tail
                d = (E.ipfix_message([body], export_time=T0, sequence=0) if ipfix else
                     E.v9_message([body], uptime_ms=90_000, unix_secs=T0, sequence=0, count=count))
                out.append((d, SOURCES[0], T0 + 1))
        # a batch each: a datagram the bulk path leaves would take its session's later ones along
        (bf, bs), (rf, rs) = _both(first + out, list(range(1, len(out) + 1)), kernels_on)
        assert bf == rf and bs == rs, version
        assert sum(1 for f in bf if f[9] >= 100 * MAX_SETS) > 0  # the long datagrams' flows are there
