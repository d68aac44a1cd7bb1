"""Address range tables: map every address to a small integer in O(1) for almost all lookups.

The classifier asks two questions of each address: is it internal, and which service prefix (if
any) covers it (docs/design.md §4). Both are answered by one table per address family:

1. `elementary()` turns possibly nested or overlapping prefixes into sorted, non-overlapping
   intervals covering the whole address space, each carrying one value.
2. `RangeTable` stores them as a two-level stride table (IPv4: /16 then /24; IPv6: /16 then /32)
   of uint16 entries, falling back to `np.searchsorted` over the interval starts only for the few
   cells that a boundary splits (prefixes longer than /24, or /32 for IPv6).

A plain `searchsorted` costs ~45 ns per random key on a few hundred intervals; a gather from a
128 KiB level-1 table costs ~3 ns, which is what keeps classification well above 5M flows/s.
"""

from __future__ import annotations

import mmap
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable

import numpy as np

from collector import kernels
from collector.kernels.grouping import distinct
from collector.netflow.batch import is_v4

POINTER = 0x8000  # entry bit: the low 15 bits index the next level (level 1) / go to leaf (level 2)
U64 = (1 << 64) - 1


def elementary(items: Iterable[tuple[int, int, Hashable]], width: int,
               combine: Callable[[list[Hashable]], int]) -> tuple[list[int], list[int]]:
    """Inclusive ranges (first, last, tag) -> (starts, values) covering [0, 2**width).

    `combine(tags)` gives the value of an interval from the tags of the ranges covering it (an
    empty list for uncovered space). Adjacent intervals with equal values are merged.
    """
    events: dict[int, list[tuple[int, Hashable]]] = defaultdict(list)
    events[0]
    end = 1 << width
    for n, (first, last, tag) in enumerate(items):
        events[first].append((1, (n, tag)))
        if last + 1 < end:
            events[last + 1].append((-1, (n, tag)))
    active: dict[int, Hashable] = {}
    starts: list[int] = []
    values: list[int] = []
    for point in sorted(events):
        for delta, (n, _) in events[point]:
            if delta < 0:
                active.pop(n, None)
        for delta, (n, tag) in events[point]:
            if delta > 0:
                active[n] = tag
        value = combine(list(active.values()))
        if not values or values[-1] != value:
            starts.append(point)
            values.append(value)
    return starts, values


