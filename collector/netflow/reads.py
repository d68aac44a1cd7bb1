"""Fixed-size fields of a decode group's data records read into its columns: by the compiled
kernel when the kernels are on, else by NumPy, with the same values (`collector.kernels`)."""

from __future__ import annotations

import numpy as np

from collector import kernels
from collector.netflow.batch import ADDR, V4_MAPPED
from collector.netflow.chunks import records_at

_U8 = np.uint64


class Reads:
    """Fixed-size fields of a group's records (integers of 1, 2, 4 or 8 octets, addresses of 4
    or 16) read into columns all at once by `run`: by the compiled kernel when the kernels are on
    (`kernels.compiled.fields`: a tight loop per field, from wherever the records lie), else by
    NumPy (a strided, byte-swapping copy per field of the gathered records). Columns handed
    out hold their values once `run` has returned. Fields of other sizes are read through the
    template's dtype (`arr`, the records gathered on first use)."""

    __slots__ = ("raw", "n", "size", "c", "specs", "_records", "_arr")

    def __init__(self, raw, n: int, size: int, c=None):
        self.raw, self.n, self.size, self.c = raw, n, size, c  # raw: records, or (buffer, offsets)
        self.specs: list[tuple] = []
        self._records = self._arr = None

    @property
    def records(self):
        """The records back to back."""
        if self._records is None:
            raw = self.raw
            self._records = records_at(*raw, self.size) if type(raw) is tuple else raw
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
        self.specs.append((offset, width, out))

    def column(self, offset: int, width: int) -> np.ndarray:
        out = np.empty(self.n, _U8)
        self.read(offset, width, out)
        return out

    def _offset(self, k: int) -> int | None:
        nm = self.c.name.get(k)
        if nm is None or self.c.width[k] not in (1, 2, 4, 8):
            return None
        return self.c.dtype.fields[nm][1]

    def into(self, k: int, out: np.ndarray) -> bool:
        """Template field k into `out`; False when it has no such field of 1-8 octets."""
        offset = self._offset(k)
        if offset is not None:
            self.read(offset, self.c.width[k], out)
        return offset is not None

    def first_into(self, keys: tuple[int, ...], out: np.ndarray):
        """The first of `keys` the template has: `out` when read there, else its values
        through the dtype, or None."""
        for k in keys:
            if k in self.c.name:
                return out if self.into(k, out) else self.c.raw(self.arr, k)
        return None

    def native(self, k: int) -> np.ndarray:
        """Template field k as unsigned integers (a uint64 column when it has 1-8 octets)."""
        offset = self._offset(k)
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

    def run(self) -> None:
        specs, self.specs = self.specs, []
        if not specs or not self.n:
            return
        kernel = kernels.compiled
        if kernel is not None:
            buf, offsets = self.raw if type(self.raw) is tuple else (self.raw, None)
            kernel.fields(buf, offsets, self.n, self.size, tuple(specs))
            return
        records = self.records
        for offset, width, out in specs:
            if out.dtype == ADDR:
                if width == 4:
                    out["hi"] = 0
                    np.bitwise_or(self._view(records, offset, 4), V4_MAPPED, out=out["lo"], casting="unsafe")
                else:
                    np.copyto(out["hi"], self._view(records, offset, 8), casting="unsafe")
                    np.copyto(out["lo"], self._view(records, offset + 8, 8), casting="unsafe")
            else:
                np.copyto(out, self._view(records, offset, width), casting="unsafe")

    def _view(self, records, offset: int, width: int) -> np.ndarray:
        return np.ndarray((self.n,), _BIG[width], records, offset, (self.size,))


_BIG = {1: np.dtype("u1"), 2: np.dtype(">u2"), 4: np.dtype(">u4"), 8: np.dtype(">u8")}
