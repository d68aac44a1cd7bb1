"""HTML for the web page, written as Python: one layout (navigation, the period and filter
form, the page), semantic tables with captions and scoped headers, inline SVG charts and one
inline style sheet. No script, no external resource. Every value goes through `html_text`;
URLs are built with `urllib.parse` and then escaped.

Downloads: `table_csv` and `table_json` write a page's `Table` with the same rows; CSV cells go
through `csv_cell` (no formula a spreadsheet would run), JSON through `json_text`."""

from __future__ import annotations

import urllib.parse
from datetime import UTC, datetime

from collector import __version__
from collector.report.tables import human_bytes
from collector.text import csv_text, html_text, json_text
from collector.web.pages import NAV, Page, Table, category_name
from collector.web.select import FILTERS, SINCE_CHOICES, Selection

CSS = """
:root{--ink:#1b2430;--muted:#4f5b6b;--rule:#d9dee5;--head:#eef1f5;--accent:#1f3a5f;--link:#1a4f8b}
*{box-sizing:border-box}
body{margin:0;color:var(--ink);background:#fff;font:15px/1.45 "DejaVu Sans","Segoe UI",Arial,sans-serif}
a{color:var(--link)}a:focus,button:focus,input:focus,select:focus{outline:3px solid #f0b429;outline-offset:1px}
.skip{position:absolute;left:-999px}.skip:focus{left:8px;top:8px;background:#fff;padding:4px}
header.top{background:var(--accent);color:#fff;padding:8px 16px;display:flex;flex-wrap:wrap;gap:4px 18px;
 align-items:baseline}
header.top b{font-size:18px;margin-right:8px}
header.top nav a{color:#fff;text-decoration:none;margin-right:14px;white-space:nowrap;display:inline-block}
header.top nav a[aria-current]{text-decoration:underline;text-underline-offset:4px;font-weight:700}
main{max-width:1200px;margin:0 auto;padding:12px 16px 32px}
h1{font-size:24px;margin:8px 0 4px;color:var(--accent);overflow-wrap:anywhere}
h2{font-size:18px;margin:22px 0 6px;color:var(--accent)}
p.intro{margin:0 0 10px;color:var(--muted)}
form.period{display:flex;flex-wrap:wrap;gap:8px 14px;align-items:flex-end;background:var(--head);
 padding:10px 12px;border:1px solid var(--rule);margin:8px 0 14px}
form.period label{display:flex;flex-direction:column;font-size:13px;color:var(--muted)}
form.period input,form.period select{font:inherit;padding:3px 6px;border:1px solid #8792a2;max-width:11em}
form.period fieldset{border:0;padding:0;margin:0;font-size:13px;color:var(--muted)}
form.period fieldset label{display:inline;margin-right:8px;color:var(--ink)}
form.period legend{padding:0}
button{font:inherit;padding:4px 14px;background:var(--accent);color:#fff;border:0;cursor:pointer}
form.period button.apply{order:9}form.period button.last{padding:3px 10px;margin-left:-8px}
.filters{font-size:13px;margin:-6px 0 10px}
.kpis{display:grid;grid-template-columns:repeat(auto-fit,minmax(160px,1fr));gap:10px;margin:10px 0}
.kpi{border:1px solid var(--rule);padding:8px 10px}.kpi b{display:block;font-size:21px;color:var(--accent)}
.kpi span{color:var(--muted);font-size:13px}
figure{margin:12px 0 18px}figcaption{font-weight:700;margin-bottom:4px}
svg{display:block;width:100%;height:auto;max-width:1000px}
svg text{font-family:"DejaVu Sans",Arial,sans-serif;font-size:14px;fill:#1b2430}svg .axis{fill:#4f5b6b;font-size:13px}
.legend{font-size:13px;color:var(--muted);margin:4px 0}.legend span{margin-right:12px;white-space:nowrap;display:inline-block}
.swatch{display:inline-block;width:11px;height:11px;margin-right:5px;vertical-align:-1px}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;width:100%;font-size:14px;margin:2px 0 4px}
caption.sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0)}
h2 .dl{font-weight:400;font-size:13px;margin-left:10px;white-space:nowrap}
th{background:var(--head);text-align:left;font-size:12.5px;color:var(--muted);border-bottom:2px solid var(--ink);
 padding:5px 8px;white-space:nowrap}
td{border-bottom:1px solid var(--rule);padding:4px 8px;vertical-align:top;overflow-wrap:break-word}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tfoot td{font-weight:700;border-top:2px solid var(--ink);border-bottom:0}
tr.viol td{background:#fdf1f1}
.badge{display:inline-block;padding:0 6px;border:1px solid;border-radius:3px;font-size:12px;font-weight:700}
.badge.block{color:#a61b1b}.badge.monitor{color:#7a5200}.badge.allow{color:#23613f}.badge.unknown{color:var(--muted)}
.note{font-size:13px;color:var(--muted);margin:0 0 12px}
.error{border:1px solid #a61b1b;border-left:6px solid #a61b1b;padding:8px 12px;margin:12px 0}
footer{margin-top:26px;border-top:1px solid var(--rule);padding-top:6px;font-size:12px;color:var(--muted)}
@media (max-width:600px){body{font-size:14px}main{padding:8px 10px}h1{font-size:20px}
 td,th{padding:4px 5px}table{font-size:13px}}
"""


