"""The audit log's compiled kernels (collector/kernels/_audit.c) against the NumPy way: the
chunk encoding (`AuditBatch.encode`, format 2: `audit_spans` and `audit_pack`) octet for octet,
on chunks of IPv4, IPv6 and mixed addresses, times before 1970 and at int64's ends, counters at
uint64's, each decoded back to the rows it was made of, and the packer's refusals; the
selection of the watched flows (`AuditBuffer.select`: `audit_select`)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector import kernels
from collector.auditlog import AuditBuffer
from collector.classify.classifier import Classified
from collector.netflow.batch import ADDR
from collector.store.audit import _STORED, COLUMNS, AuditBatch

pytestmark = pytest.mark.skipif(not kernels.available(), reason="the kernels were not built")

_V4 = 0xFFFF << 32
I64 = st.integers(-(1 << 63), (1 << 63) - 1)


def _addresses(draw, n: int) -> tuple[list[int], list[int]]:
    kind = draw(st.sampled_from(["v4", "v6", "mixed", "one-v6"]))
    his, los = [], []
    for i in range(n):
        six = kind == "v6" or (kind == "mixed" and draw(st.booleans())) or (kind == "one-v6" and i == n // 2)
        if six:
            his.append(draw(st.sampled_from([0, 1, 0x2001_0DB8 << 32, (1 << 64) - 1])))
            los.append(draw(st.one_of(st.integers(0, (1 << 64) - 1), st.just(_V4 | 7))))  # ::ffff:... with hi set
        else:
            his.append(0)
            los.append(_V4 | draw(st.one_of(st.integers(0, 255), st.integers(0, (1 << 32) - 1))))
    return his, los


@st.composite
def batches(draw):
    n = draw(st.integers(0, 120))
    cols = {}
    small = draw(st.booleans())  # values close together (narrow widths) or anywhere in the type
    for name, dtype in COLUMNS.items():
        if name.endswith(("_hi", "_lo")):
            continue
        if dtype.kind == "i":
            base = draw(I64)
            vals = [min(max(base + draw(st.integers(0, 300)), -(1 << 63)), (1 << 63) - 1) if small else draw(I64)
                    for _ in range(n)]
        else:
            top = (1 << (8 * dtype.itemsize)) - 1
            base = draw(st.integers(0, top))
            vals = [min(base + draw(st.integers(0, 70_000)), top) if small else draw(st.integers(0, top))
                    for _ in range(n)]
        cols[name] = np.array(vals, dtype)
    for side in ("host", "peer"):
        his, los = _addresses(draw, n)
        cols[f"{side}_hi"], cols[f"{side}_lo"] = np.array(his, np.uint64), np.array(los, np.uint64)
    return AuditBatch(cols, ["192.0.2.1", "2001:db8::1"], ["msn", "sip"], ["im", "voip"])


@settings(max_examples=300, deadline=None)
@given(batches())
def test_the_kernels_encode_as_numpy_does(batch):
    with kernels.use(True):
        got = batch.encode()
    with kernels.use(False):
        want = batch.encode()
    assert isinstance(got, bytearray) and got == want
    back = AuditBatch.decode(bytes(got))
    for name in COLUMNS:
        assert np.array_equal(back.cols[name], batch.cols[name]), name


def test_a_chunk_of_the_usual_rows():
    """Many rows, IPv4 hosts and a few IPv6 peers, times of one hour: the widths the kernels pick
    (seen in the header) are the narrow ones, and the octets are NumPy's."""
    rng = np.random.default_rng(5)
    n = 70_000
    start = 1_764_000_000_000 + rng.integers(0, 3_600_000, n)
    peer_hi = np.where(rng.random(n) < 0.01, np.uint64(0x2001_0DB8 << 32), np.uint64(0))
    peer_lo = np.where(peer_hi == 0, np.uint64(_V4) | rng.integers(0, 1 << 32, n, np.uint64),
                       rng.integers(0, 1 << 63, n, np.uint64))
    cols = {"start_ms": start, "end_ms": start + rng.integers(0, 60_000, n), "exporter": np.zeros(n, np.uint32),
            "host_hi": np.zeros(n, np.uint64), "host_lo": np.uint64(_V4 | 0x0A00_0000) + rng.integers(0, 300, n, np.uint64),
            "peer_hi": peer_hi, "peer_lo": peer_lo, "host_port": rng.integers(1024, 65536, n),
            "peer_port": np.full(n, 1863), "proto": np.full(n, 6), "service": rng.integers(0, 2, n),
            "bytes": rng.integers(0, 10**7, n), "packets": rng.integers(1, 10**4, n), "in_if": np.full(n, 2),
            "out_if": np.full(n, 3), "direction": rng.integers(1, 3, n)}
    batch = AuditBatch(cols, ["192.0.2.1"], ["msn", "sip"], ["im", "voip"])
    with kernels.use(True):
        got = batch.encode()
    with kernels.use(False):
        assert got == batch.encode()
    spans = kernels.built.audit_spans(tuple(batch.cols[c] for c in COLUMNS))
    widths = {name: s for name, s in zip(_STORED, spans)}
    assert widths["exporter"] == (0, 0, n) and widths["host_x"][2] == 0  # every host IPv4
    assert widths["peer_x"][2] == int((peer_hi != 0).sum()) > 0
    assert len(got) < 25 * n


