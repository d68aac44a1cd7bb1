"""What each `imflow` command does, given its parsed arguments -> exit status (0 success,
1 runtime failure, 2 bad usage). Heavy imports wait until a command runs."""

from __future__ import annotations

import logging
import sys
import time


def _start(since: float | None, end: float | None = None) -> float | None:
    return None if since is None else (end or time.time()) - since


def load_run_config(args):
    from collector import config

    # a bare --metrics PORT is loopback: the schema's rule for metrics.listen (no authentication there)
    flags = {"collector.listen": args.listen, "store.path": args.db, "classify.internal": args.internal,
             "collector.refresh_time": args.refresh_time, "metrics.listen": args.metrics}
    return config.load(args.config).replaced({k: v for k, v in flags.items() if v})


def cmd_run(args) -> int:
    from collector.daemon.tuning import leave_out_tls

    cfg = load_run_config(args)
    leave_out_tls(cfg)  # before the daemon imports asyncio
    from collector import daemon

    if not args.log_level:
        logging.getLogger().setLevel(cfg.get("log.level").upper())
    if not 1 <= args.workers <= 64:
        print("imflow: --workers: expected 1 to 64", file=sys.stderr)
        return 2
    try:
        return daemon.run(cfg, workers=args.workers)
    except OSError as exc:
        print(f"imflow: {exc.strerror or exc}", file=sys.stderr)
        return 1


def cmd_top(args) -> int:
    from collector.cli import where
    from collector.daemon.wiring import build_catalogue, build_host_names
    from collector.report import tables as report
    from collector.store.reader import open_reader

    by = tuple(x.strip() for x in args.by.split(",") if x.strip())
    allowed = ("host", "service", "category", "exporter", "interface", "direction", "method", "minute", "hour",
               "day")
    bad = [x for x in by if x not in allowed]
    if not by or bad:
        print(f"imflow: --by: expected a comma list of {', '.join(allowed)}", file=sys.stderr)
        return 2
    cfg = where.load(args.config)
    reader = open_reader(cfg, args.db)
    interfaces = bool({"interface", "direction"} & set(by))
    try:
        start, end = period(args)
        check_filters(args, build_catalogue(cfg), reader)
        rows = reader.top(start, end, by=by, service=args.service, category=args.category,
                          host=args.host, exporter=args.exporter, limit=args.limit or None)
        empty_interfaces = interfaces and not rows and reader.has_traffic(start, end)
    except ValueError as exc:
        print(f"imflow: {exc}", file=sys.stderr)
        return 2
    if "host" in by and (cfg.get("policy.hosts_file") or cfg.get("policy.reverse_dns")):
        names = build_host_names(cfg).lookup_many(sorted({r["host"] for r in rows if r["host"]}))
        for r in rows:
            r["name"] = names.get(r["host"], ("", ""))[0]
        by = (*by[:by.index("host") + 1], "name", *by[by.index("host") + 1:])
    sys.stdout.write(report.render(rows, by, args.format))
    if interfaces and rows:  # a note, outside what programs parse
        print("imflow: note: per-interface figures count each flow twice, in on the interface it "
              "entered and out on the one it left; the total and shares are of both", file=sys.stderr)
    if empty_interfaces:
        print("imflow: no per-interface traffic in this period, though flows were stored: the "
              "exporters sent ifIndex 0 (no input/output interface) in their records. Configure the "
              "exporter to fill them in; `imflow decode` on a capture shows them (the in/out column)",
              file=sys.stderr)
    return 0


def period(args) -> tuple[float | None, float | None]:
    """--from/--to(--until) or --since -> (start, end); ValueError on a bad time."""
    end = parse_time(args.end) if args.end else None
    start = parse_time(args.start) if args.start else _start(args.since, end)
    return start, end


def check_filters(args, catalogue, reader=None) -> None:
    """--service and --category name things that exist (the catalogue, or services the
    store still holds), else UsageError with the close name."""
    from collector.cli import where
    from collector.store import StoreError

    services = set(catalogue.by_id)
    if reader is not None and set(getattr(args, "service", None) or ()) - services:
        try:
            services |= reader.stored_services()
        except StoreError:
            pass  # the query that follows says what is wrong with the database
    where.check_names(getattr(args, "service", None), sorted(services), "--service", "service")
    categories = [c for c in catalogue.categories if c != "other"] + ["other"]
    where.check_names(args.category, categories, "--category", "category", list_known=True)


