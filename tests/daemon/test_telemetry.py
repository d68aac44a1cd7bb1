"""Telemetry: the status line, the metrics snapshot, health. Interface series stay bounded by what the SNMP walk knows, whatever ifIndexes a sender uses
(issue 16, row 5: 82 datagrams of random ifIndexes once made 48,007 Prometheus series)."""

from __future__ import annotations

import json
import random
import socket
import struct
import time
import urllib.error
import urllib.request
from pathlib import Path

from collector.aggregate import Aggregator
from collector.daemon.telemetry import Health, Telemetry
from collector.metrics import Metrics
from collector.netflow.stats import DecodeStats
from collector.store import BinRow, IfRow

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


# --- the status line, the snapshot and health -------------------------------------------------

class FakeCounters:
    """Four sessions of one exporter address (softflowd sends from a new source port each run)."""

    def __init__(self, aggregator=None):
        self.stats = DecodeStats()
        self.aggregator = aggregator

    def clamped(self):
        return dict(self.aggregator.totals.clamped_by) if self.aggregator is not None else {}

    def decode_stats(self):
        return self.stats

    def intake_counters(self):
        return 0, {}, 4

    def worker_counts(self):
        return 1, 0

    def backlog(self):
        return 0, 0

    def status_suffix(self):
        return ""


def _aggregator():
    return Aggregator(["other", "bittorrent"], ["other", "p2p"])


def test_the_first_status_line_after_flows_counts_their_rate_from_start():
    now = [100.0]
    t = Telemetry(Metrics(), Health(), set(), clock=lambda: now[0])
    c = FakeCounters()
    c.stats.datagrams[EXPORTER, 10] += 3
    c.stats.flows[EXPORTER, 10] += 114
    now[0] += 60
    line = t.status_line(c, _aggregator())
    assert "flows 114 (1.9/s over 60s)" in line, line
    now[0] += 60
    assert "(0/s over 60s)" in t.status_line(c, _aggregator())  # nothing since the last line
    c.stats.flows[EXPORTER, 10] += 6
    now[0] += 60
    assert "(0.10/s over 60s)" in t.status_line(c, _aggregator())  # a trickle is not "0/s"


def test_exporters_are_addresses_and_sessions_are_said_so():
    t = Telemetry(Metrics(), Health(), set())
    c = FakeCounters()
    c.stats.datagrams[EXPORTER, 10] += 3
    c.stats.datagrams[EXPORTER, 9] += 1
    c.stats.errors[EXPORTER, "bad-length"] += 1
    line = t.status_line(c, _aggregator())
    assert " exporters 1 sessions 4 " in line, line
    t.snapshot(c, _aggregator(), None)
    assert t.metrics.registry.get_sample_value("imflow_exporters") == 1
    assert t.metrics.registry.get_sample_value("imflow_exporter_sessions") == 4


def test_clamped_times_and_per_exporter_traffic_reach_the_metrics():
    from tests.test_aggregate import NOW, make

    agg = Aggregator(["other", "msn", "bittorrent"], ["other", "im", "p2p"])
    b, cls, exp = make([(1, "10.0.0.1", 0, 100, 1, 0, 0, 0), (2, "10.0.0.2", 1, 40, 1, -10**6, 0, 0)])
    agg.add(b, cls, exp, [EXPORTER, "192.0.2.2"], NOW)
    t = Telemetry(Metrics(), Health(), set())
    t.count(agg.drain(), [])
    t.snapshot(FakeCounters(agg), agg, None)
    get = t.metrics.registry.get_sample_value
    assert get("imflow_clamped_flows_total", {"exporter": "192.0.2.2"}) == 1
    assert get("imflow_clamped_flows_total", {"exporter": EXPORTER}) is None
    assert get("imflow_service_bytes_total", {"exporter": EXPORTER, "service": "msn", "category": "im"}) == 100
    assert get("imflow_service_bytes_total", {"exporter": "192.0.2.2", "service": "bittorrent",
                                              "category": "p2p"}) == 40
    assert get("imflow_host_bytes_total", {"exporter": "192.0.2.2", "host": "10.0.0.2", "host_name": "",
                                           "service": "bittorrent", "category": "p2p"}) == 40
    assert get("imflow_service_active_hosts", {"exporter": EXPORTER, "service": "msn", "category": "im"}) == 1


def test_host_names_come_from_the_host_map(tmp_path):
    hosts = tmp_path / "hosts.toml"
    hosts.write_text('[[host]]\nmatch = "10.0.0.1"\nname = "build-3"\n')
    t = Telemetry(Metrics(), Health(), set(), host_names=Telemetry.names_from(str(hosts)))
    t.count([BinRow(0, EXPORTER, "msn", "im", "10.0.0.1", 5, 1, 1),
             BinRow(0, EXPORTER, "msn", "im", "10.0.0.2", 7, 1, 1)], [])
    t.snapshot(FakeCounters(), _aggregator(), None)
    get = t.metrics.registry.get_sample_value
    assert get("imflow_host_bytes_total", {"exporter": EXPORTER, "host": "10.0.0.1", "host_name": "build-3",
                                           "service": "msn", "category": "im"}) == 5
    assert get("imflow_host_bytes_total", {"exporter": EXPORTER, "host": "10.0.0.2", "host_name": "",
                                           "service": "msn", "category": "im"}) == 7
    assert Telemetry.names_from(None) is None
    assert Telemetry.names_from(str(tmp_path / "missing.toml")) is None  # logged, the daemon goes on


