"""Outside text on the web page: interface names (SNMP, exporters' options data) and stored
service and category names carrying markup, control and bidi characters and CSV formula
prefixes are shown as text, never as markup, in the page (checked in the DOM Chromium built),
and escaped in the CSV and JSON downloads."""

from __future__ import annotations

import csv
import io
import json
import urllib.request

from collector.text import UNSAFE, printable
from tests.web.conftest import HOSTILE_CATEGORY, HOSTILE_IF, HOSTILE_SERVICE

Q = "?from=2026-01-01&to=2026-01-08"


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as r:
        return r.read().decode()


def test_hostile_names_are_text_in_the_dom(server, browser):
    browser.size(1280)
    for path in ("/", "/services", "/exporters", "/service/" + urllib.parse.quote(HOSTILE_SERVICE, safe="")):
        browser.open(server.url + path + Q)
        assert browser.eval("document.scripts.length") == 0, path
        # no element came from a name: the page's own markup has no <b>, <i> in a cell, <script>
        assert browser.eval("document.querySelectorAll('td b, td script, td i:not(:empty) b, script').length") == 0
        assert browser.eval("[...document.querySelectorAll('td i')].every(i => i.textContent === '(no internal host)')")
        text = browser.eval("document.body.innerText")
        assert not UNSAFE.search(text.replace("\n", "").replace("\t", "")), path
        if path == "/exporters":
            assert printable(HOSTILE_IF) in text
        else:
            assert printable(HOSTILE_SERVICE) in text
            assert printable(HOSTILE_CATEGORY) in text or path.startswith("/service/")


def test_hostile_names_in_the_raw_html_are_escaped(server):
    for path in ("/", "/exporters"):
        body = fetch(server.url + path + Q)
        assert "<script" not in body and "<b>svc" not in body and "<i>cat" not in body
        assert not UNSAFE.search(body.replace("\n", ""))
    assert "&lt;script&gt;alert(&quot;if&quot;)&lt;/script&gt;\\x1b[2J\\u202eevil" in fetch(server.url + "/exporters" + Q)


def test_downloads_escape_hostile_names(server):
    rows = list(csv.reader(io.StringIO(fetch(server.url + "/services" + Q + "&table=services&format=csv"))))
    cells = [c for r in rows for c in r]
    assert "'" + printable(HOSTILE_SERVICE) in cells  # a spreadsheet shows it, never runs it
    assert "'" + printable(HOSTILE_CATEGORY) in cells
    assert not any(c[:1] in ("=", "+", "-", "@") for c in cells)
    text = fetch(server.url + "/exporters" + Q + "&table=interfaces&format=json")
    assert not UNSAFE.search(text.replace("\n", ""))
    assert HOSTILE_IF in {r["interface"] for r in json.loads(text)}  # JSON readers get the exact name back
    text = fetch(server.url + "/services" + Q + "&table=services&format=json")
    assert "\\u202e" in text and HOSTILE_SERVICE in {r["service"] for r in json.loads(text)}


def test_hostile_query_values_are_refused_or_escaped(server):
    probe = "<script>alert(1)</script>"
    for query in (f"?host={urllib.parse.quote(probe)}", f"?category={urllib.parse.quote(probe)}",
                  f"?since={urllib.parse.quote(probe)}", f"?from={urllib.parse.quote(probe)}"):
        try:
            fetch(server.url + "/" + query)
            raise AssertionError(f"{query} was accepted")
        except urllib.error.HTTPError as exc:
            body = exc.read().decode()
            assert exc.code == 400 and "<script>alert" not in body and "&lt;script&gt;" in body, query
    body = fetch(server.url + "/?service=" + urllib.parse.quote(probe))  # a service nobody used: no rows
    assert "<script>alert" not in body and 'value="&lt;script&gt;alert(1)&lt;/script&gt;"' in body


import urllib.error
import urllib.parse
