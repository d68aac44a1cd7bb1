"""Decoder behaviour, table-driven: byte literals where the layout itself is under test,
the small encoder where a shape is needed that no exporter on this machine produces.
Expected values are written out by hand, never taken from the decoder. Every test runs with
the compiled kernels on and off."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from collector.netflow import encode as E
from collector.netflow import fields as F
from collector.netflow.batch import addr_to_str
from collector.netflow.decoder import Decoder
from collector.netflow.session import Limits
from tests.kernels import every_test_both_ways  # noqa: F401  (every test, kernels on and off)

SRC = ("192.0.2.10", 40000)
T0 = 1_764_000_000


def flows(batch):
    order = np.argsort(batch.seq, kind="stable")
    out = []
    for i in order:
        out.append(dict(
            src=addr_to_str(*batch.src_addr[i]), dst=addr_to_str(*batch.dst_addr[i]),
            sport=int(batch.src_port[i]), dport=int(batch.dst_port[i]), proto=int(batch.proto[i]),
            bytes=int(batch.bytes[i]), packets=int(batch.packets[i]), rate=int(batch.sampling_rate[i]),
            start=float(batch.start[i]), end=float(batch.end[i]), in_if=int(batch.in_if[i]),
            out_if=int(batch.out_if[i]), app=int(batch.app_id[i]), version=int(batch.version[i])))
    return out


def decode(dec, *datagrams, src=SRC, t=0.0):
    return flows(dec.decode([(d, src, t) for d in datagrams]))


# --- NetFlow v5: a hand-assembled datagram --------------------------------------------------

V5_ONE = bytes.fromhex(
    "0005" "0001" "00002710" "69271a80" "1dcd6500" "00000064" "01" "02" "4005"  # header
    "0a010203" "c6336407" "00000000" "0003" "0004" "0000000a" "000005dc"
    "00001f40" "00002328" "c738" "0747" "00" "18" "06" "00" "0000" "0000" "18" "18" "0000")


def test_v5_literal():
    dec = Decoder()
    (f,) = decode(dec, V5_ONE)
    assert f == dict(src="10.1.2.3", dst="198.51.100.7", sport=51000, dport=1863, proto=6,
                     bytes=1500 * 5, packets=10 * 5, rate=5, in_if=3, out_if=4, app=0, version=5,
                     start=pytest.approx(0x69271A80 + 0.5 - 2.0), end=pytest.approx(0x69271A80 + 0.5 - 1.0))
    sess = next(iter(dec.sessions.values()))
    assert (sess.version, sess.domain) == (5, 0x0102)


def test_v5_sampling_interval_zero_is_unsampled():
    d = bytearray(V5_ONE)
    d[22:24] = b"\x40\x00"  # mode 1, interval 0
    (f,) = decode(Decoder(), bytes(d))
    assert (f["bytes"], f["rate"]) == (1500, 1)


def test_v5_count_past_datagram():
    dec = Decoder()
    assert decode(dec, V5_ONE[:-1]) == []
    assert dec.stats.errors == {("192.0.2.10", "bad-length"): 1}


# --- NetFlow v9 -----------------------------------------------------------------------------

V9_TEMPLATE = bytes.fromhex(
    "0009" "0001" "000003e8" "69271a80" "00000000" "00000007"
    "0000" "0020" "0100" "0006"  # template flowset, template 256, 6 fields
    "0008" "0004" "000c" "0004" "0007" "0002" "000b" "0002" "0001" "0004" "0004" "0001")


def _v9_data(seq: int, records: list[bytes], source_id: int = 7) -> bytes:
    body = b"".join(records)
    body += b"\0" * (-len(body) % 4)
    return struct.pack(">HHIIII", 9, len(records), 1000, 0x69271A80, seq, source_id) + \
        struct.pack(">HH", 256, 4 + len(body)) + body


def _rec(src, dst, sport, dport, octets, proto):
    return bytes(map(int, src.split("."))) + bytes(map(int, dst.split("."))) + \
        struct.pack(">HHIB", sport, dport, octets, proto)


def test_v9_template_then_data_and_padding():
    dec = Decoder()
    assert decode(dec, V9_TEMPLATE) == []
    got = decode(dec, _v9_data(1, [_rec("10.0.0.1", "203.0.113.5", 5000, 5050, 999, 6),
                                   _rec("203.0.113.5", "10.0.0.1", 5050, 5000, 77, 6)]))
    assert [(f["src"], f["dst"], f["sport"], f["dport"], f["bytes"], f["proto"]) for f in got] == [
        ("10.0.0.1", "203.0.113.5", 5000, 5050, 999, 6), ("203.0.113.5", "10.0.0.1", 5050, 5000, 77, 6)]
    assert all(f["start"] == f["end"] == 0x69271A80 for f in got)  # no time fields: export time
    assert dec.stats.errors == {}


def test_v9_data_before_template_is_held_then_decoded():
    dec = Decoder()
    data = _v9_data(0, [_rec("10.0.0.2", "198.51.100.1", 1, 2, 10, 17)])
    assert decode(dec, data) == []
    assert dec.stats.total("held") == 1
    got = decode(dec, V9_TEMPLATE)
    assert [(f["src"], f["bytes"]) for f in got] == [("10.0.0.2", 10)]
    assert dec.stats.total("replayed") == 1 and dec.pending_count() == 0


def test_templates_are_scoped_by_address_port_and_domain():
    dec = Decoder()
    decode(dec, V9_TEMPLATE, src=("192.0.2.1", 1000))
    data = _v9_data(1, [_rec("10.0.0.3", "198.51.100.1", 1, 2, 10, 17)])
    # same address, other port; same port, other domain: no template there, data is held
    assert decode(dec, data, src=("192.0.2.1", 1001)) == []
    assert decode(dec, _v9_data(1, [_rec("10.0.0.3", "198.51.100.1", 1, 2, 10, 17)], source_id=8),
                  src=("192.0.2.1", 1000)) == []
    assert decode(dec, data, src=("192.0.2.2", 1000)) == []
    assert len(decode(dec, data, src=("192.0.2.1", 1000))) == 1
    assert dec.stats.total("held") == 3


def test_v9_uptime_times_and_wrap():
    flds = [(F.sourceIPv4Address, 4), (F.flowStartSysUpTime, 4), (F.flowEndSysUpTime, 4)]
    # uptime 1000 ms; first switched 2^32-1000 ms ago across a wrap
    row = {F.sourceIPv4Address: "10.0.0.1", F.flowStartSysUpTime: (1 << 32) - 1000, F.flowEndSysUpTime: 500}
    msg = E.v9_message([E.template_set([(300, flds)], False), E.data_set(300, flds, [row])],
                       uptime_ms=1000, unix_secs=T0, sequence=0)
    (f,) = decode(Decoder(), msg)
    assert f["start"] == pytest.approx(T0 - 2.0) and f["end"] == pytest.approx(T0 - 0.5)


# --- IPFIX -------------------------------------------------------------------------------------

def _ipfix(sets, seq=0, domain=1, export=T0):
    return E.ipfix_message(sets, export_time=export, sequence=seq, domain=domain)


@pytest.mark.parametrize("width", [1, 2, 3, 4, 5, 6, 7, 8])
def test_reduced_size_integers(width):
    flds = [(F.sourceIPv4Address, 4), (F.octetDeltaCount, width), (F.packetDeltaCount, 8)]
    value = (1 << (8 * width)) - 3
    rows = [{F.sourceIPv4Address: "10.9.9.9", F.octetDeltaCount: value, F.packetDeltaCount: 5}]
    (f,) = decode(Decoder(), _ipfix([E.template_set([(256, flds)], True), E.data_set(256, flds, rows)]))
    assert (f["bytes"], f["packets"]) == (value, 5)


def test_variable_length_fields_both_forms_and_enterprise_elements():
    pen_field = F.key(42, 9999)
    flds = [(F.sourceIPv4Address, 4), (F.interfaceName, F.VARLEN), (pen_field, 4),
            (F.applicationId, F.VARLEN), (F.octetDeltaCount, 4), (F.destinationTransportPort, 2)]
    rows = [
        {F.sourceIPv4Address: "10.1.1.1", F.interfaceName: b"ge-0/0/0", pen_field: 7,
         F.applicationId: bytes([13, 0, 1, 0xC5]), F.octetDeltaCount: 100, F.destinationTransportPort: 1863},
        {F.sourceIPv4Address: "10.1.1.2", F.interfaceName: b"x" * 300, pen_field: 8,
         F.applicationId: b"", F.octetDeltaCount: 200, F.destinationTransportPort: 5050},
    ]
    dec = Decoder()
    got = decode(dec, _ipfix([E.template_set([(256, flds)], True), E.data_set(256, flds, rows)]))
    assert [(f["src"], f["bytes"], f["dport"], f["app"]) for f in got] == [
        ("10.1.1.1", 100, 1863, (13 << 56) | 0x1C5), ("10.1.1.2", 200, 5050, 0)]
    assert dec.stats.errors == {}


def test_variable_length_field_past_the_set_drops_the_datagram_only():
    flds = [(F.sourceIPv4Address, 4), (F.interfaceName, F.VARLEN)]
    tmpl = E.template_set([(256, flds)], True)
    body = bytes([10, 0, 0, 1]) + bytes([200]) + b"abc"  # says 200 octets, has 3
    bad = struct.pack(">HH", 256, 4 + len(body)) + body
    dec = Decoder()
    assert decode(dec, _ipfix([tmpl, bad])) == []
    assert dec.stats.errors == {("192.0.2.10", "record-overrun"): 1}
    assert dec.sessions == {}  # the datagram's template was not applied either


def test_biflow_becomes_two_flows_and_empty_reverse_none():
    flds = [(F.sourceIPv4Address, 4), (F.destinationIPv4Address, 4), (F.sourceTransportPort, 2),
            (F.destinationTransportPort, 2), (F.protocolIdentifier, 1), (F.octetDeltaCount, 8),
            (F.packetDeltaCount, 8), (F.reverse(F.octetDeltaCount), 8), (F.reverse(F.packetDeltaCount), 8),
            (F.ingressInterface, 4), (F.egressInterface, 4)]
    rows = [
        {8: "10.0.0.5", 12: "198.51.100.9", 7: 51413, 11: 6881, 4: 6, 1: 1000, 2: 10,
         F.reverse(1): 50000, F.reverse(2): 40, 10: 1, 14: 2},
        {8: "10.0.0.6", 12: "198.51.100.9", 7: 5060, 11: 5060, 4: 17, 1: 300, 2: 3,
         F.reverse(1): 0, F.reverse(2): 0, 10: 1, 14: 2},
    ]
    got = decode(Decoder(), _ipfix([E.template_set([(256, flds)], True), E.data_set(256, flds, rows)]))
    assert sorted((f["src"], f["dst"], f["sport"], f["dport"], f["bytes"], f["packets"], f["in_if"],
                   f["out_if"]) for f in got) == sorted([
        ("10.0.0.5", "198.51.100.9", 51413, 6881, 1000, 10, 1, 2),
        ("198.51.100.9", "10.0.0.5", 6881, 51413, 50000, 40, 2, 1),
        ("10.0.0.6", "198.51.100.9", 5060, 5060, 300, 3, 1, 2)])


def test_withdrawal_and_redefinition():
    a = [(F.sourceIPv4Address, 4), (F.octetDeltaCount, 4)]
    b = [(F.octetDeltaCount, 4), (F.sourceIPv4Address, 4)]
    row = {F.sourceIPv4Address: "10.0.0.1", F.octetDeltaCount: 0x0A000002}
    dec = Decoder()
    assert [f["bytes"] for f in decode(dec, _ipfix([E.template_set([(256, a)], True),
                                                    E.data_set(256, a, [row])]))] == [0x0A000002]
    # redefinition with the fields swapped: the same bytes now read the other way round
    got = decode(dec, _ipfix([E.template_set([(256, b)], True), E.data_set(256, b, [row])], seq=1))
    assert [(f["src"], f["bytes"]) for f in got] == [("10.0.0.1", 0x0A000002)]
    decode(dec, _ipfix([E.withdrawal_set([256])], seq=2))
    assert decode(dec, _ipfix([E.data_set(256, b, [row])], seq=2)) == []
    assert dec.stats.total("held") == 1


def test_ipfix_uptime_times_use_system_init_time():
    opt = E.options_template_set(257, [(F.key(144), 4)], [(F.systemInitTimeMilliseconds, 8)], True)
    optdata = E.data_set(257, [(144, 4), (160, 8)], [{144: 1, 160: (T0 - 100) * 1000}])
    flds = [(F.sourceIPv4Address, 4), (F.flowStartSysUpTime, 4), (F.flowEndSysUpTime, 4)]
    data = E.data_set(256, flds, [{8: "10.0.0.1", 22: 10_000, 21: 20_500}])
    (f,) = decode(Decoder(), _ipfix([opt, optdata, E.template_set([(256, flds)], True), data]))
    assert (f["start"], f["end"]) == (pytest.approx(T0 - 90), pytest.approx(T0 - 79.5))


@pytest.mark.parametrize("times,expect", [
    ({F.flowStartSeconds: (T0, 4), F.flowEndSeconds: (T0 + 3, 4)}, (T0, T0 + 3)),
    ({F.flowStartMilliseconds: (T0 * 1000 + 250, 8), F.flowEndMilliseconds: (T0 * 1000 + 750, 8)},
     (T0 + 0.25, T0 + 0.75)),
    ({F.flowStartMicroseconds: (((T0 + F.NTP_EPOCH_OFFSET) << 32) | (1 << 31), 8),
      F.flowEndMicroseconds: ((T0 + 1 + F.NTP_EPOCH_OFFSET) << 32, 8)}, (T0 + 0.5, T0 + 1)),
    ({F.flowStartDeltaMicroseconds: (2_000_000, 4), F.flowEndDeltaMicroseconds: (500_000, 4)},
     (T0 + 10 - 2, T0 + 10 - 0.5)),
])
def test_time_encodings(times, expect):
    flds = [(F.sourceIPv4Address, 4)] + [(k, w) for k, (_, w) in times.items()]
    row = {F.sourceIPv4Address: "10.0.0.1", **{k: v for k, (v, _) in times.items()}}
    (f,) = decode(Decoder(), _ipfix([E.template_set([(256, flds)], True), E.data_set(256, flds, [row])],
                                    export=T0 + 10))
    assert (f["start"], f["end"]) == (pytest.approx(expect[0]), pytest.approx(expect[1]))


# --- sampling from options ------------------------------------------------------------------

def test_v9_sampler_table_and_per_session_rate():
    dec = Decoder()
    # options: sampler 3 samples 1 in 100 (v9 48/49/50), scoped to the system
    opt_t = E.options_template_set(260, [(F.V9_SCOPE_SYSTEM, 4)], [(48, 1), (49, 1), (50, 4)], False)
    opt_d = E.data_set(260, [(0, 4), (48, 1), (49, 1), (50, 4)], [{0: 0, 48: 3, 49: 2, 50: 100}])
    flds = [(F.sourceIPv4Address, 4), (F.octetDeltaCount, 4), (F.packetDeltaCount, 4), (48, 1)]
    rows = [{8: "10.0.0.1", 1: 40, 2: 1, 48: 3}, {8: "10.0.0.2", 1: 40, 2: 1, 48: 9}]
    got = decode(dec, E.v9_message([opt_t, opt_d, E.template_set([(256, flds)], False),
                                    E.data_set(256, flds, rows)], uptime_ms=1, unix_secs=T0, sequence=0))
    assert [(f["bytes"], f["packets"], f["rate"]) for f in got] == [(4000, 100, 100), (40, 1, 1)]
    # v9 SAMPLING_INTERVAL (34) without a sampler id: the whole session's rate
    opt_t2 = E.options_template_set(261, [(F.V9_SCOPE_SYSTEM, 4)], [(34, 4)], False)
    opt_d2 = E.data_set(261, [(0, 4), (34, 4)], [{0: 0, 34: 10}])
    flds2 = [(F.sourceIPv4Address, 4), (F.octetDeltaCount, 4)]
    got = decode(dec, E.v9_message([opt_t2, opt_d2, E.template_set([(257, flds2)], False),
                                    E.data_set(257, flds2, [{8: "10.0.0.3", 1: 7}])],
                                   uptime_ms=1, unix_secs=T0, sequence=1))
    assert [(f["bytes"], f["rate"]) for f in got] == [(70, 10)]


def test_ipfix_packet_interval_and_space():
    opt_t = E.options_template_set(300, [(F.selectorId, 8)], [(305, 4), (306, 4)], True)
    opt_d = E.data_set(300, [(302, 8), (305, 4), (306, 4)], [{302: 1, 305: 1, 306: 99}])
    flds = [(F.sourceIPv4Address, 4), (F.octetDeltaCount, 8), (F.selectorId, 8)]
    got = decode(Decoder(), _ipfix([opt_t, opt_d, E.template_set([(256, flds)], True),
                                    E.data_set(256, flds, [{8: "10.0.0.1", 1: 64, 302: 1}])]))
    assert [(f["bytes"], f["rate"]) for f in got] == [(6400, 100)]


def test_sampling_interval_zero_in_options_is_ignored_and_noticed():
    dec = Decoder()
    opt_t = E.options_template_set(260, [(F.V9_SCOPE_SYSTEM, 4)], [(34, 4)], False)
    opt_d = E.data_set(260, [(0, 4), (34, 4)], [{0: 0, 34: 0}])
    flds = [(F.sourceIPv4Address, 4), (F.octetDeltaCount, 4)]
    got = decode(dec, E.v9_message([opt_t, opt_d, E.template_set([(256, flds)], False),
                                    E.data_set(256, flds, [{8: "10.0.0.1", 1: 50}])],
                                   uptime_ms=1, unix_secs=T0, sequence=0))
    assert [(f["bytes"], f["rate"]) for f in got] == [(50, 1)]
    assert dec.stats.by_second("notices") == {"sampling-interval-zero": 1}


def test_configured_sampling_override_wins():
    dec = Decoder(sampling={"192.0.2.10": 1000})
    (f,) = decode(dec, V5_ONE)
    assert (f["bytes"], f["rate"]) == (1500 * 1000, 1000)


def test_interface_and_application_names_from_options():
    dec = Decoder()
    opt_if = E.options_template_set(400, [(F.ingressInterface, 4)], [(F.interfaceName, F.VARLEN)], True)
    d_if = E.data_set(400, [(10, 4), (82, F.VARLEN)], [{10: 3, 82: b"Gi0/0/3"}])
    opt_app = E.options_template_set(401, [(F.applicationId, 4)], [(F.applicationName, F.VARLEN)], True)
    d_app = E.data_set(401, [(95, 4), (96, F.VARLEN)], [{95: bytes([13, 0, 0, 7]), 96: b"ms-teams"}])
    decode(dec, _ipfix([opt_if, d_if, opt_app, d_app]))
    sess = next(iter(dec.sessions.values()))
    assert sess.if_names == {3: "Gi0/0/3"}
    assert sess.app_names == {(13 << 56) | 7: "ms-teams"}


# --- sequence numbers ---------------------------------------------------------------------

def test_sequence_loss_per_version():
    dec = Decoder()
    rec = dict(src="10.0.0.1", dst="1.1.1.1", sport=1, dport=2, proto=6, packets=1, bytes=40, first=0, last=0)
    for seq in (0, 2, 9):  # 2 records each: expected 2 then 4; 9 means 5 records lost
        decode(dec, E.v5_datagram([rec, rec], uptime_ms=1, unix_secs=T0, sequence=seq))
    assert dec.stats.seq_lost == {"192.0.2.10": 5}

    dec = Decoder()  # v9 counts packets: 3 packets missing at 27 records each
    flds = [(F.sourceIPv4Address, 4)]
    rows = [{8: "10.0.0.1"}] * 27
    decode(dec, E.v9_message([E.template_set([(256, flds)], False), E.data_set(256, flds, rows)],
                             uptime_ms=1, unix_secs=T0, sequence=10))
    decode(dec, E.v9_message([E.data_set(256, flds, rows)], uptime_ms=1, unix_secs=T0, sequence=11))
    decode(dec, E.v9_message([E.data_set(256, flds, rows)], uptime_ms=1, unix_secs=T0, sequence=15))
    assert dec.stats.seq_lost == {"192.0.2.10": 3 * 27}


# --- bad input: counted by reason, skipped whole, nothing else touched ------------------------

GOOD_T = E.template_set([(256, [(F.sourceIPv4Address, 4), (F.octetDeltaCount, 4)])], True)
GOOD_D = E.data_set(256, [(F.sourceIPv4Address, 4), (F.octetDeltaCount, 4)],
                    [{8: "10.0.0.1", 1: 100}])


def _raw_set(sid: int, body: bytes, length: int | None = None) -> bytes:
    return struct.pack(">HH", sid, 4 + len(body) if length is None else length) + body


BAD = {
    "truncated header": (b"\x00\x0a\x00\x20\x00", "short-header"),
    "v9 truncated header": (b"\x00\x09" + b"\0" * 10, "short-header"),
    "unknown version": (b"\x00\x07" + b"\0" * 30, "bad-version"),
    "ipfix length past datagram": (struct.pack(">HHIII", 10, 200, T0, 0, 1), "bad-length"),
    "set length 0": (_ipfix([GOOD_T, _raw_set(256, b"\0" * 8, 0)]), "bad-length"),
    "set past datagram": (_ipfix([GOOD_T, _raw_set(256, b"\0" * 8, 40)]), "bad-length"),
    "field count past set": (_ipfix([_raw_set(2, struct.pack(">HH", 256, 30) + b"\0\x08\0\x04")]),
                             "bad-template"),
    "template id below 256": (_ipfix([_raw_set(2, struct.pack(">HHHH", 200, 1, 8, 4))]), "bad-template"),
    "options scope not multiple of 4": (E.v9_message([_raw_set(1, struct.pack(">HHH", 300, 6, 4) + b"\0" * 10)],
                                                     uptime_ms=0, unix_secs=T0, sequence=0), "bad-template"),
    "options scope past set": (E.v9_message([_raw_set(1, struct.pack(">HHH", 300, 40, 4) + b"\0" * 8)],
                                            uptime_ms=0, unix_secs=T0, sequence=0), "bad-template"),
    "ipfix scope count above field count": (
        _ipfix([_raw_set(3, struct.pack(">HHH", 300, 1, 2) + b"\0\x08\0\x04")]), "bad-template"),
    "enterprise number past set": (_ipfix([_raw_set(2, struct.pack(">HHHH", 256, 1, 0x8001, 4))]),
                                   "bad-template"),
    "zero-length records": (_ipfix([_raw_set(2, struct.pack(">HHHH", 256, 1, 8, 0))]), "bad-template"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_datagram_counted_and_isolated(name):
    data, reason = BAD[name]
    dec = Decoder()
    other = ("198.51.100.1", 2055)
    decode(dec, _ipfix([GOOD_T]), src=other)
    before = {k: dict(s.templates) for k, s in dec.sessions.items()}
    assert decode(dec, data) == []
    assert dec.stats.errors == {("192.0.2.10", reason): 1}
    assert {k: dict(s.templates) for k, s in dec.sessions.items()} == before
    # the other exporter still decodes
    assert [f["bytes"] for f in decode(dec, _ipfix([GOOD_D], seq=1), src=other)] == [100]


def test_duplicate_fields_use_the_first_occurrence():
    flds = [(F.sourceIPv4Address, 4), (F.octetDeltaCount, 4), (F.octetDeltaCount, 4)]
    body = bytes([10, 0, 0, 1]) + struct.pack(">II", 5, 999)
    got = decode(Decoder(), _ipfix([E.template_set([(256, flds)], True), _raw_set(256, body)]))
    assert [f["bytes"] for f in got] == [5]


# --- ceilings -----------------------------------------------------------------------------------

def test_template_flood_from_many_sessions_stays_bounded():
    lim = Limits(max_sessions=100, max_templates=150)
    dec = Decoder(limits=lim)
    grams = [(_ipfix([GOOD_T]), ("10.%d.%d.1" % (i // 250, i % 250), 1000 + i), float(i)) for i in range(1000)]
    dec.decode(grams)
    assert len(dec.sessions) <= 100
    assert sum(len(s.templates) for s in dec.sessions.values()) <= 150
    assert dec.stats.evicted["sessions"] >= 900
    # the newest sessions survive
    assert ("10.3.249.1", 1999) in {(s.exporter, s.port) for s in dec.sessions.values()}


def test_templates_per_session_ceiling():
    dec = Decoder(limits=Limits(max_templates_per_session=10))
    sets = [E.template_set([(256 + i, [(F.sourceIPv4Address, 4)])], True) for i in range(50)]
    decode(dec, _ipfix(sets))
    (sess,) = dec.sessions.values()
    assert len(sess.templates) == 10 and dec.stats.evicted["templates"] == 40


def test_pending_ceilings_count_age_and_bytes():
    lim = Limits(max_pending_per_session=5, max_pending_bytes_per_session=10_000, pending_max_age=60)
    dec = Decoder(limits=lim)
    for i in range(8):
        dec.decode([(_ipfix([GOOD_D], seq=i), SRC, float(i))])
    assert dec.pending_count() == 5 and dec.stats.total("expired") == 3
    dec.expire(1000.0)
    assert dec.pending_count() == 0 and dec.stats.total("expired") == 8
    big = _ipfix([_raw_set(256, b"\0" * 12_000)])
    dec.decode([(big, SRC, 1001.0)])
    assert dec.pending_count() == 0 and dec.stats.total("expired") == 9


def test_save_and_load_template_state(tmp_path):
    dec = Decoder()
    decode(dec, V9_TEMPLATE)
    path = tmp_path / "templates.json"
    dec.save_state(str(path))
    fresh = Decoder()
    assert fresh.load_state(str(path)) == 1
    got = decode(fresh, _v9_data(1, [_rec("10.0.0.1", "203.0.113.5", 5000, 5050, 999, 6)]), src=SRC)
    assert [(f["src"], f["bytes"]) for f in got] == [("10.0.0.1", 999)]


def test_biflow_flow_counter_counts_both_directions():
    flds = [(F.sourceIPv4Address, 4), (F.octetDeltaCount, 8), (F.reverse(F.octetDeltaCount), 8)]
    rows = [{8: "10.0.0.1", 1: 10, F.reverse(1): 20}, {8: "10.0.0.2", 1: 0, F.reverse(1): 30},
            {8: "10.0.0.3", 1: 5, F.reverse(1): 0}]
    dec = Decoder()
    got = decode(dec, _ipfix([E.template_set([(256, flds)], True), E.data_set(256, flds, rows)]))
    assert sorted(f["bytes"] for f in got) == [5, 10, 20, 30]
    assert dec.stats.total("flows") == 4
