"""The web page's charts as inline SVG (no script): bytes over time as stacked bars, and
horizontal bars for a ranking. Every label is outside text: escaped with `html_text`. Each
chart repeats its figures in `<title>` tooltips, and the table beside it has them exactly."""

from __future__ import annotations

import math
from datetime import UTC, datetime

from collector.report.charts import CATEGORY_COLOURS
from collector.report.tables import human_bytes
from collector.text import html_text as _e

# eight distinguishable colours, dark enough for white text around them (WCAG 3:1 for graphics)
PALETTE = ("#2b6cb0", "#c0392b", "#2f855a", "#b7791f", "#6b46c1", "#0f7a8a", "#b83280", "#4a5568")
REST = "#a0aab8"


def colour_of(key: str, index: int, by: str) -> str:
    if by == "category":
        return CATEGORY_COLOURS.get(key, REST)
    return PALETTE[index % len(PALETTE)] if key not in ("", "other") else REST


def _step(top: float, ticks: int = 4) -> float:
    raw = max(top, 1) / ticks
    mag = 10 ** math.floor(math.log10(raw))
    return next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)


def _when(t: int, width: int) -> str:
    fmt = "%m-%d" if width >= 86400 else "%m-%d %H:%M"
    return datetime.fromtimestamp(t, UTC).strftime(fmt)


def stacked(slots: list[int], width: int, series: list[tuple[str, str, str]],
            values: dict[tuple[int, str], int], label: str) -> str:
    """Bars per time slot (bucket starts, `width` seconds apart), stacked by series.

    `series`: (key, label, colour) bottom first; `values`: (slot, key) -> bytes. Empty slots
    stay empty, so gaps in the traffic show as gaps."""
    if not slots or not series:
        return ""
    w, h, left, bottom, pad = 1000, 240, 72, 24, 8
    plot_w, plot_h = w - left - 8, h - bottom - pad
    peak = max(sum(values.get((t, k), 0) for k, _, _ in series) for t in slots) or 1
    step = _step(peak)
    ymax = step * math.ceil(peak / step)
    slot_w = plot_w / len(slots)
    bar = max(0.5, min(slot_w * 0.8, 40))
    out = [(f'<svg viewBox="0 0 {w} {h}" role="img" aria-label="{_e(label)}" '
            f'preserveAspectRatio="xMinYMin meet"><title>{_e(label)}</title>')]
    for k in range(round(ymax / step) + 1):
        y = pad + plot_h - k * step / ymax * plot_h
        out.append(f'<line x1="{left}" x2="{w - 8}" y1="{y:.1f}" y2="{y:.1f}" stroke="#d9dee5"/>'
                   f'<text class="axis" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">'
                   f'{_e(human_bytes(int(k * step)))}</text>')
    every = max(1, math.ceil(len(slots) / 8))
    for i, t in enumerate(slots):
        x = left + i * slot_w + (slot_w - bar) / 2
        y = pad + plot_h
        for key, name, colour in series:
            v = values.get((t, key), 0)
            if not v:
                continue
            bh = v / ymax * plot_h
            y -= bh
            out.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{bh:.1f}" fill="{colour}">'
                       f'<title>{_e(_when(t, width))} UTC {_e(name)}: {_e(human_bytes(v))}</title></rect>')
        if i % every == 0:
            out.append(f'<text class="axis" x="{x + bar / 2:.1f}" y="{h - 6}" text-anchor="middle">'
                       f'{_e(_when(t, width))}</text>')
    base = pad + plot_h
    out.append(f'<line x1="{left}" x2="{w - 8}" y1="{base}" y2="{base}" stroke="#1b2430"/></svg>')
    return "".join(out)


def legend(series: list[tuple[str, str, str]]) -> str:
    return '<p class="legend">' + "".join(
        f'<span><i class="swatch" style="background:{c}"></i>{_e(name)}</span>' for _, name, c in series) + "</p>"


def bars(items: list[tuple[str, int, str]], label: str) -> str:
    """Horizontal bars: (label, bytes, colour), biggest first."""
    if not items:
        return ""
    w, row, label_w, value_w = 1000, 28, 300, 150
    top = max(v for _, v, _ in items) or 1
    scale = (w - label_w - value_w) / top
    out = [(f'<svg viewBox="0 0 {w} {row * len(items) + 4}" role="img" aria-label="{_e(label)}" '
            f'preserveAspectRatio="xMinYMin meet"><title>{_e(label)}</title>')]
    for i, (name, v, colour) in enumerate(items):
        y = i * row + 2
        bw = max(v * scale, 1 if v else 0)
        short = name if len(name) <= 30 else name[:29] + "…"
        out.append(f'<text x="{label_w - 8}" y="{y + 18}" text-anchor="end">{_e(short)}</text>'
                   f'<rect x="{label_w}" y="{y + 5}" width="{bw:.1f}" height="{row - 10}" fill="{colour}">'
                   f'<title>{_e(name)}: {_e(human_bytes(v))}</title></rect>'
                   f'<text x="{label_w + bw + 6:.1f}" y="{y + 18}">{_e(human_bytes(v))}</text>')
    return "".join(out) + "</svg>"
