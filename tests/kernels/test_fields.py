"""The decoder's record reads (`collector.netflow.reads.Reads`, the compiled `fields` kernel and
its NumPy path) against a reference written here with `struct`, record by record: records in
runs scattered over a buffer (as data sets lie in a batch's datagrams) or back to back, every
kind of spec (fields, counters times the run's rate, a run's values repeated, sysUpTime-relative
and divided times), runs longer than the kernel's tile and empty runs. And the kernel's refusals:
runs outside the buffer, outputs too short, malformed specs."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector import kernels
from collector.netflow.batch import ADDR
from collector.netflow.reads import Reads

pytestmark = pytest.mark.skipif(not kernels.available(), reason="kernels not built")

WIDTH_FMT = {1: ">B", 2: ">H", 4: ">I", 8: ">Q"}


@st.composite
def layouts(draw):
    """-> (buffer, starts or None, counts, record length, per-run rates / exports / uptimes)."""
    reclen = draw(st.integers(16, 40))
    counts = draw(st.lists(st.integers(0, 300), min_size=1, max_size=12))
    gapped = draw(st.booleans())
    starts, buf = [], bytearray()
    for c in counts:
        if gapped:
            buf += bytes(draw(st.integers(0, 7)))  # other octets between the runs (set headers)
        starts.append(len(buf))
        buf += draw(st.binary(min_size=c * reclen, max_size=c * reclen)) if c < 8 else \
            np.random.default_rng(draw(st.integers(0, 2**32))).integers(0, 256, c * reclen, np.uint8).tobytes()
    m = len(counts)
    rates = draw(st.lists(st.integers(0, 2**32 - 1), min_size=m, max_size=m))
    exports = draw(st.lists(st.floats(0, 2e9, allow_nan=False), min_size=m, max_size=m))
    uptimes = draw(st.lists(st.integers(0, 2**32 - 1), min_size=m, max_size=m))
    return (bytes(buf), np.array(starts, np.int64) if gapped else None, np.array(counts, np.int64), reclen,
            np.array(rates, np.uint32), np.array(exports, np.float64), np.array(uptimes, np.int64))


def _records(buf, starts, counts, reclen):
    """-> [(record octets, run)] in order, the reference's way."""
    out, pos = [], 0
    for r, c in enumerate(counts.tolist()):
        at = pos if starts is None else int(starts[r])
        out += [(buf[at + i * reclen:at + (i + 1) * reclen], r) for i in range(c)]
        pos += c * reclen
    return out


def _field(rec: bytes, offset: int, width: int) -> int:
    return struct.unpack_from(WIDTH_FMT[width], rec, offset)[0]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(layouts(), st.sampled_from([1, 2, 4, 8]), st.sampled_from(["u1", "u2", "u4", "u8"]), st.booleans())
def test_every_kind_of_spec_equals_the_reference(layout, width, item, compiled):
    buf, starts, counts, reclen, rates, exports, uptimes = layout
    recs = _records(buf, starts, counts, reclen)
    n = len(recs)
    off = reclen - 8  # the widest field still fits
    with kernels.use(compiled):
        rd = Reads((buf, starts), counts, reclen)
        plain, scaled = np.empty(n, item), np.empty(n, np.uint64)
        since, ms, secs = (np.empty(n, np.float64) for _ in range(3))
        rep_rates, rep_exports = np.empty(n, np.uint32), np.empty(n, np.float64)
        addr4, addr16 = np.empty(n, ADDR), np.empty(n, ADDR)
        rd.read(off, width, plain)
        rd.scaled(1, width, scaled, rates)
        rd.since_uptime(2, width, since, exports, uptimes)
        rd.divided(off, width, ms, 1e3)
        rd.divided(0, width, secs, 1.0)
        rd.repeat(rates, rep_rates)
        rd.repeat(exports, rep_exports)
        rd.read(3, 4, addr4)
        rd.read(0, 16, addr16)
        rd.run()
    mask = (1 << (8 * np.dtype(item).itemsize)) - 1
    for i, (rec, r) in enumerate(recs):
        assert int(plain[i]) == _field(rec, off, width) & mask
        assert int(scaled[i]) == (_field(rec, 1, width) * int(rates[r])) % 2**64
        d = (_field(rec, 2, width) - int(uptimes[r])) % 2**32
        d = d - 2**32 if d >= 2**31 else d
        assert since[i] == exports[r] + d / 1e3
        assert ms[i] == _field(rec, off, width) / 1e3
        assert secs[i] == float(_field(rec, 0, width))
        assert rep_rates[i] == rates[r] and rep_exports[i] == exports[r]
        assert (int(addr4["hi"][i]), int(addr4["lo"][i])) == (0, 0xFFFF_0000_0000 | _field(rec, 3, 4))
        assert (int(addr16["hi"][i]), int(addr16["lo"][i])) == (_field(rec, 0, 8), _field(rec, 8, 8))


def test_a_run_longer_than_a_tile_and_empty_runs():
    """Runs of 0, 1 and 1,000 records (a tile is 256): each record lands in its own row."""
    counts = np.array([0, 1000, 0, 1, 0], np.int64)
    reclen = 4
    values = np.arange(1001, dtype=">u4")
    buf = bytes(8) + values.tobytes() + bytes(8)
    starts = np.array([0, 8, 8, 8 + 4000, 8 + 4004], np.int64)
    sids = np.array([9, 1, 9, 2, 9], np.uint32)
    out, session = np.empty(1001, np.uint32), np.empty(1001, np.uint32)
    rd = Reads((buf, starts), counts, reclen)
    rd.read(0, 4, out)
    rd.repeat(sids, session)
    rd.run()
    assert out.tolist() == list(range(1001))
    assert session.tolist() == [1] * 1000 + [2]


