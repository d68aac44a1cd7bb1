"""Refused senders, logged by address and rate-limited.

A datagram from outside `exporters.allow` is dropped before any state exists for it, and
counted (`imflow_denied_datagrams_total`). The count alone does not say *who*: a router left
out of the allow list (or the example's documentation ranges kept by mistake) looks like
silence. So the first refusal of each address is logged with the address, and the rest are
summed up in one line at most once a `interval`. Sources are sender-controlled (UDP source
addresses are trivially spoofed), so everything here is bounded: at most `new_per_interval`
first-refusal lines per interval, at most `remember` addresses remembered as already logged,
at most `top` addresses named in a summary and `track` counted one by one between summaries.
"""

from __future__ import annotations

import logging
from collections import Counter

log = logging.getLogger(__name__)


class Refusals:
    """Counts refused datagrams per source address and says so in the log, within bounds.

    `note(address, n)` on each refusal; `summarise()` every `interval` seconds while there is
    something to say (the intake schedules it). Pure apart from the log: no clock, no loop."""

    def __init__(self, interval: float = 60.0, new_per_interval: int = 10, remember: int = 4096,
                 track: int = 1024, top: int = 5, logger: logging.Logger = log):
        self.interval = interval
        self.new_per_interval = new_per_interval
        self.remember = remember
        self.track = track
        self.top = top
        self.log = logger
        self.logged: set[str] = set()    # addresses whose first refusal was logged
        self.pending: Counter = Counter()  # refusals since the last summary, not yet in a line
        self.untracked = 0               # of those, from addresses beyond `track`
        self.new_lines = 0               # first-refusal lines since the last summary

    def note(self, address: str, n: int = 1) -> None:
        if n <= 0:
            return
        if (address not in self.logged and self.new_lines < self.new_per_interval
                and len(self.logged) < self.remember):
            self.logged.add(address)
            self.new_lines += 1
            self.log.warning("refused flows from %s: not in exporters.allow (datagram dropped; "
                             "further refusals are summed up every %gs)", address, self.interval)
            n -= 1
            if not n:
                return
        if address in self.pending or len(self.pending) < self.track:
            self.pending[address] += n
        else:
            self.untracked += n

    def waiting(self) -> bool:
        """Whether a summary has something to say (or a first-line budget to renew)."""
        return bool(self.pending or self.untracked or self.new_lines)

    def summarise(self) -> None:
        """One line for the refusals since the last summary; the first-line budget renews."""
        self.new_lines = 0
        total = sum(self.pending.values()) + self.untracked
        if not total:
            return
        senders = len(self.pending) + (1 if self.untracked else 0)
        named = ", ".join(f"{a} ({k})" for a, k in self.pending.most_common(self.top))
        more = len(self.pending) - min(self.top, len(self.pending))
        if more or self.untracked:
            named += " and others"
        self.log.warning("refused %d datagram%s from %s%d sender%s not in exporters.allow in the last %gs: %s",
                         total, "" if total == 1 else "s", "at least " if self.untracked else "",
                         senders, "" if senders == 1 else "s", self.interval, named)
        self.pending.clear()
        self.untracked = 0
