"""The report's SVG charts, drawn as inline markup (no scripts): bytes per category and per
service as horizontal bars, bytes per day stacked by category."""

from __future__ import annotations

import math

from collector.report.build import CATEGORY_NAMES
from collector.report.tables import human_bytes
from collector.text import html_text

CATEGORY_COLOURS = {"im": "#2b6cb0", "p2p": "#c0392b", "voip": "#2f855a", "collab": "#b7791f",
                    "other": "#8a94a3"}


def traffic(r: dict) -> str:
    """The Traffic section: figures 1 to 3 (nothing without traffic)."""
    total = r["totals"]["bytes"]
    if not total:
        return ""
    cats = [(c["name"], c["bytes"], CATEGORY_COLOURS.get(c["id"], "#555"), f"{c['share_pct']:.1f} %")
            for c in r["categories"]]
    services = sorted(((s["name"], s["bytes"], CATEGORY_COLOURS.get(c["id"], "#555"), f"{s['share_pct']:.1f} %")
                       for c in r["categories"] if c["id"] != "other" for s in c["services"]),
                      key=lambda t: -t[1])
    out = ['<section><h2>Traffic</h2>',
           ('<figure><figcaption>Figure 1. Bytes per category (share of all traffic)</figcaption>'
           f'{hbars(cats, "Bytes per category")}</figure>')]
    if services:
        shown = services[:15]
        note = f" — top {len(shown)} of {len(services)}" if len(services) > len(shown) else ""
        out.append(f'<figure><figcaption>Figure 2. Bytes per service, IM, P2P, VoIP and collaboration{note} '
                   f'(unclassified traffic is in Figure 1)</figcaption>{hbars(shown, "Bytes per service")}</figure>')
    if r["daily"]:
        out.append(f'<figure><figcaption>Figure 3. Bytes per day and category (UTC days)</figcaption>'
                   f'{_daily(r)}{_legend(r)}</figure>')
    return "".join(out) + "</section>"


def _legend(r: dict) -> str:
    return '<div class="legend">' + "".join(
        f'<span><i class="swatch" style="background:{CATEGORY_COLOURS.get(c["id"], "#555")}"></i>{_e(c["name"])}</span>'
        for c in r["categories"] if c["bytes"]) + "</div>"


def hbars(items: list[tuple[str, int, str, str]], label: str = "", width: int = 1000, label_w: int = 350,
          value_w: int = 180, row: int = 26, longest: int = 42) -> str:
    """Horizontal bars, one a row: (label, bytes, colour, note); the note follows the bytes.
    Labels longer than `longest` are cut, whole in the tooltip."""
    if not items:
        return ""
    scale = (width - label_w - value_w) / (max(v for _, v, _, _ in items) or 1)
    out = [_svg_open(width, row * len(items) + 6, label)]
    for i, (name, value, colour, note) in enumerate(items):
        y = i * row + 3
        w = max(value * scale, 1 if value else 0)
        short = name if len(name) <= longest else name[:longest - 1] + "…"
        text = human_bytes(value) + (f" · {note}" if note else "")
        out.append(f'<text x="{label_w - 10}" y="{y + 17}" text-anchor="end">{_e(short)}</text>'
                   f'<rect x="{label_w}" y="{y + 4}" width="{w:.1f}" height="{row - 8}" fill="{colour}">'
                   f'<title>{_e(name)}: {_e(human_bytes(value))}</title></rect>'
                   f'<text x="{label_w + w + 8:.1f}" y="{y + 17}">{_e(text)}</text>')
    return "".join(out) + "</svg>"


def nice_step(top: float, ticks: int = 4) -> float:
    """An axis step of 1, 2, 2.5 or 5 times a power of ten, about `ticks` to reach `top`."""
    raw = max(top, 1) / ticks
    mag = 10 ** math.floor(math.log10(raw))
    return next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)


def stacked_bars(columns: list[tuple[str, str]], series: list[tuple[str, str, str]],
                 values: dict[tuple[int, str], int], label: str = "", width: int = 1000, height: int = 240,
                 ticks: int = 8, max_bar: float = 40, bar_share: float = 0.8) -> str:
    """Bars per column, stacked by series. `columns`: (axis text, tooltip text) of each;
    `series`: (key, label, colour) bottom first; `values`: (column index, key) -> bytes. Empty
    columns stay empty, so gaps in the traffic show as gaps; at most `ticks` axis texts."""
    if not columns or not series:
        return ""
    left, bottom, pad = 72, 24, 8
    plot_w, plot_h = width - left - 8, height - bottom - pad
    peak = max(sum(values.get((i, k), 0) for k, _, _ in series) for i in range(len(columns))) or 1
    step = nice_step(peak)
    ymax = step * math.ceil(peak / step)
    slot = plot_w / len(columns)
    bar = max(0.5, min(slot * bar_share, max_bar))
    out = [_svg_open(width, height, label)]
    for k in range(round(ymax / step) + 1):
        y = pad + plot_h - k * step / ymax * plot_h
        out.append(f'<line x1="{left}" x2="{width - 8}" y1="{y:.1f}" y2="{y:.1f}" stroke="#d9dee5"/>'
                   f'<text class="axis" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">'
                   f'{_e(human_bytes(int(k * step)))}</text>')
    every = max(1, math.ceil(len(columns) / ticks))
    for i, (tick, tip) in enumerate(columns):
        x = left + i * slot + (slot - bar) / 2
        y = pad + plot_h
        for key, name, colour in series:
            v = values.get((i, key), 0)
            if not v:
                continue
            h = v / ymax * plot_h
            y -= h
            out.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" fill="{colour}">'
                       f'<title>{_e(tip)} {_e(name)}: {_e(human_bytes(v))}</title></rect>')
        if i % every == 0:
            out.append(f'<text class="axis" x="{x + bar / 2:.1f}" y="{height - 6}" text-anchor="middle">'
                       f'{_e(tick)}</text>')
    base = pad + plot_h
    out.append(f'<line x1="{left}" x2="{width - 8}" y1="{base}" y2="{base}" stroke="#1b2430"/>')
    return "".join(out) + "</svg>"


def _svg_open(width: int, height: int, label: str) -> str:
    aria = f' aria-label="{_e(label)}"' if label else ""
    title = f"<title>{_e(label)}</title>" if label else ""
    return f'<svg viewBox="0 0 {width} {height}" role="img"{aria} preserveAspectRatio="xMinYMin meet">{title}'


def _daily(r: dict) -> str:
    order = [c["id"] for c in r["categories"]]
    series = [(cid, CATEGORY_NAMES.get(cid, cid), CATEGORY_COLOURS.get(cid, "#555")) for cid in order]
    values = {(i, cid): v for i, d in enumerate(r["daily"]) for cid, v in d["bytes"].items()}
    return stacked_bars([(d["day"][5:], d["day"]) for d in r["daily"]], series, values,
                        "Bytes per day and category", height=260, ticks=12, max_bar=60, bar_share=0.7)


def _e(value) -> str:
    return html_text(value)
