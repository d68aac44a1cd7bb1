"""Grouping rows of integer columns, the one mechanism behind decode's session and template
lookups, the aggregator's bins and the daemon's exporter codes.

Grouping is a sort of one integer key. When the key and a row index fit in 64 bits together,
one `np.sort` of (key << bits | row) does the work, as uint32 when that fits in 32 bits and as
int64 when it fits in 63 (NumPy sorts both faster than uint64): measured on 27k rows here,
about 3x faster than the stable `argsort` it replaces, and the row order comes out with the
keys. Small key spaces are coded through a table instead (`unique_inverse`).

Grouped sums (`group_sums`, the aggregator's reduction) take the compiled kernel in
collector/kernels/_kernels.c when it was built: one pass through a hash table sized to the groups
instead of the sort, gathers and `reduceat`s; the NumPy way gives the same groups and sums.
"""

from __future__ import annotations

import os

import numpy as np

from collector import kernels

_U8 = np.uint64
SEED = int.from_bytes(os.urandom(8), "little")  # keys come from the network: no fixed hash
TABLE_MAX = 1 << 20  # keys below this are coded through a table instead of a sort


def group_rows(cols: list[tuple[np.ndarray, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Group rows by a composite of non-negative integer columns, each given with its
    cardinality (every value < it): -> (row order, start of each group in that order).
    Groups come in key order. Keys wider than 64 bits fall back to `lexsort` of the columns."""
    n = len(cols[0][0])
    if not n:
        return np.zeros(0, np.intp), np.zeros(0, np.intp)
    width = sum(max(size - 1, 0).bit_length() for _, size in cols)
    if width > 64:
        order = np.lexsort(tuple(c.astype(_U8, copy=False) for c, _ in reversed(cols)))
        same = np.ones(n - 1, bool)
        for c, _ in cols:
            k = c[order]
            same &= k[1:] == k[:-1]
        return order, np.flatnonzero(np.concatenate(([True], ~same)))
    key = None
    for col, size in cols:
        if size > 1:
            if key is None:
                key = col.astype(_U8)  # a copy: the key is built in place from here
            else:
                key *= _U8(size)
                key += col.astype(_U8, copy=False)  # int64 + uint64 would go through float64
    if key is None:
        key = np.zeros(n, _U8)
    bits = (n - 1).bit_length()
    if width + bits <= 32:  # half the width, half the sort (250 against 476 us on 53k)
        packed = np.sort((key.astype(np.uint32) << np.uint32(bits)) | np.arange(n, dtype=np.uint32))
        order = (packed & np.uint32((1 << bits) - 1)).astype(np.intp)
        skey = packed >> np.uint32(bits)
    elif width + bits <= 64:
        packed = (key << _U8(bits)) | np.arange(n, dtype=_U8)
        if width + bits <= 63:  # NumPy sorts int64 faster than uint64 (357 against 518 us on 27k)
            packed = np.sort(packed.view(np.int64)).view(_U8)
        else:
            packed = np.sort(packed)
        order = (packed & _U8((1 << bits) - 1)).astype(np.intp)
        skey = packed >> _U8(bits)
    else:
        order = np.argsort(key)
        skey = key[order]
    return order, np.flatnonzero(np.concatenate(([True], skey[1:] != skey[:-1])))


def group_sums(cols: list[tuple[np.ndarray, int]], values: list[np.ndarray], room: int | None = None
               ) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """Group rows as `group_rows` does and sum each of `values` (uint64, wrapping) per group:
    -> (a row of each group, the sums, the rows per group). Groups come in no set order.
    The compiled kernel when it is switched on (`kernels.use`), else NumPy. `room`: the groups
    expected at most; the kernel's outputs are made that long (a batch's few thousand groups
    need not take 32 octets a row), and a batch of more is grouped again with room for all."""
    n = len(cols[0][0])
    width = sum(max(size - 1, 0).bit_length() for _, size in cols)
    kernel = kernels.compiled
    if kernel is not None and width <= 64 and n:
        keys = tuple((np.ascontiguousarray(c), size) for c, size in cols)
        vals = tuple(np.ascontiguousarray(v, _U8) for v in values)

        def grouped(m: int) -> tuple:  # outputs with room for m groups; -3 from the kernel: more
            first, sums, counts = np.empty(m, np.int64), [np.empty(m, _U8) for _ in values], np.empty(m, _U8)
            return kernel.group_sums(keys, vals, first, tuple(sums), counts, SEED), first, sums, counts
        k, first, sums, counts = grouped(n if room is None else max(min(room, n), 1))
        if k == -3:
            k, first, sums, counts = grouped(n)
        if k >= 0:  # copies: the groups are few, the buffers batch-sized
            return first[:k].astype(np.intp), [s[:k].copy() for s in sums], counts[:k].copy()
    order, starts = group_rows(cols)
    counts = np.diff(np.append(starts, len(order))).astype(_U8)
    return order[starts], [np.add.reduceat(v[order], starts) if len(order) else v[:0].astype(_U8)
                           for v in values], counts


def fits(cols: list[tuple[np.ndarray, int]]) -> bool:
    """Whether `group_rows(cols)` takes its fastest way (key and row index in 64 bits)."""
    n = len(cols[0][0])
    return sum(max(size - 1, 0).bit_length() for _, size in cols) + max(n - 1, 0).bit_length() <= 64


def codes(order: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """The group of each row (0..k-1 in key order), from `group_rows`' result."""
    new = np.zeros(len(order), bool)
    new[starts] = True
    return _codes(order, new)


def _codes(order: np.ndarray, new: np.ndarray) -> np.ndarray:
    """`codes` from the mask of rows (in `order`) that start a group."""
    out = np.empty(len(order), np.intp)
    out[order] = new.cumsum() - 1
    return out


def sole(col: np.ndarray) -> bool:
    """Whether a non-empty column holds one value only (one comparison pass, none when its
    ends differ or it is a view of one value: the decoder's session column of a one-exporter
    batch)."""
    if not len(col):
        return False
    return col.strides == (0,) or bool(col[0] == col[-1] and (col == col[0]).all())


def distinct(col: np.ndarray) -> np.ndarray:
    """The sorted distinct values of a 1-d column: `np.unique(col)` without the question it
    asks first (is `col` a masked array?), which imports NumPy's masked-array package, 1.3 MiB
    resident for good in a daemon that has no use for it (docs/performance.md, "Memory")."""
    ordered = np.sort(col)
    if len(ordered) < 2:
        return ordered
    new = np.empty(len(ordered), bool)
    new[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=new[1:])
    return ordered[new]


def unique_inverse(col: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """`np.unique(col, return_inverse=True)` for non-negative integers below `size`, through
    a table when `size` is small beside the column (measured here: 12 us against 22 us for
    1,024 values below 2,000; but 190 us against 27 us below 2^16), else by one `argsort` for
    short columns (what `np.unique` does, without its wrappers: 7.5 against 12.6 us on 16
    values) and `group_rows`' sort for long ones (1.2-1.8 ms against 0.9-2.3 ms on 27k). A
    column of one value (the datagrams of a batch from one exporter) takes one comparison pass;
    values close together (max - min small beside the column) take the table from the least."""
    if sole(col):  # one value (one exporter's batch)
        return col[:1].copy(), np.zeros(len(col), np.intp)
    room = min(TABLE_MAX, 4 * len(col) + 4096)  # the table costs O(its size)
    if size <= room:
        return _by_table(col, col, 0, size)
    if len(col):  # values close together (a batch's (session, set id) pairs): a table from the least
        low = col.min()
        span = int(col.max()) - int(low) + 1
        if span <= room:
            return _by_table(col, col - low, low, span)
    if len(col) <= 4096:
        order = col.argsort()
        ordered = col[order]
        new = np.empty(len(col), bool)
        new[:1] = True
        np.not_equal(ordered[1:], ordered[:-1], out=new[1:])
        return ordered[new], _codes(order, new)
    order, starts = group_rows([(col, size)])
    return col[order[starts]], codes(order, starts)


def _by_table(col: np.ndarray, rel: np.ndarray, low, span: int) -> tuple[np.ndarray, np.ndarray]:
    """`unique_inverse` through a table of `span` entries: `rel` is `col - low`, every value
    below `span`."""
    idx = rel.astype(np.intp, copy=False)
    values = np.flatnonzero(np.bincount(idx, minlength=span))
    table = np.zeros(span, np.intp)
    table[values] = np.arange(len(values))
    return values.astype(col.dtype) + low if low else values.astype(col.dtype, copy=False), table[idx]


def dense(col: np.ndarray, size: int) -> tuple[np.ndarray, int]:
    """Values below `size` -> (a code per row, the number of distinct values)."""
    values, inverse = unique_inverse(col, size)
    return inverse, len(values)