def _e(value) -> str:
    return html_text(value)


def link(path: str, sel: Selection, **changes) -> str:
    """An escaped href: the path (already URL-quoted) and the selection's query."""
    return _e(path + sel.query(**changes))


def href(path: str, sel: Selection, **params: str) -> str:
    """An escaped href: the selection's query plus `params` (format=csv, table=hosts)."""
    query = sel.query()
    extra = urllib.parse.urlencode(params)
    return _e(path + query + ("&" if query else "?") + extra)


def seg(value: str) -> str:
    """Outside text as one path segment: "/" and everything else quoted."""
    return urllib.parse.quote(value, safe="")


def layout(title: str, path: str, sel: Selection | None, body: str, categories=()) -> str:
    nav = "".join(f'<a href="{link(p, sel) if sel else _e(p)}"'
                  f'{" aria-current=page" if p == path else ""}>{_e(label)}</a>' for p, label in NAV)
    form = period_form(path, sel, categories) if sel is not None else ""
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<title>{_e(title)} — imflow</title><style>{CSS}</style></head><body>'
            '<a class="skip" href="#main">Skip to the content</a>'
            f'<header class="top"><b>imflow</b><nav aria-label="Pages">{nav}</nav></header>'
            f'<main id="main"><h1>{_e(title)}</h1>{form}{body}'
            f'<footer>imflow {_e(__version__)} · read-only · times in UTC</footer></main></body></html>\n')


def period_form(path: str, sel: Selection, categories) -> str:
    custom = bool(sel.start_text)
    since = ('<option value="" selected>from/to</option>' if custom else "") + "".join(
        f'<option{" selected" if s == sel.since and not custom else ""}>{_e(s)}</option>' for s in SINCE_CHOICES)
    if sel.since not in SINCE_CHOICES and not custom:
        since += f'<option selected>{_e(sel.since)}</option>'
    cats = "".join(f'<label><input type="checkbox" name="category" value="{_e(c)}"'
                   f'{" checked" if c in sel.category else ""}> {_e(category_name(c))}</label>' for c in categories)
    hidden = "".join(f'<input type="hidden" name="{name}" value="{_e(v)}">'
                     for name in ("service", "exporter") for v in getattr(sel, name))
    if sel.recorded:
        hidden += '<input type="hidden" name="recorded" value="1">'
    shown = [f"{name} {_e(v)}" for name in FILTERS if name != "category" for v in getattr(sel, name)]
    clear = (f'<p class="filters">Filtered by {", ".join(shown)} · '
             f'<a href="{link(path, sel, service=(), host=(), exporter=(), category=())}">clear filters</a></p>'
             if shown or sel.category else "")
    return (f'<form class="period" method="get" action="{_e(path)}" '
            'aria-label="Period and filters">'
            '<button type="submit" class="apply">Apply</button>'  # first: what Enter submits
            f'<label>Last <select name="since">{since}</select></label>'
            '<button type="submit" name="use" value="last" class="last">Show</button>'
            f'<label>or from (UTC)<input name="from" value="{_e(sel.start_text)}" placeholder="2026-11-28T14:00"></label>'
            f'<label>to (UTC)<input name="to" value="{_e(sel.end_text)}" placeholder="now"></label>'
            f'<label>Host or network<input name="host" value="{_e(", ".join(sel.host))}" '
            'placeholder="10.1.2.0/24"></label>'
            f'<fieldset><legend>Categories</legend>{cats}</fieldset>{hidden}</form>' + clear)


def page_html(page: Page, sel: Selection, categories) -> str:
    out = [f'<p class="intro">{_e(page.intro)}</p>'] if page.intro else []
    if page.kpis:
        out.append('<div class="kpis">' + "".join(f'<div class="kpi"><b>{_e(v)}</b><span>{_e(label)}</span></div>'
                                                  for v, label in page.kpis) + "</div>")
    for block in page.blocks:
        if isinstance(block, Table):
            out.append(table_html(block, page.path, sel))
        elif block[2]:
            _, caption, svg, legend = block
            out.append(f"<figure><figcaption>{_e(caption)}</figcaption>{svg}{legend}</figure>")
    return layout(page.title, page.path, sel, "".join(out), categories)


