"""The daemon's data path and shutdown when something inside them fails (a bug: bad input is
the decoder's business and never raises). The fault is injected, as no input provokes it."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from collector import config as C
from collector.daemon.app import App
from collector.classify.catalogue import load_catalogue
from collector.tools.simulate import Simulator

T0 = time.time() - 120


def _app(tmp_path) -> App:
    # loopback, a free port: never the public defaults (0.0.0.0:2055 ...)
    cfg = C.validate({"store": {"path": str(tmp_path / "imflow.db")}, "collector": {"listen": ["127.0.0.1:0"]}})
    return App(cfg, clock=lambda: T0 + 60)


def _batches():
    sim = Simulator(load_catalogue(None), hosts=20, seed=3, start=T0)
    out = []
    for k in range(3):
        flows = sim.tick(T0 + k + 1, 1.0)
        out.append([(d, ("192.0.2.9", 2055), T0 + k + 1) for d in sim.datagrams(flows, T0 + k + 1)])
    return out


def test_a_fault_loses_one_batch_counted_and_the_next_goes_on(tmp_path, monkeypatch, caplog):
    app = _app(tmp_path)
    first, second, third = _batches()
    classify = app.classifier.classify_batch
    calls = []

    def flaky(batch):
        calls.append(len(batch))
        if len(calls) <= 2:
            raise RuntimeError("injected")
        return classify(batch)

    monkeypatch.setattr(app.classifier, "classify_batch", flaky)
    app.process(first)
    app.process(second)
    assert app.decoder.stats.errors["192.0.2.9", "internal"] == len(first) + len(second)
    assert int(app.aggregator.service_flows.sum()) == 0
    app.process(third)
    assert int(app.aggregator.service_flows.sum()) == calls[2]  # every flow of the third batch
    # one traceback for the two faults (logged at most once a minute)
    assert sum("internal error processing a batch" in r.getMessage() for r in caplog.records) == 1


def test_stop_closes_the_store_when_the_final_flush_fails(tmp_path, monkeypatch):
    before = threading.active_count()

    async def main():
        app = _app(tmp_path)
        await app.start()
        assert app.bound and all(b.startswith("127.0.0.1:") for b in app.bound)

        async def broken(final=False):
            raise RuntimeError("injected")

        monkeypatch.setattr(app, "flush", broken)
        with pytest.raises(RuntimeError):
            await app.stop()

    asyncio.run(main())
    time.sleep(0.2)
    assert threading.active_count() == before  # the store's thread ended: the process can exit


def test_the_start_line_counts_services_as_imflow_services_does(tmp_path, caplog):
    import json
    import subprocess
    import sys

    listed = json.loads(subprocess.run([sys.executable, "-m", "collector", "services", "--format", "json"],
                                       capture_output=True, text=True, check=True, cwd=tmp_path).stdout)

    async def main():
        app = _app(tmp_path)
        await app.start()
        await app.stop()

    with caplog.at_level("INFO"):
        asyncio.run(main())
    (line,) = [r.getMessage() for r in caplog.records if "imflow listening" in r.getMessage()]
    assert f" {len(listed)} services," in line, line


def test_a_fault_in_the_main_loop_still_stops_in_order(tmp_path, monkeypatch, caplog):
    """A bug in reload (or any timer) once left the store's thread running after the loop ended:
    the process never exited. Now it flushes, closes the store and exits 1."""
    from collector.daemon import pipeline

    before = threading.active_count()

    def broken(cfg):
        raise RuntimeError("injected")

    async def main():
        app = _app(tmp_path)
        monkeypatch.setattr(app, "_install_signals", lambda loop: None)
        task = asyncio.get_running_loop().create_task(app.run())
        while not app.bound:
            await asyncio.sleep(0.01)
        monkeypatch.setattr(pipeline.Classification, "from_config", staticmethod(broken))
        app.reload_requested = True
        return await asyncio.wait_for(task, 10)

    assert asyncio.run(main()) == 1
    time.sleep(0.2)
    assert threading.active_count() == before
    assert any("internal error in the main loop" in r.getMessage() for r in caplog.records)
