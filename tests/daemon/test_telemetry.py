"""Interface series stay bounded by what the SNMP walk knows, whatever ifIndexes a sender uses
(issue 16, row 5: 82 datagrams of random ifIndexes once made 48,007 Prometheus series)."""

from __future__ import annotations

import random

from collector.daemon.telemetry import Health, Telemetry
from collector.metrics import Metrics
from collector.store import IfRow

EXPORTER = "192.0.2.1"


def _rows(indexes, nbytes=100):
    return [IfRow(1_700_000_000, EXPORTER, i, str(i), d, "bittorrent", "p2p", nbytes, 1, 1)
            for i in indexes for d in ("in", "out")]


def test_unknown_ifindexes_fold_into_other_and_the_total_is_kept():
    walk = {1: "Gi0/0/0", 2: "Gi0/0/1"}
    t = Telemetry(Metrics(), Health(), {EXPORTER}, lambda e: walk if e == EXPORTER else {})
    indexes = [1, 2] + random.Random(5).sample(range(3, 1 << 31), 20_000)
    t.count([], _rows(indexes))
    names = {k[1] for k in t.interface_service}
    assert names == {"Gi0/0/0", "Gi0/0/1", "other"}
    assert len(t.interface_service) == 3 * 2  # 3 interfaces x 2 directions, one category
    assert sum(t.interface_service.values()) == 100 * 2 * len(indexes)  # nothing lost, only folded
    assert t.interface_service[EXPORTER, "other", "in", "p2p"] == 100 * 20_000


def test_flows_of_exporters_without_an_snmp_target_make_no_interface_series():
    t = Telemetry(Metrics(), Health(), {"192.0.2.99"}, lambda e: {1: "x"})
    t.count([], _rows(range(1, 500)))
    assert t.interface_service == {}


def test_an_interface_that_leaves_the_walk_loses_its_series():
    walk = {1: "Gi0/0/0", 2: "Gi0/0/1"}
    t = Telemetry(Metrics(), Health(), {EXPORTER}, lambda e: dict(walk))
    t.count([], _rows([1, 2]))
    assert {k[1] for k in t.interface_service} == {"Gi0/0/0", "Gi0/0/1"}
    del walk[2]
    t.count([], _rows([1]))
    assert {k[1] for k in t.interface_service} == {"Gi0/0/0"}
