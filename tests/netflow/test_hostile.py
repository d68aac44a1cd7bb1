"""A hostile or broken exporter cannot hurt the decoder (issue 16): each test is one row of the
issue's table, sent the way an attacker on loopback would, and checks the ceiling, the refusal
and its counter. Every test runs with the compiled kernels on and off."""

from __future__ import annotations

import json
import logging
import os
import struct

import pytest

from collector.netflow import encode as E
from collector.netflow import fields as F
from collector.netflow.decoder import Decoder
from collector.netflow.session import Limits
from tests.kernels import every_test_both_ways  # noqa: F401  (every test, kernels on and off)

SRC = ("192.0.2.66", 4739)
T0 = 1_764_000_000
FLOW = [(F.sourceIPv4Address, 4), (F.destinationIPv4Address, 4), (F.octetDeltaCount, 4), (F.packetDeltaCount, 4)]


def ipfix(sets, seq=0, domain=1):
    return E.ipfix_message(sets, export_time=T0, sequence=seq, domain=domain)


def raw_set(sid: int, body: bytes) -> bytes:
    return struct.pack(">HH", sid, 4 + len(body)) + body


def raw_template(tid: int, flds: list[tuple[int, int]]) -> bytes:
    """An IPFIX template set without the encoder's checks."""
    return raw_set(2, struct.pack(">HH", tid, len(flds)) + b"".join(struct.pack(">HH", k, n) for k, n in flds))


def rows(n: int, base: int = 0) -> list[dict]:
    return [{8: f"10.0.{(base + i) >> 8 & 255}.{(base + i) & 255}", 12: "198.51.100.1", 1: 100 + i, 2: 1}
            for i in range(n)]


def reasons(dec) -> dict[str, int]:
    return dict(dec.stats.by_second("errors"))


# --- row 1: one template of 16,370 one-octet fields -------------------------------------------

def test_a_template_of_16370_one_octet_fields_is_refused_and_counted():
    huge = raw_template(256, [(F.sourceIPv4Address, 4)] + [(5, 1)] * 16_369)
    assert len(huge) < 65_535 - 16
    dec = Decoder()
    for i in range(3):
        dec.decode([(ipfix([huge], seq=i), SRC, 0.0)])
    assert all(not s.templates for s in dec.sessions.values())
    assert dec.stats.evicted["template-fields"] == 3 and reasons(dec) == {}
    # the memo keeps no copy of what it refused either
    assert dec.memo.octets <= dec.memo.max_octets


def test_ceiling_on_record_length():
    too_long = raw_template(256, [(F.sourceIPv4Address, 4), (F.octetDeltaCount, 4), (999, 60_000)])
    dec = Decoder()
    dec.decode([(ipfix([too_long]), SRC, 0.0)])
    assert all(not s.templates for s in dec.sessions.values())
    assert dec.stats.evicted["template-record-length"] == 1


def test_a_refused_template_in_a_set_leaves_the_good_ones():
    good = E.template_set([(300, FLOW)], True)
    bad = raw_template(301, [(F.interfaceName, F.VARLEN)])
    dec = Decoder()
    got = dec.decode([(ipfix([good, bad, E.data_set(300, FLOW, rows(3))]), SRC, 0.0)])
    assert len(got) == 3
    (sess,) = dec.sessions.values()
    assert set(sess.templates) == {300}


def test_template_octets_per_session_and_overall_are_bounded():
    lim = Limits(max_template_bytes_per_session=2_000, max_template_bytes=20_000)
    dec = Decoder(limits=lim)
    flds = FLOW + [(5, 1)] * 40  # 4 + 44 * 4 = 180 octets on the wire
    for s in range(30):
        sets = [E.template_set([(256 + i, flds)], True) for i in range(20)]
        dec.decode([(ipfix(sets), (f"192.0.2.{s + 1}", 4739), float(s))])
        for sess in dec.sessions.values():
            assert sum(t.octets for t in sess.templates.values()) <= 2_000
        assert sum(t.octets for x in dec.sessions.values() for t in x.templates.values()) <= 20_000
    assert dec.stats.evicted["template-bytes"] > 0


def test_the_template_memo_is_bounded_in_octets():
    dec = Decoder()
    for i in range(400):  # every set unique, 16 KiB each
        flds = FLOW + [(1000 + i, 4)] + [(5, 1)] * 1000
        dec.decode([(ipfix([raw_template(256, flds)], seq=i), (f"192.0.2.{i % 200 + 1}", 4739), float(i))])
    assert dec.memo.octets <= dec.memo.max_octets


