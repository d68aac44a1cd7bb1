"""bench/cpu_per_flow.py runs and counts every flow it times: the records of the datagrams after
its untimed first batch, counted from the built datagrams themselves."""

from __future__ import annotations

import time

from bench import cpu_per_flow as B
from bench.ingest import datagrams as D
from collector import config as C


def test_cpu_per_flow_times_every_flow_after_the_warm_up():
    built = D.build("v9", 3000)
    feed = B.batches(built, 64, time.time() - 30)
    assert sum(len(b) for b, _, _ in feed) == len(built.datagrams)
    cfg = C.validate({"audit": {"categories": []}})
    cpu, flows, _ = B.one_pass(cfg, feed, 1.0)
    assert flows == built.total_records - sum(built.records[:64]) and cpu > 0
    st, n = B.stages(cfg, feed, 2, batches=3)
    assert n == sum(built.records[64:64 * 4]) and all(v > 0 for v in st.values())


def test_cpu_per_flow_prints_a_line_per_version(capsys):
    B.main(["--versions", "v5,ipfix", "--reps", "1", "--flows", "2000", "--batch", "32", "--stages"])
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith(("v5 |", "ipfix |"))]
    assert [ln.split(" |")[0] for ln in lines] == ["v5", "ipfix"]


def test_pace_leaves_the_sleep_out_of_the_cpu_time():
    """--pace: the batches come apart, and the pauses are wall time, not the pipeline's CPU."""
    built = D.build("v5", 3000)
    feed = B.batches(built, 16, time.time() - 30)
    cfg = C.validate({"audit": {"categories": []}})
    t0 = time.perf_counter()
    cpu, flows, _ = B.one_pass(cfg, feed, 1.0, pace=0.02)
    wall = time.perf_counter() - t0
    assert flows == built.total_records - sum(built.records[:16])
    assert wall >= 0.02 * (len(feed) - 1) > cpu
