"""Fuzz suite: generated templates, options templates and data of any shape (RFC 3954 §5-6,
RFC 7011 §3.3-3.4, §7, §8), not mutations of valid datagrams (test_properties.py has those).

The generators draw from a `Draw`: hypothesis's data in the tests (so a failure shrinks to a
small datagram), a seeded `random.Random` in `bench/fuzz.py`, which runs the same generators
over a million datagrams. They make templates with any field ids (enterprise ones included),
any lengths (0, variable, huge), any counts and scope counts, withdrawals, reserved set ids,
padding, and data and options records for them; a `broken` stream also lies in its set, field
and record lengths and counts. v5 headers get any record count.

Properties (`check`): no exception escapes `Decoder.decode` and none is swallowed as
"internal"; every datagram is counted once; no flow is invented (no more flows than the data
sets hold records of a template with an address or a counter; none from a stream without data
sets); the state stays within `Limits`; the compiled kernels and the NumPy paths, and the bulk
and per-datagram paths, give the same flows and state.

`IMFLOW_FUZZ=long` runs the `fuzz-long` hypothesis profile (thousands of examples a test).
"""

from __future__ import annotations

import os
import random
import struct
from dataclasses import dataclass, field

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector import kernels
from collector.netflow import fields as F
from collector.netflow.batch import FlowBatch
from collector.netflow.decoder import Decoder
from collector.netflow.session import Limits
from tests.kernels import both_ways