# --- row 2: interface names of 65 KB ------------------------------------------------------------

def _names(start: int, n: int, size: int) -> bytes:
    opt_t = E.options_template_set(400, [(F.ingressInterface, 4)], [(F.interfaceName, F.VARLEN)], True)
    data = E.data_set(400, [(10, 4), (82, F.VARLEN)], [{10: start + i, 82: b"x" * size} for i in range(n)])
    return ipfix([opt_t, data])


def test_interface_names_are_truncated_and_bounded_in_octets():
    dec = Decoder(limits=Limits(max_name_bytes_per_session=10_000))
    for i in range(60):
        dec.decode([(_names(i, 1, 65_000), SRC, float(i))])
    (sess,) = dec.sessions.values()
    assert sess.if_names and all(len(v) == 255 for v in sess.if_names.values())
    assert sum(len(v.encode()) for v in sess.if_names.values()) <= 10_000
    assert dec.stats.evicted["name-bytes"] > 0
    # truncation counts characters, not octets: a multi-octet name stays valid text
    dec2 = Decoder()
    opt_t = E.options_template_set(400, [(F.ingressInterface, 4)], [(F.interfaceName, F.VARLEN)], True)
    dec2.decode([(ipfix([opt_t, E.data_set(400, [(10, 4), (82, F.VARLEN)], [{10: 1, 82: "é" * 300}])]), SRC, 0.0)])
    (sess,) = dec2.sessions.values()
    assert sess.if_names == {1: "é" * 255}


def test_name_octets_over_all_sessions_are_bounded():
    dec = Decoder(limits=Limits(max_name_bytes=50_000))
    for s in range(40):
        dec.decode([(_names(0, 10, 250), (f"192.0.2.{s + 1}", 4739), float(s))])
    total = sum(len(v.encode()) for x in dec.sessions.values() for v in x.if_names.values())
    assert total <= 50_000
    assert dec.stats.evicted["name-bytes"] > 0


# --- row 6: a zero-length applicationId; decoder faults ------------------------------------------

def test_zero_length_field_of_a_known_type_refuses_the_template(caplog):
    flds = FLOW + [(F.applicationId, 0)]
    dec = Decoder()
    with caplog.at_level(logging.DEBUG, logger="collector.netflow"):
        for i in range(10):
            got = dec.decode([(ipfix([raw_template(256, flds), E.data_set(256, FLOW, rows(5))], seq=i), SRC, 0.0)])
            assert len(got) == 0
    assert dec.stats.evicted["template-field-length"] == 10 and reasons(dec) == {}
    assert not any(r.exc_info for r in caplog.records)
    (sess,) = dec.sessions.values()
    assert not sess.templates


@pytest.mark.parametrize("flds", [
    FLOW + [(F.octetDeltaCount, 0)],
    FLOW + [(F.octetDeltaCount, 16)],  # wider than any integer
    [(F.sourceIPv4Address, 5)] + FLOW[1:],  # wider than an address
])
def test_zero_length_or_oversize_fields_of_known_types(flds):
    dec = Decoder()
    dec.decode([(ipfix([raw_template(256, flds)]), SRC, 0.0)])
    assert dec.stats.evicted["template-field-length"] == 1


def test_reduced_size_and_odd_widths_stay_accepted():
    flds = [(F.sourceIPv4Address, 4), (F.sourceTransportPort, 3), (F.protocolIdentifier, 2),
            (F.egressInterface, 8), (F.octetDeltaCount, 1), (F.applicationId, 9), (999, 0)]
    dec = Decoder()
    got = dec.decode([(ipfix([raw_template(256, flds),
                              E.data_set(256, flds, [{8: "10.0.0.1", 7: 80, 4: 6, 14: 2, 1: 7}])]), SRC, 0.0)])
    assert len(got) == 1 and int(got.bytes[0]) == 7
    assert reasons(dec) == {} and not dec.stats.evicted


def _boom(*args, **kwargs):
    raise RuntimeError("a decoder bug")


