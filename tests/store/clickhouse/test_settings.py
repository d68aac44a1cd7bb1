"""The ClickHouse settings: one-line errors naming the key, credentials from the environment
only (and never in a message), --db meaning SQLite whatever the backend."""

from __future__ import annotations

import subprocess
import sys

import pytest

from collector import config as C
from collector.store.clickhouse import ClickHouseReader, ClickHouseStore
from collector.store.errors import StoreError
from collector.store.reader import SqliteReader, open_reader
from tests.store.clickhouse.server import PASSWORD, USER


@pytest.mark.parametrize(("text", "message"), [
    ('[store]\nbackend = "postgres"', "store.backend: 'postgres': expected one of sqlite, clickhouse"),
    ('[store.clickhouse]\nurls = ["ftp://x"]', "store.clickhouse.urls[0]: 'ftp://x': expected an HTTP URL"),
    ('[store.clickhouse]\ndatabase = "imflow; DROP"', "store.clickhouse.database: 'imflow; DROP': expected a name"),
    ('[store.clickhouse]\ncluster = "1x"', "store.clickhouse.cluster: '1x': expected a name"),
    ('[store.clickhouse]\npassword = "x"', "store.clickhouse.password: unknown key"),
    ('[store.clickhouse]\nmax_buffer_rows = 10', "store.clickhouse.max_buffer_rows: 10: out of range"),
])
def test_bad_settings_are_one_line_naming_the_key(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text + "\n")
    p = subprocess.run([sys.executable, "-m", "collector", "check-config", str(path)], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 2
    assert message in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_db_flag_means_sqlite_whatever_the_backend(tmp_path, monkeypatch):
    cfg = C.validate({"store": {"backend": "clickhouse"}})
    assert isinstance(open_reader(cfg, str(tmp_path / "x.db")), SqliteReader)
    monkeypatch.setenv("IMFLOW_DB", str(tmp_path / "y.db"))
    assert isinstance(open_reader(cfg), SqliteReader)
    monkeypatch.delenv("IMFLOW_DB")
    assert isinstance(open_reader(cfg), ClickHouseReader)


def test_credentials_come_from_the_environment_and_stay_out_of_messages(pair, database, monkeypatch):
    import asyncio

    node = pair[0]

    async def start(s):
        await s.start()
        await s.stop()

    monkeypatch.setenv("IMFLOW_CLICKHOUSE_USER", USER)
    monkeypatch.setenv("IMFLOW_CLICKHOUSE_PASSWORD", PASSWORD)
    asyncio.run(start(ClickHouseStore([node.url], database=database)))
    assert ClickHouseReader([node.url], database=database).time_range() is None
    monkeypatch.setenv("IMFLOW_CLICKHOUSE_PASSWORD", "wrong-" + PASSWORD)
    with pytest.raises(StoreError) as exc:
        ClickHouseReader([node.url], database=database).time_range()
    assert PASSWORD not in str(exc.value) and "wrong-" not in str(exc.value)
    assert "Code: 193" in str(exc.value) or "password" in str(exc.value).lower()


def test_an_unknown_cluster_stops_the_start(pair, database):
    import asyncio

    with pytest.raises(StoreError, match="cluster 'nosuch' not found"):
        asyncio.run(ClickHouseStore([pair[0].url], database=database, cluster="nosuch").start())


def test_a_server_that_does_not_answer_does_not_stop_the_start():
    import asyncio

    from tests.store.clickhouse.server import free_port

    async def run():
        s = ClickHouseStore([f"http://127.0.0.1:{free_port()}"], database="imflow", timeout=1)
        await s.start()  # logged; rows wait in memory
        await s.stop()

    asyncio.run(run())
