"""The HTTP connection to ClickHouse: aiochclient (over aiohttp) is this package's only client,
and this module its only user (docs/stores.md says why that library).

`Connection` tries the configured URLs in order and stays on the first that answers; every
failure becomes a StoreError whose `reason` the daemon counts: "unreachable" (refused, timed
out, a 5xx), "missing" (a table or database that is not there: ClickHouse codes 60 and 81),
"schema", or "error" (anything else the server refused). Credentials come from the environment
(IMFLOW_CLICKHOUSE_USER, IMFLOW_CLICKHOUSE_PASSWORD) and are never logged.

Values go into SQL only through `quote` (strings) or as integers: ClickHouse's string literal
escapes backslash and quote, and `quote` escapes every control character too.
"""

from __future__ import annotations

import logging
import os
import re

import aiohttp
from aiochclient import ChClient, ChClientError

from collector.store.errors import StoreError

log = logging.getLogger(__name__)

USER_ENV = "IMFLOW_CLICKHOUSE_USER"
PASSWORD_ENV = "IMFLOW_CLICKHOUSE_PASSWORD"
_MISSING_CODES = {60, 81}  # UNKNOWN_TABLE, UNKNOWN_DATABASE
_CODE = re.compile(r"Code: (\d+)")


def quote(text: str) -> str:
    """A ClickHouse string literal for any text."""
    out = []
    for ch in str(text):
        if ch in "\\'":
            out.append("\\" + ch)
        elif ch < " " or ch == "\x7f":
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return "'" + "".join(out) + "'"


def quote_list(values) -> str:
    """`(a, b, …)` for `IN`; an empty list gives a tuple that matches nothing."""
    values = list(values)
    return "(" + ", ".join(map(quote, values)) + ")" if values else "('\\x00imflow-none')"


def _code(exc: BaseException) -> int | None:
    m = _CODE.search(str(exc))
    return int(m.group(1)) if m else None


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return (text[:300] + "…") if len(text) > 300 else text or type(exc).__name__


class Connection:
    """An HTTP session to the first answering server of `urls`. Use as `async with`, or call
    `open()` and `close()`."""

    def __init__(self, urls: list[str], database: str, timeout: float = 10.0):
        if not urls:
            raise ValueError("urls: at least one ClickHouse HTTP URL")
        self.urls = list(urls)
        self.database = database
        self.timeout = timeout
        self.user = os.environ.get(USER_ENV) or None
        self.password = os.environ.get(PASSWORD_ENV) or None
        self._session: aiohttp.ClientSession | None = None
        self._index = 0  # the URL in use

    @property
    def url(self) -> str:
        return self.urls[self._index]

    async def open(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def __aenter__(self) -> Connection:
        await self.open()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    def _client(self, url: str) -> ChClient:
        # database "default": statements name imflow's database themselves (it may not exist yet)
        return ChClient(self._session, url=url, user=self.user, password=self.password)

    async def _run(self, action: str, call):
        """`call(client)` on the URL in use, then on the others in turn when it is unreachable."""
        await self.open()
        last: StoreError | None = None
        for step in range(len(self.urls)):
            index = (self._index + step) % len(self.urls)
            try:
                result = await call(self._client(self.urls[index]))
            except ChClientError as exc:
                code = _code(exc)
                if code in _MISSING_CODES:
                    raise StoreError(f"cannot {action} on {self.urls[index]}: {_short(exc)}",
                                     reason="missing", path=self.urls[index]) from None
                if code is None and "502" not in str(exc) and "503" not in str(exc):
                    last = StoreError(f"cannot {action} on {self.urls[index]}: {_short(exc)}",
                                      reason="unreachable", path=self.urls[index])
                    continue
                raise StoreError(f"cannot {action} on {self.urls[index]}: {_short(exc)}",
                                 reason="error", path=self.urls[index]) from None
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                what = "timed out" if isinstance(exc, TimeoutError) else _short(exc)
                last = StoreError(f"cannot {action} on {self.urls[index]}: {what}",
                                  reason="unreachable", path=self.urls[index])
                continue
            if index != self._index:
                log.warning("clickhouse: now using %s (%s did not answer)", self.urls[index], self.url)
                self._index = index
            return result
        raise last  # every URL failed

    async def execute(self, sql: str, action: str = "run a statement") -> None:
        await self._run(action, lambda c: c.execute(sql))

    async def fetch(self, sql: str, action: str = "read") -> list[tuple]:
        async def call(c: ChClient) -> list[tuple]:
            return [tuple(r[i] for i in range(len(r))) for r in await c.fetch(sql)]
        return await self._run(action, call)

    async def insert(self, table: str, columns: tuple[str, ...], rows: list[tuple],
                     action: str = "insert") -> None:
        if rows:
            sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES"
            await self._run(action, lambda c: c.execute(sql, *rows))
