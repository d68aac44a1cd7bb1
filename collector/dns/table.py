"""The learned-address table: address -> service, from DNS answers, for the answer's TTL plus a
grace period (docs/dns.md).

A resolver answered `web.whatsapp.com A 157.240.0.53` with TTL 60: for 60 s + `grace` a flow to
157.240.0.53 is WhatsApp's. Clients keep using an address a little past its TTL (connections
outlive it, stub caches round up), hence the grace.

Bounded: at most `max_entries` addresses, least recently learned first out (an answer seen again
moves its address to the back); TTLs are capped at `max_ttl`. Everything that moves is counted.
The clients that asked (who resolved WhatsApp) are counted per (client, service), bounded too.

The classifier reads a `View`: the table as an open-addressing hash table of NumPy arrays,
rebuilt when the table changed, at most once per `rebuild_every` seconds (so an answer classifies
flows within about a second), and expired entries purged then. A lookup gathers a 64-bit key
mixed from both halves of the address, a round per probe, and checks both halves and the expiry
where the keys are equal; the compiled kernel (collector/kernels/_kernels.c, `learned`) does the
same probes in one pass where it was built.
"""

from __future__ import annotations

import secrets
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field

import numpy as np

from collector import kernels

MAX_ENTRIES = 100_000
GRACE = 300.0  # seconds past the TTL
MAX_TTL = 86_400.0
MAX_CLIENTS = 10_000  # (client, service) pairs counted
REBUILD_EVERY = 1.0  # seconds between rebuilds of the classifier's view
_MIX = np.uint64(0x9E3779B97F4A7C15)  # odd: hi * _MIX is a bijection of 64-bit integers


def _high(hi: np.ndarray) -> np.ndarray:
    """The high half's share of the key: seeded, then carried through a multiply, a shift and a
    multiply, so which addresses share a key depends on the per-process seed (an XOR of the seed
    after a plain multiply would not: flipping the top bit of hi and of lo collides whatever
    the seed)."""
    with np.errstate(over="ignore"):
        a = (hi ^ _SEED) * _MIX
        a ^= a >> np.uint64(32)
        a *= _SPREAD
    return a


