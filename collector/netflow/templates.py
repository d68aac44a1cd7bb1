"""Templates and their compilation to NumPy record layouts (RFC 7011 §3.4, RFC 3954 §5).

A template compiles once, on first use, into a structured dtype whose fields sit at the
template's own offsets (big-endian, reduced-size integers of any width 1..8 octets), and
says which elements give the time, sampling and biflow columns. The records of one template
from many datagrams are then read together (`reads.Reads`), into the canonical columns of a
`FlowBatch` (`columns.Columns`).

Templates with variable-length fields (RFC 7011 §7) take a slow path: each record is walked
in Python and rewritten into a fixed "normalised" layout (variable fields dropped, except
applicationId, which is kept as 8 octets), after which everything is as above.

What a sender may define is checked here (`refusal`): fields per template, record length,
fields the decoder reads of a length it can read, and for data templates a flow to carry.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field

import numpy as np

from collector.netflow import fields as F
from collector.netflow.batch import V4_MAPPED
from collector.netflow.errors import RecordOverrun

_POW2 = {1: "u1", 2: ">u2", 4: ">u4", 8: ">u8"}
_U8 = np.uint64

# Ceilings on one template (docs/security.md#ceilings). Real exporters define up to ~100 fields
# and records under 1 KiB; a datagram could carry a template of 16,370 one-octet fields.
MAX_FIELDS = 512
SECTION_WIDTH = 128  # octets of a variable-length packet section kept for parsing (sFlow's default header)
MAX_RECORD_OCTETS = 8192  # the fixed part of a record (a variable-length field counts 1 octet)


@dataclass(frozen=True, slots=True)
class Refused:
    """A template definition that is refused (counted by `reason`, never stored): its data sets
    are skipped, neither decoded nor held, until the id is defined again or withdrawn."""

    tid: int
    reason: str


@dataclass(slots=True, eq=False)
class Template:
    """One (options) template as defined on the wire. `fields` are (key, length) pairs."""

    tid: int
    fields: tuple[tuple[int, int], ...]
    scope_count: int = 0  # > 0: an options template; the first `scope_count` fields are scope
    _compiled: Compiled | None = field(default=None, repr=False)
    _index: dict[int, int] | None = field(default=None, repr=False)
    record_len: int = field(init=False, repr=False)
    min_record_len: int = field(init=False, repr=False)
    octets: int = field(init=False, repr=False)  # the definition's size on the wire (for ceilings)

    def __post_init__(self) -> None:
        # server names are walked in Python too: their id is computed from the text (server_name_id)
        var = any(length == F.VARLEN or k in F.SERVER_NAMES for k, length in self.fields)
        # octets per record; 0 for templates with variable-length fields (hot path reads this)
        self.record_len = 0 if var else sum(length for _, length in self.fields)
        self.min_record_len = sum(1 if length == F.VARLEN else length for _, length in self.fields)
        enterprise = sum(1 for k, _ in self.fields if 1 << 16 <= k < F.V9_SCOPE)
        self.octets = 4 + 4 * len(self.fields) + 4 * enterprise

    def same_as(self, other: Template) -> bool:
        return self.fields == other.fields and self.scope_count == other.scope_count

    def compiled(self) -> Compiled:
        if self._compiled is None:
            self._compiled = Compiled(self)
        return self._compiled

    # --- slow path, shared by options data and variable-length data ---------------------

    def split_records(self, buf: bytes, start: int, end: int) -> list[list[bytes]]:
        """Walk records one by one; each record is a list of field values (bytes).

        Trailing octets shorter than the minimal record are padding (RFC 7011 §3.3.1), and so
        are fewer than 4 zero octets at the end (a record of empty variable-length fields is
        as short as that). Raises RecordOverrun when a variable-length field runs past the set.
        """
        records = []
        minimum = self.min_record_len
        pos = start
        while end - pos >= minimum:
            if end - pos < 4 and not any(buf[pos:end]):
                break
            values = []
            for _, length in self.fields:
                if length == F.VARLEN:
                    if pos >= end:
                        raise RecordOverrun("variable-length field past the set", template_id=self.tid)
                    length = buf[pos]
                    pos += 1
                    if length == 255:
                        if pos + 2 > end:
                            raise RecordOverrun("variable-length field past the set", template_id=self.tid)
                        length = (buf[pos] << 8) | buf[pos + 1]
                        pos += 2
                if pos + length > end:
                    raise RecordOverrun(f"field of {length} octets past the set", template_id=self.tid)
                values.append(bytes(buf[pos:pos + length]))
                pos += length
            records.append(values)
        return records

    def normalise(self, buf: bytes, start: int, end: int, names: dict | None = None) -> tuple[bytes, int]:
        """Variable-length records -> (fixed-layout bytes for `compiled().dtype`, count). Server
        names (`fields.SERVER_NAMES`) become their id in the app_id column; `names` gets id -> text."""
        keep = self.compiled().keep
        out = []
        records = self.split_records(buf, start, end)
        for values in records:
            for i, value in enumerate(values):
                how = keep[i]
                if how == 1:
                    out.append(value)
                elif how == 2:
                    out.append(struct.pack(">Q", app_id_int(value)))
                elif how == 4:
                    ident, text = server_name_id(value, F.SERVER_NAMES[self.fields[i][0]])
                    out.append(struct.pack(">Q", ident))
                    if ident and names is not None:
                        names[ident] = text
                elif how == 3:  # a packet section: its length, then its first SECTION_WIDTH octets
                    value = value[:SECTION_WIDTH]
                    out.append(struct.pack(">H", len(value)) + value + bytes(SECTION_WIDTH - len(value)))
        return b"".join(out), len(records)

    def index(self) -> dict[int, int]:
        """Element key -> position of its first occurrence (RFC 7011 §8 allows repeats)."""
        if self._index is None:
            idx: dict[int, int] = {}
            for i, (k, _) in enumerate(self.fields):
                idx.setdefault(k, i)
            self._index = idx
        return self._index

    def to_json(self) -> list:
        return [self.tid, self.scope_count, [list(f) for f in self.fields]]

    @classmethod
    def from_json(cls, data: list) -> Template:
        """As `to_json` wrote it; raises ValueError for anything a wire template could not be
        (the caller checks it further like one from the wire: `sets.check`)."""
        tid, scope, flds = data
        if not isinstance(flds, list) or len(flds) > MAX_FIELDS:
            raise ValueError("template fields")
        out = []
        for k, n in flds:
            if type(k) is not int or type(n) is not int or not (0 <= k < 1 << 48 and 0 <= n <= F.VARLEN):
                raise ValueError("template field")
            out.append((k, n))
        if type(tid) is not int or type(scope) is not int or not (0 <= tid <= 0xFFFF and 0 <= scope <= len(out)):
            raise ValueError("template id or scope")
        return cls(tid, tuple(out), scope)


def refusal(t: Template) -> str | None:
    """Why a template (with a valid id and non-empty records) is refused, or None: more fields
    than `MAX_FIELDS`, a fixed record part over `MAX_RECORD_OCTETS`, a field the decoder reads
    that is zero-length, wider than it can be or variable-length where it cannot be
    (`fields.READ_WIDTH`), or, for a data template, no address and no counter: records that
    carry no flow (a template of one variable-length field made every octet a flow)."""
    if len(t.fields) > MAX_FIELDS:
        return "template-fields"
    if t.min_record_len > MAX_RECORD_OCTETS:
        return "template-record-length"
    read, flow = F.READ_WIDTH, bool(t.scope_count)
    for k, length in t.fields:
        most = read.get(k)
        if most is not None and (length == 0 or (length > most and length != F.VARLEN)
                                 or (length == F.VARLEN and most != F.VARLEN)):
            return "template-field-length"
        if not flow:
            flow = ((k in F.FLOW_COUNTERS and 0 < length <= 8) or F.FLOW_ADDRESSES.get(k) == length
                    or (k in F.PACKET_SECTIONS and length > 0))  # a sampled packet: its header is the flow
    return None if flow else "template-no-flow"


def app_id_int(octets: bytes) -> int:
    """RFC 6759 applicationId octets -> engine << 56 | selector (selector truncated to 56 bits)."""
    if not octets:
        return 0
    selector = int.from_bytes(octets[1:], "big") & ((1 << 56) - 1)
    return (octets[0] << 56) | selector


_NAME = re.compile(rb"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*")


def server_name_id(octets: bytes, skip: int = 0) -> tuple[int, str]:
    """A server name as an exporter sent it (TLS SNI, HTTP Host) -> (NAME_ENGINE << 56 | a 56-bit
    hash of the name, the name), lower case, without a port or a final dot; (0, "") for anything
    that is not a DNS name of at most 253 octets (a hostile name never reaches a table)."""
    raw = octets[skip:].split(b"\0", 1)[0].strip().lower()
    raw = raw.split(b":", 1)[0].rstrip(b".")
    if not raw or len(raw) > 253 or not _NAME.fullmatch(raw):
        return 0, ""
    import hashlib  # here, not at the top: hashlib loads OpenSSL's libcrypto (3.6 MiB resident)

    digest = int.from_bytes(hashlib.blake2b(raw, digest_size=7).digest(), "big") or 1
    return (F.NAME_ENGINE << 56) | digest, raw.decode("ascii")


def app_id_text(value: int) -> str:
    return f"{value >> 56}:{value & ((1 << 56) - 1)}"


class Compiled:
    """A template's record dtype and its mapping to canonical columns."""

    __slots__ = ("dtype", "keep", "width", "name", "time_kind", "time_fields", "has_reverse",
                 "sampler_field", "interval_field", "space_field", "section")

    def __init__(self, t: Template):
        names, formats, offsets = [], [], []
        self.keep: list[int] = []  # per wire field: 0 drop, 1 copy, 2 applicationId -> 8 octets,
        # 3 a variable-length packet section -> 2 octets of length and SECTION_WIDTH octets
        self.width: dict[int, int] = {}
        self.name: dict[int, str] = {}
        # the first packet section: (element, variable-length) (RFC 7133 §5)
        self.section: tuple[int, bool] | None = None
        offset = 0
        has_app = any(k == F.applicationId for k, _ in t.fields)  # an application id wins over a name
        for i, (k, length) in enumerate(t.fields):
            if k in F.PACKET_SECTIONS and self.section is None and length:
                self.section = (k, length == F.VARLEN)
            if k in F.SERVER_NAMES and not has_app and F.applicationId not in self.name:
                self.keep.append(4)  # 4: a server name -> its id, 8 octets, read as applicationId
                k, length = F.applicationId, 8
            elif length == F.VARLEN:
                if k == F.applicationId and k not in self.name:
                    self.keep.append(2)
                    length = 8
                elif self.section == (k, True) and k not in self.name:
                    self.keep.append(3)
                    length = SECTION_WIDTH + 2
                else:
                    self.keep.append(0)
                    continue
            else:
                self.keep.append(1)
            nm = f"f{i}"
            if k in (F.sourceIPv6Address, F.destinationIPv6Address) and length == 16:
                fmt = (">u8", (2,))
            elif length in _POW2:
                fmt = _POW2[length]
            else:
                fmt = ("u1", (length,))
            names.append(nm)
            formats.append(fmt)
            offsets.append(offset)
            offset += length
            if k not in self.name:
                self.name[k] = nm
                self.width[k] = length
        self.dtype = np.dtype({"names": names, "formats": formats, "offsets": offsets,
                               "itemsize": offset})
        has = self.name.__contains__
        if has(F.flowStartMilliseconds) or has(F.flowEndMilliseconds):
            self.time_kind, self.time_fields = "ms", (F.flowStartMilliseconds, F.flowEndMilliseconds)
        elif has(F.flowStartSeconds) or has(F.flowEndSeconds):
            self.time_kind, self.time_fields = "s", (F.flowStartSeconds, F.flowEndSeconds)
        elif has(F.flowStartMicroseconds) or has(F.flowEndMicroseconds):
            self.time_kind, self.time_fields = "ntp", (F.flowStartMicroseconds, F.flowEndMicroseconds)
        elif has(F.flowStartNanoseconds) or has(F.flowEndNanoseconds):
            self.time_kind, self.time_fields = "ntp", (F.flowStartNanoseconds, F.flowEndNanoseconds)
        elif has(F.flowStartSysUpTime) or has(F.flowEndSysUpTime):
            self.time_kind, self.time_fields = "uptime", (F.flowStartSysUpTime, F.flowEndSysUpTime)
        elif has(F.flowStartDeltaMicroseconds) or has(F.flowEndDeltaMicroseconds):
            self.time_kind = "delta"
            self.time_fields = (F.flowStartDeltaMicroseconds, F.flowEndDeltaMicroseconds)
        else:
            self.time_kind, self.time_fields = "export", ()
        self.has_reverse = (has(F.reverse(F.octetDeltaCount)) or has(F.reverse(F.packetDeltaCount))
                            or has(F.responderOctets) or has(F.responderPackets))
        self.sampler_field = next((k for k in (F.samplerId, F.selectorId) if has(k)), None)
        self.interval_field = next((k for k in (F.samplingInterval, F.samplerRandomInterval,
                                                F.samplingPacketInterval) if has(k)), None)
        self.space_field = F.samplingPacketSpace if has(F.samplingPacketSpace) else None

    # --- column extraction ---------------------------------------------------------------

    def uint(self, arr: np.ndarray, k: int, dtype=np.uint64) -> np.ndarray | None:
        """Element `k` as unsigned integers of `dtype`, or None when the template lacks it."""
        nm = self.name.get(k)
        if nm is None:
            return None
        col = arr[nm]
        w = self.width[k]
        if w in _POW2:
            return col.astype(dtype)
        if col.dtype != np.uint8:  # an IPv6 address column (two big-endian halves): the low half
            return col[:, 1].astype(dtype)
        if w > 8:  # wider than any integer: the low 8 octets
            col, w = col[:, w - 8:], 8
        return _be_bytes(col, w).astype(dtype)

    def raw(self, arr: np.ndarray, k: int) -> np.ndarray | None:
        """Element `k` as stored (a big-endian view for widths 1, 2, 4, 8; else unsigned
        integers), for callers that convert while copying; None when the template lacks it."""
        nm = self.name.get(k)
        if nm is None:
            return None
        return arr[nm] if self.width[k] in _POW2 else self.uint(arr, k)

    def first_raw(self, arr: np.ndarray, keys: tuple[int, ...]) -> np.ndarray | None:
        for k in keys:
            v = self.raw(arr, k)
            if v is not None:
                return v
        return None

    def first(self, arr: np.ndarray, keys: tuple[int, ...], dtype=np.uint64) -> np.ndarray | None:
        v = self.first_raw(arr, keys)
        return None if v is None else v.astype(dtype)

    def addr(self, arr: np.ndarray, v4: int, v6: int, out: np.ndarray) -> None:
        """The address column (an `ADDR` array) written into `out`."""
        n6 = self.name.get(v6) if self.width.get(v6) == 16 else None
        n4 = self.name.get(v4) if self.width.get(v4) == 4 else None
        hi, lo = out["hi"], out["lo"]
        if n4 is not None:
            np.bitwise_or(arr[n4], V4_MAPPED, out=lo, casting="unsafe")
        if n6 is None:
            hi[...] = 0
            if n4 is None:
                lo[...] = 0
            return
        col = arr[n6]
        if n4 is None:
            np.copyto(hi, col[:, 0], casting="unsafe")
            np.copyto(lo, col[:, 1], casting="unsafe")
        else:  # both families in one template: the IPv6 one counts where it is set
            six = (col[:, 0] != 0) | (col[:, 1] != 0)
            hi[...] = np.where(six, col[:, 0], 0)
            lo[...] = np.where(six, col[:, 1], lo)

    def app_ids(self, arr: np.ndarray) -> np.ndarray | None:
        v = self.uint(arr, F.applicationId)
        if v is None:
            return None
        w = min(self.width[F.applicationId], 8)
        shift = _U8(8 * (w - 1))
        engine = v >> shift
        selector = v & ((_U8(1) << shift) - _U8(1)) if w > 1 else np.zeros_like(v)
        return (engine << _U8(56)) | selector


def _be_bytes(col: np.ndarray, w: int) -> np.ndarray:
    """(n, w) uint8 big-endian octets -> uint64 values."""
    buf = np.zeros((len(col), 8), np.uint8)
    buf[:, 8 - w:] = col
    return buf.view(">u8").ravel()