settings.register_profile("fuzz", max_examples=15, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("fuzz-long", max_examples=5000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
PROFILE = settings.get_profile("fuzz-long" if os.environ.get("IMFLOW_FUZZ") == "long" else "fuzz")

T0 = 1_764_000_000
VARLEN = F.VARLEN
ADDRESSES = {F.sourceIPv4Address: 4, F.destinationIPv4Address: 4, F.sourceIPv6Address: 16,
             F.destinationIPv6Address: 16}
COUNTERS = {F.octetDeltaCount, F.packetDeltaCount, F.postOctetDeltaCount, F.postPacketDeltaCount,
            F.initiatorOctets, F.responderOctets, F.initiatorPackets, F.responderPackets,
            F.reverse(F.octetDeltaCount), F.reverse(F.packetDeltaCount), 85, 86}  # 85/86: total counts
BIFLOW = {F.reverse(F.octetDeltaCount), F.reverse(F.packetDeltaCount), F.responderOctets, F.responderPackets}
# element ids the decoder gives a meaning to, and some it does not
ELEMENTS = [*ADDRESSES, *sorted(c for c in COUNTERS if c < 1 << 15), F.protocolIdentifier, F.sourceTransportPort,
            F.destinationTransportPort, F.ingressInterface, F.egressInterface, F.flowStartSysUpTime,
            F.flowEndSysUpTime, *range(150, 161), F.samplingInterval, F.samplingAlgorithm, F.samplerId,
            F.samplerMode, F.samplerRandomInterval, F.selectorId, F.samplingPacketInterval, F.samplingPacketSpace,
            F.samplingSize, F.samplingPopulation, F.interfaceName, F.interfaceDescription,
            F.applicationDescription, F.applicationId, F.applicationName, 0, 5, 6, 60, 32767]
PENS = [F.REVERSE_PEN, 9, 2636, 1, 0xFFFFFFFF]
LENGTHS = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 16, 17, 32, 255, 256, 1000, 65534, VARLEN]
SOURCES = [("192.0.2.1", 2055), ("192.0.2.1", 2056), ("192.0.2.2", 2055), ("2001:db8::1", 4739)]
LIMITS = Limits(max_sessions=3, max_templates_per_session=6, max_templates=10, max_pending_per_session=3,
                max_pending_bytes_per_session=4096, max_pending_bytes=8192, max_names_per_session=5,
                max_samplers_per_session=4)


# --- what the generators draw from -----------------------------------------------------------

class Draw:
    """Hypothesis's `data` (shrinks toward small, ordinary choices) or a `random.Random`."""

    def __init__(self, data=None, rng: random.Random | None = None):
        self.data, self.rng = data, rng

    def int(self, lo: int, hi: int) -> int:
        if self.rng is not None:
            return self.rng.randint(lo, hi)
        return self.data.draw(st.integers(lo, hi))

    def choice(self, seq):
        if self.rng is not None:
            return seq[self.rng.randrange(len(seq))]
        return self.data.draw(st.sampled_from(seq))

    def maybe(self, p: float) -> bool:
        """True with probability p (a rare twist); shrinks to False."""
        if self.rng is not None:
            return self.rng.random() < p
        return self.data.draw(st.integers(0, 999)) >= 1000 * (1 - p)

    def bytes(self, n: int) -> bytes:
        if self.rng is not None:
            return self.rng.randbytes(n)
        return self.data.draw(st.binary(min_size=n, max_size=n))


# --- the model: templates as the generator meant them --------------------------------------

@dataclass
class Tmpl:
    tid: int
    fields: list[tuple[int, int]]  # (key, length); key = pen << 16 | id, or V9_SCOPE | type
    scope: int = 0  # fields of scope (options templates)

    @property
    def min_len(self) -> int:
        return sum(1 if n == VARLEN else n for _, n in self.fields)

    def carries_flows(self) -> bool:
        """An address or a counter of a readable width: the most a flow template needs."""
        return not self.scope and any(
            (k in ADDRESSES and n == ADDRESSES[k]) or (k in COUNTERS and 1 <= n <= 8) for k, n in self.fields)


    def biflow(self) -> bool:
        """RFC 5103 reverse counters (or responder ones): a record may give two flows."""
        return any(k in BIFLOW and n != VARLEN for k, n in self.fields)


@dataclass
class Stream:
    """Datagrams and what the generator knows about them."""

    version: int
    broken: bool  # lengths and counts may lie: the flow bound is only octets
    items: list[tuple[bytes, tuple, float]] = field(default_factory=list)
    templates: list[Tmpl] = field(default_factory=list)  # every definition sent, any session
    data_sets: list[tuple[int, int]] = field(default_factory=list)  # (set id, body octets)

    def flow_bound(self) -> int:
        """The most flows the stream's data sets can hold: each set's records of the flow
        template with that id that packs most of them (a strong bound only if not broken)."""
        if self.broken:  # a lying length can frame a data set anywhere: two flows an octet at most
            return sum(2 * max(0, len(data) - 16) for data, _, _ in self.items) if self.version != 5 else \
                sum(n for _, n in self.data_sets)
        shapes: dict[int, set] = {}  # tid -> {(min record length, flows per record)}
        for t in self.templates:
            if t.carries_flows() and t.min_len:
                shapes.setdefault(t.tid, set()).add((t.min_len, 2 if t.biflow() else 1))
        return sum(max(n // size * per for size, per in shapes[sid]) for sid, n in self.data_sets if sid in shapes)


# --- generators ------------------------------------------------------------------------------

def element(d: Draw, ipfix: bool) -> int:
    if ipfix and d.maybe(0.15):
        return F.key(d.int(0, 0x7FFF) if d.maybe(0.5) else d.choice(ELEMENTS) & 0x7FFF, d.choice(PENS))
    return d.choice(ELEMENTS) if not d.maybe(0.1) else d.int(0, 0x7FFF if ipfix else 0xFFFF)


def length(d: Draw) -> int:
    return d.choice(LENGTHS) if not d.maybe(0.05) else d.int(0, 65535)


def template(d: Draw, ipfix: bool, options: bool, tids: list[int], max_fields: int, flows: bool = True) -> Tmpl:
    """`flows=False`: no address or counter of a readable width (such a template carries no flow)."""
    tid = d.choice(tids) if not d.maybe(0.05) else d.int(0, 65535)
    n = d.int(1 if not options else 2, max_fields)
    if flows and d.maybe(0.2):  # a flow template: an address or counter among the fields
        flds = [(d.choice([*ADDRESSES, F.octetDeltaCount, F.packetDeltaCount]), 0)]
        flds[0] = (flds[0][0], ADDRESSES.get(flds[0][0], d.choice([1, 2, 4, 8])))
        flds += [(element(d, ipfix), length(d)) for _ in range(n - 1)]
    else:
        flds = [(element(d, ipfix), length(d)) for _ in range(n)]
    if not flows:
        flds = [(k, VARLEN) if k in ADDRESSES or k in COUNTERS else (k, ln) for k, ln in flds]
    scope = d.int(1, n - 1) if options else 0
    if options and not ipfix:  # v9 scope types live in their own space (RFC 3954 §6.1)
        flds = [(F.V9_SCOPE | (k & 0xFFFF), ln) for k, ln in flds[:scope]] + [(k & 0xFFFF, ln) for k, ln in flds[scope:]]
    return Tmpl(tid, flds, scope)


def _wire(k: int, n: int, ipfix: bool) -> bytes:
    if ipfix and k >= 1 << 16:  # IPFIX has no v9 scope space: every such key is an enterprise one
        return struct.pack(">HHI", 0x8000 | (k & 0x7FFF), n, k >> 16)
    return struct.pack(">HH", k & 0xFFFF, n)


def _set(sid: int, body: bytes, d: Draw, broken: bool) -> bytes:
    if d.maybe(0.3):  # padding (RFC 7011 §3.3.1)
        body += b"\0" * d.int(1, 3)
    n = len(body) + 4
    if broken and d.maybe(0.15):
        n = d.choice([0, 1, 3, 4, n - 1, n + 1, n + 4, 65535, d.int(0, 65535)])
    return struct.pack(">HH", sid, n & 0xFFFF) + body


def template_set(d: Draw, ipfix: bool, options: bool, ts: list[Tmpl], broken: bool) -> bytes:
    body = b""
    for t in ts:
        count = len(t.fields)
        if broken and d.maybe(0.1):
            count = d.choice([0, count + 1, count + d.int(2, 70000)]) & 0xFFFF
        if not options:
            body += struct.pack(">HH", t.tid, count)
        elif ipfix:
            body += struct.pack(">HHH", t.tid, count, t.scope if not (broken and d.maybe(0.1)) else d.int(0, 65535))
        else:
            s, o = 4 * t.scope, 4 * (len(t.fields) - t.scope)
            if broken and d.maybe(0.1):
                s, o = d.int(0, 65535), d.int(0, 65535)
            body += struct.pack(">HHH", t.tid, s, o)
        body += b"".join(_wire(k, n, ipfix) for k, n in t.fields)
    return _set((3 if options else 2) if ipfix else (1 if options else 0), body, d, broken)


def withdrawal_set(d: Draw, tids: list[int], options: bool) -> bytes:
    ids = [d.choice(tids + [3 if options else 2]) for _ in range(d.int(1, 3))]
    return _set(3 if options else 2, b"".join(struct.pack(">HH", tid, 0) for tid in ids), d, False)


def value(d: Draw, k: int, n: int) -> bytes:
    if n == VARLEN:
        size = d.choice([0, 1, 4, 16, 254, 255, 300]) if not d.maybe(0.05) else d.int(0, 2000)
        raw = d.bytes(size) if d.maybe(0.5) else (b"\x1b[2J=cmd|\x07\n" * (size // 12 + 1))[:size]
        return (bytes([size]) if size < 255 else b"\xff" + struct.pack(">H", size)) + raw
    if n > 64:
        return b"\0" * n
    if k in ADDRESSES and n in (4, 16) and d.maybe(0.8):
        return (bytes([10, 0, 0, d.int(1, 254)]) if n == 4 else b"\x20\x01\x0d\xb8" + b"\0" * 11 + bytes([d.int(1, 254)]))
    return d.bytes(n)


def data_set(d: Draw, t: Tmpl, broken: bool, max_records: int) -> bytes:
    body = b""
    for _ in range(d.int(0, max_records) if t.min_len <= 8000 else 0):
        record = b"".join(value(d, k, n) for k, n in t.fields)
        if len(body) + len(record) > 60_000:  # a set length is 16 bits
            break
        body += record
    if broken and body and d.maybe(0.2):
        body = body[:d.int(0, len(body) - 1)]  # the last record cut short
    return _set(t.tid, body, d, broken)


def templated(d: Draw, version: int, *, datagrams: int = 5, max_fields: int = 8, max_sets: int = 5,
              max_records: int = 6, data: bool = True, broken: bool | None = None, flows: bool = True) -> Stream:
    """A stream of v9 or IPFIX datagrams from a few sessions: templates, options templates,
    withdrawals and data (or no data at all) in any order."""
    ipfix = version == 10
    s = Stream(version, d.maybe(0.3) if broken is None else broken)
    tids = [256, 257, 258, 300, 65535] + ([2, 3, 255] if s.broken else [])
    known: list[Tmpl] = []
    for i in range(datagrams):
        sets = []
        for _ in range(d.int(0, max_sets)):
            kind = d.choice(["template", "options", "data", "data", "withdraw", "reserved"] if data else
                            ["template", "options", "withdraw", "reserved"])
            if kind in ("template", "options"):
                ts = [template(d, ipfix, kind == "options", tids, max_fields, flows) for _ in range(d.int(1, 3))]
                s.templates += ts
                known += ts
                sets.append(template_set(d, ipfix, kind == "options", ts, s.broken))
            elif kind == "data":
                t = d.choice(known) if known and not d.maybe(0.1) else Tmpl(d.choice(tids), [(F.protocolIdentifier, 4)])
                if t.tid < 256:
                    continue
                body = data_set(d, t, s.broken, max_records)
                s.data_sets.append((t.tid, max(0, len(body) - 4)))
                sets.append(body)
            elif kind == "withdraw" and ipfix:
                sets.append(withdrawal_set(d, tids, d.maybe(0.5)))
            elif kind == "reserved":
                sets.append(_set(d.choice([4, 5, 128, 255]), d.bytes(d.int(0, 12)), d, s.broken))
        body = b"".join(sets)
        if d.maybe(0.1):
            body += b"\0" * d.int(1, 3)  # v9 padding after the last set
        seq, domain = d.int(0, 2**32 - 1) if d.maybe(0.2) else i, d.choice([0, 0, 1, 2**32 - 1])
        if ipfix:
            n = 16 + len(body)
            if s.broken and d.maybe(0.1):
                n = d.choice([0, 15, 16, n - 1, n + 1, 65535])
            msg = struct.pack(">HHIII", 10, n & 0xFFFF, T0, seq, domain) + body
        else:
            count = len(sets) if not d.maybe(0.2) else d.int(0, 65535)
            msg = struct.pack(">HHIIII", 9, count, 90_000, T0, seq, domain) + body
        if s.broken and d.maybe(0.05):
            msg = msg[:d.int(0, len(msg))]
        s.items.append((msg, d.choice(SOURCES), float(i)))
    return s


def v5(d: Draw, *, datagrams: int = 4) -> Stream:
    """v5 datagrams with any record count in the header and any number of records after it."""
    s = Stream(5, True)
    for i in range(datagrams):
        count = d.choice([0, 1, 2, 30, 31]) if not d.maybe(0.2) else d.int(0, 65535)
        present = count if not d.maybe(0.3) else d.int(0, 32)
        head = struct.pack(">HHIIIIBBH", 5, count, 5000, T0, 0, d.int(0, 2**32 - 1), d.int(0, 255), d.int(0, 255),
                           d.int(0, 65535))
        body = d.bytes(48 * min(present, 40))
        msg = head + body + (d.bytes(d.int(1, 47)) if d.maybe(0.2) else b"")
        s.items.append((msg, d.choice(SOURCES), float(i)))
        s.data_sets.append((256, count if len(msg) >= 24 + 48 * count else 0))  # records, not octets
    return s


# --- the properties --------------------------------------------------------------------------

def flows_of(batch: FlowBatch) -> list[tuple]:
    order = np.argsort(batch.seq, kind="stable")
    cols = [batch.seq, batch.session, batch.version, batch.src_addr["hi"], batch.src_addr["lo"], batch.dst_addr["hi"],
            batch.dst_addr["lo"], batch.src_port, batch.dst_port, batch.proto, batch.bytes, batch.packets,
            batch.sampling_rate, batch.start, batch.end, batch.in_if, batch.out_if, batch.app_id]
    return list(zip(*(c[order].tolist() for c in cols)))


def state_of(dec: Decoder) -> dict:
    counters = {name: dict(getattr(dec.stats, name)) for name in
                ("datagrams", "flows", "errors", "seq_lost", "templates", "held", "expired", "notices",
                 "replayed", "evicted")}
    sessions = {key: (s.sid, s.next_seq, s.sampling_rate, dict(s.samplers), dict(s.if_names), dict(s.app_names),
                      sorted((tid, t.fields, t.scope_count) for tid, t in s.templates.items()), len(s.pending))
                for key, s in dec.sessions.items()}
    return {"counters": counters, "sessions": sessions}


def decode(stream: Stream, *, kernels_on: bool, bulk: bool = True, limits: Limits = LIMITS,
           cut: int = 2) -> tuple[Decoder, FlowBatch]:
    """Decode the stream in two calls (the second may take the bulk path), kernels on or off."""
    dec = Decoder(limits, bulk=bulk)
    with kernels.use(kernels_on):
        batch = FlowBatch.concat([dec.decode(stream.items[:cut]), dec.decode(stream.items[cut:])])
    return dec, batch


def waiting_datagrams(dec: Decoder) -> int:
    """Datagrams the decoder holds for a later call (where this version has such a queue)."""
    count = getattr(dec, "deferred_count", None)
    return count() if count else 0


def check(stream: Stream, dec: Decoder, batch: FlowBatch, limits: Limits = LIMITS) -> list[str]:
    """What the decoder got wrong on this stream (empty: nothing); the long run counts these."""
    wrong = []
    s = dec.stats
    errors = s.by_second("errors")
    if errors.get("internal", 0):
        wrong.append(f"internal error x{errors['internal']}")
    boundary = sum(n for (_, r), n in s.errors.items() if not r.startswith("held-"))
    waiting = waiting_datagrams(dec)  # new sessions' templates past the call's budget
    if s.total("datagrams") + boundary + waiting != len(stream.items):
        wrong.append(f"counted {s.total('datagrams')} datagrams + {boundary} errors + {waiting} waiting "
                     f"of {len(stream.items)}")
    if s.total("flows") != len(batch):
        wrong.append(f"flows counter {s.total('flows')} != {len(batch)} flows out")
    bound = stream.flow_bound()
    if len(batch) > bound:
        wrong.append(f"invented flows: {len(batch)} out, at most {bound} records of flow templates")
    if len(dec.sessions) > limits.max_sessions:
        wrong.append(f"{len(dec.sessions)} sessions")
    held = total_templates = 0
    for sess in dec.sessions.values():
        total_templates += len(sess.templates)
        held += sess.pending_bytes
        if len(sess.templates) > limits.max_templates_per_session:
            wrong.append(f"{len(sess.templates)} templates in a session")
        if len(sess.pending) > limits.max_pending_per_session or sess.pending_bytes > limits.max_pending_bytes_per_session:
            wrong.append(f"{len(sess.pending)} sets, {sess.pending_bytes} octets held in a session")
        if max(len(sess.if_names), len(sess.app_names)) > limits.max_names_per_session:
            wrong.append(f"{len(sess.if_names)} interface, {len(sess.app_names)} application names in a session")
        if len(sess.samplers) > limits.max_samplers_per_session:
            wrong.append(f"{len(sess.samplers)} samplers in a session")
    if total_templates > limits.max_templates:
        wrong.append(f"{total_templates} templates in all")
    if held > limits.max_pending_bytes:
        wrong.append(f"{held} octets held in all")
    return wrong + octet_ceilings(dec, limits)


def octet_ceilings(dec: Decoder, limits: Limits) -> list[str]:
    """The ceilings in octets (template and name bytes per session and overall, name length),
    where this version of `Limits` has them."""
    wrong = []
    sessions = list(dec.sessions.values())
    per = getattr(limits, "max_template_bytes_per_session", None)
    if per is not None:
        got = [getattr(x, "template_bytes", 0) for x in sessions]
        if max(got, default=0) > per:
            wrong.append(f"{max(got)} template octets in a session")
        if sum(got) > limits.max_template_bytes:
            wrong.append(f"{sum(got)} template octets in all")
    per = getattr(limits, "max_name_bytes_per_session", None)
    if per is not None:
        got = [getattr(x, "name_bytes", 0) for x in sessions]
        if max(got, default=0) > per:
            wrong.append(f"{max(got)} name octets in a session")
        if sum(got) > limits.max_name_bytes:
            wrong.append(f"{sum(got)} name octets in all")
    longest = getattr(limits, "max_name_length", None)
    if longest is not None:
        for x in sessions:
            for name in (*x.if_names.values(), *x.app_names.values()):
                if len(name) > longest:
                    wrong.append(f"a name of {len(name)} characters")
                    break
    return wrong


def report(stream: Stream, wrong: list[str]) -> str:
    """The findings and the stream as hex, for /work/fuzz-findings.md."""
    return "; ".join(wrong) + "\n" + "\n".join(f"  {src[0]}:{src[1]} {data.hex()}" for data, src, _ in stream.items)


def agree(stream: Stream, limits: Limits = LIMITS) -> list[str]:
    """The compiled kernels and NumPy give the same flows and state; so do the bulk and the
    per-datagram paths."""
    runs = {}
    for on, bulk in ((True, True), (False, True), (False, False)):
        if on and not kernels.available():
            continue
        dec, batch = decode(stream, kernels_on=on, bulk=bulk, limits=limits)
        runs[on, bulk] = (flows_of(batch), state_of(dec))
    wrong = []
    if (True, True) in runs and runs[True, True] != runs[False, True]:
        wrong.append("the kernels and NumPy differ")
    (bf, bs), (rf, rs) = runs[False, True], runs[False, False]
    if bf != rf:
        wrong.append("the bulk and per-datagram paths give different flows")
    elif bs != rs:
        wrong.append("the bulk and per-datagram paths leave different state")
    return wrong


# --- the tests -------------------------------------------------------------------------------

@both_ways
@PROFILE
@given(st.data(), st.sampled_from([9, 10]))
def test_generated_templates_and_data(kernels_on, data, version):
    stream = templated(Draw(data), version)
    dec, batch = decode(stream, kernels_on=kernels_on)
    wrong = check(stream, dec, batch)
    assert not wrong, report(stream, wrong)


@both_ways
@PROFILE
@given(st.data(), st.sampled_from([9, 10]))
def test_no_data_sets_no_flows(kernels_on, data, version):
    stream = templated(Draw(data), version, data=False)
    dec, batch = decode(stream, kernels_on=kernels_on)
    wrong = check(stream, dec, batch)
    assert not wrong, report(stream, wrong)
    assert len(batch) == 0


@both_ways
@PROFILE
@given(st.data(), st.sampled_from([9, 10]))
def test_templates_without_address_or_counter_give_no_flows(kernels_on, data, version):
    stream = templated(Draw(data), version, broken=False, flows=False)
    assert not any(t.carries_flows() for t in stream.templates)
    _, batch = decode(stream, kernels_on=kernels_on)
    assert len(batch) == 0


@both_ways
@PROFILE
@given(st.data())
def test_v5_any_count(kernels_on, data):
    stream = v5(Draw(data))
    dec, batch = decode(stream, kernels_on=kernels_on)
    wrong = check(stream, dec, batch)
    assert not wrong, report(stream, wrong)


@PROFILE
@given(st.data(), st.sampled_from([9, 10]))
def test_kernels_numpy_bulk_and_per_datagram_agree(data, version):
    stream = templated(Draw(data), version)
    wrong = agree(stream)
    assert not wrong, report(stream, wrong)


def _hex_stream(version: int, lines: str) -> Stream:
    items = []
    for i, line in enumerate(lines.split()):
        src, _, data = line.partition("=")
        addr, _, port = src.rpartition(":")
        items.append((bytes.fromhex(data), (addr, int(port)), float(i)))
    return Stream(version, True, items)  # no model of its templates: the bound is in octets


# Fuzz finding F1: four sessions under a ceiling of three. The bulk path stamped the known
# session 192.0.2.2 as seen before the per-datagram path of the same call opened a new session
# and evicted the least recently seen, so the two paths evicted different sessions (and one of
# them then reported 4 records lost in sequence). Fixed in 28fa2c4.
F1 = """
192.0.2.1:2055=000a002669248100000000000000000000030016010000020001800800000000727900080000
192.0.2.2:2055=000a0010692481000000000100000000
192.0.2.1:2055=000a001c6924810000000002000000000002000c0100000100080001
192.0.2.1:2055=000a001c6924810000000003000000010002000c0100000100080001
192.0.2.1:2056=000a0010692481000000000400000000
192.0.2.2:2055=000a0010692481000000000500000000
"""


def test_f1_bulk_and_per_datagram_paths_evict_the_same_sessions():
    stream = _hex_stream(10, F1)
    assert state_of(decode(stream, kernels_on=False, bulk=True)[0]) == \
        state_of(decode(stream, kernels_on=False, bulk=False)[0])


# Found by this suite on the code before the decoder's hardening: a data set held for template
# 256, then template 256 of one field (sourceIPv4Address of 1 octet: no address, no counter):
# the replay made one flow per octet of the held set.
HELD_REPLAY = """
192.0.2.1:2055=0009000200015f9069248100000000020000000001000008000000000000000c0100000100080001
"""


@both_ways
def test_a_held_set_replayed_for_a_template_without_flows_gives_none(kernels_on):
    stream = _hex_stream(9, HELD_REPLAY)
    dec, batch = decode(stream, kernels_on=kernels_on)
    assert len(batch) == 0
    assert check(stream, dec, batch) == []


# Fuzz finding F2: options data announcing a sampling interval above 2^32 - 1 (an 8-octet
# samplingInterval), then a flow: the rate reached a uint32 column and OverflowError escaped
# `decode`, losing the whole batch. Fixed in eb3be10.
F2 = """
192.0.2.1:2055=000900040000000169248100000000000000000000010014012c0004000400010004002200080000012c001000000000000000b710a21aca000000100100000200080004000100040100000c0a00000100000064
"""


@both_ways
def test_f2_a_huge_sampling_interval_does_not_escape(kernels_on):
    stream = _hex_stream(9, F2)
    dec, batch = decode(stream, kernels_on=kernels_on, cut=1)
    assert check(stream, dec, batch) == []


@settings(PROFILE, max_examples=max(5, PROFILE.max_examples // 3))
@given(st.data(), st.sampled_from([9, 10]))
def test_wide_templates_and_long_names(data, version):
    """Few datagrams, big shapes: hundreds of fields, variable-length names."""
    stream = templated(Draw(data), version, datagrams=2, max_fields=300, max_sets=2, max_records=2)
    dec, batch = decode(stream, kernels_on=kernels.available())
    wrong = check(stream, dec, batch)
    assert not wrong, report(stream, wrong)
