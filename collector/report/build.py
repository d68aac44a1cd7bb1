"""The usage audit's data: `build` reads the rollups through the store's reader (on SQLite in one
read transaction, so every total in the report comes from the same snapshot, even while the
collector writes) and returns plain,
JSON-ready data that the renderers (`formats`, `html`) only format. Like `imflow top`, it reads
the finest rollup whose retention still covers the start of the period, and a bin counts when
it overlaps the period.

The top peer networks come from the flow audit log (`reader.flows(..., by=("peer-net",))`,
docs/audit.md): the rollups keep no peer. Where the log holds no flows of the period (off, or
a database from before it), the report says so instead.
"""

from __future__ import annotations

import datetime as dt
import os

from collector import __version__
from collector.classify import detection
from collector.policy.model import parse_policy
from collector.store import schema

FORMAT_VERSION = 1
CATEGORY_NAMES = {"im": "Instant messaging", "p2p": "Peer-to-peer file sharing", "voip": "Voice over IP",
                  "collab": "Collaboration and meetings", "other": "Other (unclassified)"}
NO_PEERS_NOTE = ("Peer networks are not in this report: the flow audit log holds no flows of this period "
                 "(it keeps single flows of the watched categories, [audit] in the configuration, for a "
                 "week by default; the rollups keep the internal host of each flow, not its peer).")
PEERS_NOTE = ("Top peer networks (IPv4 /24, IPv6 /48) come from the flow audit log: single flows of the "
              "watched categories ([audit] categories), kept for [audit] max_age (a week by default), so they "
              "may not reach back to the start of the period; their shares are of the traffic in the log.")
PEER_NETWORKS = 20  # rows of the top peer networks
NAMES_NOTE = ("Host names and owners are looked up when the report is generated (host map{dns}); "
              "an address that changed hands during the period (DHCP) shows today's name.")


def build(db_path: str, start: float | None, end: float | None, catalogue, policy, names=None,
          now: float | None = None, names_deadline: float = 3.0, install=None) -> dict:
    """The report for [start, end) as plain data: what render_json writes.

    `start`/`end` None: from the first / up to the last data stored. `policy` None means the
    default policy (monitor everything). `names` is a HostNames or None (addresses only);
    looking names up takes at most `names_deadline` seconds. `install`: what the configuration
    adds to the catalogue (`wiring.build_install`: dnstap, ASN snapshot, classify.app_ids), for
    the note on what cannot be seen; None: the catalogue alone. Raises StoreError (missing
    database, newer schema, I/O).

    Violations are judged by `policy` (the one in force when the report is made) from the
    stored (service, host) totals; `recorded_violation` is the collector's verdict at ingest.
    """
    if policy is None:
        policy = parse_policy(None, catalogue)
    now = dt.datetime.now(dt.UTC).timestamp() if now is None else now
    if isinstance(db_path, str):
        from collector.store.reader import SqliteReader

        db_path = SqliteReader(db_path)
    reader = db_path  # a Reader (collector.store.reader.open_reader), or a SQLite file's path
    res, width, rows, by_day = reader.report_rows(start, end, now)
    daily = [{"day": iso(d)[:10], "start": d, "bytes": b} for d, b in sorted(by_day.items())]

    hosts = sorted({r[2] for r in rows if r[2]})
    looked_up = names.lookup_many(hosts, deadline=names_deadline) if names is not None and hosts else {}
    total = {k: sum(r[3 + i] for r in rows) for i, k in enumerate(schema.COUNTERS)}
    categories = _categories(rows, catalogue, policy, looked_up, total["bytes"])
    violations = [dict(h, category=c["id"], service=s["id"], service_name=s["name"])
                  for c in categories for s in c["services"] for h in s["hosts"] if h["violation"]]
    per_host = _hosts(categories)
    peer_networks = _peer_networks(reader, start, end)
    methods = _methods(reader, start, end)
    unseen = detection.exporter_only(catalogue.services[1:], install or detection.Install())
    data_first = min((r[6] for r in rows), default=None)
    data_last = max((r[7] for r in rows), default=None)
    return {
        "report": "imflow usage audit",
        "format_version": FORMAT_VERSION,
        "imflow_version": __version__,
        "generated": iso(now),
        "database": os.path.abspath(reader.path) if hasattr(reader, "path") else reader.where,
        "period": {"start": start, "end": end, "start_utc": iso(start) if start is not None else None,
                   "end_utc": iso(end) if end is not None else None,
                   "data_first": data_first, "data_last": data_last,
                   "resolution": res, "bin_seconds": width},
        "catalogue": {"snapshot": catalogue.snapshot, "fetched": getattr(catalogue, "fetched", None),
                      "services": len(catalogue.services),
                      "needs_app_ids": [s.id for s in unseen]},
        "policy": _policy_summary(policy, catalogue),
        "names": {"host_map": getattr(names, "map_path", None) if names else None,
                  "reverse_dns": bool(getattr(names, "reverse_dns", False)) if names else False},
        "totals": {**total, "internal_hosts": len(hosts),
                   "violations": len(violations),
                   "violating_hosts": len({v["host"] for v in violations}),
                   "violation_bytes": sum(v["bytes"] for v in violations),
                   "recorded_violations": sum(h["recorded_violation"] for c in categories
                                              for s in c["services"] for h in s["hosts"])},
        "categories": categories,
        "hosts": per_host,
        "violations": violations,
        "daily": daily,
        "peer_networks": peer_networks,
        "methods": methods,
        "notes": [PEERS_NOTE if peer_networks else NO_PEERS_NOTE,
                  (f"Traffic is counted in {res} bins ({width} s); a bin that overlaps the period "
                  f"counts whole, so the edges may include up to one bin of traffic outside it."),
                  ("Bytes and packets are as exported, multiplied by the exporter's sampling rate; "
                  "hosts are internal addresses (the inside end of each flow). \"No internal host\" "
                  "is traffic between two outside addresses seen by an exporter."),
                  ("Violations are judged by the policy in force when the report was generated (the "
                  "configuration of today), from the traffic stored per service and internal host, so "
                  "a policy written after the traffic finds it. \"recorded_violation\" (CSV: "
                  "violation_at_ingest) is what the collector recorded with the policy in force when "
                  "the traffic was seen."),
                  (f"{len(unseen)} services cannot be seen here by ports, addresses, ASNs or DNS, only when "
                   "the exporter sends application ids or server names (NBAR, AVC, IPFIX applicationId, "
                   "TLS SNI); without them their traffic counts as other: "
                   + ", ".join(s.name for s in unseen) + "." if unseen else
                   "Every service of the catalogue can be seen here by its ports, addresses, ASNs or DNS."),
                  NAMES_NOTE.format(dns=", reverse DNS" if names is not None and names.reverse_dns else "")],
    }