def test_faults_are_counted_always_and_logged_once_per_reason_per_minute(monkeypatch, caplog):
    now = [1000.0]
    dec = Decoder(clock=lambda: now[0])
    dec.decode([(ipfix([E.template_set([(256, FLOW)], True)]), SRC, 0.0)])
    monkeypatch.setattr("collector.netflow.columns.Columns._group", _boom)
    data = [(ipfix([E.data_set(256, FLOW, rows(3))], seq=i), SRC, 0.0) for i in range(10)]
    with caplog.at_level(logging.DEBUG, logger="collector.netflow"):
        for d in data:
            dec.decode([d])
        assert dec.stats.errors[SRC[0], "internal"] == 10
        assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) == 1
        assert all(r.exc_info is None or r.levelno < logging.WARNING for r in caplog.records)
        now[0] += 61
        dec.decode([data[0]])
        assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) == 2


def test_faults_on_the_per_datagram_path_log_one_line_per_minute(monkeypatch, caplog):
    dec = Decoder(clock=lambda: 5.0)
    monkeypatch.setattr(Decoder, "_templated", _boom)
    with caplog.at_level(logging.WARNING, logger="collector.netflow"):
        for i in range(20):
            dec.decode([(ipfix([E.template_set([(256, FLOW)], True)], seq=i), SRC, 0.0)])
    assert dec.stats.errors[SRC[0], "internal"] == 20
    assert len(caplog.records) == 1 and caplog.records[0].exc_info is None


def test_malformed_datagrams_log_one_line_per_reason_per_minute(caplog):
    dec = Decoder(clock=lambda: 5.0)
    with caplog.at_level(logging.INFO, logger="collector.netflow"):
        dec.decode([(b"\x00\x07" + bytes(30), SRC, 0.0)] * 50 + [(b"\x00\x0a", SRC, 0.0)] * 50)
    assert reasons(dec) == {"bad-version": 50, "short-header": 50}
    assert len(caplog.records) == 2


# --- row 9: a template whose only field is variable-length ---------------------------------------

def test_a_template_that_carries_no_flow_is_refused_never_walked_octet_by_octet():
    only_var = [(F.interfaceName, F.VARLEN)]
    dec = Decoder()
    body = bytes(1200)  # each zero octet would be one empty record
    got = dec.decode([(ipfix([raw_template(256, only_var), raw_set(256, body)], seq=i), SRC, 0.0)
                      for i in range(5)])
    assert len(got) == 0
    assert dec.stats.evicted["template-no-flow"] == 5 and reasons(dec) == {}
    (sess,) = dec.sessions.values()
    assert not sess.templates and not sess.pending  # its data is neither decoded nor held
    assert dec.stats.total("flows") == 0


@pytest.mark.parametrize("flds", [
    [(5, 1), (6, 2), (F.sourceTransportPort, 2)],  # ports and flags, no address, no counter
    [(F.applicationId, F.VARLEN), (F.interfaceName, F.VARLEN)],
])
def test_templates_without_address_or_counter_are_refused(flds):
    dec = Decoder()
    dec.decode([(ipfix([raw_template(256, flds)]), SRC, 0.0)])
    assert dec.stats.evicted["template-no-flow"] == 1


def test_options_templates_are_not_flow_templates():
    opt_t = E.options_template_set(401, [(F.applicationId, F.VARLEN)], [(F.applicationName, F.VARLEN)], True)
    d_app = E.data_set(401, [(95, F.VARLEN), (96, F.VARLEN)], [{95: bytes([13, 0, 0, 7]), 96: b"ms-teams"}])
    dec = Decoder()
    assert len(dec.decode([(ipfix([opt_t, d_app]), SRC, 0.0)])) == 0
    (sess,) = dec.sessions.values()
    assert sess.app_names == {(13 << 56) | 7: "ms-teams"} and reasons(dec) == {}


def test_a_template_with_an_address_and_a_variable_field_still_decodes():
    flds = [(F.sourceIPv4Address, 4), (F.interfaceName, F.VARLEN)]
    dec = Decoder()
    got = dec.decode([(ipfix([E.template_set([(256, flds)], True),
                              E.data_set(256, flds, [{8: "10.0.0.1", 82: b"ab"}, {8: "10.0.0.2", 82: b""}])]),
                       SRC, 0.0)])
    assert len(got) == 2


# --- row 12: the template state file -------------------------------------------------------------

