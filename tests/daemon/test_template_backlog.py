"""`imflow run` behind a template backlog (issues 16 and 21): thousands of new sessions announce
templates faster than the decoder's budget per batch, then two exporters start, then silence.
Every record of theirs must reach the database while the daemon runs (the idle timer works the
queue off; no later datagram has to push it), and every announcement must be decoded, none
shed. Truth is what the test sent."""

from __future__ import annotations

import asyncio
import socket
import sqlite3
import time

import pytest

from collector.netflow import encode as E
from collector.netflow import fields as F
from tests.daemon.test_daemon import Daemon

T0 = int(time.time())
FLOW = [(F.sourceIPv4Address, 4), (F.destinationIPv4Address, 4), (F.octetDeltaCount, 4), (F.packetDeltaCount, 4)]
ANNOUNCE = [E.template_set([(256 + k, FLOW + [(5, 1)] * (k % 4))], True) for k in range(8)]
SESSIONS = 3_000  # ~650 KiB of template sets: about 40 batches' budgets (16 KiB each)


def ipfix(sets, seq=0, domain=1):
    return E.ipfix_message(sets, export_time=T0, sequence=seq, domain=domain)


def rows(net: int, n: int, base: int) -> list[dict]:
    return [{8: f"10.{net}.{(base + i) >> 8 & 255}.{(base + i) & 255}", 12: "198.51.100.7", 1: 1000 + i, 2: 1}
            for i in range(n)]


def exporter(net: int, datagrams: int, per: int) -> tuple[list[bytes], tuple[int, int]]:
    """Its template with the first data, then data only; -> datagrams, (records, octets) sent."""
    out, records, octets = [], 0, 0
    for d in range(datagrams):
        rs = rows(net, per, d * per)
        sets = [E.data_set(256, FLOW, rs)]
        if d == 0:
            sets.insert(0, E.template_set([(256, FLOW)], True))
        out.append(ipfix(sets, seq=records, domain=net))
        records += len(rs)
        octets += sum(r[1] for r in rs)
    return out, (records, octets)


def stored(db, net: int) -> tuple[int, int]:
    """Flows and octets the database holds for the exporter's hosts (10.net.0.0/16)."""
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as c:
            got = c.execute("SELECT sum(flows), sum(bytes) FROM rollup_1m WHERE host LIKE ?", (f"10.{net}.%",)).fetchone()
    except sqlite3.OperationalError:  # not created yet
        return 0, 0
    return int(got[0] or 0), int(got[1] or 0)


@pytest.mark.parametrize("workers", [[], ["--workers", "2"]], ids=["one-process", "two-workers"])
def test_exporters_starting_behind_a_template_backlog_lose_nothing(tmp_path, workers):
    """With --workers each worker works off its own decoder's queue."""
    db = tmp_path / "imflow.db"
    d = Daemon(tmp_path, db, *workers)
    deadline = time.monotonic() + 30  # the supervisor says it listens before its workers do
    while d.text().count("imflow listening") < 1 + (int(workers[1]) if workers else 0):
        assert time.monotonic() < deadline and d.proc.poll() is None, d.text()
        time.sleep(0.05)
    a, truth_a = exporter(1, 600, 10)  # more data sets than a session may hold (512) for its template
    b, truth_b = exporter(2, 1, 10)  # one datagram, then nothing: only an idle decode call can take it
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s, \
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sa, \
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sb:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
            dest = ("127.0.0.1", d.port)
            for i in range(SESSIONS):
                s.sendto(ipfix(ANNOUNCE, domain=65_536 + i), dest)
                if i % 500 == 499:
                    time.sleep(0.002)  # bounded pacing: nothing for the kernel to drop
            for i, gram in enumerate(a):
                sa.sendto(gram, dest)
                if i % 100 == 99:
                    time.sleep(0.001)
            sb.sendto(b[0], dest)
        deadline = time.monotonic() + 60  # a loaded machine: the idle timer still runs
        while time.monotonic() < deadline and (stored(db, 1), stored(db, 2)) != (truth_a, truth_b):
            time.sleep(0.2)
        assert (stored(db, 1), stored(db, 2)) == (truth_a, truth_b), d.text()[-2000:]  # before the stop
    finally:
        code = d.stop()
    assert code == 0
    assert (stored(db, 1), stored(db, 2)) == (truth_a, truth_b)
    last = d.stopped_line()
    assert f"datagrams {SESSIONS + len(a) + len(b)} " in last and " errors 0 " in last and " expired 0 " in last, last


@pytest.mark.parametrize("budget", [16 << 10, 0])
def test_the_idle_timer_works_the_queue_off_and_stops_when_it_cannot_move(tmp_path, budget):
    """In process: a batch of announcements past the budget sets the timer; with no further
    batch it empties the queue; with no budget at all (nothing can move) it stops instead of
    waking every few milliseconds for ever."""
    from collector import config as C
    from collector.daemon.app import App

    cfg = C.validate({"store": {"path": str(tmp_path / "imflow.db")}, "collector": {"listen": ["127.0.0.1:0"]},
                      "limits": {"max_new_template_bytes_per_batch": budget}})
    app = App(cfg)
    grams = [(ipfix(ANNOUNCE, domain=65_536 + i), ("198.51.100.50", 2055), time.time()) for i in range(500)]

    async def main():
        await app.start()
        try:
            app.process(grams)
            waiting = app.decoder.deferred_count()
            assert waiting > 0 and app._work_off_timer is not None
            for _ in range(400):  # 2 s at most
                await asyncio.sleep(0.005)
                if app._work_off_timer is None:
                    break
            assert app._work_off_timer is None
            assert app.decoder.deferred_count() == (0 if budget else waiting)
        finally:
            await app.stop()

    asyncio.run(main())
    parsed = sum(1 for s in app.decoder.sessions.values() if s.templates)
    assert parsed == (500 if budget else 0)
