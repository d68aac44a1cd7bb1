"""Counter widening and speed choice, table-driven (the agents' tests cover them end to end)."""

from __future__ import annotations

import pytest

from collector.snmp.poller import _speed, _Track, _unwrap

W = 2**32


def cols(**values):
    names = ("in32", "out32", "in64", "out64", "speed", "high_speed")
    return {n: ({1: values[n]} if n in values else {}) for n in names}


@pytest.mark.parametrize("previous, now, restarted, expected", [
    (None, dict(in32=10, out32=20), False, (32, 10, 20)),  # first sight: as reported
    (_Track(32, 10, 20, 10, 20), dict(in32=15, out32=20), False, (32, 15, 20)),
    (_Track(32, W - 10, 5, W - 10, 5), dict(in32=6, out32=5), False, (32, W + 6, 5)),  # wrap
    (_Track(32, W - 10, 5, 3 * W - 10, 5), dict(in32=6, out32=7), False, (32, 3 * W + 6, 7)),  # 3rd wrap
    (_Track(32, 500, 500, W + 500, 500), dict(in32=100, out32=100), True, (32, 100, 100)),  # restart
    # sysUpTime went back but this counter kept growing (the agent, not the box, restarted)
    (_Track(32, 500, 500, W + 500, 500), dict(in32=700, out32=100), True, (32, W + 700, 100)),
    (_Track(64, 500, 500, 500, 500), dict(in32=100, out32=100), False, (32, 100, 100)),  # width changed
    (_Track(32, 5, 5, W + 5, 5), dict(in32=1, out32=1, in64=7 * W, out64=9), False, (64, 7 * W, 9)),
    (None, dict(), False, (0, 0, 0)),  # no counters at all
])
def test_unwrap(previous, now, restarted, expected):
    track = _unwrap(cols(**now), 1, previous, restarted)
    assert (track.bits, track.total_in, track.total_out) == expected


@pytest.mark.parametrize("values, expected", [
    (dict(speed=1_000_000_000, high_speed=1000), 1_000_000_000),
    (dict(speed=4_294_967_295, high_speed=10000), 10_000_000_000),  # ifSpeed saturated
    (dict(speed=1_544_000, high_speed=2), 1_544_000),  # T1: ifHighSpeed rounds, ifSpeed exact
    (dict(speed=100_000, high_speed=0), 100_000),
    (dict(speed=0, high_speed=400), 400_000_000),  # ifSpeed unset, ifHighSpeed known
    (dict(speed=10_000_000), 10_000_000),
    (dict(high_speed=25000), 25_000_000_000),
    (dict(), 0),
])
def test_speed(values, expected):
    assert _speed(cols(**values), 1) == expected
