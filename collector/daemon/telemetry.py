"""What the daemon says about itself: the metrics snapshot scrapes read, the status line in the
log, the health `/healthz` answers, and where their counters come from (this process's decoder
and sockets, or the workers' sums when `--workers N` runs: both are a `Counters`)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from itertools import compress
from operator import add
from typing import Protocol

import numpy as np

from collector.metrics import OTHER_HOST, HostSeries, Metrics, Snapshot
from collector.netflow.stats import DecodeStats
from collector.store.columns import BinColumns

log = logging.getLogger(__name__)

SNAPSHOT_EVERY = 5.0  # seconds between refreshes of the health figures scrapes see


class Counters(Protocol):
    def decode_stats(self) -> DecodeStats: ...

    def intake_counters(self) -> tuple[int, dict[str, int], int]:
        """(datagrams denied, kernel drops per listener, exporter sessions). Sessions, not
        exporters: one exporter address has a session per source port and domain."""

    def worker_counts(self) -> tuple[int, int]:
        """(receiving processes alive, restarts)."""

    def status_suffix(self) -> str:
        """What the status line adds (the workers' figures)."""

    def clamped(self) -> dict[str, int]:
        """exporter -> flows whose times were replaced by the receive time."""


class LocalCounters:
    """One process receives: its decoder's and its sockets' counters."""

    def __init__(self, decoder, intake, aggregator):
        self.decoder, self.intake, self.aggregator = decoder, intake, aggregator

    def clamped(self) -> dict[str, int]:
        return dict(self.aggregator.totals.clamped_by)

    def decode_stats(self) -> DecodeStats:
        return self.decoder.stats

    def intake_counters(self) -> tuple[int, dict[str, int], int]:
        return (self.intake.denied, self.intake.drops(),
                len(self.decoder.sessions))

    def worker_counts(self) -> tuple[int, int]:
        return 1, 0

    def status_suffix(self) -> str:
        return ""


@dataclass
class Health:
    """The daemon's own counts of store writes, and what they say about its health: the store
    is failing from a failed write until a write succeeds."""
    store_errors: int = 0
    store_lost_rows: int = 0
    store_buffered_rows: int = 0  # rows a store keeps in memory for a later write (ClickHouse's queue)
    store_dropped_rows: int = 0  # rows that queue dropped when full
    store_recreated: int = 0  # tables or databases found missing and created again
    flushes: int = 0
    store_failing: bool = False

    def write_failed(self) -> None:
        self.store_errors += 1
        self.store_failing = True

    def written(self) -> None:
        self.flushes += 1
        self.store_failing = False

    def check(self, listening: bool) -> tuple[bool, dict]:
        """(healthy, details) for /healthz: listeners bound and the last store write not failed."""
        details = {"listening": listening, "store": "failing" if self.store_failing else "ok",
                   "store_errors": self.store_errors, "flushes": self.flushes}
        return listening and not self.store_failing, details


class Telemetry:
    """Turns flushed rows and counters into the snapshot and the status line. Series keyed by
    something a sender controls stay bounded: hosts by `metrics.max_host_series`; interface
    series exist only for exporters with an SNMP target and only for the interfaces its SNMP
    walk knows (`walked(exporter)` -> {ifIndex: ifName}): flows on any other ifIndex (a sender
    may use any number of them) add into the interface "other", and an interface that leaves
    the walk loses its series at the next flush."""

    OTHER = "other"

    def __init__(self, metrics: Metrics, health: Health, snmp_exporters: set[str], walked=None,
                 host_names=None, clock=time.monotonic):
        """`host_names(hosts)` -> {host: name} names hosts of the per-host series (optional);
        `clock` times the status line's rate."""
        self.metrics, self.health = metrics, health
        self.snmp_exporters = snmp_exporters
        self.walked = walked or (lambda exporter: {})
        self.host_names = host_names
        self.names: dict[str, str] = {}  # host -> name, for the hosts of the bounded series
        self.clock = clock
        self.active_hosts: dict = {}
        self.violations: dict = {}
        self.interface_service: dict = {}
        self._last_status = (clock(), 0)  # the first line's rate counts from start

    @staticmethod
    def names_from(path: str | None):
        """`host -> name` from the host map at `path` (policy.hosts_file), or None. A map that
        cannot be read leaves the metrics without names (logged once) rather than stopping the
        daemon."""
        if not path:
            return None
        from collector.policy.hostnames import HostMapError, HostNames

        try:
            names = HostNames(path, reverse_dns=False)
        except (HostMapError, ValueError) as exc:
            log.warning("metrics without host names: %s", exc)
            return None
        return lambda hosts: {h: n for h, (n, _) in names.lookup_many(hosts, deadline=0).items() if n}

    def walks(self) -> dict[str, dict[int, str]]:
        """exporter -> {ifIndex: ifName} of each SNMP exporter's walk: read on the event loop
        (the poller changes them there) and handed to `count` in its thread."""
        return {e: self.walked(e) for e in self.snmp_exporters}

    def count(self, rows, if_rows, walks: dict | None = None) -> None:
        """Per-host series, violations and active hosts of the newest bin, from one flush: its
        `BinColumns` (summed per key with NumPy first; the flush runs this in a thread, off the
        event loop) or rows."""
        if isinstance(rows, BinColumns):
            self._count_columns(rows)
        elif rows:
            newest = max(r.bin for r in rows)
            active: dict[tuple[str, str, str], set] = {}
            for r in rows:
                if r.host:
                    self.metrics.hosts.add(r.exporter, r.host, r.service, r.category, r.bytes)
                    if r.bin == newest:
                        active.setdefault((r.exporter, r.service, r.category), set()).add(r.host)
                if r.violation:
                    key = (r.exporter, r.service, r.category)
                    self.violations[key] = self.violations.get(key, 0) + r.bytes
                    self.metrics.violation_hosts.add(r.exporter, r.host, r.service, r.category, r.bytes)
            self.active_hosts = {k: len(v) for k, v in active.items()}
            if self.host_names is not None:
                self._name_hosts()
        if self.snmp_exporters:
            self._count_interfaces(if_rows, self.walks() if walks is None else walks)

    def _count_columns(self, bins: BinColumns) -> None:
        """`count` on columns: the series get one add per distinct (exporter, service, host) of
        the flush, in that key order (at `max_host_series`, which keys still get a series of
        their own follows that order), not one per bin."""
        if bins.empty or not len(bins):
            return
        cols = bins.columns()
        hidx, hosts = bins.hosts()
        exporters, services, categories = bins.exporters, bins.services, bins.categories
        ns, nh = max(len(services), 1), len(hosts)
        es = cols["exporter"].astype(np.int64) * ns + cols["service"].astype(np.int64)
        key = es * nh + hidx
        nbytes = cols["bytes"]

        names = (np.array(exporters, object), np.array(hosts, object), np.array(services, object),
                 np.array(categories, object))

        def summed(mask: np.ndarray):
            """Chunks of ([(exporter, host, service, category)], [bytes]), in key order."""
            k, b = key[mask], nbytes[mask]
            order = np.argsort(k)  # NumPy's quicksort lets go of the GIL; its stable sort does not
            k = k[order]
            if not len(k):
                return
            starts = np.flatnonzero(np.concatenate(([True], k[1:] != k[:-1])))
            keys, totals = k[starts], np.add.reduceat(b[order], starts)
            pair, h = np.divmod(keys, nh)
            e, s = np.divmod(pair, ns)
            for i in range(0, len(keys), 8192):  # in chunks: one call on a million holds the GIL
                j = slice(i, i + 8192)
                yield (list(zip(*(n[c[j]].tolist() for n, c in zip(names, (e, h, s, s))))),
                       totals[j].tolist())

        has = hidx > 0
        for chunk, totals in summed(has):
            _add_series(self.metrics.hosts, chunk, totals)
        for chunk, totals in summed((cols["flag"] & 2) != 0):
            for (e, _, s, c), total in zip(chunk, totals):
                self.violations[(e, s, c)] = self.violations.get((e, s, c), 0) + total
            _add_series(self.metrics.violation_hosts, chunk, totals)
        newest = has & (cols["minute"] == cols["minute"].max())
        pairs = np.sort(key[newest])
        pairs = pairs[np.concatenate(([True], pairs[1:] != pairs[:-1]))] // nh if len(pairs) else pairs
        active, counts = np.unique(pairs, return_counts=True)  # distinct hosts per (exporter, service)
        self.active_hosts = {(exporters[p // ns], services[p % ns], categories[p % ns]): n
                             for p, n in zip(active.tolist(), counts.tolist())}
        if self.host_names is not None:
            self._name_hosts()

    def _name_hosts(self) -> None:
        """Names of hosts new to the series (bounded like them); a map lookup, no DNS."""
        seen = self.names.keys()
        new = {k[1] for k in self.metrics.hosts.series if k[1] not in seen}
        new |= {k[1] for k in self.metrics.violation_hosts.series if k[1] not in seen}
        new.discard(OTHER_HOST)
        if new:
            found = self.host_names(sorted(new))
            self.names.update({h: found.get(h, "") for h in new})

    def _count_interfaces(self, if_rows, walks: dict) -> None:
        for r in if_rows:
            walk = walks.get(r.exporter)
            if walk is not None:
                key = (r.exporter, walk.get(r.if_index) or self.OTHER, r.direction, r.category)
                self.interface_service[key] = self.interface_service.get(key, 0) + r.bytes
        names = {e: set(w.values()) for e, w in walks.items()}
        for key in [k for k in self.interface_service if k[1] != self.OTHER and k[1] not in names[k[0]]]:
            del self.interface_service[key]

    def snapshot(self, counters: Counters, aggregator, poller, figures: dict | None = None) -> None:
        """`figures`: more families as plain data (Snapshot.figures), e.g. the dnstap listener's."""
        s = counters.decode_stats()
        denied, drops, exporters = counters.intake_counters()
        alive, restarts = counters.worker_counts()
        names = {h: n for h, n in self.names.items() if n}
        self.metrics.swap(Snapshot(
            services=aggregator.service_totals(), hosts=dict(self.metrics.hosts.series), host_names=names,
            active_hosts=dict(self.active_hosts),
            datagrams={(e, str(v)): n for (e, v), n in s.datagrams.items()},
            flows={(e, str(v)): n for (e, v), n in s.flows.items()},
            errors=dict(s.errors), held=dict(s.held), expired=dict(s.expired), seq_lost=dict(s.seq_lost),
            clamped=counters.clamped(),
            socket_drops=drops, denied=denied, store_errors=self.health.store_errors,
            store_buffered_rows=self.health.store_buffered_rows, store_dropped_rows=self.health.store_dropped_rows,
            store_recreated=self.health.store_recreated,
            exporters=len(exporter_addresses(s)), sessions=exporters,
            workers=alive, worker_restarts=restarts,
            evicted=dict(s.evicted) | {"open-bins": aggregator.dropped_bins}
            | ({"audit-log": aggregator.audit.dropped + getattr(counters, "audit_dropped", lambda: 0)()}
               if getattr(aggregator, "audit", None) is not None else {}),
            violations=dict(self.violations), violation_hosts=dict(self.metrics.violation_hosts.series),
            snmp=tuple(poller.state().values()) if poller is not None else (),
            interface_service=dict(self.interface_service), figures=figures or {}))

    def status_line(self, counters: Counters, aggregator) -> str:
        """Totals since start; the flow rate is over the time since the previous line (since
        start for the first one). Exporters are distinct addresses, as `imflow top` counts them;
        one exporter may have several sessions (source ports, observation domains)."""
        s = counters.decode_stats()
        denied, drops, sessions = counters.intake_counters()
        now = self.clock()
        datagrams, flows = s.total("datagrams"), s.total("flows")
        t, f0 = self._last_status
        seconds = now - t
        rate = (flows - f0) / seconds if seconds > 0 else 0.0
        self._last_status = (now, flows)
        return (f"datagrams {datagrams} flows {flows} ({_rate(rate)}/s over {seconds:.0f}s) "
                f"exporters {len(exporter_addresses(s))} sessions {sessions} "
                f"held {s.total('held')} expired {s.total('expired')} errors {s.total('errors')} "
                f"denied {denied} kernel-drops {sum(drops.values())} open-bins {aggregator.open_bins()} "
                f"store-errors {self.health.store_errors} clamped-times {sum(counters.clamped().values())}"
                + counters.status_suffix())


def _add_series(series: HostSeries, keys: list[tuple], totals: list[int]) -> None:
    """`series.add` of each (key, total) in order, with the dict work in C calls: adds into the
    keys it has, new series while there is room, the rest into the exporter's "other" host."""
    d = series.series
    have = list(map(d.__contains__, keys))
    known = list(compress(keys, have))
    d.update(zip(known, map(add, map(d.__getitem__, known), compress(totals, have))))
    new = [(k, t) for k, t, h in zip(keys, totals, have) if not h]
    room = max(series.max_series - len(d), 0)
    d.update(new[:room])
    for (e, _, s, c), t in new[room:]:
        other = (e, OTHER_HOST, s, c)
        d[other] = d.get(other, 0) + t


def exporter_addresses(stats: DecodeStats) -> set[str]:
    """Exporters heard from: distinct addresses (the decoder's bounded labels) that sent a
    datagram, decodable or not."""
    return {e for e, _ in stats.datagrams} | {e for e, _ in stats.errors}


def _rate(r: float) -> str:
    """Decimals below 10/s, so a trickle does not read as 0."""
    if r >= 10 or r == 0:
        return f"{r:,.0f}"
    return f"{r:.1f}" if r >= 1 else f"{r:.2f}" if r >= 0.01 else "<0.01"