def mix(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """The 64-bit key of each address (both paths compute it alike: collector/kernels)."""
    return _high(hi) ^ lo


_SPREAD = np.uint64(0xBF58476D1CE4E5B9)  # slot = the top bits of key * _SPREAD (Fibonacci-style hashing)
# Seeded per process, so whoever controls answers cannot pick addresses that pile up in one probe chain.
_SEED = np.uint64(secrets.randbits(64))
# A slot's entry, all in one 32-octet record (half a cache line): the compiled lookup's hit costs
# one cache miss, not one per array. `View.hi` etc. are views of these fields.
ENTRY = np.dtype({"names": ["hi", "lo", "expires", "service"], "formats": ["<u8", "<u8", "<f8", "<u2"],
                  "offsets": [0, 8, 16, 24], "itemsize": 32})


@dataclass
class View:
    """The table as an open-addressing hash table of NumPy arrays (linear probing, at most a
    quarter full), for one catalogue (service ids -> its indexes). A lookup gathers one 32-bit
    fingerprint per address and round (the slots of 100k addresses take 2 MiB: they stay in
    cache); a round more only for the few addresses whose slot holds another fingerprint; both
    address halves and the expiry are checked only where the fingerprints are equal."""

    keys: np.ndarray  # uint32 fingerprint per slot (the mixed key's low half); 0 = empty
    entries: np.ndarray  # ENTRY per slot
    shift: np.uint64  # 64 - log2(slots)
    rounds: int  # the longest probe sequence of any entry
    size: int

    def __post_init__(self) -> None:
        e = self.entries
        self.hi, self.lo, self.service, self.expires = e["hi"], e["lo"], e["service"], e["expires"]

    def __len__(self) -> int:
        return self.size

    def lookup(self, addr: np.ndarray, now: float, rows: np.ndarray | None = None) -> np.ndarray:
        """uint16 service index of each ADDR value (0: not learned, or expired); with `rows`,
        of those rows only (the others are 0)."""
        out = np.zeros(len(addr), np.uint16)
        if not self.size or not len(addr):
            return out
        kernel = kernels.compiled
        if kernel is not None:  # the same probes, one pass in C
            addr = np.ascontiguousarray(addr)
            if addr.dtype.itemsize != 16:
                raise TypeError(f"lookup: ADDR values expected, got {addr.dtype}")
            kernel.learned(addr, None if rows is None else np.ascontiguousarray(rows, np.int64),
                           self.keys, self.entries, float(now), int(_SEED), int(_MIX), int(_SPREAD),
                           int(self.shift), self.rounds, out)
            return out
        hi, lo = addr["hi"], addr["lo"]
        if rows is not None:
            hi, lo = hi[rows], lo[rows]
        key, home = _hash(hi, lo, self.shift)
        mask = len(self.keys) - 1
        idx = None  # rows of key/home still probing (None: all)
        for r in range(self.rounds):
            if idx is None:
                slot, k = home, key
            else:
                slot, k = (home[idx] + r) & mask, key[idx]
            found = self.keys[slot]
            hit = np.flatnonzero(found == k)
            if hit.size:
                h_rows = hit if idx is None else idx[hit]
                h_slot = slot[hit]
                same = (self.hi[h_slot] == hi[h_rows]) & (self.lo[h_slot] == lo[h_rows])
                good = same & (self.expires[h_slot] > now)
                dest = h_rows[good] if rows is None else rows[h_rows[good]]
                out[dest] = self.service[h_slot[good]]
                # settled where the slot holds this very address; a slot of another address
                # with the same fingerprint sends the probe on to the next slot
                found[hit[same]] = 0
            more = np.flatnonzero(found)
            if not more.size:
                break
            idx = more if idx is None else idx[more]
        return out


def _hash(hi: np.ndarray, lo: np.ndarray, shift: np.uint64) -> tuple[np.ndarray, np.ndarray]:
    """(fingerprint, home slot) of each address: the seeded key's low 32 bits (0 taken as 1) and
    its top bits after multiplying by _SPREAD."""
    mixed = mix(hi, lo)
    fingerprint = mixed.astype(np.uint32)
    fingerprint[fingerprint == 0] = 1
    with np.errstate(over="ignore"):
        mixed *= _SPREAD
    mixed >>= shift
    return fingerprint, mixed.astype(np.intp)


def build_view(hi: np.ndarray, lo: np.ndarray, service: np.ndarray, expires: np.ndarray) -> View:
    """Place every entry (unique addresses) in a table, in
    vectorized rounds (four times as many slots as entries): each round, the entries still unplaced try their next slot, and of those
    wanting the same free slot the first takes it."""
    n = len(hi)
    bits = max(10, int(4 * n - 1).bit_length())
    size = 1 << bits
    shift = np.uint64(64 - bits)
    keys = np.zeros(size, np.uint32)
    entries = np.zeros(size, ENTRY)
    t_hi, t_lo, t_service, t_expires = entries["hi"], entries["lo"], entries["service"], entries["expires"]
    key, home = _hash(hi, lo, shift)
    todo = np.arange(n)
    r = 0
    while todo.size:
        slot = (home[todo] + r) & (size - 1)
        free = keys[slot] == 0
        cand, cslot = todo[free], slot[free]
        _, first = np.unique(cslot, return_index=True)
        placed, pslot = cand[first], cslot[first]
        keys[pslot], t_hi[pslot], t_lo[pslot] = key[placed], hi[placed], lo[placed]
        t_service[pslot], t_expires[pslot] = service[placed], expires[placed]
        done = np.zeros(n, bool)
        done[placed] = True
        todo = todo[~done[todo]]
        r += 1
    return View(keys, entries, shift, max(r, 1), n)


EMPTY = View(np.zeros(0, np.uint32), np.zeros(0, ENTRY), np.uint64(0), 0, 0)


@dataclass
class Counters:
    answers: int = 0  # A/AAAA records of matched names taken in
    learned: int = 0  # addresses new to the table
    refreshed: int = 0  # addresses already there, expiry moved on
    evicted: int = 0  # pushed out by the ceiling (least recently learned first)
    expired: int = 0  # purged after TTL + grace
    clients_dropped: int = 0  # (client, service) pairs not counted: the ceiling was reached
    by_service: Counter = field(default_factory=Counter)  # answers per service id


class LearnedAddresses:
    def __init__(self, max_entries: int = MAX_ENTRIES, grace: float = GRACE, max_ttl: float = MAX_TTL,
                 max_clients: int = MAX_CLIENTS, rebuild_every: float = REBUILD_EVERY):
        self.max_entries, self.grace, self.max_ttl = max_entries, grace, max_ttl
        self.max_clients, self.rebuild_every = max_clients, rebuild_every
        self.entries: OrderedDict[tuple[int, int], tuple[str, float]] = OrderedDict()
        self.clients: Counter = Counter()  # (client address text, service id) -> answers
        self.counters = Counters()
        self._version = 0
        self._view: View = EMPTY
        self._view_key: tuple | None = None  # (version, catalogue identity) it was built from
        self._built_at = float("-inf")
        # With --workers: what changed since the supervisor last sent it on (None: not kept)
        self.journal: deque | None = None
        self.journal_dropped = 0  # changes the journal's ceiling dropped (a worker misses them)

    def __len__(self) -> int:
        return len(self.entries)

    def learn(self, hi: int, lo: int, service: str, ttl: float, now: float, client: str | None = None) -> None:
        """One A/AAAA answer (address as ADDR halves) for a name of `service`."""
        c = self.counters
        c.answers += 1
        c.by_service[service] += 1
        expires = now + min(max(float(ttl), 0.0), self.max_ttl) + self.grace
        if client is not None:
            pair = (client, service)
            if pair in self.clients or len(self.clients) < self.max_clients:
                self.clients[pair] += 1
            else:
                c.clients_dropped += 1
        if not self._store((hi, lo), (service, expires)):
            return
        self._version += 1
        if self.journal is not None:
            if len(self.journal) == self.journal.maxlen:
                self.journal_dropped += 1
            self.journal.append((hi, lo, service, expires))

    def keep_journal(self) -> None:
        """Record every change for `take_journal` (the supervisor of --workers)."""
        self.journal = deque(maxlen=self.max_entries)

    def take_journal(self) -> list[tuple[int, int, str, float]]:
        out = list(self.journal or ())
        if self.journal:
            self.journal.clear()
        return out

    def snapshot(self) -> list[tuple[int, int, str, float]]:
        """Every entry, least recently learned first: what a new worker starts from."""
        return [(hi, lo, sid, expires) for (hi, lo), (sid, expires) in self.entries.items()]

    def put(self, entries) -> None:
        """Entries learned elsewhere (the supervisor's journal), with their expiry as given."""
        for hi, lo, service, expires in entries:
            self._store((hi, lo), (service, expires))
        self._version += 1

    def _store(self, key: tuple[int, int], value: tuple[str, float]) -> bool:
        """Insert or refresh one entry as the most recently learned (the least recent out past
        max_entries, counted); False when it was there with this very value."""
        c = self.counters
        old = self.entries.get(key)
        if old is not None:
            c.refreshed += 1
            self.entries.move_to_end(key)
            if old == value:
                return False
        else:
            c.learned += 1
            while len(self.entries) >= self.max_entries:
                self.entries.popitem(last=False)
                c.evicted += 1
        self.entries[key] = value
        return True

    def view(self, by_id: dict, now: float, force: bool = False) -> View:
        """The arrays for a catalogue's `by_id` (service id -> Service with `.index`). At most
        once per `rebuild_every` (or when the catalogue changed, or `force`): expired entries
        are purged, and the arrays rebuilt if anything changed."""
        same = self._view_key is not None and self._view_key[1] == id(by_id)
        if same and not force and now - self._built_at < self.rebuild_every:
            return self._view
        self._built_at = now
        self._purge(now)
        key = (self._version, id(by_id))
        if key != self._view_key:
            self._view = self._build(by_id)
            self._view_key = key
        return self._view

    def _purge(self, now: float) -> None:
        gone = [k for k, (_, expires) in self.entries.items() if expires <= now]
        for k in gone:
            del self.entries[k]
        if gone:
            self.counters.expired += len(gone)
            self._version += 1

    def _build(self, by_id: dict) -> View:
        n = len(self.entries)
        if not n:
            return EMPTY
        hi = np.fromiter((k[0] for k in self.entries), np.uint64, n)
        lo = np.fromiter((k[1] for k in self.entries), np.uint64, n)
        index = {sid: s.index for sid, s in by_id.items()}
        service = np.fromiter((index.get(v[0], 0) for v in self.entries.values()), np.uint16, n)
        expires = np.fromiter((v[1] for v in self.entries.values()), np.float64, n)
        known = service != 0  # a service the catalogue no longer has (after a reload): not looked up
        return build_view(hi[known], lo[known], service[known], expires[known])
