"""`imflow flows`: nfdump-style questions on the flow audit log (docs/audit.md), through the
one query path (`collector.store.reader`). Rows are rendered here: an aligned table for
people, JSON and CSV for programs; every stored text goes out through `collector.text`."""

from __future__ import annotations

import sys
from datetime import UTC, datetime

from collector.report.tables import human_bytes
from collector.store.audit import GROUPS, PROTO_NAMES
from collector.text import csv_text, json_text, printable

JSON_KEYS = ("start", "end", "exporter", "host", "peer", "host_port", "peer_port", "proto", "service",
             "category", "bytes", "packets", "in_if", "out_if", "direction")


def iso_ms(t: float) -> str:
    """UNIX seconds -> ISO 8601 UTC with milliseconds: 2026-12-04T14:02:03.120Z."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _prefix(text: str) -> tuple[int, int]:
    try:
        v4, v6 = (int(x) for x in text.split(","))
    except ValueError:
        raise ValueError(f"--peer-prefix {text[:40]!r}: expected V4,V6 like 24,48") from None
    return v4, v6


def run(args) -> int:
    from collector.cli import where
    from collector.cli.commands import check_filters, period
    from collector.daemon.wiring import build_catalogue
    from collector.store.audit import check_prefix
    from collector.store.reader import open_reader

    by = tuple(x.strip() for x in args.by.split(",") if x.strip()) if args.by else ()
    bad = [x for x in by if x not in GROUPS]
    if args.by is not None and (not by or bad or len(set(by)) != len(by)):
        print(f"imflow: --by: expected a comma list of {', '.join(GROUPS)}", file=sys.stderr)
        return 2
    if args.limit < 0:
        print("imflow: --limit: expected 0 (all) or more", file=sys.stderr)
        return 2
    cfg = where.load(args.config)
    reader = open_reader(cfg, args.db)
    try:
        prefix = _prefix(args.peer_prefix)
        check_prefix(*prefix)
        start, end = period(args)
        check_filters(args, build_catalogue(cfg), reader)
        rows = reader.flows(start, end, host=args.host, peer=args.peer, port=args.port, proto=args.proto,
                            service=args.service, category=args.category, exporter=args.exporter,
                            sort=args.sort, limit=args.limit or None, by=by or None, prefix=prefix)
    except ValueError as exc:
        print(f"imflow: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(render_groups(rows, by, args.format) if by else render(rows, args.format))
    watched = set(cfg.get("audit.categories"))
    if not rows and args.format == "table":
        note = ("the audit log is off in this config ([audit] categories = [])" if not watched else
                f"it keeps flows of {', '.join(sorted(watched))} only ([audit] categories)")
        print(f"imflow: no flows in the audit log match; {note}", file=sys.stderr)
    elif args.category and set(args.category) - watched and watched:
        print(f"imflow: note: the audit log keeps flows of {', '.join(sorted(watched))} only "
              "([audit] categories in this config)", file=sys.stderr)
    return 0


def json_row(r: dict) -> dict:
    return {k: (iso_ms(r[k]) if k in ("start", "end") else r[k]) for k in JSON_KEYS}


def render(rows: list[dict], fmt: str) -> str:
    """Single flows: "json" (an array of objects, times ISO 8601 UTC with milliseconds, exact
    integers), "csv" (the same keys as a header), or "table" (nfdump-like aligned columns)."""
    if fmt == "json":
        return json_text([json_row(r) for r in rows], indent=1) + "\n"
    if fmt == "csv":
        return csv_text(JSON_KEYS, ([json_row(r)[k] for k in JSON_KEYS] for r in rows))
    header = ("start (UTC)", "duration", "proto", "host", "port", "dir", "peer", "port", "service",
              "exporter", "packets", "bytes")
    arrow = {"out": "->", "in": "<-", "none": "->"}
    body = []
    for r in rows:
        body.append((iso_ms(r["start"])[:-1].replace("T", " "), f"{r['end'] - r['start']:.3f}",
                     PROTO_NAMES.get(r["proto"], str(r["proto"])), printable(r["host"]), str(r["host_port"]),
                     arrow.get(r["direction"], "->"), printable(r["peer"]), str(r["peer_port"]),
                     printable(r["service"]), printable(r["exporter"]), f"{r['packets']:,}", human_bytes(r["bytes"])))
    footer = (f"{len(rows)} flow{'s' if len(rows) != 1 else ''}", *[""] * 9,
              f"{sum(r['packets'] for r in rows):,}", human_bytes(sum(r["bytes"] for r in rows)))
    return _table(header, body, footer, numeric={1, 10, 11})


def render_groups(rows: list[dict], by: tuple[str, ...], fmt: str) -> str:
    """Totals per group (`--by`): the keys, bytes, packets, flows, hosts, share_pct."""
    names = (*by, "bytes", "packets", "flows", "hosts", "share_pct")
    if fmt == "json":
        return json_text([{k: r[k] for k in names} for r in rows], indent=1) + "\n"
    if fmt == "csv":
        return csv_text(names, ([r[k] for k in names] for r in rows))
    header = (*by, "traffic", "bytes", "packets", "flows", "hosts", "share")
    body = [(*(_key(r[k], k) for k in by), human_bytes(r["bytes"]), f"{r['bytes']:,}", f"{r['packets']:,}",
             f"{r['flows']:,}", f"{r['hosts']:,}", f"{r['share_pct']:.1f}%") for r in rows]
    footer = (f"total ({len(rows)} row{'s' if len(rows) != 1 else ''})", *[""] * (len(by) - 1),
              human_bytes(sum(r["bytes"] for r in rows)), f"{sum(r['bytes'] for r in rows):,}",
              f"{sum(r['packets'] for r in rows):,}", f"{sum(r['flows'] for r in rows):,}", "", "")
    return _table(header, body, footer, numeric=set(range(len(by), len(header))))


def _key(value, key: str) -> str:
    if key == "proto":
        return PROTO_NAMES.get(value, str(value))
    return "(none)" if value == "" else printable(value)


def _table(header, body, footer, numeric: set[int]) -> str:
    widths = [max(len(line[i]) for line in (header, *body, footer)) for i in range(len(header))]

    def line(cells) -> str:
        return "  ".join(c.rjust(w) if i in numeric else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *map(line, body), rule, line(footer)]) + "\n"
