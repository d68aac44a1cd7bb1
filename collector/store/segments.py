"""The flow audit log's chunks in segment files beside the database (docs/audit.md, schema
version 4): `<database>-audit/<N>.imfa`, each chunk's octets appended as `AuditBatch.encode`
wrote them, and its row in `audit_chunk` saying where (`segment`, `at`, `size`).

A chunk in SQLite was bound by copy, written to the WAL with a checksum per page, then copied
again by the checkpoint: at 200,000 v5 datagrams/s SQLite's two threads spent 54-62 CPU ticks
in 5 s, against 11-18 with the octets appended to a segment (and 5-11 for its writes; about a
tenth of the collector, bench/RESULTS.md). The index
rows stay in SQLite, in the same transaction as the rollups, so a flush is still all or
nothing:

- the writer appends a flush's chunks to its current segment and `fdatasync`s it before the
  transaction that indexes them commits: a committed row never points at octets a crash lost;
  a transaction rolled back leaves octets no row points at, which the next append passes by;
- a segment is N, the id its first chunk gets (the largest id committed, plus one, read in
  the writing transaction); the writer starts a new one when its current one passes
  `SEGMENT_OCTETS`, and at each start;
- a segment goes once no row points into it and `GRACE` seconds have passed since the writer
  first saw that (the writes look every `SWEEP_EVERY` seconds, the prunes at each prune): a
  reader (`imflow flows`) opens every segment its snapshot points into just after it began, and
  an open file stays readable after it is removed. A segment numbered
  above the largest committed id is never removed (another writer's, not committed yet).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterable

from collector.store.errors import StoreError

SUFFIX = "-audit"  # the directory: the database's path and this
SEGMENT_OCTETS = 64 << 20  # a segment is closed past this: trimming frees whole segments only
GRACE = 30.0  # seconds an unreferenced segment is kept for readers that opened it
SWEEP_EVERY = 10.0  # seconds between the writes' sweeps (each one takes the event loop's turns)
MAX_CHUNK_OCTETS = 1 << 28  # a chunk's octets at most, as its index row says (a damaged one: an error)
_NAME = re.compile(r"^(\d{1,18})\.imfa$")


def directory(db_path: str) -> str:
    return db_path + SUFFIX


def name(seg: int) -> str:
    return f"{seg:012d}.imfa"


def _error(exc: OSError, path: str, action: str) -> StoreError:
    reason = {28: "full", 122: "full", 13: "permission", 1: "permission", 30: "readonly"}.get(exc.errno or 0, "io")
    return StoreError(f"cannot {action} {path}: {exc.strerror or exc}", reason=reason, path=path)


class SegmentWriter:
    """The store's writer of segment files; its calls run in a thread, one at a time."""

    def __init__(self, db_path: str, clock: Callable[[], float] = time.monotonic):
        self.dir = directory(db_path)
        self.clock = clock
        self.current: int | None = None  # the segment appended to
        self._unreferenced: dict[int, float] = {}  # segment -> when first seen with no row
        self._swept: float | None = None  # when the last sweep ran

    def append(self, next_id: int, chunks: list[tuple[int, int, int, bytes]]) -> list[tuple]:
        """Append the chunks (first, last, rows, data) to the current segment (a new one,
        numbered `next_id`, if there is none or it is full), synced to the disk: -> the index
        rows (first, last, rows, segment, at, size). StoreError when the file system refuses."""
        path = self.dir
        try:
            os.makedirs(self.dir, exist_ok=True)
            if self.current is not None:
                path = os.path.join(self.dir, name(self.current))
                try:
                    if os.stat(path).st_size >= SEGMENT_OCTETS:
                        self.current = None
                except FileNotFoundError:
                    pass  # removed by hand: made again below
            fresh = self.current is None
            if fresh:
                self.current = next_id
            path = os.path.join(self.dir, name(self.current))
            # as SQLite makes the database (0644 less the umask): who may read one may read both
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_CLOEXEC", 0), 0o644)
            try:
                at = os.fstat(fd).st_size
                rows = []
                for first, last, n, data in chunks:
                    view = memoryview(data)
                    while view:  # a short write on a full disk ends in an OSError on the next
                        view = view[os.write(fd, view):]
                    rows.append((first, last, n, self.current, at, len(data)))
                    at += len(data)
                os.fdatasync(fd)
            finally:
                os.close(fd)
            if fresh:  # the new name durable too
                dfd = os.open(self.dir, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
                try:
                    os.fsync(dfd)
                finally:
                    os.close(dfd)
            return rows
        except OSError as exc:
            self.current = None  # the next write starts afresh
            raise _error(exc, path, "write the audit log's segment") from None

    def sweep_due(self) -> bool:
        """A write's sweep: at most one every `SWEEP_EVERY` seconds."""
        return self._swept is None or self.clock() - self._swept >= SWEEP_EVERY

    def sweep(self, referenced: Iterable[int], largest_id: int) -> int:
        """Remove the segments no committed row points into, `GRACE` seconds after first
        seeing them so: -> how many went. Never the current one, nor any above `largest_id`."""
        keep = set(referenced)
        if self.current is not None:
            keep.add(self.current)
        now, removed = self.clock(), 0
        self._swept = now
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return 0
        seen = set()
        for entry in names:
            m = _NAME.match(entry)
            if not m:
                continue  # not ours: left alone
            seg = int(m.group(1))
            if seg in keep or seg > largest_id:
                continue
            seen.add(seg)
            since = self._unreferenced.setdefault(seg, now)
            if now - since >= GRACE:
                try:
                    os.unlink(os.path.join(self.dir, entry))
                    removed += 1
                except FileNotFoundError:
                    pass
                seen.discard(seg)
        self._unreferenced = {s: t for s, t in self._unreferenced.items() if s in seen}
        return removed


class SegmentReader:
    """A reader's open segments: all that its snapshot points into, opened at once."""

    def __init__(self, db_path: str, segments: Iterable[int]):
        self.dir = directory(db_path)
        self.fds: dict[int, int] = {}
        wanted = set(segments)
        if not all(isinstance(s, int) and 0 <= s < 10**18 for s in wanted):
            raise ValueError("audit log: a chunk's segment number is damaged")
        try:
            for seg in sorted(wanted):
                path = os.path.join(self.dir, name(seg))
                try:
                    self.fds[seg] = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
                except FileNotFoundError:
                    raise ValueError(f"audit log: segment {path} is missing (a copy of the database "
                                     f"needs its {SUFFIX} directory beside it)") from None
        except BaseException:
            self.close()
            raise

    def read(self, seg: int, at: int, size: int) -> bytes:
        fd = self.fds.get(seg)
        if not (0 <= at < 1 << 62 and 0 <= size <= MAX_CHUNK_OCTETS):
            raise ValueError(f"audit log: a chunk's place in segment {seg} ({at}, {size} octets) is damaged")
        if fd is None:
            raise ValueError(f"audit log: a chunk in segment {seg}, which was not opened")
        data = os.pread(fd, size, at)
        if len(data) != size:
            raise ValueError(f"audit log: segment {name(seg)} ends before its chunk at {at} ({size} octets)")
        return data

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()
