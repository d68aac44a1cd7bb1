"""The pages as data: each builder reads through the site's reader (the functions `imflow top`
and `imflow violations` use, with the same arguments) and returns a `Page` of charts and
`Table`s. `render` turns a Page into HTML; the same Table is the page's CSV and JSON download,
so a download holds exactly the rows the page shows."""

from __future__ import annotations

import asyncio
import ipaddress
import math
from dataclasses import dataclass, field
from urllib.parse import quote

from collector.report.build import CATEGORY_NAMES
from collector.report.tables import human_bytes
from collector.web import charts
from collector.web.select import Selection
from collector.web.site import Site

# the time bucket of a chart, by the span it covers: at most ~400 bars
BUCKETS = (("minute", 60, 6 * 3600), ("hour", 3600, 16 * 86400), ("day", 86400, math.inf))
MAX_SERIES = 7  # stacked series per chart; the rest is one grey "other services"
OVERVIEW_ROWS = 10


@dataclass
class Column:
    key: str
    label: str
    kind: str = "text"  # text, host, service, category, bytes, int, pct, time, policy, flag, rate


@dataclass
class Table:
    id: str
    caption: str
    columns: list[Column]
    rows: list[dict]
    note: str = ""
    total: bool = False  # a total line for bytes/packets/flows
    more: tuple[str, str] | None = None  # (path, label): the page with every row


@dataclass
class Page:
    path: str
    title: str
    intro: str = ""
    kpis: list[tuple[str, str]] = field(default_factory=list)
    blocks: list = field(default_factory=list)  # Table, or ("chart", caption, svg, legend html)

    def table(self, tid: str) -> Table | None:
        return next((b for b in self.blocks if isinstance(b, Table) and b.id == tid), None)


COUNTER_COLUMNS = [Column("bytes", "Bytes", "bytes"), Column("packets", "Packets", "int"),
                   Column("flows", "Flows", "int"), Column("share_pct", "Share", "pct")]


def category_name(cid: str) -> str:
    return CATEGORY_NAMES.get(cid, cid)


def span(site: Site, sel: Selection, stored: tuple[int, int] | None) -> tuple[float, float] | None:
    """The period as numbers: the open ends filled from what is stored (None: nothing stored)."""
    if stored is None and sel.start is None:
        return None
    start = sel.start if sel.start is not None else stored[0]
    end = sel.end if sel.end is not None else site.clock()
    return start, max(end, start + 60)


