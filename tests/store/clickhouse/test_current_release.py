"""The same SQL on a current ClickHouse release: the writer's DDL, inserts, retention and every
reader query run on chDB (ClickHouse's engine in process, a 2026 release) and must give the
SQLite store's answers for the same rows. Only the transport is swapped (no current server
binary can be fetched here): statements go to chDB instead of over HTTP; the rows are
serialised by aiochclient as on the wire. The real 18.16 server is tested in the other modules."""

from __future__ import annotations

import asyncio
import json
import random

import pytest

from collector.store import BinRow, IfRow, Store
from collector.store.clickhouse import ClickHouseReader, ClickHouseStore
from collector.store.clickhouse import client as ch_client
from collector.store.clickhouse import reader as ch_reader
from collector.store.errors import StoreError
from collector.store.reader import SqliteReader
from collector.store.rows import AuditRow

chdb_session = pytest.importorskip("chdb.session")

T0 = 1_780_000_000 - 1_780_000_000 % 86400
NOW = T0 + 7200


class ChdbConnection:
    """Connection's interface over one chDB session."""

    session = None

    def __init__(self, urls, database, timeout=10.0):
        self.urls, self.url, self.database = urls, "chdb", database

    async def open(self):
        pass

    async def close(self):
        pass

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        pass

    def _run(self, sql, fmt="CSV"):
        try:
            return self.session.query(sql, fmt)
        except Exception as exc:
            code = ch_client._code(exc)
            reason = "missing" if code in ch_client._MISSING_CODES else "error"
            raise StoreError(f"chdb: {exc}", reason=reason, path="chdb") from None

    async def execute(self, sql, action=""):
        self._run(sql)

    async def fetch(self, sql, action=""):
        out = self._run(sql + " SETTINGS output_format_json_quote_64bit_integers = 0", "JSONCompact")
        text = str(out)
        return [tuple(r) for r in json.loads(text)["data"]] if text.strip() else []

    async def insert(self, table, columns, rows, action=""):
        if rows:
            from aiochclient.client import rows2ch

            self._run(f"INSERT INTO {table} ({', '.join(columns)}) VALUES " + rows2ch(*rows).decode())


@pytest.fixture
def chdb(tmp_path, monkeypatch):
    ChdbConnection.session = chdb_session.Session(str(tmp_path / "chdb"))
    monkeypatch.setattr(ch_reader, "Connection", ChdbConnection)
    yield
    ChdbConnection.session.close()


def traffic(seed: int):
    rnd = random.Random(seed)
    hosts = ["10.0.0.1", "10.0.0.2", "192.168.1.9", "fd00::5", ""]
    rows = [BinRow(T0 + rnd.randrange(0, 7200, 60), rnd.choice(["192.0.2.1", "2001:db8::1"]),
                   rnd.choice(["msn", "bittorrent", "sip", "other"]), "im", rnd.choice(hosts),
                   rnd.randrange(1, 10**6), rnd.randrange(1, 1000), rnd.randrange(1, 10), rnd.random() < 0.1,
                   rnd.choice(["port", "prefix", "dns", ""]))
            for _ in range(400)]
    if_rows = [IfRow(T0 + rnd.randrange(0, 7200, 60), "192.0.2.1", rnd.randrange(1, 4), rnd.choice(["", "Gi0/1"]),
                     rnd.choice(["in", "out"]), rnd.choice(["msn", "sip"]), "im", rnd.randrange(1, 10**5), 3, 1)
               for _ in range(100)]
    audit = [AuditRow(T0 + i * 7.25, T0 + i * 7.25 + rnd.randrange(0, 60000) / 1000, "192.0.2.1",
                      rnd.choice(hosts[:4]), rnd.choice(["198.51.100.7", "198.51.100.200", "203.0.113.9", "2001:db8:5::9"]),
                      rnd.randrange(1024, 65536), rnd.choice([1863, 5060, 6881]), rnd.choice([6, 17]),
                      rnd.choice(["msn", "sip", "bittorrent"]), "im", rnd.randrange(1, 10**6), rnd.randrange(1, 99),
                      1, 2, "out") for i in range(300)]
    return rows, if_rows, audit