def test_health_fails_from_a_failed_store_write_until_one_succeeds():
    h = Health()
    assert h.check(listening=False)[0] is False
    assert h.check(listening=True) == (True, {"listening": True, "store": "ok", "store_errors": 0, "flushes": 0})
    h.written()
    h.write_failed()
    ok, details = h.check(listening=True)
    assert not ok and details["store"] == "failing" and details["store_errors"] == 1
    h.write_failed()
    assert not h.check(listening=True)[0]
    h.written()
    assert h.check(listening=True) == (True, {"listening": True, "store": "ok", "store_errors": 2, "flushes": 2})


# --- /healthz of a real daemon ------------------------------------------------------------------

def _v5(seq: int = 0) -> bytes:
    """One NetFlow v5 datagram with one flow 10.0.0.1 -> 192.0.2.80:6881, ending a second ago."""
    now = int(time.time())
    header = struct.pack("!HHIIIIBBH", 5, 1, 100_000, now, 0, seq, 0, 0, 0)
    record = struct.pack("!4s4s4sHHIIIIHHBBBBHHBBH", bytes([10, 0, 0, 1]), bytes([192, 0, 2, 80]), bytes(4),
                         0, 0, 3, 1500, 99_000, 99_000, 40000, 6881, 0, 0x18, 6, 0, 0, 0, 0, 0, 0)
    return header + record


def _health(port: int) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def _wait_health(port: int, status: int, timeout: float = 20) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        got, body = _health(port)
        if got == status or time.monotonic() > deadline:
            assert got == status, body
            return body
        time.sleep(0.2)


def test_healthz_of_a_running_daemon_fails_while_the_store_cannot_be_written(tmp_path):
    from tests.daemon.test_daemon import Daemon
    from tests.store.helpers import chattr, ext4
    from tests.test_metrics import free_port

    with ext4(tmp_path / "ext4") as fs:
        db = fs / "imflow.db"
        mport = free_port()
        d = Daemon(tmp_path, db, "--metrics", f"127.0.0.1:{mport}")
        locked = []
        try:
            body = _wait_health(mport, 200)
            assert body == {"status": "ok", "listening": True, "store": "ok", "store_errors": 0, "flushes": 0}
            with urllib.request.urlopen(f"http://127.0.0.1:{mport}/", timeout=5) as r:
                assert "/healthz" in r.read().decode()
            with urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=5) as r:
                assert "imflow_build_info" in r.read().decode()
            locked = [p for p in (db, Path(f"{db}-wal")) if p.exists()]
            chattr("+i", *locked)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.sendto(_v5(), ("127.0.0.1", d.port))
            body = _wait_health(mport, 503)
            assert body["status"] == "unavailable" and body["store"] == "failing" and body["store_errors"] >= 1
            chattr("-i", *locked)
            locked = []
            body = _wait_health(mport, 200)  # the kept rows are written at the next flush
            assert body["store"] == "ok" and body["flushes"] >= 1
        finally:
            if locked:
                chattr("-i", *locked)
            code = d.stop()
        assert code == 0, d.text()
        assert "store:" in d.text()  # the failed write was logged


def test_the_backlog_gauges_say_what_the_decoder_holds_now():
    """Template datagrams of new sessions waiting past the batch's budget, and data sets held
    for a template not seen yet, reach the two gauges through the daemon's counters; worked off
    and given their template, both are 0 again."""
    from collector.daemon.telemetry import LocalCounters
    from collector.netflow.decoder import Decoder
    from collector.netflow.session import Limits
    from tests.netflow.test_deferred import BUDGET, backlog, exporter

    class NoSockets:
        denied = 0

        def drops(self):
            return {}

    dec = Decoder(limits=Limits(max_new_template_bytes_per_batch=BUDGET))
    agg = _aggregator()
    counters = LocalCounters(dec, NoSockets(), agg)
    t = Telemetry(Metrics(), Health(), set())
    get = t.metrics.registry.get_sample_value
    dec.decode(backlog(300, 1.0))
    grams, _, _ = exporter(3, 10, 2.0, src=("192.0.2.201", 4739))
    dec.decode([grams[1], grams[2]])  # data before its template: held
    waiting, held = dec.deferred_count(), dec.pending_count()
    assert waiting > 250 and held == 2
    t.snapshot(counters, agg, None)
    assert (get("imflow_template_waiting_datagrams"), get("imflow_template_held_sets")) == (waiting, held)
    dec.decode([grams[0]])
    while dec.deferred_count():
        dec.decode([])
    t.snapshot(counters, agg, None)
    assert (get("imflow_template_waiting_datagrams"), get("imflow_template_held_sets")) == (0, 0)
