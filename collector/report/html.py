"""The usage audit as one self-contained HTML page: inline CSS and SVG charts (`charts`), no
scripts, no external resources; it prints on A4 with a page per category."""

from __future__ import annotations

from collector.report.build import CATEGORY_NAMES, iso, pct
from collector.report.charts import CATEGORY_COLOURS, traffic
from collector.report.tables import human_bytes
from collector.text import html_text

CATEGORY_SHORT = {"im": "IM", "p2p": "P2P", "voip": "VoIP", "collab": "Collab.", "other": "Other"}

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
             _header(r), _policy_box(r["policy"]), _summary(r), traffic(r), _overview(r), _violations(r),
             _host_table(r), _peer_table(r), _method_table(r)]
    for c in r["categories"]:
        if c["services"]:
            parts.append(_category(c, other_hosts if c["id"] == "other" else None))
    parts.append('<section><h2>Notes and limitations</h2><ol class="notes">'
                 + "".join(f"<li>{_e(n)}</li>" for n in r["notes"]) + "</ol></section>")
    parts.append(f'<footer>imflow {_e(r["imflow_version"])} · usage audit format {r["format_version"]} · '
                 f'generated {_e(r["generated"])} from {_e(r["database"])}</footer></main></body></html>\n')
    return "".join(parts)


def _hb(n: int) -> str:
    return html_text(human_bytes(n)).replace(" ", "\u00a0")  # "1.2 MB" never wraps


def _e(value) -> str:
    return html_text(value)


def _t(ts) -> str:
    return "" if ts is None else iso(ts)[:16] + " UTC"


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
            ("", f"{pct(named, t['bytes']):.1f} %", f"IM, P2P, VoIP and collaboration · {human_bytes(named)}"),
            ("", f"{t['internal_hosts']:,}", "internal hosts seen"),
            ("alert" if t["violations"] else "", f"{t['violations']:,}",
             (f"policy violations on {t['violating_hosts']} host{'s' if t['violating_hosts'] != 1 else ''}"
             f" · {human_bytes(t['violation_bytes'])}"))]
    return ('<section><h2>Summary</h2><div class="kpis">'
            + "".join(f'<div class="kpi {c}"><b>{_e(v)}</b><span>{_e(label)}</span></div>' for c, v, label in kpis)
            + "</div></section>")


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


def _peer_table(r: dict) -> str:
    nets = r.get("peer_networks") or []
    if not nets:
        return ""
    rows = "".join(f'<tr><td><code>{_e(n["network"])}</code></td><td class="num">{_hb(n["bytes"])}</td>'
                   f'<td class="num">{n["flows"]:,}</td><td class="num">{n["internal_hosts"]:,}</td>'
                   f'<td class="num">{n["share_pct"]:.1f}%</td></tr>' for n in nets)
    return ('<section><h2>Top peer networks</h2><p class="sub">The outside networks (IPv4 /24, IPv6 /48) the '
            'watched traffic went to or came from, from the flow audit log; see the notes.</p>'
            '<table><thead><tr><th>Network</th><th class="num">Traffic</th><th class="num">Flows</th>'
            '<th class="num">Internal hosts</th><th class="num">Share</th></tr></thead><tbody>'
            + rows + "</tbody></table></section>")


def _method_table(r: dict) -> str:
    methods = r.get("methods") or []
    if not methods:
        return ""
    rows = "".join(f'<tr><td>{_e(m["service"])}</td><td>{_e(m["method"])}</td><td class="num">{_hb(m["bytes"])}</td>'
                   f'<td class="num">{m["flows"]:,}</td><td class="num">{m["share_pct"]:.1f}%</td></tr>'
                   for m in methods)
    return ('<section><h2>How traffic was recognised</h2><p class="sub">Per service, the method that classified '
            'its flows: port, prefix, asn (the service\'s own network), dns (addresses its names resolved to), '
            'name (the server name the exporter sent), app-id (the exporter\'s application id); none for other.</p>'
            '<table><thead><tr><th>Service</th><th>Method</th><th class="num">Traffic</th><th class="num">Flows</th>'
            '<th class="num">Share</th></tr></thead><tbody>' + rows + "</tbody></table></section>")


def _yes(flag: bool) -> str:
    return '<span class="yes">yes</span>' if flag else '<span class="no">no</span>'


def _violations(r: dict) -> str:
    v = r["violations"]
    if not v:
        return '<section><h2>Policy violations</h2><p>No violations in this period under the current policy.</p></section>'
    rows = "".join(
        f'<tr class="viol"><td><code>{_e(x["host"])}</code></td><td>{_e(x["name"])}</td><td>{_e(x["owner"])}</td>'
        f'<td>{_e(x["service_name"])}</td><td class="num">{_hb(x["bytes"])}</td>'
        f'<td class="num">{x["flows"]:,}</td><td class="time">{_t(x["first_seen"])}</td>'
        f'<td class="time">{_t(x["last_seen"])}</td><td>{_badge(x["policy"])}</td></tr>'
        for x in sorted(v, key=lambda x: (-x["bytes"], x["host"], x["service"])))
    return ('<section><h2>Policy violations</h2><p class="sub">Traffic of a blocked service from an internal '
            'host, judged by the policy in force when this report was generated (today\'s configuration).</p>'
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
           + (' · <span class="yes">violations under the current policy</span>' if s["violation"] else ""))
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
                    f'<td class="num">{pct(nbytes, s["bytes"]):.1f} %</td>'
                    f'<td class="num">{sum(h["flows"] for h in rest):,}</td><td colspan="4"></td></tr>')
    n = s["no_internal_host"]
    if n["flows"] or n["bytes"]:
        rows.append(f'<tr class="nohost"><td colspan="3">no internal host (outside to outside)</td>'
                    f'<td class="num">{_hb(n["bytes"])}</td><td class="num">{pct(n["bytes"], s["bytes"]):.1f} %</td>'
                    f'<td class="num">{n["flows"]:,}</td><td class="time">{_t(n["first_seen"])}</td>'
                    f'<td class="time">{_t(n["last_seen"])}</td><td colspan="2"></td></tr>')
    return (f'<h3>{_e(s["name"])} <code>{_e(s["id"])}</code></h3><p class="sub">{sub}</p>'
            '<table><thead><tr><th>Host</th><th>Name</th><th>Owner</th><th class="num">Traffic</th>'
            '<th class="num">% of service</th><th class="num">Flows</th><th>First seen</th><th>Last seen</th>'
            '<th>Policy</th><th>Violation</th></tr></thead><tbody>' + "".join(rows) + "</tbody></table>")
