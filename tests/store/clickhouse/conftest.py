"""Two real clickhouse-server instances on loopback, one shard each of the cluster `imflow_test`,
for the whole module (about half a second to start); stopped by pid at the end. Each test
uses a database of its own."""

from __future__ import annotations

import itertools
import shutil

import pytest

from tests.store.clickhouse import server

_names = itertools.count()


@pytest.fixture(scope="package")
def pair(tmp_path_factory):
    if not shutil.which("clickhouse-server"):
        pytest.skip("clickhouse-server not installed (scripts/install-test-deps)")
    servers = server.start_pair(str(tmp_path_factory.mktemp("clickhouse")))
    try:
        yield servers
    finally:
        for s in servers:
            s.stop()


@pytest.fixture
def database(pair):
    """A fresh database name (dropped on both servers at the end)."""
    name = f"t{next(_names)}"
    yield name
    for s in pair:
        if s.proc is not None:
            s.query(f"DROP DATABASE IF EXISTS {name}")
