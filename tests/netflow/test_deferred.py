"""The template backlog (issues 16 and 21): new sessions' template datagrams past a decode call's
budget wait, and an exporter that starts behind thousands of them must still keep every record.
Truth is what each test sent: records and octets counted from the rows it built."""

from __future__ import annotations

import pytest

from collector.netflow import encode as E
from collector.netflow import fields as F
from collector.netflow.decoder import Decoder
from collector.netflow.session import Limits

T0 = 1_764_000_000
FLOW = [(F.sourceIPv4Address, 4), (F.destinationIPv4Address, 4), (F.octetDeltaCount, 4), (F.packetDeltaCount, 4)]
# one announcement: 8 templates (5: ipClassOfService, padding them apart); every session's alike, so each costs the same
ANNOUNCE = [E.template_set([(256 + k, FLOW + [(5, 1)] * (k % 4))], True) for k in range(8)]
ANNOUNCE_OCTETS = sum(len(s) - 4 for s in ANNOUNCE)  # what the budget counts: the sets less their headers
BUDGET = 2_000
NEW = ("192.0.2.200", 4739)


def ipfix(sets, seq=0, domain=1):
    return E.ipfix_message(sets, export_time=T0, sequence=seq, domain=domain)


def rows(n: int, base: int) -> list[dict]:
    return [{8: f"10.1.{(base + i) >> 8 & 255}.{(base + i) & 255}", 12: "198.51.100.7", 1: 1000 + base + i, 2: 1}
            for i in range(n)]


def backlog(n: int, t: float, first: int = 0) -> list:
    """n sessions (one socket, a domain each, as the ingest harness's keeper) announcing."""
    return [(ipfix(ANNOUNCE, domain=65_536 + i), ("198.51.100.50", 2055), t) for i in range(first, first + n)]


def exporter(datagrams: int, per: int, t: float, src=NEW, refresh: int = 0) -> tuple[list, int, int]:
    """A new exporter: its template and first data, then data only (the template again every
    `refresh` datagrams); -> (datagrams, records sent, octets sent)."""
    out, records, octets = [], 0, 0
    for d in range(datagrams):
        rs = rows(per, d * per)
        records += len(rs)
        octets += sum(r[1] for r in rs)
        sets = [E.data_set(256, FLOW, rs)]
        if d == 0 or (refresh and d % refresh == 0):
            sets.insert(0, E.template_set([(256, FLOW)], True))
        out.append((ipfix(sets, seq=records - len(rs)), src, t + d * 1e-4))
    return out, records, octets


def work_off(dec: Decoder, calls: int = 10_000) -> list:
    """Calls with no datagrams (the daemon's idle timer) until nothing waits; -> their batches."""
    out = []
    for _ in range(calls):
        if not dec.deferred_count():
            break
        out.append(dec.decode([]))
    assert dec.deferred_count() == 0
    return out


def of(dec: Decoder, batches, src=NEW) -> tuple[int, int]:
    """Records and octets of the session of `src` in the batches."""
    sids = {sid for sid, s in dec.by_sid.items() if (s.exporter, s.port) == src}
    n = octets = 0
    for b in batches:
        mine = [i for i, s in enumerate(b.session.tolist()) if s in sids]
        n += len(mine)
        octets += int(sum(int(b.bytes[i]) for i in mine))
    return n, octets


def announced(dec: Decoder) -> int:
    return sum(1 for s in dec.sessions.values() if s.exporter == "198.51.100.50" and s.templates)


def test_an_exporter_starting_behind_a_backlog_keeps_every_record():
    """600 datagrams of data (more than the 512 sets a session may hold) arrive in the call that
    defers the exporter's template behind 1,000 announcements: its template is taken as soon as
    its data is held, and nothing of it is lost."""
    dec = Decoder(limits=Limits(max_new_template_bytes_per_batch=BUDGET))
    dec.decode(backlog(1_000, 1.0))
    assert dec.deferred_count() > 900
    grams, records, octets = exporter(600, 10, 2.0)
    assert records > dec.limits.max_pending_per_session * 10
    more = backlog(200, 2.0, first=1_000)
    out = [dec.decode(more[:100] + grams + more[100:])]
    assert of(dec, out) == (records, octets)  # in the same call, not after the backlog
    out += work_off(dec)
    assert of(dec, out) == (records, octets)
    assert announced(dec) == 1_200 and sum(dec.stats.expired.values()) == 0
    assert dict(dec.stats.by_second("errors")) == {}