async def trend(site: Site, sel: Selection, deadline: float, key: str | None, sums: dict | None = None, **filters):
    """Bytes per time bucket (and per `key`): (slots, width, {(slot, key): bytes}, keys by bytes).
    `sums`, when given, receives the period's [bytes, packets, flows] per key."""
    stored = await site.run(deadline, site.reader.time_range)
    period = span(site, sel, stored)
    if period is None:
        return [], 60, {}, []
    start, end = period
    rows, width = None, 60
    for name, width, longest in BUCKETS:
        if end - start > longest and name != "day":
            continue
        try:
            rows = await site.run(deadline, site.reader.top, sel.start, sel.end, by=(name, key) if key else (name,),
                                  limit=None, **filters)
            break
        except ValueError:  # the range is answered from a coarser rollup: a coarser bucket
            continue
    if rows is None:
        return [], 60, {}, []
    bucket = {60: "minute", 3600: "hour", 86400: "day"}[width]
    values: dict[tuple[int, str], int] = {}
    totals: dict[str, int] = {}
    for r in rows:
        k = r[key] if key else ""
        values[(r[bucket], k)] = values.get((r[bucket], k), 0) + r["bytes"]
        totals[k] = totals.get(k, 0) + r["bytes"]
    if sums is not None:  # the period's totals per key, from the same rows
        for r in rows:
            k = r[key] if key else ""
            sums[k] = [a + r[c] for a, c in zip(sums.get(k, (0, 0, 0)), ("bytes", "packets", "flows"))]
    first = int(start // width * width)
    if stored is not None:
        last = int(min(end, stored[1] + 60) // width * width)
    else:
        last = int(end // width * width)
    slots = list(range(first, max(first, last) + 1, width))[-2000:]
    return slots, width, values, sorted(totals, key=lambda k: (-totals[k], k))


def _stack(keys: list[str], values: dict, by: str, label) -> tuple[list, dict]:
    """At most MAX_SERIES series; the rest summed into one."""
    shown, rest = keys[:MAX_SERIES], keys[MAX_SERIES:]
    series = [(k, label(k), charts.colour_of(k, i, by)) for i, k in enumerate(shown)]
    if rest:
        merged = dict(values)
        for (t, k), v in values.items():
            if k in rest:
                merged[(t, "\0rest")] = merged.get((t, "\0rest"), 0) + v
        values = merged
        series.append(("\0rest", f"{len(rest)} more", charts.REST))
    return series, values


def trend_chart(caption: str, slots, width, values, keys, by: str, label=str) -> tuple:
    series, values = _stack(keys, values, by, label)
    svg = charts.stacked(slots, width, series, values, caption)
    unit = {60: "minute", 3600: "hour", 86400: "day"}[width]
    return ("chart", f"{caption}, per {unit} (UTC)", svg, charts.legend(series) if len(series) > 1 else "")


def _judge(site: Site, rows: list[dict]) -> list[dict]:
    for r in rows:
        r["policy"] = site.policy.action_of_row(r["service"], r["host"])
        r["violation_now"] = r["policy"] == "block"
    return rows


def _service_name(site: Site, sid: str) -> str:
    known = site.catalogue.by_id.get(sid)
    return known.name if known else sid


# --- the pages ---------------------------------------------------------------------------------

async def overview(site: Site, sel: Selection, deadline: float) -> Page:
    f = sel.filters()
    # Independent questions, asked together (up to web.max_queries at once). Each full scan of
    # the rollup counts on a big store: the category totals come from the chart's rows, the
    # host count from the host ranking, the violations from the services a policy can block.
    sums: dict[str, list[int]] = {}
    services, all_hosts, violations, (slots, width, values, keys) = await asyncio.gather(
        site.run(deadline, site.reader.top, sel.start, sel.end, by=("category", "service"), limit=OVERVIEW_ROWS, **f),
        site.run(deadline, site.reader.top, sel.start, sel.end, by=("host",), limit=None, **f),
        _violations(site, sel, deadline),
        trend(site, sel, deadline, "category", sums=sums, **f))
    total = sum(v[0] for v in sums.values())
    cats = sorted(({"category": k, "bytes": b, "packets": p, "flows": n, "share_pct": 100.0 * b / total if total else 0.0}
                   for k, (b, p, n) in sums.items()), key=lambda r: (-r["bytes"], r["category"]))
    hosts = all_hosts[:OVERVIEW_ROWS]
    named = sum(r["bytes"] for r in cats if r["category"] != "other")
    page = Page("/", "Overview", f"Traffic of {sel.describe()}.")
    page.kpis = [(human_bytes(total), f"all traffic · {sum(r['flows'] for r in cats):,} flows"),
                 (f"{100.0 * named / total if total else 0:.1f} %", "IM, P2P, VoIP and collaboration"),
                 (f"{sum(1 for r in all_hosts if r['host']):,}", "internal hosts"),
                 (f"{len(violations):,}", "policy violations (host, service)")]
    order = [c for c in site.categories if c in keys] + [k for k in keys if k not in site.categories]
    page.blocks.append(trend_chart("Bytes by category", slots, width, values, order, "category", category_name))
    page.blocks.append(Table("categories", "Traffic by category",
                             [Column("category", "Category", "category"), *COUNTER_COLUMNS], cats, total=True))
    named_services = [r for r in services if r["category"] != "other"]
    if named_services:
        page.blocks.append(("chart", "Bytes by service (top services, unclassified traffic left out)",
                            charts.bars([(_service_name(site, r["service"]), r["bytes"],
                                          charts.colour_of(r["category"], 0, "category")) for r in named_services],
                                        "Bytes by service"), ""))
    page.blocks.append(Table("services", f"Top {OVERVIEW_ROWS} services",
                             [Column("service", "Service", "service"), Column("category", "Category", "category"),
                              *COUNTER_COLUMNS], services, more=("/services", "all services")))
    page.blocks.append(Table("hosts", f"Top {OVERVIEW_ROWS} internal hosts",
                             [Column("host", "Host", "host"), *COUNTER_COLUMNS], hosts,
                             more=("/hosts", "all hosts")))
    return page


async def hosts(site: Site, sel: Selection, deadline: float) -> Page:
    rows = await site.run(deadline, site.reader.top, sel.start, sel.end, by=("host",),
                          limit=site.limits.max_rows, **sel.filters())
    page = Page("/hosts", "Hosts", f"Internal hosts by bytes, {sel.describe()}; \"(no internal host)\" is "
                "traffic between two outside addresses.")
    page.blocks.append(Table("hosts", "Internal hosts", [Column("host", "Host", "host"), *COUNTER_COLUMNS], rows,
                             note=_limited(site, rows), total=True))
    return page


async def services(site: Site, sel: Selection, deadline: float) -> Page:
    rows = await site.run(deadline, site.reader.top, sel.start, sel.end, by=("category", "service"),
                          limit=site.limits.max_rows, **sel.filters())
    page = Page("/services", "Services", f"Services by bytes, {sel.describe()}.")
    page.blocks.append(Table("services", "Services",
                             [Column("service", "Service", "service"), Column("category", "Category", "category"),
                              *COUNTER_COLUMNS], rows, note=_limited(site, rows), total=True))
    return page


def _limited(site: Site, rows: list) -> str:
    return (f"the biggest {site.limits.max_rows} rows (web.max_rows); downloads hold the same"
            if len(rows) >= site.limits.max_rows else "")


async def host(site: Site, sel: Selection, deadline: float, addr: str) -> Page:
    f = sel.filters("service", "category")
    usage, (slots, width, values, keys) = await asyncio.gather(
        site.run(deadline, site.reader.usage, sel.start, sel.end, host=[addr], **f),
        trend(site, sel, deadline, "service", host=[addr], **f))
    usage = _judge(site, usage)
    page = Page("/host/" + quote(addr, safe=""), f"Host {addr}", f"What {addr} used, {sel.describe()}.")
    viol = [r for r in usage if r["violation_now"]]
    page.kpis = [(human_bytes(sum(r["bytes"] for r in usage)), "all traffic"),
                 (f"{sum(r['flows'] for r in usage):,}", "flows"), (f"{len(usage):,}", "services"),
                 (f"{len(viol):,}", "violations")]
    page.blocks.append(trend_chart(f"Bytes of {addr} by service", slots, width, values, keys, "service",
                                   lambda s: _service_name(site, s)))
    cols = [Column("service", "Service", "service"), Column("category", "Category", "category"),
            Column("bytes", "Bytes", "bytes"), Column("packets", "Packets", "int"), Column("flows", "Flows", "int"),
            Column("first_seen", "First seen", "time"), Column("last_seen", "Last seen", "time"),
            Column("policy", "Policy now", "policy"), Column("violation", "Violation at ingest", "flag")]
    page.blocks.append(Table("services", "Services used", cols, usage, total=True))
    page.blocks.append(Table("violations", "Violations (services the policy blocks now)", cols, viol))
    flows = getattr(site.reader, "flows", None)
    if flows is not None:
        page.blocks.append(await _flows(site, sel, deadline, flows, addr))
    return page


FLOW_COLUMNS = [Column("start", "Start", "time"), Column("end", "End", "time"), Column("peer", "Peer"),
                Column("host_port", "Host port", "int0"), Column("peer_port", "Peer port", "int0"),
                Column("proto", "Proto"), Column("service", "Service", "service"), Column("bytes", "Bytes", "bytes"),
                Column("packets", "Packets", "int"), Column("direction", "Direction"), Column("exporter", "Exporter")]


RECENT = 100  # flows on a host page
SEARCH_STEPS = 24  # audit-log queries at most to find them


async def recent_flows(site: Site, sel: Selection, deadline: float, flows, addr: str, n: int = RECENT) -> list[dict]:
    """The host's `n` latest flows of the period (those ending last), newest first.

    The audit log's query (`reader.flows`, as `imflow flows`) lists flows oldest first, at most
    `limit`: so look for the longest window before the period's end that holds at most `n`
    flows, growing it fourfold and then halving the gap (at most SEARCH_STEPS queries of n+1
    rows each). Every flow that ended in the window is in it, so the result is exactly the
    latest ones (fewer than `n` when the search stops at the step limit)."""
    end = sel.end if sel.end is not None else site.clock()
    first = sel.start if sel.start is not None else end - 10 * 365 * 86400  # "all": ten years at most
    f = sel.filters("service", "category", "exporter")
    best: list[dict] = []
    lo, hi, width = 0.0, None, 3600.0
    for _ in range(SEARCH_STEPS):
        start = max(first, end - width)
        rows = await site.run(deadline, flows, start, sel.end, host=[addr], sort="start", limit=n + 1, **f)
        if len(rows) <= n:
            lo, best = width, rows
            if start <= first:
                break  # the whole period holds at most n
            width = width * 4 if hi is None else (width + hi) / 2
        else:
            hi = width
            width = (lo + hi) / 2
        if hi is not None and hi - lo < 0.001:
            break
    return sorted(best, key=lambda r: (-r["end"], -r["start"]))


async def _flows(site, sel, deadline, flows, addr) -> Table:
    """The host's latest flows from the audit log, when the store keeps one."""
    from collector.store import StoreError

    note = (f"the latest {RECENT} flows of this host in the period at most, newest first, from the audit log "
            "(kept for the watched categories only, for its own retention)")
    try:
        rows = await recent_flows(site, sel, deadline, flows, addr)
    except StoreError:
        rows, note = [], "this store keeps no audit log of single flows ([audit] in the configuration)"
    return Table("flows", "Recent flows (audit log)", FLOW_COLUMNS, rows,
                 note=note if rows else note + ": none for this host and period")


async def service(site: Site, sel: Selection, deadline: float, sid: str) -> Page:
    f = sel.filters("host", "exporter")
    rows, (slots, width, values, _) = await asyncio.gather(
        site.run(deadline, site.reader.top, sel.start, sel.end, by=("host",), service=[sid],
                 limit=site.limits.max_rows, **f),
        trend(site, sel, deadline, None, service=[sid], **f))
    known = site.catalogue.by_id.get(sid)
    name = known.name if known else sid
    page = Page("/service/" + quote(sid, safe=""), f"Service {name}",
                f"Who used {name}" + (f" ({category_name(known.category)})" if known else "")
                + f", {sel.describe()}" + (f"; policy now: {site.policy.base_action(sid, known.category)}"
                                           if known and sid in site.policy.service_categories else "") + ".")
    page.kpis = [(human_bytes(sum(r["bytes"] for r in rows)), "all traffic"),
                 (f"{len([r for r in rows if r['host']]):,}", "internal hosts")]
    colour = charts.colour_of(known.category if known else "other", 0, "category")
    series_chart = charts.stacked(slots, width, [("", name, colour)], values, f"Bytes of {name}")
    unit = {60: "minute", 3600: "hour", 86400: "day"}[width]
    page.blocks.append(("chart", f"Bytes of {name}, per {unit} (UTC)", series_chart, ""))
    page.blocks.append(Table("hosts", "Hosts", [Column("host", "Host", "host"), *COUNTER_COLUMNS], rows,
                             note=_limited(site, rows), total=True))
    return page


def blockable(site: Site) -> list[str]:
    """The services the policy blocks for some host (by default or by an exception): the only
    ones a violation can be of."""
    pol = site.policy
    return [sid for sid, cat in pol.service_categories.items()
            if pol.base_action(sid, cat) == "block" or any(e.exception.action == "block"
                                                           for e in pol.entries_for(sid, cat))]


async def _violations(site: Site, sel: Selection, deadline: float) -> list[dict]:
    """(host, service) rows the policy in force blocks, as `imflow violations` judges them; only
    the blockable services are read (an index serves them on the hour and day rollups)."""
    services = [s for s in blockable(site) if not sel.service or s in sel.service]
    if not services:
        return []
    usage = await site.run(deadline, site.reader.usage, sel.start, sel.end, service=services,
                           **sel.filters("category", "host"))
    return [r for r in _judge(site, usage) if r["violation_now"]]


async def violations(site: Site, sel: Selection, deadline: float) -> Page:
    if sel.recorded:
        rows = _judge(site, await site.run(deadline, site.reader.usage, sel.start, sel.end, violations_only=True,
                                           **sel.filters("service", "category", "host")))
    else:
        rows = await _violations(site, sel, deadline)
    rows = rows[:site.limits.max_rows]
    page = Page("/violations", "Violations",
                ("What the collector recorded as violations at ingest, under the policy of that time"
                 if sel.recorded else "Internal hosts that used services the policy in force now blocks")
                + f", {sel.describe()}.")
    cols = [Column("host", "Host", "host"), Column("service", "Service", "service"),
            Column("category", "Category", "category"), Column("bytes", "Bytes", "bytes"),
            Column("packets", "Packets", "int"), Column("flows", "Flows", "int"),
            Column("first_seen", "First seen", "time"), Column("last_seen", "Last seen", "time"),
            Column("policy", "Policy now", "policy"), Column("violation", "At ingest", "flag")]
    page.blocks.append(Table("violations", "Violations", cols, rows, total=True,
                             note="" if rows else "no violations in this period"))
    return page


async def exporters(site: Site, sel: Selection, deadline: float) -> Page:
    f = sel.filters("service", "category", "exporter")
    rows, ifs, stored = await asyncio.gather(
        site.run(deadline, site.reader.top, sel.start, sel.end, by=("exporter",), limit=site.limits.max_rows, **f),
        site.run(deadline, site.reader.top, sel.start, sel.end, by=("exporter", "interface", "direction"),
                 limit=site.limits.max_rows, **f),
        site.run(deadline, site.reader.time_range))
    period = span(site, sel, stored)
    seconds = (period[1] - period[0]) if period else 0
    for r in ifs:
        r["rate_bps"] = 8 * r["bytes"] / seconds if seconds else 0.0
        speed = site.speeds(r["exporter"], r["interface"]) if site.speeds is not None else None
        r["link_pct"] = 100.0 * r["rate_bps"] / speed if speed else None
    page = Page("/exporters", "Exporters and interfaces", f"Routers and firewalls that sent flows, "
                f"{sel.describe()}. Each flow counts twice on the interfaces: in on the one it entered, "
                "out on the one it left.")
    page.blocks.append(Table("exporters", "Exporters", [Column("exporter", "Exporter"), *COUNTER_COLUMNS], rows,
                             total=True))
    page.blocks.append(Table(
        "interfaces", "Interfaces",
        [Column("exporter", "Exporter"), Column("interface", "Interface"), Column("direction", "Direction"),
         Column("bytes", "Bytes", "bytes"), Column("flows", "Flows", "int"), Column("share_pct", "Share", "pct"),
         Column("rate_bps", "Average rate", "rate"), Column("link_pct", "Of link speed", "pct")], ifs,
        note=("share: of all interface bytes; average rate over the period; link speed from SNMP "
              "(ifHighSpeed) when the daemon polls the exporter" + ("" if site.speeds is not None else
                                                                   ": not known to `imflow web`"))))
    return page


PAGES = {"/": overview, "/hosts": hosts, "/services": services, "/violations": violations,
         "/exporters": exporters}
NAV = (("/", "Overview"), ("/hosts", "Hosts"), ("/services", "Services"), ("/violations", "Violations"),
       ("/exporters", "Exporters"), ("/report", "Report"))


def host_address(text: str) -> str:
    """The host part of /host/ADDR as stored (compressed form); ValueError if not an address."""
    return ipaddress.ip_address(text).compressed