@pytest.mark.parametrize("starts, counts, why", [
    ([0], [3], "outside"),  # 3 records of 8 octets in 16
    ([-8], [1], "outside"),
    ([9], [1], "outside"),
    ([0, 8], [1, -1], "outside"),
    ([2**62], [1], "outside"),
])
def test_runs_outside_the_buffer_are_refused(starts, counts, why):
    out = np.empty(8, np.uint64)
    with pytest.raises(ValueError, match=why):
        kernels.built.fields(bytes(16), np.array(starts, np.int64), np.array(counts, np.int64), 8, (),
                             ((0, 0, 8, out),))


def test_malformed_specs_are_refused():
    k, buf, counts, rates = kernels.built, bytes(64), np.array([4], np.int64), np.ones(1, np.uint32)
    out8, out2, short = np.empty(4, np.uint64), np.empty(4, np.uint16), np.empty(3, np.uint64)
    bad = [
        ((), ((7, 0, 8, out8),), TypeError),  # no such kind
        ((), ((0, 0, 8),), TypeError),  # a READ without its output
        ((), ((0, 0, 3, out8),), ValueError),  # a width the reads do not take
        ((), ((0, 12, 8, out8),), ValueError),  # past the record's end
        ((), ((0, 0, 8, short),), ValueError),  # fewer items than records
        ((rates,), ((1, 0, 4, out8, 1),), ValueError),  # no per-run column 1
        ((rates,), ((1, 0, 4, out2, 0),), ValueError),  # SCALED writes 8-octet items
        ((rates,), ((2, 0, out8),), ValueError),  # REPEAT of 4-octet values into 8-octet items
        ((np.ones(1, np.float64), rates), ((3, 0, 4, out8, 1, 0),), ValueError),  # export, uptime swapped
        ((), ((4, 0, 4, out8, "x"),), TypeError),  # a divisor that is not a number
    ]
    for per_run, specs, exc in bad:
        with pytest.raises(exc):
            k.fields(buf, None, counts, 16, per_run, specs)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.data(), st.booleans(), st.booleans())
def test_v5s_fields_in_one_loop_equal_the_reference(data, with_first, compiled):
    """The eleven reads of a v5 record (ten without the first packet's uptime), in the order the
    decoder asks for them, which the kernel writes in one loop over the records: at offsets
    drawn anywhere in records of any length, against `struct`, with and without the kernels."""
    reclen = data.draw(st.integers(8, 64))
    counts = np.array(data.draw(st.lists(st.integers(0, 400), min_size=1, max_size=6)), np.int64)
    m = len(counts)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32)))
    buf = rng.integers(0, 256, int(counts.sum()) * reclen + 16, np.uint8).tobytes()
    starts = np.concatenate([[0], np.cumsum(counts[:-1]) * reclen]).astype(np.int64) + 16
    at = {w: data.draw(st.lists(st.integers(0, reclen - w), min_size=k, max_size=k))
          for w, k in ((4, 6), (2, 4), (1, 1))}
    rates = rng.integers(0, 2**32, m, dtype=np.uint32)
    exports = rng.uniform(0, 2e9, m)
    uptimes = rng.integers(0, 2**32, m, dtype=np.int64)
    n = int(counts.sum())
    src, dst = np.empty(n, ADDR), np.empty(n, ADDR)
    in_if, out_if = np.empty(n, np.uint32), np.empty(n, np.uint32)
    packets, octets = np.empty(n, np.uint64), np.empty(n, np.uint64)
    sport, dport, proto = np.empty(n, np.uint16), np.empty(n, np.uint16), np.empty(n, np.uint8)
    first, last = np.empty(n, np.float64), np.empty(n, np.float64)
    with kernels.use(compiled):
        rd = Reads((buf, starts), counts, reclen)
        rd.read(at[4][0], 4, src)
        rd.read(at[4][1], 4, dst)
        rd.read(at[2][0], 2, in_if)
        rd.read(at[2][1], 2, out_if)
        rd.scaled(at[4][2], 4, packets, rates)
        rd.scaled(at[4][3], 4, octets, rates)
        rd.read(at[2][2], 2, sport)
        rd.read(at[2][3], 2, dport)
        rd.read(at[1][0], 1, proto)
        if with_first:
            rd.since_uptime(at[4][4], 4, first, exports, uptimes)
        rd.since_uptime(at[4][5], 4, last, exports, uptimes)
        rd.run()

    def since(rec, offset, r):
        d = (_field(rec, offset, 4) - int(uptimes[r])) % 2**32
        return exports[r] + (d - 2**32 if d >= 2**31 else d) / 1e3

    for i, (rec, r) in enumerate(_records(buf, starts, counts, reclen)):
        for col, offset in ((src, at[4][0]), (dst, at[4][1])):
            assert (int(col["hi"][i]), int(col["lo"][i])) == (0, 0xFFFF_0000_0000 | _field(rec, offset, 4))
        assert (int(in_if[i]), int(out_if[i])) == (_field(rec, at[2][0], 2), _field(rec, at[2][1], 2))
        assert int(packets[i]) == _field(rec, at[4][2], 4) * int(rates[r]) % 2**64
        assert int(octets[i]) == _field(rec, at[4][3], 4) * int(rates[r]) % 2**64
        assert (int(sport[i]), int(dport[i]), int(proto[i])) == \
            (_field(rec, at[2][2], 2), _field(rec, at[2][3], 2), _field(rec, at[1][0], 1))
        if with_first:
            assert first[i] == since(rec, at[4][4], r)
        assert last[i] == since(rec, at[4][5], r)
