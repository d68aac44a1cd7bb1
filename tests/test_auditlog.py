"""The audit buffer's holding (collector/auditlog.py): rows handed back to it (a refused write,
a worker's) are kept within max_rows, whole chunks and the part of one that fits, oldest first;
the rows come back as written (AuditRows made here are the truth)."""

from __future__ import annotations

import pickle

from collector.auditlog import AuditBuffer
from collector.store import audit
from tests.store.test_audit import as_tuple, make_rows


def test_restored_rows_are_kept_within_the_ceiling_oldest_first(monkeypatch):
    monkeypatch.setattr(audit, "CHUNK_ROWS", 64)
    rows = make_rows(300, seed=5)
    chunks = audit.AuditChunks(audit.encode_chunks(rows))
    assert len(chunks.chunks) == 5 and len(chunks) == 300
    buf = AuditBuffer(max_rows=150)
    buf.restore(chunks)
    assert (buf.held, buf.dropped) == (150, 150)
    buf.restore(rows[:10])  # AuditRows from elsewhere: no room left
    assert (buf.held, buf.dropped) == (150, 160)
    out = buf.drain()
    assert [as_tuple(r) for r in out] == [as_tuple(r) for r in rows[:150]]
    assert buf.held == 0 and not buf.drain()


def test_chunks_pickle_for_the_workers_pipe_and_read_back():
    rows = make_rows(500, seed=6)
    chunks = audit.AuditChunks(audit.encode_chunks(rows))
    back = pickle.loads(pickle.dumps(chunks))
    assert len(back) == 500 and [as_tuple(r) for r in back] == [as_tuple(r) for r in rows]
    assert [as_tuple(r) for r in audit.AuditBatch.from_rows(back)] == [as_tuple(r) for r in rows]
