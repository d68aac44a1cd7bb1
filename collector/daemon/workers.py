"""`imflow run --workers N`: N receiving processes on SO_REUSEPORT sockets and one supervisor.

Each worker is the ordinary `App` whose "store" is a pipe (`PipeSink`): every second it sends
its bins and its cumulative counters to the supervisor. The supervisor is an `App` with no
listeners of its own and a `WorkerPool` attached: the pool starts the workers, adds their bins
into the supervisor's aggregator and reports their counters; the supervisor owns the database,
the metrics endpoint and the SNMP poller, and flushes as the single-process daemon does.

The kernel picks a worker per datagram by hashing the 4-tuple, so one exporter session stays
on one worker and its templates stay put. A worker that dies is restarted and counted; what
it had not sent yet (at most one second of bins) is lost, and because the kernel rehashes
when the socket group changes, some exporters may move to another worker and need a template
refresh (their data is held meanwhile, as after any restart). Every worker loads the template
state of all workers at start, which makes that move cheaper.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import logging
import multiprocessing
import os
import signal
import socket
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from collector import config as C
from collector.config import parse_endpoint
from collector.daemon.app import App, Role, run_loop
from collector.daemon.spawned import worker_main
from collector.daemon.telemetry import Counters
from collector.netflow.stats import DecodeStats
from collector.sflow.links import sflow_interfaces
from collector.text import LogFormatter

log = logging.getLogger(__name__)

WORKER_FLUSH = 1.0  # seconds between a worker's deltas
STOP_TIMEOUT = 30.0  # seconds the workers get for their final deltas at shutdown
WATCH_EVERY = 0.5  # seconds between checks that every worker is alive
_COUNTERS = ("datagrams", "flows", "errors", "held", "replayed", "expired", "seq_lost", "templates",
             "notices", "evicted", "sampling")


def supervisor(cfg: C.Config, workers: int) -> App:
    """The supervising App: no listeners of its own, the pool of workers attached."""
    app = App(cfg.replaced({"collector.listen": []}))
    pool = WorkerPool(cfg, workers, app.absorb)
    if app.pipeline.learned is not None:  # dnstap: the supervisor listens, the workers classify
        app.pipeline.learned.keep_journal()
        pool.learned = app.pipeline.learned
    app.attach(pool, counters=pool)
    app.links.source = pool.sflow_interfaces  # the workers' sFlow counter samples
    return app


class PipeSink:
    """The worker's store: bins and counters go down the pipe to the supervisor."""

    where = "the supervisor (through a pipe)"  # what the worker's start line says it stores in

    def __init__(self, conn):
        self.conn = conn
        self.counters: Counters | None = None  # the worker's own, set once its App exists
        self.audit = None  # the worker's audit buffer (collector.auditlog), None when the log is off

    async def start(self) -> None:
        pass

    async def write(self, rows, if_rows=(), audit_rows=()) -> None:
        stats = self.counters.decode_stats()
        denied, drops, exporters = self.counters.intake_counters()
        counters = {name: dict(getattr(stats, name)) for name in _COUNTERS}
        try:
            # columns (store/columns.py, merged by the flush's thread): pickled as arrays, absorbed
            # by the supervisor without a Python object per bin on either side
            self.conn.send(("delta", rows, if_rows, counters,
                            {"denied": denied, "drops": drops, "exporters": exporters,
                             "clamped": self.counters.clamped(), "backlog": self.counters.backlog(),
                             "audit_dropped": self.audit.dropped if self.audit is not None else 0,
                             "sflow_ifs": sflow_interfaces(self.counters.decoder)},  # link share: sflow/links.py
                            audit_rows))  # an AuditBatch: columns
        except (BrokenPipeError, OSError):
            log.error("worker: supervisor gone; exiting")
            os._exit(1)

    async def prune(self) -> dict:
        return {}

    async def stop(self) -> None:
        self.conn.close()


class LearnedFeed:
    """A worker's copy of the supervisor's learned addresses (docs/dns.md): what the pool sends
    down a pipe goes into the worker's table. It takes the dnstap listener's place in the App."""

    def __init__(self, conn, table, catalogue, clock):
        self.conn, self.table, self.catalogue, self.clock = conn, table, catalogue, clock
        self._updater: asyncio.Task | None = None

    async def start(self) -> None:
        asyncio.get_running_loop().add_reader(self.conn.fileno(), self._read)
        from collector.dns.table import keep_view_current

        # the view takes in what the supervisor sent between flow batches, not in the first one
        self._updater = asyncio.create_task(keep_view_current(self.table, self.catalogue, self.clock))

    def _read(self) -> None:
        try:
            os.set_blocking(self.conn.fileno(), True)  # a message larger than the pipe's buffer
            entries = self.conn.recv()
        except (EOFError, OSError):
            asyncio.get_running_loop().remove_reader(self.conn.fileno())
            return
        self.table.put(entries)

    async def stop(self) -> None:
        if self._updater is not None:
            self._updater.cancel()
            self._updater = None
        with contextlib.suppress(OSError, ValueError):
            asyncio.get_running_loop().remove_reader(self.conn.fileno())
        self.conn.close()

    def figures(self) -> dict:
        return {}  # a worker serves no metrics


