"""The bulk path of the decoder: the usual datagrams of a batch, located all at once.

Nearly every datagram an exporter sends is plain data: a header, then data sets of templates
the session already knows (NetFlow v5: a header and its records). For those the decoder's
per-datagram Python (header unpacking, session lookup, set walk, sequence check) cost more
than decoding their records. Here the batch's datagrams are joined into one buffer and read
as NumPy columns: headers, session keys and the set walk (one step per set position, for all
datagrams at once), sequence checks per session. Only a handful of Python operations per
session and per (session, template) pair remain, plus one slice per data set.

A datagram takes the bulk path only when that cannot change what the per-datagram path would
do: its session exists, every set is a data set of a known fixed-length template (or a v5
datagram's records fit), and no earlier datagram of the same session in this batch needs the
per-datagram path (which may define templates or options that later datagrams depend on).
Everything else — templates, options, unknown sessions and templates, anything malformed — is
left to the per-datagram path, in its original order, with its original checks and errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from collector import kernels
from collector.kernels.grouping import distinct, unique_inverse
from collector.netflow.chunks import V5, Block, Located, at_every_octet
from collector.netflow.sets import TemplateMemo

MAX_SETS = 16  # set positions walked per datagram; datagrams with more go the other way
_PAD = bytes(24)
_HEADER = np.dtype([("v", ">u2"), ("f2", ">u2"), ("f4", ">u4"), ("f8", ">u4"), ("f12", ">u4"), ("f16", ">u4"),
                    ("f20", ">u2"), ("f22", ">u2")])  # a message header's words, by offset
_HEADER_OCTETS = np.dtype((np.void, _HEADER.itemsize))
_SET_HEADER = np.dtype([("id", ">u2"), ("len", ">u2")])
_I8 = np.int64


@dataclass(slots=True, eq=False)
class Batch:
    """The batch as arrays, one item per datagram: what the walk and the steps after it read."""

    joined: bytes | np.ndarray  # the datagrams (received in place, or joined and padded)
    u8: np.ndarray  # `joined` as octets
    end: np.ndarray  # where each datagram's message ends in `joined`
    ipfix: np.ndarray  # bool: IPFIX
    is5: np.ndarray  # bool: NetFlow v5
    seq: np.ndarray  # the header's sequence number
    export: np.ndarray  # export time, UNIX seconds (float64)
    uptime: np.ndarray  # the header's sysUpTime, ms (0 for IPFIX)
    rate5: np.ndarray  # a v5 header's sampling interval (1: unsampled)
    sessions: list  # the session of each distinct header key, None when unknown
    sidx: np.ndarray  # each datagram's index in `sessions`
    ok: np.ndarray  # bool: still for the bulk path (each step may clear it)


@dataclass(slots=True, eq=False)
class Found:
    """What the walk finds: each data set as a run of records, in five parallel lists of
    arrays (one array per walk step, one item per set); the decode groups met; the sets
    to judge after the walk."""

    nrec: np.ndarray  # flow records per datagram
    groups: list = field(default_factory=list)  # decode groups met: a Template, or V5
    index: dict = field(default_factory=dict)  # decode group -> its index in `groups`
    d: list = field(default_factory=list)  # the set's datagram
    at: list = field(default_factory=list)  # where its records start in `joined`
    n: list = field(default_factory=list)  # its records
    g: list = field(default_factory=list)  # its decode group (index in `groups`)
    base: list = field(default_factory=list)  # records before it in its datagram
    special: list = field(default_factory=list)  # (datagrams, positions, lengths, set ids)

    def add(self, d, at, n, g, base) -> None:
        self.d.append(d)
        self.at.append(at)
        self.n.append(n)
        self.g.append(g)
        self.base.append(base)

    def group(self, t) -> int:
        code = self.index.get(t)
        if code is None:
            code = self.index[t] = len(self.groups)
            self.groups.append(t)
        return code


def bulk(dec, items: list, base: int) -> list[int]:
    """Decode what can be decoded in bulk from `items` (payload, source, received); returns
    the indexes of the rest, in order. Datagram i is number base + i + 1 in capture order.

    `dec` is the `Decoder`: its sessions and template memo are read, never changed; what is
    found goes to `dec.located` (records by decode group, the sessions touched), the
    sessions' tallies and sequence state, and `dec.stats.templates` (refreshes)."""
    n = len(items)
    layout = getattr(items, "layout", None)
    if layout is not None:  # received in place (`mmsg.Batch`): every datagram in its own slot
        joined, off, lens, srcs, times = layout()
        received = times.item
    else:
        datas, srcs, _ = zip(*items)
        lens = np.fromiter(map(len, datas), _I8, n)
        joined = b"".join((*datas, _PAD))  # padding: header reads never run off the end
        off = np.zeros(n, _I8)
        np.cumsum(lens[:-1], out=off[1:])
        received = lambda i: items[i][2]  # noqa: E731
    # sessions: (exporter, port, version, domain), looked up once per distinct key
    distinct_sources = getattr(items, "distinct_sources", None)
    sources = distinct_sources() if distinct_sources is not None else list(dict.fromkeys(srcs))
    if len(sources) == 1:
        src = None
    else:
        src = np.fromiter(map({s: i for i, s in enumerate(sources)}.__getitem__, srcs), _I8, n)
    h = _headers(joined, off, lens, src)
    ipfix, is5, f2, ok = h.version == 10, h.version == 5, h.count, h.ok
    keys, sidx = unique_inverse(h.key, 1 << 62)
    keys = (keys - 1).tolist()
    sessions = []
    found = np.zeros(len(keys), bool)
    for j, k in enumerate(keys):
        sess = None
        if k >= 0:
            src = sources[k >> 40]
            sess = dec.sessions.get((src[0], src[1], (k >> 32) & 0xFF, k & 0xFFFF_FFFF))
        sessions.append(sess)
        found[j] = sess is not None
    known = found[sidx]
    ok &= known
    b = Batch(joined, np.frombuffer(joined, np.uint8), h.end, ipfix, is5, h.seq, h.export, h.uptime, h.rate5, sessions,
              sidx, ok)

    # the set walk: one step per set position, for every candidate datagram at once
    f = Found(np.zeros(n, _I8))
    opt_records = np.zeros(n, _I8)  # options records (skipped sets): they count in IPFIX sequences
    five = np.flatnonzero(ok & is5)
    if five.size:
        f.add(five, off[five] + 24, f2[five], np.full(five.size, f.group(V5), _I8), np.zeros(five.size, _I8))
        f.nrec[five] = f2[five]
    alive = np.flatnonzero(ok & ~is5)
    pos = off[alive] + np.where(ipfix[alive], 16, 20)  # past the header (v5's datagrams are not walked)
    kernel = kernels.compiled
    if kernel is not None and alive.size:
        _walk_all(kernel, b, f, alive, pos)
    elif alive.size:  # none to walk (a batch of v5): no pass at all
        _walk_by_position(b, f, alive, pos)
    refreshed = None  # (datagrams, sessions, templates) of template refreshes, counted if taken
    if f.special:  # every special set of the batch at once
        d, p, z, i = (np.concatenate(v) for v in zip(*f.special))
        extra, bad, refreshed = _special_sets(dec.memo, b, d, p, z, i)
        np.add.at(opt_records, d, extra)
        ok[d[bad]] = False

    # a session's datagrams stay in order: none after its first one left to the other path
    # (every datagram taken, the usual batch: nothing to hold back)
    rest = []
    if not ok.all():
        idx = np.arange(n)
        first_slow = np.full(len(sessions), n, _I8)
        slow_here = known & ~ok
        np.minimum.at(first_slow, sidx[slow_here], idx[slow_here])
        ok &= idx < first_slow[sidx]
        rest = np.flatnonzero(~ok).tolist()
        if not ok.any():
            return rest

    if refreshed is not None:  # templates refreshed, per session, in the datagrams taken
        d, s, count = refreshed
        taken = ok[d]
        per = np.bincount(s[taken], count[taken], len(sessions))
        for j in np.flatnonzero(per).tolist():
            dec.stats.templates[sessions[j].stat_label] += int(per[j])
    _sequences(dec.located, received, b, f.nrec, opt_records)
    _emit(dec.located, b, f, base)
    return rest


