"""The decoder's table of exporter sessions (RFC 7011 §8: templates are scoped to the transport
session and observation domain): creation, eviction of the least recently seen, the templates
each holds, the data held for templates not yet seen, and the state saved across restarts.

Every table here is keyed by what a sender controls and has a ceiling (`Limits`), in counts
and in octets; what a ceiling drops is counted in `DecodeStats`. Sessions that have sent a
flow record (`Session.established`) are evicted after those that have not, so a flood of new
sessions cannot push a working exporter out.

The state file is written to a temporary file in the same folder and renamed over the path (a
link planted there is replaced, never followed), and read back through the same checks and
ceilings as templates and names from the wire.
"""

from __future__ import annotations

import json
import os

from collector.netflow.errors import DecodeError
from collector.netflow.session import Limits, Pending, Session
from collector.netflow.sets import check
from collector.netflow.stats import DecodeStats
from collector.netflow.templates import Refused, Template

STATE_FORMAT = 1  # of the file `save` writes


class SessionTable:
    """Sessions by key (exporter address, source port, version, domain) and by session id."""

    def __init__(self, limits: Limits, stats: DecodeStats, sampling_override: dict[str, int]):
        self.limits = limits
        self.stats = stats
        self.sampling_override = sampling_override  # exporter address -> rate
        self.sessions: dict[tuple, Session] = {}
        self.by_sid: dict[int, Session] = {}
        self._next_sid = 0
        self._ntemplates = 0  # over all sessions
        self.template_bytes = 0  # over all sessions
        self.name_bytes = 0  # over all sessions
        self._pending_bytes = 0  # over all sessions
        self._retired: list[int] = []  # ids of sessions evicted during the current decode call
        self.names_changed: set[int] = set()  # sids whose app_names changed since the last take
        self._names_told: set[int] = set()  # sids with app_names the last take reported

    def open(self, key: tuple, received: float) -> Session:
        """The session of `key`, created if new (the ceiling is applied by `settle`)."""
        sess = self.sessions.get(key)
        if sess is None:
            sess = Session(self._next_sid, *key)
            sess.stat_label = self.stats.label(key[0])
            sess.override = self.sampling_override.get(key[0])
            self._next_sid += 1
            self.sessions[key] = sess
            self.by_sid[sess.sid] = sess
        sess.last_seen = received
        return sess

    def forget_retired(self) -> None:
        """Evicted sessions leave `by_sid` only now, at the start of the next decode call: the
        records they sent in the call that evicted them still name them."""
        for sid in self._retired:
            self.by_sid.pop(sid, None)
        self._retired.clear()

    def settle(self) -> None:
        """Apply the ceilings over all sessions (sessions, templates, template octets) at the
        end of a decode call, not at each new session or template: which sessions go then does
        not depend on which path decoded which datagram. Sessions that have sent no flow go
        first, then the least recently seen; a session ceiling evicts a tenth more (amortised
        under floods). Within a call the tables may grow by what one batch brings."""
        lim = self.limits
        if (len(self.sessions) <= lim.max_sessions and self._ntemplates <= lim.max_templates
                and self.template_bytes <= lim.max_template_bytes):
            return
        target = lim.max_sessions
        if len(self.sessions) > target:
            target -= target // 10
        for sess in sorted(self.sessions.values(), key=lambda s: (s.established, s.last_seen)):
            if (len(self.sessions) <= target and self._ntemplates <= lim.max_templates
                    and self.template_bytes <= lim.max_template_bytes):
                break
            self._evict(sess)

    def _evict(self, sess: Session) -> None:
        del self.sessions[(sess.exporter, sess.port, sess.version, sess.domain)]
        self._retired.append(sess.sid)
        self._ntemplates -= len(sess.templates)
        self.template_bytes -= sess.template_bytes
        self.name_bytes -= sess.name_bytes
        for p in sess.pending:
            self._drop_pending(sess, p)
        self.stats.evicted["sessions"] += 1
        if sess.sid in self._names_told:
            self.names_changed.add(sess.sid)  # the caller forgets its names
        else:
            self.names_changed.discard(sess.sid)
        sess.app_names = {}  # still in `by_sid` until the next call: a caller reads no names

    def take_names_changed(self) -> set[int]:
        """Sids whose application names changed since the last call, and sids of sessions
        evicted since that had names the caller was told about (their `app_names` are empty)."""
        out, self.names_changed = self.names_changed, set()
        for sid in out:
            sess = self.by_sid.get(sid)
            if sess is not None and sess.app_names and self.alive(sess):
                self._names_told.add(sid)
            else:
                self._names_told.discard(sid)
        return out

    def alive(self, sess: Session) -> bool:
        return self.sessions.get((sess.exporter, sess.port, sess.version, sess.domain)) is sess

    # --- templates -----------------------------------------------------------------------

    def define(self, sess: Session, new: dict[int, Template | Refused | None]) -> None:
        """A message's templates into its session: None withdraws (RFC 7011 §8.1); a refused
        definition is counted (`DecodeStats.evicted` by reason) and withdraws what the id meant
        before."""
        label, lim = sess.stat_label, self.limits
        templates = sess.templates
        for tid, t in new.items():
            old = templates.get(tid)
            if t is None or type(t) is Refused:
                if old is not None:
                    self._remove(sess, tid, old)
                if t is None:
                    sess.refused.pop(tid, None)
                else:  # the datagram itself is decoded: counted as an eviction by reason
                    self.stats.evicted[t.reason] += 1
                    if tid in sess.refused or len(sess.refused) < lim.max_templates_per_session:
                        sess.refused[tid] = t.reason
                continue
            sess.refused.pop(tid, None)
            self.stats.templates[label] += 1
            if old is not None and old.same_as(t):
                continue
            grow = t.octets - (old.octets if old is not None else 0)
            if old is None and len(templates) >= lim.max_templates_per_session:
                self.stats.evicted["templates"] += 1
                continue
            if sess.template_bytes + grow > lim.max_template_bytes_per_session:
                self.stats.evicted["template-bytes"] += 1
                continue
            templates[tid] = t  # a redefinition replaces (RFC 7011 §8.1)
            sess.template_bytes += grow
            self.template_bytes += grow
            if old is None:
                self._ntemplates += 1
            else:
                sess.options_seen.clear()

    def _remove(self, sess: Session, tid: int, old: Template) -> None:
        del sess.templates[tid]
        self._ntemplates -= 1
        sess.template_bytes -= old.octets
        self.template_bytes -= old.octets
        sess.options_seen.clear()

    # --- data before its template --------------------------------------------------------

    def hold(self, sess: Session, p: Pending) -> None:
        """Keep a data set until its template arrives, under the count, byte and age limits."""
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

    def release(self, sess: Session, tids: list[int]) -> list[tuple[Pending, Template]]:
        """The held sets of templates `tids` that the session now holds, in arrival order, and
        no longer held (counted as replayed); the others stay."""
        wanted = set(tids)
        keep, out = [], []
        for p in sess.pending:
            t = sess.templates.get(p.tid) if p.tid in wanted else None
            if t is None:
                keep.append(p)
                continue
            sess.pending_bytes -= len(p.data)
            self._pending_bytes -= len(p.data)
            self.stats.replayed[sess.stat_label] += 1
            out.append((p, t))
        sess.pending.clear()
        sess.pending.extend(keep)
        return out

    def _drop_pending(self, sess: Session, p: Pending) -> None:
        sess.pending_bytes -= len(p.data)
        self._pending_bytes -= len(p.data)
        self.stats.expired[sess.stat_label] += 1

    def _expire_session(self, sess: Session, now: float) -> None:
        oldest = now - self.limits.pending_max_age
        while sess.pending and sess.pending[0].received < oldest:
            self._drop_pending(sess, sess.pending.popleft())

    def expire(self, now: float) -> None:
        """Drop data held longer than `Limits.pending_max_age`."""
        for sess in self.sessions.values():
            if sess.pending:
                self._expire_session(sess, now)

    def pending_count(self) -> int:
        return sum(len(s.pending) for s in self.sessions.values())

    # --- state across restarts -----------------------------------------------------------

    def save(self, path: str) -> None:
        """Write the state to a temporary file next to `path`, then rename it over `path`: a
        link planted at `path` is replaced, its target never written; a crash leaves the old
        file whole."""
        state = {"format": STATE_FORMAT, "sessions": [s.to_json() for s in self.sessions.values()
                                                      if s.templates or s.samplers or s.if_names or s.app_names]}
        folder = os.path.dirname(os.path.abspath(path))
        import tempfile  # here: it brings shutil, random, bz2 and lzma, 0.6 MiB a daemon would hold for good
        fd, tmp = tempfile.mkstemp(prefix=".templates-", suffix=".tmp", dir=folder)  # O_EXCL, mode 0600
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(state, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise

    def load(self, path: str) -> int:
        """Load sessions saved by `save`; returns the templates loaded. Everything goes through
        the checks and ceilings of the wire (templates refused are counted by reason, names cut
        and bounded); a session entry of the wrong shape is skipped. Raises OSError (a link at
        `path` is not followed; a file larger than the ceilings allow is not read) or
        ValueError (not a state file)."""
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, "rb") as fh:
            most = self._state_max_bytes()
            raw = fh.read(most + 1)
        if len(raw) > most:
            raise OSError(f"{path}: larger than the ceilings allow ({most} octets)")
        state = json.loads(raw)
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise ValueError(f"{path}: not a template state file of format {STATE_FORMAT}")
        sessions = state.get("sessions")
        if not isinstance(sessions, list):
            raise ValueError(f"{path}: no list of sessions")
        loaded = 0
        for s in sessions:
            try:
                loaded += self._load_session(s)
            except (TypeError, ValueError, KeyError, AttributeError, OverflowError):
                self.stats.evicted["state-refused"] += 1
        self.settle()
        return loaded

    def _state_max_bytes(self) -> int:
        """JSON costs a few times the wire octets (a field `[8, 4], ` is 8 characters)."""
        lim = self.limits
        return 8 * (lim.max_template_bytes + lim.max_name_bytes) + 64 * lim.max_sessions + (1 << 20)

    def _load_session(self, s: dict) -> int:
        exporter, port, version, domain = s["exporter"], s["port"], s["version"], s["domain"]
        if not (isinstance(exporter, str) and 0 < len(exporter) <= 64 and type(port) is int
                and 0 <= port <= 0xFFFF and version in (9, 10) and type(domain) is int
                and 0 <= domain <= 0xFFFF_FFFF):
            raise ValueError("session key")
        templates: dict[int, Template | Refused] = {}
        for raw in s.get("templates", []):
            try:
                t = check(Template.from_json(raw))
            except DecodeError as exc:  # what the wire parser raises for it
                t = Refused(-1, exc.reason)
            except (TypeError, ValueError):
                t = Refused(-1, "state-refused")
            if type(t) is Refused:
                self.stats.evicted[t.reason] += 1
                continue
            templates[t.tid] = t
        sess = self.open((exporter, port, version, domain), 0.0)
        self.define(sess, templates)
        rate = s.get("sampling_rate", 1)
        if type(rate) is int and 0 < rate < 1 << 32:
            sess.sampling_rate = rate
        for k, v in dict(s.get("samplers", {})).items():
            if type(v) is int and 0 < v < 1 << 32 and len(sess.samplers) < self.limits.max_samplers_per_session:
                sess.samplers[int(k)] = v
        init = s.get("system_init_ms")
        sess.system_init_ms = init if type(init) is int and 0 <= init < 1 << 64 else None
        for table, key in ((sess.if_names, "if_names"), (sess.app_names, "app_names")):
            for k, v in dict(s.get(key, {})).items():
                if isinstance(v, str):
                    self.put_name(sess, table, int(k), v)
        sess.established = s.get("established", True) is True
        return len(sess.templates)

    # --- names learned from options data -------------------------------------------------

    def put_name(self, sess: Session, table: dict, k: int, v: str) -> bool:
        """Store a name (cut to `Limits.max_name_length` characters) under the ceilings on
        names per session and octets per session and overall; returns whether anything
        changed or was counted."""
        lim = self.limits
        v = v[:lim.max_name_length]
        old = table.get(k)
        if old == v:
            return False
        if old is None and len(table) >= lim.max_names_per_session:
            self.stats.evicted["names"] += 1
            return True
        grow = len(v.encode("utf-8", "replace")) - (len(old.encode("utf-8", "replace")) if old is not None else 0)
        if grow > 0 and (sess.name_bytes + grow > lim.max_name_bytes_per_session
                         or self.name_bytes + grow > lim.max_name_bytes):
            self.stats.evicted["name-bytes"] += 1
            return True
        table[k] = v
        sess.name_bytes += grow
        self.name_bytes += grow
        if table is sess.app_names:
            self.names_changed.add(sess.sid)
        return True