def worker_app(cfg: C.Config, index: int, conn, learned_conn=None) -> App:
    """Worker `index`: the supervisor's configuration less what only the supervisor does."""
    base = cfg.get("collector.template_state") or cfg.get("store.path") + ".templates.json"
    own = f"{base}.w{index}"
    sink = PipeSink(conn)
    app = App(cfg.replaced({"metrics.listen": "", "snmp.targets": [], "collector.template_state": own,
                            "dns.dnstap": "",  # the supervisor listens; see WorkerPool.learned
                            "collector.refresh_time": min(WORKER_FLUSH, cfg.get("collector.refresh_time"))}),
              store=sink, role=Role(reuse_port=True, write_empty=True, names_interfaces=False, worker_signals=True,
                                    early_audit=False,  # its pipe carries the log with the bins every second
                                    template_states=tuple(p for p in sorted(glob.glob(f"{base}*")) if p != own)))
    sink.counters = app.counters
    sink.audit = app.pipeline.audit  # its drops reach the supervisor's imflow_evictions{table="audit-log"}
    if learned_conn is not None:
        from collector.daemon.wiring import build_learned

        table = build_learned(cfg)  # the supervisor's configuration: dnstap on
        app.pipeline.learned = app.pipeline.classifier.learned_addresses = table
        app.dnstap = LearnedFeed(learned_conn, table, lambda: app.pipeline.catalogue, app.clock)
    return app


