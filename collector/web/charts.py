"""The web page's charts as inline SVG (no script): bytes over time as stacked bars, and
horizontal bars for a ranking. Every label is outside text: escaped with `html_text`. Each
chart repeats its figures in `<title>` tooltips, and the table beside it has them exactly."""

from __future__ import annotations

from datetime import UTC, datetime

from collector.report.charts import CATEGORY_COLOURS, hbars, stacked_bars
from collector.text import html_text as _e

# eight distinguishable colours, dark enough for white text around them (WCAG 3:1 for graphics)
PALETTE = ("#2b6cb0", "#c0392b", "#2f855a", "#b7791f", "#6b46c1", "#0f7a8a", "#b83280", "#4a5568")
REST = "#a0aab8"


def colour_of(key: str, index: int, by: str) -> str:
    if by == "category":
        return CATEGORY_COLOURS.get(key, REST)
    return PALETTE[index % len(PALETTE)] if key not in ("", "other") else REST


def _when(t: int, width: int) -> str:
    fmt = "%m-%d" if width >= 86400 else "%m-%d %H:%M"
    return datetime.fromtimestamp(t, UTC).strftime(fmt)


def stacked(slots: list[int], width: int, series: list[tuple[str, str, str]],
            values: dict[tuple[int, str], int], label: str) -> str:
    """Bars per time slot (bucket starts, `width` seconds apart), stacked by series.

    `series`: (key, label, colour) bottom first; `values`: (slot, key) -> bytes. Empty slots
    stay empty, so gaps in the traffic show as gaps."""
    index = {t: i for i, t in enumerate(slots)}
    return stacked_bars([(_when(t, width), _when(t, width) + " UTC") for t in slots], series,
                        {(index[t], k): v for (t, k), v in values.items() if t in index}, label, height=240)


def legend(series: list[tuple[str, str, str]]) -> str:
    return '<p class="legend">' + "".join(
        f'<span><i class="swatch" style="background:{c}"></i>{_e(name)}</span>' for _, name, c in series) + "</p>"


def bars(items: list[tuple[str, int, str]], label: str) -> str:
    """Horizontal bars: (label, bytes, colour), biggest first."""
    return hbars([(name, v, colour, "") for name, v, colour in items], label, label_w=300, value_w=150,
                 row=28, longest=30)
