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
           f'{_hbar(cats)}</figure>')]
    if services:
        shown = services[:15]
        note = f" — top {len(shown)} of {len(services)}" if len(services) > len(shown) else ""
        out.append(f'<figure><figcaption>Figure 2. Bytes per service, IM, P2P, VoIP and collaboration{note} '
                   f'(unclassified traffic is in Figure 1)</figcaption>{_hbar(shown)}</figure>')
    if r["daily"]:
        out.append(f'<figure><figcaption>Figure 3. Bytes per day and category (UTC days)</figcaption>'
                   f'{_daily(r)}{_legend(r)}</figure>')
    return "".join(out) + "</section>"


def _legend(r: dict) -> str:
    return '<div class="legend">' + "".join(
        f'<span><i class="swatch" style="background:{CATEGORY_COLOURS.get(c["id"], "#555")}"></i>{_e(c["name"])}</span>'
        for c in r["categories"] if c["bytes"]) + "</div>"


def _hbar(items: list[tuple[str, int, str, str]], width: int = 1000) -> str:
    label_w, value_w, row = 350, 180, 26
    scale = (width - label_w - value_w) / max((v for _, v, _, _ in items), default=1) if items else 0
    height = row * len(items) + 6
    out = [f'<svg viewBox="0 0 {width} {height}" role="img" preserveAspectRatio="xMinYMin meet">']
    for i, (label, value, colour, note) in enumerate(items):
        y = i * row + 3
        w = max(value * scale, 1 if value else 0)
        short = label if len(label) <= 42 else label[:41] + "…"
        out.append(f'<text x="{label_w - 10}" y="{y + 17}" text-anchor="end">{_e(short)}'
                   f'<title>{_e(label)}</title></text>'
                   f'<rect x="{label_w}" y="{y + 4}" width="{w:.1f}" height="{row - 8}" fill="{colour}"/>'
                   f'<text x="{label_w + w + 8:.1f}" y="{y + 17}">{_e(human_bytes(value))} · {_e(note)}</text>')
    return "".join(out) + "</svg>"


def _nice_step(top: float, ticks: int = 4) -> float:
    raw = top / ticks
    mag = 10 ** math.floor(math.log10(raw))
    return next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)


def _daily(r: dict, width: int = 1000, height: int = 260) -> str:
    days = r["daily"]
    order = [c["id"] for c in r["categories"]]
    left, bottom, top_pad = 70, 26, 10
    plot_w, plot_h = width - left - 10, height - bottom - top_pad
    peak = max(sum(d["bytes"].values()) for d in days) or 1
    step = _nice_step(peak)
    ymax = step * math.ceil(peak / step)
    slot = plot_w / len(days)
    bar = max(1.0, min(slot * 0.7, 60))
    out = [f'<svg viewBox="0 0 {width} {height}" role="img" preserveAspectRatio="xMinYMin meet">']
    for k in range(round(ymax / step) + 1):
        y = top_pad + plot_h - k * step / ymax * plot_h
        out.append(f'<line x1="{left}" x2="{width - 10}" y1="{y:.1f}" y2="{y:.1f}" stroke="#d9dee5"/>'
                   f'<text class="axis" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">'
                   f'{_e(human_bytes(int(k * step)))}</text>')
    every = max(1, math.ceil(len(days) / 12))
    for i, d in enumerate(days):
        x = left + i * slot + (slot - bar) / 2
        y = top_pad + plot_h
        for cid in order:
            v = d["bytes"].get(cid, 0)
            if not v:
                continue
            h = v / ymax * plot_h
            y -= h
            out.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                       f'fill="{CATEGORY_COLOURS.get(cid, "#555")}"><title>{_e(d["day"])} '
                       f'{_e(CATEGORY_NAMES.get(cid, cid))}: {_e(human_bytes(v))}</title></rect>')
        if i % every == 0:
            out.append(f'<text class="axis" x="{x + bar / 2:.1f}" y="{height - 8}" text-anchor="middle">'
                       f'{_e(d["day"][5:])}</text>')
    base = top_pad + plot_h
    out.append(f'<line x1="{left}" x2="{width - 10}" y1="{base}" y2="{base}" stroke="#1b2430"/>')
    return "".join(out) + "</svg>"


def _e(value) -> str:
    return html_text(value)
