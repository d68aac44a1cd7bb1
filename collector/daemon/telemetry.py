"""What the daemon says about itself: the metrics snapshot scrapes read, the status line in the
log, the health `/healthz` answers, and where their counters come from (this process's decoder
and sockets, or the workers' sums when `--workers N` runs: both are a `Counters`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from collector.kernels.grouping import distinct
from collector.metrics import OTHER_HOST, HostSeries, Metrics, Snapshot
from collector.netflow.stats import DecodeStats
from collector.store.columns import BinColumns
from collector.turns import no_turns

log = logging.getLogger(__name__)

SNAPSHOT_EVERY = 5.0  # seconds between refreshes of the health figures scrapes see


class Counters(Protocol):
    def decode_stats(self) -> DecodeStats: ...

    def intake_counters(self) -> tuple[int, dict[str, int], int]:
        """(datagrams denied, kernel drops per listener, exporter sessions). Sessions, not
        exporters: one exporter address has a session per source port and domain."""

    def worker_counts(self) -> tuple[int, int]:
        """(receiving processes alive, restarts)."""

    def backlog(self) -> tuple[int, int]:
        """(new sessions' template datagrams waiting for a later batch's budget, data sets held
        for templates not seen yet), now."""

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

    def backlog(self) -> tuple[int, int]:
        return self.decoder.deferred_count(), self.decoder.pending_count()

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

    def count(self, rows, if_rows, walks: dict | None = None, pause: Callable[[], None] = no_turns) -> None:
        """Per-host series, violations and active hosts of the newest bin, from one flush: its
        `BinColumns` (summed per key with NumPy first; the flush runs this in a thread, off the
        event loop, `pause()` giving the loop its turns: collector/turns.py) or rows."""
        if isinstance(rows, BinColumns):
            self._count_columns(rows, pause)
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

    def _count_columns(self, bins: BinColumns, pause: Callable[[], None]) -> None:
        """`count` on columns: the series get the flush's sums per distinct (exporter, service,
        host), in that key order (at `max_host_series`, which keys still get a series of their
        own follows that order), as plain `HostSeries.add`s of them would. No Python work per
        key: per series the flush already has, per new series and per (exporter, service)
        (the violations, the "other" hosts), so the flush's thread seldom wants the GIL
        (collector/turns.py; `pause()` between the steps)."""
        if bins.empty or not len(bins):
            return
        cols = bins.columns()
        hidx, hosts = bins.hosts()
        exporters, services, categories = bins.exporters, bins.services, bins.categories
        # codes of equal names made one (a supervisor's columns may name two codes alike)
        ecode, scode = _first_codes(exporters), _first_codes(list(zip(services, categories)))
        ns, nh = max(len(services), 1), len(hosts)
        key = ((ecode[cols["exporter"]] * ns + scode[cols["service"]]) * nh) + hidx
        nbytes = cols["bytes"]
        keys = _Keys(exporters, services, categories, hosts, ns, nh)

        has = hidx > 0
        pause()
        k, totals = _summed(key, nbytes, has)
        _add_columns(self.metrics.hosts, keys, k, totals, pause)
        pause()
        k, totals = _summed(key, nbytes, (cols["flag"] & 2) != 0)
        for (e, s), total in keys.per_pair(k, totals):
            v = (e, services[s], categories[s])
            self.violations[v] = self.violations.get(v, 0) + total
        _add_columns(self.metrics.violation_hosts, keys, k, totals, pause)
        pause()
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
        audit_dropped = _audit_dropped(counters, aggregator)
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
            workers=alive, worker_restarts=restarts, backlog=counters.backlog(),
            evicted=dict(s.evicted) | {"open-bins": aggregator.dropped_bins}
            | ({"audit-log": audit_dropped} if audit_dropped is not None else {}),
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
                + ("" if (dropped := _audit_dropped(counters, aggregator)) is None else f" audit-dropped {dropped}")
                + counters.status_suffix())


def _audit_dropped(counters: Counters, aggregator) -> int | None:
    """Watched flows the audit log dropped at `audit.max_pending` (this process's and its
    workers'); None when the log is off."""
    audit = getattr(aggregator, "audit", None)
    if audit is None:
        return None
    return audit.dropped + getattr(counters, "audit_dropped", lambda: 0)()


def _first_codes(names: list) -> np.ndarray:
    """Per code, the first code with its name (int64)."""
    first: dict = {}
    return np.array([first.setdefault(n, i) for i, n in enumerate(names)] or [0], np.int64)


def _summed(key: np.ndarray, nbytes: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the distinct keys of the rows in `mask`, ascending; their summed bytes)."""
    k, b = key[mask], nbytes[mask]
    order = np.argsort(k)  # NumPy's quicksort lets go of the GIL; its stable sort does not
    k = k[order]
    if not len(k):
        return k, b
    starts = np.flatnonzero(np.concatenate(([True], k[1:] != k[:-1])))
    return k[starts], np.add.reduceat(b[order], starts)


class _Keys:
    """A flush's series keys as codes ((exporter * ns + service) * nh + host) and back."""

    def __init__(self, exporters, services, categories, hosts, ns: int, nh: int):
        self.exporters, self.services, self.categories, self.hosts = exporters, services, categories, hosts
        self.ns, self.nh = ns, nh
        self._host_text = None

    def names(self, codes: np.ndarray) -> list[tuple]:
        """(exporter, host, service, category) of each code."""
        pair, h = np.divmod(codes, self.nh)
        e, s = np.divmod(pair, self.ns)
        ex, sv, ca, ho = self.exporters, self.services, self.categories, self.hosts
        return [(ex[a], ho[c], sv[b], ca[b]) for a, b, c in zip(e.tolist(), s.tolist(), h.tolist())]

    def codes(self, series: list[tuple]) -> np.ndarray:
        """The codes of the series keys (exporter, host, service, category) that this flush's
        names have (ascending, distinct); a key naming something it has not is left out."""
        ecode = {n: i for i, n in reversed(list(enumerate(self.exporters)))}
        scode = {n: i for i, n in reversed(list(enumerate(zip(self.services, self.categories))))}
        if self._host_text is None:  # in text order (BinColumns.hosts' contract): bisected
            self._host_text = np.array(self.hosts, object)
        wanted = [(ecode.get(e), h, scode.get((s, c))) for e, h, s, c in series]
        wanted = [w for w in wanted if w[0] is not None and w[2] is not None]
        if not wanted:
            return np.zeros(0, np.int64)
        e, h, s = zip(*wanted)
        text = np.array(h, object)
        at = np.minimum(np.searchsorted(self._host_text, text), len(self._host_text) - 1)
        found = self._host_text[at] == text
        out = (np.array(e, np.int64) * self.ns + np.array(s, np.int64)) * self.nh + at
        return distinct(out[found.astype(bool)])

    def per_pair(self, codes: np.ndarray, totals: np.ndarray):
        """((exporter name, service code), summed total) per (exporter, service) of `codes`
        (ascending)."""
        if not len(codes):
            return
        pair = codes // self.nh
        starts = np.flatnonzero(np.concatenate(([True], pair[1:] != pair[:-1])))
        sums = np.add.reduceat(totals, starts)
        e, s = np.divmod(pair[starts], self.ns)
        for a, b, t in zip(e.tolist(), s.tolist(), sums.tolist()):
            yield (self.exporters[a], b), t


def _add_columns(series: HostSeries, keys: _Keys, codes: np.ndarray, totals: np.ndarray, pause) -> None:
    """`series.add` of each (code, total) in ascending code order: adds into the keys it has,
    new series while there is room, the rest into their exporter's "other" host. Python work
    per series key, not per code."""
    if not len(codes):
        return
    d = series.series
    have = np.zeros(len(codes), bool)
    if d:
        known = keys.codes(list(d))
        if len(known):
            have = np.isin(codes, known)
    idx = np.flatnonzero(have)
    for k, t in zip(keys.names(codes[idx]), totals[idx].tolist()):
        d[k] += t
    pause()
    new = np.flatnonzero(~have)
    room = max(series.max_series - len(d), 0)
    d.update(zip(keys.names(codes[new[:room]]), totals[new[:room]].tolist()))
    rest = new[room:]
    for (e, s), t in keys.per_pair(codes[rest], totals[rest]):
        other = (e, OTHER_HOST, keys.services[s], keys.categories[s])
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
