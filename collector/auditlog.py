"""The flow audit log's intake side: flows of the watched categories, selected per batch with
NumPy masks and held as columns until the flush (docs/audit.md). Pure: no clock, no I/O.

Only the selected rows are copied out of a batch (a few columns, one fancy index each); at the
flush they are one `AuditBatch` of columns, which the SQLite store keeps as it is and other
backends read as `AuditRow`s. What is held is
bounded by `max_rows` (also while the store refuses writes): rows past it are dropped and
counted in `dropped` (the metric `imflow_evictions{table="audit-log"}`), never silently.
"""

from __future__ import annotations

import numpy as np

from collector.classify.classifier import Classified
from collector.netflow.batch import FlowBatch
from collector.store.audit import COLUMNS, AuditBatch

DEFAULT_CATEGORIES = ("im", "p2p", "voip", "collab")


class AuditBuffer:
    COLUMNS = frozenset(("start", "end", "src_addr", "dst_addr", "src_port", "dst_port", "proto", "bytes",
                         "packets", "in_if", "out_if"))  # what `add` reads of a batch

    def __init__(self, categories=DEFAULT_CATEGORIES, max_rows: int = 1_000_000,
                 max_age: float = 86400.0, max_skew: float = 300.0):
        self.categories = frozenset(categories)
        self.max_rows = max_rows
        self.max_age, self.max_skew = max_age, max_skew  # as the aggregator's time clamp
        self.services: list[str] = []
        self.service_categories: list[str] = []
        self.watch = np.zeros(0, bool)  # service index -> watched
        self.exporters: list[str] = []  # exporter index -> address (bounded by the decoder's sessions)
        self._exporter_index: dict[str, int] = {}
        self.parts: list[dict[str, np.ndarray]] = []
        self.restored: list[AuditBatch] = []  # what the store refused (or a worker sent), for the next flush
        self.held = 0
        self.dropped = 0  # rows lost to max_rows since start
        self.kept = 0  # rows selected since start

    def set_services(self, services: list[str], categories: list[str]) -> None:
        """The catalogue's services by index (a reload flushes first, so held rows keep theirs)."""
        self.services, self.service_categories = list(services), list(categories)
        self.watch = np.array([c in self.categories for c in categories], bool)

    def exporter(self, address: str) -> int:
        i = self._exporter_index.get(address)
        if i is None:
            i = self._exporter_index[address] = len(self.exporters)
            self.exporters.append(address)
        return i

    def _room(self, n: int) -> int:
        room = max(self.max_rows - self.held, 0)
        if n > room:
            self.dropped += n - room
        return min(n, room)

    def select(self, cls: Classified) -> np.ndarray:
        """Indexes of the batch's flows of watched services."""
        if not len(self.watch):
            return np.zeros(0, np.intp)
        return np.flatnonzero(self.watch[cls.service])

    def add(self, batch: FlowBatch, cls: Classified, idx: np.ndarray, exporters: np.ndarray, now: float) -> None:
        """Keep flows `idx` of a classified batch; `exporters[i]` is `exporter()`'s index of
        flow i's exporter address."""
        n = self._room(len(idx))
        if not n:
            return
        idx = idx[:n]
        end = batch.end[idx]
        bad = ~np.isfinite(end) | (end < now - self.max_age) | (end > now + self.max_skew)
        if bad.any():
            end = np.where(bad, now, end)
        start = batch.start[idx]
        start = np.where(~np.isfinite(start) | (start > end) | (start < end - self.max_age), end, start)
        has, src_side = cls.has_host[idx], cls.host_is_src[idx]
        fwd = src_side | ~has  # the host is the source (or there is no internal end)
        src, dst = batch.src_addr[idx], batch.dst_addr[idx]
        host, peer = np.where(fwd, src, dst), np.where(fwd, dst, src)
        sport, dport = batch.src_port[idx], batch.dst_port[idx]
        self.parts.append({
            "start_ms": np.rint(start * 1000.0).astype(np.int64), "end_ms": np.rint(end * 1000.0).astype(np.int64),
            "exporter": exporters[idx].astype(np.uint32),
            "host_hi": host["hi"], "host_lo": host["lo"], "peer_hi": peer["hi"], "peer_lo": peer["lo"],
            "host_port": np.where(fwd, sport, dport), "peer_port": np.where(fwd, dport, sport),
            "proto": batch.proto[idx], "service": cls.service[idx], "bytes": batch.bytes[idx],
            "packets": batch.packets[idx], "in_if": batch.in_if[idx], "out_if": batch.out_if[idx],
            "direction": np.where(has, np.where(src_side, 1, 2), 0).astype(np.uint8)})
        self.held += n
        self.kept += n

    @property
    def nbytes(self) -> int:
        """Octets of the held columns (what max_pending bounds, in memory)."""
        return (sum(v.nbytes for p in self.parts for v in p.values())
                + sum(v.nbytes for b in self.restored for v in b.cols.values()))

    def restore(self, rows) -> None:
        """What the store refused (an AuditBatch), or a worker's rows: held for the next flush,
        within max_rows."""
        batch = AuditBatch.from_rows(rows)
        n = self._room(len(batch))
        if n:
            self.restored.append(batch if n == len(batch) else batch.take(slice(0, n)))
            self.held += n

    def drain(self) -> AuditBatch:
        """Remove and return every held row, oldest first, as one batch."""
        restored, self.restored = self.restored, []
        parts, self.parts = self.parts, []
        self.held = 0
        if parts:
            cols = {c: np.concatenate([p[c] for p in parts]).astype(t, copy=False) for c, t in COLUMNS.items()}
            restored.append(AuditBatch(cols, self.exporters, self.services, self.service_categories))
        return AuditBatch.concat(restored)
