"""What the report must say, computed by plain loops over the rows the tests wrote."""

from __future__ import annotations

from collections import defaultdict

HOUR = 3600  # a 7-day period starts before the minute table's retention: the report reads hours


def per_key(rows, key) -> dict:
    out: dict = defaultdict(lambda: {"bytes": 0, "packets": 0, "flows": 0, "first_seen": None,
                                     "last_seen": None, "violation": False})
    for r in rows:
        e = out[key(r)]
        e["bytes"] += r.bytes
        e["packets"] += r.packets
        e["flows"] += r.flows
        b = r.bin - r.bin % HOUR
        e["first_seen"] = b if e["first_seen"] is None else min(e["first_seen"], b)
        e["last_seen"] = b + HOUR if e["last_seen"] is None else max(e["last_seen"], b + HOUR)
        e["violation"] = e["violation"] or bool(r.violation)
    return dict(out)


def report_rows(report) -> dict:
    """(category, service, host) → the host entry of a built report ('' = no internal host)."""
    out = {}
    for c in report["categories"]:
        for s in c["services"]:
            for h in s["hosts"]:
                out[(c["id"], s["id"], h["host"])] = h
            if s["no_internal_host"]["flows"]:
                out[(c["id"], s["id"], "")] = s["no_internal_host"]
    return out
