"""The event loop's turn while a flush's threads work (collector/turns.py, issue 21): a step of
the flush waits for the loop's batch to end, at most `most` seconds; the daemon marks its
batches and its flush's threads (host text, telemetry, the store's parameter tuples) ask."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time

from collector import config as C
from collector.classify.catalogue import load_catalogue
from collector.daemon.app import App
from collector.turns import LoopTurns
from collector.tools.simulate import Simulator

T0 = time.time() - 120


def test_a_step_waits_for_the_end_of_the_batch():
    turns = LoopTurns(most=30.0)
    turns.busy()
    done = threading.Event()
    worker = threading.Thread(target=lambda: (turns.wait(), done.set()))
    worker.start()
    assert not done.wait(0.2)  # the batch goes on: the step waits
    turns.idle()
    assert done.wait(5.0)
    worker.join()
    assert turns.waits == 1 and turns.waited >= 0.2


def test_a_step_waits_no_longer_than_most_and_not_at_all_when_idle():
    turns = LoopTurns(most=0.05)
    t = time.perf_counter()
    turns.wait()
    assert time.perf_counter() - t < 0.04 and turns.waits == 0
    turns.busy()
    t = time.perf_counter()
    turns.wait()
    assert 0.04 < time.perf_counter() - t < 5.0 and turns.waits == 1


def test_the_daemon_marks_its_batches_and_its_flush_waits_for_them(tmp_path):
    """A batch is marked while the pipeline works on it; a flush whose loop is (held) in a
    batch waits at its steps and still writes every bin; with the loop idle it never waits."""
    path = tmp_path / "imflow.db"
    cfg = C.validate({"store": {"path": str(path)}, "collector": {"listen": ["127.0.0.1:0"]}})
    app = App(cfg, clock=lambda: T0 + 60)
    app.turns.most = 0.005
    sim = Simulator(load_catalogue(None), hosts=300, seed=5, start=T0)
    seen = []
    process = app.pipeline.process
    app.pipeline.process = lambda batch: (seen.append(app.turns.in_batch()), process(batch))

    async def main():
        await app.start()
        try:
            for k in range(3):
                flows = sim.tick(T0 + k + 1, 1.0)
                app.process([(d, ("192.0.2.9", 2055), T0 + k + 1) for d in sim.datagrams(flows, T0 + k + 1)])
            assert seen == [True] * 3 and not app.turns.in_batch()
            open_bins = app.aggregator.open_bins()
            assert open_bins > 0
            app.turns.busy()  # as if the loop were in a batch all along
            try:
                assert await app.flush()
            finally:
                app.turns.idle()
            held = app.turns.waits
            flows = sim.tick(T0 + 5, 1.0)
            app.process([(d, ("192.0.2.9", 2055), T0 + 5) for d in sim.datagrams(flows, T0 + 5)])
            assert await app.flush()
            return open_bins, held, app.turns.waits - held
        finally:
            app.intake.close()
            await app.store.stop()

    open_bins, held, idle = asyncio.run(main())
    # host text, the telemetry's steps, the parameter tuples (made as SQLite binds them)
    assert held >= 4
    assert idle == 0
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*) FROM rollup_1m").fetchone()[0] > 0
