"""The event loop's turn at the GIL while a flush's threads work (issue 21, docs/design.md §5).

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

import asyncio
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

MOST = 0.02  # seconds a flush's step waits at most for the loop's batch to end
NICE = 10  # the flush's and the store's threads' niceness, added to the process's


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


def background(native_id: int | None = None) -> bool:
    """Make a thread of this process (the calling one by default) NICE steps nicer, so the
    event loop's thread gets a core first when it wakes. With two cores, a flush's thread
    sorting columns (NumPy, no GIL) and SQLite's thread adding rows took both, and each wakeup
    of the loop waited in the run queue behind them. Linux only (elsewhere a thread id given
    to setpriority would name a process); a thread cannot become less nice again without
    privileges, so only threads that do nothing but background work are made nicer.
    -> whether it was done."""
    if not sys.platform.startswith("linux"):
        return False
    tid = threading.get_native_id() if native_id is None else native_id
    try:
        os.setpriority(os.PRIO_PROCESS, tid, min(os.getpriority(os.PRIO_PROCESS, tid) + NICE, 19))
    except OSError:
        return False
    return True


_pool: tuple[int, ThreadPoolExecutor] | None = None  # (the process it belongs to, the pool)
_pool_lock = threading.Lock()


async def in_background(fn, *args):
    """`fn(*args)` in the flush's thread (one, made nicer: `background`), off the event loop:
    what `asyncio.to_thread` does, on a thread of lower priority than the loop's. A forked
    worker makes its own (the parent's thread is not in it)."""
    global _pool
    with _pool_lock:
        if _pool is None or _pool[0] != os.getpid():
            _pool = (os.getpid(), ThreadPoolExecutor(1, thread_name_prefix="imflow-flush", initializer=background))
        pool = _pool[1]
    return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)
