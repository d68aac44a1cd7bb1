"""One flush's bins as columns (docs/design.md §5, "The flush"): what the aggregator hands to the
stores, the telemetry and the supervisor instead of a Python row per bin.

On the event loop a flush only detaches the aggregator's open bins (`Aggregator.drain`): no
pass over them. Everything per bin (merging the batches' parts, the host addresses as text,
once per distinct host, the store's parameters, the telemetry's sums) runs later in a thread,
so a flush of a million bins does not hold the loop. Iterating gives the `BinRow`s / `IfRow`s
of before (built in bulk), for the ClickHouse writer and the tests.

Not thread-safe: one thread at a time uses an object (the flush's steps run one after the
other), and nothing changes it once detached.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from collector.classify.classifier import METHODS
from collector.netflow.batch import addr_from_str, addr_to_str
from collector.store.rows import BinRow, IfRow
from collector.turns import no_turns

NO_METHOD = 7  # a method code (flag bits 2-4) past METHODS: a row handed in without a method
_METHOD_NAMES = np.array(METHODS + ("",) * (8 - len(METHODS)), object)
DIRECTIONS = ("in", "out")
_TEXT_CHUNK = 4096  # host addresses made text between two of the event loop's turns (BinColumns.hosts)
_U8 = np.uint64


def _address(text: str) -> tuple[int, int]:
    try:
        return addr_from_str(text) if text else (0, 0)
    except ValueError:
        return 0, 0


def _ascii(text: list[str]) -> np.ndarray:
    """Address texts (ASCII) as a fixed-width NumPy bytes array, filled in chunks: one call on a
    million strings would hold the GIL for the whole copy (and "U" would take 4 octets a
    character)."""
    width = max((max(map(len, text[i:i + 8192])) for i in range(0, len(text), 8192)), default=1)
    out = np.empty(len(text), f"S{width}")
    for i in range(0, len(text), 8192):
        out[i:i + 8192] = text[i:i + 8192]
    return out


class _Detached:
    """Common part: `source` is a detached `aggregate.Bins` (merged on first use) or a dict of
    columns; `exporters`/`services`/`categories` name the integer codes in it."""

    KEYS: tuple[str, ...] = ()

    def __init__(self, source, exporters, services, categories):
        self._source = source
        self._cols: dict[str, np.ndarray] | None = source if isinstance(source, dict) else None
        self.exporters = tuple(exporters)
        self.services = tuple(services)
        self.categories = tuple(categories)
        self.dropped = 0  # bins the open-bin ceiling dropped when the parts were merged

    @property
    def empty(self) -> bool:
        """Whether there is nothing, without merging (O(1): safe on the event loop)."""
        if self._cols is not None:
            return not len(self._cols["bytes"])
        return not len(self._source.merged["bytes"]) and not self._source.parts

    def columns(self) -> dict[str, np.ndarray]:
        """The merged columns (the merge is a NumPy sort: call it off the event loop)."""
        if self._cols is None:
            before = self._source.dropped
            self._cols = self._source.merge()
            self.dropped = self._source.dropped - before
            self._source = None
        return self._cols

    def __len__(self) -> int:
        return len(self.columns()["bytes"])

    def __bool__(self) -> bool:
        return not self.empty

    def __iter__(self):
        return iter(self.rows())

    def __getstate__(self):  # to a supervisor: merged columns, no Bins
        self.prepare()
        state = dict(self.__dict__)
        state["_source"] = None
        return state

    def prepare(self, pause: Callable[[], None] = no_turns) -> None:
        self.columns()

    def _names(self, table, codes: np.ndarray) -> np.ndarray:
        return np.array(table, object)[codes] if len(table) else np.full(len(codes), "", object)


class BinColumns(_Detached):
    """Bins keyed (minute, exporter, service, host, flag): `aggregate.HOST_KEYS` and sums."""

    KEYS = ("minute", "exporter", "service", "hi", "lo", "flag")

    def __init__(self, source, exporters, services, categories):
        super().__init__(source, exporters, services, categories)
        self._hosts: tuple[np.ndarray, list[str]] | None = None

    @classmethod
    def from_rows(cls, rows) -> BinColumns:
        """`BinRow`s (a caller that still builds rows) as columns: Python per row, so off the loop.
        The host text is kept as given (the store takes any text: `hosts()` is made from it);
        hi/lo hold the address when the text is one, else zeros."""
        rows = list(rows)
        exporters: dict[str, int] = {}
        services: dict[tuple[str, str], int] = {}
        method = {m: i for i, m in enumerate(METHODS)}
        hosts = [_address(r.host) for r in rows]
        cols = {
            "minute": np.array([r.bin for r in rows], np.int64),
            "exporter": np.array([exporters.setdefault(r.exporter, len(exporters)) for r in rows], np.uint32),
            "service": np.array([services.setdefault((r.service, r.category), len(services)) for r in rows],
                                np.uint32),
            "hi": np.array([h[0] for h in hosts], _U8), "lo": np.array([h[1] for h in hosts], _U8),
            "flag": np.array([bool(r.host) | (bool(r.violation) << 1) | (method.get(r.method, NO_METHOD) << 2)
                              for r in rows], np.uint8),
            "bytes": np.array([r.bytes for r in rows], _U8), "packets": np.array([r.packets for r in rows], _U8),
            "flows": np.array([r.flows for r in rows], _U8)}
        out = cls(cols, exporters, [s for s, _ in services], [c for _, c in services])
        names = sorted({r.host for r in rows} - {""})
        rank = {h: i for i, h in enumerate(names, 1)}
        out._hosts = (np.array([rank.get(r.host, 0) for r in rows], np.intp), [""] + names)
        return out

    def hosts(self, pause: Callable[[], None] = no_turns) -> tuple[np.ndarray, list[str]]:
        """(per row an index into the names, the names): each distinct host address made text
        once, the names in text order, index 0 = "" (no host). `pause()`, if given, before each
        chunk of host text (the daemon's event loop's turn: collector/turns.py)."""
        if self._hosts is None:
            cols = self.columns()
            has = (cols["flag"] & 1).astype(bool)
            hi, lo = cols["hi"][has], cols["lo"][has]
            out = np.zeros(len(has), np.intp)
            names = [""]
            if len(hi):
                order = np.lexsort((lo, hi))
                new = np.ones(len(order), bool)
                new[1:] = (hi[order][1:] != hi[order][:-1]) | (lo[order][1:] != lo[order][:-1])
                first = order[new]
                his, los, text = hi[first].tolist(), lo[first].tolist(), []
                for i in range(0, len(his), _TEXT_CHUNK):
                    pause()
                    text += map(addr_to_str, his[i:i + _TEXT_CHUNK], los[i:i + _TEXT_CHUNK])
                by_text = np.argsort(_ascii(text))  # distinct: no ties; quicksort lets go of the GIL
                rank = np.empty(len(text), np.intp)
                rank[by_text] = np.arange(1, len(text) + 1)
                group = np.empty(len(order), np.intp)
                group[order] = np.cumsum(new) - 1
                out[has] = rank[group]
                names += [text[i] for i in by_text.tolist()]
            self._hosts = (out, names)
        return self._hosts

    def prepare(self, pause: Callable[[], None] = no_turns) -> None:
        self.hosts(pause)

    def rows(self) -> list[BinRow]:
        cols = self.columns()
        hidx, hnames = self.hosts()
        f = cols["flag"]
        return list(map(BinRow._make, zip(
            cols["minute"].tolist(), self._names(self.exporters, cols["exporter"]).tolist(),
            self._names(self.services, cols["service"]).tolist(),
            self._names(self.categories, cols["service"]).tolist(),
            np.array(hnames, object)[hidx].tolist(), cols["bytes"].tolist(), cols["packets"].tolist(),
            cols["flows"].tolist(), ((f & 2) != 0).tolist(), _METHOD_NAMES[f >> 2].tolist())))


class IfColumns(_Detached):
    """Interface bins keyed (minute, exporter, service, ifindex, direction): `aggregate.IF_KEYS`
    and sums. `name_of(exporter, if_index)` names the interfaces (once per distinct pair)."""

    KEYS = ("minute", "exporter", "service", "ifindex", "direction")

    def __init__(self, source, exporters, services, categories, name_of=None):
        super().__init__(source, exporters, services, categories)
        self.name_of = name_of
        self._if_names: np.ndarray | None = None

    def if_names(self) -> np.ndarray:
        """Per row the interface's name ("" when unknown), an object array."""
        if self._if_names is None:
            cols = self.columns()
            n = len(cols["bytes"])
            if self.name_of is None or not n:
                self._if_names = np.full(n, "", object)
            else:
                pair = (cols["exporter"].astype(_U8) << _U8(32)) | cols["ifindex"].astype(_U8)
                distinct, inverse = np.unique(pair, return_inverse=True)
                names = [self.name_of(self.exporters[p >> 32], p & 0xFFFF_FFFF) or "" for p in distinct.tolist()]
                self._if_names = np.array(names, object)[inverse]
            self.name_of = None  # a bound method of the daemon: not kept, never pickled
        return self._if_names

    def prepare(self, pause: Callable[[], None] = no_turns) -> None:
        self.if_names()

    def rows(self) -> list[IfRow]:
        cols = self.columns()
        s = cols["service"]
        return list(map(IfRow._make, zip(
            cols["minute"].tolist(), self._names(self.exporters, cols["exporter"]).tolist(),
            cols["ifindex"].tolist(), self.if_names().tolist(),
            np.array(DIRECTIONS, object)[cols["direction"]].tolist(),
            self._names(self.services, s).tolist(), self._names(self.categories, s).tolist(),
            cols["bytes"].tolist(), cols["packets"].tolist(), cols["flows"].tolist())))

    @classmethod
    def from_rows(cls, rows) -> IfColumns:
        rows = list(rows)
        exporters: dict[str, int] = {}
        services: dict[tuple[str, str], int] = {}
        cols = {
            "minute": np.array([r.bin for r in rows], np.int64),
            "exporter": np.array([exporters.setdefault(r.exporter, len(exporters)) for r in rows], np.uint32),
            "service": np.array([services.setdefault((r.service, r.category), len(services)) for r in rows],
                                np.uint32),
            "ifindex": np.array([r.if_index for r in rows], np.uint32),
            "direction": np.array([DIRECTIONS.index(r.direction) for r in rows], np.uint8),
            "bytes": np.array([r.bytes for r in rows], _U8), "packets": np.array([r.packets for r in rows], _U8),
            "flows": np.array([r.flows for r in rows], _U8)}
        out = cls(cols, exporters, [s for s, _ in services], [c for _, c in services])
        out._if_names = np.array([r.if_name for r in rows], object)
        return out


def as_bins(rows) -> BinColumns:
    return rows if isinstance(rows, BinColumns) else BinColumns.from_rows(rows)


def as_if_bins(rows) -> IfColumns:
    return rows if isinstance(rows, IfColumns) else IfColumns.from_rows(rows)
