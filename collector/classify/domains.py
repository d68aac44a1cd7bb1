"""DNS names -> services, by the catalogue's `domains` patterns (docs/classification.md).

A pattern is a name ("signal.org": that name only) or a wildcard ("*.whatsapp.net": every name
below it, not the name itself, as in a DNS zone). A name is matched by a dict lookup of the
whole name, then one per parent domain for the wildcards: at most 127 lookups for the longest
legal name, whatever the number of patterns. The longest (most specific) pattern wins; the same
pattern in two services goes to the first in catalogue order.

Used by the dnstap listener (answers from a resolver, collector/dns/) and for the server names
that some exporters send (TLS SNI, HTTP host). Pure: names in, service indexes out.
"""

from __future__ import annotations

from collections.abc import Sequence

from collector.classify.catalogue import Service

MAX_NAME = 253  # octets of a DNS name in text form (RFC 1035 §2.3.4), without the final dot


def normalise(name: str | bytes) -> str | None:
    """Lower case, without the final dot; None when it cannot be a DNS name."""
    if isinstance(name, bytes):
        try:
            name = name.decode("ascii")
        except UnicodeDecodeError:
            return None
    name = name.strip().rstrip(".").lower()
    if not name or len(name) > MAX_NAME:
        return None
    return name


class DomainMatcher:
    def __init__(self, services: Sequence[Service]):
        self.exact: dict[str, int] = {}
        self.below: dict[str, int] = {}
        self.ids = {s.index: s.id for s in services}
        for s in services:
            for pattern in s.domains:
                if pattern.startswith("*."):
                    self.below.setdefault(pattern[2:], s.index)
                else:
                    self.exact.setdefault(pattern, s.index)

    def __bool__(self) -> bool:
        return bool(self.exact or self.below)

    def match(self, name: str | bytes) -> int:
        """The index of the service whose pattern matches `name` (0: none)."""
        text = normalise(name)
        if text is None:
            return 0
        hit = self.exact.get(text)
        if hit is not None:
            return hit
        if self.below:
            dot = text.find(".")
            while dot != -1:
                hit = self.below.get(text[dot + 1:])
                if hit is not None:
                    return hit
                dot = text.find(".", dot + 1)
        return 0