def parse_time(text: str) -> float:
    """UNIX seconds, or an ISO date/time (UTC unless it says otherwise)."""
    from datetime import datetime, timezone

    try:
        return float(text)
    except ValueError:
        pass
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r}: expected an ISO date/time (2026-11-28 or 2026-11-28T14:00) "
                         "or UNIX seconds") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return t.timestamp()


def cmd_services(args) -> int:
    from collector.classify import detection
    from collector.cli import where
    from collector.daemon.wiring import build_catalogue, build_install
    from collector.text import csv_text, json_text, printable

    cfg = where.load(args.config)
    catalogue = build_catalogue(cfg)
    try:
        check_filters(args, catalogue)
    except ValueError as exc:
        print(f"imflow: {exc}", file=sys.stderr)
        return 2
    install = build_install(cfg)
    by_app_id = install.app_id_services
    services = [s for s in catalogue.services[1:] if not args.category or s.category in args.category]
    if args.format == "json":
        print(json_text([dict(s.to_dict(), index=s.index, detected_by=detection.methods(s, by_app_id),
                              needs_app_ids=detection.needs_app_ids(s, by_app_id),
                              methods=detection.install_methods(s, install),
                              cannot_see=detection.cannot_see(s, install)) for s in services], indent=1))
        return 0
    header = ("id", "category", "name", "detected by", "methods here", "ports (alone)", "ports with prefixes",
              "prefixes")
    rows = [(s.id, s.category, s.name, detection.describe(s, by_app_id),
             ", ".join(detection.install_methods(s, install)) or "none",
             ", ".join(p for p in s.ports if p not in s.shared_ports) or "-", ", ".join(s.shared_ports) or "-",
             str(len(s.prefixes))) for s in services]
    if args.format == "csv":
        sys.stdout.write(csv_text(("id", "category", "name", "detected_by", "methods", "ports", "shared_ports",
                                   "prefixes"), rows))
        return 0
    rows = [tuple(map(printable, r)) for r in rows]
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    for r in (header, *rows):  # nothing cut: the columns are as wide as their longest cell
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    print(f"{len(services)} services, prefix snapshot {catalogue.snapshot}"
          + (f", updated {catalogue.fetched}" if catalogue.fetched else ""))
    unseen = detection.exporter_only(services, install)
    if unseen:
        hint = ("; dns.dnstap would learn their addresses from your resolver" if not install.dnstap
                and any(s.domains for s in unseen) else "")
        print(f"{len(unseen)} services are seen here only when the exporter sends application ids or server "
              "names (NBAR, AVC, IPFIX applicationId, TLS SNI): their ports are shared (443 ...) and this "
              f"install has no addresses for them, so their traffic counts as other{hint}: "
              + ", ".join(printable(s.name) for s in unseen))
    asn = install.asn
    dns_state = f"from dnstap on {printable(install.dnstap)} ({_dnstap_state(cfg)})" if install.dnstap \
        else "off (dns.dnstap)"
    print(f"methods here: dns {dns_state}"
          f"; asn from the snapshot of {asn.date} ({len(asn)} prefixes of {len(asn.prefixes)} ASNs)"
          "; `imflow services --format json` says per service what it cannot see and why")
    return 0


def _dnstap_state(cfg) -> str:
    """What the running daemon's metrics say of its dnstap listener (1 s at most), or why not."""
    import urllib.request

    from collector.config import parse_endpoint

    listen = cfg.get("metrics.listen")
    if not listen:
        return "connection state unknown: metrics.listen is off"
    host, port = parse_endpoint(listen)
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=1.0) as r:
            text = r.read(4 << 20).decode("utf-8", "replace")
    except (OSError, ValueError):
        return f"the daemon's metrics at {url} do not answer"
    values = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in ("imflow_dns_connections", "imflow_dns_learned_addresses"):
            values[name] = int(float(value))
    if "imflow_dns_connections" not in values:
        return "the daemon has no dnstap listener"
    n = values["imflow_dns_connections"]
    return (f"{n} resolver{'s' if n != 1 else ''} connected, "
            f"{values.get('imflow_dns_learned_addresses', 0)} addresses learned")


def cmd_catalogue_update(args) -> int:
    from collector.classify.catalogue import load_catalogue
    from collector.classify.update import UpdateError, update_catalogue
    from collector.text import printable  # the lines may quote what vendors' servers sent

    from collector.cli import where

    cfg = where.load(args.config)
    catalogue = load_catalogue(cfg.get("classify.catalogue") or None)
    if args.asn_database:
        return _asn_update(catalogue, args.asn_database, args.asn_out)
    try:
        rep = update_catalogue(catalogue, args.out)
    except UpdateError as exc:
        print(f"imflow: catalogue update failed, nothing written, the snapshot of {catalogue.snapshot} "
              f"stays in use: {printable(exc)}", file=sys.stderr)
        return 1
    for line in rep.lines():
        print(printable(line))
    print(f"wrote {args.out}; set classify.catalogue = \"{args.out}\" in the config to use it")
    return 1 if rep.failed else 0


