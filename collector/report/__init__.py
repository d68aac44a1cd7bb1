"""The usage audit (`imflow report`): per category and service, the internal hosts that used it,
how much, when, and what the policy says about it, as one self-contained HTML file, CSV or JSON.

`build` reads the rollups in one read transaction (so every total in the report comes from the
same snapshot, even while the collector writes) and returns plain, JSON-ready data; the
renderers only format that data. Like `imflow top`, it reads the finest rollup whose retention
still covers the start of the period, and a bin counts when it overlaps the period.

What the report cannot show: the rollups keep the internal host of each flow but not the
external peer, so there is no "top peer networks" section; the report says so.
"""

from __future__ import annotations

import csv
import datetime as dt
import html
import io
import json
import math
import os
import sqlite3
from contextlib import closing

from collector import __version__
from collector.policy.model import parse_policy
from collector.store import query, schema
from collector.store.errors import from_sqlite
from collector.store.report import human_bytes

FORMAT_VERSION = 1
CATEGORY_NAMES = {"im": "Instant messaging", "p2p": "Peer-to-peer file sharing", "voip": "Voice over IP",
                  "collab": "Collaboration and meetings", "other": "Other (unclassified)"}
CATEGORY_SHORT = {"im": "IM", "p2p": "P2P", "voip": "VoIP", "collab": "Collab.", "other": "Other"}
CATEGORY_COLOURS = {"im": "#2b6cb0", "p2p": "#c0392b", "voip": "#2f855a", "collab": "#b7791f",
                    "other": "#8a94a3"}
CSV_COLUMNS = ("category", "category_name", "service", "service_name", "host", "host_name", "host_owner",
               "bytes", "packets", "flows", "share_pct", "first_seen", "last_seen", "policy", "violation")
NO_PEERS_NOTE = ("Peer networks are not in this report: imflow's rollups keep the internal host of "
                 "each flow, not the external address it talked to, so the database cannot say which "
                 "outside networks were used.")
NAMES_NOTE = ("Host names and owners are looked up when the report is generated (host map{dns}); "
              "an address that changed hands during the period (DHCP) shows today's name.")


# ---------------------------------------------------------------- build


def build(db_path: str, start: float | None, end: float | None, catalogue, policy, names=None,
          now: float | None = None, names_deadline: float = 3.0) -> dict:
    """The report for [start, end) as plain data (see render_json for its shape).

    `start`/`end` None: from the first / up to the last data stored. `policy` None means the
    default policy (monitor everything). `names` is a HostNames or None (addresses only);
    looking names up takes at most `names_deadline` seconds. Raises StoreError (missing database, newer schema, I/O).
    """
    if policy is None:
        policy = parse_policy(None, catalogue)
    now = dt.datetime.now(dt.UTC).timestamp() if now is None else now
    with closing(query.connect(db_path)) as conn:
        try:
            conn.execute("BEGIN")  # one snapshot for every query below
            res, width, rows, daily = _read(conn, start, end, now)
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise from_sqlite(exc, db_path, "read") from None

    hosts = sorted({r[2] for r in rows if r[2]})
    looked_up = names.lookup_many(hosts, deadline=names_deadline) if names is not None and hosts else {}
    total = {k: sum(r[3 + i] for r in rows) for i, k in enumerate(schema.COUNTERS)}
    categories = _categories(rows, catalogue, policy, looked_up, total["bytes"])
    violations = [dict(h, category=c["id"], service=s["id"], service_name=s["name"])
                  for c in categories for s in c["services"] for h in s["hosts"] if h["violation"]]
    per_host = _hosts(categories)
    data_first = min((r[6] for r in rows), default=None)
    data_last = max((r[7] for r in rows), default=None)
    return {
        "report": "imflow usage audit",
        "format_version": FORMAT_VERSION,
        "imflow_version": __version__,
        "generated": _iso(now),
        "database": os.path.abspath(db_path),
        "period": {"start": start, "end": end, "start_utc": _iso(start) if start is not None else None,
                   "end_utc": _iso(end) if end is not None else None,
                   "data_first": data_first, "data_last": data_last,
                   "resolution": res, "bin_seconds": width},
        "catalogue": {"snapshot": catalogue.snapshot, "fetched": getattr(catalogue, "fetched", None),
                      "services": len(catalogue.services)},
        "policy": _policy_summary(policy, catalogue),
        "names": {"host_map": getattr(names, "map_path", None) if names else None,
                  "reverse_dns": bool(getattr(names, "reverse_dns", False)) if names else False},
        "totals": {**total, "internal_hosts": len(hosts),
                   "violations": len(violations),
                   "violating_hosts": len({v["host"] for v in violations}),
                   "violation_bytes": sum(v["bytes"] for v in violations)},
        "categories": categories,
        "hosts": per_host,
        "violations": violations,
        "daily": daily,
        "notes": [NO_PEERS_NOTE,
                  (f"Traffic is counted in {res} bins ({width} s); a bin that overlaps the period "
                  f"counts whole, so the edges may include up to one bin of traffic outside it."),
                  ("Bytes and packets are as exported, multiplied by the exporter's sampling rate; "
                  "hosts are internal addresses (the inside end of each flow). \"No internal host\" "
                  "is traffic between two outside addresses seen by an exporter."),
                  ("Policy is today's configuration; \"violation\" is what the collector recorded "
                  "with the policy in force when the traffic was seen."),
                  NAMES_NOTE.format(dns=", reverse DNS" if names is not None and names.reverse_dns else "")],
    }


