"""Records located in datagrams and not read yet: what the set walks hand to the column reads.

A decode call only locates data records; they are read at its end, all records of one decode
group (a `Template`, or `V5` for NetFlow v5 records) at once. The per-datagram path files
each data set as a chunk tuple

    (records: bytes, count, session id, sampling rate, export secs, uptime ms, datagram, record base)

and the bulk path files one `Block` per group for the whole batch. `gather` joins a group's
chunks of both forms.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

V5 = "v5"  # the decode group of NetFlow v5 records (other groups are Template objects)
_I8 = np.int64


@dataclass(slots=True)
class Block:
    """Records of one template from many datagrams: the bulk path's form of decode chunks."""

    buf: bytes | np.ndarray  # the records back to back (any contiguous buffer), or the batch's
    # datagrams with each chunk's records where `starts` says (read in place, not gathered first)
    counts: np.ndarray  # records per chunk
    sids: np.ndarray  # session id per chunk
    rates: np.ndarray  # sampling rate per chunk
    exports: np.ndarray  # export time (seconds) per chunk
    uptimes: np.ndarray  # header sysUpTime (ms) per chunk, 0 for IPFIX
    dgrams: np.ndarray  # datagram number per chunk (capture order)
    bases: np.ndarray  # records before the chunk in its datagram
    starts: np.ndarray | None = None  # int64: where each chunk's first record lies in `buf`


class Located:
    """What one decode call has located so far: chunks by decode group, and the sessions
    whose tallies (`Session.n_datagrams`, ...) changed. Both paths of the decoder add here."""

    __slots__ = ("groups", "touched")

    def __init__(self) -> None:
        self.groups: defaultdict[object, list] = defaultdict(list)
        self.touched: set = set()

    def add(self, group, chunk: tuple | Block) -> None:
        self.groups[group].append(chunk)

    def take(self) -> tuple[dict[object, list], set]:
        """-> (groups, touched sessions), leaving both empty for the next call."""
        groups, touched = self.groups, self.touched
        self.groups, self.touched = defaultdict(list), set()
        return groups, touched


def at_every_octet(buf, dtype: np.dtype) -> np.ndarray:
    """A read view of `buf` with an item of `dtype` starting at every octet: indexing it with
    offsets gathers the items found there (headers, records) in one NumPy call."""
    return np.ndarray((len(buf) - dtype.itemsize + 1,), dtype, buf, 0, (1,))


def records_at(buf, starts: np.ndarray | None, counts: np.ndarray, size: int):
    """The `size`-octet records of runs (run i: `counts[i]` records back to back from
    `starts[i]` in `buf`) back to back (one gather); `buf` itself when starts is None (they are
    back to back already)."""
    if starts is None:
        return buf
    return at_every_octet(buf, np.dtype((np.void, size)))[spread(starts, counts, size)]


def spread(starts: np.ndarray, counts: np.ndarray, step: int = 1) -> np.ndarray:
    """Runs laid end to end: run i is `counts[i]` values from `starts[i]`, `step` apart (int64)."""
    firsts = np.cumsum(counts) - counts
    return np.repeat(starts - firsts * step, counts) + np.arange(0, int(counts.sum()) * step, step, dtype=_I8)


def gather(chunks: list, size: int) -> tuple:
    """A group's chunks (tuples and `Block`s) of `size`-octet records -> the records and
    per-chunk columns: counts, session ids, rates, export times, uptimes, datagram numbers,
    record bases. The records are (buffer, starts): one buffer with the chunks back to back
    (starts None), or one block's datagrams with its chunks where `starts` says."""
    tuples = [c for c in chunks if type(c) is tuple]
    blocks = [c for c in chunks if type(c) is Block]
    if tuples:
        bufs, counts, sids, rates, exports, uptimes, dgrams, bases = zip(*tuples)
        blocks.insert(0, Block(b"".join(bufs), np.array(counts, np.int64), np.array(sids, np.uint32),
                               np.array(rates, np.uint32), np.array(exports, np.float64),
                               np.array(uptimes, np.int64), np.array(dgrams, np.uint64),
                               np.array(bases, np.uint64)))
    if len(blocks) == 1:
        b = blocks[0]
        return ((b.buf, b.starts),
                b.counts.astype(np.int64, copy=False), b.sids.astype(np.uint32, copy=False),
                b.rates.astype(np.uint32, copy=False), b.exports.astype(np.float64, copy=False),
                b.uptimes.astype(np.int64, copy=False), b.dgrams.astype(np.uint64, copy=False),
                b.bases.astype(np.uint64, copy=False))
    cat = np.concatenate
    return ((b"".join(records_at(b.buf, b.starts, b.counts, size) for b in blocks), None),
            cat([b.counts for b in blocks]).astype(np.int64),
            cat([b.sids for b in blocks]).astype(np.uint32), cat([b.rates for b in blocks]).astype(np.uint32),
            cat([b.exports for b in blocks]).astype(np.float64), cat([b.uptimes for b in blocks]).astype(np.int64),
            cat([b.dgrams for b in blocks]).astype(np.uint64), cat([b.bases for b in blocks]).astype(np.uint64))
