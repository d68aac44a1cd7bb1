"""The URL's period and filters (`collector.web.select`): whatever a query string holds, parsing
either gives a selection or a ValueError (the 400 page), and a selection written back as a URL
(what every link and download carries) parses to the same selection."""

from __future__ import annotations

import subprocess
import sys
import urllib.parse

from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import MultiDict

from collector.web.select import Selection, parse

CATEGORIES = ("im", "p2p", "voip", "collab", "other")
NOW = 1_767_225_600.0

KEYS = st.sampled_from(["since", "from", "to", "category", "service", "host", "exporter", "recorded", "use", "x"])
VALUES = st.one_of(st.text(max_size=60), st.sampled_from(["24h", "7d", "all", "0", "2026-01-01", "10.0.0.0/8", "fd00::5",
                                                          "p2p", "1", "last", "1767225600", "-5m", "1e9"]))


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(KEYS, VALUES), max_size=12))
def test_any_query_parses_or_is_a_value_error(pairs):
    try:
        sel = parse(MultiDict(pairs), CATEGORIES, now=NOW)
    except ValueError:
        return
    assert isinstance(sel, Selection)
    again = parse(MultiDict(urllib.parse.parse_qsl(sel.query()[1:])), CATEGORIES, now=NOW)
    assert again == sel


def test_defaults_and_round_trip():
    sel = parse(MultiDict(), CATEGORIES, now=NOW)
    assert (sel.since, sel.start, sel.end, sel.query()) == ("24h", NOW - 86400, None, "")
    sel = parse(MultiDict([("from", "2026-01-01"), ("to", "2026-01-08"), ("category", "p2p"), ("host", "10.1.2.0/24, fd00::5")]),
                CATEGORIES, now=NOW)
    assert (sel.start, sel.end, sel.host) == (1_767_225_600.0, 1_767_830_400.0, ("10.1.2.0/24", "fd00::5"))
    assert sel.query() == "?from=2026-01-01&to=2026-01-08&category=p2p&host=10.1.2.0%2F24&host=fd00%3A%3A5"
    assert parse(MultiDict([("since", "7d"), ("from", "2026-01-01"), ("use", "last")]), CATEGORIES, now=NOW).start \
        == NOW - 7 * 86400


def test_a_bad_listen_flag_names_the_key():
    out = subprocess.run([sys.executable, "-m", "collector", "web", "--listen", "nowhere:80"], check=False,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and out.stderr.startswith("imflow: config: web.listen:")