def test_saving_replaces_a_planted_symlink_never_writes_its_target(tmp_path):
    target = tmp_path / "precious"
    target.write_text("keep me")
    path = tmp_path / "templates.json"
    os.symlink(target, path)
    dec = Decoder()
    dec.decode([(ipfix([E.template_set([(256, FLOW)], True)]), SRC, 0.0)])
    dec.save_state(str(path))
    assert target.read_text() == "keep me"
    assert not path.is_symlink() and json.loads(path.read_text())["sessions"]
    assert [p.name for p in tmp_path.iterdir()] and all(not p.name.startswith(".templates") for p in tmp_path.iterdir())


def test_loading_does_not_follow_a_symlink(tmp_path):
    real = tmp_path / "real.json"
    dec = Decoder()
    dec.decode([(ipfix([E.template_set([(256, FLOW)], True)]), SRC, 0.0)])
    dec.save_state(str(real))
    link = tmp_path / "templates.json"
    os.symlink(real, link)
    with pytest.raises(OSError):
        Decoder().load_state(str(link))


def _state(templates, **extra) -> dict:
    return {"format": 1, "sessions": [{"exporter": SRC[0], "port": SRC[1], "version": 10, "domain": 1,
                                       "templates": templates, **extra}]}


def test_a_crafted_state_file_goes_through_the_wire_checks(tmp_path):
    path = tmp_path / "templates.json"
    crafted = [
        [256, 0, [[F.interfaceName, 0]]],  # zero-length records: looped to MemoryError
        [257, 0, [[F.interfaceName, 65535]]],  # no flow
        [258, 0, [[8, 4]] + [[5, 1]] * 16_369],  # too many fields
        [259, 0, [[8, 4], [F.applicationId, 0]]],  # zero-length applicationId
        [260, 5, [[8, 4]]],  # more scope fields than fields
        [12, 0, [[8, 4]]],  # template id below 256
        [261, 0, [[8, 4], [1, 4]]],  # a good one
    ]
    path.write_text(json.dumps(_state(crafted, if_names={"1": "y" * 70_000},
                                      samplers={str(i): 10 for i in range(10_000)})))
    dec = Decoder()
    assert dec.load_state(str(path)) == 1
    (sess,) = dec.sessions.values()
    assert set(sess.templates) == {261}
    assert sess.if_names == {1: "y" * 255}
    assert len(sess.samplers) <= dec.limits.max_samplers_per_session
    # one datagram of data for each crafted template: nothing invented, nothing loops
    sets = [raw_set(tid, bytes(64)) for tid, *_ in crafted if 256 <= tid < 261] + \
        [E.data_set(261, [(8, 4), (1, 4)], [{8: "10.0.0.1", 1: 5}])]
    got = dec.decode([(ipfix(sets), SRC, 0.0)])
    assert [int(b) for b in got.bytes] == [5]


def test_a_state_file_of_the_wrong_shape_is_refused_whole_or_skipped(tmp_path):
    path = tmp_path / "templates.json"
    for bad in (["not", "a", "dict"], {"format": 1, "sessions": {"x": 1}},
                _state([[256, 0, [["eight", 4]]]]), _state("nope"),
                {"format": 1, "sessions": [{"exporter": 7, "port": "x"}]}):
        path.write_text(json.dumps(bad))
        dec = Decoder()
        try:
            assert dec.load_state(str(path)) == 0
        except ValueError:
            pass
        assert all(not s.templates for s in dec.sessions.values())


# --- the template flood ------------------------------------------------------------------------------

def _flood(n_sessions: int, t: float, seq: int = 0) -> list:
    out = []
    for s in range(n_sessions):
        flds = FLOW + [(5, 1)] * (s % 7 + 1)
        sets = [E.template_set([(256 + k, flds[: 4 + (k + s) % 5])], True) for k in range(8)]
        out.append((ipfix(sets, seq=seq), (f"10.{s >> 16 & 255}.{s >> 8 & 255}.{s & 255}", 2055), t))
    return out


