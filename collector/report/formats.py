"""The usage audit as JSON (the data `build` returns, as it is) and CSV (one row per category,
service and host)."""

from __future__ import annotations

import csv
import io
import json

from collector.report.build import iso, pct

CSV_COLUMNS = ("category", "category_name", "service", "service_name", "host", "host_name", "host_owner",
               "bytes", "packets", "flows", "share_pct", "first_seen", "last_seen", "policy", "violation")


def render_json(report: dict) -> str:
    return json.dumps(report, indent=1, ensure_ascii=False) + "\n"


def render_csv(report: dict) -> str:
    """One row per (category, service, host); host "" is traffic with no internal host. Times
    are UTC ("2026-01-01 10:00:00 UTC"); share_pct is of all traffic in the period."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    total = report["totals"]["bytes"]
    for c in report["categories"]:
        for s in c["services"]:
            rows = list(s["hosts"])
            if s["no_internal_host"]["flows"] or s["no_internal_host"]["bytes"]:
                rows.append({"host": "", "name": "", "owner": "", **s["no_internal_host"],
                             "policy": s["policy"], "violation": False})
            for h in rows:
                writer.writerow((c["id"], c["name"], s["id"], _cell(s["name"]), h["host"], _cell(h["name"]),
                                 _cell(h["owner"]), h["bytes"], h["packets"], h["flows"],
                                 f"{pct(h['bytes'], total):.4f}", iso(h["first_seen"]), iso(h["last_seen"]),
                                 h["policy"], "yes" if h["violation"] else "no"))
    return out.getvalue()


def _cell(text: str) -> str:
    # Names come from files and DNS: keep a spreadsheet from reading them as formulas.
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text

