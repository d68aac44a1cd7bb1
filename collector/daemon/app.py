"""The daemon: wires intake -> decode -> classify -> aggregate -> flush -> store, starts the
components in order and stops them in reverse. Signals and shutdown live only here.

SIGTERM / SIGINT: stop intake (after its queues are drained), decode what was received, flush
every bin, save template state, close the store, exit 0. A second signal exits at once.
SIGHUP: flush, then reload the catalogue and the config file's classification and exporter
settings; listeners and the database path need a restart.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections import Counter
from dataclasses import dataclass

import numpy as np

from collector import config as C
from collector import kernels, snmp
from collector.aggregate import Aggregator
from collector.classify.catalogue import CatalogueError
from collector.classify.classifier import Classifier
from collector.config import parse_endpoint
from collector.daemon.tuning import tune_gc
from collector.daemon.wiring import app_id_table, build_catalogue, build_policy, build_targets, limits_of
from collector.intake import Intake
from collector.kernels.grouping import unique_inverse
from collector.metrics import Metrics, Snapshot
from collector.netflow.decoder import Decoder
from collector.store import Store, StoreError

log = logging.getLogger(__name__)


SNAPSHOT_EVERY = 5.0  # seconds between refreshes of the health figures scrapes see


@dataclass
class Health:
    store_errors: int = 0
    store_lost_rows: int = 0
    flushes: int = 0


class App:
    store_wants_empty = False  # a worker's pipe carries its statistics even without rows

    def __init__(self, cfg: C.Config, clock=time.time, store=None, reuse_port: bool = False):
        self.cfg = cfg
        self.clock = clock
        self.catalogue = build_catalogue(cfg)
        self.app_ids = app_id_table(cfg, self.catalogue)
        self.classifier = Classifier(self.catalogue, cfg.get("classify.internal"), self.app_ids)
        self.policy = build_policy(cfg, self.catalogue)
        self.policy_table = self.policy.vectorized(self.catalogue)
        self.snmp_targets = build_targets(cfg)
        self.poller = snmp.Poller(self.snmp_targets, clock=clock) if self.snmp_targets else None
        self.decoder = Decoder(limits_of(cfg), sampling=cfg.get("exporters.sampling"),
                               columns=Classifier.COLUMNS | Aggregator.COLUMNS)  # + session (exporter)
        self.aggregator = Aggregator([s.id for s in self.catalogue.services],
                                     [s.category for s in self.catalogue.services],
                                     max_open_bins=cfg.get("limits.max_open_bins"))
        db = cfg.get("store.path")
        self.store = store or Store(db, retention={"minute": cfg.get("store.retention_minute"),
                                                   "hour": cfg.get("store.retention_hour"),
                                                   "day": cfg.get("store.retention_day")}, clock=clock)
        self.template_path = cfg.get("collector.template_state") or db + ".templates.json"
        self.intake = Intake(cfg.get("collector.listen"), self.process, cfg.get("exporters.allow") or None,
                             rcvbuf=cfg.get("collector.rcvbuf"), batch_size=cfg.get("collector.batch_size"),
                             delay=cfg.get("collector.batch_delay"), reuse_port=reuse_port)
        self.health = Health()
        self.metrics = Metrics(cfg.get("metrics.max_host_series"))
        self.metrics_address: tuple[str, int] | None = None
        self._active_hosts: dict = {}
        self._violations: dict = {}
        self._interface_service: dict = {}
        self.stopping = asyncio.Event()
        self.reload_requested = False
        self.bound: list[str] = []
        self._last_status = (0.0, 0, 0)
        self._last_prune = 0.0
        self._if_names: dict | None = None  # (exporter, if_index) -> name from options data
        self._internal_failures = 0  # batches lost to a fault in process()
        self._internal_logged = float("-inf")

    # --- the data path (runs on the event loop, between receives) ---------------------------

    def process(self, datagrams) -> None:
        """Decode, classify and aggregate one batch. A fault in that (a bug: the decoder already
        counts bad input and carries on) loses this batch only: its datagrams are counted as
        decode errors of reason "internal", and the traceback is logged once a minute at most."""
        try:
            self._process(datagrams)
        except Exception:  # never let one batch stop the intake or the shutdown
            lost = Counter(self.decoder.stats.label(src[0]) for src in _sources(datagrams))
            for label, n in lost.items():
                self.decoder.stats.errors[label, "internal"] += n
            self._internal_failures += 1
            now = time.monotonic()
            if now - self._internal_logged >= 60:
                self._internal_logged = now
                log.exception("internal error processing a batch of %d datagrams (%d such batches so far; "
                              "their flows are lost, counted in imflow_decode_errors_total{reason=\"internal\"})",
                              sum(lost.values()), self._internal_failures)

    def _process(self, datagrams) -> None:
        batch = self.decoder.decode(datagrams)
        if not len(batch):
            return
        cls = self.classifier.classify_batch(batch)
        sids, inverse = unique_inverse(batch.session, int(batch.session.max()) + 1)
        names: list[str] = []
        index: dict[str, int] = {}
        codes = []
        for sid in sids.tolist():
            sess = self.decoder.by_sid.get(sid)
            name = sess.stat_label if sess else "other"
            codes.append(index.setdefault(name, len(names)))
            if len(names) < len(index):
                names.append(name)
        exporters = np.array(codes, np.uint32)[inverse]
        violations = self.policy_table.violations(cls.service, cls.host["hi"], cls.host["lo"], cls.has_host)
        self.aggregator.add(batch, cls, exporters, names, self.clock(), violations)

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        await self.store.start()
        if os.path.exists(self.template_path):
            try:
                n = self.decoder.load_state(self.template_path)
                log.info("loaded %d templates from %s", n, self.template_path)
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("ignoring template state %s: %s", self.template_path, exc)
        if self.poller is not None:
            await self.poller.start()
        try:
            self.bound = await self.intake.start()
            if self.cfg.get("metrics.listen"):
                host, port = parse_endpoint(self.cfg.get("metrics.listen"))
                self.metrics_address = self.metrics.serve(host, port)
        except OSError:
            self.intake.close()
            if self.poller is not None:
                await self.poller.stop()
            await self.store.stop()
            raise
        allow = self.cfg.get("exporters.allow")
        if not self.bound:  # the supervisor of workers says where they listen
            return
        log.info("imflow listening on %s (UDP; NetFlow v5/v9 and IPFIX on every port), storing in %s, "
                 "refresh_time %gs, %d services, %s%s; %s", ", ".join(self.bound), self.cfg.get("store.path"),
                 self.cfg.get("collector.refresh_time"), len(self.catalogue.services), kernels.status(),
                 ", metrics on http://%s:%d/metrics" % self.metrics_address if self.metrics_address else "",
                 f"exporters allowed: {', '.join(allow)}" if allow else
                 "WARNING: accepting flows from any source (set exporters.allow)")

    async def run(self) -> int:
        """Run until SIGTERM/SIGINT; returns the exit status."""
        loop = asyncio.get_running_loop()
        self._install_signals(loop)
        await self.start()
        tune_gc()
        refresh = self.cfg.get("collector.refresh_time")
        status = self.cfg.get("collector.status_interval")
        next_flush = loop.time() + refresh
        next_status = loop.time() + status
        next_snapshot = loop.time() + SNAPSHOT_EVERY
        while not self.stopping.is_set():
            timeout = max(0.0, min(next_flush, next_status, next_snapshot) - loop.time())
            try:
                await asyncio.wait_for(self.stopping.wait(), timeout=min(timeout, 1.0))
            except asyncio.TimeoutError:
                pass
            if self.reload_requested:
                self.reload_requested = False
                await self.reload()
            now = loop.time()
            if now >= next_flush:
                await self.flush()
                next_flush = now + refresh
            if now >= next_status:
                log.info("%s", self.status_line())
                next_status = now + status
            if now >= next_snapshot:
                self.refresh_snapshot()
                next_snapshot = now + SNAPSHOT_EVERY
        return await self.stop()

    async def stop(self) -> int:
        ok = False
        try:
            await self.intake.drain()
            self.intake.close()
            ok = await self.flush(final=True)
            try:
                self.decoder.save_state(self.template_path)
            except OSError as exc:
                log.error("cannot save template state to %s: %s", self.template_path, exc)
        finally:  # whatever failed above, the store's thread must end or the process cannot exit
            if self.poller is not None:
                await self.poller.stop()
            await self.store.stop()
            self.metrics.close()
        log.info("stopped: %s", self.status_line())
        return 0 if ok else 1

    def _install_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        def stop() -> None:
            if self.stopping.is_set():
                log.warning("second signal: exiting without flushing")
                os._exit(1)
            log.info("stopping: draining sockets, flushing bins")
            self.stopping.set()

        def hup() -> None:
            self.reload_requested = True

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop)
        loop.add_signal_handler(signal.SIGHUP, hup)

    # --- flush -----------------------------------------------------------------------------------

    async def flush(self, final: bool = False) -> bool:
        """Write every bin (open ones too: upserts add, so a crash loses at most one interval)."""
        now = self.clock()
        self.intake.hand_on()
        self.decoder.expire(now)
        self.classifier.set_app_ids({**self._learned_app_ids(), **self.app_ids})
        rows = self.aggregator.drain()
        self._if_names = None  # rebuilt once per flush by interface_name
        if_rows = self.aggregator.drain_interfaces(self.interface_name)
        self._count_rows(rows, if_rows)
        self.refresh_snapshot()
        if not rows and not if_rows and not self.store_wants_empty:
            return True
        t0 = time.perf_counter()
        attempts = 3 if final else 1
        for attempt in range(attempts):
            try:
                await self.store.write(rows, if_rows)
                break
            except StoreError as exc:
                self.health.store_errors += 1
                log.error("store: %s (%d rows kept in memory, retried %s)", exc, len(rows),
                          "now" if final and attempt + 1 < attempts else "at the next flush")
                if attempt + 1 < attempts:
                    await asyncio.sleep(1.0)
        else:
            if final:
                self.health.store_lost_rows += len(rows)
                log.error("store: %d rows could not be written at shutdown", len(rows))
                return False
            self.aggregator.restore(rows, if_rows)
            return True
        self.health.flushes += 1
        if rows or if_rows:
            self.metrics.flush_duration.observe(time.perf_counter() - t0)
        if now - self._last_prune > 3600:
            self._last_prune = now
            try:
                await self.store.prune()
            except StoreError as exc:
                log.warning("store: pruning old rows failed: %s", exc)
        return True

    def interface_name(self, exporter: str, if_index: int) -> str:
        """SNMP's ifName, else the name the exporter sent in options data, else the index."""
        name = self.poller.interface_name(exporter, if_index) if self.poller is not None else None
        if not name:
            if self._if_names is None:
                self._if_names = {}
                for sess in self.decoder.sessions.values():
                    for k, v in sess.if_names.items():
                        self._if_names.setdefault((sess.exporter, k), v)
            name = self._if_names.get((exporter, if_index))
        return name or str(if_index)

    def _count_rows(self, rows, if_rows) -> None:
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
                    self._violations[key] = self._violations.get(key, 0) + r.bytes
                    self.metrics.violation_hosts.add(r.host, r.service, r.category, r.bytes)
            self._active_hosts = {k: len(v) for k, v in active.items()}
        targets = {t.exporter for t in self.snmp_targets}
        for r in if_rows:
            if r.exporter in targets:  # bounded: configured exporters, their interfaces, 5 categories
                key = (r.exporter, r.if_name, r.direction, r.category)
                self._interface_service[key] = self._interface_service.get(key, 0) + r.bytes

    def decode_stats(self):
        """The decoder's counters (the supervisor of workers sums its workers' instead)."""
        return self.decoder.stats

    def intake_counters(self) -> tuple[int, dict[str, int], int]:
        """(datagrams denied, kernel drops per listener, exporter sessions)."""
        return (self.intake.denied, {k: d for k, (_, d) in self.intake.queue_stats().items()},
                len(self.decoder.sessions))

    def worker_counts(self) -> tuple[int, int]:
        """(receiving processes alive, restarts): one and none, unless workers run."""
        return 1, 0

    def refresh_snapshot(self) -> None:
        s, agg = self.decode_stats(), self.aggregator
        denied, drops, exporters = self.intake_counters()
        services = {}
        for i, (sid, cat) in enumerate(zip(agg.services, agg.categories)):
            services[(sid, cat)] = (int(agg.service_bytes[i]), int(agg.service_packets[i]),
                                    int(agg.service_flows[i]))
        self.metrics.swap(Snapshot(
            services=services, hosts=dict(self.metrics.hosts.series), active_hosts=dict(self._active_hosts),
            datagrams={(e, str(v)): n for (e, v), n in s.datagrams.items()},
            flows={(e, str(v)): n for (e, v), n in s.flows.items()},
            errors=dict(s.errors), held=dict(s.held), expired=dict(s.expired), seq_lost=dict(s.seq_lost),
            socket_drops=drops, denied=denied, store_errors=self.health.store_errors, exporters=exporters,
            workers=self.worker_counts()[0], worker_restarts=self.worker_counts()[1],
            evicted=dict(s.evicted) | {"open-bins": agg.dropped_bins},
            violations=dict(self._violations), violation_hosts=dict(self.metrics.violation_hosts.series),
            snmp=tuple(self.poller.state().values()) if self.poller is not None else (),
            interface_service=dict(self._interface_service)))

    def _learned_app_ids(self) -> dict[int, str]:
        names: dict[int, str] = {}
        for sess in self.decoder.sessions.values():
            names.update(sess.app_names)
        return self.catalogue.app_ids_for(names) if names else {}

    # --- reload ----------------------------------------------------------------------------------

    async def reload(self) -> None:
        path = self.cfg.path
        try:
            cfg = C.load(path) if path else self.cfg
            for key in ("store.path", "collector.listen"):
                if path and cfg.get(key) != self.cfg.get(key):
                    log.warning("reload: %s changed; it takes effect at the next restart", key)
            catalogue = build_catalogue(cfg)
            app_ids = app_id_table(cfg, catalogue)
            classifier = Classifier(catalogue, cfg.get("classify.internal"), app_ids)
            policy = build_policy(cfg, catalogue)
        except (C.ConfigError, CatalogueError) as exc:
            log.error("reload refused, keeping the running configuration: %s", exc)
            return
        await self.flush()  # bins hold service indexes of the old catalogue
        for key in ("classify.internal", "classify.service", "classify.catalogue", "classify.app_ids",
                    "exporters.allow", "exporters.sampling"):
            self.cfg.set(key, cfg.get(key))
        self.cfg.values["policy"] = cfg["policy"]
        self.catalogue, self.app_ids, self.classifier = catalogue, app_ids, classifier
        self.policy, self.policy_table = policy, policy.vectorized(catalogue)
        self.aggregator.set_services([s.id for s in catalogue.services], [s.category for s in catalogue.services])
        self.intake.allow = Intake([], None, cfg.get("exporters.allow") or None).allow
        self.decoder.sampling_override = dict(cfg.get("exporters.sampling"))
        for sess in self.decoder.sessions.values():
            sess.override = self.decoder.sampling_override.get(sess.exporter)
        log.info("reloaded: %d services (snapshot %s)", len(catalogue.services), catalogue.snapshot)

    # --- status ----------------------------------------------------------------------------------

    def status_line(self) -> str:
        s = self.decode_stats()
        denied, drops, exporters = self.intake_counters()
        now = time.monotonic()
        datagrams, flows = s.total("datagrams"), s.total("flows")
        t, d0, f0 = self._last_status
        rate = (flows - f0) / (now - t) if t else 0.0
        self._last_status = (now, datagrams, flows)
        return (f"datagrams {datagrams} flows {flows} ({rate:,.0f}/s) exporters {exporters} "
                f"held {s.total('held')} expired {s.total('expired')} errors {s.total('errors')} "
                f"denied {denied} kernel-drops {sum(drops.values())} open-bins {self.aggregator.open_bins()} "
                f"store-errors {self.health.store_errors} clamped-times {self.aggregator.totals.clamped}")


def _sources(datagrams) -> list:
    """The (address, port) of each datagram of a batch: an `mmsg.Batch` or (data, source,
    received) tuples."""
    sources = getattr(datagrams, "sources", None)
    return sources if sources is not None else [d[1] for d in datagrams]


def run_loop(coro) -> int:
    try:
        import uvloop
    except ImportError:  # plain asyncio receives ~8x fewer datagrams/s
        return asyncio.run(coro)
    return uvloop.run(coro)
