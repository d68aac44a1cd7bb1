"""The flow audit log's intake side: flows of the watched categories, selected per batch with
NumPy masks and held until the flush (docs/audit.md). Pure: no clock, no I/O.

Only the selected rows are copied out of a batch, straight into the columns of the chunk being
filled (one `take` each, nothing concatenated later). As soon as `CHUNK_ROWS` of them are held
they are encoded into a stored chunk (about 30 octets a flow instead of 84 as columns), so what
waits for the flush is mostly chunks, and the flush hands the store `AuditChunks` that SQLite
inserts as they are (other backends read them as `AuditRow`s).
What is held is bounded by `max_rows` (also while the store refuses writes): rows past it are
dropped and counted in `dropped` (the metric `imflow_evictions{table="audit-log"}`), never
silently.
"""

from __future__ import annotations

import numpy as np

from collector import kernels
from collector.classify.classifier import Classified
from collector.netflow.batch import ADDR, FlowBatch
from collector.store import audit
from collector.store.audit import COLUMNS, AuditBatch, AuditChunks

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
        self._buf: dict[str, np.ndarray] | None = None  # the chunk being filled: CHUNK_ROWS rows of COLUMNS
        self.pending = 0  # its rows filled
        self.sealed: list[audit.Chunk] = []  # full chunks of selected rows, encoded
        self.restored: list[audit.Chunk] = []  # what the store refused (or a worker sent), for the next flush
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
        kernel = kernels.compiled
        if kernel is not None and cls.service.dtype == np.uint16:  # one pass (collector/kernels/_audit.c)
            out = np.empty(len(cls.service), np.int64)
            return out[:kernel.audit_select(self.watch.view(np.uint8), np.ascontiguousarray(cls.service), out)]
        return np.take(self.watch, cls.service).nonzero()[0]  # take: half a fancy index's cost

    def add(self, batch: FlowBatch, cls: Classified, idx: np.ndarray, exporters: np.ndarray | int,
            now: float) -> None:
        """Keep flows `idx` of a classified batch; `exporters[i]` is `exporter()`'s index of
        flow i's exporter address, or `exporters` is that index for every flow (one exporter)."""
        n = self._room(len(idx))
        if not n:
            return
        if n < len(idx):
            idx = idx[:n]
        self.held += n
        self.kept += n
        while len(idx):
            if self._buf is None or (not self.pending and len(self._buf["bytes"]) != audit.CHUNK_ROWS):
                self._buf = {c: np.empty(audit.CHUNK_ROWS, t) for c, t in COLUMNS.items()}
            room = len(self._buf["bytes"]) - self.pending
            self._fill(batch, cls, idx[:room], exporters, now)
            idx = idx[room:]
            if self.pending == len(self._buf["bytes"]):
                self._seal()

    def _fill(self, batch: FlowBatch, cls: Classified, idx: np.ndarray, exporters: np.ndarray | int,
              now: float) -> None:
        """Write the rows `idx` into the chunk being filled, straight into its columns: in one
        pass by the compiled kernel (`audit_fill`) when the kernels are on, else in NumPy."""
        take = np.take
        span = slice(self.pending, self.pending + len(idx))
        buf = {c: v[span] for c, v in self._buf.items()}
        kernel = kernels.compiled
        many = isinstance(exporters, np.ndarray)
        cols = (batch.end, batch.start, batch.src_addr, batch.dst_addr, batch.src_port, batch.dst_port, batch.proto,
                cls.service, batch.bytes, batch.packets, batch.in_if, batch.out_if, cls.has_host, cls.host_is_src,
                exporters.astype(np.uint32, copy=False) if many else None)
        # the kernel takes contiguous columns of the usual types (a column the decoder did not
        # fill is a broadcast zero: NumPy's way then)
        if kernel is not None and all(c is None or (c.dtype == t and c.flags.c_contiguous)
                                      for c, t in zip(cols, _KERNEL_IN)):
            kernel.audit_fill(idx.astype(np.int64, copy=False), float(now), float(self.max_age),
                              float(self.max_skew), 0 if many else int(exporters), cols,
                              tuple(buf[c] for c in _KERNEL_OUT))
            self.pending += len(idx)
            return
        end = take(batch.end, idx)
        ok = (end >= now - self.max_age) & (end <= now + self.max_skew)  # NaN: not ok
        if not ok.all():
            end = np.where(ok, end, now)
        start = take(batch.start, idx)
        ok = (start <= end) & (start >= end - self.max_age)
        if not ok.all():
            start = np.where(ok, start, end)
        buf["start_ms"][:] = np.rint(start * 1000.0)
        buf["end_ms"][:] = np.rint(end * 1000.0)
        has, src_side = take(cls.has_host, idx), take(cls.host_is_src, idx)
        fwd = src_side | ~has  # the host is the source (or there is no internal end)
        src, dst = take(batch.src_addr, idx), take(batch.dst_addr, idx)
        host, peer = np.where(fwd, src, dst), np.where(fwd, dst, src)
        buf["host_hi"][:], buf["host_lo"][:] = host["hi"], host["lo"]
        buf["peer_hi"][:], buf["peer_lo"][:] = peer["hi"], peer["lo"]
        sport, dport = take(batch.src_port, idx), take(batch.dst_port, idx)
        buf["host_port"][:] = np.where(fwd, sport, dport)
        buf["peer_port"][:] = np.where(fwd, dport, sport)
        if isinstance(exporters, np.ndarray):
            take(exporters.astype(np.uint32, copy=False), idx, out=buf["exporter"], mode="clip")
        else:
            buf["exporter"][:] = exporters
        for name, column in (("proto", batch.proto), ("service", cls.service),
                             ("bytes", batch.bytes), ("packets", batch.packets), ("in_if", batch.in_if),
                             ("out_if", batch.out_if)):
            if column.dtype == buf[name].dtype:
                take(column, idx, out=buf[name], mode="clip")  # clip: no buffering (idx is in range)
            else:
                buf[name][:] = take(column, idx)
        # 0 none, 1 out (the host sent it), 2 in: has * 2 - (has and the host is the source)
        buf["direction"][:] = (has.view(np.uint8) << 1) - (has & src_side).view(np.uint8)
        self.pending += len(idx)

    def _seal(self) -> None:
        """Encode the rows of the chunk being filled into stored chunks."""
        if self.pending:
            batch = AuditBatch({c: v[:self.pending] for c, v in self._buf.items()}, self.exporters, self.services,
                               self.service_categories)
            self.sealed.extend(batch.chunks())
        self.pending = 0

    @property
    def nbytes(self) -> int:
        """Octets held: the chunk being filled (all its rows) and the encoded chunks."""
        return (sum(v.nbytes for v in self._buf.values()) if self._buf is not None else 0) \
            + sum(len(c[3]) for c in self.restored) + sum(len(c[3]) for c in self.sealed)

    def restore(self, rows) -> None:
        """What the store refused (AuditChunks), or a worker's rows: held for the next flush
        (before the rows selected since), within max_rows."""
        chunks = audit.encode_chunks(rows)
        n = self._room(sum(c[2] for c in chunks))
        kept = []
        for chunk in chunks:
            if n <= 0:
                break
            if chunk[2] > n:  # the part that fits
                kept.extend(AuditBatch.decode(chunk[3]).take(slice(0, n)).chunks())
            else:
                kept.append(chunk)
            n -= chunk[2]
        self.held += sum(c[2] for c in kept)
        self.restored.extend(kept)

    def drain(self) -> AuditChunks:
        """Remove and return every held row, oldest first, as stored chunks."""
        self._seal()
        chunks = self.restored + self.sealed
        self.restored, self.sealed = [], []
        self.held = self.pending = 0
        return AuditChunks(chunks)


# the types of `audit_fill`'s inputs and the order of its outputs (collector/kernels/_kernels.c)
_KERNEL_IN = (np.dtype("<f8"), np.dtype("<f8"), ADDR, ADDR, np.dtype("<u2"), np.dtype("<u2"), np.dtype("u1"),
              np.dtype("<u2"), np.dtype("<u8"), np.dtype("<u8"), np.dtype("<u4"), np.dtype("<u4"), np.dtype(bool),
              np.dtype(bool), np.dtype("<u4"))
_KERNEL_OUT = ("start_ms", "end_ms", "host_hi", "host_lo", "peer_hi", "peer_lo", "host_port", "peer_port", "exporter",
               "proto", "service", "bytes", "packets", "in_if", "out_if", "direction")
