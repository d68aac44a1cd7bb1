"""The set walker shared by NetFlow v9 (RFC 3954 §5) and IPFIX (RFC 7011 §3.3-3.4).

Both versions are a header followed by sets of {id, length, body}. They differ in the set ids
(v9: 0 template, 1 options template; IPFIX: 2 and 3), in how options templates state their
scope (v9: octet lengths; IPFIX: a field count) and in IPFIX's enterprise bit and withdrawals.
`split_sets` frames a message and the parsers check its templates; they raise before the
decoder applies anything, so a malformed datagram changes no state. A template that is well
formed but refused (`templates.refusal`: too many fields, too long, no flow ...) is returned
as a `Refused` for the decoder to count; the other templates of its set stand.
"""

from __future__ import annotations

from struct import unpack_from

from collector.netflow import fields as F
from collector.netflow.errors import BadLength, BadTemplate
from collector.netflow.templates import MAX_FIELDS, Refused, Template, refusal

WITHDRAW_ALL = -1  # (WITHDRAW_ALL, None): every template of this kind is withdrawn
MEMO_SIZE = 4096  # template sets a `TemplateMemo` remembers
MEMO_OCTETS = 1 << 20  # and their octets
_PAIRS: dict[tuple[int, int], tuple[int, int]] = {}  # one (key, length) tuple per distinct field
_MAX_PAIRS = 1 << 16


class Dialect:
    __slots__ = ("version", "template_set", "options_set", "header_len")

    def __init__(self, version: int, template_set: int, options_set: int, header_len: int):
        self.version = version
        self.template_set = template_set
        self.options_set = options_set
        self.header_len = header_len


V9 = Dialect(9, 0, 1, 20)
IPFIX = Dialect(10, 2, 3, 16)


def _padding(data: bytes, pos: int, end: int) -> bool:
    return end - pos < 4 or not any(data[pos:end])


def _fields(data: bytes, pos: int, end: int, count: int, ipfix: bool, tid: int, scope: bool = False
            ) -> tuple[list[tuple[int, int]], int]:
    out = []
    for _ in range(count):
        if pos + 4 > end:
            raise BadTemplate("field count runs past the set", template_id=tid)
        element, length = unpack_from(">HH", data, pos)
        pos += 4
        if ipfix and element & 0x8000:
            if pos + 4 > end:
                raise BadTemplate("enterprise number runs past the set", template_id=tid)
            (pen,) = unpack_from(">I", data, pos)
            pos += 4
            k = F.key(element & 0x7FFF, pen)
        elif scope and not ipfix:
            k = F.V9_SCOPE | element
        else:
            k = element
        pair = (k, length)
        # templates repeat the same few fields: share their tuples (8 octets a field, not ~64)
        shared = _PAIRS.get(pair)
        if shared is None and len(_PAIRS) < _MAX_PAIRS:
            shared = _PAIRS[pair] = pair
        out.append(shared or pair)
    return out, pos


def check(t: Template) -> Template | Refused:
    """A parsed template -> itself, or a `Refused`; raises BadTemplate when no template could
    be like it (the whole datagram is malformed)."""
    if t.tid < 256:
        raise BadTemplate("template id below 256", template_id=t.tid)
    if t.min_record_len == 0:
        raise BadTemplate("template of zero-length records", template_id=t.tid)
    reason = refusal(t)
    return t if reason is None else Refused(t.tid, reason)


def parse_template_set(data: bytes, pos: int, end: int, ipfix: bool) -> list[tuple[int, Template | None]]:
    """Template records of one set -> [(tid, Template | None for a withdrawal)]."""
    out = []
    while not _padding(data, pos, end):
        tid, count = unpack_from(">HH", data, pos)
        pos += 4
        if count == 0:
            if not ipfix:
                raise BadTemplate("template with no fields", template_id=tid)
            out.append((WITHDRAW_ALL, None) if tid == 2 else (tid, None))  # RFC 7011 §8.1
            continue
        if count > MAX_FIELDS:  # refused unread: the rest of the set is not framed, it goes too
            out.append((tid, Refused(tid, "template-fields")))
            break
        flds, pos = _fields(data, pos, end, count, ipfix, tid)
        out.append((tid, check(Template(tid, tuple(flds)))))
    return out