def test_idle_calls_work_the_backlog_off_within_the_budget():
    dec = Decoder(limits=Limits(max_new_template_bytes_per_batch=BUDGET))
    dec.decode(backlog(500, 1.0))
    done = announced(dec)
    per_call = -(-BUDGET // ANNOUNCE_OCTETS)  # a datagram starts while budget is left, and passes whole
    calls = 0
    while dec.deferred_count():
        dec.decode([])
        calls += 1
        assert announced(dec) - done <= per_call
        done = announced(dec)
        assert calls < 1_000
    assert done == 500 and calls >= (500 - per_call) // per_call
    assert dict(dec.stats.by_second("errors")) == {}


def test_templates_data_waits_for_have_their_own_bounded_budget():
    """A flood whose sessions each send data before their templates (so that every template is
    awaited) still gets one budget's worth of parsing per call, not more."""
    dec = Decoder(limits=Limits(max_new_template_bytes_per_batch=BUDGET))
    sessions = 300
    data = [(ipfix([E.data_set(256, FLOW, rows(1, i))], domain=70_000 + i), ("198.51.100.60", 2055), 1.0)
            for i in range(sessions)]
    temps = [(ipfix(ANNOUNCE, seq=1, domain=70_000 + i), ("198.51.100.60", 2055), 1.0) for i in range(sessions)]
    first = dec.decode(data + temps)
    per_call = -(-BUDGET // ANNOUNCE_OCTETS)
    parsed = sum(1 for s in dec.sessions.values() if s.templates)
    assert 0 < parsed <= per_call and dec.deferred_count() == sessions - parsed and len(first) == parsed
    got = []
    while dec.deferred_count():
        before = sum(1 for s in dec.sessions.values() if s.templates)
        got.append(dec.decode([]))
        assert sum(1 for s in dec.sessions.values() if s.templates) - before <= per_call
    assert sum(len(b) for b in got) + parsed == sessions  # each session's one held record, replayed


def test_a_full_queue_sheds_the_newest_announcement_for_an_awaited_template(monkeypatch):
    monkeypatch.setattr("collector.netflow.decoder.DEFER_DATAGRAMS", 50)
    dec = Decoder(limits=Limits(max_new_template_bytes_per_batch=BUDGET))
    dec.decode(backlog(300, 1.0))
    assert dec.deferred_count() == 50
    shed = dec.stats.by_second("errors")["template-shed"]
    assert shed == 300 - 50 - announced(dec)
    # 30 exporters: data first (held), then templates (ANNOUNCE defines 256 as FLOW); the
    # awaited budget takes some, the rest wait, in the place of the newest announcements
    srcs = [(f"192.0.2.{k}", 4739) for k in range(1, 31)]
    grams = []
    for src in srcs:
        grams += [(ipfix([E.data_set(256, FLOW, rows(5, 0))]), src, 2.0), (ipfix(ANNOUNCE, seq=5), src, 2.0)]
    out = [dec.decode(grams)]
    assert dec.deferred_count() == 50 and len(dec._deferred.awaited) > 0
    assert dec.stats.by_second("errors")["template-shed"] > shed
    out += work_off(dec)
    for src in srcs:
        assert of(dec, out, src) == (5, sum(r[1] for r in rows(5, 0))), src
    # every announcement was parsed or counted as shed; no exporter's template was shed
    assert announced(dec) + dec.stats.by_second("errors")["template-shed"] == 300


@pytest.mark.parametrize("budget", [0, BUDGET])
def test_a_queue_that_cannot_move_is_left_alone(budget):
    """With no budget at all nothing is parsed for new sessions: idle calls take nothing and
    the daemon's loop (which stops when the queue no longer shrinks) ends."""
    dec = Decoder(limits=Limits(max_new_template_bytes_per_batch=budget))
    dec.decode(backlog(20, 1.0))
    waiting = dec.deferred_count()
    dec.decode([])
    assert dec.deferred_count() == (waiting if budget == 0 else max(0, waiting - -(-budget // ANNOUNCE_OCTETS)))