@dataclass(slots=True, eq=False)
class Headers:
    """Each datagram's message header, as `_headers` reads it (int64 unless said)."""

    version: np.ndarray
    count: np.ndarray  # octets 2-3: v5 records, IPFIX message length, v9 record count
    export: np.ndarray  # float64 UNIX seconds (v5 with its nanoseconds)
    seq: np.ndarray
    uptime: np.ndarray  # sysUpTime, ms (0 for IPFIX)
    rate5: np.ndarray  # v5: the 14-bit sampling interval of octets 22-23 (a 2-bit mode above it); 0 as 1
    end: np.ndarray  # where the message ends in the buffer (IPFIX: by its length field)
    key: np.ndarray  # the session key + 1 (src << 40 | version << 32 | domain: v5's engine type and id,
    #                  v9's source id, IPFIX's observation domain); 0: no whole header
    ok: np.ndarray  # bool: a whole header whose count fits (IPFIX length, v5 records)


def _headers(joined, off: np.ndarray, lens: np.ndarray, src: np.ndarray | None) -> Headers:
    """The message headers of datagrams at `off` (`lens` octets each) in `joined`, whose 24
    octets at every offset are readable; `src`: each one's source index, None for one source.
    In one pass by the compiled kernel (`headers`), else in NumPy, with the same results.

    Fields by offset: v5 count 2, uptime 4, secs 8, nsecs 12, seq 16, engine 20-21, sampling
    22; v9 count 2, uptime 4, secs 8, seq 12, source id 16; IPFIX length 2, export 4, seq 8,
    domain 12. A header too short for its version (the per-datagram path names the fault; it
    changes no state there) has key 0 and is not ok."""
    n = len(off)
    kernel = kernels.compiled
    if kernel is not None:
        h = Headers(*(np.empty(n, np.float64 if c == "export" else _I8) for c in Headers.__slots__[:-1]),
                    np.empty(n, bool))
        kernel.headers(joined, off, lens, src, h.version, h.count, h.export, h.seq, h.uptime, h.rate5, h.end, h.key,
                       h.ok.view(np.uint8))
        return h
    # one gather of 24 octets per datagram (a view of the buffer with an item at every octet),
    # as opaque items then viewed as the header: NumPy gathers structured items field by
    # field, 12x slower (94 against 8 us for 2,048 headers)
    raw = at_every_octet(joined, _HEADER_OCTETS)[off].view(_HEADER)
    version, f2, f4, f8, f12, f16 = (raw[f].astype(_I8) for f in ("v", "f2", "f4", "f8", "f12", "f16"))
    ipfix = version == 10
    is5 = version == 5
    whole = np.where(ipfix, lens >= 16, np.where(is5, lens >= 24, (version == 9) & (lens >= 20)))
    domain = np.where(ipfix, f12, np.where(is5, raw["f20"].astype(_I8), f16))
    export = np.where(ipfix, f4, f8).astype(np.float64)
    export[is5] += f12[is5] * 1e-9
    ok = whole & (~ipfix | ((f2 >= 16) & (f2 <= lens))) & (~is5 | (24 + 48 * f2 <= lens))
    key = np.where(whole, ((0 if src is None else src) << 40 | version << 32 | domain) + 1, 0)
    return Headers(version, f2, export, np.where(ipfix, f8, np.where(is5, f16, f12)), np.where(ipfix, 0, f4),
                   np.maximum(raw["f22"].astype(_I8) & 0x3FFF, 1), off + np.where(ipfix, f2, lens), key, ok)


