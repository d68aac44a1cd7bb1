"""`imflow demo`: the collector on loopback, a simulated router sending NetFlow v9 to it, and a
live top-services / top-hosts view, all in one process until Ctrl-C."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import tempfile
import time

from collector import config as C
from collector.daemon.app import App
from collector.report import tables
from collector.store import StoreError, query
from collector.text import printable
from collector.tools.simulate import Exporter, Simulator

log = logging.getLogger(__name__)


def run_demo(db: str | None = None, hosts: int = 40, every: float = 5.0, duration: float | None = None,
             port: int = 0, out=sys.stdout, config: C.Config | None = None) -> int:
    """`config`: take its [policy] and [classify] (catalogue, extra services, app ids); the rest
    of it (listeners, store, SNMP, metrics, internal networks) is the demo's own."""
    tmp = None
    if db is None:
        tmp = tempfile.TemporaryDirectory(prefix="imflow-demo-")
        db = os.path.join(tmp.name, "imflow.db")
    cfg = C.validate({
        # a small receive buffer: the demo's rate needs no more, and it never exceeds rmem_max
        "collector": {"listen": [f"127.0.0.1:{port}"], "refresh_time": 2.0, "status_interval": 3600,
                      "rcvbuf": 212992},
        "store": {"path": db},
    })
    if config is not None:
        # the simulated hosts stay internal whatever the config's classify.internal says
        cfg = cfg.replaced({"classify": dict(config["classify"], internal=cfg.get("classify.internal")),
                            "policy": config["policy"]})
    try:
        return asyncio.run(_demo(cfg, hosts, every, duration, out))
    except KeyboardInterrupt:
        return 0
    finally:
        if tmp is not None:
            tmp.cleanup()


async def _demo(cfg: C.Config, hosts: int, every: float, duration: float | None, out) -> int:
    app = App(cfg)
    loop = asyncio.get_running_loop()
    task = loop.create_task(app.run())
    while not app.bound:
        if task.done():
            return task.result()
        await asyncio.sleep(0.05)
    host, port = app.bound[0].rsplit(":", 1)
    sim = Simulator(app.catalogue, hosts=hosts)
    stop = asyncio.Event()
    exporter = loop.create_task(Exporter((host, int(port)), sim, interval=1.0).run(stop))
    db = cfg.get("store.path")
    print(f"imflow demo: collector on udp://{app.bound[0]}, {hosts} simulated hosts sending NetFlow v9, "
          f"database {db}\nPress Ctrl-C to stop.\n", file=out, flush=True)
    started = time.time()
    try:
        while duration is None or time.time() - started < duration:
            wait = min(every, duration - (time.time() - started)) if duration else every
            done, _ = await asyncio.wait({task}, timeout=wait)
            if done:  # the collector stopped (SIGTERM, SIGINT): so does the demo
                break
            _screen(db, started, app, out)
    except asyncio.CancelledError:
        pass
    finally:
        stop.set()
        await exporter
        app.stopping.set()
        code = await task
    _screen(db, started, app, out)
    if "imflow-demo-" in db:
        print("demo stopped; its temporary database is removed (imflow demo --db PATH keeps one)", file=out)
    else:
        print(f"demo stopped; the data stays in {db} (imflow top --db {db} --since all)", file=out)
    return code


def _screen(db: str, started: float, app: App, out) -> None:
    # The tables escape names (tables.render); the only raw escape sequence is the clear below.
    if out.isatty():
        out.write("\x1b[2J\x1b[H")
    try:
        services = query.top(db, started - 60, None, by=("category", "service"), limit=12)
        hosts = query.top(db, started - 60, None, by=("host", "service"), limit=10,
                          category=["im", "p2p", "voip", "collab"])
    except StoreError as exc:
        print(f"(no data yet: {printable(exc)})", file=out)
        return
    s = app.decoder.stats
    print(f"imflow demo — {time.strftime('%H:%M:%S')} — datagrams {s.total('datagrams')}, "
          f"flows {s.total('flows')}, errors {s.total('errors')}\n", file=out)
    print("Top services", file=out)
    out.write(tables.render(services, ("category", "service"), "table"))
    print("\nTop internal hosts on IM / P2P / VoIP / collaboration", file=out)
    out.write(tables.render(hosts, ("host", "service"), "table"))
    print("\n(imflow top --db %s --since 15m --by host,service  answers the same from a shell)\n" % db,
          file=out, flush=True)
