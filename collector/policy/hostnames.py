"""Names and owners for internal hosts: a static host map, and optional reverse DNS (RFC 1035 §3.5).

The host map is a TOML file the operator keeps next to the config::

    [[host]]
    match = "10.1.2.15"          # an address or a network
    name = "build-server-3"
    owner = "release team"

    [[host]]
    match = "10.1.5.0/24"
    name = "guest wifi"

    [[host]]
    match = "10.1.2.0/24"
    owner = "engineering"        # an owner for the subnet; names come from DNS or finer entries

An entry needs `match` and at least one of `name` and `owner`; a name or owner is one line of at
most 255 characters with no control character (they are shown in reports and terminals). The two fields are looked up
separately: a host's name is the `name` of the most specific entry that matches it and has one,
and likewise its owner. Only a host the map gives no name gets a reverse DNS lookup (when
`reverse_dns` is on), so naming a subnet ("guest wifi") also keeps its hosts out of DNS.

Reverse DNS never blocks the caller past its bound: lookups run on a few daemon threads with the
standard library resolver, `lookup` waits at most `timeout` and `lookup_many` at most `deadline`
in total. A lookup that is still running when the wait ends is not abandoned: its answer lands in
the cache for the next call. Answers and failures alike are cached (LRU of `cache_size`, `ttl`
seconds; failures that were timeouts for at most a minute).
"""

from __future__ import annotations

import ipaddress
import logging
import queue
import socket
import threading
import time
import tomllib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from collector.text import text_problem

log = logging.getLogger(__name__)

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
ENTRY_KEYS = ("match", "name", "owner")
MAX_NAME = 255  # characters of a name or an owner (a DNS name has at most 253)
WORKERS = 8
_TIMEOUT_TTL = 60.0  # a lookup that timed out may answer later: retry it sooner than `ttl`
_UNKNOWN = ("", "")


class HostMapError(ValueError):
    """A host map problem; `str()` is one line naming the file and key:
    `hosts.toml: host[2].match: '10.1.2.0/33': not a network`."""

    def __init__(self, path: str, key: str, message: str):
        super().__init__(f"{path}: {key}: {message}" if key else f"{path}: {message}")
        self.path = path
        self.key = key
        self.message = message


@dataclass(frozen=True, slots=True)
class HostEntry:
    key: str  # "host[0]"
    network: Network
    name: str
    owner: str


def load_host_map(path: str) -> list[HostEntry]:
    """Parse and validate a host map file; raises HostMapError (one line) on any problem."""
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except OSError as exc:
        raise HostMapError(path, "", exc.strerror or str(exc)) from None
    except tomllib.TOMLDecodeError as exc:
        raise HostMapError(path, "", f"not valid TOML: {exc}") from None
    return parse_host_map(raw, path)


def parse_host_map(raw: dict, path: str = "hosts.toml") -> list[HostEntry]:
    for key in raw:
        if key != "host":
            raise HostMapError(path, key, "unknown key (expected [[host]] tables)")
    hosts = raw.get("host", [])
    if not isinstance(hosts, list):
        raise HostMapError(path, "host", "expected a list of tables ([[host]])")
    entries: list[HostEntry] = []
    seen: dict[Network, str] = {}
    for i, table in enumerate(hosts):
        where = f"host[{i}]"
        if not isinstance(table, dict):
            raise HostMapError(path, where, "expected a table")
        for key in table:
            if key not in ENTRY_KEYS:
                raise HostMapError(path, f"{where}.{key}", "unknown key (expected match, name, owner)")
        if "match" not in table:
            raise HostMapError(path, f"{where}.match", "missing (an address or a network)")
        network = _network(table["match"], path, f"{where}.match")
        fields = {}
        for key in ("name", "owner"):
            value = table.get(key, "")
            if not isinstance(value, str):
                raise HostMapError(path, f"{where}.{key}", f"{value!r}: expected a string")
            problem = text_problem(value, MAX_NAME)  # shown in reports, tables and CSV
            if problem:
                raise HostMapError(path, f"{where}.{key}", problem)
            fields[key] = " ".join(value.split())
        if not fields["name"] and not fields["owner"]:
            raise HostMapError(path, where, "give a name, an owner or both")
        if network in seen:
            raise HostMapError(path, f"{where}.match", f"'{network}' is already in {seen[network]}")
        seen[network] = where
        entries.append(HostEntry(where, network, fields["name"], fields["owner"]))
    return entries


def _network(text, path: str, key: str) -> Network:
    if not isinstance(text, str):
        raise HostMapError(path, key, f"{text!r}: expected an address or network string")
    text = text.strip()
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError:
        pass
    try:
        loose = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise HostMapError(path, key, f"{text!r}: not {'a network' if '/' in text else 'an address'}") from None
    raise HostMapError(path, key, f"{text!r}: host bits set (did you mean {loose}?)")


class _HostMap:
    """Most-specific-match lookups: one dict per (IP version, prefix length), longest first."""

    def __init__(self, entries: list[HostEntry]):
        by_len: dict[tuple[int, int], dict[int, HostEntry]] = {}
        for e in entries:
            by_len.setdefault((e.network.version, e.network.prefixlen), {})[int(e.network.network_address)] = e
        self._levels = sorted(((v, plen, table) for (v, plen), table in by_len.items()),
                              key=lambda t: -t[1])

    def matches(self, addr: Address):
        """Entries containing `addr`, most specific first."""
        bits = 32 if addr.version == 4 else 128
        value = int(addr)
        for version, plen, table in self._levels:
            if version == addr.version:
                entry = table.get(value >> (bits - plen) << (bits - plen) if plen else 0)
                if entry is not None:
                    yield entry


