"""The data path of one process: decode -> classify -> aggregate, a batch of datagrams at a
time, on the event loop between receives. No sockets, no store, no clock of its own: the
caller passes the time. A fault inside (a bug: bad input is the decoder's business and never
raises) loses that batch only, counted as decode errors of reason "internal"."""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass

import numpy as np

from collector import config as C
from collector.aggregate import Aggregator
from collector.auditlog import AuditBuffer
from collector.classify.catalogue import Catalogue
from collector.classify.classifier import Classifier
from collector.daemon.wiring import app_id_table, build_asn, build_catalogue, build_learned, build_policy, limits_of
from collector.kernels.grouping import sole, unique_inverse
from collector.netflow.decoder import Decoder
from collector.policy import Policy

log = logging.getLogger(__name__)

INTERNAL_LOG_EVERY = 60.0  # seconds between tracebacks of faults in the pipeline


@dataclass(frozen=True)
class Classification:
    """What a reload replaces as one piece: the catalogue and everything built from it."""
    catalogue: Catalogue
    app_ids: dict[int, str]
    classifier: Classifier
    policy: Policy

    @classmethod
    def from_config(cls, cfg: C.Config) -> Classification:
        """Raises ConfigError naming the key, before anything running is touched."""
        catalogue = build_catalogue(cfg)
        app_ids = app_id_table(cfg, catalogue)
        return cls(catalogue, app_ids, Classifier(catalogue, cfg.get("classify.internal"), app_ids,
                                                  asn=build_asn(cfg)),
                   build_policy(cfg, catalogue))


