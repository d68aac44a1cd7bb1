"""The event loop's turn at the GIL while a flush's threads work (issue 21, docs/design.md §10).

A batch on the loop is hundreds of NumPy calls, and NumPy lets go of the GIL inside most of
them. When a flush's thread is waiting for the GIL, it takes it at each of those moments, and
the loop gets it back only when that thread lets go: after Python's switch interval, or after
the C call it is in (a `tolist`, a dict update over a chunk of keys: milliseconds). A batch of
8 ms of the loop's CPU then took 40-110 ms at 1M bins with traffic arriving, the longest loop
stalls of the flush (bench/flush_stall.py; the loop's thread was waiting, not running).

So the flush's threads ask for their turn (`LoopTurns.wait`) before each step of Python work
(a chunk of parameter tuples, of series keys, of host names): while the loop is in a batch,
they wait for its end, at most `most` seconds (a loop that is never idle, at the intake's
limit, still lets the flush go on, a step per `most`). Their NumPy work on whole columns goes
on meanwhile (it runs without the GIL, on the other core)."""

from __future__ import annotations

import threading
import time

MOST = 0.02  # seconds a flush's step waits at most for the loop's batch to end


def no_turns() -> None:
    """The `pause` of work that runs with no event loop to give turns to (tests, tools): the
    default wherever a flush's steps take one."""


class LoopTurns:
    """`busy()` / `idle()` around each batch on the event loop; `wait()` in the flush's threads."""

    def __init__(self, most: float = MOST):
        self.most = most
        self._idle = threading.Event()
        self._idle.set()
        self.waits = 0  # steps that found the loop in a batch
        self.waited = 0.0  # seconds they waited, together

    def busy(self) -> None:
        self._idle.clear()

    def in_batch(self) -> bool:
        return not self._idle.is_set()

    def idle(self) -> None:
        self._idle.set()

    def wait(self) -> None:
        if self._idle.is_set():
            return
        t = time.perf_counter()
        self._idle.wait(self.most)
        self.waits += 1
        self.waited += time.perf_counter() - t
