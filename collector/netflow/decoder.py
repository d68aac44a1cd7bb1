"""The decode boundary: datagrams of any version in, one columnar `FlowBatch` out.

Per datagram, Python reads the header and walks the sets (`sets.walk`); the records are only
located, not read. At the end of a call the records of each template, from every datagram,
decode in one NumPy pass (`_finish`). No exception leaves `decode`: a malformed datagram is
counted by reason and skipped whole, before it changes any state.

Pure: no sockets, no clock (receive times come with the datagrams), no logging setup.
"""

from __future__ import annotations

import json
import logging
from collections import Counter, defaultdict
from struct import Struct, unpack_from
from typing import Iterable

import numpy as np

from collector import kernels
from collector.netflow import fields as F
from collector.netflow import v5
from collector.netflow.bulk import Block, bulk, records_at, spread
from collector.netflow.batch import ADDR, COLUMNS, V4_MAPPED, FlowBatch
from collector.netflow.errors import BadLength, BadVersion, DecodeError, ShortHeader
from collector.netflow.session import Limits, Pending, Session
from collector.netflow.sets import (IPFIX, V9, WITHDRAW_ALL, parse_options_set,
                                    parse_template_set, split_sets)
from collector.netflow.stats import DecodeStats
from collector.netflow.templates import Template, app_id_int

log = logging.getLogger(__name__)

_U8 = np.uint64
_V5_HEADER = Struct(">HIIIIBBH").unpack_from
_V5 = object()  # group key of NetFlow v5 records
STATE_FORMAT = 1
ALWAYS = frozenset(("session", "src_addr", "dst_addr", "bytes", "packets", "end"))  # filled whatever is asked
TEMPLATE_MEMO = 4096  # template sets remembered by their octets


