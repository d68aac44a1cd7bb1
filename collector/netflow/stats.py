"""Counters of everything the decoder sees, keyed by exporter address (bounded)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

OTHER = "other"


@dataclass
class DecodeStats:
    max_exporters: int = 4096
    datagrams: Counter = field(default_factory=Counter)  # (exporter, version)
    flows: Counter = field(default_factory=Counter)  # (exporter, version)
    errors: Counter = field(default_factory=Counter)  # (exporter, reason)
    held: Counter = field(default_factory=Counter)  # exporter -> data sets held for a template
    replayed: Counter = field(default_factory=Counter)  # exporter -> held sets decoded later
    expired: Counter = field(default_factory=Counter)  # exporter -> held sets dropped
    seq_lost: Counter = field(default_factory=Counter)  # exporter -> flow records estimated lost
    templates: Counter = field(default_factory=Counter)  # exporter -> templates (re)defined
    notices: Counter = field(default_factory=Counter)  # (exporter, what): odd but not fatal
    evicted: Counter = field(default_factory=Counter)  # table -> entries dropped by a ceiling
    # (exporter, what) -> n: sFlow sampling figures (collector.sflow.decode.Agent.tell): flow
    # "samples", sample "pool" growth (packets), agent "drops", samples "lost" in transit
    sampling: Counter = field(default_factory=Counter)
    _known: set = field(default_factory=set)

    def label(self, exporter: str) -> str:
        """The exporter's label, or "other" once `max_exporters` labels exist."""
        if exporter in self._known:
            return exporter
        if len(self._known) < self.max_exporters:
            self._known.add(exporter)
            return exporter
        self.evicted["stats-exporters"] += 1
        return OTHER

    def total(self, counter: str) -> int:
        return sum(getattr(self, counter).values())

    def by_second(self, counter: str) -> Counter:
        """Sum a (exporter, x) counter over exporters -> {x: n}."""
        out: Counter = Counter()
        for (_, x), n in getattr(self, counter).items():
            out[x] += n
        return out
