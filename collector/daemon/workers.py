"""`imflow run --workers N`: N receiving processes on SO_REUSEPORT sockets and one supervisor.

Each worker is the ordinary pipeline (intake, decode, classify, aggregate) whose "store" is a
pipe: every second it sends its bins and its cumulative counters to the supervisor. The
supervisor owns the database, the metrics endpoint and the SNMP poller; it adds the workers'
bins into its own aggregator and flushes them as the single-process daemon does.

The kernel picks a worker per datagram by hashing the 4-tuple, so one exporter session stays
on one worker and its templates stay put. A worker that dies is restarted and counted; what
it had not sent yet (at most one second of bins) is lost, and because the kernel rehashes
when the socket group changes, some exporters may move to another worker and need a template
refresh (their data is held meanwhile, as after any restart). Every worker loads the template
state of all workers at start, which makes that move cheaper.
"""

from __future__ import annotations

import asyncio
import glob
import logging
import multiprocessing
import os
import signal
import socket
import time
from collections import Counter

from collector import config as C
from collector.daemon.app import App, run_loop
from collector.config import parse_endpoint
from collector.netflow.stats import DecodeStats

log = logging.getLogger(__name__)

WORKER_FLUSH = 1.0  # seconds between a worker's deltas
_COUNTERS = ("datagrams", "flows", "errors", "held", "replayed", "expired", "seq_lost", "templates",
             "notices", "evicted")


class PipeSink:
    """The worker's store: bins and counters go down the pipe to the supervisor."""

    def __init__(self, conn):
        self.conn = conn
        self.app: App | None = None

    async def start(self) -> None:
        pass

    async def write(self, rows, if_rows=()) -> None:
        app = self.app
        stats = app.decoder.stats
        denied, drops, exporters = app.intake_counters()
        counters = {name: dict(getattr(stats, name)) for name in _COUNTERS}
        try:
            self.conn.send(("delta", list(rows), list(if_rows), counters,
                            {"denied": denied, "drops": drops, "exporters": exporters}))
        except (BrokenPipeError, OSError):
            log.error("worker: supervisor gone; exiting")
            os._exit(1)

    async def prune(self) -> dict:
        return {}

    async def stop(self) -> None:
        self.conn.close()


class Worker(App):
    store_wants_empty = True

    def __init__(self, cfg: C.Config, index: int, conn):
        cfg.values["metrics"]["listen"] = ""
        cfg.values["snmp"]["targets"] = []
        cfg.values["collector"]["refresh_time"] = min(WORKER_FLUSH, cfg.get("collector.refresh_time"))
        base = cfg.get("collector.template_state") or cfg.get("store.path") + ".templates.json"
        cfg.values["collector"]["template_state"] = f"{base}.w{index}"
        self.template_glob = f"{base}*"
        sink = PipeSink(conn)
        super().__init__(cfg, store=sink, reuse_port=True)
        sink.app = self
        self.index = index

    def interface_name(self, exporter: str, if_index: int) -> str:
        return ""  # the supervisor names interfaces (it has the SNMP poller)

    async def start(self) -> None:
        for path in sorted(glob.glob(self.template_glob)):
            if path != self.template_path:
                try:
                    self.decoder.load_state(path)
                except (OSError, ValueError, KeyError, TypeError) as exc:
                    log.warning("worker %d: ignoring template state %s: %s", self.index, path, exc)
        await super().start()

    def _install_signals(self, loop) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the supervisor, which stops us
        loop.add_signal_handler(signal.SIGTERM, self.stopping.set)


def _worker_main(values: dict, path: str | None, index: int, conn, level: int) -> None:
    logging.basicConfig(level=level, format=f"%(asctime)s %(levelname)s worker-{index} %(name)s: %(message)s")
    from collector.daemon.tuning import tune_malloc

    tune_malloc()
    cfg = C.Config(values, path)
    raise SystemExit(run_loop(Worker(cfg, index, conn).run()))


class Supervisor(App):
    """Owns the store, metrics and SNMP; receives from the workers; restarts dead ones."""

    def __init__(self, cfg: C.Config, workers: int):
        self.worker_listen = [self._fixed_port(spec) for spec in cfg.get("collector.listen")]
        own = C.Config({k: dict(v) for k, v in cfg.values.items()}, cfg.path)
        own.values["collector"]["listen"] = []
        super().__init__(own, store=None)
        self.nworkers = workers
        self.procs: dict[int, multiprocessing.Process] = {}
        self.conns: dict[int, object] = {}
        self.latest: dict[int, tuple] = {}  # worker -> its last cumulative counters
        self.retired = DecodeStats()  # counters of workers that died, so totals never go back
        self.retired_extra = Counter()
        self.restarts = 0
        self._ctx = multiprocessing.get_context("spawn")

    @staticmethod
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

    async def start(self) -> None:
        await super().start()
        for i in range(self.nworkers):
            self._spawn(i)
        self.bound = list(self.worker_listen)
        allow = self.cfg.get("exporters.allow")
        log.info("imflow listening on %s (UDP; NetFlow v5/v9 and IPFIX on every port) with %d workers "
                 "(SO_REUSEPORT), storing in %s, refresh_time %gs%s; %s", ", ".join(self.bound), self.nworkers,
                 self.cfg.get("store.path"), self.cfg.get("collector.refresh_time"),
                 ", metrics on http://%s:%d/metrics" % self.metrics_address if self.metrics_address else "",
                 f"exporters allowed: {', '.join(allow)}" if allow else
                 "WARNING: accepting flows from any source (set exporters.allow)")

    def _spawn(self, index: int) -> None:
        parent, child = self._ctx.Pipe(duplex=False)
        values = {k: dict(v) for k, v in self.cfg.values.items()}
        values["collector"]["listen"] = list(self.worker_listen)
        proc = self._ctx.Process(target=_worker_main, name=f"imflow-worker-{index}", daemon=True,
                                 args=(values, self.cfg.path, index, child, logging.getLogger().level))
        proc.start()
        child.close()
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
        _, rows, if_rows, counters, extra = msg
        self.aggregator.absorb(rows, if_rows)
        self.latest[index] = (counters, extra)

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        watchdog = loop.create_task(self._watch())
        try:
            return await super().run()
        finally:
            watchdog.cancel()

    async def _watch(self) -> None:
        while not self.stopping.is_set():
            await asyncio.sleep(0.5)
            for index, proc in list(self.procs.items()):
                if not proc.is_alive() and not self.stopping.is_set():
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
        conn = self.conns.pop(index, None)
        if conn is not None:
            asyncio.get_running_loop().remove_reader(conn.fileno())
            conn.close()

    async def stop(self) -> int:
        for proc in self.procs.values():
            if proc.is_alive():
                os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while self.conns and time.monotonic() < deadline:  # their final deltas, then EOF
            await asyncio.sleep(0.05)
        for proc in self.procs.values():
            proc.join(timeout=max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                log.error("worker %s did not stop; killing it", proc.name)
                proc.kill()
        return await super().stop()

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

    def status_line(self) -> str:
        alive, restarts = self.worker_counts()
        return super().status_line() + f" workers {alive} worker-restarts {restarts}"