def _read(conn, start, end, now):
    rng = query.Range(conn, start, end, now)
    res, table, width = rng.resolution, rng.table, rng.width
    where, params = ["1"] + rng.where, rng.params
    cond = " AND ".join(where)
    rows = conn.execute(
        f"SELECT category, service, host, sum(bytes), sum(packets), sum(flows), min(bin),"
        f" max(bin) + {width}, max(violation) FROM {table} WHERE {cond}"
        f" GROUP BY category, service, host", params).fetchall()
    daily: dict[int, dict[str, int]] = {}
    for day, category, nbytes in conn.execute(
            f"SELECT bin - bin % 86400, category, sum(bytes) FROM {table} WHERE {cond}"
            f" GROUP BY 1, 2 ORDER BY 1", params):
        daily.setdefault(day, {})[category] = nbytes
    return res, width, rows, [{"day": _iso(d)[:10], "start": d, "bytes": b} for d, b in daily.items()]


def _categories(rows, catalogue, policy, looked_up, all_bytes) -> list[dict]:
    services: dict[tuple[str, str], dict] = {}
    for category, sid, host, nbytes, packets, flows, first, last, violation in rows:
        svc = services.get((category, sid))
        if svc is None:
            known = catalogue.by_id.get(sid)
            svc = services[(category, sid)] = {
                "id": sid, "name": known.name if known else sid, "category": category,
                "bytes": 0, "packets": 0, "flows": 0, "share_pct": 0.0,
                "first_seen": first, "last_seen": last, "internal_hosts": 0,
                **_service_policy(policy, sid, category if known is None else known.category),
                "violation": False, "hosts": [],
                "no_internal_host": {"bytes": 0, "packets": 0, "flows": 0, "first_seen": None,
                                     "last_seen": None}}
        svc["bytes"] += nbytes
        svc["packets"] += packets
        svc["flows"] += flows
        svc["first_seen"] = min(svc["first_seen"], first)
        svc["last_seen"] = max(svc["last_seen"], last)
        if not host:
            svc["no_internal_host"] = {"bytes": nbytes, "packets": packets, "flows": flows,
                                       "first_seen": first, "last_seen": last}
            continue
        name, owner = looked_up.get(host, ("", ""))
        svc["hosts"].append({"host": host, "name": name, "owner": owner, "bytes": nbytes, "packets": packets,
                             "flows": flows, "first_seen": first, "last_seen": last,
                             "policy": _host_action(policy, sid, host), "violation": bool(violation)})
        svc["violation"] = svc["violation"] or bool(violation)
    by_category: dict[str, list[dict]] = {}
    for svc in services.values():
        svc["share_pct"] = _pct(svc["bytes"], all_bytes)
        svc["internal_hosts"] = len(svc["hosts"])
        svc["hosts"].sort(key=lambda h: (-h["bytes"], h["host"]))
        for h in svc["hosts"]:
            h["share_of_service_pct"] = _pct(h["bytes"], svc["bytes"])
        by_category.setdefault(svc.pop("category"), []).append(svc)
    out = []
    order = list(catalogue.categories) + sorted(set(by_category) - set(catalogue.categories))
    for cid in order:
        svcs = sorted(by_category.get(cid, []), key=lambda s: (-s["bytes"], s["id"]))
        totals = {k: sum(s[k] for s in svcs) for k in schema.COUNTERS}
        out.append({"id": cid, "name": CATEGORY_NAMES.get(cid, cid), **totals,
                    "share_pct": _pct(totals["bytes"], all_bytes),
                    "internal_hosts": len({h["host"] for s in svcs for h in s["hosts"]}),
                    "policy": policy.categories.get(cid, "allow" if cid == "other" else policy.default),
                    "policy_overrides": {sid: a for sid, a in policy.services.items()
                                         if policy.service_categories.get(sid) == cid},
                    "violation": any(s["violation"] for s in svcs), "services": svcs})
    # biggest first, the unclassified rest last
    out.sort(key=lambda c: (c["id"] == "other", -c["bytes"], order.index(c["id"])))
    return out