def _ptr(address: str) -> str:
    return socket.gethostbyaddr(address)[0]


class HostNames:
    """(name, owner) for internal host addresses, from the host map and optionally reverse DNS.

    `resolver` (address text → name, raising OSError when there is none) and `clock` (seconds,
    for cache expiry only; waits always use the real monotonic clock) are parameters for tests.
    The default resolver is `socket.gethostbyaddr`, which follows nsswitch (/etc/hosts too).
    """

    def __init__(self, map_path: str | None = None, reverse_dns: bool = False, cache_size: int = 4096,
                 ttl: float = 3600, timeout: float = 1.0, *,
                 resolver: Callable[[str], str] = _ptr, clock: Callable[[], float] = time.monotonic,
                 workers: int = WORKERS):
        if cache_size < 1:
            raise ValueError("cache_size must be at least 1")
        if not ttl > 0 or not timeout > 0:
            raise ValueError("ttl and timeout must be positive numbers of seconds")
        self.map_path = map_path
        self.entries = load_host_map(map_path) if map_path else []
        self._map = _HostMap(self.entries)
        self.reverse_dns = reverse_dns
        self.cache_size = cache_size
        self.ttl = float(ttl)
        self.timeout = float(timeout)
        self._resolver = resolver
        self._clock = clock
        self._workers = workers
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, tuple[str, float]] = OrderedDict()  # addr -> (name, expires)
        self._pending: dict[str, threading.Event] = {}
        self._queue: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        # counters, for whoever wants to show them
        self.lookups = self.cache_hits = self.failures = self.timeouts = 0

    def lookup(self, host: str) -> tuple[str, str]:
        """(name, owner) of one host; ("", "") when unknown. Waits at most `timeout` for DNS."""
        return self.lookup_many([host], deadline=self.timeout)[host]

    def lookup_many(self, hosts: list[str], deadline: float = 3.0) -> dict[str, tuple[str, str]]:
        """(name, owner) per host. Reverse lookups run in parallel; the call returns after at
        most `deadline` seconds (and each lookup is waited for at most `timeout`), giving the
        map's answer, or ("", "") for hosts whose lookup has not finished."""
        stop = time.monotonic() + max(0.0, deadline)
        out: dict[str, tuple[str, str]] = {}
        need_dns: dict[str, tuple[str, str, threading.Event | None]] = {}
        for host in hosts:
            if host in out or host in need_dns:
                continue
            addr = _parse(host)
            if addr is None:
                out[host] = _UNKNOWN
                continue
            name = owner = ""
            for entry in self._map.matches(addr):
                name = name or entry.name
                owner = owner or entry.owner
                if name and owner:
                    break
            if name or not self.reverse_dns:
                out[host] = (name, owner)
                continue
            cached, event = self._cached_or_start(addr.compressed)
            if cached is not None:
                out[host] = (cached, owner)
            else:
                need_dns[host] = (addr.compressed, owner, event)
        stop = min(stop, time.monotonic() + self.timeout)
        for host, (text, owner, event) in need_dns.items():
            remaining = stop - time.monotonic()
            if event is not None and remaining > 0:
                event.wait(remaining)
            with self._lock:
                hit = self._cache.get(text)
            if hit is None:
                self.timeouts += 1
            out[host] = (hit[0] if hit else "", owner)
        return out

    def _cached_or_start(self, text: str) -> tuple[str | None, threading.Event | None]:
        with self._lock:
            hit = self._cache.get(text)
            if hit is not None and hit[1] > self._clock():
                self._cache.move_to_end(text)
                self.cache_hits += 1
                return hit[0], None
            if hit is not None:
                del self._cache[text]
            event = self._pending.get(text)
            if event is None:
                event = self._pending[text] = threading.Event()
                self._queue.put(text)
                self._ensure_workers()
            return None, event

    def _ensure_workers(self) -> None:
        # Daemon threads, not a ThreadPoolExecutor: a resolver call stuck in libc must not keep
        # the process from exiting (executors join their threads at interpreter exit).
        while len(self._threads) < min(self._workers, len(self._pending)):
            t = threading.Thread(target=self._work, name=f"imflow-rdns-{len(self._threads)}", daemon=True)
            self._threads.append(t)
            t.start()

    def close(self) -> None:
        """Let the lookup threads end (each finishes the lookup it is in, if any)."""
        for _ in self._threads:
            self._queue.put(None)
        self._threads = []

    def _work(self) -> None:
        while True:
            text = self._queue.get()
            if text is None:
                return
            began = time.monotonic()
            try:
                name = self._resolver(text).rstrip(".")[:MAX_NAME]  # DNS text is escaped when shown
                if _parse(name) is not None:
                    name = ""  # some resolvers echo the address back when there is no PTR
            except (OSError, UnicodeError):
                name = ""
            except Exception:  # a broken injected resolver must not kill the worker
                log.exception("reverse DNS lookup of %s failed", text)
                name = ""
            took = time.monotonic() - began
            with self._lock:
                self.lookups += 1
                if not name:
                    self.failures += 1
                ttl = min(self.ttl, _TIMEOUT_TTL) if not name and took >= self.timeout else self.ttl
                self._cache[text] = (name, self._clock() + ttl)
                self._cache.move_to_end(text)
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
                event = self._pending.pop(text, None)
            if event is not None:
                event.set()


def _parse(host: str) -> Address | None:
    try:
        addr = ipaddress.ip_address(host.strip())
    except (ValueError, AttributeError):
        return None
    if addr.version == 6 and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr
