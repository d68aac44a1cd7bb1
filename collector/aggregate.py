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

BIN = 60
_U8 = np.uint64


@dataclass(slots=True, frozen=True)
class Row:
    """One closed bin, as the store takes it (collector.store.BinRow has the same fields)."""

    bin: int
    exporter: str
    service: str
    category: str
    host: str
    bytes: int
    packets: int
    flows: int


@dataclass
class Totals:
    """Cumulative figures since start, read by the metrics snapshot."""

    service: Counter = field(default_factory=Counter)  # service index -> [bytes, packets, flows]
    flows: int = 0
    clamped: int = 0  # flows whose timestamps were replaced by the receive time
    dropped_bins: int = 0  # bins lost to the open-bin ceiling


class Aggregator:
    def __init__(self, services: list[str], categories: list[str], max_open_bins: int = 2_000_000,
                 max_age: float = 86400.0, max_skew: float = 300.0):
        self.services = services  # service index -> id
        self.categories = categories  # service index -> category
        self.max_open_bins = max_open_bins
        self.max_age = max_age
        self.max_skew = max_skew
        self.bins: dict[tuple, list[int]] = {}  # (minute start, exporter, service idx, hi, lo, has_host)
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
            now: float) -> None:
        """Add one classified batch. `exporters[i]` indexes `exporter_names` for flow i."""
        n = len(batch)
        if not n:
            return
        end = batch.end
        bad = (end < now - self.max_age) | (end > now + self.max_skew) | ~np.isfinite(end)
        if bad.any():
            end = np.where(bad, now, end)
            self.totals.clamped += int(bad.sum())
        minute = (end // BIN).astype(np.int64)
        mbase = int(minute.min())
        minute -= mbase
        service = cls.service.astype(_U8)
        hosts, host_idx = np.unique(cls.host, return_inverse=True)
        host_idx = host_idx.ravel().astype(_U8)
        n_svc, n_hosts = _U8(len(self.services)), _U8(len(hosts))
        n_exp = _U8(int(exporters.max()) + 1)
        key = ((minute.astype(_U8) * n_exp + exporters.astype(_U8)) * n_svc + service) * n_hosts + host_idx
        order = np.argsort(key, kind="stable")
        skey = key[order]
        starts = np.flatnonzero(np.concatenate(([True], skey[1:] != skey[:-1])))
        sums_b = np.add.reduceat(batch.bytes[order], starts)
        sums_p = np.add.reduceat(batch.packets[order], starts)
        counts = np.diff(np.append(starts, n))
        np.add.at(self.service_bytes, service, batch.bytes)
        np.add.at(self.service_packets, service, batch.packets)
        np.add.at(self.service_flows, service, 1)
        self.totals.flows += n

        first = order[starts]
        k_min = (minute[first] + mbase) * BIN
        k_exp = exporters[first]
        k_svc = service[first]
        k_host = host_idx[first]
        has = cls.has_host
        k_has = has[first]
        bins = self.bins
        h_hi, h_lo = hosts["hi"], hosts["lo"]
        for i in range(len(starts)):
            h = int(k_host[i])
            k = (int(k_min[i]), exporter_names[int(k_exp[i])], int(k_svc[i]),
                 int(h_hi[h]), int(h_lo[h]), bool(k_has[i]))
            acc = bins.get(k)
            if acc is None:
                if len(bins) >= self.max_open_bins:
                    self.totals.dropped_bins += 1
                    continue
                bins[k] = [int(sums_b[i]), int(sums_p[i]), int(counts[i])]
            else:
                acc[0] += int(sums_b[i])
                acc[1] += int(sums_p[i])
                acc[2] += int(counts[i])

    def drain(self, before: float | None = None) -> list[Row]:
        """Remove and return the bins that started before `before` (None: all of them)."""
        if before is None:
            taken, self.bins = self.bins, {}
        else:
            limit = int(before // BIN) * BIN
            taken = {k: v for k, v in self.bins.items() if k[0] < limit}
            for k in taken:
                del self.bins[k]
        return [Row(k[0], k[1], self.services[k[2]], self.categories[k[2]],
                    addr_to_str(k[3], k[4]) if k[5] else "", v[0], v[1], v[2])
                for k, v in taken.items()]

    def restore(self, rows: list[Row]) -> None:
        """Put rows back that the store refused (they are retried at the next flush)."""
        index = {s: i for i, s in enumerate(self.services)}
        for r in rows:
            hi, lo = addr_from_str(r.host) if r.host else (0, 0)
            k = (r.bin, r.exporter, index.get(r.service, 0), hi, lo, bool(r.host))
            acc = self.bins.setdefault(k, [0, 0, 0])
            acc[0] += r.bytes
            acc[1] += r.packets
            acc[2] += r.flows
