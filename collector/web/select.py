"""What a page shows, from its URL: the period (`since`, or `from`/`to`) and the filters
(`category`, `service`, `host`, `exporter`, each repeatable). The URL is the whole state, so a
link is shareable and the browser's back button works; `query()` writes it back.

Query strings are outside text: every value has a length ceiling, every list a count ceiling,
and what cannot be parsed is a ValueError the server answers 400 with.
"""

from __future__ import annotations

import ipaddress
import time
import urllib.parse
from dataclasses import dataclass, replace

from collector.config import parse_duration

SINCE_CHOICES = ("15m", "1h", "6h", "24h", "7d", "30d", "90d", "all")
DEFAULT_SINCE = "24h"
FILTERS = ("category", "service", "host", "exporter")
MAX_VALUES = 32  # values per filter
MAX_TEXT = 100  # characters per value


@dataclass(frozen=True)
class Selection:
    since: str = DEFAULT_SINCE
    start_text: str = ""  # as typed, echoed into the form
    end_text: str = ""
    start: float | None = None
    end: float | None = None
    category: tuple[str, ...] = ()
    service: tuple[str, ...] = ()
    host: tuple[str, ...] = ()
    exporter: tuple[str, ...] = ()
    recorded: bool = False  # violations: the verdicts recorded at ingest

    def filters(self, *names: str) -> dict:
        """Keyword arguments for the reader: only the filters that are set."""
        return {k: list(getattr(self, k)) for k in (names or FILTERS) if getattr(self, k)}

    def query(self, **changes) -> str:
        """The URL query of this selection (with `changes`), defaults left out: '?since=7d&…'."""
        sel = replace(self, **changes) if changes else self
        pairs: list[tuple[str, str]] = []
        if sel.start_text:
            pairs.append(("from", sel.start_text))
        elif sel.since != DEFAULT_SINCE:  # `since` before `to`, or before now
            pairs.append(("since", sel.since))
        if sel.end_text:
            pairs.append(("to", sel.end_text))
        for name in FILTERS:
            pairs += [(name, v) for v in getattr(sel, name)]
        if sel.recorded:
            pairs.append(("recorded", "1"))
        return "?" + urllib.parse.urlencode(pairs) if pairs else ""

    def describe(self) -> str:
        if self.start_text:
            return f"{self.start_text} – {self.end_text or 'now'} (UTC)"
        if self.since == "all":
            return "all stored data" + (f" up to {self.end_text} (UTC)" if self.end_text else "")
        return f"the {self.since} before {self.end_text} (UTC)" if self.end_text else f"the last {self.since}"


def parse_time(text: str) -> float:
    """UNIX seconds, or an ISO date/time (UTC unless it says otherwise): `imflow top --from`."""
    from collector.cli.commands import parse_time as cli_parse_time

    return cli_parse_time(text)


def _values(query, name: str) -> tuple[str, ...]:
    values = [v.strip() for v in query.getall(name, []) if v.strip()]
    if len(values) > MAX_VALUES:
        raise ValueError(f"{name}: at most {MAX_VALUES} values")
    for v in values:
        if len(v) > MAX_TEXT:
            raise ValueError(f"{name}: a value of more than {MAX_TEXT} characters")
    return tuple(dict.fromkeys(values))


def parse(query, categories: tuple[str, ...], now: float | None = None) -> Selection:
    """A request's query (a MultiDict) -> Selection; ValueError naming the parameter."""
    now = time.time() if now is None else now
    since = (query.get("since") or DEFAULT_SINCE).strip()
    start_text, end_text = (query.get("from") or "").strip(), (query.get("to") or "").strip()
    if query.get("use") == "last":  # the form's "Show" beside the Last menu: its choice, not the dates
        start_text = end_text = ""
    for name, text in (("since", since), ("from", start_text), ("to", end_text)):
        if len(text) > 40:
            raise ValueError(f"{name}: too long")
    end = None
    try:
        end = parse_time(end_text) if end_text else None
        if start_text:  # a start date: `since` plays no part (nor reaches links)
            since = DEFAULT_SINCE
            start = parse_time(start_text)
        elif since == "all":
            start = None
        else:
            seconds = parse_duration(since)
            if seconds <= 0:
                raise ValueError(f"{since!r}: must be more than 0")
            start = (end or now) - seconds
    except ValueError as exc:
        raise ValueError(f"period: {exc}") from None
    if start is not None and end is not None and end <= start:
        raise ValueError("period: 'to' must be after 'from'")
    cats = _values(query, "category")
    bad = [c for c in cats if c not in categories]
    if bad:
        raise ValueError(f"category: {bad[0]!r} is not one of {', '.join(categories)}")
    hosts = tuple(dict.fromkeys(x.strip() for v in _values(query, "host") for x in v.split(",") if x.strip()))
    if len(hosts) > MAX_VALUES:
        raise ValueError(f"host: at most {MAX_VALUES} values")
    for h in hosts:
        try:
            ipaddress.ip_network(h, strict=False) if "/" in h else ipaddress.ip_address(h)
        except ValueError:
            raise ValueError(f"host: {h!r} is not an address or network") from None
    return Selection(since=since, start_text=start_text, end_text=end_text, start=start, end=end,
                     category=cats, service=_values(query, "service"), host=hosts,
                     exporter=_values(query, "exporter"), recorded=query.get("recorded") == "1")
