"""collector.daemon.tuning.tune_malloc: one malloc arena for every thread (glibc, Linux).

A thread that allocates while the main thread holds the arena gets a 64 MiB-aligned heap of
its own by default; after tune_malloc() it must not. Each case runs in a fresh interpreter (the
setting holds for the process) and reads its own /proc/self/smaps: the resident octets of
64 MiB-aligned anonymous mappings, before and after a second thread allocated 16 MiB.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc on Linux")

PROBE = r"""
import re, sys, threading
from collector.daemon.tuning import tune_malloc
ok = tune_malloc(arenas=int(sys.argv[1]))

def thread_arenas():
    total, aligned = 0, False
    for line in open("/proc/self/smaps"):
        m = re.match(r"^([0-9a-f]+)-([0-9a-f]+) \S+ \S+ \S+ \S+\s*(\S*)", line)
        if m:
            lo, hi = int(m.group(1), 16), int(m.group(2), 16)
            aligned = not m.group(3) and lo % (64 << 20) == 0 and (hi - lo) % (64 << 20) == 0
        elif line.startswith("Rss:") and aligned:
            total += int(line.split()[1]) * 1024
    return total

hold = threading.Lock()
def work():
    with hold:  # the main thread holds the arena's lock often; a thread allocating beside it
        chunks = [bytearray(64 << 10) for _ in range(256)]  # 16 MiB, below the mmap threshold
        print(ok, thread_arenas() - before)
        del chunks

before = thread_arenas()
busy = [bytearray(1 << 10) for _ in range(1000)]
t = threading.Thread(target=work)
t.start()
while t.is_alive():
    busy.append(bytearray(1 << 10)); busy.pop(0)
t.join()
"""


def _grown(arenas: int) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", PROBE, str(arenas)], check=True, capture_output=True,
                         text=True, timeout=60).stdout.split()
    return out[0], int(out[1])


def test_threads_share_the_main_arena():
    ok, grown = _grown(1)
    assert ok == "True"
    assert grown < 1 << 20, f"a thread arena of {grown} octets after tune_malloc()"


def test_the_probe_sees_a_thread_arena_without_it():
    """The probe can fail: with glibc's default (arenas=0 leaves it), the thread's 16 MiB lands
    in an arena of its own."""
    _, grown = _grown(0)
    assert grown >= 8 << 20, f"only {grown} octets in thread arenas"


TRIM = r"""
from collector.daemon.tuning import trim_heap, tune_malloc

def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024

tune_malloc()
chunks = [bytearray(64 << 10) for _ in range(512)]  # 32 MiB in the heap (below the mmap threshold)
full = rss()
del chunks
kept = rss()  # the raised trim threshold keeps freed pages resident
trim_heap()
print(full, kept, rss())
"""


def test_trim_heap_gives_freed_pages_back():
    full, kept, trimmed = map(int, subprocess.run([sys.executable, "-c", TRIM], check=True, capture_output=True,
                                                  text=True, timeout=60).stdout.split())
    assert kept > full - (8 << 20), "the freed chunks were returned before the trim: the probe shows nothing"
    assert trimmed < kept - (24 << 20), (full, kept, trimmed)


# collector.daemon.tuning.leave_out_tls: a daemon that makes no TLS connection never loads OpenSSL.
# Each case is a fresh interpreter that validates a configuration, asks leave_out_tls, and then
# does what the daemon does next: imports asyncio and runs a loop. It prints whether ssl was left
# out, whether `import ssl` still works, and whether libssl is mapped into the process.
TLS_PROBE = r"""
import json, sys
from collector import config
from collector.daemon.tuning import leave_out_tls
left = leave_out_tls(config.validate(json.loads(sys.argv[1])))
import asyncio
asyncio.run(asyncio.sleep(0))
try:
    import ssl
    importable = True
except ImportError:
    importable = False
mapped = any("libssl" in line for line in open("/proc/self/maps"))
print(left, importable, mapped)
"""


def _tls(values: dict) -> list[str]:
    import json

    return subprocess.run([sys.executable, "-c", TLS_PROBE, json.dumps(values)], check=True, capture_output=True,
                          text=True, timeout=60).stdout.split()


@pytest.mark.parametrize("values", [
    {},
    {"store": {"backend": "clickhouse", "clickhouse": {"urls": ["http://127.0.0.1:8123"]}}},
    {"store": {"clickhouse": {"urls": ["https://ch.example:8443"]}}},  # the SQLite store: the URL is unused
], ids=["default", "clickhouse-http", "sqlite-with-https-url"])
def test_no_tls_use_leaves_openssl_out(values):
    assert _tls(values) == ["True", "False", "False"]


@pytest.mark.parametrize("values", [
    {"metrics": {"listen": "127.0.0.1:9000"}},  # prometheus_client imports ssl whatever it serves
    {"store": {"backend": "clickhouse", "clickhouse": {"urls": ["http://127.0.0.1:8123", "https://ch.example"]}}},
], ids=["metrics", "clickhouse-https"])
def test_a_tls_user_keeps_ssl(values):
    assert _tls(values) == ["False", "True", "True"]