def test_current_release_gives_the_sqlite_answers(tmp_path, chdb):
    batches = [traffic(seed) for seed in (1, 2)]

    async def write():
        sq = Store(str(tmp_path / "x.db"), clock=lambda: NOW, audit_max_age=10 * 365 * 86400.0)
        ch = ClickHouseStore(["http://chdb"], database="imflow", clock=lambda: NOW)
        ch.conn = ChdbConnection(None, "imflow")
        for s in (sq, ch):
            await s.start()
            for rows, if_rows, audit in batches:
                await s.write(rows, if_rows, audit)
            await s.prune()
            await s.stop()

    asyncio.run(write())
    sq, ch = SqliteReader(str(tmp_path / "x.db")), ClickHouseReader(["http://chdb"], database="imflow")

    def key(rows):
        return sorted(json.dumps(r, sort_keys=True) for r in rows)

    for kw in ({"by": ("service",)}, {"by": ("host", "service"), "limit": 5}, {"by": ("minute",), "limit": 3},
               {"by": ("hour", "service"), "limit": 2}, {"by": ("exporter",), "host": ["10.0.0.0/8", "fd00::/8"]},
               {"by": ("interface", "direction")}, {"by": ("service", "method"), "limit": None},
               {"by": ("method",), "exporter": ["2001:db8::1"]}, {"by": ("category", "host"), "service": ["msn"], "limit": None}):
        assert ch.top(T0, T0 + 7200, now=NOW, **kw) == sq.top(T0, T0 + 7200, now=NOW, **kw), kw
    assert ch.usage(T0, None, now=NOW) == sq.usage(T0, None, now=NOW)
    hostile = ["msn' OR 1=1 --", "a\\'b\n\x00c", "sip"]  # filters are data, never SQL
    for kw in ({"service": hostile}, {"exporter": hostile}, {"category": ["im')--"]}):
        assert ch.top(T0, None, now=NOW, by=("service",), **kw) == sq.top(T0, None, now=NOW, by=("service",), **kw)
    assert ch.flows(None, None, service=hostile, limit=None) and \
        key(ch.flows(None, None, service=hostile, limit=None)) == key(sq.flows(None, None, service=hostile, limit=None))
    assert ch.usage(T0, None, now=NOW, violations_only=True) == sq.usage(T0, None, now=NOW, violations_only=True)
    assert ch.time_range() == sq.time_range()
    assert ch.stored_services() == sq.stored_services()
    assert ch.has_traffic(T0, T0 + 60, now=NOW) and not ch.has_traffic(T0 - 600, T0, now=NOW)
    assert ch.report_rows(T0, None, NOW)[:2] == sq.report_rows(T0, None, NOW)[:2]
    assert sorted(ch.report_rows(T0, None, NOW)[2]) == sorted(sq.report_rows(T0, None, NOW)[2])
    assert ch.report_rows(T0, None, NOW)[3] == sq.report_rows(T0, None, NOW)[3]

    assert key(ch.flows(None, None, limit=None)) == key(sq.flows(None, None, limit=None))
    for kw in ({"by": ("peer-net",)}, {"by": ("service", "proto")}, {"by": ("host",), "limit": 2},
               {"host": ["10.0.0.0/8"], "sort": "bytes", "limit": 5}, {"port": ["1863"], "limit": None},
               {"peer": ["198.51.100.0/24", "2001:db8::/32"], "proto": ["tcp"], "limit": None},
               {"sort": "duration", "limit": 7}):
        a, b = ch.flows(None, None, **kw), sq.flows(None, None, **kw)
        # the order, by what it is sorted on (rows tied on it come in arrival order from SQLite)
        sort = "bytes" if "by" in kw else kw.get("sort", "start")
        on = {"duration": lambda r: round(r["end"] - r["start"], 3)}.get(sort, lambda r: r[sort])
        assert [on(r) for r in a] == [on(r) for r in b], kw
        if kw.get("limit") is None or "by" in kw:
            assert key(a) == key(b), kw