class Pipeline:
    def __init__(self, cfg: C.Config, clock=time.time):
        self.clock = clock
        self.learned = build_learned(cfg)  # addresses learned from DNS (dnstap), or None
        categories = cfg.get("audit.categories")
        # the flow audit log (None when no category is watched); its extra columns are decoded only then
        self.audit = AuditBuffer(categories, cfg.get("audit.max_pending")) if categories else None
        self.decoder = Decoder(limits_of(cfg), sampling=cfg.get("exporters.sampling"),
                               columns=Classifier.COLUMNS | Aggregator.COLUMNS  # + session (exporter)
                               | (AuditBuffer.COLUMNS if self.audit else frozenset()))
        self.aggregator = Aggregator([], [], max_open_bins=cfg.get("limits.max_open_bins"))
        self.aggregator.audit = self.audit
        self.apply(Classification.from_config(cfg), cfg.get("exporters.sampling"))
        # server names exporters send are kept only when a catalogue domain pattern matches them
        self.decoder.name_filter = lambda name: self.catalogue.domains.match(name) != 0
        self.internal_failures = 0  # batches lost to a fault in process()
        self._internal_logged = float("-inf")

    def apply(self, c: Classification, sampling: dict[str, int]) -> None:
        """Take a new classification and sampling overrides (at start, and on reload after a
        flush: open bins hold service indexes of the catalogue they were counted with)."""
        self.classification = c
        self.catalogue, self.app_ids, self.classifier, self.policy = c.catalogue, c.app_ids, c.classifier, c.policy
        self.policy_table = c.policy.vectorized(c.catalogue)
        c.classifier.learned_addresses = self.learned  # survives reloads: it keeps service ids
        c.classifier.clock = self.clock  # learned addresses expire by it
        self.aggregator.set_services([s.id for s in c.catalogue.services], [s.category for s in c.catalogue.services])
        if self.audit is not None:
            self.audit.set_services([s.id for s in c.catalogue.services], [s.category for s in c.catalogue.services])
        self.decoder.sampling_override = dict(sampling)
        for sess in self.decoder.sessions.values():
            sess.override = self.decoder.sampling_override.get(sess.exporter)
        self._learn(list(self.decoder.by_sid))  # the new catalogue matches the names again

    def _learn(self, sids) -> None:
        """Application names that sessions sent in options data -> their own app-id tables.
        Only sessions whose names changed are matched again (a dict lookup per name), so many
        names cost nothing at a flush; one exporter's names never classify another's flows."""
        for sid in sids:
            sess = self.decoder.by_sid.get(sid)
            names = sess.app_names if sess is not None else {}
            self.classifier.set_learned(sid, self.catalogue.app_ids_for(names) if names else {})

    # --- per batch ---------------------------------------------------------------------------

    def process(self, datagrams) -> None:
        """Decode, classify and aggregate one batch; a fault loses this batch only (its
        datagrams counted as decode errors of reason "internal", the traceback logged once a
        minute at most)."""
        try:
            self._process(datagrams)
            self.aggregator.settle()  # the batch's arrays are freed by now
        except Exception:  # never let one batch stop the intake or the shutdown
            lost = Counter(self.decoder.stats.label(src[0]) for src in _sources(datagrams))
            for label, n in lost.items():
                self.decoder.stats.errors[label, "internal"] += n
            self.internal_failures += 1
            now = time.monotonic()
            if now - self._internal_logged >= INTERNAL_LOG_EVERY:
                self._internal_logged = now
                log.exception("internal error processing a batch of %d datagrams (%d such batches so far; "
                              "their flows are lost, counted in imflow_decode_errors_total{reason=\"internal\"})",
                              sum(lost.values()), self.internal_failures)

    def _process(self, datagrams) -> None:
        batch = self.decoder.decode(datagrams)
        changed = self.decoder.take_names_changed()
        if changed:
            self._learn(changed)
        if not len(batch):
            return
        cls = self.classifier.classify_batch(batch)
        session = batch.session
        if sole(session):  # one session: no per-flow codes
            sids, inverse = session[:1], None
        else:
            sids, inverse = unique_inverse(session, int(session.max()) + 1)
        names: list[str] = []
        index: dict[str, int] = {}
        codes = []
        for sid in sids.tolist():
            sess = self.decoder.by_sid.get(sid)
            name = sess.stat_label if sess else "other"
            codes.append(index.setdefault(name, len(names)))
            if len(names) < len(index):
                names.append(name)
        exporters = _per_flow(codes, inverse)  # an index for every flow, or one for them all
        violations = (self.policy_table.violations(cls.service, cls.host["hi"], cls.host["lo"], cls.has_host)
                      if self.policy_table.blocks else None)  # None: no flow can be a violation
        now = self.clock()
        if self.audit is None:  # from here only the aggregator reads the batch: the addresses and
            batch = batch.only(Aggregator.COLUMNS)  # ports are freed before its arrays are made
        self.aggregator.add(batch, cls, exporters, names, now, violations)
        if self.audit is not None:
            keep = self.audit.select(cls)
            if len(keep):  # the exporter's address, not its bounded stats label
                by_sid = self.decoder.by_sid
                addrs = [self.audit.exporter(by_sid[s].exporter if s in by_sid else "") for s in sids.tolist()]
                self.audit.add(batch, cls, keep, _per_flow(addrs, inverse), now)

    # --- at each flush -------------------------------------------------------------------------

    def drain(self, now: float, interface_name):
        """Expire held data and hand over every bin: (BinColumns, IfColumns), detached without a
        pass over them (store/columns.py: rows, names and merges are made off the event loop)."""
        self.decoder.expire(now)
        changed = self.decoder.take_names_changed()  # sessions expired with their names
        if changed:
            self._learn(changed)
        return self.aggregator.drain_columns(), self.aggregator.drain_interface_columns(interface_name)

    def drain_audit(self) -> list:
        """Every flow the audit log holds, as `AuditChunks` (encoded; iterating gives
        `AuditRow`s), or none when it is off."""
        return self.audit.drain() if self.audit is not None else []

    def exporter_if_names(self) -> dict[tuple[str, int], str]:
        """(exporter, ifIndex) -> the name the exporter sent in options data."""
        out: dict[tuple[str, int], str] = {}
        for sess in self.decoder.sessions.values():
            for k, v in sess.if_names.items():
                out.setdefault((sess.exporter, k), v)
        return out


def _per_flow(values: list[int], inverse: np.ndarray | None):
    """A value per session of a batch -> a value per flow (`inverse`: each flow's session; None
    when there is one). One session (the usual batch): its value as it is, with no gather over
    the flows."""
    return values[0] if len(values) == 1 else np.array(values, np.uint32)[inverse]


def _sources(datagrams) -> list:
    """The (address, port) of each datagram of a batch: an `mmsg.Batch` or (data, source,
    received) tuples."""
    sources = getattr(datagrams, "sources", None)
    return sources if sources is not None else [d[1] for d in datagrams]