def test_under_a_template_flood_an_established_exporter_keeps_every_record():
    lim = Limits(max_sessions=500, max_templates=2_000)
    dec = Decoder(limits=lim)
    legit = ("192.0.2.1", 2055)
    sent = 0
    first = dec.decode([(ipfix([E.template_set([(256, FLOW)], True), E.data_set(256, FLOW, rows(10))]), legit, 0.0)])
    assert len(first) == 10
    legit_sid = int(first.session[0])
    got = 0
    for step in range(6):
        t = 1.0 + step
        batch = [(ipfix([E.data_set(256, FLOW, rows(10, 100 * step))], seq=10 + 20 * step), legit, t)]
        batch += _flood(1_500, t + 0.5, seq=step)  # newer than the legitimate exporter's datagram
        batch.insert(1, (ipfix([E.data_set(256, FLOW, rows(10, 100 * step + 10))], seq=20 + 20 * step), legit, t + 0.1))
        sent += 20
        out = dec.decode(batch)
        got += int((out.session == legit_sid).sum())
        assert len(dec.sessions) <= 500
    assert got == sent
    assert dec.stats.by_second("errors")["template-shed"] > 0
    assert dec.stats.errors[legit[0], "template-shed"] == 0


def test_the_template_budget_defers_new_sessions_then_sheds_and_counts(monkeypatch):
    dec = Decoder(limits=Limits(max_new_template_bytes_per_batch=4_000))
    flood = _flood(300, 1.0)
    dec.decode(flood)
    shed = dec.stats.by_second("errors")["template-shed"]
    parsed = sum(len(s.templates) for s in dec.sessions.values())
    waiting = dec.deferred_count()
    assert shed == 0 and waiting > 0 and parsed > 0
    assert waiting + len([s for s in dec.sessions.values() if s.templates]) == 300
    # the next batch serves the ones that waited first; past the queue's ceiling they are shed
    dec.decode(_flood(300, 2.0, seq=1))
    assert sum(len(s.templates) for s in dec.sessions.values()) > parsed
    monkeypatch.setattr("collector.netflow.decoder.DEFER_DATAGRAMS", 50)  # read when a decoder is made
    small = Decoder(limits=Limits(max_new_template_bytes_per_batch=4_000))
    small.decode(flood)
    assert small.deferred_count() == 50
    assert small.stats.by_second("errors")["template-shed"] == 300 - 50 - len(small.sessions)


def test_a_burst_of_new_exporters_is_served_over_the_next_batches():
    dec = Decoder(limits=Limits(max_new_template_bytes_per_batch=2_000))
    grams = [(ipfix([E.template_set([(256 + k, FLOW)], True) for k in range(20)]), (f"192.0.2.{i}", 4739), 0.0)
             for i in range(1, 41)]
    dec.decode(grams)
    for t in range(1, 30):
        dec.decode([(ipfix([E.data_set(256, FLOW, rows(1))], seq=t), ("198.51.100.1", 4739), float(t))])
    new = [s for s in dec.sessions.values() if s.exporter != "198.51.100.1"]
    assert len(new) == 40 and all(len(s.templates) == 20 for s in new)
    assert dec.deferred_count() == 0 and reasons(dec) == {}


def test_a_new_exporter_is_served_when_there_is_no_flood():
    dec = Decoder(limits=Limits(max_new_template_bytes_per_batch=4_000))
    grams = [(ipfix([E.template_set([(256 + k, FLOW)], True) for k in range(20)]), (f"192.0.2.{i}", 4739), 0.0)
             for i in range(1, 5)]
    dec.decode(grams)
    assert all(len(s.templates) == 20 for s in dec.sessions.values()) and len(dec.sessions) == 4


# --- application names changed, for the classifier ---------------------------------------------------

def _apps(tid: int, names: dict[int, bytes], seq: int = 0) -> bytes:
    opt_t = E.options_template_set(tid, [(F.applicationId, 4)], [(F.applicationName, F.VARLEN)], True)
    d = E.data_set(tid, [(95, 4), (96, F.VARLEN)], [{95: bytes([13, 0, 0, k]), 96: v} for k, v in names.items()])
    return ipfix([opt_t, d], seq=seq)


