"""The audit log through the daemon's flush: the simulator's flows of watched categories reach
the store with their interfaces, the in-memory ceiling drops and counts (metric), and rows the
store refuses are kept and written at the next flush. The simulator's own record of each flow
(its intended service, host and counters) is the truth."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections import Counter

import pytest

from collector import config as C
from collector.classify.catalogue import load_catalogue
from collector.daemon.app import App
from collector.daemon.pipeline import Pipeline
from collector.store import audit, query
from collector.tools.simulate import Simulator

T0 = time.time() - 300
CATALOGUE = load_catalogue(None)


def _app(tmp_path, **audit) -> App:
    cfg = C.validate({"store": {"path": str(tmp_path / "imflow.db")}, "collector": {"listen": ["127.0.0.1:0"]},
                      "audit": audit})
    return App(cfg, clock=lambda: T0 + 60)


def _traffic(seconds: int = 20, hosts: int = 60):
    sim = Simulator(CATALOGUE, hosts=hosts, seed=11, start=T0)
    batches, flows = [], []
    for k in range(seconds):
        now = T0 + k + 1
        fl = sim.tick(now, 1.0)
        flows += fl
        batches.append([(d, ("192.0.2.9", 2055), now) for d in sim.datagrams(fl, now)])
    return batches, flows


BATCHES, FLOWS = _traffic()


def _truth(categories=("im", "p2p", "voip", "collab"), flows=FLOWS) -> Counter:
    out: Counter = Counter()
    for f in flows:
        if CATALOGUE.by_id[f.service].category in categories:
            host_is_src = f.src == f.host
            peer = f.dst if host_is_src else f.src
            ports = (f.sport, f.dport) if host_is_src else (f.dport, f.sport)
            out[(f.host, peer, *ports, f.proto, f.service, f.bytes, f.packets, f.in_if, f.out_if)] += 1
    return out


def _stored(db) -> Counter:
    return Counter((r["host"], r["peer"], r["host_port"], r["peer_port"], r["proto"], r["service"], r["bytes"],
                    r["packets"], r["in_if"], r["out_if"]) for r in query.flows(str(db), None, None, limit=None))


def _run(app: App, steps) -> None:
    async def main():
        await app.start()
        try:
            for step in steps:
                await step(app)
        finally:
            app.intake.close()
            await app.store.stop()
    asyncio.run(main())


async def _feed(app: App) -> None:
    for b in BATCHES:
        app.process(b)


@pytest.fixture(params=[audit.CHUNK_ROWS, 64], ids=["chunks-at-flush", "chunks-while-held"])
def chunk_rows(request, monkeypatch):
    """The buffer encodes a chunk as soon as CHUNK_ROWS rows are held: with 64 it does so many
    times between flushes (and the ceiling and a refused write cut through chunks)."""
    monkeypatch.setattr(audit, "CHUNK_ROWS", request.param)
    return request.param


def test_the_flush_writes_the_simulators_watched_flows(tmp_path, chunk_rows):
    app = _app(tmp_path)

    async def flush(app):
        assert await app.flush()
    _run(app, [_feed, flush])
    truth = _truth()
    assert sum(truth.values()) > 100 and _stored(tmp_path / "imflow.db") == truth
    assert any(k[8] or k[9] for k in truth)  # the interfaces are carried


def test_the_ceiling_drops_and_counts(tmp_path, chunk_rows):
    batches, flows = _traffic(seconds=30, hosts=300)
    total = sum(_truth(flows=flows).values())
    app = _app(tmp_path, max_pending=1000)

    async def feed(app):
        for b in batches:
            app.process(b)

    async def flush(app):
        assert app.pipeline.audit.held == 1000
        assert await app.flush()
        assert app.metrics.snapshot.evicted["audit-log"] == total - 1000  # imflow_evictions{table="audit-log"}
    _run(app, [feed, flush])
    assert total > 1000
    assert app.pipeline.audit.dropped == total - 1000
    assert app.status_line().endswith(f" audit-dropped {total - 1000}")  # the log's stop line says it too
    stored = _stored(tmp_path / "imflow.db")
    assert sum(stored.values()) == 1000 and not stored - _truth(flows=flows)  # the first 1000, unchanged


def test_half_the_ceiling_held_is_written_before_the_flush(tmp_path, chunk_rows):
    """The same traffic and ceiling, with the event loop given its turns between batches (as
    the sockets give it): each time half of `max_pending` is held, those flows are written
    at once, so nothing is dropped and every watched flow is stored, before any flush."""
    batches, flows = _traffic(seconds=30, hosts=300)
    truth = _truth(flows=flows)
    app = _app(tmp_path, max_pending=1000)

    async def feed(app):
        for b in batches:
            app.process(b)
            if app._audit_write is not None:
                await app._audit_write  # the early write of the rows held so far, if one started

    async def flush(app):
        assert app.pipeline.audit.dropped == 0
        with contextlib.closing(sqlite3.connect(tmp_path / "imflow.db")) as conn:
            (early,) = conn.execute("SELECT coalesce(sum(rows), 0) FROM audit_chunk").fetchone()
        assert early + app.pipeline.audit.held == sum(truth.values()) and early > 1000
        assert await app.flush()
    _run(app, [feed, flush])
    assert _stored(tmp_path / "imflow.db") == truth
    assert app.status_line().endswith(" audit-dropped 0")


def test_a_supervisor_writes_its_workers_flows_early_too(tmp_path, chunk_rows):
    """With --workers the flows reach the supervisor's buffer as a worker's deltas (`absorb`),
    not through its own batches: they too are written when half of `max_pending` is held,
    so a ceiling below what the workers send between two flushes drops nothing."""
    batches, flows = _traffic(seconds=30, hosts=300)
    truth = _truth(flows=flows)
    worker = Pipeline(C.validate({"collector": {"listen": []}}), lambda: T0 + 60)  # its own ceiling: 1 M
    app = _app(tmp_path, max_pending=1000)

    async def deltas(app):
        for i, b in enumerate(batches):
            worker.process(b)
            while i == len(batches) - 1 and worker.decoder.deferred_count():
                worker.process([])  # datagrams past the decoder's template budget, as a worker's idle timer
            app.absorb([], [], worker.drain_audit())  # a delta a second of traffic, as a worker's
            if app._audit_write is not None:
                await app._audit_write
        with contextlib.closing(sqlite3.connect(tmp_path / "imflow.db")) as conn:
            (early,) = conn.execute("SELECT coalesce(sum(rows), 0) FROM audit_chunk").fetchone()
        assert early > 1000 and early + app.pipeline.audit.held == sum(truth.values())
        assert await app.flush()
    _run(app, [deltas])
    assert app.pipeline.audit.dropped == 0 and _stored(tmp_path / "imflow.db") == truth


def test_an_early_write_the_store_refuses_keeps_its_rows_for_the_flush(tmp_path, chunk_rows):
    """The store refuses the audit log's first early write: its flows go back into the buffer,
    no early write is tried again before a flush succeeds (the ceiling drops the rest, counted),
    and the next flush writes what was kept: stored and dropped add up to the watched flows."""
    db = tmp_path / "imflow.db"
    batches, flows = _traffic(seconds=30, hosts=300)
    truth = _truth(flows=flows)
    app = _app(tmp_path, max_pending=1000)

    async def refuse_then_feed(app):
        with contextlib.closing(sqlite3.connect(db)) as conn:
            conn.execute("CREATE TRIGGER refuse BEFORE INSERT ON audit_chunk BEGIN SELECT RAISE(ABORT, 'refused'); END")
            conn.commit()
        tasks = set()
        for b in batches:
            app.process(b)
            if app._audit_write is not None:
                tasks.add(app._audit_write)
                await app._audit_write
        assert len(tasks) == 1 and app.pipeline.audit.held == 1000  # one try, its rows back in the buffer
        with contextlib.closing(sqlite3.connect(db)) as conn:
            conn.execute("DROP TRIGGER refuse")
            conn.commit()
        assert await app.flush()
    _run(app, [refuse_then_feed])
    stored = _stored(db)
    assert sum(stored.values()) == 1000 and not stored - truth
    assert app.pipeline.audit.dropped == sum(truth.values()) - 1000


def test_an_early_write_waits_for_the_hourly_prune(tmp_path, chunk_rows, caplog):
    """The hourly prune and an early write of the audit log share the store's one connection.
    An early write due while the prune's transaction is open waits for it: it used to send its
    BEGIN inside the prune's, fail ("cannot start a transaction within a transaction"), and roll
    the prune back (seen in bench/flush_stall.py at 1M bins with traffic arriving)."""
    db = tmp_path / "imflow.db"
    app = _app(tmp_path)

    async def race(app):
        for b in BATCHES:
            app.process(b)
        assert app.pipeline.audit.held == sum(_truth().values()) and app._audit_write is None
        prune = asyncio.create_task(app._prune(app.clock()))
        await asyncio.sleep(0)  # the prune has sent its BEGIN to the store's thread
        await app._write_audit()
        await prune
    with caplog.at_level("WARNING"):
        _run(app, [race])
    assert not [r.getMessage() for r in caplog.records if r.levelname in ("WARNING", "ERROR")]
    assert app.pipeline.audit.held == 0 and app._audit_early  # written, not given back
    assert _stored(db) == _truth()
    with contextlib.closing(sqlite3.connect(db)) as conn:  # and the prune committed
        assert conn.execute("SELECT count(*) FROM meta WHERE key LIKE 'pruned.%'").fetchone()[0] == 3


def test_rows_the_store_refuses_are_written_at_the_next_flush(tmp_path, chunk_rows):
    db = tmp_path / "imflow.db"
    app = _app(tmp_path)

    async def refuse(app):
        with contextlib.closing(sqlite3.connect(db)) as conn:
            conn.execute("CREATE TRIGGER refuse BEFORE INSERT ON audit_chunk BEGIN SELECT RAISE(ABORT, 'refused'); END")
            conn.commit()
        await app.flush()
        assert app.health.store_errors == 1
        assert app.pipeline.audit.held == sum(_truth().values())
        with contextlib.closing(sqlite3.connect(db)) as conn:
            conn.execute("DROP TRIGGER refuse")
            conn.commit()
        assert await app.flush()
    _run(app, [_feed, refuse])
    assert _stored(db) == _truth()


def test_a_workers_audit_drops_reach_the_supervisors_metric():
    """The pool sums what each worker's buffer dropped (latest and retired workers), and the
    snapshot adds it to the supervisor's own."""
    from collector.daemon.workers import WorkerPool

    pool = WorkerPool.__new__(WorkerPool)
    pool.latest = {0: ({}, {"audit_dropped": 7}), 1: ({}, {"audit_dropped": 5})}
    pool.retired_extra = Counter(audit_dropped=3)
    assert pool.audit_dropped() == 15


