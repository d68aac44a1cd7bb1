"""One flush's bins -> the SQLite store's statement parameters, in a thread (docs/design.md §5).

The aggregator's bins are keyed by codes (exporter and service indexes, host address halves,
a flag byte that also holds the violation bit and the classification method); the rollups are
keyed by text, (bin, exporter, service, host). Here, with NumPy and no Python work per bin
except the final tuples: codes are ranked by their text, so one `group_rows` over (minute,
exporter rank, service rank, host rank) both merges the bins that share a rollup key (two flag
values of one host, or a restored row's second within the minute) and puts them in the rollups'
key order; the method rollups' rows are summed per (minute, exporter, service, method).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from collector.classify.classifier import METHODS
from collector.kernels.grouping import group_rows
from collector.store.columns import as_bins, as_if_bins
from collector.turns import no_turns

_SUMS = ("bytes", "packets", "flows")


CHUNK = 8192  # rows made into tuples at a time: one C call on a million would hold the GIL ~0.5 s


@dataclass
class Staged:
    """Iterables of parameter tuples, made chunk by chunk as the store's thread binds them (so
    that thread never holds the GIL long: the event loop gets it back within a chunk); each can
    be iterated once."""
    rows: Iterable = ()  # (bin, exporter, service, host, category, bytes, packets, flows, violation)
    methods: Iterable = ()  # (bin, exporter, service, method, category, bytes, packets, flows)
    if_rows: list = field(default_factory=list)  # (bin, exporter, if_index, if_name, direction, service, category, ...)
    n_rows: int = 0
    n_methods: int = 0


def _tuples(columns: list[tuple[np.ndarray, np.ndarray | None]], n: int,
            pause: Callable[[], None] = no_turns) -> Iterator[tuple]:
    """Rows of `columns` (values, or (names, codes): the names of the codes), CHUNK at a time;
    `pause()` before each chunk (the event loop's turn: collector/turns.py)."""
    for i in range(0, n, CHUNK):
        pause()
        parts = [(v[c[i:i + CHUNK]] if c is not None else v[i:i + CHUNK]).tolist() for v, c in columns]
        yield from zip(*parts)


def _ranked(names) -> tuple[np.ndarray, np.ndarray]:
    """Names -> (per code its rank in text order, equal names equal ranks; the distinct names
    in that order, an object array)."""
    if not len(names):
        return np.zeros(1, np.intp), np.array([""], object)
    distinct, rank = np.unique(np.array(names, object), return_inverse=True)
    return rank.reshape(-1), distinct


def _minutes(minute: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """(the minute's first second, a code per row in time order, the codes' cardinality)."""
    b = minute - minute % 60
    rel = (b - b.min()) // 60
    top = int(rel.max()) + 1
    if top > 1 << 20:  # far apart (restored rows of long ago): dense codes
        _, rel = np.unique(rel, return_inverse=True)
        top = int(rel.max()) + 1
    return b, rel.reshape(-1), top


def staged(rows, if_rows, pause: Callable[[], None] = no_turns) -> Staged:
    """The parameters of one flush (run in a thread): `rows` a `BinColumns` or `BinRow`s,
    `if_rows` an `IfColumns` or `IfRow`s. `pause()` is called before each step of Python work
    (each chunk of tuples, also while the store binds them): the daemon's event loop's turn."""
    out = Staged()
    bins = as_bins(rows)
    if not bins.empty and len(bins):
        cols = bins.columns()
        hidx, hosts = bins.hosts()
        host_names = np.array(hosts, object)
        erank, exporters = _ranked(bins.exporters)
        srank, services = _ranked(bins.services)
        categories = np.array(bins.categories, object)
        b, m, mtop = _minutes(cols["minute"])
        e, s = erank[cols["exporter"]], srank[cols["service"]]
        order, starts = group_rows([(m, mtop), (e, len(exporters)), (s, len(services)), (hidx, len(hosts))])
        first = order[starts]
        sums = [(np.add.reduceat(cols[c][order], starts), None) for c in _SUMS]
        violation = np.maximum.reduceat(((cols["flag"] >> np.uint8(1)) & np.uint8(1))[order], starts)
        out.n_rows = len(first)
        out.rows = _tuples([(b[first], None), (exporters, e[first]), (services, s[first]), (host_names, hidx[first]),
                            (categories, cols["service"][first]), *sums, (violation, None)], len(first), pause)
        method = (cols["flag"] >> np.uint8(2)).astype(np.intp)
        known = np.flatnonzero(method < len(METHODS))  # rows handed in without a method have none
        if len(known):
            order, starts = group_rows([(m[known], mtop), (e[known], len(exporters)), (s[known], len(services)),
                                        (method[known], len(METHODS))])
            first = known[order[starts]]
            sums = [(np.add.reduceat(cols[c][known][order], starts), None) for c in _SUMS]
            # few rows (per minute, exporter, service and method): made now, bound three times
            out.methods = list(_tuples([(b[first], None), (exporters, e[first]), (services, s[first]),
                                        (np.array(METHODS, object), method[first]),
                                        (categories, cols["service"][first]), *sums], len(first), pause))
            out.n_methods = len(out.methods)
    ifs = as_if_bins(if_rows)
    if not ifs.empty and len(ifs):
        out.if_rows = [(r.bin, r.exporter, r.if_index, r.if_name, r.direction, r.service, r.category, r.bytes,
                        r.packets, r.flows) for r in ifs.rows()]
    return out