def _hosts(categories: list[dict]) -> list[dict]:
    """Per internal host: bytes per category, the services it used, its violations; the hosts
    with the most IM, P2P, VoIP and collaboration traffic first."""
    out: dict[str, dict] = {}
    for c in categories:
        for s in c["services"]:
            for h in s["hosts"]:
                e = out.setdefault(h["host"], {"host": h["host"], "name": h["name"], "owner": h["owner"],
                                               "bytes": 0, "flows": 0, "categories": {}, "services": [],
                                               "violations": []})
                e["bytes"] += h["bytes"]
                e["flows"] += h["flows"]
                e["categories"][c["id"]] = e["categories"].get(c["id"], 0) + h["bytes"]
                e["services"].append(s["id"])
                if h["violation"]:
                    e["violations"].append(s["id"])
    return sorted(out.values(), key=lambda e: (-(e["bytes"] - e["categories"].get("other", 0)), e["host"]))


def _service_policy(policy, sid: str, category: str) -> dict:
    if sid not in policy.service_categories:  # recorded before the catalogue dropped it
        return {"policy": "unknown", "exceptions": []}
    return {"policy": policy.base_action(sid, category), "exceptions": [
        {"hosts": [str(e.network)], "action": e.exception.action, "note": e.exception.note,
         "key": e.exception.key} for e in policy.entries_for(sid, category)]}


def _host_action(policy, sid: str, host: str) -> str:
    try:
        return policy.action(sid, host)
    except ValueError:  # a service the current catalogue no longer has, or an odd host text
        return "unknown"


def _policy_summary(policy, catalogue) -> dict:
    blocked = policy.blocked_services()
    return {"default": policy.default, "categories": dict(policy.categories), "services": dict(policy.services),
            "blocked_services": blocked,
            "blocked_names": [catalogue.by_id[s].name for s in blocked if s in catalogue.by_id],
            "exceptions": [{"key": e.key, "target": e.target, "service": e.service, "category": e.category,
                            "hosts": [str(n) for n in e.networks], "action": e.action, "note": e.note}
                           for e in policy.exceptions]}


def _pct(part: int, whole: int) -> float:
    return 100.0 * part / whole if whole else 0.0


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


# ---------------------------------------------------------------- CSV and JSON


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
                                 f"{_pct(h['bytes'], total):.4f}", _iso(h["first_seen"]), _iso(h["last_seen"]),
                                 h["policy"], "yes" if h["violation"] else "no"))
    return out.getvalue()


def _cell(text: str) -> str:
    # Names come from files and DNS: keep a spreadsheet from reading them as formulas.
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text



# ---------------------------------------------------------------- HTML