def parse_options_set(data: bytes, pos: int, end: int, ipfix: bool) -> list[tuple[int, Template | None]]:
    out = []
    while not _padding(data, pos, end):
        if ipfix:
            tid, count = unpack_from(">HH", data, pos)
            if count == 0:  # withdrawal record: id and a zero count only
                pos += 4
                out.append((WITHDRAW_ALL, None) if tid == 3 else (tid, None))
                continue
            if pos + 6 > end:
                raise BadTemplate("options template header runs past the set", template_id=tid)
            (scope,) = unpack_from(">H", data, pos + 4)
            pos += 6
            if scope == 0 or scope > count:
                raise BadTemplate(f"scope field count {scope} of {count}", template_id=tid)
            if count > MAX_FIELDS:
                out.append((tid, Refused(tid, "template-fields")))
                break
            flds, pos = _fields(data, pos, end, count, True, tid)
        else:
            if pos + 6 > end:
                raise BadTemplate("options template header runs past the set")
            tid, scope_len, option_len = unpack_from(">HHH", data, pos)
            pos += 6
            if scope_len % 4 or option_len % 4:
                raise BadTemplate("options scope or option length not a multiple of 4", template_id=tid)
            if scope_len == 0:
                raise BadTemplate("options template without scope", template_id=tid)
            if pos + scope_len + option_len > end:
                raise BadTemplate("options template runs past the set", template_id=tid)
            if (scope_len + option_len) // 4 > MAX_FIELDS:
                out.append((tid, Refused(tid, "template-fields")))
                pos += scope_len + option_len
                continue
            scope = scope_len // 4
            sflds, pos = _fields(data, pos, end, scope, False, tid, scope=True)
            oflds, pos = _fields(data, pos, end, option_len // 4, False, tid)
            flds = sflds + oflds
        out.append((tid, check(Template(tid, tuple(flds), scope))))
    return out


def split_sets(data: bytes, pos: int, end: int) -> list[tuple[int, int, int]]:
    """The message body -> [(set id, body start, body end)]; raises BadLength on bad framing.

    Fewer than 4 octets left at the end are padding (v9 exporters pad the last flowset's
    neighbour, RFC 3954 §5.3); a set length below 4 or past the message is fatal.
    """
    sets = []
    while end - pos >= 4:
        sid, length = unpack_from(">HH", data, pos)
        if length < 4:
            raise BadLength(f"set {sid} of length {length}")
        nxt = pos + length
        if nxt > end:
            raise BadLength(f"set {sid} of {length} octets runs past the message")
        sets.append((sid, pos + 4, nxt))
        pos = nxt
    return sets


class TemplateMemo:
    """Template sets parsed before, by their octets. Exporters re-send the same templates every
    few seconds; one shared Template object per definition keeps their records in one decode
    group (and compiles it once), and lets the bulk path see a refresh as one. Bounded in sets
    and octets: a sender can make every set unique, so the memo is cleared when full. Sets
    with a refused template are not kept (a sender repeating them pays the parse)."""

    __slots__ = ("_sets", "octets", "max_octets")

    def __init__(self, max_octets: int = MEMO_OCTETS) -> None:
        self._sets: dict[tuple, list] = {}
        self.octets = 0  # of the set bodies kept
        self.max_octets = max_octets

    def parse(self, data: bytes, start: int, stop: int, ipfix: bool, options: bool) -> list:
        """A (options) template set's body -> [(tid, Template | Refused | None)], as the parsers."""
        key = (ipfix, options, data[start:stop])
        parsed = self._sets.get(key)
        if parsed is None:
            parse = parse_options_set if options else parse_template_set
            parsed = parse(data, start, stop, ipfix)  # raises before anything is kept
            if any(type(t) is Refused for _, t in parsed):
                return parsed
            size = stop - start
            if len(self._sets) >= MEMO_SIZE or self.octets + size > self.max_octets:
                self._sets.clear()
                self.octets = 0
            if size <= self.max_octets:
                self._sets[key] = parsed
                self.octets += size
        return parsed

    def get(self, ipfix: bool, options: bool, body: bytes) -> list | None:
        """What `parse` gave for a set of this body, if it is remembered."""
        return self._sets.get((ipfix, options, body))