def _methods(reader, start, end) -> list[dict]:
    """Traffic per service and how it was classified (port, prefix, asn, dns, name, app-id; none for
    other), biggest first; none when the store cannot say (a database from before version 3, a
    backend without method rollups)."""
    from collector.store import StoreError

    try:
        rows = reader.top(start, end, by=("service", "method"), limit=None)
    except (StoreError, AttributeError, ValueError):
        return []
    return [{"service": r["service"], "method": r["method"], "bytes": r["bytes"], "flows": r["flows"],
             "share_pct": r["share_pct"]} for r in rows]


def _peer_networks(reader, start, end) -> list[dict]:
    """The top peer networks of the period from the audit log; none when it cannot say (a
    database from before the log, a backend without one)."""
    from collector.store import StoreError

    try:
        rows = reader.flows(start, end, by=("peer-net",), limit=PEER_NETWORKS)
    except (StoreError, AttributeError, ValueError):
        return []
    return [{"network": r["peer-net"], "bytes": r["bytes"], "packets": r["packets"], "flows": r["flows"],
             "internal_hosts": r["hosts"], "share_pct": r["share_pct"]} for r in rows]


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
                "violation": False, "recorded_violation": False, "hosts": [],
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
        action = _host_action(policy, sid, host)
        svc["hosts"].append({"host": host, "name": name, "owner": owner, "bytes": nbytes, "packets": packets,
                             "flows": flows, "first_seen": first, "last_seen": last,
                             "policy": action, "violation": action == "block",
                             "recorded_violation": bool(violation)})
        svc["violation"] = svc["violation"] or action == "block"
        svc["recorded_violation"] = svc["recorded_violation"] or bool(violation)
    by_category: dict[str, list[dict]] = {}
    for svc in services.values():
        svc["share_pct"] = pct(svc["bytes"], all_bytes)
        svc["internal_hosts"] = len(svc["hosts"])
        svc["hosts"].sort(key=lambda h: (-h["bytes"], h["host"]))
        for h in svc["hosts"]:
            h["share_of_service_pct"] = pct(h["bytes"], svc["bytes"])
        by_category.setdefault(svc.pop("category"), []).append(svc)
    out = []
    order = list(catalogue.categories) + sorted(set(by_category) - set(catalogue.categories))
    for cid in order:
        svcs = sorted(by_category.get(cid, []), key=lambda s: (-s["bytes"], s["id"]))
        totals = {k: sum(s[k] for s in svcs) for k in schema.COUNTERS}
        out.append({"id": cid, "name": CATEGORY_NAMES.get(cid, cid), **totals,
                    "share_pct": pct(totals["bytes"], all_bytes),
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


def pct(part: int, whole: int) -> float:
    return 100.0 * part / whole if whole else 0.0


def iso(ts: float) -> str:
    """The report's time format: "2026-01-01 10:00:00 UTC"."""
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")