_CSS = """
:root{--ink:#1b2430;--muted:#5b6675;--rule:#d9dee5;--head:#f3f5f8;--accent:#1f3a5f}
*{box-sizing:border-box}
body{margin:0;background:#fff;color:var(--ink);
 font:13px/1.45 "DejaVu Sans","Segoe UI","Helvetica Neue",Arial,sans-serif}
main{max-width:1120px;margin:0 auto;padding:28px 40px 40px}
.kicker{font-size:11px;letter-spacing:.12em;text-transform:uppercase;color:var(--muted);font-weight:700}
h1{font-size:26px;margin:4px 0 2px;color:var(--accent)}
.period{font-size:15px;margin:0 0 14px}
header.doc{border-bottom:3px solid var(--accent);padding-bottom:14px;margin-bottom:18px}
dl.meta{display:grid;grid-template-columns:170px 1fr 170px 1fr;gap:3px 14px;margin:0;font-size:12px}
dl.meta dt{color:var(--muted)}dl.meta dd{margin:0;overflow-wrap:anywhere}
h2{font-size:19px;color:var(--accent);margin:26px 0 8px;padding-bottom:4px;border-bottom:1px solid var(--rule)}
h3{font-size:15px;margin:20px 0 2px}
h3 code,td code{font:11px "DejaVu Sans Mono",monospace;color:var(--muted);font-weight:400}
.sub{color:var(--muted);font-size:12px;margin:0 0 6px}
.box{border:1px solid var(--rule);border-left:4px solid var(--accent);padding:10px 14px;margin:10px 0 16px}
.box p{margin:3px 0}
.kpis{display:grid;grid-template-columns:repeat(4,1fr);gap:12px;margin:12px 0 18px}
.kpi{border:1px solid var(--rule);padding:10px 12px}
.kpi b{display:block;font-size:22px;color:var(--accent);font-weight:700}
.kpi span{color:var(--muted);font-size:12px}
.kpi.alert b{color:#a61b1b}
figure{margin:10px 0 18px}figcaption{font-weight:700;font-size:13px;margin-bottom:4px}
svg{display:block;width:100%;height:auto}
svg text{font-family:"DejaVu Sans",Arial,sans-serif;font-size:13.5px;fill:#1b2430}
svg .axis{fill:#5b6675;font-size:13px}
table{border-collapse:collapse;width:100%;margin:4px 0 10px;font-size:12px}
thead th{background:var(--head);text-align:left;font-size:10.5px;letter-spacing:.04em;text-transform:uppercase;
 color:var(--muted);border-bottom:1.5px solid var(--ink);padding:5px 7px;white-space:nowrap}
td{border-bottom:1px solid var(--rule);padding:4px 7px;vertical-align:top}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.time{white-space:nowrap;font-variant-numeric:tabular-nums}
tfoot td{font-weight:700;border-top:1.5px solid var(--ink);border-bottom:none}
tr.viol td{background:#fdf3f3}
tr.nohost td{color:var(--muted);font-style:italic}
.badge{display:inline-block;padding:0 6px;border:1px solid;border-radius:3px;font-size:10.5px;font-weight:700;
 text-transform:uppercase;letter-spacing:.03em;white-space:nowrap}
.badge.block{color:#a61b1b;border-color:#e3a9a9;background:#fdf1f1}
.badge.monitor{color:#7a5200;border-color:#e2c98f;background:#fdf7e8}
.badge.allow{color:#23613f;border-color:#a8d2b9;background:#eef8f2}
.badge.unknown{color:var(--muted);border-color:var(--rule)}
.yes{color:#a61b1b;font-weight:700}.no{color:var(--muted)}
.swatch{display:inline-block;width:10px;height:10px;margin-right:6px;vertical-align:-1px}
.legend{font-size:12px;color:var(--muted)}.legend span{margin-right:14px;white-space:nowrap}
.nowrap{white-space:nowrap}
ol.notes{font-size:12px;color:var(--muted);padding-left:18px}
footer{margin-top:28px;border-top:1px solid var(--rule);padding-top:8px;font-size:11px;color:var(--muted)}
@page{size:A4;margin:14mm 12mm 16mm}
@media print{
 body{font-size:9pt;-webkit-print-color-adjust:exact;print-color-adjust:exact}
 main{max-width:none;padding:0}
 section.category{break-before:page}
 tr,.kpi,figure,.box,dl.meta{break-inside:avoid}
 thead{display:table-header-group}tfoot{display:table-footer-group}
 h2,h3,.sub{break-after:avoid}
 .badge,tr.viol td,thead th{background:none!important}
 table{font-size:7.5pt}
 td,thead th{padding:3px 4px}
 td.time{white-space:normal}
 dl.meta{grid-template-columns:95px 1fr 95px 1fr}
 h1{font-size:18pt}h2{font-size:13pt}h3{font-size:10.5pt}
}
"""


