"""`imflow top` output: `query.top` results for people (an aligned table, `human_bytes` beside
exact counts) and for programs (JSON, CSV)."""

from __future__ import annotations

from datetime import datetime, timezone

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


TIME_BUCKETS = ("minute", "hour", "day")  # `by` keys whose values are bucket starts, UNIX seconds


def render(rows: list[dict], by: tuple[str, ...] | list[str], fmt: str = "table") -> str:
    """`fmt`: "table" (aligned, human bytes beside exact ones, the share of each row, a total
    line), "json" (an array of objects with exact integers) or "csv" (a header, then one line per
    row). Names are outside text: escaped as `collector.text` says for each format. Time buckets
    are ISO 8601 UTC in JSON and CSV ("2026-01-01T10:00:00Z"), "2026-01-01 10:00" in the table
    (whose header says UTC). `share_pct` is written when the rows have it."""
    by = tuple(by)
    extra = ("share_pct",) if rows and "share_pct" in rows[0] else ()
    names = (*by, *COUNTERS, *extra)

    def value(row, k):
        return _iso(row[k]) if k in TIME_BUCKETS else row[k]
    if fmt == "json":
        return json_text([{k: value(row, k) for k in names} for row in rows], indent=1) + "\n"
    if fmt == "csv":
        return csv_text(names, ([value(row, k) for k in names] for row in rows))
    if fmt != "table":
        raise ValueError(f"unknown format {fmt!r} (expected table, json or csv)")
    return _table(rows, by, bool(extra))


def _iso(t: int) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _table(rows: list[dict], by: tuple[str, ...], share: bool = False) -> str:
    header = (*(f"{k} (UTC)" if k in TIME_BUCKETS else k for k in by), "traffic", *COUNTERS,
              *(("share",) if share else ()))
    body = [(*(_show(row[k], k) for k in by), human_bytes(row["bytes"]),
             *(f"{row[k]:,}" for k in COUNTERS), *((f"{row['share_pct']:.1f}%",) if share else ()))
            for row in rows]
    totals = {k: sum(row[k] for row in rows) for k in COUNTERS}
    label = f"total ({len(rows)} row{'s' if len(rows) != 1 else ''})"
    footer = (label, *[""] * (len(by) - 1), human_bytes(totals["bytes"]),
              *(f"{totals[k]:,}" for k in COUNTERS), *(("",) if share else ()))
    widths = [max(len(line[i]) for line in (header, *body, footer)) for i in range(len(header))]
    numeric = len(by)  # traffic and counters are right-aligned

    def fmt_line(cells) -> str:
        return "  ".join(c.rjust(w) if i >= numeric else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([fmt_line(header), rule, *map(fmt_line, body), rule, fmt_line(footer)]) + "\n"


def _show(value, key: str = "") -> str:
    if key in TIME_BUCKETS:
        return datetime.fromtimestamp(value, timezone.utc).strftime("%Y-%m-%d" if key == "day" else "%Y-%m-%d %H:%M")
    if key == "name":  # a host the host map does not name
        return printable(value)
    return "(none)" if value == "" else printable(value)