def test_take_names_changed_reports_sessions_whose_application_names_changed():
    dec = Decoder(limits=Limits(max_sessions=2))
    a, b = ("192.0.2.1", 4739), ("192.0.2.2", 4739)
    assert dec.take_names_changed() == set()
    dec.decode([(_apps(400, {1: b"http"}), a, 0.0), (_apps(400, {1: b"dns"}), b, 0.0)])
    sa, sb = (dec.sessions[(x[0], x[1], 10, 1)].sid for x in (a, b))
    assert dec.take_names_changed() == {sa, sb}
    assert dec.take_names_changed() == set()
    dec.decode([(_apps(400, {1: b"http"}, seq=1), a, 1.0)])  # the same names again: no change
    assert dec.take_names_changed() == set()
    dec.decode([(_apps(400, {1: b"https"}, seq=2), a, 2.0)])
    assert dec.take_names_changed() == {sa}
    # a third session evicts b (least recently seen): b's sid is reported so it can be forgotten
    dec.decode([(ipfix([E.template_set([(256, FLOW)], True)]), ("192.0.2.3", 4739), 3.0)])
    assert dec.take_names_changed() == {sb}
    assert dec.by_sid[sb].app_names == {}  # still looked up by this call's records, with no names


# --- fuzz findings (/work/fuzz-findings.md) ----------------------------------------------------

F1 = """
192.0.2.1:2055 000a002669248100000000000000000000030016010000020001800800000000727900080000
192.0.2.2:2055 000a0010692481000000000100000000
192.0.2.1:2055 000a001c6924810000000002000000000002000c0100000100080001
192.0.2.1:2055 000a001c6924810000000003000000010002000c0100000100080001
192.0.2.1:2056 000a0010692481000000000400000000
192.0.2.2:2055 000a0010692481000000000500000000
"""


def _state_of(dec) -> tuple:
    return (sorted((k, s.sid, s.next_seq, sorted(s.templates)) for k, s in dec.sessions.items()),
            dict(dec.stats.evicted), dict(dec.stats.seq_lost), dict(dec.stats.errors))


def test_f1_both_paths_evict_the_same_sessions():
    """F1: the bulk path stamped a later datagram's session as seen before the per-datagram
    path evicted, so the two paths evicted different sessions under `max_sessions`."""
    grams = [(bytes.fromhex(h), (a.rsplit(":", 1)[0], int(a.rsplit(":", 1)[1])), float(i))
             for i, (a, h) in enumerate(zip(F1.split()[0::2], F1.split()[1::2]))]
    states = []
    for bulk in (True, False):
        dec = Decoder(limits=Limits(max_sessions=3), bulk=bulk)
        dec.decode(grams[:2])
        dec.decode(grams[2:])
        states.append(_state_of(dec))
        assert len(dec.sessions) <= 3
    assert states[0] == states[1]


F2 = ("000900040000000169248100000000000000000000010014012c0004000400010004002200080000012c0010000000000000"
      "00b710a21aca000000100100000200080004000100040100000c0a00000100000064")


def test_f2_a_sampling_interval_past_32_bits_is_refused_not_raised():
    """F2: options data with samplingInterval 786,258,074,314 made the session's rate overflow
    the uint32 column outside any per-datagram boundary: the whole batch was lost."""
    dec = Decoder()
    got = dec.decode([(bytes.fromhex(F2), ("192.0.2.1", 2055), 0.0)])
    assert [(int(b), int(r)) for b, r in zip(got.bytes, got.sampling_rate)] == [(100, 1)]
    assert dec.stats.by_second("notices")["sampling-interval-too-large"] == 1
    assert reasons(dec) == {}


def test_a_per_record_sampling_interval_past_32_bits_uses_the_session_rate():
    flds = FLOW + [(F.samplingInterval, 8)]
    dec = Decoder()
    data = E.data_set(256, flds, [{8: "10.0.0.1", 1: 10, 34: 1 << 40}, {8: "10.0.0.2", 1: 10, 34: 4}])
    got = dec.decode([(ipfix([E.template_set([(256, flds)], True), data]), SRC, 0.0)])
    assert sorted((int(b), int(r)) for b, r in zip(got.bytes, got.sampling_rate)) == [(10, 1), (40, 4)]


def test_a_fault_while_gathering_a_group_costs_that_group_only(monkeypatch):
    import collector.netflow.columns as C
    real = C.gather
    monkeypatch.setattr(C, "gather", lambda chunks, size: _boom() if size == 4 + 4 + 4 + 4 + 1 else real(chunks, size))
    other = FLOW + [(5, 1)]
    dec = Decoder()
    got = dec.decode([(ipfix([E.template_set([(256, FLOW), (257, other)], True), E.data_set(256, FLOW, rows(2)),
                              E.data_set(257, other, rows(3))]), SRC, 0.0)])
    assert len(got) == 2 and dec.stats.errors[SRC[0], "internal"] == 1