def render_html(report: dict, other_hosts: int = 10) -> str:
    """The report as one self-contained HTML page: inline CSS and SVG charts, no scripts, no
    external resources; prints on A4 with a page per category. The unclassified `other`
    category lists its top `other_hosts` hosts per service (CSV and JSON have them all)."""
    r = report
    parts = [(f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
             f'<meta name="viewport" content="width=device-width, initial-scale=1">'
             f'<title>imflow usage audit — {_e(_period_text(r))}</title><style>{_CSS}</style></head><body><main>'),
             _header(r), _policy_box(r["policy"]), _summary(r), _charts(r), _overview(r), _violations(r),
             _host_table(r)]
    for c in r["categories"]:
        if c["services"]:
            parts.append(_category(c, other_hosts if c["id"] == "other" else None))
    parts.append('<section><h2>Notes and limitations</h2><ol class="notes">'
                 + "".join(f"<li>{_e(n)}</li>" for n in r["notes"]) + "</ol></section>")
    parts.append(f'<footer>imflow {_e(r["imflow_version"])} · usage audit format {r["format_version"]} · '
                 f'generated {_e(r["generated"])} from {_e(r["database"])}</footer></main></body></html>\n')
    return "".join(parts)


def _hb(n: int) -> str:
    return html.escape(human_bytes(n)).replace(" ", "\u00a0")  # "1.2 MB" never wraps


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _t(ts) -> str:
    return "" if ts is None else _iso(ts)[:16] + " UTC"


def _period_text(r: dict) -> str:
    p = r["period"]
    start = _t(p["start"]) if p["start"] is not None else "first data stored"
    end = _t(p["end"]) if p["end"] is not None else "last data stored"
    return f"{start} – {end}"


def _badge(action: str) -> str:
    return f'<span class="badge {_e(action)}">{_e(action)}</span>'


