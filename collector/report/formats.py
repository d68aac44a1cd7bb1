"""The usage audit as JSON (the data `build` returns, as it is) and CSV (one row per category,
service and host)."""

from __future__ import annotations

from collector.report.build import iso, pct
from collector.text import csv_text, json_text

CSV_COLUMNS = ("category", "category_name", "service", "service_name", "host", "host_name", "host_owner",
               "bytes", "packets", "flows", "share_pct", "first_seen", "last_seen", "policy", "violation",
               "violation_at_ingest")


def render_json(report: dict) -> str:
    return json_text(report, indent=1, ascii=False) + "\n"


def render_csv(report: dict) -> str:
    """One row per (category, service, host); host "" is traffic with no internal host. Times
    are UTC ("2026-01-01 10:00:00 UTC"); share_pct is of all traffic in the period; violation
    is judged by the policy the report was made with, violation_at_ingest is what the collector
    recorded when the traffic was seen. Every cell goes through `collector.text.csv_cell` (names
    come from files and DNS)."""
    return csv_text(CSV_COLUMNS, _csv_rows(report))


def _csv_rows(report: dict):
    total = report["totals"]["bytes"]
    for c in report["categories"]:
        for s in c["services"]:
            rows = list(s["hosts"])
            if s["no_internal_host"]["flows"] or s["no_internal_host"]["bytes"]:
                rows.append({"host": "", "name": "", "owner": "", **s["no_internal_host"],
                             "policy": s["policy"], "violation": False,
                             "recorded_violation": False})
            for h in rows:
                yield (c["id"], c["name"], s["id"], s["name"], h["host"], h["name"], h["owner"], h["bytes"],
                       h["packets"], h["flows"], f"{pct(h['bytes'], total):.4f}", iso(h["first_seen"]),
                       iso(h["last_seen"]), h["policy"], "yes" if h["violation"] else "no",
                       "yes" if h["recorded_violation"] else "no")
