"""The daemon's lifecycle: builds the components from the configuration, starts them in order
(store, template state, SNMP poller, listeners, metrics endpoint, web page, then attached
components such as the workers) and stops them in reverse. Signals, the flush timer and reload
live only here.

SIGTERM / SIGINT: stop intake (after its queues are drained), decode what was received, flush
every bin, save template state, close the store, exit 0. A second signal exits at once.
SIGHUP: flush, then reload the catalogue and the config file's classification, policy and
exporter settings; listeners, the database path and everything else need a restart.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass

from collector import config as C
from collector import kernels, snmp
from collector.classify.catalogue import CatalogueError
from collector.config import parse_endpoint
from collector.daemon.pipeline import Classification, Pipeline
from collector.daemon.telemetry import SNAPSHOT_EVERY, Counters, Health, LocalCounters, Telemetry
from collector.daemon.tuning import tune_gc
from collector.daemon.wiring import build_store, build_targets, build_web
from collector.intake import Intake
from collector.intake.listener import Allow
from collector.metrics import Metrics
from collector.sflow.decode import figures as sflow_figures
from collector.sflow.links import Links
from collector.store import Store, StoreError
from collector.turns import LoopTurns

log = logging.getLogger(__name__)

# What SIGHUP takes from the file; any other change waits for a restart (and is said so).
RELOADED = ("classify.internal", "classify.service", "classify.catalogue", "classify.app_ids",
            "classify.asn_prefixes", "exporters.allow", "exporters.sampling")
RESTART_WARNED = ("store.path", "store.backend", "store.clickhouse", "collector.listen",
                  "dns.dnstap", "dns.max_addresses", "dns.grace", "dns.max_ttl", "dns.max_clients",
                  "audit.categories", "audit.max_age", "audit.max_rows", "audit.max_pending")
PRUNE_EVERY = 3600.0  # seconds between deletions of rows past their retention
FINAL_ATTEMPTS = 3  # store writes tried at shutdown before the rows are given up
FLUSH_SWITCH_INTERVAL = 0.0005  # seconds: sys.setswitchinterval while a flush runs (App.flush)
WORK_OFF_EVERY = 0.005  # seconds with no batch after which template datagrams waiting for the decoder's budget are decoded


@dataclass(frozen=True)
class Role:
    """How this process takes part. The default is the single-process daemon; `--workers N`
    makes N workers (`collector.daemon.workers`) and one supervisor with listeners of none."""
    reuse_port: bool = False  # workers share their listeners (SO_REUSEPORT)
    write_empty: bool = False  # a worker's pipe carries its counters even without rows
    names_interfaces: bool = True  # False in workers: the supervisor has the SNMP poller
    worker_signals: bool = False  # SIGINT ignored (it reaches the supervisor), SIGTERM stops
    early_audit: bool = True  # the audit log written between flushes when half its ceiling is held
    template_states: tuple[str, ...] = ()  # other processes' template state, loaded before our own


class App:
    def __init__(self, cfg: C.Config, clock=time.time, store=None, role: Role = Role()):
        self.cfg, self.clock, self.role = cfg, clock, role
        self.pipeline = Pipeline(cfg, clock)
        self.snmp_targets = build_targets(cfg)
        self.poller = snmp.Poller(self.snmp_targets, clock=clock) if self.snmp_targets else None
        db = cfg.get("store.path")
        self.store = store or Store(db, retention={"minute": cfg.get("store.retention_minute"),
                                                   "hour": cfg.get("store.retention_hour"),
                                                   "day": cfg.get("store.retention_day")}, clock=clock,
                                    audit_max_age=cfg.get("audit.max_age"), audit_max_rows=cfg.get("audit.max_rows"))
        if store is None and cfg.get("store.backend") == "clickhouse":
            self.store = build_store(cfg, clock)
        self.template_path = cfg.get("collector.template_state") or db + ".templates.json"
        self.intake = Intake(cfg.get("collector.listen"), self.process, cfg.get("exporters.allow") or None,
                             rcvbuf=cfg.get("collector.rcvbuf"), batch_size=cfg.get("collector.batch_size"),
                             delay=cfg.get("collector.batch_delay"), reuse_port=role.reuse_port)
        self.health = Health()
        self.turns = LoopTurns()  # the event loop's turn at the GIL while a flush's threads work
        if isinstance(self.store, Store):
            self.store.pause = self.turns.wait
        self.metrics = Metrics(cfg.get("metrics.max_host_series"),
                               health=lambda: self.health.check(listening=bool(self.bound)))
        # interface state for link share: SNMP polls, else sFlow counter samples (docs/sflow.md)
        self.links = Links(self.poller, self.pipeline.decoder, {t.exporter for t in self.snmp_targets})
        self.telemetry = Telemetry(self.metrics, self.health, self.links.exporters, self.links.interface_names,
                                   host_names=Telemetry.names_from(cfg.get("policy.hosts_file")))
        self.counters: Counters = LocalCounters(self.pipeline.decoder, self.intake, self.pipeline.aggregator)
        self.components: list = []  # attached: started after the core, stopped before it
        self.dnstap = None  # the dnstap listener feeding pipeline.learned (docs/dns.md), when configured
        if self.pipeline.learned is not None:
            from collector.dns.dnstap import DnstapListener

            self.dnstap = DnstapListener(cfg.get("dns.dnstap"), self.pipeline.learned,
                                         lambda: self.pipeline.catalogue, clock)
        self.metrics_address: tuple[str, int] | None = None
        self.web = None  # the web page (collector.web) when [web] listen is set
        self.stopping = asyncio.Event()
        self.reload_requested = False
        self.bound: list[str] = []
        self._last_prune = 0.0
        self._if_names: dict | None = None  # (exporter, if_index) -> name from options data
        self._batches = 0  # batches processed, for the idle timer (_work_off)
        self._work_off_timer: asyncio.TimerHandle | None = None
        self._store_lock = asyncio.Lock()  # one store transaction at a time: the flush's, the audit log's, the prune's
        self._audit_write: asyncio.Task | None = None  # an audit-only write between flushes (_write_audit)
        self._audit_early = role.early_audit  # off after a failed early write, until a flush succeeds

    def attach(self, component, counters: Counters | None = None) -> None:
        """Add a component with `start()`/`stop()` (and, if it receives instead of us, the
        counters to report)."""
        self.components.append(component)
        if counters is not None:
            self.counters = counters

    # the pipeline's parts, as the rest of the daemon and the tests name them
    decoder = property(lambda self: self.pipeline.decoder)
    classifier = property(lambda self: self.pipeline.classifier)
    aggregator = property(lambda self: self.pipeline.aggregator)
    catalogue = property(lambda self: self.pipeline.catalogue)
    policy = property(lambda self: self.pipeline.policy)

    def process(self, datagrams) -> None:
        self.turns.busy()  # a flush's threads wait for the batch's end (collector/turns.py)
        try:
            self.pipeline.process(datagrams)
        finally:
            self.turns.idle()
        self._batches += 1
        if self._work_off_timer is None and self.decoder.deferred_count() and self.intake.loop is not None:
            self._work_off_timer = self.intake.loop.call_later(WORK_OFF_EVERY, self._work_off, self._batches)
        self._audit_due()

    def absorb(self, rows, if_rows=(), audit_rows=()) -> None:
        """A worker's delta, in the supervisor: its bins into the aggregator, its audit log's
        flows into the buffer, which may then be due an early write."""
        self.aggregator.absorb(rows, if_rows, audit_rows)
        self._audit_due()

    def _audit_due(self) -> None:
        """Start an early write of the audit log (`_write_audit`) when half of
        `audit.max_pending` is held and none is running."""
        audit = self.pipeline.audit
        if (audit is None or not self._audit_early or audit.held * 2 < audit.max_rows
                or (self._audit_write is not None and not self._audit_write.done())):
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # called outside the event loop (a test, a tool): the flush writes them
            return
        self._audit_write = loop.create_task(self._write_audit())

    async def _write_audit(self) -> None:
        """Half of `audit.max_pending` held before the flush: those flows written now, alone, so
        the ceiling bounds what waits for the store rather than what one flush interval brings
        (at one flush a second the log kept 1 M watched flows a second and dropped the rest). A
        failed write puts them back (unless the store keeps them itself, as ClickHouse's queue
        does), and none is tried again before a flush succeeds."""
        rows = self.pipeline.drain_audit()
        if not rows:
            return
        try:
            async with self._store_lock:
                await self.store.write([], [], rows)
        except Exception as exc:  # a StoreError; anything else is a bug, and the rows are kept too
            self._audit_early = False
            self.health.write_failed()
            if not getattr(exc, "kept", False):
                self.pipeline.audit.restore(rows)
            if isinstance(exc, StoreError):
                log.warning("store: the audit log's early write failed: %s (%d rows kept)", exc, len(rows))
            else:
                log.exception("store: the audit log's early write failed (%d rows kept for the flush)", len(rows))

    def _work_off(self, batches: int) -> None:
        """The idle timer: new sessions' template datagrams past the decoder's budget wait for a
        later decode call (docs/design.md, the decoder's rules); when no batch came in the last
        WORK_OFF_EVERY, a call with no datagrams decodes the next budget's worth of them, until
        none waits. Each call stays within the budget, so between calls the loop receives."""
        self._work_off_timer = None
        if self._batches == batches:  # the sockets were idle
            waiting = self.decoder.deferred_count()
            self._decode_waiting()
            if self.decoder.deferred_count() >= waiting:
                return  # it cannot move (no budget configured): the next batch sets the timer again
        if self.decoder.deferred_count() and not self.stopping.is_set():
            self._work_off_timer = self.intake.loop.call_later(WORK_OFF_EVERY, self._work_off, self._batches)

    def _work_off_all(self) -> None:
        """At shutdown, after the sockets' last batch: every waiting datagram decoded, a budget
        at a time while the queue shrinks (bounded by its ceilings)."""
        if self._work_off_timer is not None:
            self._work_off_timer.cancel()
            self._work_off_timer = None
        waiting = self.decoder.deferred_count()
        while waiting:
            self._decode_waiting()
            waiting, before = self.decoder.deferred_count(), waiting
            if waiting >= before:
                break

    def _decode_waiting(self) -> None:
        """A decode call with no datagrams (the waiting ones' next budget): the loop's turn
        at the GIL held as for a batch, so a flush's threads wait for it too."""
        self.turns.busy()
        try:
            self.pipeline.process([])
        finally:
            self.turns.idle()

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        await self.store.start()
        for path in (*self.role.template_states, self.template_path):
            self._load_templates(path)
        if self.poller is not None:
            await self.poller.start()
        try:
            self.bound = await self.intake.start()
            if self.dnstap is not None:
                await self.dnstap.start()
            if self.cfg.get("metrics.listen"):
                host, port = parse_endpoint(self.cfg.get("metrics.listen"))
                self.metrics_address = self.metrics.serve(host, port)
            if self.cfg.get("web.listen") and not self.role.reuse_port:  # workers leave it to the supervisor
                self.web = build_web(self.cfg, self.poller, live=lambda: (self.catalogue, self.policy))
                await self.web.start()
        except OSError:
            self.intake.close()
            if self.poller is not None:
                await self.poller.stop()
            await self.store.stop()
            raise
        for component in self.components:
            await component.start()
            self.bound = self.bound or list(getattr(component, "bound", []))
        if self.bound:
            self._announce()

    def _load_templates(self, path: str) -> None:
        if not os.path.exists(path):
            return
        try:
            n = self.decoder.load_state(path)
            log.info("loaded %d templates from %s", n, path)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring template state %s: %s", path, exc)

    def _announce(self) -> None:
        allow = self.cfg.get("exporters.allow")
        alive, _ = self.counters.worker_counts()
        services = len(self.catalogue.services) - 1  # as `imflow services` counts: "other" is not one
        log.info("imflow listening on %s (UDP; NetFlow v5/v9, IPFIX and sFlow v5 on every port)%s, storing in %s, "
                 "refresh_time %gs, %d services, %s%s; %s", ", ".join(self.bound),
                 f" with {alive} workers (SO_REUSEPORT)" if self.components else "",
                 getattr(self.store, "where", None) or self.cfg.get("store.path"),
                 self.cfg.get("collector.refresh_time"), services, kernels.status(),
                 ", metrics on http://%s:%d/metrics" % self.metrics_address if self.metrics_address else "",
                 f"exporters allowed: {', '.join(allow)}" if allow else
                 "WARNING: accepting flows from any source (set exporters.allow)")

    async def run(self) -> int:
        """Run until SIGTERM/SIGINT; returns the exit status. A fault in the main loop (a bug)
        still stops in order, flushing and closing the store: its thread would otherwise keep
        the process alive after the loop ended."""
        loop = asyncio.get_running_loop()
        self._install_signals(loop)
        await self.start()
        tune_gc()
        try:
            await self._serve(loop)
        except Exception:
            log.exception("internal error in the main loop; stopping")
            await self.stop()
            return 1
        return await self.stop()

    async def _serve(self, loop: asyncio.AbstractEventLoop) -> None:
        """The timers: flush, status line, health snapshot; and SIGHUP's reload."""
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

    async def stop(self) -> int:
        ok = False
        try:
            if self.dnstap is not None:
                await self.dnstap.stop()
            for component in reversed(self.components):
                await component.stop()
            if self.web is not None:
                await self.web.stop()
            self._audit_early = False  # the final flush writes what is held
            await self.intake.drain()
            self.intake.close()
            self._work_off_all()
            if self._audit_write is not None:
                await self._audit_write
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
        if self.role.worker_signals:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the supervisor, which stops us
            loop.add_signal_handler(signal.SIGTERM, self.stopping.set)
            return

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
        """Write every bin (open ones too: upserts add, so a crash loses at most one interval).
        While it runs, a thread holding the GIL hands it over after FLUSH_SWITCH_INTERVAL, not
        Python's 5 ms: the loop, taking and releasing the GIL around every NumPy call of a batch,
        would otherwise wait up to 5 ms each time while the flush's threads run Python."""
        previous = sys.getswitchinterval()
        sys.setswitchinterval(FLUSH_SWITCH_INTERVAL)
        try:
            return await self._flush(final)
        finally:
            sys.setswitchinterval(previous)

    async def _flush(self, final: bool) -> bool:
        now = self.clock()
        self.intake.hand_on()
        self._if_names = None  # rebuilt once per flush by interface_name
        # the bins as columns, detached in O(1); what takes a pass over them (merging, host and
        # interface names, the telemetry's sums) runs in a thread: the sockets never wait for it
        rows, if_rows = self.pipeline.drain(now, self.interface_name)
        audit_rows = self.pipeline.drain_audit()
        self.links.refresh()
        if if_rows:  # interface_name in the thread must not walk the decoder's sessions: built here
            self._if_names = self.pipeline.exporter_if_names()
        await asyncio.to_thread(self._prepare, rows, if_rows, self.telemetry.walks())
        self.aggregator.drained_dropped += getattr(rows, "dropped", 0) + getattr(if_rows, "dropped", 0)
        self.refresh_snapshot()
        queued = getattr(getattr(self.store, "stats", None), "buffered_rows", 0)  # a store's own queue
        if not rows and not if_rows and not audit_rows and not self.role.write_empty and not queued:
            return True
        t0 = time.perf_counter()
        attempts = FINAL_ATTEMPTS if final else 1
        kept = False  # the store keeps the rows of a failed write itself (ClickHouse's write queue)
        for attempt in range(attempts):
            try:
                async with self._store_lock:
                    await self.store.write(rows, if_rows, audit_rows)
                self._store_queue()
                if not final:
                    self._audit_early = self.role.early_audit
                break
            except StoreError as exc:
                self.health.write_failed()
                kept = getattr(exc, "kept", False)
                self._store_queue()
                log.error("store: %s (%d rows kept in memory, retried %s)", exc, len(rows),
                          "now" if final and attempt + 1 < attempts else "at the next flush")
                if attempt + 1 < attempts:
                    await asyncio.sleep(1.0)
        else:
            if kept:  # retried by the store at the next write; at the last one, lost at its stop
                return not final
            if final:
                self.health.store_lost_rows += len(rows)
                log.error("store: %d rows (and %d audit log rows) could not be written at shutdown",
                          len(rows), len(audit_rows))
                return False
            self.aggregator.restore(rows, if_rows)
            if self.pipeline.audit is not None:
                self.pipeline.audit.restore(audit_rows)
            return True
        self.health.written()
        if rows or if_rows:
            self.metrics.flush_duration.observe(time.perf_counter() - t0)
        await self._prune(now)
        return True

    async def _prune(self, now: float) -> None:
        """Delete what retention no longer keeps, once every PRUNE_EVERY, under the store lock:
        the prune's transaction and an early write of the audit log share the store's one
        connection, and the write's BEGIN inside the prune's failed and rolled the prune back."""
        if now - self._last_prune <= PRUNE_EVERY:
            return
        self._last_prune = now
        try:
            async with self._store_lock:
                await self.store.prune()
        except StoreError as exc:
            log.warning("store: pruning old rows failed: %s", exc)

    def _prepare(self, rows, if_rows, walks: dict) -> None:
        """In a thread, one step after the other: merge the drained bins, name their hosts and
        interfaces, count them into the telemetry. The event loop goes on receiving meanwhile
        (into new bins: these are detached)."""
        for part in (rows, if_rows):
            if hasattr(part, "prepare"):
                part.prepare(self.turns.wait)
        self.telemetry.count(rows, if_rows, walks, self.turns.wait)

    def _store_queue(self) -> None:
        """What a store that queues failed writes itself holds and dropped, for the metrics."""
        stats = getattr(self.store, "stats", None)
        if stats is not None:
            self.health.store_buffered_rows = stats.buffered_rows
            self.health.store_dropped_rows = stats.dropped_rows
            self.health.store_recreated = stats.recreated

    def interface_name(self, exporter: str, if_index: int) -> str:
        """SNMP's ifName, else the name the exporter sent in options data, else the index."""
        if not self.role.names_interfaces:
            return ""
        name = self.poller.interface_name(exporter, if_index) if self.poller is not None else None
        if not name:
            if self._if_names is None:
                self._if_names = self.pipeline.exporter_if_names()
            name = self._if_names.get((exporter, if_index))
        return name or str(if_index)

    def refresh_snapshot(self) -> None:
        self.telemetry.snapshot(self.counters, self.aggregator, self.links,
                                figures={**self.aggregator.method_figures(),
                                         **(self.dnstap.figures() if self.dnstap is not None else {}),
                                         **sflow_figures(self.counters.decode_stats())})

    def status_line(self) -> str:
        return self.telemetry.status_line(self.counters, self.aggregator)

    # --- reload ----------------------------------------------------------------------------------

    async def reload(self) -> None:
        path = self.cfg.path
        try:
            new = C.load(path) if path else self.cfg
            for key in RESTART_WARNED:
                if new.get(key) != self.cfg.get(key):
                    log.warning("reload: %s changed; it takes effect at the next restart", key)
            classification = Classification.from_config(new)
        except (C.ConfigError, CatalogueError) as exc:
            log.error("reload refused, keeping the running configuration: %s", exc)
            return
        await self.flush()  # bins hold service indexes of the old catalogue
        taken = {key: new.get(key) for key in RELOADED} | {f"policy.{k}": v for k, v in new["policy"].items()}
        self.cfg = self.cfg.replaced(taken)
        self.pipeline.apply(classification, self.cfg.get("exporters.sampling"))
        allow = self.cfg.get("exporters.allow")
        self.intake.allow = Allow(allow) if allow else None
        log.info("reloaded: %d services (snapshot %s)", len(classification.catalogue.services) - 1,
                 classification.catalogue.snapshot)


def run_loop(coro) -> int:
    """Run the daemon's coroutine on asyncio's own event loop. The receive path asks the loop
    for a readable event and a timer per recvmmsg round, not a callback per datagram, so uvloop
    no longer paid for itself: measured side by side it took as much CPU a flow or more, and 1.9
    MiB more resident memory (docs/performance.md, "Memory")."""
    return asyncio.run(coro)
