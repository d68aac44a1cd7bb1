"""Aggregation: classified flow batches -> 1-minute bins keyed (bin, exporter, service, host).

Pure (docs/design.md §1): no clock, no I/O. Within a batch the flows are reduced in NumPy (one
sort of a composite integer key, `np.add.reduceat` for exact sums), or by the compiled kernel in
one pass (collector/kernels/_aggregate.c, `bins`: each flow's minute, flag and host, and its
sums added into two hash tables at once, by host and by interface pair), with the same results;
only the distinct keys of a batch reach the open bins. `drain(before)` hands closed bins to the
flush.

A flow belongs to the minute of its end time. Times an exporter gets badly wrong (more than
`max_age` in the past or `max_skew` in the future of the receive time) are replaced by the
receive time and counted per exporter, so a router with a broken clock cannot open bins in 1970.

Cumulative totals since start, per (exporter, service), feed the metrics; exporter names are
the decoder's bounded stats labels (the rest arrive as "other"), so the table stays bounded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from collector import kernels
from collector.classify.classifier import METHODS, Classified
from collector.kernels.grouping import SEED, codes, dense, fits, group_rows, group_sums
from collector.netflow.batch import FlowBatch, addr_from_str, is_v4
from collector.store.columns import BinColumns, IfColumns
from collector.store.rows import BinRow, IfRow

BIN = 60
_U8 = np.uint64


DIRECTIONS = ("in", "out")
_METHOD_CODE = {m: i for i, m in enumerate(METHODS)}
Row = BinRow  # what drain() hands to the store


@dataclass
class Totals:
    """Cumulative figures since start, read by the metrics snapshot."""

    clamped: int = 0  # flows whose timestamps were replaced by the receive time
    clamped_by: dict = field(default_factory=dict)  # exporter -> the same, per exporter


def _small(col: np.ndarray) -> tuple[np.ndarray, int]:
    """An integer column as a grouping column: as it is when its values are small, else as
    dense codes."""
    top = int(col.max()) + 1 if len(col) else 1
    return (col, top) if top <= 1 << 16 else dense(col, top)


def _sums(batch: FlowBatch, cols: list[tuple[np.ndarray, int]]) -> tuple:
    """Per group of the key columns: (a row of it, bytes, packets, flows). Room for a group
    per eight flows (a batch's bins are far fewer than its flows; more are grouped again)."""
    first, (b, p), flows = group_sums(cols, [batch.bytes, batch.packets], room=max(len(batch) // 8, 8192))
    return first, b, p, flows


def host_codes(hi: np.ndarray, lo: np.ndarray, has_host: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """ADDR halves -> (an integer per row that is equal exactly when addresses are, its
    cardinality). IPv4 (mapped) addresses are their own 32-bit value; other addresses get
    dense codes above 2^32 (one lexsort of those rows only). Rows without a host (`has_host`
    False) are 0."""
    v4 = is_v4(hi, lo)
    if has_host is not None:
        v4 |= ~has_host
    if v4.all():
        return lo & _U8(0xFFFF_FFFF), 1 << 32
    out = np.where(v4, lo & _U8(0xFFFF_FFFF), _U8(0))
    return out, _code_other(hi, lo, np.flatnonzero(~v4), out)


def _code_other(hi: np.ndarray, lo: np.ndarray, rows: np.ndarray, out: np.ndarray) -> int:
    """`host_codes` for `rows`, the hosts neither IPv4 nor absent: their dense codes above 2^32
    into `out`; -> the cardinality of all codes."""
    order, starts = group_rows([(hi[rows], 1 << 64), (lo[rows], 1 << 64)])
    out[rows] = codes(order, starts).astype(_U8) + _U8(1 << 32)
    return (1 << 32) + len(starts)


_SUMS = ("bytes", "packets", "flows")
# the compiled kernel's groups, as it lays them out (collector/kernels/_aggregate.c, `bins`)
_HOST_GROUPS = (("minute", np.int64), ("hi", _U8), ("lo", _U8), ("bytes", _U8), ("packets", _U8), ("flows", _U8),
                ("exporter", np.uint32), ("service", np.uint16), ("flag", np.uint8))
_IF_GROUPS = (("minute", np.int64), ("bytes", _U8), ("packets", _U8), ("flows", _U8), ("in_if", np.uint32),
              ("out_if", np.uint32), ("exporter", np.uint32), ("service", np.uint16))


# what `totals` reads of the host groups, and as which types
_TOTALS_IN = (("exporter", np.uint32), ("service", np.uint16), ("flag", np.uint8), ("bytes", _U8), ("packets", _U8),
              ("flows", _U8))


def _columns(buf: bytearray, k: int, layout) -> dict[str, np.ndarray]:
    """Views of the columns a kernel wrote back to back into `buf`, k items each."""
    out, offset = {}, 0
    for name, dtype in layout:
        out[name] = np.frombuffer(buf, dtype, k, offset)
        offset += k * np.dtype(dtype).itemsize
    return out


def _unset(col: np.ndarray) -> bool:
    """A column the decoder did not fill: a view of one 0 (netflow.batch.repeated)."""
    return col.strides == (0,) and (not len(col) or col[0] == 0)


HOST_KEYS = {"minute": np.int64, "exporter": np.uint32, "service": np.uint16, "hi": _U8, "lo": _U8,
             "flag": np.uint8}
IF_KEYS = {"minute": np.int64, "exporter": np.uint32, "service": np.uint16, "ifindex": np.uint32,
           "direction": np.uint8}


class Bins:
    """Open bins as columns: key columns (`HOST_KEYS`: (minute, exporter, service, host,
    flags); `IF_KEYS`: (minute, exporter, service, interface, direction)) and sums.

    Each batch appends its own reduction; the parts are merged in bulk (one `group_sums` of
    the packed key, `_key_columns`: the compiled hash table, or NumPy's sort) when `settle` is
    called with `PENDING` rows pending or as many as the merged table (the pipeline calls it
    after each batch, once the batch's own arrays are freed, so a merge's temporaries do not
    add to theirs), at four times that on `append` itself, and before anything reads the bins.
    No Python work per key on the hot path. At the ceiling, keys already open keep their place
    and new ones are dropped (counted), as a dict that refuses new keys would.

    The parts are what grows with the flow rate (a batch's reduction is a few thousand rows
    of 55 octets, whatever its flows): merged only at 200,000 rows, they took 20-25 MiB more
    at 5.8 M flows/s than at 1 M. At 20,000 the merges are more frequent: in process, 2-4 %
    more CPU a v5 flow (where they ran in the store thread at the flush before); in the daemon
    at 80,000 datagrams/s no difference beyond the machine's spread (docs/performance.md,
    "Memory").
    """

    PENDING = 20_000

    def __init__(self, ceiling: int, keys: dict[str, type]):
        self.ceiling = ceiling
        self.keys = tuple(keys)
        self.dtypes = {**keys, **dict.fromkeys(_SUMS, _U8)}
        self.merged = self._empty()
        self.parts: list[dict[str, np.ndarray]] = []
        self.pending = 0
        self.dropped = 0

    def _empty(self) -> dict[str, np.ndarray]:
        return {c: np.zeros(0, t) for c, t in self.dtypes.items()}

    def append(self, cols: dict[str, np.ndarray]) -> None:
        self.parts.append(cols)
        self.pending += len(cols["bytes"])
        if self.pending >= 4 * max(self.PENDING, len(self.merged["bytes"])):
            self.merge()

    def settle(self) -> None:
        """Merge when enough rows are pending (see the class text)."""
        if self.pending >= max(self.PENDING, len(self.merged["bytes"])):
            self.merge()

    def merge(self) -> dict[str, np.ndarray]:
        if not self.parts:
            return self.merged
        old = len(self.merged["bytes"])
        cols = {c: np.concatenate([self.merged[c]] + [p[c] for p in self.parts]).astype(t, copy=False)
                for c, t in self.dtypes.items()}
        self.merged, self.parts, self.pending = self._empty(), [], 0  # freed before the grouping's arrays
        if not len(cols["bytes"]):
            self.merged = cols
            return cols
        # room for the groups open before and half the pending rows' (most are the same keys
        # again; more are grouped again with room for all). A group's first row tells whether
        # it was open before: the merged table's rows come first.
        first, sums, _ = group_sums(self._key_columns(cols), [cols[c] for c in _SUMS],
                                    room=old + (len(cols["bytes"]) - old) // 2 + 1024)
        del cols["bytes"], cols["packets"], cols["flows"]
        out = {c: cols.pop(c)[first] for c in self.keys}  # each input column freed once taken from
        out.update(zip(_SUMS, sums))
        if len(first) > self.ceiling:
            was_open = first < old
            room = max(self.ceiling - int(was_open.sum()), 0)
            new = np.flatnonzero(~was_open)  # in the order they arrived (groups come in no set order)
            keep = was_open.copy()
            keep[new[np.argsort(first[new], kind="stable")[:room]]] = True
            self.dropped += int((~keep).sum())
            out = {c: v[keep] for c, v in out.items()}
        self.merged = out
        return out

    def _key_columns(self, cols: dict[str, np.ndarray]) -> list[tuple[np.ndarray, int]]:
        """The key columns as `group_rows` takes them, narrow enough for one packed sort in
        the usual case: minutes from the first one, small integers as they are, a host
        (hi, lo) as one code (`host_codes`)."""
        out = []
        for c in self.keys:
            col = cols[c]
            if c == "lo":
                continue
            if c == "minute":
                m0 = int(col.min()) if len(col) else 0
                rel = col - m0
                # bins hold the first second of their minute: as minute numbers the key is 6 bits
                # narrower (restored rows may hold any second; then the seconds are kept)
                out.append(_small(rel // BIN if not (rel % BIN).any() else rel))
            elif c == "hi":
                out.append(host_codes(cols["hi"], cols["lo"]))
            else:
                out.append(_small(col))
        return out

    def detach(self) -> Bins:
        """Move every open bin, unmerged, into a new `Bins` and start empty: O(1), so the flush
        takes the bins on the event loop and merges them in a thread (store/columns.py)."""
        out = Bins(self.ceiling, dict(zip(self.keys, (self.dtypes[k] for k in self.keys))))
        out.merged, out.parts, out.pending = self.merged, self.parts, self.pending
        self.merged, self.parts, self.pending = self._empty(), [], 0
        return out

    def take(self, mask_of=None) -> dict[str, np.ndarray]:
        """Remove and return the bins `mask_of(columns)` selects (all when None)."""
        cols = self.merge()
        if mask_of is None:
            self.merged = self._empty()
            return cols
        mask = mask_of(cols)
        self.merged = {c: v[~mask] for c, v in cols.items()}
        return {c: v[mask] for c, v in cols.items()}

    def __len__(self) -> int:
        return len(self.merge()["bytes"])


class Aggregator:
    COLUMNS = frozenset(("bytes", "packets", "end", "in_if", "out_if"))  # what `add` reads of a batch

    def __init__(self, services: list[str], categories: list[str], max_open_bins: int = 2_000_000,
                 max_age: float = 86400.0, max_skew: float = 300.0):
        self.services = services  # service index -> id
        self.categories = categories  # service index -> category
        self.max_open_bins = max_open_bins
        self.max_age = max_age
        self.max_skew = max_skew
        self.bins = Bins(max_open_bins, HOST_KEYS)
        self.if_bins = Bins(max_open_bins, IF_KEYS)
        self.exporter_names: list[str] = []  # global exporter index -> name (bounded upstream)
        self._exporter_index: dict[str, int] = {}
        self.totals = Totals()
        # cumulative (bytes, packets, flows) per global exporter index and service index
        self.exporter_totals = np.zeros((0, len(services), 3), np.uint64)
        # cumulative (bytes, packets, flows) per service index and classification method
        self.method_totals = np.zeros((len(services), len(METHODS), 3), np.uint64)
        self.drained_dropped = 0  # dropped by the ceiling when a flush merged what it drained (App.flush)
        self.audit = None  # the flow audit log's buffer (collector.auditlog), set by the pipeline when on

    def set_services(self, services: list[str], categories: list[str]) -> None:
        """A reloaded catalogue: indexes of existing services stay, new ones are appended."""
        self.services, self.categories = services, categories
        self._grow_totals()

    def _grow_totals(self) -> None:
        e, s, _ = self.exporter_totals.shape
        grow_e, grow_s = len(self.exporter_names) - e, len(self.services) - s
        if grow_e > 0 or grow_s > 0:
            t = np.zeros((e + max(grow_e, 0), s + max(grow_s, 0), 3), np.uint64)
            t[:e, :s] = self.exporter_totals
            self.exporter_totals = t
        if len(self.services) > len(self.method_totals):
            t = np.zeros((len(self.services), len(METHODS), 3), np.uint64)
            t[:len(self.method_totals)] = self.method_totals
            self.method_totals = t

    def _count_methods(self, services: np.ndarray, methods: np.ndarray, b, p, f) -> None:
        self._grow_totals()
        for col, v in enumerate((b, p, f)):
            np.add.at(self.method_totals[:, :, col], (services, methods), np.asarray(v, np.uint64))

    def method_figures(self) -> dict:
        """Bytes and flows per (service, category, method) since start, as metric families in
        plain data (collector.metrics.Snapshot.figures)."""
        out = {}
        for col, what in ((0, "bytes"), (2, "flows")):
            values = {}
            for s, m in zip(*np.nonzero(self.method_totals[:, :, 2])):
                values[(self.services[s], self.categories[s], METHODS[m])] = int(self.method_totals[s, m, col])
            out[f"imflow_classified_{what}"] = (
                "counter", f"{what.capitalize()} per service and how the flows were classified (method: port, "
                "prefix, asn, dns, name, app-id; none for other)", ["service", "category", "method"], values)
        return out

    def _count(self, exporters: np.ndarray, services: np.ndarray, b, p, f) -> None:
        """Add sums of groups (global exporter index, service index) to the cumulative totals."""
        self._grow_totals()
        for col, v in enumerate((b, p, f)):
            np.add.at(self.exporter_totals[:, :, col], (exporters, services), np.asarray(v, np.uint64))

    # per service over every exporter
    service_bytes = property(lambda self: self.exporter_totals[:, :, 0].sum(axis=0, dtype=np.uint64))
    service_packets = property(lambda self: self.exporter_totals[:, :, 1].sum(axis=0, dtype=np.uint64))
    service_flows = property(lambda self: self.exporter_totals[:, :, 2].sum(axis=0, dtype=np.uint64))

    def service_totals(self) -> dict[tuple[str, str, str], tuple[int, int, int]]:
        """(exporter, service, category) -> (bytes, packets, flows) since start, for the pairs
        that have had traffic."""
        out = {}
        for e, s in zip(*np.nonzero(self.exporter_totals[:, :, 2] | self.exporter_totals[:, :, 0])):
            b, p, f = self.exporter_totals[e, s].tolist()
            out[(self.exporter_names[e], self.services[s], self.categories[s])] = (b, p, f)
        return out

    def add(self, batch: FlowBatch, cls: Classified, exporters: np.ndarray | int, exporter_names: list[str],
            now: float, violations: np.ndarray | None = None) -> None:
        """Add one classified batch. `exporters[i]` indexes `exporter_names` for flow i, or
        `exporters` is that index for every flow (a batch from one exporter: no column of it);
        `violations[i]` marks flows of blocked services from internal hosts."""
        if not len(batch):
            return
        kernel = kernels.compiled
        got = None if kernel is None else self._reduce_compiled(kernel, batch, cls, exporters, exporter_names, now,
                                                                violations)
        hosts, ifs = got or self._reduce(batch, cls, exporters, exporter_names, now, violations)
        glob = np.array([self._exporter(name) for name in exporter_names], np.uint32)
        for groups in (hosts, ifs or {}):  # the batch's exporter codes -> ours
            if groups:
                groups["exporter"] = glob[groups["exporter"]]
        self._totals(kernel, hosts)
        self.bins.append(hosts)
        # per interface and direction: the flow's bytes count "in" on in_if and "out" on out_if;
        # the groups by (minute, exporter, service, in_if, out_if), which are few, go to the
        # interface bins once per direction (merged there)
        if not ifs:
            return
        for name, direction in (("in_if", 0), ("out_if", 1)):
            known = np.flatnonzero(ifs[name])  # interface 0: not given
            if known.size:
                self.if_bins.append({"minute": ifs["minute"][known], "exporter": ifs["exporter"][known],
                                     "service": ifs["service"][known], "ifindex": ifs[name][known],
                                     "direction": np.full(known.size, direction, np.uint8),
                                     "bytes": ifs["bytes"][known], "packets": ifs["packets"][known],
                                     "flows": ifs["flows"][known]})

    def _totals(self, kernel, hosts: dict[str, np.ndarray]) -> None:
        """Add the batch's host groups to the running totals by (exporter, service) and by
        (service, method): in one compiled pass (`totals`, collector/kernels/_aggregate.c),
        else by (exporter, service, method) first, a few dozen groups of the thousands, so the
        scattered adds (np.add.at, ~9 ns an item) stay few."""
        if kernel is not None:
            self._grow_totals()
            kernel.totals(*(np.ascontiguousarray(hosts[c], t) for c, t in _TOTALS_IN), self.exporter_totals,
                          self.method_totals)
            return
        gexporter, gservice, gmethod = hosts["exporter"], hosts["service"], hosts["flag"] >> np.uint8(2)
        t_first, (t_b, t_p, t_f), _ = group_sums(
            [(gexporter, len(self.exporter_names)), (gservice, len(self.services)), (gmethod, 64)],
            [hosts["bytes"], hosts["packets"], hosts["flows"]])
        t_service = gservice[t_first]
        self._count(gexporter[t_first], t_service, t_b, t_p, t_f)
        self._count_methods(t_service, gmethod[t_first], t_b, t_p, t_f)

    def _reduce_compiled(self, kernel, batch: FlowBatch, cls: Classified, exporters, exporter_names, now: float,
                         violations) -> tuple | None:
        """The batch's host and interface groups by the compiled kernel (`bins`,
        collector/kernels/_aggregate.c): one pass over the flows, two hash tables. None where it
        does not apply (times or codes it cannot key, keys made to collide): `_reduce` then."""
        lo, hi, now = now - self.max_age, now + self.max_skew, float(now)
        if batch.end.dtype != np.float64 or len(exporter_names) > 1 << 16 \
                or not (abs(lo) < 1e11 and abs(hi) < 1e11 and abs(now) < 1e11):
            return None
        base = math.floor(min(lo, now)) // BIN
        if math.floor(max(hi, now)) // BIN - base >= 1 << 24:
            return None
        ifs = (None, None) if _unset(batch.in_if) and _unset(batch.out_if) else \
            (np.ascontiguousarray(batch.in_if, np.uint32), np.ascontiguousarray(batch.out_if, np.uint32))
        got = kernel.bins(
            np.ascontiguousarray(batch.end), lo, hi, now, base,
            None if cls.method is None else np.ascontiguousarray(cls.method, np.uint8),
            np.ascontiguousarray(cls.has_host, bool).view(np.uint8),
            None if violations is None else np.ascontiguousarray(violations, bool).view(np.uint8),
            np.ascontiguousarray(cls.host), np.ascontiguousarray(cls.service, np.uint16),
            int(exporters) if not isinstance(exporters, np.ndarray) else np.ascontiguousarray(exporters, np.uint32),
            np.ascontiguousarray(batch.bytes, _U8), np.ascontiguousarray(batch.packets, _U8), *ifs, SEED)
        if got is None:
            return None
        clamped, hosts, k, if_groups, j = got
        if clamped:
            self._clamped(batch.end, now, exporters, exporter_names)
        return _columns(hosts, k, _HOST_GROUPS), _columns(if_groups, j, _IF_GROUPS) if j else None

    def _reduce(self, batch: FlowBatch, cls: Classified, exporters, exporter_names, now: float, violations):
        """What `_reduce_compiled` makes, in NumPy (with `group_sums`' compiled table when the
        kernels are on): -> (host groups, interface groups or None) as columns, exporters as
        the batch's codes."""
        one = not isinstance(exporters, np.ndarray)
        service = cls.service
        mrel, m0, mcard, flag = self._bin_columns(batch, cls, exporters, exporter_names, now, violations)
        hosts, hcard = host_codes(cls.host["hi"], cls.host["lo"], cls.has_host)
        by_exporter = [] if one else [(exporters, len(exporter_names))]  # a key column only when it varies
        ncard = len(self.services)
        cols = [(mrel, mcard), *by_exporter, (service, ncard), (flag, 32), (hosts, hcard)]
        if not fits(cols):
            cols[-1] = dense(hosts, hcard)

        def common(first: np.ndarray, b, p, f) -> dict[str, np.ndarray]:
            return {"minute": (mrel[first].astype(np.int64) + m0) * BIN,  # int64 before the multiply (2038)
                    "exporter": (np.full(len(first), exporters, np.uint32) if one
                                 else exporters[first].astype(np.uint32)),
                    "service": service[first].astype(np.uint16), "bytes": b, "packets": p, "flows": f}
        first, *sums = _sums(batch, cols)
        host = cls.host[first]
        out = {**common(first, *sums), "hi": host["hi"], "lo": host["lo"], "flag": flag[first]}
        in_if, out_if = batch.in_if, batch.out_if
        if not (in_if.any() or out_if.any()):
            return out, None
        first, *sums = _sums(batch, [(mrel, mcard), *by_exporter, (service, ncard), _small(in_if), _small(out_if)])
        return out, {**common(first, *sums), "in_if": in_if[first], "out_if": out_if[first]}

    def _bin_columns(self, batch: FlowBatch, cls: Classified, exporters, exporter_names, now: float, violations):
        """Each flow's minute and flag: -> (minutes from the first, the first, how many, flags)."""
        end = batch.end
        bad = (end >= now - self.max_age) & (end <= now + self.max_skew)  # NaN fails both
        np.logical_not(bad, out=bad)
        if bad.any():
            end = np.where(bad, now, end)
            self._clamped(batch.end, now, exporters, exporter_names, bad)
        minute = np.floor(end).astype(np.int64) // BIN  # 3x faster than float floor division
        # bit 0: has a host; 1: a violation; 2-4: how the flow was classified (classifier.METHODS).
        # Bools read as uint8 in place: one pass a bit, no converted copies
        if cls.method is not None:
            flag = np.left_shift(np.asarray(cls.method, np.uint8), np.uint8(2))
            flag |= np.asarray(cls.has_host, bool).view(np.uint8)
        else:
            flag = cls.has_host.astype(np.uint8)
        if violations is not None:
            flag |= np.left_shift(np.asarray(violations, bool).view(np.uint8), np.uint8(1))
        m0 = int(minute.min())
        mrel = minute - m0
        return mrel, m0, int(mrel.max()) + 1, flag

    def _clamped(self, end: np.ndarray, now: float, exporters, exporter_names, bad=None) -> None:
        """Count the flows whose end times were replaced by `now`, per exporter."""
        if bad is None:
            bad = ~((end >= now - self.max_age) & (end <= now + self.max_skew))
        self.totals.clamped += int(bad.sum())
        exporters = np.broadcast_to(exporters, bad.shape)  # one index for every flow, or a column
        for i, n in enumerate(np.bincount(exporters[bad], minlength=len(exporter_names)).tolist()):
            if n:
                by = self.totals.clamped_by
                by[exporter_names[i]] = by.get(exporter_names[i], 0) + n

    def _exporter(self, name: str) -> int:
        i = self._exporter_index.get(name)
        if i is None:
            i = self._exporter_index[name] = len(self.exporter_names)
            self.exporter_names.append(name)
        return i

    def settle(self) -> None:
        """Between batches: merge the open bins' pending parts when they are many (`Bins`)."""
        self.bins.settle()
        self.if_bins.settle()

    def open_bins(self) -> int:
        return len(self.bins) + len(self.if_bins)  # merges, so `dropped_bins` is current after it

    @property
    def dropped_bins(self) -> int:
        """Bins lost to the open-bin ceiling, as of the last merge."""
        return self.bins.dropped + self.if_bins.dropped + self.drained_dropped

    def drain_columns(self, before: float | None = None) -> BinColumns:
        """Remove the bins that started before `before` (None: all of them, without a pass over
        them: what the flush does on the event loop) and return them as columns; their rows,
        host names and merge are made where they are used, off the loop (store/columns.py)."""
        if before is None:
            source = self.bins.detach()
        else:
            limit = int(before // BIN) * BIN
            source = self.bins.take(lambda c: c["minute"] < limit)
        return BinColumns(source, self.exporter_names, self.services, self.categories)

    def drain_interface_columns(self, name_of=None) -> IfColumns:
        """Remove every interface bin, as columns; `name_of(exporter, if_index)` names them
        (once per distinct interface, where the rows are made)."""
        return IfColumns(self.if_bins.detach(), self.exporter_names, self.services, self.categories, name_of)

    def drain(self, before: float | None = None) -> list[Row]:
        """`drain_columns` as rows."""
        return self.drain_columns(before).rows()

    def drain_interfaces(self, name_of=None) -> list[IfRow]:
        """`drain_interface_columns` as rows."""
        return self.drain_interface_columns(name_of).rows()

    def absorb(self, rows: list[Row] | BinColumns, if_rows: list[IfRow] | IfColumns = (), audit_rows: list = ()) -> None:
        """Bins aggregated elsewhere (a worker process): add them, and count their traffic;
        its audit log rows go to our audit buffer. Columns (what a worker's flush sends) are
        added without a pass per row."""
        if audit_rows and self.audit is not None:
            self.audit.restore(audit_rows)
        if isinstance(rows, BinColumns):
            if not rows.empty:
                cols = self._local(rows)
                b, p, f = cols["bytes"], cols["packets"], cols["flows"]
                self._count(cols["exporter"].astype(np.intp), cols["service"].astype(np.intp), b, p, f)
                methods = (cols["flag"] >> np.uint8(2)).astype(np.intp)
                known = methods < len(METHODS)
                self._count_methods(cols["service"][known].astype(np.intp), methods[known], b[known], p[known],
                                    f[known])
        elif rows:
            index = {s: i for i, s in enumerate(self.services)}
            self._count(np.array([self._exporter(r.exporter) for r in rows], np.intp),
                        np.array([index.get(r.service, 0) for r in rows], np.intp),
                        [r.bytes for r in rows], [r.packets for r in rows], [r.flows for r in rows])
            self._count_methods(np.array([index.get(r.service, 0) for r in rows], np.intp),
                                np.array([_METHOD_CODE.get(r.method, 0) for r in rows], np.intp),
                                [r.bytes for r in rows], [r.packets for r in rows], [r.flows for r in rows])
        self.restore(rows, if_rows)

    def _local(self, bins: BinColumns | IfColumns) -> dict[str, np.ndarray]:
        """Drained columns with their exporter and service codes made ours (they may come from
        another aggregator: a worker's, or ours before a reload appended services)."""
        cols = dict(bins.columns())
        index = {s: i for i, s in enumerate(self.services)}
        exporters = np.array([self._exporter(e) for e in bins.exporters] or [0], np.uint32)
        services = np.array([index.get(s, 0) for s in bins.services] or [0], np.uint16)
        cols["exporter"] = exporters[cols["exporter"]]
        cols["service"] = services[cols["service"]]
        return cols

    def restore(self, rows: list[Row] | BinColumns, if_rows: list[IfRow] | IfColumns = ()) -> None:
        """Put rows back that the store refused (they are retried at the next flush), or add
        a worker's. Over the open-bin ceiling, what does not fit is dropped and counted."""
        if isinstance(if_rows, IfColumns):
            if not if_rows.empty:
                self.if_bins.append(self._local(if_rows))
            if_rows = ()
        if isinstance(rows, BinColumns):
            if not rows.empty:
                cols = self._local(rows)
                # a row handed to the store without a method (BinColumns.from_rows) comes back as "none"
                no_method = (cols["flag"] >> np.uint8(2)) >= len(METHODS)
                cols["flag"] = np.where(no_method, cols["flag"] & np.uint8(3), cols["flag"]).astype(np.uint8)
                self.bins.append(cols)
            rows = ()
        index = {s: i for i, s in enumerate(self.services)}
        if if_rows:
            self.if_bins.append({
                "minute": np.array([r.bin for r in if_rows], np.int64),
                "exporter": np.array([self._exporter(r.exporter) for r in if_rows], np.uint32),
                "service": np.array([index.get(r.service, 0) for r in if_rows], np.uint16),
                "ifindex": np.array([r.if_index for r in if_rows], np.uint32),
                "direction": np.array([DIRECTIONS.index(r.direction) for r in if_rows], np.uint8),
                "bytes": np.array([r.bytes for r in if_rows], _U8),
                "packets": np.array([r.packets for r in if_rows], _U8),
                "flows": np.array([r.flows for r in if_rows], _U8)})
        if not rows:
            return
        hosts = [addr_from_str(r.host) if r.host else (0, 0) for r in rows]
        self.bins.append({
            "minute": np.array([r.bin for r in rows], np.int64),
            "exporter": np.array([self._exporter(r.exporter) for r in rows], np.uint32),
            "service": np.array([index.get(r.service, 0) for r in rows], np.uint16),
            "hi": np.array([h[0] for h in hosts], _U8), "lo": np.array([h[1] for h in hosts], _U8),
            "flag": np.array([bool(r.host) | (r.violation << 1) | (_METHOD_CODE.get(r.method, 0) << 2)
                              for r in rows], np.uint8),
            "bytes": np.array([r.bytes for r in rows], _U8), "packets": np.array([r.packets for r in rows], _U8),
            "flows": np.array([r.flows for r in rows], _U8)})
