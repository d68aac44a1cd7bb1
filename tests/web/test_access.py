"""Accessibility of the web page, as Chromium lays it out: every form control has a label,
every table a caption and column headers, the page a language, and every piece of text a
contrast of at least 4.5:1 against what is behind it (WCAG 2.1, 1.4.3), computed here from the
colours Chromium resolved."""

from __future__ import annotations

import pytest

Q = "?from=2026-01-01&to=2026-01-08"
PAGES = ("/", "/hosts", "/host/10.1.2.15", "/service/bittorrent", "/violations", "/exporters")

# every element with its own text: its colour, and the first opaque background up the tree
COLOURS = """[...document.querySelectorAll('body *')].filter(e =>
    [...e.childNodes].some(n => n.nodeType === 3 && n.textContent.trim()) && e.getClientRects().length
    && getComputedStyle(e).visibility !== 'hidden' && e.closest('svg') === null && !e.closest('.skip'))
  .map(e => { let b = e, bg = 'rgba(0, 0, 0, 0)';
    while (b && (bg = getComputedStyle(b).backgroundColor) === 'rgba(0, 0, 0, 0)') b = b.parentElement;
    return [e.tagName, e.textContent.trim().slice(0, 40), getComputedStyle(e).color, b ? bg : 'rgb(255, 255, 255)']; })"""


def _rgb(text: str) -> tuple[float, float, float]:
    parts = text[text.index("(") + 1:-1].split(",")
    return tuple(float(p) for p in parts[:3])


def _luminance(rgb) -> float:
    def channel(c):
        c /= 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4
    r, g, b = (channel(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(fg: str, bg: str) -> float:
    a, b = sorted((_luminance(_rgb(fg)), _luminance(_rgb(bg))), reverse=True)
    return (a + 0.05) / (b + 0.05)


def test_contrast_formula():
    assert contrast("rgb(0, 0, 0)", "rgb(255, 255, 255)") == pytest.approx(21.0)
    assert contrast("rgb(118, 118, 118)", "rgb(255, 255, 255)") == pytest.approx(4.54, abs=0.01)


@pytest.mark.parametrize("path", PAGES)
def test_labels_captions_and_contrast(server, browser, path):
    browser.size(1280)
    browser.open(server.url + path + Q)
    assert browser.eval("document.documentElement.lang") == "en"
    unlabelled = browser.eval("""[...document.querySelectorAll('input:not([type=hidden]), select')]
        .filter(e => !e.labels.length && !e.getAttribute('aria-label')).map(e => e.name)""")
    assert unlabelled == []
    assert browser.eval("[...document.querySelectorAll('button')].every(b => b.textContent.trim())")
    tables = browser.eval("""[...document.querySelectorAll('table')].map(t => [t.id, !!t.caption,
        t.tHead !== null && [...t.tHead.rows[0].cells].every(c => c.tagName === 'TH' && c.scope === 'col')])""")
    assert tables and all(caption and heads for _, caption, heads in tables), tables
    assert browser.eval("document.querySelectorAll('svg:not([role=img]), svg[role=img]:not([aria-label])').length") == 0
    texts = browser.eval(COLOURS)
    assert len(texts) > 20 and any(bg != "rgb(255, 255, 255)" for *_, bg in texts)  # the check sees the page
    low = [(tag, text, fg, bg, round(contrast(fg, bg), 2)) for tag, text, fg, bg in texts if contrast(fg, bg) < 4.5]
    assert low == []
