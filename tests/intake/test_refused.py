"""Refused senders in the log: the first refusal of each address by name, the rest summed up
at most once an interval, everything bounded (sources are sender-controlled)."""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest

from collector.intake import Intake, mmsg
from collector.intake.refused import Refusals

MODES = [False, pytest.param(True, marks=pytest.mark.skipif(not mmsg.available(), reason="no recvmmsg"))]


def _lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "collector.intake.refused"]


def test_first_refusal_of_each_address_then_one_summary(caplog):
    caplog.set_level(logging.WARNING, "collector.intake.refused")
    r = Refusals(interval=60)
    r.note("192.0.2.1")
    r.note("192.0.2.1", 5)
    r.note("2001:db8::1", 3)
    r.note("192.0.2.1")
    first = _lines(caplog)
    assert len(first) == 2
    assert "192.0.2.1" in first[0] and "exporters.allow" in first[0]
    assert "2001:db8::1" in first[1]
    r.summarise()
    summary = _lines(caplog)[2:]
    assert summary == ["refused 8 datagrams from 2 senders not in exporters.allow in the last 60s: "
                       "192.0.2.1 (6), 2001:db8::1 (2)"]
    r.summarise()  # nothing new: no line
    assert len(_lines(caplog)) == 3


def test_bounded_under_a_flood_of_spoofed_sources(caplog):
    caplog.set_level(logging.WARNING, "collector.intake.refused")
    r = Refusals(interval=60, new_per_interval=10, remember=50, track=20, top=3)
    for i in range(10_000):
        r.note(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}")
    assert len(_lines(caplog)) == 10          # first-refusal lines: at most 10 an interval
    assert len(r.logged) == 10 and len(r.pending) == 20
    r.summarise()
    line = _lines(caplog)[-1]
    assert line.startswith("refused 9990 datagrams from at least 21 senders") and line.endswith("and others")
    for i in range(10_000, 20_000):
        r.note(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}")
    assert len(r.logged) == 20 and len(_lines(caplog)) == 21  # the budget renewed once
    for _ in range(10):
        r.summarise()
        for i in range(20_000, 21_000):
            r.note(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}")
    assert len(r.logged) == 50                # never more remembered than `remember`
    assert len(r.pending) <= 20


@pytest.mark.parametrize("use_mmsg", MODES)
def test_the_intake_names_refused_senders(use_mmsg, caplog):
    """Both ways of reading (recvmmsg and the event loop's transport) tell who was refused:
    each sender once at first, then a summary per interval, and once more at close."""
    caplog.set_level(logging.WARNING, "collector.intake.refused")

    async def run():
        got: list = []
        intake = Intake(["127.0.0.1:0"], got.extend, ["127.0.0.3/32"], batch_size=8, delay=0.01,
                        use_mmsg=use_mmsg)
        intake.refusals = Refusals(interval=0.2)
        port = int((await intake.start())[0].rsplit(":", 1)[1])
        senders = []
        for host in ("127.0.0.1", "127.0.0.2", "127.0.0.3"):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((host, 0))
            senders.append(s)
        for i in range(30):
            for s in senders:
                s.sendto(b"dg-%d" % i, ("127.0.0.1", port))
            await asyncio.sleep(0.002)
        for _ in range(200):
            await asyncio.sleep(0.01)
            if intake.denied >= 60 and len(got) >= 30:
                break
        await asyncio.sleep(0.3)  # a summary is due
        summaries = [m for m in _lines(caplog) if m.startswith("refused ")]
        intake.close()
        for s in senders:
            s.close()
        return intake, got, summaries

    intake, got, summaries = asyncio.run(run())
    assert intake.denied == 60 and len(got) == 30
    lines = _lines(caplog)
    first = [m for m in lines if m.startswith("refused flows from")]
    assert sorted(m.split()[3].rstrip(":") for m in first) == ["127.0.0.1", "127.0.0.2"]
    assert summaries, lines
    counted = sum(int(m.split()[1]) for m in lines if m.startswith("refused ") and "datagram" in m.split()[2])
    assert counted + len(first) == 60
    assert all("127.0.0.3" not in m for m in lines)
