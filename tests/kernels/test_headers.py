"""The bulk decoder's message headers (`collector.netflow.bulk._headers`): the compiled kernel
against the NumPy way, field by field and bit for bit, on headers of every version and of none,
whole and cut short, with counts and lengths that fit and that do not, from one source and
from several; and against the header read by hand with `struct` where the fields are plain."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector import kernels
from collector.netflow.bulk import Headers, _headers

pytestmark = pytest.mark.skipif(not kernels.available(), reason="the kernels were not built")


@st.composite
def datagrams(draw):
    n = draw(st.integers(1, 40))
    parts, lens = [], []
    for _ in range(n):
        version = draw(st.sampled_from([5, 9, 10, 10, 9, 5, 7, 0, 0xFFFF]))
        body = draw(st.binary(min_size=22, max_size=22))
        count = draw(st.one_of(st.integers(0, 40), st.integers(0, 0xFFFF)))
        length = draw(st.integers(0, 200))  # the datagram's octets: below, at and past what its header says
        parts.append(struct.pack(">HH", version, count) + body)
        lens.append(length)
    gaps = draw(st.lists(st.integers(0, 9), min_size=n, max_size=n))
    buf, off = bytearray(), []
    for head, gap in zip(parts, gaps):
        buf += bytes(gap)
        off.append(len(buf))
        buf += head
    sources = draw(st.one_of(st.none(), st.lists(st.integers(0, (1 << 22) - 1), min_size=n, max_size=n)))
    src = None if sources is None else np.array(sources, np.int64)
    return bytes(buf), np.array(off, np.int64), np.array(lens, np.int64), src


@settings(max_examples=300, deadline=None)
@given(datagrams())
def test_the_kernel_reads_the_headers_as_numpy_does(case):
    buf, off, lens, src = case
    with kernels.use(True):
        got = _headers(buf, off, lens, src)
    with kernels.use(False):
        want = _headers(buf, off, lens, src)
    for name in Headers.__slots__:
        g, w = getattr(got, name), getattr(want, name)
        assert g.dtype == w.dtype and g.tobytes() == w.tobytes(), name
    for j, at in enumerate(off.tolist()):  # the plain fields, by hand
        version, count = struct.unpack_from(">HH", buf, at)
        assert (got.version[j], got.count[j]) == (version, count)
        assert got.rate5[j] == (struct.unpack_from(">H", buf, at + 22)[0] & 0x3FFF or 1)
        if version == 5:
            secs, nsecs = struct.unpack_from(">II", buf, at + 8)
            assert got.export[j] == secs + nsecs * 1e-9
            assert got.ok[j] == (lens[j] >= 24 and 24 + 48 * count <= lens[j])


def test_the_kernel_refuses_a_header_outside_the_buffer():
    buf = bytes(30)
    with kernels.use(True):
        with pytest.raises(ValueError, match="outside the buffer"):
            _headers(buf, np.array([0, 7], np.int64), np.array([24, 24], np.int64), None)
        with pytest.raises(ValueError, match="source"):
            _headers(buf, np.array([0], np.int64), np.array([24], np.int64), np.array([1 << 22], np.int64))