def _pairs(b: Batch, f: Found, rows: np.ndarray, sid: np.ndarray):
    """The (session, set id) pairs of some sets -> (pair of each set, record length per pair
    (-1: a set to judge after the walk, 0: not for the bulk path), decode group per pair,
    pairs judged after the walk)."""
    sessions = b.sessions
    pairs, pinv = unique_inverse((b.sidx[rows] << 16) | sid, len(sessions) << 16)
    pairs = pairs.tolist()
    reclen = np.zeros(len(pairs), _I8)
    tcode = np.zeros(len(pairs), _I8)
    special = []  # pairs whose sets need a look in Python: template sets, options data
    for j, pk in enumerate(pairs):
        sess, tid = sessions[pk >> 16], pk & 0xFFFF
        t = sess.templates.get(tid) if tid >= 256 else None
        if t is not None and t.record_len and not t.scope_count:
            reclen[j] = t.record_len
            tcode[j] = f.group(t)
        elif (t is not None and t.scope_count) or (tid in _TEMPLATE_SETS[sess.version] and not sess.pending):
            special.append(j)
    reclen[special] = -1  # walked, no flow records; judged after the walk
    return pinv, reclen, tcode, special


def _walk_all(kernel, b: Batch, f: Found, alive: np.ndarray, pos: np.ndarray) -> None:
    """The set walk of every datagram at once by the compiled kernel (`walk`), then the same
    judgement as `_walk_by_position`, over all sets in one go: a datagram whose set is not
    for the bulk path (or does not fit) leaves it, with its sets from that one on."""
    ok, end = b.ok, b.end
    m = len(alive) * MAX_SETS
    d, at, sid, size = (np.empty(m, _I8) for _ in range(4))
    more = np.empty(len(alive), np.uint8)
    m = kernel.walk(b.joined, pos, end[alive], MAX_SETS, d, at, sid, size, more)
    ok[alive[more.view(bool)]] = False  # more sets than walked
    if not m:
        return
    d, at, sid, size = alive[d[:m]], at[:m], sid[:m], size[:m]
    pinv, reclen, tcode, special = _pairs(b, f, d, sid)
    rl = reclen[pinv]
    good = (rl != 0) & (size >= 4) & (at + size <= end[d])
    if not good.all():  # the walk of such a datagram stops at its first bad set
        bad = np.flatnonzero(~good)
        first_bad = np.full(len(ok), m, _I8)
        np.minimum.at(first_bad, d[bad], bad)
        ok[d[bad]] = False
        before = np.arange(m) < first_bad[d]
        d, at, sid, size, rl, pinv = (v[before] for v in (d, at, sid, size, rl, pinv))
        if not len(d):
            return
    if special:
        rows = np.flatnonzero(rl == -1)
        f.special.append((d[rows], at[rows], size[rows], sid[rows]))
    k = np.where(rl > 0, (size - 4) // np.maximum(rl, 1), 0)
    # records before each set in its datagram: sets come in datagram order
    total = np.cumsum(k)
    first = np.flatnonzero(np.concatenate(([True], d[1:] != d[:-1])))
    start_of = np.repeat(total[first] - k[first], np.diff(np.append(first, len(d))))
    f.add(d, at + 4, k, tcode[pinv], total - k - start_of)
    f.nrec[d[first]] += np.add.reduceat(k, first) if len(d) else 0


def _walk_by_position(b: Batch, f: Found, alive: np.ndarray, pos: np.ndarray) -> None:
    """The set walk, one step per set position for every candidate datagram at once (NumPy)."""
    ok, end, nrec = b.ok, b.end, f.nrec
    set_headers = at_every_octet(b.joined, np.dtype((np.void, _SET_HEADER.itemsize)))
    for _ in range(MAX_SETS):
        more = end[alive] - pos >= 4
        alive, pos = alive[more], pos[more]
        if not alive.size:
            break
        sh = set_headers[pos].view(_SET_HEADER)
        sid, size = sh["id"].astype(_I8), sh["len"].astype(_I8)
        pinv, reclen, tcode, special = _pairs(b, f, alive, sid)
        fits = (size >= 4) & (pos + size <= end[alive])
        if special:
            rows = np.flatnonzero((reclen[pinv] == -1) & fits)
            f.special.append((alive[rows], pos[rows], size[rows], sid[rows]))
        rl = reclen[pinv]
        good = (rl != 0) & fits
        ok[alive[~good]] = False
        alive, pos, sid, size, rl, pinv = alive[good], pos[good], sid[good], size[good], rl[good], pinv[good]
        k = np.where(rl > 0, (size - 4) // np.maximum(rl, 1), 0)
        f.add(alive, pos + 4, k, tcode[pinv], nrec[alive])
        nrec[alive] += k
        pos = pos + size
    else:
        ok[alive[end[alive] - pos >= 4]] = False  # more sets than walked


_TEMPLATE_SETS = {9: (0, 1), 10: (2, 3)}  # template and options template set ids


def _special_sets(memo: TemplateMemo, b: Batch, rows: np.ndarray, pos: np.ndarray, size: np.ndarray,
                  sid: np.ndarray) -> tuple:
    """Sets the bulk path can pass over when they change nothing: a template set identical to
    the templates the session holds (a refresh), options data identical to the last set of
    its template that changed nothing. -> (options records per row, rows that cannot pass,
    (datagram, session, templates) of each refresh that can).

    Exporters repeat the same few sets in every refresh, so the sets are compared in NumPy
    with the first set of the same session, set id, length and first two body octets in the
    batch, and only those first ones (and any that differ from theirs) are judged in Python.
    State does not change on the bulk path, so one verdict holds for every copy."""
    sessions, joined, u8 = b.sessions, b.joined, b.u8
    s = b.sidx[rows]
    # the first two body octets are a template set's first template id: exporters send each
    # template in a set of its own, often all of one length, which would never match
    key = (s << 32) | (sid << 16) | size
    if len(sessions) < 1 << 15:  # room for 16 more bits in an int64 (batches of 32k sessions: without)
        key = (key << 16) | (u8[pos + 4].astype(_I8) << 8) | u8[pos + 5]
    _, first, inv = np.unique(key, return_index=True, return_inverse=True)
    inv = inv.ravel()
    ref = first[inv]  # the row each set is compared with
    body = size - 4
    same = body == 0
    for z in distinct(body[body > 0]).tolist():  # a few lengths: bodies compared as whole items
        of = np.flatnonzero(body == z)
        items = at_every_octet(joined, np.dtype((np.void, z)))
        same[of] = items[pos[of] + 4] == items[pos[ref[of]] + 4]
    own = ~same | (ref == np.arange(rows.size))  # judged on their own
    verdict = np.empty(rows.size, _I8)
    for i, si, p, z, tid in zip(*(v[own].tolist() for v in (np.arange(rows.size), s, pos, size, sid))):
        verdict[i] = _verdict(sessions[si], tid, joined[p + 4:p + z], memo)
    verdict = np.where(own, verdict, verdict[ref])
    bad = verdict < 0
    options = sid >= 256
    extra = np.where(options & ~bad, verdict, 0)
    refresh = ~options & ~bad
    return extra, bad, (rows[refresh], s[refresh], verdict[refresh])


def _verdict(sess, tid: int, body: bytes, memo: TemplateMemo) -> int:
    """Whether a set changes nothing: options data -> its records, a template set -> its
    templates; -1 when it may change something (the per-datagram path takes it)."""
    if tid >= 256:  # options data
        seen = sess.options_seen.get(tid)
        return seen[1] if seen is not None and seen[0] == (len(body), hash(body)) else -1
    sets = _TEMPLATE_SETS[sess.version]
    parsed = memo.get(sess.version == 10, tid == sets[1], body)
    if parsed and all(t is not None and sess.templates.get(k) is t for k, t in parsed):
        return len(parsed)
    return -1


def _sequences(located: Located, received, b: Batch, nrec: np.ndarray, opt_records: np.ndarray) -> None:
    """Per session: tallies, sampling from v5 headers, and sequence numbers in datagram order
    (the per-datagram rule, `Session.track_sequence`, wherever a number is not the expected one)."""
    sidx, seq, rate5 = b.sidx, b.seq, b.rate5
    good = np.flatnonzero(b.ok)
    if len(b.sessions) == 1:  # the usual batch, from one exporter: already in order, one run
        order, s, bounds = good, sidx[good], np.array([0, len(good)]) if len(good) else np.zeros(1, np.intp)
    else:
        order = good[np.argsort(sidx[good], kind="stable")]
        s = sidx[order]
        bounds = np.flatnonzero(np.concatenate(([True], s[1:] != s[:-1], [True])))
    allrec = nrec + opt_records  # what the per-datagram path counts as the message's records
    step = np.where(b.ipfix | b.is5, allrec, 1)
    expect = (seq + step) & 0xFFFF_FFFF
    touched = located.touched
    for a, z in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
        rows = order[a:z]
        sess = b.sessions[int(s[a])]
        touched.add(sess)
        sess.last_seen = received(int(rows[-1]))
        recs = int(allrec[rows].sum())
        sess.n_datagrams += z - a
        flows = int(nrec[rows].sum())
        sess.n_flows += flows
        if flows:
            sess.established = True
        if sess.version == 5:
            sess.sampling_rate = int(rate5[rows[-1]])
        sq = seq[rows]
        chained = sess.next_seq == int(sq[0]) and (z - a == 1 or bool((sq[1:] == expect[rows[:-1]]).all()))
        templated = sess.version != 5  # the per-datagram v5 path keeps no packet tallies
        if chained:
            sess.next_seq = int(expect[rows[-1]])
            if templated:
                sess.packets_seen += z - a
                sess.records_seen += recs
        elif sess.version != 9:
            _resynchronise(sess, sq, allrec[rows], templated)
        else:  # v9 counts packets: a gap's loss estimate depends on the tallies up to it
            for q, r in zip(sq.tolist(), allrec[rows].tolist()):
                if q == sess.next_seq:
                    sess.next_seq = (q + 1) & 0xFFFF_FFFF
                    sess.packets_seen += 1
                    sess.records_seen += r
                else:
                    sess.track_sequence(q, r, True)


def _resynchronise(sess, sq: np.ndarray, recs: np.ndarray, templated: bool) -> None:
    """A v5 or IPFIX session's datagrams whose sequence numbers do not all chain: what
    `Session.track_sequence` does datagram by datagram, at once. These count records, so each
    datagram's expected number is the one before it plus its records; a gap forward is that
    many records lost, a jump back or past 2^31 a restart (no loss). Exporters that send 0 in
    every header (some do) land here with every datagram."""
    nxt = (sq + recs) & 0xFFFF_FFFF
    expected = np.empty_like(sq)
    expected[1:] = nxt[:-1]
    expected[0] = -1 if sess.next_seq is None else sess.next_seq
    off = sq != expected  # the per-datagram rule's track_sequence calls (the first when unknown)
    gap = (sq - expected) & 0xFFFF_FFFF
    lost = off & (expected >= 0) & (gap < 0x8000_0000)
    sess.n_lost += int(gap[lost].sum())
    sess.next_seq = int(nxt[-1])
    # tallies as the per-datagram rule keeps them: every datagram when templated, else only
    # those it sent through track_sequence (v5's are never read, kept for equal state)
    counted = None if templated else off
    sess.packets_seen += len(sq) if counted is None else int(counted.sum())
    sess.records_seen += int(recs.sum() if counted is None else recs[counted].sum())


def _emit(located: Located, b: Batch, f: Found, base: int) -> None:
    """The located records -> one `Block` per decode group."""
    if not f.d:
        return
    d = np.concatenate(f.d)
    keep = b.ok[d] & (np.concatenate(f.n) > 0)
    d = d[keep]
    if not d.size:
        return
    start = np.concatenate(f.at)[keep]
    count = np.concatenate(f.n)[keep]
    tcode = np.concatenate(f.g)[keep]
    rbase = np.concatenate(f.base)[keep]
    # by decode group, then capture order: the sets were found in capture order, so a batch of
    # one decode group (v5, or one template) is in order as it is
    if len(f.groups) > 1 or (d.size > 1 and not bool((d[1:] >= d[:-1]).all())):
        order = np.lexsort((d, tcode))
        d, start, count, tcode, rbase = d[order], start[order], count[order], tcode[order], rbase[order]
    sessions, sidx = b.sessions, b.sidx
    sess_sid = np.array([s.sid if s is not None else 0 for s in sessions], np.uint32)
    sess_rate = np.array([(s.override or s.sampling_rate) if s is not None else 1 for s in sessions], np.uint32)
    overridden = np.array([bool(s is not None and s.override) for s in sessions], bool)
    is5 = b.is5[d]
    if not overridden.any() and is5.all():  # v5 alone: each datagram's header interval
        rate = b.rate5[d].astype(np.uint32)
    else:  # v5's own unless overridden, the session's for the others
        rate = np.where(is5 & ~overridden[sidx[d]], b.rate5[d], sess_rate[sidx[d]]).astype(np.uint32)
    cuts = np.array([0, len(d)]) if len(f.groups) == 1 else \
        np.flatnonzero(np.concatenate(([True], tcode[1:] != tcode[:-1], [True])))
    for a, z in zip(cuts[:-1].tolist(), cuts[1:].tolist()):
        t = f.groups[int(tcode[a])]
        counts = count[a:z]
        rows = d[a:z]
        # where each set's records start: the decoder reads them where they lie
        located.add(t, Block(
            b.joined, counts, sess_sid[sidx[rows]], rate[a:z], b.export[rows], b.uptime[rows],
            (base + 1 + rows).astype(np.uint64), rbase[a:z].astype(np.uint64), start[a:z]))
