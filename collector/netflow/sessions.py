"""The decoder's table of exporter sessions (RFC 7011 §8: templates are scoped to the transport
session and observation domain): creation, eviction of the least recently seen, the templates
each holds, the data held for templates not yet seen, and the state saved across restarts.

Every table here is keyed by what a sender controls and has a ceiling (`Limits`); what a
ceiling drops is counted in `DecodeStats`.
"""

from __future__ import annotations

import json

from collector.netflow.session import Limits, Pending, Session
from collector.netflow.stats import DecodeStats
from collector.netflow.templates import Template

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
        self._pending_bytes = 0  # over all sessions
        self._retired: list[int] = []  # ids of sessions evicted during the current decode call

    def open(self, key: tuple, received: float) -> Session:
        """The session of `key`, created (under the ceiling) if new."""
        sess = self.sessions.get(key)
        if sess is None:
            if len(self.sessions) >= self.limits.max_sessions:
                self._evict()
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

    def _evict(self, keep: Session | None = None) -> None:
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

    # --- templates -----------------------------------------------------------------------

    def define(self, sess: Session, new: dict[int, Template | None]) -> None:
        """A message's templates into its session: None withdraws (RFC 7011 §8.1)."""
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
                self._evict(keep=sess)
            templates[tid] = t
            self._ntemplates += 1

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
        state = {"format": STATE_FORMAT, "sessions": [s.to_json() for s in self.sessions.values()
                                                      if s.templates or s.samplers or s.if_names]}
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(state, fh)

    def load(self, path: str) -> int:
        """Load sessions saved by `save`; returns the templates loaded."""
        with open(path, encoding="utf-8") as fh:
            state = json.load(fh)
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"{path}: unknown template state format {state.get('format')!r}")
        loaded = 0
        for s in state["sessions"]:
            sess = self.open((s["exporter"], int(s["port"]), int(s["version"]), int(s["domain"])), 0.0)
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
