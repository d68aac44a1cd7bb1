"""Template datagrams of new sessions that waited past a decode call's budget (the template-flood
defence, docs/security.md), in two queues:

- **awaited**: datagrams of sessions that hold data sets waiting for a template (`Session.pending`).
  Someone's flows depend on them, so they are served first, each call within a budget of their
  own; an awaited datagram that finds the queues full displaces the newest announcement.
- **announcements**: the rest (a session that has sent templates and nothing else yet), served in
  arrival order within the call's budget for new sessions.

A datagram moves from announcements to awaited when its session's data is held (`promote`), so an
exporter that starts during a backlog of announcements waits for its own templates only, not
for the 10,000 sessions ahead of it. Both queues together stay within `max_datagrams` and
`max_octets`; what does not fit is handed back to be shed and counted. Pure bookkeeping: the
decoder decides which budget pays for what.
"""

from __future__ import annotations

from collections import OrderedDict, deque

# (payload, source, receive time, datagram number, session key)
Entry = tuple[bytes, tuple, float, int, tuple]


class Deferred:
    def __init__(self, max_datagrams: int, max_octets: int):
        self.max_datagrams, self.max_octets = max_datagrams, max_octets
        self.announcements: OrderedDict[int, Entry] = OrderedDict()  # datagram number -> entry
        self.awaited: deque[Entry] = deque()
        self._by_key: dict[tuple, list[int]] = {}  # session key -> its datagram numbers in announcements
        self.octets = 0  # of both queues
        self._awaited_octets = 0
        self.latest = float("-inf")  # newest receive time put here (the age rule's "now" on an idle call)

    def __len__(self) -> int:
        return len(self.announcements) + len(self.awaited)

    def put(self, entry: Entry, awaited: bool) -> list[Entry]:
        """Queue a datagram at the back of its queue; -> what was shed to stay within the
        ceilings: nothing, this entry, or (for an awaited one) the newest announcements."""
        size = len(entry[0])
        if len(self) >= self.max_datagrams or self.octets + size > self.max_octets:
            if not awaited or len(self.awaited) >= self.max_datagrams \
                    or self._awaited_octets + size > self.max_octets:
                return [entry]
            shed = []
            while len(self) >= self.max_datagrams or self.octets + size > self.max_octets:
                _, old = self.announcements.popitem(last=True)
                self._unindex(old)
                self.octets -= len(old[0])
                shed.append(old)
        else:
            shed = []
        self.octets += size
        self.latest = max(self.latest, entry[2])
        if awaited:
            self.awaited.append(entry)
            self._awaited_octets += size
        else:
            self.announcements[entry[3]] = entry
            self._by_key.setdefault(entry[4], []).append(entry[3])
        return shed

    def promote(self, key: tuple) -> bool:
        """The session `key` now holds data for a template: its announcements become awaited
        (in their order); -> whether there were any."""
        numbers = self._by_key.pop(key, None)
        if not numbers:
            return False
        for n in numbers:
            entry = self.announcements.pop(n)
            self.awaited.append(entry)
            self._awaited_octets += len(entry[0])
        return True

    def take(self, awaited: bool) -> Entry | None:
        """The oldest datagram of a queue, or None when it is empty."""
        if awaited:
            if not self.awaited:
                return None
            entry = self.awaited.popleft()
            self._awaited_octets -= len(entry[0])
        else:
            if not self.announcements:
                return None
            _, entry = self.announcements.popitem(last=False)
            self._unindex(entry)
        self.octets -= len(entry[0])
        return entry

    def _unindex(self, entry: Entry) -> None:
        numbers = self._by_key[entry[4]]
        numbers.remove(entry[3])
        if not numbers:
            del self._by_key[entry[4]]
