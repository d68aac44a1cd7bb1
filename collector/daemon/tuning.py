"""Process-level tuning for the data path: glibc's malloc and the garbage collector (Linux/glibc
only; a no-op elsewhere), and OpenSSL left out of a daemon that makes no TLS connection
(`leave_out_tls`, at the end).

glibc serves allocations above a dynamic threshold (128 KiB at first) with fresh mmap()s and
returns them at free(), so every batch-sized NumPy array is page-faulted in anew: measured
here, that doubled the cost of decoding NetFlow v5 (3.1M -> 6.5M flows/s with this tuning,
bench/decode.py). Raising the mmap and trim thresholds keeps those pages in the heap for reuse;
the price is that up to `trim` bytes of freed memory stay resident.

One malloc arena for every thread (M_ARENA_MAX 1): by default glibc gives threads that allocate
at once arenas of their own (a 64 MiB heap each), and the store thread's grew to 7-18 MiB while
the main heap held that much freed and unused (start-up's temporaries, the last batch's); with
one arena the threads reuse it: peak RSS 81 -> 75 MiB at 40,000 v9 datagrams/s, 86 -> 77 MiB at
60,000 (bench/ingest/memory.py; docs/performance.md, "Memory"). The data path is one thread,
so the shared arena's lock is rarely contended.
"""

from __future__ import annotations

import ctypes
import gc
import sys

M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8


def _libc() -> ctypes.CDLL:
    """The C library the interpreter runs on, by the symbols already loaded (dlopen of no
    file): `ctypes.util.find_library` would run `ldconfig -p` and import tempfile, shutil and
    random for it. Where the library has no mallopt the caller's AttributeError says so."""
    return ctypes.CDLL(None)


def tune_malloc(mmap_threshold: int = 256 << 20, trim: int = 512 << 20, top_pad: int = 64 << 20,
                arenas: int = 1) -> bool:
    """Returns True when glibc accepted the settings."""
    try:
        mallopt = _libc().mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    ok = mallopt(M_MMAP_THRESHOLD, mmap_threshold) == 1
    ok &= mallopt(M_TRIM_THRESHOLD, trim) == 1
    ok &= mallopt(M_TOP_PAD, top_pad) == 1
    ok &= mallopt(M_ARENA_MAX, arenas) == 1
    return bool(ok)


def tune_gc(threshold: int = 20_000) -> None:
    """After start-up: move every object alive now (catalogue, prefix tables, templates) out
    of the cyclic collector's reach, and let it run less often. The data path allocates a few
    thousand short-lived tuples per batch and makes no reference cycles of its own; with the
    defaults, collections took about 4 % of the daemon's CPU under load, most of it in
    full passes over the start-up objects."""
    gc.collect()
    gc.freeze()
    _, g1, g2 = gc.get_threshold()
    gc.set_threshold(threshold, g1, g2)
    trim_heap()


def trim_heap() -> bool:
    """Give the kernel back the free pages of the malloc heap (glibc's malloc_trim). Once, after
    start-up: building the classification (15 MiB of RSS) leaves most of it as freed
    temporaries that the raised trim threshold would keep resident for good; 7 MiB of them are
    whole free pages (RSS at start 60 -> 53 MiB; under load the batches take pages back as they
    need them). Returns True when glibc released any."""
    try:
        trim = _libc().malloc_trim
    except (OSError, AttributeError):
        return False
    trim.argtypes = [ctypes.c_size_t]
    return trim(0) == 1


def needs_tls(cfg) -> bool:
    """Whether a daemon on `cfg` may import `ssl`: prometheus_client imports it unconditionally
    (`metrics.listen`), and the ClickHouse store over https makes TLS connections."""
    return bool(cfg.get("metrics.listen")) or (
        cfg.get("store.backend") == "clickhouse"
        and any(url.startswith("https:") for url in cfg.get("store.clickhouse")["urls"]))


def leave_out_tls(cfg=None) -> bool:
    """Keep OpenSSL out of a process that has no use for it: one whose configuration `cfg` does
    not `needs_tls`, or, with no configuration, one that makes no TLS connection whatever it is (a
    `--workers` worker). asyncio imports `ssl` with itself, and with it libssl, libcrypto and
    OpenSSL's start: 4.8 MiB resident together with the `hashlib` that
    `collector.netflow.templates` imports only for a server name (docs/performance.md, "Memory").
    `sys.modules["ssl"] = None` is the import system's documented way to make an import fail;
    asyncio, aiohttp and http.client take it as a Python built without ssl. Must run before
    asyncio is imported; True when ssl was left out."""
    if "ssl" in sys.modules or (cfg is not None and needs_tls(cfg)):
        return False
    sys.modules["ssl"] = None
    return True