def test_the_packer_refuses_what_does_not_add_up():
    batch = AuditBatch({c: np.ones(3, t) for c, t in COLUMNS.items()}, ["x"], ["s"], ["c"])  # no IPv4 address
    cols = tuple(batch.cols[c] for c in COLUMNS)
    spans = kernels.built.audit_spans(cols)
    bases, counts = tuple(s[0] for s in spans), tuple(s[2] for s in spans)
    assert counts[13] == counts[17] == 3  # every row listed apart
    widths = (8,) * 20
    assert len(kernels.built.audit_pack(cols, bases, widths, counts, b"h")) == 1 + 8 * 60
    for wrong in (widths[:19] + (3,), widths[:19]):
        with pytest.raises((ValueError, TypeError)):
            kernels.built.audit_pack(cols, bases, wrong, counts, b"")
    with pytest.raises(ValueError, match="not IPv4"):  # three rows listed apart, two said
        kernels.built.audit_pack(cols, bases, widths, counts[:13] + (2, 2, 2) + counts[16:], b"")
    with pytest.raises(ValueError, match="unequal"):
        kernels.built.audit_pack(cols, bases, widths, counts[:13] + (2,) + counts[14:], b"")
    with pytest.raises(ValueError, match="values for 3 rows"):
        kernels.built.audit_pack(cols, bases, widths, (2,) + counts[1:], b"")
    with pytest.raises(ValueError):
        kernels.built.audit_spans(cols[:5] + (np.ones(3, np.uint16),) + cols[6:])
    with pytest.raises(TypeError):
        kernels.built.audit_spans(cols[:15])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=40), st.data())
def test_the_kernel_selects_the_watched_flows_as_numpy_does(watched, data):
    services = data.draw(st.lists(st.integers(0, len(watched) - 1), max_size=300))
    buf = AuditBuffer()
    buf.watch = np.array(watched, bool)
    n = len(services)
    cls = Classified(np.array(services, np.uint16), np.zeros(n, ADDR), np.zeros(n, bool), np.zeros(n, bool), None)
    with kernels.use(True):
        got = buf.select(cls)
    want = [i for i, s in enumerate(services) if watched[s]]  # by hand
    assert got.tolist() == want
    with kernels.use(False):
        assert buf.select(cls).tolist() == want


def test_a_service_past_the_watch_table_is_an_index_error():
    out = np.empty(3, np.int64)
    assert kernels.built.audit_select(np.array([0, 1], np.uint8), np.array([1, 0, 1], np.uint16), out) == 2
    assert out[:2].tolist() == [0, 2]
    with pytest.raises(IndexError):
        kernels.built.audit_select(np.array([0, 1], np.uint8), np.array([1, 2, 1], np.uint16), out)
    with pytest.raises(ValueError):
        kernels.built.audit_select(np.array([0, 1], np.uint8), np.array([1, 0, 1], np.uint16), out[:2])
