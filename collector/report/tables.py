"""`imflow top` output: `query.top` results for people (an aligned table, `human_bytes` beside
exact counts) and for programs (JSON, CSV)."""

from __future__ import annotations

from collector.store.schema import COUNTERS
from collector.text import csv_text, json_text, printable

_UNITS = ("B", "kB", "MB", "GB", "TB", "PB", "EB")


def human_bytes(n: int) -> str:
    """Decimal units, as network traffic is usually counted: 1234567 → '1.2 MB'."""
    value = float(n)
    for unit in _UNITS:
        if abs(value) < 1000 or unit == _UNITS[-1]:
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def render(rows: list[dict], by: tuple[str, ...] | list[str], fmt: str = "table") -> str:
    """`fmt`: "table" (aligned, human bytes beside exact ones, a total line), "json" (an array
    of objects with exact integers) or "csv" (a header, then one line per row). Names are
    outside text: escaped as `collector.text` says for each format."""
    by = tuple(by)
    if fmt == "json":
        return json_text([{k: row[k] for k in (*by, *COUNTERS)} for row in rows], indent=1) + "\n"
    if fmt == "csv":
        return csv_text((*by, *COUNTERS), ([row[k] for k in (*by, *COUNTERS)] for row in rows))
    if fmt != "table":
        raise ValueError(f"unknown format {fmt!r} (expected table, json or csv)")
    return _table(rows, by)


def _table(rows: list[dict], by: tuple[str, ...]) -> str:
    header = (*by, "traffic", *COUNTERS)
    body = [(*(_show(row[k]) for k in by), human_bytes(row["bytes"]),
             *(f"{row[k]:,}" for k in COUNTERS)) for row in rows]
    totals = {k: sum(row[k] for row in rows) for k in COUNTERS}
    label = f"total ({len(rows)} row{'s' if len(rows) != 1 else ''})"
    footer = (label, *[""] * (len(by) - 1), human_bytes(totals["bytes"]),
              *(f"{totals[k]:,}" for k in COUNTERS))
    widths = [max(len(line[i]) for line in (header, *body, footer)) for i in range(len(header))]
    numeric = len(by)  # traffic and counters are right-aligned

    def fmt_line(cells) -> str:
        return "  ".join(c.rjust(w) if i >= numeric else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([fmt_line(header), rule, *map(fmt_line, body), rule, fmt_line(footer)]) + "\n"


def _show(value) -> str:
    return "(none)" if value == "" else printable(value)