def run_worker(cfg: C.Config, index: int, conn, level: int, learned_conn=None) -> None:
    """A worker process's life, from `spawned.worker_main`: logging, malloc tuning, its App."""
    handler = logging.StreamHandler()
    handler.setFormatter(LogFormatter(f"%(asctime)s %(levelname)s worker-{index} %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])
    from collector.daemon.tuning import tune_malloc

    tune_malloc()
    raise SystemExit(run_loop(worker_app(cfg, index, conn, learned_conn).run()))


class WorkerPool:
    """Starts the workers, takes their deltas, restarts dead ones; its counters are their sums."""

    def __init__(self, cfg: C.Config, workers: int, absorb):
        self.cfg = cfg.replaced({"collector.listen": [_fixed_port(s) for s in cfg.get("collector.listen")]})
        self.bound = list(self.cfg.get("collector.listen"))
        self.nworkers = workers
        self.absorb = absorb
        self.procs: dict[int, multiprocessing.Process] = {}
        self.conns: dict[int, object] = {}
        self.latest: dict[int, tuple] = {}  # worker -> its last cumulative counters
        self.retired = DecodeStats()  # counters of workers that died, so totals never go back
        self.retired_extra = Counter()
        self.retired_clamped: Counter = Counter()
        self.restarts = 0
        self.stopping = False
        self._watchdog: asyncio.Task | None = None
        self._ctx = multiprocessing.get_context("spawn")
        self.learned = None  # the supervisor's learned addresses (dnstap), sent on to every worker
        self.learned_conns: dict[int, object] = {}
        # one thread sends them, so a worker busy reading never stalls the event loop, and in order
        self._sender = ThreadPoolExecutor(1, thread_name_prefix="imflow-learned")

    async def start(self) -> None:
        for i in range(self.nworkers):
            self._spawn(i)
        self._watchdog = asyncio.get_running_loop().create_task(self._watch())

    def _spawn(self, index: int) -> None:
        parent, child = self._ctx.Pipe(duplex=False)
        l_recv, l_send = self._ctx.Pipe(duplex=False) if self.learned is not None else (None, None)
        proc = self._ctx.Process(target=worker_main, name=f"imflow-worker-{index}", daemon=True,
                                 args=(self.cfg, index, child, logging.getLogger().level, l_recv))
        proc.start()
        child.close()
        if l_send is not None:
            l_recv.close()
            self.learned_conns[index] = l_send
            self._sender.submit(_send, l_send, self.learned.snapshot())  # a new worker starts from all
        log.info("worker %d started (pid %d)", index, proc.pid)
        self.procs[index] = proc
        self.conns[index] = parent
        asyncio.get_running_loop().add_reader(parent.fileno(), self._receive, index)

    def _receive(self, index: int) -> None:
        conn = self.conns.get(index)
        if conn is None:
            return
        try:
            # the event loop makes watched fds non-blocking; a delta larger than the pipe's
            # buffer must be read whole, and the worker is writing it right now
            os.set_blocking(conn.fileno(), True)
            msg = conn.recv()
        except (EOFError, OSError):
            asyncio.get_running_loop().remove_reader(conn.fileno())
            conn.close()
            self.conns.pop(index, None)
            return
        _, rows, if_rows, counters, extra, audit_rows = msg
        self.absorb(rows, if_rows, audit_rows)
        self.latest[index] = (counters, extra)

    async def _watch(self) -> None:
        while not self.stopping:
            await asyncio.sleep(WATCH_EVERY)
            if self.learned is not None:
                changes = self.learned.take_journal()
                if changes:
                    for conn in list(self.learned_conns.values()):
                        self._sender.submit(_send, conn, changes)
            for index, proc in list(self.procs.items()):
                if not proc.is_alive() and not self.stopping:
                    await asyncio.sleep(0.2)  # let its last deltas and EOF arrive
                    self._retire(index)
                    self.restarts += 1
                    log.error("worker %d exited (status %s); restarting it", index, proc.exitcode)
                    self._spawn(index)

    def _retire(self, index: int) -> None:
        counters, extra = self.latest.pop(index, ({}, {}))
        for name, values in counters.items():
            getattr(self.retired, name).update(values)
        self.retired_extra["denied"] += extra.get("denied", 0)
        self.retired_extra["audit_dropped"] += extra.get("audit_dropped", 0)
        self.retired_clamped.update(extra.get("clamped", {}))
        conn = self.conns.pop(index, None)
        if conn is not None:
            asyncio.get_running_loop().remove_reader(conn.fileno())
            conn.close()
        conn = self.learned_conns.pop(index, None)
        if conn is not None:
            self._sender.submit(conn.close)  # after what is queued for it

    async def stop(self) -> None:
        self.stopping = True
        if self._watchdog is not None:
            self._watchdog.cancel()
        for proc in self.procs.values():
            if proc.is_alive():
                os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        while self.conns and time.monotonic() < deadline:  # their final deltas, then EOF
            await asyncio.sleep(0.05)
        for proc in self.procs.values():
            proc.join(timeout=max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                log.error("worker %s did not stop; killing it", proc.name)
                proc.kill()
        for conn in self.learned_conns.values():
            self._sender.submit(conn.close)
        self._sender.shutdown(wait=False, cancel_futures=False)

    # --- Counters: the workers' sums -----------------------------------------------------------

    def sflow_interfaces(self) -> dict:
        """exporter -> {ifIndex: if_counters} from every worker's latest delta (sflow/links.py)."""
        out: dict = {}
        for _, extra in self.latest.values():
            for exporter, ifs in extra.get("sflow_ifs", {}).items():
                out.setdefault(exporter, {}).update(ifs)
        return out

    def decode_stats(self) -> DecodeStats:
        merged = DecodeStats()
        for name in _COUNTERS:
            total = getattr(merged, name)
            total.update(getattr(self.retired, name))
            for counters, _ in self.latest.values():
                total.update(counters.get(name, {}))
        return merged

    def intake_counters(self) -> tuple[int, dict[str, int], int]:
        denied = self.retired_extra["denied"] + sum(e.get("denied", 0) for _, e in self.latest.values())
        drops: Counter = Counter()
        for _, e in self.latest.values():
            drops.update(e.get("drops", {}))
        return denied, dict(drops), sum(e.get("exporters", 0) for _, e in self.latest.values())

    def worker_counts(self) -> tuple[int, int]:
        return sum(p.is_alive() for p in self.procs.values()), self.restarts

    def backlog(self) -> tuple[int, int]:
        """The workers' backlogs as each last reported them, added up (a worker gone has none)."""
        waiting = [e.get("backlog", (0, 0)) for _, e in self.latest.values()]
        return sum(w for w, _ in waiting), sum(h for _, h in waiting)

    def audit_dropped(self) -> int:
        """Flows the workers' audit buffers dropped at their max_pending ceiling."""
        return self.retired_extra["audit_dropped"] + sum(e.get("audit_dropped", 0) for _, e in self.latest.values())

    def clamped(self) -> dict[str, int]:
        total = Counter(self.retired_clamped)
        for _, e in self.latest.values():
            total.update(e.get("clamped", {}))
        return dict(total)

    def status_suffix(self) -> str:
        alive, restarts = self.worker_counts()
        return f" workers {alive} worker-restarts {restarts}"


def _send(conn, entries) -> None:
    """On the pool's sender thread: learned addresses down one worker's pipe."""
    try:
        conn.send(entries)
    except (OSError, ValueError, EOFError):  # the worker died or its pipe was closed: it is restarted
        pass


def _fixed_port(spec: str) -> str:
    """Workers must share one port: resolve port 0 here, once."""
    host, port = parse_endpoint(spec)
    if port:
        return spec
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        port = s.getsockname()[1]
    return f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"