def _asn_update(catalogue, database: str, out: str) -> int:
    """`imflow catalogue update --asn-database FILE.mmdb`: the catalogue's ASNs' prefixes, dated."""
    import datetime as dt
    import os

    from collector.classify.asn import format_snapshot, from_mmdb, write_snapshot
    from collector.text import printable

    wanted = sorted({a for s in catalogue.services for a in s.asns})
    try:
        prefixes = from_mmdb(database, wanted)
    except (OSError, ValueError) as exc:  # maxminddb.InvalidDatabaseError is a ValueError
        print(f"imflow: {printable(database)}: not a readable MaxMind-format database ({printable(exc)}); "
              "nothing written", file=sys.stderr)
        return 1
    if not prefixes:
        print(f"imflow: {printable(database)} has no networks of the catalogue's ASNs "
              f"({', '.join(map(str, wanted))}): is it an ASN database? nothing written", file=sys.stderr)
        return 1
    source = f"imflow catalogue update --asn-database {os.path.basename(database)}"
    write_snapshot(out, format_snapshot(dt.date.today().isoformat(), source, prefixes))
    missing = [a for a in wanted if a not in prefixes]
    print(f"ASN prefixes: {sum(map(len, prefixes.values()))} networks for {len(prefixes)} of {len(wanted)} ASNs"
          + (f" (none for {', '.join(f'AS{a}' for a in missing)})" if missing else ""))
    print(f"wrote {printable(out)}; set classify.asn_prefixes = \"{printable(out)}\" in the config to use it")
    return 0


def cmd_violations(args) -> int:
    """Judged now: every (host, service) of the period whose service today's policy blocks for
    that host. The collector's ingest-time flag is history: `violation_at_ingest`, and
    `--recorded` lists by it instead."""
    from datetime import datetime, timezone

    from collector.cli import where
    from collector.daemon import wiring
    from collector.report.tables import human_bytes
    from collector.store.reader import open_reader
    from collector.text import csv_text, json_text, printable

    cfg = where.load(args.config)
    reader = open_reader(cfg, args.db)
    catalogue = wiring.build_catalogue(cfg)
    policy = wiring.build_policy(cfg, catalogue)
    try:
        start, end = period(args)
        check_filters(args, catalogue, reader)
        if args.limit < 0:
            raise ValueError("--limit: expected 0 (all) or more")
        rows = reader.usage(start, end, violations_only=args.recorded, service=args.service,
                           category=args.category, host=args.host)
    except ValueError as exc:
        print(f"imflow: {exc}", file=sys.stderr)
        return 2
    for r in rows:
        r["policy"] = policy.action_of_row(r["service"], r["host"])
    chosen = rows if args.recorded else [r for r in rows if r["policy"] == "block"]
    history = 0 if args.recorded else sum(1 for r in rows if r["violation"] and r["policy"] != "block")
    found = len(chosen)
    chosen = chosen[:args.limit] if args.limit else chosen
    keys = ("host", "name", "owner", "service", "category", "bytes", "packets", "flows", "first_seen", "last_seen",
            "policy", "violation_at_ingest")
    names = wiring.build_host_names(cfg).lookup_many([r["host"] for r in chosen])
    out = [{**{k: r[k] for k in ("host", "service", "category", "bytes", "packets", "flows", "first_seen",
                                 "last_seen", "policy")},
            "name": names.get(r["host"], ("", ""))[0], "owner": names.get(r["host"], ("", ""))[1],
            "violation_at_ingest": r["violation"]} for r in chosen]
    out = [{k: r[k] for k in keys} for r in out]

    def iso(t: int) -> str:
        return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M")

    if args.format == "json":
        print(json_text(out, indent=1))
    elif args.format == "csv":
        sys.stdout.write(csv_text(keys, ([r[k] for k in keys] for r in out)))
    else:  # host names come from the hosts file and DNS: escaped, never raw on a terminal
        print(f"{'host':<40} {'name':<20} {'service':<14} {'bytes':>14} {'flows':>9}  first seen (UTC)  "
              "last seen (UTC)   policy now  at ingest")
        for r in out:
            print(f"{printable(r['host']):<40} {printable(r['name'])[:20]:<20} {printable(r['service']):<14} "
                  f"{human_bytes(r['bytes']):>14} "
                  f"{r['flows']:>9}  {iso(r['first_seen'])}  {iso(r['last_seen'])}  {r['policy']:<10}  "
                  f"{'violation' if r['violation_at_ingest'] else '-'}")
        if args.recorded:
            shown = f"{len(out)} of {found}" if found > len(out) else f"{found}"
            print(f"{shown} recorded as violations at ingest, under the policy of that time"
                  if out else "no violations recorded at ingest")
        else:
            shown = f"{len(out)} of {found}" if found > len(out) else f"{found}"
            print((f"{shown} violations under the current policy" if out
                   else "no violations under the current policy")
                  + (f"; {history} more recorded at ingest under an earlier policy (--recorded lists them)"
                     if history else ""))
    return 0


