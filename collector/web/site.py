"""What every page needs: the store's reader, the catalogue and policy, the limits, and the
one place queries run. The reader (`collector.store.reader`, the same one `imflow top` uses) is
synchronous; its calls run on a small thread pool, at most `web.max_queries` at once, and a
page whose queries take longer than `web.query_timeout` is answered 503 (the query finishes on
its thread and holds its slot until then, so slow queries cannot pile up)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class TooSlow(Exception):
    """The page's queries did not finish within web.query_timeout."""


@dataclass
class Limits:
    max_rows: int = 500
    query_timeout: float = 15.0
    max_queries: int = 2

    @classmethod
    def from_config(cls, cfg) -> Limits:
        return cls(cfg.get("web.max_rows"), cfg.get("web.query_timeout"), cfg.get("web.max_queries"))


@dataclass
class Site:
    reader: Any  # collector.store.reader.Reader
    catalogue: Any
    policy: Any
    limits: Limits = field(default_factory=Limits)
    # (exporter, interface name) -> link speed in bits/s, when an SNMP poller knows it
    speeds: Callable[[str, str], int | None] | None = None
    # (start, end, fmt) -> the audit report as text ("html", "csv", "json"); None: no report page
    report: Callable[[float | None, float | None, str], str] | None = None
    clock: Callable[[], float] = time.time
    # in the daemon: () -> (catalogue, policy) in force now, so a reload (SIGHUP) reaches the page
    live: Callable[[], tuple[Any, Any]] | None = None

    def __post_init__(self):
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._slots: asyncio.Semaphore | None = None

    def refresh(self) -> None:
        """Take the daemon's catalogue and policy of now (called once per request)."""
        if self.live is not None:
            self.catalogue, self.policy = self.live()

    @property
    def categories(self) -> tuple[str, ...]:
        return tuple(c for c in self.catalogue.categories if c != "other") + ("other",)

    def deadline(self) -> float:
        return time.monotonic() + self.limits.query_timeout

    async def run(self, deadline: float, fn: Callable, *args, **kw):
        """`fn(*args, **kw)` on the query pool, within the page's deadline (TooSlow after)."""
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(self.limits.max_queries,
                                                               thread_name_prefix="imflow-web")
            self._slots = asyncio.Semaphore(self.limits.max_queries)
        try:
            await asyncio.wait_for(self._slots.acquire(), max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            raise TooSlow() from None
        try:
            future = asyncio.get_running_loop().run_in_executor(self._pool, functools.partial(fn, *args, **kw))
        except BaseException:
            self._slots.release()
            raise
        future.add_done_callback(lambda _: self._slots.release())
        try:
            return await asyncio.wait_for(asyncio.shield(future), max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            future.add_done_callback(lambda f: f.exception())  # retrieved: no "never retrieved" log
            raise TooSlow() from None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
