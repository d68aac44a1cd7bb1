"""What the daemon says about itself: the metrics snapshot scrapes read, the status line in the
log, and where their counters come from (this process's decoder and sockets, or the workers'
sums when `--workers N` runs: both are a `Counters`)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

from collector.metrics import Metrics, Snapshot
from collector.netflow.stats import DecodeStats

SNAPSHOT_EVERY = 5.0  # seconds between refreshes of the health figures scrapes see


class Counters(Protocol):
    def decode_stats(self) -> DecodeStats: ...

    def intake_counters(self) -> tuple[int, dict[str, int], int]:
        """(datagrams denied, kernel drops per listener, exporter sessions)."""

    def worker_counts(self) -> tuple[int, int]:
        """(receiving processes alive, restarts)."""

    def status_suffix(self) -> str:
        """What the status line adds (the workers' figures)."""


class LocalCounters:
    """One process receives: its decoder's and its sockets' counters."""

    def __init__(self, decoder, intake):
        self.decoder, self.intake = decoder, intake

    def decode_stats(self) -> DecodeStats:
        return self.decoder.stats

    def intake_counters(self) -> tuple[int, dict[str, int], int]:
        return (self.intake.denied, {k: d for k, (_, d) in self.intake.queue_stats().items()},
                len(self.decoder.sessions))

    def worker_counts(self) -> tuple[int, int]:
        return 1, 0

    def status_suffix(self) -> str:
        return ""


@dataclass
class Health:
    store_errors: int = 0
    store_lost_rows: int = 0
    flushes: int = 0


class Telemetry:
    """Turns flushed rows and counters into the snapshot and the status line. Series keyed by
    something a sender controls stay bounded: hosts by `metrics.max_host_series`; interface
    series exist only for exporters with an SNMP target and only for the interfaces its SNMP
    walk knows (`walked(exporter)` -> {ifIndex: ifName}): flows on any other ifIndex (a sender
    may use any number of them) add into the interface "other", and an interface that leaves
    the walk loses its series at the next flush."""

    OTHER = "other"

    def __init__(self, metrics: Metrics, health: Health, snmp_exporters: set[str], walked=None):
        self.metrics, self.health = metrics, health
        self.snmp_exporters = snmp_exporters
        self.walked = walked or (lambda exporter: {})
        self.active_hosts: dict = {}
        self.violations: dict = {}
        self.interface_service: dict = {}
        self._last_status = (0.0, 0, 0)

    def count(self, rows, if_rows) -> None:
        """Per-host series, violations and active hosts of the newest bin, from one flush."""
        if rows:
            newest = max(r.bin for r in rows)
            active: dict[tuple[str, str], set] = {}
            for r in rows:
                if r.host:
                    self.metrics.hosts.add(r.host, r.service, r.category, r.bytes)
                    if r.bin == newest:
                        active.setdefault((r.service, r.category), set()).add(r.host)
                if r.violation:
                    key = (r.service, r.category)
                    self.violations[key] = self.violations.get(key, 0) + r.bytes
                    self.metrics.violation_hosts.add(r.host, r.service, r.category, r.bytes)
            self.active_hosts = {k: len(v) for k, v in active.items()}
        if self.snmp_exporters:
            self._count_interfaces(if_rows)

    def _count_interfaces(self, if_rows) -> None:
        walks = {e: self.walked(e) for e in self.snmp_exporters}
        for r in if_rows:
            walk = walks.get(r.exporter)
            if walk is not None:
                key = (r.exporter, walk.get(r.if_index) or self.OTHER, r.direction, r.category)
                self.interface_service[key] = self.interface_service.get(key, 0) + r.bytes
        names = {e: set(w.values()) for e, w in walks.items()}
        for key in [k for k in self.interface_service if k[1] != self.OTHER and k[1] not in names[k[0]]]:
            del self.interface_service[key]

    def snapshot(self, counters: Counters, aggregator, poller) -> None:
        s = counters.decode_stats()
        denied, drops, exporters = counters.intake_counters()
        alive, restarts = counters.worker_counts()
        services = {}
        for i, (sid, cat) in enumerate(zip(aggregator.services, aggregator.categories)):
            services[(sid, cat)] = (int(aggregator.service_bytes[i]), int(aggregator.service_packets[i]),
                                    int(aggregator.service_flows[i]))
        self.metrics.swap(Snapshot(
            services=services, hosts=dict(self.metrics.hosts.series), active_hosts=dict(self.active_hosts),
            datagrams={(e, str(v)): n for (e, v), n in s.datagrams.items()},
            flows={(e, str(v)): n for (e, v), n in s.flows.items()},
            errors=dict(s.errors), held=dict(s.held), expired=dict(s.expired), seq_lost=dict(s.seq_lost),
            socket_drops=drops, denied=denied, store_errors=self.health.store_errors, exporters=exporters,
            workers=alive, worker_restarts=restarts,
            evicted=dict(s.evicted) | {"open-bins": aggregator.dropped_bins},
            violations=dict(self.violations), violation_hosts=dict(self.metrics.violation_hosts.series),
            snmp=tuple(poller.state().values()) if poller is not None else (),
            interface_service=dict(self.interface_service)))

    def status_line(self, counters: Counters, aggregator) -> str:
        s = counters.decode_stats()
        denied, drops, exporters = counters.intake_counters()
        now = time.monotonic()
        datagrams, flows = s.total("datagrams"), s.total("flows")
        t, d0, f0 = self._last_status
        rate = (flows - f0) / (now - t) if t else 0.0
        self._last_status = (now, datagrams, flows)
        return (f"datagrams {datagrams} flows {flows} ({rate:,.0f}/s) exporters {exporters} "
                f"held {s.total('held')} expired {s.total('expired')} errors {s.total('errors')} "
                f"denied {denied} kernel-drops {sum(drops.values())} open-bins {aggregator.open_bins()} "
                f"store-errors {self.health.store_errors} clamped-times {aggregator.totals.clamped}"
                + counters.status_suffix())