class Decoder:
    """Holds every exporter session's state across calls to `decode`."""

    _V5_KEY = _V5  # the bulk path files v5 records under it too

    def __init__(self, limits: Limits | None = None, sampling: dict[str, int] | None = None,
                 bulk: bool = True, columns: Iterable[str] | None = None):
        self.limits = limits or Limits()
        self.bulk = bulk  # False: every datagram takes the per-datagram path (the reference)
        # columns to fill; the others are zeros (the daemon needs neither seq nor start, ...)
        self.columns = frozenset(COLUMNS if columns is None else columns) | ALWAYS
        unknown = self.columns - set(COLUMNS)
        if unknown:
            raise ValueError(f"unknown columns: {', '.join(sorted(unknown))}")
        self.sampling_override = dict(sampling or {})  # exporter address -> rate
        self.sessions: dict[tuple, Session] = {}
        self.by_sid: dict[int, Session] = {}
        self.stats = DecodeStats(max_exporters=self.limits.max_stats_exporters)
        self._next_sid = 0
        self._ntemplates = 0
        self._pending_bytes = 0
        self._dgram = 0  # datagrams seen, for capture order
        self._groups: dict[object, list] = defaultdict(list)
        self._retired: list[int] = []
        self._template_memo: dict[tuple, list] = {}

    # --- the boundary --------------------------------------------------------------------

    def decode(self, datagrams: Iterable[tuple[bytes, tuple, float]]) -> FlowBatch:
        """Decode `(payload, (address, port, ...), receive_time)` items into one batch."""
        for sid in self._retired:
            self.by_sid.pop(sid, None)
        self._retired.clear()
        stats = self.stats
        self._touched = touched = set()
        # a list, or a received batch (`mmsg.Batch`: a sequence with a `layout` for the bulk path)
        items = datagrams if isinstance(datagrams, list) or hasattr(datagrams, "layout") else list(datagrams)
        base = self._dgram
        rest = bulk(self, items, base) if items and self.bulk else range(len(items))
        for i in rest:
            data, source, received = items[i]
            self._dgram = base + i + 1
            exporter = source[0]
            try:
                if len(data) < 4:
                    raise ShortHeader(f"{len(data)} octets")
                version = (data[0] << 8) | data[1]
                if version == 9 or version == 10:
                    self._templated(data, exporter, source[1], received, version)
                elif version == 5:
                    self._v5(data, exporter, source[1], received)
                else:
                    raise BadVersion(f"version {version}")
            except DecodeError as exc:
                stats.errors[stats.label(exporter), exc.reason] += 1
            except Exception:  # a decoder bug must cost one datagram, not the daemon
                stats.errors[stats.label(exporter), "internal"] += 1
                log.exception("internal error decoding a datagram from %s", exporter)
        self._dgram = base + len(items)
        for sess in touched:  # per-session tallies -> the shared counters, once per call
            key = sess.stat_label, sess.version
            stats.datagrams[key] += sess.n_datagrams
            stats.flows[key] += sess.n_flows
            if sess.n_lost:
                stats.seq_lost[sess.stat_label] += sess.n_lost
            sess.n_datagrams = sess.n_flows = sess.n_lost = 0
        return self._finish()

    # --- NetFlow v5 ----------------------------------------------------------------------

    def _v5(self, data: bytes, exporter: str, port: int, received: float) -> None:
        if len(data) < v5.HEADER_LEN:
            raise ShortHeader(f"{len(data)} octets", version=5)
        count, uptime, secs, nsecs, seq, engine_type, engine_id, sampling = _V5_HEADER(data, 2)
        if v5.HEADER_LEN + count * v5.RECORD_LEN > len(data):
            raise BadLength(f"{count} records need {v5.HEADER_LEN + count * v5.RECORD_LEN} octets, "
                            f"datagram has {len(data)}", version=5)
        key = (exporter, port, 5, (engine_type << 8) | engine_id)
        sess = self.sessions.get(key) or self._session(key, received)
        sess.last_seen = received
        # a 2-bit mode and a 14-bit interval; interval 0 means unsampled whatever the mode
        rate = sess.sampling_rate = (sampling & 0x3FFF) or 1
        if seq == sess.next_seq:
            sess.next_seq = (seq + count) & 0xFFFF_FFFF
        else:
            sess.track_sequence(seq, count, False)
        sess.n_datagrams += 1
        sess.n_flows += count
        self._touched.add(sess)
        if count:
            self._groups[_V5].append((data[24:24 + 48 * count], count, sess.sid, sess.override or rate,
                                      secs + nsecs * 1e-9, uptime, self._dgram, 0))

    # --- NetFlow v9 and IPFIX ------------------------------------------------------------

    def _templated(self, data: bytes, exporter: str, port: int, received: float, version: int) -> None:
        if version == 9:
            dialect = V9
            if len(data) < 20:
                raise ShortHeader(f"{len(data)} octets", version=9)
            _, _, uptime, export, seq, domain = unpack_from(">HHIIII", data)
            end = len(data)
        else:
            dialect = IPFIX
            if len(data) < 16:
                raise ShortHeader(f"{len(data)} octets", version=10)
            _, end, export, seq, domain = unpack_from(">HHIII", data)
            uptime = 0
            if end < 16 or end > len(data):
                raise BadLength(f"message length {end}, datagram {len(data)}", version=10, domain=domain)
        key = (exporter, port, version, domain)
        sess = self.sessions.get(key)
        ipfix = version == 10
        hl = dialect.header_len
        known = sess.templates if sess is not None else {}

        # Pass 1: check the whole message and locate records; nothing is applied yet.
        new: dict[int, Template | None] | None = None
        chunks, held, options = [], [], []
        records = 0
        try:
            for sid, start, stop in split_sets(data, hl, end):
                if sid >= 256:
                    t = known.get(sid) if new is None else new.get(sid, known.get(sid))
                    if t is None:
                        held.append((sid, start, stop))
                    elif t.scope_count:
                        options.append((t, start, stop))
                    else:
                        size = t.record_len
                        if size:
                            n = (stop - start) // size
                            if n:
                                chunks.append((t, data[start:start + n * size], n, records))
                        else:
                            buf, n = t.normalise(data, start, stop)
                            if n:
                                chunks.append((t, buf, n, records))
                        records += n
                elif sid == dialect.template_set or sid == dialect.options_set:
                    if new is None:
                        new = {}
                    for tid, t in self._parse_templates(data, start, stop, ipfix, sid == dialect.options_set):
                        if tid == WITHDRAW_ALL:
                            opts = sid == dialect.options_set
                            for k, old in list(known.items()) + list(new.items()):
                                if old is not None and bool(old.scope_count) == opts:
                                    new[k] = None
                        else:
                            old = known.get(tid)  # a refresh: keep the object decode groups use
                            new[tid] = old if t is not None and old is not None and old.same_as(t) else t
                # other set ids are reserved (RFC 7011 §3.3.2): skipped
            option_records = [(t, t.split_records(data, start, stop), start, stop) for t, start, stop in options]
        except DecodeError as exc:
            exc.version, exc.domain = version, domain
            raise

        # Pass 2: the message is sound; apply it.
        if sess is None:
            sess = self._session(key, received)
        sess.last_seen = received
        self._touched.add(sess)
        sess.n_datagrams += 1
        for _, recs, _, _ in option_records:
            records += len(recs)
        sess.track_sequence(seq, records, not ipfix)
        if new:
            self._define(sess, new)
        for t, recs, start, stop in option_records:
            sess.options_applied(t.tid, data[start:stop], len(recs), self._options(sess, t, recs))
        if chunks:
            group = self._groups
            sid, rate, dgram = sess.sid, sess.override or sess.sampling_rate, self._dgram
            for t, buf, n, base in chunks:
                group[t].append((buf, n, sid, rate, export, uptime, dgram, base))
                sess.n_flows += n
        for tid, start, stop in held:
            self._hold(sess, Pending(tid, data[start:stop], (export, uptime, self._dgram, records), received))
            records += 1  # held sets of one datagram keep their order
        if new and sess.pending:
            self._replay(sess, [tid for tid, t in new.items() if t is not None])

    def _parse_templates(self, data: bytes, start: int, stop: int, ipfix: bool, options: bool) -> list:
        """A template set -> [(tid, Template | None)], memoised on the set's octets: exporters
        re-send the same templates every few seconds, and one shared Template object per
        definition keeps their records in one decode group (and compiles it once). Bounded:
        a sender can make every set unique, so the memo is cleared when full."""
        key = (ipfix, options, data[start:stop])
        parsed = self._template_memo.get(key)
        if parsed is None:
            parse = parse_options_set if options else parse_template_set
            parsed = parse(data, start, stop, ipfix)  # raises before anything is kept
            if len(self._template_memo) >= TEMPLATE_MEMO:
                self._template_memo.clear()
            self._template_memo[key] = parsed
        return parsed

    def _define(self, sess: Session, new: dict[int, Template | None]) -> None:
        label = sess.stat_label
        templates = sess.templates
        for tid, t in new.items():
            old = templates.get(tid)
            if t is None:
                if old is not None:
                    del templates[tid]
                    self._ntemplates -= 1
                    sess.options_seen.clear()
                continue
            self.stats.templates[label] += 1
            if old is not None:
                if not old.same_as(t):
                    templates[tid] = t  # redefinition replaces (RFC 7011 §8.1)
                    sess.options_seen.clear()
                continue
            if len(templates) >= self.limits.max_templates_per_session:
                self.stats.evicted["templates"] += 1
                continue
            if self._ntemplates >= self.limits.max_templates:
                self._evict_sessions(keep=sess)
            templates[tid] = t
            self._ntemplates += 1

    def _options(self, sess: Session, t: Template, records: list[list[bytes]]) -> bool:
        """Options data (RFC 7011 §3.4.2.2, RFC 3954 §6.2): sampling, init time, names.
        Returns whether it changed anything (session state or counters)."""
        idx = t.index()
        limit = self.limits.max_names_per_session
        changed = False

        def num(values, *keys):
            for k in keys:
                if k in idx:
                    return int.from_bytes(values[idx[k]], "big")
            return None

        for values in records:
            init = num(values, F.systemInitTimeMilliseconds)
            if init is not None and init != sess.system_init_ms:
                sess.system_init_ms = init
                changed = True
            interval = num(values, F.samplingInterval, F.samplerRandomInterval, F.samplingPacketInterval)
            if interval is None and F.samplingPopulation in idx and F.samplingSize in idx:
                size = num(values, F.samplingSize)
                interval = num(values, F.samplingPopulation) // size if size else 0
            if interval is not None:
                space = num(values, F.samplingPacketSpace) or 0
                rate = (interval + space) // interval if interval and space else interval
                sampler = num(values, F.samplerId, F.selectorId)
                if rate <= 0:
                    self.stats.notices[sess.stat_label, "sampling-interval-zero"] += 1
                    changed = True
                elif sampler is None:
                    changed |= sess.sampling_rate != rate
                    sess.sampling_rate = rate
                elif sampler in sess.samplers or len(sess.samplers) < self.limits.max_samplers_per_session:
                    changed |= sess.samplers.get(sampler) != rate
                    sess.samplers[sampler] = rate
                else:
                    self.stats.evicted["samplers"] += 1
                    changed = True
            ifindex = num(values, F.ingressInterface, F.V9_SCOPE_INTERFACE, F.egressInterface)
            name_at = idx.get(F.interfaceName, idx.get(F.interfaceDescription))
            if ifindex is not None and name_at is not None:
                changed |= _put(sess.if_names, ifindex, _text(values[name_at]), limit, self.stats)
            if F.applicationId in idx and F.applicationName in idx:
                app = app_id_int(values[idx[F.applicationId]])
                changed |= _put(sess.app_names, app, _text(values[idx[F.applicationName]]), limit, self.stats)
        return changed

    # --- data before its template --------------------------------------------------------

    def _hold(self, sess: Session, p: Pending) -> None:
        lim, label = self.limits, sess.stat_label
        self._expire_session(sess, p.received)
        size = len(p.data)
        if self._pending_bytes + size > lim.max_pending_bytes:
            self.stats.expired[label] += 1
            return
        while sess.pending and (len(sess.pending) >= lim.max_pending_per_session
                                or sess.pending_bytes + size > lim.max_pending_bytes_per_session):
            self._drop_pending(sess, sess.pending.popleft())
        if size > lim.max_pending_bytes_per_session:
            self.stats.expired[label] += 1
            return
        sess.pending.append(p)
        sess.pending_bytes += size
        self._pending_bytes += size
        self.stats.held[label] += 1

    def _drop_pending(self, sess: Session, p: Pending) -> None:
        sess.pending_bytes -= len(p.data)
        self._pending_bytes -= len(p.data)
        self.stats.expired[sess.stat_label] += 1

    def _expire_session(self, sess: Session, now: float) -> None:
        oldest = now - self.limits.pending_max_age
        while sess.pending and sess.pending[0].received < oldest:
            self._drop_pending(sess, sess.pending.popleft())

    def expire(self, now: float) -> None:
        """Drop data held longer than `Limits.pending_max_age` (the daemon calls this)."""
        for sess in self.sessions.values():
            if sess.pending:
                self._expire_session(sess, now)

    def pending_count(self) -> int:
        return sum(len(s.pending) for s in self.sessions.values())

    def _replay(self, sess: Session, tids: list[int]) -> None:
        """Decode data held for templates that have just arrived, with its original meta."""
        wanted = set(tids)
        keep = []
        label = sess.stat_label
        for p in sess.pending:
            t = sess.templates.get(p.tid) if p.tid in wanted else None
            if t is None:
                keep.append(p)
                continue
            sess.pending_bytes -= len(p.data)
            self._pending_bytes -= len(p.data)
            self.stats.replayed[label] += 1
            export, uptime, dgram, base = p.meta
            try:
                if t.scope_count:
                    recs = t.split_records(p.data, 0, len(p.data))
                    sess.options_applied(t.tid, p.data, len(recs), self._options(sess, t, recs))
                    continue
                if t.record_len:
                    n = len(p.data) // t.record_len
                    buf = p.data[:n * t.record_len]
                else:
                    buf, n = t.normalise(p.data, 0, len(p.data))
            except DecodeError as exc:  # the set was held, its datagram already counted
                self.stats.errors[label, "held-" + exc.reason] += 1
                continue
            if n:
                rate = sess.override or sess.sampling_rate
                self._groups[t].append((buf, n, sess.sid, rate, export, uptime, dgram, base))
                sess.n_flows += n
        sess.pending.clear()
        sess.pending.extend(keep)

    # --- sessions --------------------------------------------------------------------------

    def _session(self, key: tuple, received: float) -> Session:
        sess = self.sessions.get(key)
        if sess is None:
            if len(self.sessions) >= self.limits.max_sessions:
                self._evict_sessions()
            sess = Session(self._next_sid, *key)
            sess.stat_label = self.stats.label(key[0])
            sess.override = self.sampling_override.get(key[0])
            self._next_sid += 1
            self.sessions[key] = sess
            self.by_sid[sess.sid] = sess
        sess.last_seen = received
        return sess

    def _evict_sessions(self, keep: Session | None = None) -> None:
        """Drop the least recently seen tenth of the sessions (amortised under floods)."""
        victims = sorted(self.sessions.values(), key=lambda s: s.last_seen)
        n = max(1, len(victims) // 10)
        for sess in victims[: n + 1]:
            if sess is keep or n == 0:
                continue
            n -= 1
            del self.sessions[(sess.exporter, sess.port, sess.version, sess.domain)]
            self._retired.append(sess.sid)
            self._ntemplates -= len(sess.templates)
            for p in sess.pending:
                self._drop_pending(sess, p)
            self.stats.evicted["sessions"] += 1

    # --- template state across restarts ------------------------------------------------------

    def save_state(self, path: str) -> None:
        state = {"format": STATE_FORMAT, "sessions": [s.to_json() for s in self.sessions.values()
                                                      if s.templates or s.samplers or s.if_names]}
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(state, fh)

    def load_state(self, path: str) -> int:
        """Load sessions saved by `save_state`; returns the templates loaded."""
        with open(path, encoding="utf-8") as fh:
            state = json.load(fh)
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"{path}: unknown template state format {state.get('format')!r}")
        loaded = 0
        for s in state["sessions"]:
            sess = self._session((s["exporter"], int(s["port"]), int(s["version"]), int(s["domain"])), 0.0)
            for raw in s["templates"]:
                t = Template.from_json(raw)
                if t.tid not in sess.templates and len(sess.templates) < self.limits.max_templates_per_session:
                    self._ntemplates += 1
                sess.templates[t.tid] = t
                loaded += 1
            sess.sampling_rate = int(s.get("sampling_rate", 1))
            sess.samplers.update({int(k): int(v) for k, v in s.get("samplers", {}).items()})
            sess.system_init_ms = s.get("system_init_ms")
            sess.if_names.update({int(k): v for k, v in s.get("if_names", {}).items()})
            sess.app_names.update({int(k): v for k, v in s.get("app_names", {}).items()})
        return loaded

    # --- columns -----------------------------------------------------------------------------

    def _finish(self) -> FlowBatch:
        """Every group's records -> one batch. The columns are allocated once for the whole
        batch and each group converts its fields straight into its rows (no per-group
        batches to concatenate); columns the caller did not ask for stay zero views."""
        groups, self._groups = self._groups, defaultdict(list)
        if not groups:
            return FlowBatch.empty()
        gathered = []  # (template, chunks, gathered chunks, records)
        for t, chunks in groups.items():
            g = _gather(chunks, v5.RECORD_LEN if t is _V5 else t.compiled().dtype.itemsize)
            gathered.append((t, chunks, g, int(g[1].sum())))
        total = sum(n for *_, n in gathered)
        keep = self.columns
        cols = {c: np.empty(total, d) if c in keep else np.broadcast_to(np.zeros((), d), (total,))
                for c, d in COLUMNS.items()}
        extra: list[FlowBatch] = []
        cut: list[tuple[int, np.ndarray]] = []  # (first row, rows of the group to drop)
        pos = 0
        for t, chunks, g, n in gathered:
            dst = {c: v[pos:pos + n] for c, v in cols.items()}
            try:
                more, drop = self._columns(t, g, n, dst)
                extra.extend(more)
                if drop is not None:
                    cut.append((pos, drop))
            except Exception:  # never lose the other templates' records to one bad group
                log.exception("internal error decoding records of template %r", t)
                cut.append((pos, np.ones(n, bool)))
                for c in chunks:
                    for sid in (c.sids.tolist() if type(c) is Block else (c[2],)):
                        sess = self.by_sid.get(sid)
                        self.stats.errors[sess.stat_label if sess else "other", "internal"] += 1
            pos += n
        batch = FlowBatch(**cols)
        if cut:
            kept = np.ones(total, bool)
            for at, drop in cut:
                kept[at:at + len(drop)] &= ~drop
            batch = batch.take(kept)
        return FlowBatch.concat([batch] + extra) if extra else batch

    def _columns(self, t, g: tuple, n: int, dst: dict) -> tuple[list[FlowBatch], np.ndarray | None]:
        """One group's records into `dst` (its rows of every column). -> (extra batches: the
        reverse halves of biflow records, rows of the group to drop)."""
        raw, counts, sids, rates, exports, uptimes, dgrams, bases = g
        keep = self.columns
        rep = np.repeat

        def put(col: str, value) -> None:  # convert and copy in one pass
            if col in keep:
                np.copyto(dst[col], value, casting="unsafe")

        put("session", rep(sids, counts))
        if "seq" in keep:  # datagram << 20 | record index in it
            put("seq", spread(((dgrams << _U8(20)) | bases).astype(np.int64), counts))
        base_rate = rep(rates, counts)
        export = rep(exports, counts)
        ctx = _Chunks(counts, sids.tolist(), uptimes, self.by_sid)

        if t is _V5:
            rd = _Fields(raw, n, v5.RECORD_LEN)
            for col, (offset, width) in _V5_READS.items():
                if col in keep:
                    rd.read(offset, width, dst[col])
            first = rd.column(*_V5_FIRST) if "start" in keep else None
            last = rd.column(*_V5_LAST)
            rd.run()
            put("version", 5)
            _counters(dst, dst["bytes"], dst["packets"], base_rate)
            put("sampling_rate", base_rate)
            uptime = ctx.uptime()
            if first is not None:
                np.add(export, _uptime_delta(first, uptime), out=dst["start"])
            np.add(export, _uptime_delta(last, uptime), out=dst["end"])
            put("app_id", 0)
            return [], None

        c = t.compiled()
        rd = _Fields(raw, n, c.dtype.itemsize, c)
        put("version", ctx.first_session().version)
        rd.addr(F.sourceIPv4Address, F.sourceIPv6Address, dst["src_addr"])
        rd.addr(F.destinationIPv4Address, F.destinationIPv6Address, dst["dst_addr"])
        for col, k in (("src_port", F.sourceTransportPort), ("dst_port", F.destinationTransportPort),
                       ("proto", F.protocolIdentifier), ("in_if", F.ingressInterface),
                       ("out_if", F.egressInterface)):
            if col in keep and not rd.into(k, dst[col]):
                v = c.raw(rd.arr, k) if k in c.name else None
                put(col, v if v is not None else 0)
        octets = rd.first_into((F.octetDeltaCount, F.postOctetDeltaCount, F.initiatorOctets), dst["bytes"])
        packets = rd.first_into((F.packetDeltaCount, F.postPacketDeltaCount, F.initiatorPackets), dst["packets"])
        present = [k for k in c.time_fields if k in c.name]  # (start, end), either may be missing
        if "start" not in keep and len(present) == 2:
            present = present[1:]
        times = {k: rd.native(k) for k in present}
        rd.run()  # everything below reads the columns it filled
        app = c.app_ids(rd.arr) if F.applicationId in c.name else None
        put("app_id", app if app is not None else 0)

        rate = self._rates(c, rd, ctx, base_rate)
        put("sampling_rate", rate)
        _counters(dst, octets, packets, rate)
        start, end = self._times(c, times.get, ctx, export, "start" in keep)
        put("start", start)
        put("end", end)
        if not c.has_reverse:
            return [], None

        # RFC 5103 biflow (or initiator/responder counters): the reverse direction is a flow
        # of its own, where the record says it carried anything.
        r64 = rate.astype(_U8)
        rb = c.first(rd.arr, (F.reverse(F.octetDeltaCount), F.responderOctets))
        rp = c.first(rd.arr, (F.reverse(F.packetDeltaCount), F.responderPackets))
        rb = rb if rb is not None else np.zeros(n, _U8)
        rp = rp if rp is not None else np.zeros(n, _U8)
        some = (rb > 0) | (rp > 0)
        if not some.any():
            return [], None
        forward = FlowBatch(**dst)
        rev = forward.take(some)
        rev.src_addr, rev.dst_addr = rev.dst_addr, rev.src_addr
        rev.src_port, rev.dst_port = rev.dst_port, rev.src_port
        rev.in_if, rev.out_if = rev.out_if, rev.in_if
        rev.bytes = rb[some] * r64[some]
        rev.packets = rp[some] * r64[some]
        rev.seq = rev.seq | _U8(1 << 19)  # after its forward record in capture order
        keep_fwd = (forward.bytes > 0) | (forward.packets > 0) | ~some
        # flows were counted per record: add the reverse halves, remove the empty forward ones
        delta = Counter(rev.session.tolist())
        delta.subtract(forward.session[~keep_fwd].tolist())
        for sid, k in delta.items():
            sess = self.by_sid.get(sid)
            if sess is not None and k:
                self.stats.flows[sess.stat_label, sess.version] += k
        return [rev], (None if keep_fwd.all() else ~keep_fwd)

    def _rates(self, c, rd: _Fields, ctx: _Chunks, base_rate: np.ndarray) -> np.ndarray:
        """Sampling rate per record: a per-record interval, else the record's sampler id in
        the session's sampler table, else the session's rate; a configured override wins."""
        rate = base_rate
        if c.interval_field is not None or c.sampler_field is not None:
            arr = rd.arr
        if c.interval_field is not None:
            interval = c.uint(arr, c.interval_field)
            space = c.uint(arr, c.space_field) if c.space_field else None
            if space is not None:
                rec = np.where(interval > 0, (interval + space) // np.maximum(interval, _U8(1)), 0)
            else:
                rec = interval
            rate = np.where(rec > 0, rec, rate).astype(np.uint32)
        elif c.sampler_field is not None:
            ids = c.uint(arr, c.sampler_field)
            sid = np.repeat(np.array(ctx.sids, _U8), ctx.counts)
            pairs, inverse = np.unique(np.stack([sid, ids]), axis=1, return_inverse=True)
            table = np.array([ctx.session(int(s)).samplers.get(int(i), 0) if ctx.session(int(s)) else 0
                              for s, i in pairs.T], np.uint32)
            found = table[inverse.ravel()]
            rate = np.where(found > 0, found, rate).astype(np.uint32)
        if self.sampling_override and rate is not base_rate:
            over = np.fromiter((bool(ctx.session(s) and ctx.session(s).override) for s in ctx.sids),
                               bool, len(ctx.sids))
            if over.any():
                rate = np.where(np.repeat(over, ctx.counts), base_rate, rate).astype(np.uint32)
        return rate

    def _times(self, c, read, ctx: _Chunks, export: np.ndarray, want_start: bool = True) -> tuple:
        """(start, end) in UNIX seconds; start is None unless wanted. `read(k)`: the values of
        time field k (unsigned integers, either byte order)."""
        kind = c.time_kind
        if kind == "export":
            return (export if want_start else None), export
        first_f, last_f = (k if k in c.name else None for k in c.time_fields)
        first_f, last_f = first_f or last_f, last_f or first_f
        if kind == "ms":
            conv = lambda v: v / 1e3  # noqa: E731
        elif kind == "s":
            conv = lambda v: v.astype(np.float64)  # noqa: E731
        elif kind == "ntp":
            conv = _ntp
        elif kind == "delta":
            conv = lambda v: export - v / 1e6  # noqa: E731
        elif ctx.first_session().version == 9:  # sysUpTime-relative, uptime from the v9 header
            uptime = ctx.uptime()
            conv = lambda v: export + _uptime_delta(v, uptime)  # noqa: E731
        else:  # sysUpTime-relative IPFIX needs IE 160 from options data
            inits = []
            for s, count in zip(ctx.sids, ctx.counts.tolist()):
                sess = ctx.session(s)
                if sess and sess.system_init_ms is not None:
                    inits.append(sess.system_init_ms)
                else:
                    inits.append(-1)
                    self.stats.notices[sess.stat_label if sess else "other", "no-system-init-time"] += count
            init = np.repeat(np.array(inits, np.float64), ctx.counts)
            missing = init < 0
            conv = lambda v: np.where(missing, export, (init + v) / 1e3)  # noqa: E731
        end = conv(read(last_f))  # each conversion reads the column once
        return (conv(read(first_f)) if want_start else None), end


def _gather(chunks: list, size: int) -> tuple:
    """A group's chunks (per-datagram tuples and bulk `Block`s) of `size`-octet records -> the
    records and per-chunk columns: counts, session ids, rates, export times, uptimes, datagram
    numbers, record bases. The records are one buffer, or (buffer, offsets) when they are one
    block's, still in its datagrams."""
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
        return (b.buf if b.offsets is None else (b.buf, b.offsets),
                b.counts.astype(np.int64, copy=False), b.sids.astype(np.uint32, copy=False),
                b.rates.astype(np.uint32, copy=False), b.exports.astype(np.float64, copy=False),
                b.uptimes.astype(np.int64, copy=False), b.dgrams.astype(np.uint64, copy=False),
                b.bases.astype(np.uint64, copy=False))
    cat = np.concatenate
    return (b"".join(records_at(b.buf, b.offsets, size) for b in blocks),
            cat([b.counts for b in blocks]).astype(np.int64),
            cat([b.sids for b in blocks]).astype(np.uint32), cat([b.rates for b in blocks]).astype(np.uint32),
            cat([b.exports for b in blocks]).astype(np.float64), cat([b.uptimes for b in blocks]).astype(np.int64),
            cat([b.dgrams for b in blocks]).astype(np.uint64), cat([b.bases for b in blocks]).astype(np.uint64))


class _Chunks:
    """What `_columns` needs to know about the chunks of one template group."""

    __slots__ = ("counts", "sids", "uptimes", "by_sid")

    def __init__(self, counts, sids, uptimes, by_sid):
        self.counts, self.sids, self.uptimes, self.by_sid = counts, sids, uptimes, by_sid

    def session(self, sid: int) -> Session | None:
        return self.by_sid.get(sid)

    def first_session(self) -> Session:
        return self.by_sid[self.sids[0]]

    def uptime(self) -> np.ndarray:
        return np.repeat(np.asarray(self.uptimes).astype(np.uint32), self.counts)


def _counters(dst: dict, octets, packets, rate: np.ndarray) -> None:
    """Bytes and packets (either may be missing: 0) times the sampling rate, into `dst`.
    A counter may already be in its column (the kernel read it there): scaled in place."""
    ones = bool((rate == 1).all())
    r64 = None if ones else rate.astype(_U8)
    for col, v in (("bytes", octets), ("packets", packets)):
        if v is None:
            dst[col][...] = 0
        elif ones:
            if v is not dst[col]:
                np.copyto(dst[col], v, casting="unsafe")
        else:
            np.multiply(v, r64, out=dst[col], casting="unsafe")


class _Fields:
    """Fixed-size fields of a group's records (integers of 1, 2, 4 or 8 octets, addresses of 4
    or 16) read into columns all at once by `run`: by the compiled kernel when it was built
    (`kernels.compiled.fields`: a tight loop per field, from wherever the records lie), else by
    NumPy (a strided, byte-swapping copy per field of the gathered records). Columns handed
    out hold their values once `run` has returned. Fields of other sizes are read through the
    template's dtype (`arr`, gathered on first use), as before there was a kernel."""

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
# NetFlow v5 records (v5.RECORD): column -> (offset, width)
_V5_READS = {"src_addr": (0, 4), "dst_addr": (4, 4), "in_if": (12, 2), "out_if": (14, 2), "packets": (16, 4),
             "bytes": (20, 4), "src_port": (32, 2), "dst_port": (34, 2), "proto": (38, 1)}
_V5_FIRST, _V5_LAST = (24, 4), (28, 4)


def _uptime_delta(t: np.ndarray, uptime: np.ndarray) -> np.ndarray:
    """Seconds from the header's sysUpTime to `t`, both 32-bit milliseconds (wrap-safe)."""
    d = (t.astype(np.uint32) - uptime.astype(np.uint32)).view(np.int32)  # wraps mod 2^32, signed
    return d / 1e3


def _ntp(v: np.ndarray) -> np.ndarray:
    return (v >> _U8(32)).astype(np.float64) - F.NTP_EPOCH_OFFSET + (v & _U8(0xFFFFFFFF)) / 2.0**32


def _text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace").strip()


def _put(table: dict, k: int, v: str, limit: int, stats: DecodeStats) -> bool:
    """Store a name under the ceiling; returns whether anything changed or was counted."""
    if k in table or len(table) < limit:
        changed = table.get(k) != v
        table[k] = v
        return changed
    stats.evicted["names"] += 1
    return True
