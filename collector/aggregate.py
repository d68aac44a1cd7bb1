"""Aggregation: classified flow batches -> 1-minute bins keyed (bin, exporter, service, host).

Pure (DESIGN.md §1): no clock, no I/O. Within a batch the flows are reduced in NumPy (one
sort of a composite integer key, `np.add.reduceat` for exact sums); only the distinct keys of
a batch reach the Python dict of open bins. `drain(before)` hands closed bins to the flush.

A flow belongs to the minute of its end time. Times an exporter gets badly wrong (more than
`max_age` in the past or `max_skew` in the future of the receive time) are replaced by the
receive time and counted, so a router with a broken clock cannot open bins in 1970.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from collector.classify.classifier import Classified
from collector.netflow.batch import FlowBatch, addr_from_str, addr_to_str
from collector.store.rows import BinRow, IfRow

BIN = 60
_U8 = np.uint64


DIRECTIONS = ("in", "out")
Row = BinRow  # what drain() hands to the store


@dataclass
class Totals:
    """Cumulative figures since start, read by the metrics snapshot."""

    service: Counter = field(default_factory=Counter)  # service index -> [bytes, packets, flows]
    flows: int = 0
    clamped: int = 0  # flows whose timestamps were replaced by the receive time
    dropped_bins: int = 0  # bins lost to the open-bin ceiling


def unique_addr(addr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """np.unique(addr, return_inverse=True) for ADDR columns, on integer sorts: a structured
    (void) sort is several times slower, and all-IPv4 batches need only the low half."""
    hi, lo = addr["hi"], addr["lo"]
    if not hi.any():
        u, inverse = np.unique(lo, return_inverse=True)
        out = np.zeros(len(u), addr.dtype)
        out["lo"] = u
        return out, inverse.ravel()
    order = np.lexsort((lo, hi))
    shi, slo = hi[order], lo[order]
    new = np.concatenate(([True], (shi[1:] != shi[:-1]) | (slo[1:] != slo[:-1])))
    inverse = np.empty(len(addr), np.intp)
    inverse[order] = np.cumsum(new) - 1
    return addr[order[new]], inverse


def _group(keys: list[tuple[np.ndarray, int | None]], nbytes: np.ndarray, npackets: np.ndarray):
    """Group rows by the composite of small non-negative integer `keys` (each with its
    cardinality, None = max + 1): -> (a row index per group, bytes, packets, flows) sums,
    exact in uint64."""
    key = np.zeros(len(nbytes), _U8)
    for col, size in keys:
        col = col.astype(_U8)
        key = key * _U8(size if size is not None else int(col.max()) + 1) + col
    order = np.argsort(key, kind="stable")
    skey = key[order]
    starts = np.flatnonzero(np.concatenate(([True], skey[1:] != skey[:-1])))
    counts = np.diff(np.append(starts, len(key)))
    return (order[starts], np.add.reduceat(nbytes[order], starts), np.add.reduceat(npackets[order], starts),
            counts)


class Aggregator:
    def __init__(self, services: list[str], categories: list[str], max_open_bins: int = 2_000_000,
                 max_age: float = 86400.0, max_skew: float = 300.0):
        self.services = services  # service index -> id
        self.categories = categories  # service index -> category
        self.max_open_bins = max_open_bins
        self.max_age = max_age
        self.max_skew = max_skew
        self.bins: dict[tuple, list[int]] = {}  # (minute, exporter, service idx, hi, lo, flags)
        self.if_bins: dict[tuple, list[int]] = {}  # (minute, exporter, service idx, if_index, direction)
        self.totals = Totals()
        self.service_bytes = np.zeros(len(services), np.uint64)
        self.service_packets = np.zeros(len(services), np.uint64)
        self.service_flows = np.zeros(len(services), np.uint64)

    def set_services(self, services: list[str], categories: list[str]) -> None:
        """A reloaded catalogue: indexes of existing services stay, new ones are appended."""
        self.services, self.categories = services, categories
        grow = len(services) - len(self.service_bytes)
        if grow > 0:
            pad = np.zeros(grow, np.uint64)
            self.service_bytes = np.concatenate([self.service_bytes, pad])
            self.service_packets = np.concatenate([self.service_packets, pad])
            self.service_flows = np.concatenate([self.service_flows, pad])

    def add(self, batch: FlowBatch, cls: Classified, exporters: np.ndarray, exporter_names: list[str],
            now: float, violations: np.ndarray | None = None) -> None:
        """Add one classified batch. `exporters[i]` indexes `exporter_names` for flow i;
        `violations[i]` marks flows of blocked services from internal hosts."""
        n = len(batch)
        if not n:
            return
        end = batch.end
        bad = (end < now - self.max_age) | (end > now + self.max_skew) | ~np.isfinite(end)
        if bad.any():
            end = np.where(bad, now, end)
            self.totals.clamped += int(bad.sum())
        minute = (end // BIN).astype(np.int64)
        service = cls.service.astype(_U8)
        np.add.at(self.service_bytes, service, batch.bytes)
        np.add.at(self.service_packets, service, batch.packets)
        np.add.at(self.service_flows, service, 1)
        self.totals.flows += n

        hosts, host_idx = unique_addr(cls.host)
        flag = cls.has_host.astype(_U8)
        if violations is not None:
            flag |= violations.astype(_U8) << _U8(1)
        first, sums_b, sums_p, counts = _group(
            [(minute - minute.min(), None), (exporters, None), (service, len(self.services)),
             (host_idx, len(hosts)), (flag, 4)], batch.bytes, batch.packets)
        h_hi, h_lo = hosts["hi"].tolist(), hosts["lo"].tolist()
        keys = [(m * BIN, exporter_names[e], sv, h_hi[h], h_lo[h], f)
                for m, e, sv, h, f in zip(minute[first].tolist(), exporters[first].tolist(),
                                          service[first].tolist(), host_idx[first].tolist(),
                                          flag[first].tolist())]
        self._merge(self.bins, keys, sums_b, sums_p, counts)

        # per interface and direction: the flow's bytes count "in" on in_if and "out" on out_if
        for ifs, direction in ((batch.in_if, 0), (batch.out_if, 1)):
            known = np.flatnonzero(ifs != 0)
            if not known.size:
                continue
            ifaces, if_idx = np.unique(ifs[known], return_inverse=True)
            m = minute[known]
            first, sums_b, sums_p, counts = _group(
                [(m - m.min(), None), (exporters[known], None), (service[known], len(self.services)),
                 (if_idx.ravel(), len(ifaces))], batch.bytes[known], batch.packets[known])
            sel = known[first]
            keys = [(mm * BIN, exporter_names[e], sv, int(ifaces[i]), direction)
                    for mm, e, sv, i in zip(minute[sel].tolist(), exporters[sel].tolist(),
                                            service[sel].tolist(), if_idx.ravel()[first].tolist())]
            self._merge(self.if_bins, keys, sums_b, sums_p, counts)

    def _merge(self, bins: dict, keys: list, sums_b, sums_p, counts) -> None:
        for k, b, p, c in zip(keys, sums_b.tolist(), sums_p.tolist(), counts.tolist()):
            acc = bins.get(k)
            if acc is None:
                if len(self.bins) + len(self.if_bins) >= self.max_open_bins:
                    self.totals.dropped_bins += 1
                    continue
                bins[k] = [b, p, c]
            else:
                acc[0] += b
                acc[1] += p
                acc[2] += c

    def drain(self, before: float | None = None) -> list[Row]:
        """Remove and return the bins that started before `before` (None: all of them)."""
        if before is None:
            taken, self.bins = self.bins, {}
        else:
            limit = int(before // BIN) * BIN
            taken = {k: v for k, v in self.bins.items() if k[0] < limit}
            for k in taken:
                del self.bins[k]
        names: dict[tuple[int, int], str] = {}  # hosts repeat across services and minutes
        out = []
        for k, v in taken.items():
            host = ""
            if k[5] & 1:
                host = names.get((k[3], k[4]))
                if host is None:
                    host = names[(k[3], k[4])] = addr_to_str(k[3], k[4])
            out.append(Row(k[0], k[1], self.services[k[2]], self.categories[k[2]], host, v[0], v[1], v[2],
                           bool(k[5] & 2)))
        return out

    def drain_interfaces(self, name_of=None) -> list[IfRow]:
        """Remove and return every interface bin; `name_of(exporter, if_index)` names them."""
        taken, self.if_bins = self.if_bins, {}
        out = []
        for (b, exporter, svc, ifindex, direction), v in taken.items():
            name = (name_of(exporter, ifindex) if name_of else None) or ""
            out.append(IfRow(b, exporter, ifindex, name, DIRECTIONS[direction], self.services[svc],
                             self.categories[svc], v[0], v[1], v[2]))
        return out

    def absorb(self, rows: list[Row], if_rows: list[IfRow] = ()) -> None:
        """Bins aggregated elsewhere (a worker process): add them, and count their traffic."""
        index = {s: i for i, s in enumerate(self.services)}
        for r in rows:
            i = index.get(r.service, 0)
            self.service_bytes[i] += r.bytes
            self.service_packets[i] += r.packets
            self.service_flows[i] += r.flows
            self.totals.flows += r.flows
        self.restore(rows, if_rows)

    def restore(self, rows: list[Row], if_rows: list[IfRow] = ()) -> None:
        """Put rows back that the store refused (they are retried at the next flush).
        Over the open-bin ceiling the oldest are dropped and counted."""
        room = self.max_open_bins - len(self.bins) - len(self.if_bins)
        if len(rows) + len(if_rows) > room:
            keep = max(room, 0)
            ordered = sorted(rows, key=lambda r: r.bin, reverse=True)
            self.totals.dropped_bins += len(rows) + len(if_rows) - keep
            rows = ordered[:keep]
            if_rows = sorted(if_rows, key=lambda r: r.bin, reverse=True)[:max(keep - len(rows), 0)]
        index = {s: i for i, s in enumerate(self.services)}
        for r in if_rows:
            k = (r.bin, r.exporter, index.get(r.service, 0), r.if_index, DIRECTIONS.index(r.direction))
            acc = self.if_bins.setdefault(k, [0, 0, 0])
            acc[0] += r.bytes
            acc[1] += r.packets
            acc[2] += r.flows
        for r in rows:
            hi, lo = addr_from_str(r.host) if r.host else (0, 0)
            k = (r.bin, r.exporter, index.get(r.service, 0), hi, lo, bool(r.host) | (r.violation << 1))
            acc = self.bins.setdefault(k, [0, 0, 0])
            acc[0] += r.bytes
            acc[1] += r.packets
            acc[2] += r.flows