class RangeTable:
    """uint16 value per address of one family; see the module docstring."""

    def __init__(self, starts: list[int], values: list[int], width: int, strides: tuple[int, int]):
        if starts[:1] != [0]:
            raise ValueError("intervals must start at address 0")
        if max(values, default=0) >= POINTER:
            raise ValueError("values must be below 0x8000")
        self.width = width
        self.top_bits = min(width, 64)  # lookups index levels by the top 64 bits (IPv6: `hi`)
        self.s1, self.s2 = strides
        self.values = np.asarray(values, np.uint16)
        if width <= 64:
            self.starts = np.asarray(starts, np.uint64 if width > 32 else np.uint32)
        else:
            self.starts_hi = np.array([s >> 64 for s in starts], np.uint64)
            self.starts_lo = np.array([s & U64 for s in starts], np.uint64)
            # The leaf search steps back at most this many boundaries sharing one `hi`.
            _, counts = np.unique(self.starts_hi, return_counts=True)
            self.max_same_hi = int(counts.max())
        self.level1, self.level2 = self._build(starts)

    def _build(self, starts: list[int]) -> tuple[np.ndarray, np.ndarray]:
        w1 = self.width - self.s1
        w2 = w1 - self.s2
        level1, mixed = _cells(starts, self.values, w1, 1 << self.s1)
        level2 = _zeros((max(len(mixed), 1), 1 << self.s2))
        for n, cell in enumerate(mixed):
            base = int(cell) << w1
            a, b = bisect_left(starts, base), bisect_left(starts, base + (1 << w1))
            row, sub_mixed = _cells([s - base for s in starts[a:b]], self.values[a:b],
                                    w2, 1 << self.s2, at_base=int(level1[cell]))
            row[sub_mixed] = POINTER
            if level1[cell]:
                level2[n] = row
            else:  # the cell's value is 0 (no prefix, not internal): write only the rest
                nz = np.flatnonzero(row)
                level2[n, nz] = row[nz]
            level1[cell] = POINTER | n
        return level1, level2

    def lookup(self, top: np.ndarray, lo: np.ndarray | None = None) -> np.ndarray:
        """Values for keys: IPv4 `top` = uint32 addresses; IPv6 `top`/`lo` = ADDR hi/lo halves."""
        shift1 = self.top_bits - self.s1
        shift2 = shift1 - self.s2
        out = self.level1[top >> top.dtype.type(shift1)]
        rows = np.flatnonzero(out >= POINTER)
        if rows.size:
            k = top[rows]
            sub = ((k >> k.dtype.type(shift2)) & k.dtype.type((1 << self.s2) - 1)).astype(np.intp)
            val = self.level2[out[rows] & (POINTER - 1), sub]
            leaf = np.flatnonzero(val >= POINTER)
            if leaf.size:
                r = rows[leaf]
                val[leaf] = self._leaf(top[r], None if lo is None else lo[r])
            out[rows] = val
        return out

    def lookup_addr(self, addr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The IPv4 table's values for an ADDR column -> (values, 0 where the address is not
        IPv4 (mapped); the rows where it is not). By the compiled kernel, in one pass, when it
        was built; else the low 32 bits are looked up as above."""
        kernel = kernels.compiled
        if kernel is not None and self.width == 32:
            out = np.empty(len(addr), np.uint16)
            other = np.empty(len(addr), np.uint8)
            if not kernel.lookup4(np.ascontiguousarray(addr), self.level1, self.level2, self.starts, self.values,
                                  self.s1, self.s2, out, other):
                return out, np.zeros(0, np.intp)
            return out, np.flatnonzero(other)
        hi, lo = addr["hi"], addr["lo"]
        other = np.flatnonzero(~is_v4(hi, lo))
        out = self.lookup(lo.astype(np.uint32))  # an IPv4 address is the low 32 bits
        out[other] = 0
        return out, other

    def _leaf(self, top: np.ndarray, lo: np.ndarray | None) -> np.ndarray:
        if self.width <= 64:
            return self.values[np.searchsorted(self.starts, top, side="right") - 1]
        # 128-bit keys: last start with hi <= key hi, then step back while that start's hi is
        # the key's hi but its lo is above the key's lo (bounded by `max_same_hi`).
        i = np.searchsorted(self.starts_hi, top, side="right") - 1
        for _ in range(self.max_same_hi):
            back = (self.starts_hi[i] == top) & (self.starts_lo[i] > lo)
            if not back.any():
                break
            i[back] -= 1
        return self.values[i]


def _zeros(shape: tuple[int, int]) -> np.ndarray:
    """A uint16 table of zeros whose pages take no memory until written. IPv6 level-2 rows are
    65,536 entries (128 KiB) for a /16 that a few /32s or longer split, nearly all of them 0:
    held in an anonymous mapping, the pages never written stay the kernel's shared zero page
    (the built-in catalogue's 16 rows: 2 MiB allocated, a few pages resident)."""
    octets = shape[0] * shape[1] * 2
    if octets < 1 << 16:
        return np.zeros(shape, np.uint16)
    return np.frombuffer(mmap.mmap(-1, octets), np.uint16).reshape(shape)


def _cells(starts: list[int], values: np.ndarray, cell_bits: int, n_cells: int,
           at_base: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Value at the start of each of `n_cells` cells of 2**cell_bits addresses, and which cells a
    boundary splits. `starts` are relative to the block; `at_base` is the value at offset 0 when
    no start is exactly 0."""
    mask = (1 << cell_bits) - 1
    # key: 2*cell for a start on a cell boundary, 2*cell+1 for one inside the cell.
    keys = [2 * (s >> cell_bits) + (1 if s & mask else 0) for s in starts]
    vals = list(values)
    if at_base is not None:
        keys.insert(0, 0)
        vals.insert(0, at_base)
    keys_a = np.asarray(keys, np.int64)
    idx = np.searchsorted(keys_a, 2 * np.arange(n_cells, dtype=np.int64), side="right") - 1
    table = np.asarray(vals, np.uint16)[idx]
    mixed = distinct(keys_a[(keys_a & 1) == 1] >> 1)
    return table, mixed
