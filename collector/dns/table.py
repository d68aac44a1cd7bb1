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

import asyncio
import heapq
import logging
import secrets
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field

import numpy as np

from collector import kernels
from collector.netflow.batch import ADDR

log = logging.getLogger(__name__)

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
    """The table as an open-addressing hash table of NumPy arrays (linear probing, a quarter full
    when built, rebuilt past a third), for one catalogue (service ids -> its indexes), with a
    prefilter in front. A lookup first checks two bits of the address's word of `filter`
    (16 filter bits per entry: 256 KiB for 100k addresses, in the CPU's caches): an address
    whose bits are not both set is not in the table, and that settles almost every address not
    learned without reading the table. The others gather one 32-bit fingerprint per round (a
    round more only where a slot holds another fingerprint); both address halves and the expiry
    are checked only where the fingerprints are equal.

    Changed in place (`apply`), never rebuilt on a timer: an entry removed (evicted, expired)
    stays in its slot as dead (service 0, expiry -inf) so that the probes of others still go
    past it, and is reused if its address comes back; its filter bits stay set (a filter bit
    may be stale, never missing). Dead slots count towards the load that triggers a rebuild."""

    keys: np.ndarray  # uint32 fingerprint per slot (the mixed key's low half); 0 = empty
    entries: np.ndarray  # ENTRY per slot
    shift: np.uint64  # 64 - log2(slots)
    rounds: int  # the longest probe sequence of any entry
    size: int  # live entries (service != 0)
    filter: np.ndarray = field(default_factory=lambda: np.zeros(1, np.uint64))  # uint64 words
    used: int = 0  # slots taken, live or dead

    def __post_init__(self) -> None:
        e = self.entries
        self.hi, self.lo, self.service, self.expires = e["hi"], e["lo"], e["service"], e["expires"]
        self.fshift = np.uint64(64 - max(1, (len(self.filter) - 1).bit_length()))

    def __len__(self) -> int:
        return self.size

    def lookup(self, addr: np.ndarray, now: float, rows: np.ndarray | None = None) -> np.ndarray:
        """uint16 service index of each ADDR value (0: not learned, or expired); with `rows`,
        of those rows only (the others are 0). One side of `lookup_pair`."""
        addr = np.ascontiguousarray(addr)
        skip = None
        if rows is not None:
            skip = np.ones(len(addr), bool)
            skip[np.asarray(rows)] = False
        return self.lookup_pair(addr, addr, now, skip, np.ones(len(addr), bool))[0]

    def lookup_pair(self, src: np.ndarray, dst: np.ndarray, now: float, src_skip: np.ndarray | None = None,
                    dst_skip: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(src services, dst services, rows where either is non-zero) of two ADDR columns of one
        length; where a skip mask (bool) is True that side is not looked up (0)."""
        n = len(src)
        if len(dst) != n:
            raise ValueError("lookup_pair: src and dst differ in length")
        if not self.size or not n:
            return np.zeros(n, np.uint16), np.zeros(n, np.uint16), np.zeros(0, np.intp)
        kernel = kernels.compiled
        if kernel is not None:  # the same probes, one pass in C
            src, dst = np.ascontiguousarray(src), np.ascontiguousarray(dst)
            if src.dtype.itemsize != 16 or dst.dtype.itemsize != 16:
                raise TypeError(f"lookup: ADDR values expected, got {src.dtype}, {dst.dtype}")
            skips = [None if m is None else np.ascontiguousarray(m, bool) for m in (src_skip, dst_skip)]
            s, d, hits = np.empty(n, np.uint16), np.empty(n, np.uint16), np.empty(n, np.int64)
            k = kernel.learned(src, dst, skips[0], skips[1], self.keys, self.entries, self.filter, float(now),
                               int(_SEED), int(_MIX), int(_SPREAD), int(self.shift), int(self.fshift),
                               self.rounds, s, d, hits)
            return s, d, hits[:k]
        s = self._side(src, now, src_skip)
        d = self._side(dst, now, dst_skip)
        return s, d, np.flatnonzero(s | d)

    def _side(self, addr: np.ndarray, now: float, skip: np.ndarray | None) -> np.ndarray:
        out = np.zeros(len(addr), np.uint16)
        rows = np.flatnonzero(~np.asarray(skip, bool)) if skip is not None else np.arange(len(addr))
        hi, lo = addr["hi"][rows], addr["lo"][rows]
        key, home, word, bits = _place(hi, lo, self.shift, self.fshift, len(self.filter))
        maybe = np.flatnonzero((self.filter[word] & bits) == bits)  # the prefilter
        if not maybe.size:
            return out
        slot = self._locate(hi[maybe], lo[maybe], key[maybe], home[maybe])
        has = slot >= 0
        where, slot = maybe[has], slot[has]
        good = self.expires[slot] > now
        out[rows[where[good]]] = self.service[slot[good]]
        return out

    def _locate(self, hi: np.ndarray, lo: np.ndarray, key: np.ndarray, home: np.ndarray) -> np.ndarray:
        """The slot holding each address (live or dead), or -1: linear probing from the home
        slot, past slots of other addresses, up to an empty slot or `rounds` slots."""
        out = np.full(len(hi), -1, np.intp)
        mask = len(self.keys) - 1
        idx = np.arange(len(hi))  # still probing
        for r in range(self.rounds):
            slot = (home[idx] + r) & mask
            found = self.keys[slot]
            hit = np.flatnonzero(found == key[idx])
            if hit.size:
                h_slot = slot[hit]
                same = (self.hi[h_slot] == hi[idx[hit]]) & (self.lo[h_slot] == lo[idx[hit]])
                out[idx[hit[same]]] = h_slot[same]
                found[hit[same]] = 0  # settled
            idx = idx[found != 0]
            if not idx.size:
                break
        return out

    def apply(self, hi: np.ndarray, lo: np.ndarray, service: np.ndarray, expires: np.ndarray) -> bool:
        """Changes to distinct addresses: service 0 removes (the slot stays, dead), else the
        address's entry is set, in its slot if it has one. False (nothing changed) when the
        new entries would take the table past a third of its slots: rebuild it instead."""
        if not len(hi):
            return True
        key, home, word, bits = _place(hi, lo, self.shift, self.fshift, len(self.filter))
        slot = self._locate(hi, lo, key, home)
        has = slot >= 0
        new = np.flatnonzero(~has & (service != 0))
        if 3 * (self.used + new.size) > len(self.keys):
            return False
        s = slot[has]
        self.size += int(np.count_nonzero(service[has])) - int(np.count_nonzero(self.service[s]))
        self.service[s] = service[has]
        self.expires[s] = np.where(service[has] != 0, expires[has], -np.inf)
        self.rounds = max(self.rounds, _insert(self, hi[new], lo[new], service[new], expires[new],
                                               key[new], home[new]))
        np.bitwise_or.at(self.filter, word[new], bits[new])
        self.used += new.size
        self.size += new.size
        return True

    def live(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(hi, lo, service, expires) of the live entries."""
        at = np.flatnonzero((self.keys != 0) & (self.service != 0))
        return self.hi[at], self.lo[at], self.service[at], self.expires[at]


def _hash(hi: np.ndarray, lo: np.ndarray, shift: np.uint64) -> tuple[np.ndarray, np.ndarray]:
    """(fingerprint, home slot) of each address: the seeded key's low 32 bits (0 taken as 1) and
    its top bits after multiplying by _SPREAD."""
    key, home, _, _ = _place(hi, lo, shift, np.uint64(63), 1)
    return key, home


def _place(hi: np.ndarray, lo: np.ndarray, shift: np.uint64, fshift: np.uint64, words: int):
    """(fingerprint, home slot, filter word, filter bits) of each address: g = key * _SPREAD;
    home slot = g >> shift, word = g >> fshift (both the top bits), and the two bits the
    fingerprint's bits 0-5 and 6-11 pick (as the kernel computes them)."""
    mixed = mix(hi, lo)
    fingerprint = mixed.astype(np.uint32)
    fingerprint[fingerprint == 0] = 1
    with np.errstate(over="ignore"):
        mixed *= _SPREAD
    word = ((mixed >> fshift) & np.uint64(words - 1)).astype(np.intp)
    mixed >>= shift
    f = fingerprint.astype(np.uint64)
    bits = (np.uint64(1) << (f & np.uint64(63))) | (np.uint64(1) << ((f >> np.uint64(6)) & np.uint64(63)))
    return fingerprint, mixed.astype(np.intp), word, bits


def _insert(view: View, hi, lo, service, expires, key, home) -> int:
    """Place new entries (distinct addresses, none in the table) in free slots, in vectorized
    rounds: each round, the entries still unplaced try their next slot, and of those wanting the
    same free slot the first takes it. Returns the rounds it took (the longest probe sequence
    among them)."""
    n = len(hi)
    size = len(view.keys)
    keys, t_hi, t_lo, t_service, t_expires = view.keys, view.hi, view.lo, view.service, view.expires
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
    return r


def build_view(hi: np.ndarray, lo: np.ndarray, service: np.ndarray, expires: np.ndarray,
               room: int = 0) -> View:
    """A table of the entries (distinct addresses, service != 0) with four times as many slots
    as entries (`room`: as many as if there were that many more)."""
    n = len(hi)
    bits = max(10, int(4 * (n + room) - 1).bit_length())
    size = 1 << bits
    view = View(np.zeros(size, np.uint32), np.zeros(size, ENTRY), np.uint64(64 - bits), 1, n,
                np.zeros(size >> FILTER_SHIFT, np.uint64), n)
    key, home, word, fbits = _place(hi, lo, view.shift, view.fshift, len(view.filter))
    view.rounds = max(1, _insert(view, hi, lo, service, expires, key, home))
    np.bitwise_or.at(view.filter, word, fbits)
    return view


FILTER_SHIFT = 4  # filter words = slots / 16: 4 filter bits a slot, 16 or more an entry
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
        # When entries expire: (expires, hi, lo), a min-heap; an item whose entry moved on
        # (refreshed, evicted) is skipped when it comes up; compacted past twice the entries
        self._expiry: list[tuple[float, int, int]] = []
        # What changed since the view last took it in: address -> (service id, expires), or
        # None where it left the table (one item per address: at most the changes, never more)
        self._pending: dict[tuple[int, int], tuple[str, float] | None] = {}
        self._view: View = EMPTY
        self._by_id: dict | None = None  # the catalogue's by_id the view was built for
        self._index: dict[str, int] = {}  # its service id -> index
        self._applied_at = float("-inf")
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

    def _store(self, key: tuple[int, int], value: tuple[str, float]) -> bool:
        """Insert or refresh one entry as the most recently learned (the least recent out past
        max_entries, counted); False when it was there with this very value."""
        c = self.counters
        entries = self.entries
        old = entries.get(key)
        if old is not None:
            c.refreshed += 1
            entries.move_to_end(key)
            if old == value:
                return False
        else:
            c.learned += 1
            while len(entries) >= self.max_entries:
                gone, _ = entries.popitem(last=False)
                self._pending[gone] = None
                c.evicted += 1
        entries[key] = value
        self._pending[key] = value
        heapq.heappush(self._expiry, (value[1], *key))
        if len(self._expiry) > 2 * len(entries) + 1024:  # mostly items of entries since moved on
            self._expiry = [(e, *k) for k, (_, e) in entries.items()]
            heapq.heapify(self._expiry)
        return True

    def view(self, by_id: dict, now: float, force: bool = False) -> View:
        """The hash table for a catalogue's `by_id` (service id -> Service with `.index`). At most
        once per `rebuild_every` (or when `force`d) the entries expired by then leave the table
        and the changes since are applied to it in place: work in proportion to the changes,
        not to the table. Built whole only for a new catalogue, or when the changes fill it
        past a third (then from its own arrays, in NumPy)."""
        if self._by_id is by_id and not force and now - self._applied_at < self.rebuild_every:
            return self._view
        self._applied_at = now
        self._purge(now)
        if self._by_id is not by_id:  # first use, or a reload: the service indexes change
            self._by_id, self._index = by_id, {sid: s.index for sid, s in by_id.items()}
            self._pending.clear()
            self._view = self._build()
        elif len(self._pending) > len(self.entries) // 2 + 1024:
            # most of the table changed (a flood turning it over): one build from the table
            # costs less than applying every change (and about what applying them would)
            self._pending.clear()
            self._view = self._build()
        elif self._pending:
            self._apply()
        return self._view

    def _purge(self, now: float) -> None:
        heap, entries = self._expiry, self.entries
        while heap and heap[0][0] <= now:
            expires, hi, lo = heapq.heappop(heap)
            value = entries.get((hi, lo))
            if value is not None and value[1] == expires:
                del entries[(hi, lo)]
                self._pending[(hi, lo)] = None
                self.counters.expired += 1

    def _apply(self) -> None:
        pending, self._pending = self._pending, {}
        n = len(pending)
        hi = np.fromiter((k[0] for k in pending), np.uint64, n)
        lo = np.fromiter((k[1] for k in pending), np.uint64, n)
        index = self._index  # a service the catalogue does not have: not looked up (removed)
        service = np.fromiter((index.get(v[0], 0) if v else 0 for v in pending.values()), np.uint16, n)
        expires = np.fromiter((v[1] if v else -np.inf for v in pending.values()), np.float64, n)
        view = self._view
        if view is EMPTY or not view.apply(hi, lo, service, expires):
            # grown past a third (or none yet): one table of what is live, a quarter full
            # again (room for a third of its entries more before the next: amortized, a
            # rebuild of NumPy passes per that many changes)
            live = view.live() if view is not EMPTY else tuple(np.zeros(0, t) for t in
                                                               (np.uint64, np.uint64, np.uint16, np.float64))
            self._view = _rebuilt(live, (hi, lo, service, expires))

    def _build(self) -> View:
        n = len(self.entries)
        if not n:
            return EMPTY
        hi = np.fromiter((k[0] for k in self.entries), np.uint64, n)
        lo = np.fromiter((k[1] for k in self.entries), np.uint64, n)
        index = self._index
        service = np.fromiter((index.get(v[0], 0) for v in self.entries.values()), np.uint16, n)
        expires = np.fromiter((v[1] for v in self.entries.values()), np.float64, n)
        known = service != 0  # a service the catalogue no longer has (after a reload): not looked up
        return build_view(hi[known], lo[known], service[known], expires[known])


def _rebuilt(live, changes) -> View:
    """A new table of the live entries with the changes applied (changes win; service 0 removes)."""
    hi = np.concatenate([changes[0], live[0]])
    lo = np.concatenate([changes[1], live[1]])
    service = np.concatenate([changes[2], live[2]])
    expires = np.concatenate([changes[3], live[3]])
    both = np.zeros(len(hi), ADDR)
    both["hi"], both["lo"] = hi, lo
    _, first = np.unique(both, return_index=True)  # the first of each address: the change
    keep = first[service[first] != 0]
    return build_view(hi[keep], lo[keep], service[keep], expires[keep])


async def keep_view_current(table: LearnedAddresses, catalogue, clock) -> None:
    """Run as a task beside what feeds `table` (the dnstap listener; a worker's feed from the
    supervisor): once per the table's `rebuild_every` the classifier's view takes in what the
    answers changed, between flow batches, rather than in the first batch classified after them
    (the first view of a table is built whole: 100k addresses, ~0.1 s). `catalogue()` returns
    the catalogue in use (it changes on reload)."""
    while True:
        await asyncio.sleep(table.rebuild_every)
        try:
            table.view(catalogue().by_id, clock())
        except Exception:  # the classifier's own call would then retry it; never kill the task
            log.exception("updating the learned-address view")
