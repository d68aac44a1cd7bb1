"""collector.text: the one escaping rule every writer uses."""

from __future__ import annotations

import csv
import html
import io
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector.text import UNSAFE, csv_cell, csv_text, html_text, json_text, printable, text_problem


@pytest.mark.parametrize("raw, shown", [
    ("eth0", "eth0"),
    ("Gi0/0/1 — uplink é 日本", "Gi0/0/1 — uplink é 日本"),
    ("\x1b]0;pwned\x07", "\\x1b]0;pwned\\x07"),
    ("a\nb\rc\td", "a\\nb\\rc\\td"),
    ("\x00\x7f\x85\x9b", "\\x00\\x7f\\x85\\x9b"),
    ("x\u2028y\u2029z", "x\\u2028y\\u2029z"),
    ("abc\u202eevil\u2066", "abc\\u202eevil\\u2066"),
    ("lone \ud800", "lone \\ud800"),
    ("DOMAIN\\user", "DOMAIN\\user"),
])
def test_printable(raw, shown):
    assert printable(raw) == shown


def test_printable_takes_any_value():
    assert printable(42) == "42"
    assert printable(ValueError("bad\nline")) == "bad\\nline"


@pytest.mark.parametrize("raw, cell", [
    ("=1+1", "'=1+1"), ("+1", "'+1"), ("-2+3", "'-2+3"), ("@SUM(A1)", "'@SUM(A1)"),
    ("\t=1", "'\\t=1"), ("\r=1", "'\\r=1"), ("a=1", "a=1"), ("", ""), ("eth0", "eth0"),
    ("x\x1b[2J", "x\\x1b[2J"), ("x\ny", "x\\ny"),
    (-5, -5), (12.5, 12.5), (True, True), (None, None),
])
def test_csv_cell(raw, cell):
    assert csv_cell(raw) == cell


def test_csv_text_neutralises_every_cell_header_included():
    text = csv_text(["=h", "n"], [["=cmd", 1], ["ok", -2]])
    assert text == "'=h,n\n'=cmd,1\nok,-2\n"


@given(st.lists(st.lists(st.text(), min_size=1, max_size=4), max_size=5))
def test_csv_text_never_leads_with_a_formula_and_never_carries_controls(rows):
    width = max((len(r) for r in rows), default=1)
    rows = [r + [""] * (width - len(r)) for r in rows]
    text = csv_text([f"c{i}" for i in range(width)], rows)
    assert not UNSAFE.search(text.replace("\n", ""))
    back = list(csv.reader(io.StringIO(text)))
    assert len(back) == 1 + len(rows)
    for row in back[1:]:
        for cell in row:
            assert cell[:1] not in ("=", "+", "-", "@", "\t", "\r")


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
                    max_leaves=8), st.booleans())
def test_json_text_round_trips_without_raw_controls(obj, ascii):
    text = json_text(obj, indent=1, ascii=ascii)
    assert json.loads(text) == obj
    assert not UNSAFE.search(text.replace("\n", ""))


def test_json_text_keeps_utf8_names_when_asked():
    assert json_text(["é\x9b\u2028"], ascii=False) == '["é\\u009b\\u2028"]'
    assert json_text(["é\x7f"]) == '["\\u00e9\\u007f"]'


@given(st.text())
def test_printable_is_one_safe_line(text):
    shown = printable(text)
    assert not UNSAFE.search(shown)
    assert len(shown.splitlines()) <= 1
    shown.encode("utf-8")  # no lone surrogates left


def test_text_problem():
    assert text_problem("release mirrors", 100) is None
    assert text_problem("a\nb", 100) == "control character U+000A not allowed"
    assert text_problem("\x9b", 100) == "control character U+009B not allowed"
    assert text_problem("x\u2028", 100) == "control character U+2028 not allowed"
    assert text_problem("x" * 11, 10) == "11 characters: at most 10"


def test_log_lines_stay_one_line_whatever_a_name_holds():
    import logging

    from collector.text import LogFormatter

    fmt = LogFormatter("%(levelname)s %(name)s: %(message)s")
    record = logging.LogRecord("collector.snmp.poller", logging.WARNING, __file__, 1,
                               "interface %s on %s", ("Gi0/0\x1b]0;pwned\x07\nWARNING forged: line", "r1\u202e"), None)
    line = fmt.format(record)
    assert "\n" not in line and "\x1b" not in line and "\u202e" not in line
    assert line == "WARNING collector.snmp.poller: interface Gi0/0\\x1b]0;pwned\\x07\\nWARNING forged: line on r1\\u202e"


def test_tracebacks_keep_their_lines():
    import logging
    import sys

    from collector.text import LogFormatter

    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    text = LogFormatter("%(message)s").format(record)
    assert text.startswith("failed\nTraceback") and "ValueError: boom" in text


@given(st.text())
def test_html_text_is_printable_then_the_standard_library_s_escape(text):
    # the module's own table against html.escape, which it replaces to keep html.entities out of the daemon
    assert html_text(text) == html.escape(printable(text), quote=True)
    assert html_text(42) == "42"


def test_html_text_escapes_markup_and_both_quotes():
    assert html_text("<a href=\"x\" title='y'>&amp;</a>") == \
        "&lt;a href=&quot;x&quot; title=&#x27;y&#x27;&gt;&amp;amp;&lt;/a&gt;"
