"""The decode boundary: datagrams of any version in, one columnar `FlowBatch` out.

Most datagrams of a batch take the bulk path (`bulk.bulk`: every header and set walk of the
batch at once, in NumPy or the compiled kernels); the rest (templates, options, new sessions,
anything unusual) take the per-datagram path here, in capture order: the header read, the
sets framed and checked (`sets.split_sets`, the template parsers) and only then applied. Both
paths only locate records (`chunks.Located`); at the end of a call the records of each
template, from every datagram, are read into columns at once (`columns.Columns`).

No exception leaves `decode`: a malformed datagram is counted by reason and skipped whole,
before it changes any state; a fault of the decoder itself costs the datagram (or the decode
group) and is counted as "internal"; either is logged once a minute per reason (`Faults`).
Pure: no sockets, no logging setup; the clock is only for rate-limiting the log (receive
times come with the datagrams).

Under a template flood, sessions that have sent flows come first: template sets of sessions
that have not are parsed up to a budget per call (`Limits.max_new_template_bytes_per_batch`);
past it their datagrams wait in a bounded queue (`deferred.Deferred`: `DEFER_DATAGRAMS`,
`DEFER_OCTETS`, at most `Limits.pending_max_age`) and are decoded first in the next calls,
within the budget; what the queue cannot take is shed, counted as "template-shed". Templates
that held data waits for (the session's `pending`) have a budget of their own per call, the
same size, and are served first: the moment the data is held when its template datagram was
already waiting, so an exporter starting during a backlog does not wait behind it. A call with
no datagrams works the queue off within the same budgets (the daemon makes one when its sockets
are idle).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from struct import unpack_from

from collector.netflow import v5
from collector.netflow.batch import FlowBatch
from collector.netflow.bulk import bulk
from collector.netflow.chunks import V5, Located
from collector.netflow.columns import Columns
from collector.netflow.deferred import Deferred
from collector.netflow.errors import BadLength, BadVersion, DecodeError, Faults, Shed, ShortHeader
from collector.netflow.options import apply as apply_options
from collector.netflow.session import Limits, Pending, Session
from collector.netflow.sessions import SessionTable
from collector.netflow.sets import IPFIX, V9, WITHDRAW_ALL, TemplateMemo, split_sets
from collector.netflow.stats import DecodeStats
from collector.netflow.templates import Refused, Template
from collector.sflow.bulk import MIN_BATCH as SFLOW_MIN_BATCH
from collector.sflow.bulk import bulk as sflow_bulk
from collector.sflow.datagram import is_sflow
from collector.sflow.decode import SflowDecoder

_V5_HEADER = v5.HEADER.unpack_from
DEFER_DATAGRAMS = 4096  # new sessions' template datagrams waiting for a later call's budget
DEFER_OCTETS = 4 << 20  # (both queues of `Deferred` together)


class Decoder:
    """Holds every exporter session's state across calls to `decode`."""

    def __init__(self, limits: Limits | None = None, sampling: dict[str, int] | None = None,
                 bulk: bool = True, columns: Iterable[str] | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.limits = limits or Limits()
        self.name_filter = None  # server names kept only when it says so (the pipeline: catalogue domains)
        self.bulk = bulk  # False: every datagram takes the per-datagram path (the reference)
        self.stats = DecodeStats(max_exporters=self.limits.max_stats_exporters)
        self.table = SessionTable(self.limits, self.stats, dict(sampling or {}))
        self.memo = TemplateMemo()  # template sets by their octets
        self.located = Located()  # what the current call has located
        self.faults = Faults(clock)
        self._columns = Columns(columns, self.table, self.stats, self.faults)
        self.sflow = SflowDecoder(self.table, self.stats, self.limits)
        self.columns = self._columns.keep  # the columns filled; the others are zeros
        self._dgram = 0  # datagrams seen, for capture order
        self._budget = 0  # template set octets still to parse this call for new sessions
        self._awaited_budget = 0  # the same for sessions holding data that waits for a template
        self._deferred = Deferred(DEFER_DATAGRAMS, DEFER_OCTETS)  # datagrams past the budgets
        self._promoted = False  # a waiting datagram became awaited during this datagram

    @property
    def sessions(self) -> dict[tuple, Session]:
        """(exporter address, source port, version, domain) -> session."""
        return self.table.sessions

    @property
    def by_sid(self) -> dict[int, Session]:
        """Session id (the `session` column) -> session."""
        return self.table.by_sid

    @property
    def sampling_override(self) -> dict[str, int]:
        """Exporter address -> configured sampling rate (wins over what the exporter says)."""
        return self.table.sampling_override

    @sampling_override.setter
    def sampling_override(self, rates: dict[str, int]) -> None:
        self.table.sampling_override = rates  # for new sessions; the caller updates existing ones

    def expire(self, now: float) -> None:
        """Drop data held longer than `Limits.pending_max_age` (the daemon calls this)."""
        self.table.expire(now)

    def pending_count(self) -> int:
        """Data sets held for templates not seen yet."""
        return self.table.pending_count()

    def save_state(self, path: str) -> None:
        """Templates and options state of every session, as JSON (at shutdown)."""
        self.table.save(path)

    def load_state(self, path: str) -> int:
        """Load sessions saved by `save_state` (through the wire's checks and ceilings);
        returns the templates loaded."""
        return self.table.load(path)

    def take_names_changed(self) -> set[int]:
        """Session ids whose application names (`Session.app_names`) changed since the last
        call, and ids of sessions evicted since whose names an earlier call reported (forget
        them); cleared by the call."""
        return self.table.take_names_changed()

    # --- the boundary --------------------------------------------------------------------

    def decode(self, datagrams: Iterable[tuple[bytes, tuple, float]]) -> FlowBatch:
        """Decode `(payload, (address, port, ...), receive_time)` items into one batch."""
        self.table.forget_retired()
        stats = self.stats
        # a list, or a received batch (`mmsg.Batch`: a sequence with a `layout` for the bulk path)
        items = datagrams if isinstance(datagrams, list) or hasattr(datagrams, "layout") else list(datagrams)
        base = self._dgram
        self._budget = self._awaited_budget = self.limits.max_new_template_bytes_per_batch
        try:
            rest = bulk(self, items, base) if items and self.bulk else range(len(items))
        except Exception as exc:  # a decoder bug: the batch is lost, counted, the daemon goes on
            self.located.take()
            self._dgram = base + len(items)
            for _, source, _ in items:
                stats.errors[stats.label(source[0]), "internal"] += 1
            self.faults.note("internal", items[0][1][0], exc, internal=True)
            return self._columns.batch({})
        if self.bulk and len(rest) >= SFLOW_MIN_BATCH:
            rest = self._sflow_bulk(items, rest, base)
        # what waited for this call's budgets: decoded before this call's datagrams, the
        # templates data waits for first
        oldest = float("-inf")  # what is deferred in this call is never too old in it
        if self._deferred:
            oldest = (items[-1][2] if items else self._deferred.latest) - self.limits.pending_max_age
            self._work_off(True, oldest)
            self._work_off(False, oldest)
        for i in rest:
            data, source, received = items[i]
            self._one(data, source, received, base + i + 1)
            if self._promoted:  # its data was held and its template datagram was waiting: now
                self._promoted = False
                self._work_off(True, oldest)
        self._dgram = base + len(items)
        self.table.settle()
        groups, touched = self.located.take()
        for sess in touched:  # per-session tallies -> the shared counters, once per call
            key = sess.stat_label, sess.version
            stats.datagrams[key] += sess.n_datagrams
            stats.flows[key] += sess.n_flows
            if sess.n_lost:
                stats.seq_lost[sess.stat_label] += sess.n_lost
            if sess.sflow is not None:
                sess.sflow.tell(stats.sampling, sess.stat_label)
            sess.n_datagrams = sess.n_flows = sess.n_lost = 0
        if self.sflow.pending():
            return FlowBatch.concat([self._columns.batch(groups), self._sflow_batch(items)])
        return self._columns.batch(groups)

    def _sflow_bulk(self, items, rest, base: int):
        """sFlow datagrams of the batch through sFlow's bulk path; -> the indices left for the
        per-datagram path. A fault there (a bug) loses the batch's sFlow datagrams, counted."""
        sf = [i for i in rest if is_sflow(items[i][0])]
        if len(sf) < SFLOW_MIN_BATCH:
            return rest
        try:
            slow = set(sflow_bulk(self.sflow, items, sf, base, self.located.touched))
        except Exception as exc:
            self.sflow._bulk.clear()
            for i in sf:
                self.stats.errors[self.stats.label(items[i][1][0]), "internal"] += 1
            self.faults.note("internal", items[sf[0]][1][0], exc, internal=True)
            slow = set()
        taken = set(sf) - slow
        return [i for i in rest if i not in taken]

    def _sflow_batch(self, items) -> FlowBatch:
        try:
            return self.sflow.take()
        except Exception as exc:  # a decoder bug: this call's sFlow samples are lost, counted
            self.stats.errors[self.stats.label(items[0][1][0]) if items else "other", "internal"] += 1
            self.faults.note("internal", items[0][1][0] if items else "other", exc, internal=True)
            return FlowBatch.empty()

    def _one(self, data: bytes, source: tuple, received: float, dgram: int) -> None:
        """One datagram on the per-datagram path; every fault is counted here."""
        self._dgram = dgram
        exporter = source[0]
        stats = self.stats
        try:
            if len(data) < 4:
                raise ShortHeader(f"{len(data)} octets")
            version = (data[0] << 8) | data[1]
            if version == 0 and is_sflow(data):
                self.sflow.datagram(data, exporter, source[1], received, dgram, self.located.touched)
            elif version == 9 or version == 10:
                self._templated(data, exporter, source[1], received, version)
            elif version == 5:
                self._v5(data, exporter, source[1], received)
            else:
                raise BadVersion(f"version {version}")
        except Shed as exc:  # waits for a later call's budget, if the queue has room
            key = (exporter, source[1], exc.version, exc.domain)
            sess = self.table.sessions.get(key)
            awaited = sess is not None and bool(sess.pending)
            for entry in self._deferred.put((bytes(data), source, received, dgram, key), awaited):
                self._shed(entry[1][0], exc)
        except DecodeError as exc:
            stats.errors[stats.label(exporter), exc.reason] += 1
            self.faults.note(exc.reason, exporter, exc)
        except Exception as exc:  # a decoder bug must cost one datagram, not the daemon
            stats.errors[stats.label(exporter), "internal"] += 1
            self.faults.note("internal", exporter, exc, internal=True)

    def _shed(self, exporter: str, exc: Shed) -> None:
        self.stats.errors[self.stats.label(exporter), exc.reason] += 1
        self.faults.note(exc.reason, exporter, exc)

    def deferred_count(self) -> int:
        """New sessions' template datagrams waiting for a later call's budget (a call with no
        datagrams works them off)."""
        return len(self._deferred)

    def _work_off(self, awaited: bool, oldest: float) -> None:
        """Waiting datagrams of one queue, oldest first, while its budget lasts (with those it
        promotes on the way); those received before `oldest` are shed. Bounded by what waits:
        a datagram that waits again (its session's state changed meanwhile) goes to the back
        of the other queue."""
        deferred = self._deferred
        for _ in range(len(deferred)):
            if (self._awaited_budget if awaited else self._budget) <= 0:
                break
            entry = deferred.take(awaited)
            if entry is None:
                break
            data, source, received, dgram, _ = entry
            if received < oldest:
                self._shed(source[0], Shed("waited too long"))
                continue
            self._one(data, source, received, dgram)
        self._promoted = False

    def _charge(self, sess: Session | None, octets: int, first: bool) -> None:
        """Template set octets of a session that has sent no flow, against this call's budget
        for templates held data waits for, or else for announcements. A datagram passes whole
        or waits whole: only its first charged set is checked, so a call overdraws its budget
        by one datagram at most and a datagram taken from the queue is never put back."""
        if sess is not None and sess.pending:
            if first and self._awaited_budget <= 0:
                raise Shed("template sets that held data waits for, past the batch's budget for them")
            self._awaited_budget -= octets
        else:
            if first and self._budget <= 0:
                raise Shed("template sets of a session that has sent no flow, past the batch's budget")
            self._budget -= octets

    # --- NetFlow v5 ----------------------------------------------------------------------

    def _v5(self, data: bytes, exporter: str, port: int, received: float) -> None:
        if len(data) < v5.HEADER_LEN:
            raise ShortHeader(f"{len(data)} octets", version=5)
        count, uptime, secs, nsecs, seq, engine_type, engine_id, sampling = _V5_HEADER(data, 2)
        if v5.HEADER_LEN + count * v5.RECORD_LEN > len(data):
            raise BadLength(f"{count} records need {v5.HEADER_LEN + count * v5.RECORD_LEN} octets, "
                            f"datagram has {len(data)}", version=5)
        key = (exporter, port, 5, (engine_type << 8) | engine_id)
        sess = self.table.open(key, received)
        # a 2-bit mode and a 14-bit interval; interval 0 means unsampled whatever the mode
        rate = sess.sampling_rate = (sampling & 0x3FFF) or 1
        if seq == sess.next_seq:
            sess.next_seq = (seq + count) & 0xFFFF_FFFF
        else:
            sess.track_sequence(seq, count, False)
        sess.n_datagrams += 1
        sess.n_flows += count
        self.located.touched.add(sess)
        if count:
            sess.established = True
            self.located.add(V5, (data[24:24 + 48 * count], count, sess.sid, sess.override or rate,
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
        sess = self.table.sessions.get(key)
        ipfix = version == 10
        hl = dialect.header_len
        known = sess.templates if sess is not None else {}
        refused = sess.refused if sess is not None else {}

        # Pass 1: check the whole message and locate records; nothing is applied yet.
        new: dict[int, Template | Refused | None] | None = None
        chunks, held, options = [], [], []
        names: dict[int, str] = {}  # server names the records carry (templates.server_name_id)
        records = skipped = 0
        charged = False
        try:
            for sid, start, stop in split_sets(data, hl, end):
                if sid >= 256:
                    t = known.get(sid) if new is None else new.get(sid, known.get(sid))
                    if t is None:
                        if sid in refused and (new is None or sid not in new):
                            skipped += 1  # data of a refused template: neither decoded nor held
                        else:
                            held.append((sid, start, stop))
                    elif type(t) is Refused:
                        skipped += 1
                    elif t.scope_count:
                        options.append((t, start, stop))
                    else:
                        size = t.record_len
                        if size:
                            n = (stop - start) // size
                            if n:
                                chunks.append((t, data[start:start + n * size], n, records))
                        else:
                            buf, n = t.normalise(data, start, stop, names)
                            if n:
                                chunks.append((t, buf, n, records))
                        records += n
                elif sid == dialect.template_set or sid == dialect.options_set:
                    if (sess is None or not sess.established) and not self._refresh(sess, data, start, stop, sid):
                        self._charge(sess, stop - start, not charged)  # a new session: within a budget
                        charged = True
                    if new is None:
                        new = {}
                    for tid, t in self.memo.parse(data, start, stop, ipfix, sid == dialect.options_set):
                        if tid == WITHDRAW_ALL:
                            opts = sid == dialect.options_set
                            for k, old in list(known.items()) + list(new.items()):
                                if type(old) is Template and bool(old.scope_count) == opts:
                                    new[k] = None
                        else:
                            old = known.get(tid)  # a refresh: keep the object decode groups use
                            new[tid] = old if type(t) is Template and old is not None and old.same_as(t) else t
                # other set ids are reserved (RFC 7011 §3.3.2): skipped
            option_records = [(t, t.split_records(data, start, stop), start, stop) for t, start, stop in options]
        except DecodeError as exc:
            exc.version, exc.domain = version, domain
            raise

        # Pass 2: the message is sound; apply it.
        if sess is None:
            sess = self.table.open(key, received)
        sess.last_seen = received
        self.located.touched.add(sess)
        sess.n_datagrams += 1
        for _, recs, _, _ in option_records:
            records += len(recs)
        sess.track_sequence(seq, records, not ipfix)
        if new:
            self.table.define(sess, new)
        for t, recs, start, stop in option_records:
            changed = apply_options(sess, t, recs, self.table)
            sess.options_applied(t.tid, data[start:stop], len(recs), changed)
        if skipped:
            self.stats.notices[sess.stat_label, "refused-template-data"] += skipped
        if names:
            self._names(sess, names)
        if chunks:
            sess.established = True
            groups = self.located.groups
            sid, rate, dgram = sess.sid, sess.override or sess.sampling_rate, self._dgram
            for t, buf, n, base in chunks:
                groups[t].append((buf, n, sid, rate, export, uptime, dgram, base))
                sess.n_flows += n
        for tid, start, stop in held:
            self.table.hold(sess, Pending(tid, data[start:stop], (export, uptime, self._dgram, records), received))
            records += 1  # held sets of one datagram keep their order
        if held and self._deferred and self._deferred.promote(key):
            self._promoted = True  # its template datagram was waiting: served after this one
        if new and sess.pending:
            self._replay(sess, [tid for tid, t in new.items() if type(t) is Template])

    def _names(self, sess: Session, names: dict[int, str]) -> None:
        """Server names the exporter sent (TLS SNI, HTTP Host) -> the session's application names,
        keyed by their id in the app_id column, under the same ceilings. `name_filter` (set by
        the pipeline: does a catalogue domain pattern match?) keeps every other name out."""
        keep = self.name_filter
        for ident, text in names.items():
            if sess.app_names.get(ident) != text and (keep is None or keep(text)):
                self.table.put_name(sess, sess.app_names, ident, text)

    def _refresh(self, sess: Session | None, data: bytes, start: int, stop: int, sid: int) -> bool:
        """Whether a template set only repeats templates the session holds (the bulk path's
        test: such a set costs no parsing and takes no budget on either path)."""
        if sess is None or not sess.templates:
            return False
        parsed = self.memo.get(sess.version == 10, sid in (1, 3), data[start:stop])
        known = sess.templates
        return bool(parsed) and all(t is not None and known.get(k) is t for k, t in parsed)

    def _replay(self, sess: Session, tids: list[int]) -> None:
        """Decode data held for templates that have just arrived, with its original meta."""
        for p, t in self.table.release(sess, tids):
            export, uptime, dgram, base = p.meta
            try:
                if t.scope_count:
                    recs = t.split_records(p.data, 0, len(p.data))
                    sess.options_applied(t.tid, p.data, len(recs), apply_options(sess, t, recs, self.table))
                    continue
                if t.record_len:
                    n = len(p.data) // t.record_len
                    buf = p.data[:n * t.record_len]
                else:
                    names: dict[int, str] = {}
                    buf, n = t.normalise(p.data, 0, len(p.data), names)
                    if names:
                        self._names(sess, names)
            except DecodeError as exc:  # the set was held, its datagram already counted
                self.stats.errors[sess.stat_label, "held-" + exc.reason] += 1
                continue
            if n:
                rate = sess.override or sess.sampling_rate
                self.located.add(t, (buf, n, sess.sid, rate, export, uptime, dgram, base))
                sess.n_flows += n
                sess.established = True
