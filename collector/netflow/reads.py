"""Fixed-size fields of a decode group's data records read into its columns: by the compiled
kernel when the kernels are on, else by NumPy, with the same values (`collector.kernels`)."""

from __future__ import annotations

import numpy as np

from collector import kernels
from collector.netflow.batch import ADDR, V4_MAPPED
from collector.netflow.chunks import records_at

_U8 = np.uint64
_I8 = np.int64
# what the kernel writes (`fields` in collector/kernels/_kernels.c): the kinds of spec
READ, SCALED, REPEAT, UPTIME, DIVIDED = range(5)


class Reads:
    """What a group's columns take from its records and chunks, written all at once by `run`:
    fields (integers of 1, 2, 4 or 8 octets, addresses of 4 or 16), counters times the chunk's
    sampling rate, a chunk's values repeated for its records, and times in UNIX seconds. By the
    compiled kernel when the kernels are on (`kernels.compiled.fields`: one pass over the
    records where they lie, a tile at a time), else by NumPy (a strided, byte-swapping copy per
    field of the gathered records). Columns handed out hold their values once `run` has
    returned. Fields of other sizes are read through the template's dtype (`arr`, the records
    gathered on first use).

    `raw` is (buffer, starts): chunk i's `counts[i]` records lie back to back from starts[i]
    in the buffer, or the chunks are back to back from its start (starts None)."""

    __slots__ = ("buf", "starts", "counts", "n", "size", "c", "specs", "per_run", "_records", "_arr")

    def __init__(self, raw: tuple, counts: np.ndarray, size: int, c=None):
        self.buf, self.starts = raw
        self.counts = counts.astype(_I8, copy=False)
        self.n, self.size, self.c = int(self.counts.sum()), size, c
        self.specs: list[tuple] = []
        self.per_run: list[np.ndarray] = []  # columns with an item per chunk, as the specs name them
        self._records = self._arr = None

    @property
    def records(self):
        """The records back to back."""
        if self._records is None:
            self._records = records_at(self.buf, self.starts, self.counts, self.size)
        return self._records

    @property
    def arr(self) -> np.ndarray:
        """The records as the template's structured dtype."""
        if self._arr is None:
            self._arr = np.frombuffer(self.records, self.c.dtype, self.n)
        return self._arr

    def read(self, offset: int, width: int, out: np.ndarray) -> None:
        """The big-endian field at `offset` of every record into `out` (modulo its item size;
        ADDR items take a 4-octet field as IPv4)."""
        self.specs.append((READ, offset, width, out))

    def scaled(self, offset: int, width: int, out: np.ndarray, rates: np.ndarray) -> None:
        """The field times its chunk's rate (`rates`, one per chunk) into uint64 `out`."""
        self.specs.append((SCALED, offset, width, out, self._per(rates, np.uint32)))

    def repeat(self, values: np.ndarray, out: np.ndarray) -> None:
        """Each chunk's item of `values` for each of its records, into `out` (of the same dtype)."""
        self.specs.append((REPEAT, self._per(values, out.dtype), out))

    def since_uptime(self, offset: int, width: int, out: np.ndarray, exports: np.ndarray,
                     uptimes: np.ndarray) -> None:
        """A sysUpTime-relative time field (ms) as UNIX seconds into float64 `out`: the chunk's
        export time plus the signed 32-bit difference from its header's uptime (wrap-safe)."""
        self.specs.append((UPTIME, offset, width, out, self._per(exports, np.float64),
                           self._per(uptimes, np.uint32)))

    def divided(self, offset: int, width: int, out: np.ndarray, divisor: float) -> None:
        """The field / divisor into float64 `out` (ms -> s; 1.0: the value as a float)."""
        self.specs.append((DIVIDED, offset, width, out, float(divisor)))

    def column(self, offset: int, width: int) -> np.ndarray:
        out = np.empty(self.n, _U8)
        self.read(offset, width, out)
        return out

    def offset(self, k: int) -> int | None:
        """Where template field k lies in a record, when it has 1, 2, 4 or 8 octets (else None)."""
        nm = self.c.name.get(k)
        if nm is None or self.c.width[k] not in (1, 2, 4, 8):
            return None
        return self.c.dtype.fields[nm][1]

    def into(self, k: int, out: np.ndarray, rates: np.ndarray | None = None) -> bool:
        """Template field k into `out` (times `rates`, per chunk, when given); False when it
        has no such field of 1-8 octets."""
        offset = self.offset(k)
        if offset is not None:
            if rates is None:
                self.read(offset, self.c.width[k], out)
            else:
                self.scaled(offset, self.c.width[k], out, rates)
        return offset is not None

    def first_into(self, keys: tuple[int, ...], out: np.ndarray, rates: np.ndarray | None = None):
        """The first of `keys` the template has: `out` when read there (times `rates` when
        given), else its values through the dtype (unscaled), or None."""
        for k in keys:
            if k in self.c.name:
                return out if self.into(k, out, rates) else self.c.raw(self.arr, k)
        return None

    def native(self, k: int) -> np.ndarray:
        """Template field k as unsigned integers (a uint64 column when it has 1-8 octets)."""
        offset = self.offset(k)
        return self.c.raw(self.arr, k) if offset is None else self.column(offset, self.c.width[k])

    def addr(self, v4: int, v6: int, out: np.ndarray) -> None:
        """An address column: read when the template has one family, else through the dtype."""
        c = self.c
        n4 = c.name.get(v4) if c.width.get(v4) == 4 else None
        n6 = c.name.get(v6) if c.width.get(v6) == 16 else None
        if (n4 is None) != (n6 is None):
            self.read(c.dtype.fields[n4 or n6][1], 4 if n4 else 16, out)
        else:
            c.addr(self.arr, v4, v6, out)

    def _per(self, values: np.ndarray, dtype) -> int:
        self.per_run.append(np.ascontiguousarray(values, dtype))
        return len(self.per_run) - 1

    def run(self) -> None:
        specs, per, self.specs, self.per_run = self.specs, self.per_run, [], []
        if not specs or not self.n:
            return
        kernel = kernels.compiled
        if kernel is not None:
            kernel.fields(self.buf, None if self.starts is None else self.starts.astype(_I8, copy=False),
                          self.counts, self.size, tuple(per), tuple(specs))
            return
        records, counts = self.records, self.counts
        for kind, *spec in specs:
            if kind == REPEAT:
                j, out = spec
                np.copyto(out, np.repeat(per[j], counts))
                continue
            offset, width, out, *more = spec
            if out.dtype == ADDR:
                if width == 4:
                    out["hi"] = 0
                    np.bitwise_or(self._view(records, offset, 4), V4_MAPPED, out=out["lo"], casting="unsafe")
                else:
                    np.copyto(out["hi"], self._view(records, offset, 8), casting="unsafe")
                    np.copyto(out["lo"], self._view(records, offset + 8, 8), casting="unsafe")
                continue
            v = self._view(records, offset, width)
            if kind == READ:
                np.copyto(out, v, casting="unsafe")
            elif kind == SCALED:
                np.multiply(v.astype(_U8), np.repeat(per[more[0]].astype(_U8), counts), out=out)
            elif kind == UPTIME:
                e, u = (np.repeat(per[j], counts) for j in more)
                d = (v.astype(np.uint32) - u).view(np.int32)  # wraps mod 2^32, signed
                np.add(e, d / 1e3, out=out)
            else:
                np.divide(v.astype(_U8), more[0], out=out)

    def _view(self, records, offset: int, width: int) -> np.ndarray:
        return np.ndarray((self.n,), _BIG[width], records, offset, (self.size,))


_BIG = {1: np.dtype("u1"), 2: np.dtype(">u2"), 4: np.dtype(">u4"), 8: np.dtype(">u8")}
