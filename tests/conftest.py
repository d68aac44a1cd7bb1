"""Fixtures shared by the daemon, metrics and workers tests."""

from __future__ import annotations

import pytest

from tests.support import pcapgen as pg
from tests.support.scenario import IM_SESSIONS, T0


@pytest.fixture(scope="session")
def sessions(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sessions")
    extra = [pg.Session("10.5.5.5", "198.51.100.80", 50001, 8074, pg.TCP,
                        [(0, 60), (1, 60), (0, 300), (1, 700)], start=T0 + 6),
             pg.Session("10.5.5.6", "10.9.9.9", 50002, 5061, pg.TCP,  # both ends internal
                        [(0, 60), (1, 60), (0, 500), (1, 900)], start=T0 + 6.5),
             pg.Session("198.51.100.1", "203.0.113.9", 40000, 5060, pg.UDP,  # no internal end
                        [(0, 400), (1, 400)], start=T0 + 7)]
    truth = pg.write_sessions(tmp / "s.pcap", IM_SESSIONS + extra)
    return tmp / "s.pcap", truth


@pytest.fixture(autouse=True)
def no_daemon_left_running():
    """A test that fails before it stops its `imflow run` must not leave the daemon behind: the
    ones it started and left are killed, by pid, when it ends."""
    from tests.daemon.test_daemon import Daemon

    yield
    while Daemon.started:
        d = Daemon.started.pop()
        if d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait(timeout=30)