def test_each_flow_keeps_its_exporter_when_a_batch_mixes_two(tmp_path):
    """Two exporters' datagrams interleaved in every batch (the pipeline's path for more than
    one session); each simulator's own flows are the truth of its exporter's rows."""
    sims = {"192.0.2.9": Simulator(CATALOGUE, hosts=40, seed=12, start=T0),
            "198.51.100.7": Simulator(CATALOGUE, hosts=40, seed=13, start=T0)}
    flows: dict[str, list] = {a: [] for a in sims}
    batches = []
    for k in range(10):
        now = T0 + k + 1
        per = {}
        for addr, sim in sims.items():
            fl = sim.tick(now, 1.0)
            flows[addr] += fl
            per[addr] = [(d, (addr, 2055), now) for d in sim.datagrams(fl, now)]
        a, b = per.values()
        batches.append([d for pair in zip(a, b) for d in pair] + a[len(b):] + b[len(a):])
    app = _app(tmp_path)

    async def feed(app):
        for b in batches:
            app.process(b)

    async def flush(app):
        assert await app.flush()
    _run(app, [feed, flush])
    stored: dict[str, Counter] = {a: Counter() for a in sims}
    for r in query.flows(str(tmp_path / "imflow.db"), None, None, limit=None):
        stored[r["exporter"]][(r["host"], r["peer"], r["host_port"], r["peer_port"], r["proto"], r["service"],
                               r["bytes"], r["packets"], r["in_if"], r["out_if"])] += 1
    for addr in sims:
        truth = _truth(flows=flows[addr])
        assert sum(truth.values()) > 50 and stored[addr] == truth