def _header(r: dict) -> str:
    p, cat = r["period"], r["catalogue"]
    if p["data_first"] is None:
        data = "no traffic recorded in this period"
    else:
        data = f"{_t(p['data_first'])} – {_t(p['data_last'])}"
    days = ""
    if p["start"] is not None and p["end"] is not None:
        days = f" ({(p['end'] - p['start']) / 86400:.3g} days)"
    names = r["names"]
    naming = ", ".join(x for x in (f"host map {names['host_map']}" if names["host_map"] else "",
                                   "reverse DNS" if names["reverse_dns"] else "") if x) or "addresses only"
    snapshot = cat["snapshot"] + (f", prefixes updated {cat['fetched']}" if cat.get("fetched") else "")
    meta = [("Period", _period_text(r) + days), ("Traffic seen", data),
            ("Generated", r["generated"]), ("imflow version", r["imflow_version"]),
            ("Database", r["database"]), ("Service catalogue", f"snapshot {snapshot} · {cat['services']} services"),
            ("Counting", f"{p['resolution']} bins ({p['bin_seconds']} s), UTC"), ("Host names", naming)]
    return ('<header class="doc"><div class="kicker">imflow · IM, P2P and VoIP usage audit</div>'
            f'<h1>Network usage audit</h1><p class="period">{_e(_period_text(r))}</p><dl class="meta">'
            + "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in meta) + "</dl></header>")


def _policy_box(pol: dict) -> str:
    lines = [f"Default for named services: {_badge(pol['default'])}"]
    if pol["categories"]:
        lines.append("Categories: " + ", ".join(f"{_e(CATEGORY_NAMES.get(c, c))} {_badge(a)}"
                                                for c, a in pol["categories"].items()))
    if pol["services"]:
        lines.append("Services: " + ", ".join(f"<code>{_e(s)}</code> {_badge(a)}" for s, a in pol["services"].items()))
    blocked = pol["blocked_names"]
    lines.append(f"Blocked ({len(blocked)} services): " + (_e(", ".join(blocked)) if blocked else "nothing"))
    if pol["exceptions"]:
        lines.append("Exceptions: " + "; ".join(
            f"{_e(x['target'])} {_badge(x['action'])} for {_e(', '.join(x['hosts']))}"
            + (f" ({_e(x['note'])})" if x["note"] else "") for x in pol["exceptions"]))
    else:
        lines.append("Exceptions: none")
    return '<div class="box"><b>Policy</b>' + "".join(f"<p>{line}</p>" for line in lines) + "</div>"


def _summary(r: dict) -> str:
    t = r["totals"]
    named = sum(c["bytes"] for c in r["categories"] if c["id"] != "other")
    kpis = [("", human_bytes(t["bytes"]), f"all traffic · {t['flows']:,} flows"),
            ("", f"{_pct(named, t['bytes']):.1f} %", f"IM, P2P, VoIP and collaboration · {human_bytes(named)}"),
            ("", f"{t['internal_hosts']:,}", "internal hosts seen"),
            ("alert" if t["violations"] else "", f"{t['violations']:,}",
             (f"policy violations on {t['violating_hosts']} host{'s' if t['violating_hosts'] != 1 else ''}"
             f" · {human_bytes(t['violation_bytes'])}"))]
    return ('<section><h2>Summary</h2><div class="kpis">'
            + "".join(f'<div class="kpi {c}"><b>{_e(v)}</b><span>{_e(label)}</span></div>' for c, v, label in kpis)
            + "</div></section>")


def _charts(r: dict) -> str:
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


def _overview(r: dict) -> str:
    rows = []
    for c in r["categories"]:
        rows.append(f'<tr><td><i class="swatch" style="background:{CATEGORY_COLOURS.get(c["id"], "#555")}"></i>'
                    f'{_e(c["name"])}</td><td class="num">{len(c["services"])}</td>'
                    f'<td class="num">{c["internal_hosts"]:,}</td><td class="num">{_hb(c["bytes"])}</td>'
                    f'<td class="num">{c["bytes"]:,}</td><td class="num">{c["share_pct"]:.1f} %</td>'
                    f'<td class="num">{c["flows"]:,}</td><td>{_badge(c["policy"])}{_overrides(c)}</td>'
                    f'<td>{_yes(c["violation"])}</td></tr>')
    t = r["totals"]
    foot = (f'<tfoot><tr><td>All traffic</td><td></td><td class="num">{t["internal_hosts"]:,}</td>'
            f'<td class="num">{_hb(t["bytes"])}</td><td class="num">{t["bytes"]:,}</td>'
            f'<td class="num">{100.0 if t["bytes"] else 0:.1f} %</td><td class="num">{t["flows"]:,}</td>'
            f'<td></td><td></td></tr></tfoot>')
    return ('<section><h2>Categories</h2><table><thead><tr><th>Category</th><th class="num">Services seen</th>'
            '<th class="num">Hosts</th><th class="num">Traffic</th><th class="num">Bytes</th><th class="num">Share</th>'
            '<th class="num">Flows</th><th>Policy</th><th>Violations</th></tr></thead><tbody>'
            + "".join(rows) + "</tbody>" + foot + "</table></section>")


def _overrides(c: dict) -> str:
    return "".join(f' <span class="nowrap"><code>{_e(sid)}</code> {_badge(a)}</span>'
                   for sid, a in c["policy_overrides"].items())


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _host_table(r: dict) -> str:
    cats = [c["id"] for c in r["categories"] if c["bytes"]]
    hosts = r["hosts"]
    if not hosts:
        return ""
    head = "".join(f'<th class="num">{_e(CATEGORY_SHORT.get(c, c))}</th>' for c in cats)
    rows = []
    for h in hosts:
        cells = "".join(f'<td class="num">{_hb(h["categories"][c]) if c in h["categories"] else ""}</td>'
                        for c in cats)
        viol = ", ".join(h["violations"])
        rows.append(f'<tr class="{"viol" if viol else ""}"><td><code>{_e(h["host"])}</code></td>'
                    f'<td>{_e(h["name"])}</td>'
                    f'<td>{_e(h["owner"])}</td>{cells}<td class="num">{_hb(h["bytes"])}</td>'
                    f'<td>{_e(", ".join(x for x in h["services"] if x != "other"))}</td>'
                    f'<td>{f"<span class=yes>{_e(viol)}</span>" if viol else _yes(False)}</td></tr>')
    return ('<section><h2>Hosts</h2><p class="sub">Every internal host seen, by traffic per category; '
            'the heaviest users of IM, P2P, VoIP and collaboration first.</p>'
            f'<table><thead><tr><th>Host</th><th>Name</th><th>Owner</th>{head}<th class="num">Total</th>'
            '<th>Services</th><th>Violations</th></tr></thead><tbody>' + "".join(rows) + "</tbody></table></section>")


def _yes(flag: bool) -> str:
    return '<span class="yes">yes</span>' if flag else '<span class="no">no</span>'


def _violations(r: dict) -> str:
    v = r["violations"]
    if not v:
        return '<section><h2>Policy violations</h2><p>No violations were recorded in this period.</p></section>'
    rows = "".join(
        f'<tr class="viol"><td><code>{_e(x["host"])}</code></td><td>{_e(x["name"])}</td><td>{_e(x["owner"])}</td>'
        f'<td>{_e(x["service_name"])}</td><td class="num">{_hb(x["bytes"])}</td>'
        f'<td class="num">{x["flows"]:,}</td><td class="time">{_t(x["first_seen"])}</td>'
        f'<td class="time">{_t(x["last_seen"])}</td><td>{_badge(x["policy"])}</td></tr>'
        for x in sorted(v, key=lambda x: (-x["bytes"], x["host"], x["service"])))
    return ('<section><h2>Policy violations</h2><p class="sub">Traffic of a blocked service from an internal '
            'host, as recorded by the collector; "policy now" is today\'s configuration.</p>'
            '<table><thead><tr><th>Host</th><th>Name</th><th>Owner</th><th>Service</th><th class="num">Traffic</th>'
            '<th class="num">Flows</th><th>First seen</th><th>Last seen</th><th>Policy now</th></tr></thead><tbody>'
            + rows + "</tbody></table></section>")


def _category(c: dict, limit: int | None) -> str:
    out = [(f'<section class="category" id="cat-{_e(c["id"])}"><h2>{_e(c["name"])}</h2>'
           f'<p class="sub">{_hb(c["bytes"])} · {c["share_pct"]:.1f} % of all traffic · '
           f'{c["flows"]:,} flows · {_plural(c["internal_hosts"], "internal host")} · '
           f'{_plural(len(c["services"]), "service")} · policy {_badge(c["policy"])}{_overrides(c)}</p>')]
    for s in c["services"]:
        out.append(_service(s, limit))
    return "".join(out) + "</section>"


def _service(s: dict, limit: int | None) -> str:
    exc = "; ".join(f"{x['action']} for {', '.join(x['hosts'])}" + (f" ({x['note']})" if x["note"] else "")
                    for x in s["exceptions"])
    sub = (f'Policy {_badge(s["policy"])}' + (f" · exceptions: {_e(exc)}" if exc else "")
           + f' · {_hb(s["bytes"])} ({s["bytes"]:,} bytes, {s["share_pct"]:.2f} % of all traffic)'
           f' · {s["flows"]:,} flows · {_t(s["first_seen"])} – {_t(s["last_seen"])}'
           + (' · <span class="yes">violations recorded</span>' if s["violation"] else ""))
    hosts = s["hosts"] if limit is None else s["hosts"][:limit]
    rows = [f'<tr class="{"viol" if h["violation"] else ""}"><td><code>{_e(h["host"])}</code></td>'
            f'<td>{_e(h["name"])}</td><td>{_e(h["owner"])}</td>'
            f'<td class="num" title="{h["bytes"]:,} bytes">{_hb(h["bytes"])}</td>'
            f'<td class="num">{h["share_of_service_pct"]:.1f} %</td><td class="num">{h["flows"]:,}</td>'
            f'<td class="time">{_t(h["first_seen"])}</td><td class="time">{_t(h["last_seen"])}</td>'
            f'<td>{_badge(h["policy"])}</td><td>{_yes(h["violation"])}</td></tr>' for h in hosts]
    rest = s["hosts"][len(hosts):]
    if rest:
        nbytes = sum(h["bytes"] for h in rest)
        rows.append(f'<tr class="nohost"><td colspan="3">{len(rest):,} more hosts (all of them are in the CSV and '
                    f'JSON reports)</td><td class="num">{_hb(nbytes)}</td>'
                    f'<td class="num">{_pct(nbytes, s["bytes"]):.1f} %</td>'
                    f'<td class="num">{sum(h["flows"] for h in rest):,}</td><td colspan="4"></td></tr>')
    n = s["no_internal_host"]
    if n["flows"] or n["bytes"]:
        rows.append(f'<tr class="nohost"><td colspan="3">no internal host (outside to outside)</td>'
                    f'<td class="num">{_hb(n["bytes"])}</td><td class="num">{_pct(n["bytes"], s["bytes"]):.1f} %</td>'
                    f'<td class="num">{n["flows"]:,}</td><td class="time">{_t(n["first_seen"])}</td>'
                    f'<td class="time">{_t(n["last_seen"])}</td><td colspan="2"></td></tr>')
    return (f'<h3>{_e(s["name"])} <code>{_e(s["id"])}</code></h3><p class="sub">{sub}</p>'
            '<table><thead><tr><th>Host</th><th>Name</th><th>Owner</th><th class="num">Traffic</th>'
            '<th class="num">% of service</th><th class="num">Flows</th><th>First seen</th><th>Last seen</th>'
            '<th>Policy</th><th>Violation</th></tr></thead><tbody>' + "".join(rows) + "</tbody></table>")