def cmd_flows(args) -> int:
    """The flow audit log: collector.cli.flows."""
    from collector.cli import flows

    return flows.run(args)


def cmd_report(args) -> int:
    from collector import report
    from collector.cli import where
    from collector.daemon import wiring

    cfg = where.load(args.config)
    catalogue = wiring.build_catalogue(cfg)
    policy = wiring.build_policy(cfg, catalogue)
    try:
        start, end = period(args)
    except ValueError as exc:
        print(f"imflow: {exc}", file=sys.stderr)
        return 2
    from collector.store.reader import open_reader

    from collector.daemon.wiring import build_install

    data = report.build(open_reader(cfg, args.db), start, end, catalogue, policy, wiring.build_host_names(cfg),
                        install=build_install(cfg))
    render = {"html": report.render_html, "csv": report.render_csv, "json": report.render_json}[args.format]
    text = render(data)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(text)
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def cmd_web(args) -> int:
    """The read-only web page until SIGINT/SIGTERM; --hash-password: a hash for the config."""
    from collector import web
    from collector.cli import where
    from collector.daemon.app import run_loop

    if args.hash_password:
        import getpass

        from collector.web.auth import hash_password

        password = getpass.getpass("password: ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\r\n")
        if not password:
            print("imflow: --hash-password: an empty password", file=sys.stderr)
            return 2
        print(hash_password(password))
        return 0
    cfg = where.load(args.config)
    cfg = cfg.replaced({"web.listen": args.listen or cfg.get("web.listen") or web.DEFAULT_LISTEN})
    server = web.WebServer(web.site_of(cfg, args.db), cfg.get("web.listen"), web.auth_of(cfg))
    try:
        return run_loop(_serve_web(server))
    except OSError as exc:
        print(f"imflow: {exc.strerror or exc}", file=sys.stderr)
        return 1


async def _serve_web(server) -> int:
    import asyncio
    import signal

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    print(f"imflow web: serving {server.url} (read-only); Ctrl-C stops", file=sys.stderr, flush=True)
    try:
        await stop.wait()
    finally:
        await server.stop()
    return 0


def cmd_policy_render(args) -> int:
    from datetime import datetime, timezone

    from collector.cli import where
    from collector.daemon import wiring
    from collector.policy import firewall

    cfg = where.load(args.config)
    catalogue = wiring.build_catalogue(cfg)
    policy = wiring.build_policy(cfg, catalogue)
    info = {"source": where.config_path(args.config) or "(defaults: no [policy])",
            "generated": datetime.now(timezone.utc)}
    text = firewall.render(policy, catalogue, args.format, info)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(text)
    else:
        sys.stdout.write(text)
    return 0


def cmd_demo(args) -> int:
    from collector.tools.demo import run_demo

    from collector import config

    cfg = config.load(args.config) if args.config else None
    return run_demo(db=args.db, hosts=args.hosts, every=args.every, duration=args.duration, port=args.port,
                    config=cfg)


def cmd_check_config(args) -> int:
    from collector import config
    from collector.daemon import wiring

    cfg = config.load(args.file)
    wiring.check(cfg)
    wiring.build_host_names(cfg)  # the hosts file too: `report` and `violations` read it
    print(f"{args.file}: ok")
    return 0


def cmd_decode(args) -> int:
    from collector.tools.capture import CaptureError
    from collector.tools.decodeview import decode_capture

    try:
        summary = decode_capture(args.capture, out=sys.stdout, fmt=args.format, ports=args.port,
                                 templates_in=args.templates, templates_out=args.save_templates)
    except CaptureError as exc:
        print(f"imflow: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        raise
    except OSError as exc:
        print(f"imflow: {args.capture}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    if not args.quiet:
        print(summary, file=sys.stderr)
    return 0
