"""The HTML report rendered by headless Chromium: not blank, the expected tables and SVG
charts in the DOM, no console errors, a PDF for print, and no network fetches at all."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import pytest

from collector import report
from collector.policy.hostnames import HostNames
from collector.text import UNSAFE
from collector.report.tables import human_bytes
from tests.report import png
from tests.report.chromium import OFFLINE, chromium
from tests.report.conftest import END, NOW, START

CATEGORY_RGB = {c: tuple(int(v[i:i + 2], 16) for i in (1, 3, 5)) for c, v in report.CATEGORY_COLOURS.items()}


@pytest.fixture(scope="module")
def built(db, catalogue, policy, host_map):
    return report.build(db, START, END, catalogue, policy, HostNames(host_map), now=NOW)


@pytest.fixture(scope="module")
def page(built, tmp_path_factory):
    path = tmp_path_factory.mktemp("html") / "report.html"
    path.write_text(report.render_html(built), encoding="utf-8")
    return path


class _Text(HTMLParser):
    """Visible text per table cell, and the tags seen."""

    def __init__(self):
        super().__init__()
        self.cells: list[str] = []
        self.tags: list[str] = []
        self._cell: list[str] | None = None
        self._text: list[str] = []
        self._skip = 0

    @property
    def text(self) -> str:
        return " ".join("".join(self._text).replace("\xa0", " ").split())

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self._skip += tag in ("style", "title")
        if tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        self._skip -= tag in ("style", "title")
        if tag in ("td", "th") and self._cell is not None:
            self.cells.append(" ".join("".join(self._cell).replace("\xa0", " ").split()))
            self._cell = None

    def handle_data(self, data):
        if not self._skip:
            self._text.append(data)
        if self._cell is not None:
            self._cell.append(data)


def test_self_contained(page):
    text = page.read_text()
    assert "<script" not in text.lower() and "<link" not in text.lower() and "@import" not in text
    assert not re.search(r"\b(?:src|href|srcset|action|poster|data)\s*=", text, re.IGNORECASE)
    assert not re.search(r"url\s*\(", text, re.IGNORECASE)
    assert "http://" not in text and "https://" not in text
    # "//" only where it is not a URL: inside no attribute value at all
    assert not re.search(r"=\s*[\"']?\s*//", text)
    assert text.count("<svg") == 3  # per category, per service, per day


def test_screenshot_is_a_rendered_report(page, tmp_path):
    shots = {}
    for label, extra in (("online", ()), ("offline", (OFFLINE,))):
        shot = tmp_path / f"{label}.png"
        run = chromium(tmp_path, page, f"--screenshot={shot}", "--window-size=1280,2000", *extra, netlog=True)
        assert shot.exists(), run.stderr[-2000:]
        assert run.console() == []
        assert run.page_requests() == []
        pixels = png.read(shot)
        assert pixels.shape[:2] == (2000, 1280)
        dark = png.non_white(pixels)
        assert dark > pixels.shape[0] * pixels.shape[1] * 0.03, f"{label}: only {dark} pixels are not white"
        seen = png.colours(pixels)
        for category in ("p2p", "im", "voip", "collab", "other"):  # the bars of Figure 1
            assert CATEGORY_RGB[category] in seen, category
        shots[label] = pixels
    assert (shots["online"] == shots["offline"]).all()  # nothing on the page depended on the network


def test_dom_shows_the_tables(page, built, tmp_path):
    run = chromium(tmp_path, page, "--dump-dom", OFFLINE)
    dom = run.stdout
    assert run.console() == []
    assert dom.count("<svg") == 3 and dom.count("<rect") > 20
    parsed = _Text()
    parsed.feed(dom)
    cells = set(parsed.cells)
    assert parsed.tags.count("table") >= 3 + sum(len(c["services"]) for c in built["categories"])
    for c in built["categories"]:
        assert f"{c['bytes']:,}" in cells, c["id"]  # exact bytes in the category table
        for s in c["services"]:
            assert s["name"] in dom.replace("&amp;", "&")
            for h in s["hosts"][:10]:
                assert h["host"] in cells
                assert human_bytes(h["bytes"]) in cells
                if h["name"]:
                    assert h["name"] in cells
    assert "build-server-3" in cells and "release team" in cells and "guest wifi" in cells
    assert f"{built['totals']['bytes']:,}" in cells and "100.0 %" in cells
    flat = parsed.text
    assert "Peer networks are not in this report" in flat
    assert "2026-01-01 00:00 UTC – 2026-01-08 00:00 UTC" in flat
    assert f"snapshot {built['catalogue']['snapshot']}" in flat and built["imflow_version"] in flat
    assert "Exceptions: bittorrent allow for 10.1.2.0/24 (release mirrors)" in flat
    assert "Blocked (11 services): MSN / Windows Live Messenger, BitTorrent" in flat


def test_print_to_pdf(page, built, tmp_path):
    pdf = tmp_path / "report.pdf"
    run = chromium(tmp_path, page, f"--print-to-pdf={pdf}", "--no-pdf-header-footer", OFFLINE)
    assert pdf.exists(), run.stderr[-2000:]
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF-") and len(data) > 20_000
    pages = len(re.findall(rb"/Type\s*/Page[^s]", data))
    sections = sum(1 for c in built["categories"] if c["services"])
    assert pages >= 1 + sections  # the overview, then each category starts a page


def test_the_checks_catch_a_bad_page(tmp_path):
    """The console and request checks above would see a script error and a remote fetch."""
    bad = tmp_path / "bad.html"
    bad.write_text('<html><body><img src="http://example.invalid/x.png">'
                   '<script>undefined_function()</script><p>bad</p></body></html>')
    run = chromium(tmp_path, bad, "--dump-dom", OFFLINE, netlog=True)
    assert any("Uncaught" in line for line in run.console())
    assert run.page_requests() == ["http://example.invalid/x.png"]


def test_names_cannot_inject_markup(built):
    hostile = report.render_json(built).replace('"release team"', '"<script>alert(1)</script><img src=x>"')
    text = report.render_html(json.loads(hostile))
    assert "<script" not in text and "<img" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x&gt;" in text


def test_unclassified_hosts_are_summarised_beyond_the_limit(built):
    other = next(c for c in built["categories"] if c["id"] == "other")["services"][0]
    text = report.render_html(built, other_hosts=2)
    rest = other["hosts"][2:]
    assert f"{len(rest)} more hosts (all of them are in the CSV and JSON reports)" in text
    assert human_bytes(sum(h["bytes"] for h in rest)).replace(" ", "\xa0") in text


def test_names_cannot_carry_control_characters(built):
    hostile = json.loads(report.render_json(built))
    hostile["categories"][0]["services"][0]["hosts"][0]["name"] = "\x1b[2Jwiped\x07\u202eevil\x9b"
    text = report.render_html(hostile)
    assert not UNSAFE.search(text.replace("\n", ""))
    assert "\\x1b[2Jwiped\\x07\\u202eevil\\x9b" in text
