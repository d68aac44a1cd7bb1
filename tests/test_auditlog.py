"""The audit buffer's holding (collector/auditlog.py): rows handed back to it (a refused write,
a worker's) are kept within max_rows, whole chunks and the part of one that fits, oldest first;
the rows come back as written (AuditRows made here are the truth)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from collector import kernels
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


def _classified_batch(rng, n: int):
    """A batch and its classification with the awkward cases: IPv6 and IPv4 ends, flows with no
    internal host, ends in the future, far past, NaN and infinite, starts after their end."""
    from collector.classify.classifier import Classified
    from collector.netflow.batch import ADDR, COLUMNS as BATCH_COLUMNS, FlowBatch

    now = 1_765_000_000.0
    cols = {c: np.zeros(n, d) for c, d in BATCH_COLUMNS.items()}
    for side in ("src_addr", "dst_addr"):
        v6 = rng.random(n) < 0.3
        cols[side]["hi"] = np.where(v6, rng.integers(1, 2**63, n, dtype=np.uint64), 0)
        cols[side]["lo"] = np.where(v6, rng.integers(0, 2**63, n, dtype=np.uint64),
                                    0xFFFF_0000_0000 | rng.integers(0, 2**32, n, dtype=np.uint64))
    for c in ("src_port", "dst_port", "proto", "in_if", "out_if"):
        cols[c][:] = rng.integers(0, np.iinfo(cols[c].dtype).max, n, endpoint=True)
    cols["bytes"][:] = rng.integers(0, 2**64, n, dtype=np.uint64, endpoint=False)
    cols["packets"][:] = rng.integers(0, 2**40, n, dtype=np.uint64)
    end = now + rng.choice([-10.0, -86_000.0, -90_000.0, 100.0, 400.0, np.nan, np.inf, -np.inf], n) \
        + rng.random(n)
    cols["end"][:] = end
    cols["start"][:] = end - rng.choice([0.0, 5.5, -3.0, 90_000.0, np.nan], n)
    has = rng.random(n) < 0.8
    cls = Classified(service=rng.integers(0, 40, n).astype(np.uint16), host=np.zeros(n, ADDR), has_host=has,
                     host_is_src=has & (rng.random(n) < 0.5))
    return FlowBatch(**cols), cls, now


@pytest.mark.parametrize("many", [True, False])
def test_the_kernel_fills_rows_as_numpy_does(many):
    """`AuditBuffer.add` through the compiled `audit_fill` and through NumPy: the same rows, and
    the rows are what the flows say (checked here row by row for the host side and direction)."""
    if not kernels.available():
        pytest.skip("kernels not built")
    rng = np.random.default_rng(11 + many)
    batch, cls, now = _classified_batch(rng, 3000)
    idx = np.sort(rng.choice(3000, 1700, replace=False))
    exporters = rng.integers(0, 7, 3000).astype(np.int64) if many else 3
    got = []
    for on in (True, False):
        with kernels.use(on):
            buf = AuditBuffer(categories=("im",))
            buf.add(batch, cls, idx, exporters, now)
            got.append({c: v[:buf.pending].copy() for c, v in buf._buf.items()})
    for c in got[0]:
        assert np.array_equal(got[0][c], got[1][c]), c
    rows = got[0]
    for i, k in enumerate(idx.tolist()):
        has, src = bool(cls.has_host[k]), bool(cls.host_is_src[k])
        fwd = src or not has
        host, peer = (batch.src_addr[k], batch.dst_addr[k]) if fwd else (batch.dst_addr[k], batch.src_addr[k])
        assert (rows["host_hi"][i], rows["host_lo"][i]) == (host["hi"], host["lo"])
        assert (rows["peer_hi"][i], rows["peer_lo"][i]) == (peer["hi"], peer["lo"])
        assert rows["direction"][i] == (0 if not has else 1 if src else 2)
        assert rows["exporter"][i] == (exporters[k] if many else 3)
        assert rows["bytes"][i] == batch.bytes[k] and rows["service"][i] == cls.service[k]
        e = batch.end[k] if now - 86400 <= batch.end[k] <= now + 300 else now
        s = batch.start[k] if e - 86400 <= batch.start[k] <= e else e
        assert (rows["start_ms"][i], rows["end_ms"][i]) == (round(s * 1000), round(e * 1000))


def test_the_kernel_refuses_what_would_read_past_the_batch():
    if not kernels.available():
        pytest.skip("kernels not built")
    rng = np.random.default_rng(3)
    batch, cls, now = _classified_batch(rng, 10)
    buf = AuditBuffer()
    buf.add(batch, cls, np.arange(2), 0, now)  # allocates the chunk's columns
    from collector.auditlog import _KERNEL_OUT
    outs = tuple(buf._buf[c][:5] for c in _KERNEL_OUT)
    cols = (batch.end, batch.start, batch.src_addr, batch.dst_addr, batch.src_port, batch.dst_port, batch.proto,
            cls.service, batch.bytes, batch.packets, batch.in_if, batch.out_if, cls.has_host, cls.host_is_src, None)
    with pytest.raises(IndexError):
        kernels.built.audit_fill(np.array([0, 10], np.int64), now, 86400.0, 300.0, 0, cols, outs)
    with pytest.raises(ValueError):  # a column of another length
        kernels.built.audit_fill(np.array([0], np.int64), now, 86400.0, 300.0, 0, (batch.end[:5],) + cols[1:], outs)
    with pytest.raises(ValueError):  # more rows than the outputs hold
        kernels.built.audit_fill(np.arange(6, dtype=np.int64), now, 86400.0, 300.0, 0, cols, outs)
