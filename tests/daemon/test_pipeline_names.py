"""Application names an exporter sends stay its own (issue 16, rows 3 and 4): exporter A naming
application id 13:4242 "bittorrent" once turned exporter B's HTTPS flows with that id into
BitTorrent and policy violations; and every flush matched every learned name against every
service again (9.8 s of CPU in 10 s with no traffic)."""

from __future__ import annotations

import time

from collector import config as C
from collector.daemon.pipeline import Pipeline
from collector.netflow import encode as E
from collector.netflow import fields as F

T0 = int(time.time()) - 60
APP = (13 << 56) | 4242
FLOW = [(F.sourceIPv4Address, 4), (F.destinationIPv4Address, 4), (F.sourceTransportPort, 2),
        (F.destinationTransportPort, 2), (F.protocolIdentifier, 1), (F.octetDeltaCount, 8),
        (F.packetDeltaCount, 8), (F.flowEndSeconds, 4), (F.applicationId, 8)]


def _names(tid: int, names: dict[int, str]) -> list[bytes]:
    opt = E.options_template_set(tid, [(F.applicationId, 8)], [(F.applicationName, F.VARLEN)], True)
    data = E.data_set(tid, [(F.applicationId, 8), (F.applicationName, F.VARLEN)],
                      [{F.applicationId: k, F.applicationName: v.encode()} for k, v in names.items()])
    return [opt, data]


def _flows(nbytes: int) -> list[bytes]:
    row = {F.sourceIPv4Address: "10.1.1.1", F.destinationIPv4Address: "198.51.100.7", F.sourceTransportPort: 50000,
           F.destinationTransportPort: 443, F.protocolIdentifier: 6, F.octetDeltaCount: nbytes,
           F.packetDeltaCount: 1, F.flowEndSeconds: T0, F.applicationId: APP}
    return [E.template_set([(256, FLOW)], True), E.data_set(256, FLOW, [row])]


def _datagram(exporter: str, sets: list[bytes], seq: int = 0):
    return (E.ipfix_message(sets, export_time=T0, sequence=seq), (exporter, 4739), float(T0))


def _bytes_by_service(p: Pipeline) -> dict[str, int]:
    rows, _ = p.drain(T0 + 120, lambda e, i: "")
    out: dict[str, int] = {}
    for r in rows:
        out[r.exporter, r.service] = out.get((r.exporter, r.service), 0) + r.bytes
    return out


def test_one_exporters_application_names_never_classify_anothers_flows():
    p = Pipeline(C.validate({}), clock=lambda: T0 + 1)
    p.process([_datagram("192.0.2.1", _names(300, {APP: "BitTorrent"})),
               _datagram("192.0.2.2", _flows(1000))])
    p.process([_datagram("192.0.2.1", _flows(700), seq=1)])
    got = _bytes_by_service(p)
    assert got[("192.0.2.1", "bittorrent")] == 700  # A's own flow, by A's own name for the id
    assert ("192.0.2.2", "bittorrent") not in got and got[("192.0.2.2", "other")] == 1000


def test_names_are_matched_once_when_they_change_not_at_every_flush(monkeypatch):
    p = Pipeline(C.validate({}), clock=lambda: T0 + 1)
    many = {(13 << 56) | i: f"app-{i}" for i in range(1, 2000)} | {APP: "bittorrent"}
    p.process([_datagram(f"192.0.2.{k}", _names(300, many)) for k in range(1, 30)])
    calls = []
    real = p.catalogue.app_ids_for
    monkeypatch.setattr(type(p.catalogue), "app_ids_for", lambda self, names: calls.append(len(names)) or real(names))
    for _ in range(5):
        _bytes_by_service(p)  # flushes: nothing changed, nothing matched again
    assert calls == []
    p.process([_datagram("192.0.2.1", _names(300, {APP: "ms-teams"}), seq=1)])  # a rename in one session
    assert calls == [len(many)]
    p.process([_datagram("192.0.2.1", _flows(500), seq=2)])
    assert _bytes_by_service(p)[("192.0.2.1", "teams")] == 500
