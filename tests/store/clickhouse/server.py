"""A real clickhouse-server on loopback for tests and benchmarks: a private config, data path
and free ports under a temp dir, started in the foreground and stopped by pid.

Written for Debian's clickhouse-server 18.16 (root element `<yandex>`, see
/work/shared/reference/real-peers.md); newer servers still read it. A second user, `imflow`,
has the password PASSWORD. `start_pair` starts two
instances that both know the cluster `imflow_test` of two shards, one per instance, so a
`Distributed` table on either sees both."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field

BINARY = shutil.which("clickhouse-server") or "/usr/bin/clickhouse-server"
CLUSTER = "imflow_test"
USER, PASSWORD = "imflow", "test-secret-7f3a"

_USERS = """<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>2000000000</max_memory_usage></default></profiles>
  <users><default><password></password>
    <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
    <profile>default</profile><quota>default</quota></default>
    <imflow><password>test-secret-7f3a</password>
    <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
    <profile>default</profile><quota>default</quota></imflow></users>
  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors>
    <result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time>
  </interval></default></quotas>
</yandex>
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    directory: str
    http_port: int = field(default_factory=free_port)
    tcp_port: int = field(default_factory=free_port)
    interserver_port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def configure(self, shards: list[int]) -> None:
        """`shards`: the tcp ports of the cluster's shards, one replica each."""
        d = self.directory
        os.makedirs(os.path.join(d, "data"), exist_ok=True)
        os.makedirs(os.path.join(d, "tmp"), exist_ok=True)
        with open(os.path.join(d, "users.xml"), "w") as f:
            f.write(_USERS)
        remote = "".join(f"<shard><replica><host>127.0.0.1</host><port>{p}</port></replica></shard>"
                         for p in shards)
        config = f"""<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>{d}/server.log</log><errorlog>{d}/error.log</errorlog>
    <size>10M</size><count>1</count></logger>
  <http_port>{self.http_port}</http_port>
  <tcp_port>{self.tcp_port}</tcp_port>
  <interserver_http_port>{self.interserver_port}</interserver_http_port>
  <listen_host>127.0.0.1</listen_host>
  <max_concurrent_queries>50</max_concurrent_queries>
  <mark_cache_size>53687091</mark_cache_size>
  <uncompressed_cache_size>53687091</uncompressed_cache_size>
  <path>{d}/data/</path>
  <tmp_path>{d}/tmp/</tmp_path>
  <user_files_path>{d}/user_files/</user_files_path>
  <format_schema_path>{d}/format_schemas/</format_schema_path>
  <users_config>{d}/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
  <remote_servers><{CLUSTER}>{remote}</{CLUSTER}></remote_servers>
</yandex>
"""
        with open(os.path.join(d, "config.xml"), "w") as f:
            f.write(config)

    def start(self, timeout: float = 30.0) -> None:
        log = open(os.path.join(self.directory, "stdout.log"), "ab")
        self.proc = subprocess.Popen([BINARY, f"--config-file={self.directory}/config.xml"],
                                     cwd=self.directory, stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"clickhouse-server exited {self.proc.returncode}: see {self.directory}")
            try:
                with urllib.request.urlopen(self.url + "/ping", timeout=1) as r:
                    if r.read().strip() == b"Ok.":
                        return
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"clickhouse-server did not answer on {self.url} in {timeout:g} s")

    def stop(self, timeout: float = 20.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def query(self, sql: str) -> str:
        req = urllib.request.Request(self.url + "/", data=sql.encode())
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.read().decode()


def start_pair(directory: str) -> list[Server]:
    """Two instances, each one shard of the cluster CLUSTER."""
    servers = [Server(os.path.join(directory, f"ch{i}")) for i in range(2)]
    for s in servers:
        s.configure([x.tcp_port for x in servers])
    started = []
    try:
        for s in servers:
            s.start()
            started.append(s)
    except BaseException:
        for s in started:
            s.stop()
        raise
    return servers