def _cell(col, row: dict, sel: Selection) -> str:
    v = row.get(col.key)
    kind = col.kind
    if v is None:
        return '<td class="num"></td>' if kind in ("pct", "rate", "bytes", "int") else "<td></td>"
    if kind == "host":
        if v == "":
            return "<td><i>(no internal host)</i></td>"
        return f'<td><a href="{link("/host/" + seg(v), sel, host=())}">{_e(v)}</a></td>'
    if kind == "service":
        return f'<td><a href="{link("/service/" + seg(v), sel, service=())}">{_e(v)}</a></td>'
    if kind == "category":
        return f"<td>{_e(category_name(v))}</td>"
    if kind == "bytes":
        return f'<td class="num" title="{_e(human_bytes(v))}">{v:,}</td>'
    if kind == "int":
        return f'<td class="num">{v:,}</td>'
    if kind == "int0":  # a number that is not a quantity (a port)
        return f'<td class="num">{_e(v)}</td>'
    if kind == "pct":
        return f'<td class="num">{v:.1f} %</td>'
    if kind == "rate":
        return f'<td class="num">{_e(_rate(v))}</td>'
    if kind == "time":
        return f'<td class="num">{_e(iso(v)[:16].replace("T", " "))}</td>'
    if kind == "policy":
        return f'<td><span class="badge {_e(v)}">{_e(v)}</span></td>'
    if kind == "flag":
        return f"<td>{'yes' if v else 'no'}</td>"
    return f"<td>{_e(v if v != '' else '(none)')}</td>"


def _rate(bps: float) -> str:
    for unit, div in (("Gbit/s", 1e9), ("Mbit/s", 1e6), ("kbit/s", 1e3)):
        if bps >= div:
            return f"{bps / div:.1f} {unit}"
    return f"{bps:.0f} bit/s"


NUMERIC = ("bytes", "int", "int0", "pct", "rate", "time")


def table_html(t: Table, path: str, sel: Selection) -> str:
    head = "".join(f'<th scope="col"{" class=num" if c.kind in NUMERIC else ""}>{_e(c.label)}</th>' for c in t.columns)
    body = []
    for row in t.rows:
        cls = ' class="viol"' if row.get("violation_now") else ""
        body.append(f"<tr{cls}>" + "".join(_cell(c, row, sel) for c in t.columns) + "</tr>")
    if not t.rows:
        body.append(f'<tr><td colspan="{len(t.columns)}">no rows</td></tr>')
    foot = ""
    if t.total and t.rows:
        cells = []
        for i, c in enumerate(t.columns):
            if c.key in ("bytes", "packets", "flows"):
                cells.append(f'<td class="num">{sum(r.get(c.key) or 0 for r in t.rows):,}</td>')
            else:
                cells.append(f"<td>{'total' if i == 0 else ''}</td>")
        foot = "<tfoot><tr>" + "".join(cells) + "</tr></tfoot>"
    dl = (f'<span class="dl">download <a href="{href(path, sel, table=t.id, format="csv")}">CSV</a> · '
          f'<a href="{href(path, sel, table=t.id, format="json")}">JSON</a></span>')
    note = f'<p class="note">{_e(t.note)}</p>' if t.note else ""
    if t.more:
        note += f'<p class="note"><a href="{link(t.more[0], sel)}">{_e(t.more[1])} →</a></p>'
    return (f'<section><h2 id="h-{_e(t.id)}">{_e(t.caption)} {dl}</h2><div class="scroll">'
            f'<table id="{_e(t.id)}"><caption class="sr">{_e(t.caption)}</caption><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody>{foot}</table></div>{note}</section>')


def error_html(status: int, message: str, path: str = "", sel: Selection | None = None, categories=()) -> str:
    title = {400: "Bad request", 401: "Authentication required", 404: "Not found",
             503: "Unavailable"}.get(status, "Error")
    return layout(title, path, sel, f'<div class="error" role="alert"><p>{_e(message)}</p></div>', categories)


# --- downloads ---------------------------------------------------------------------------------

def iso(t) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _plain(col, v):
    if v is not None and col.kind == "time":
        return iso(v)
    return v


def table_csv(t: Table) -> str:
    keys = [c.key for c in t.columns]
    return csv_text(keys, ([_plain(c, r.get(c.key)) for c in t.columns] for r in t.rows))


def table_json(t: Table) -> str:
    return json_text([{c.key: _plain(c, r.get(c.key)) for c in t.columns} for r in t.rows], indent=1) + "\n"
