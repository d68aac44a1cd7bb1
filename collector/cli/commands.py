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

    # a bare --metrics PORT is loopback: the endpoint has no authentication
    metrics = f"127.0.0.1:{args.metrics}" if (args.metrics or "").isdigit() else args.metrics
    flags = {"collector.listen": args.listen, "store.path": args.db, "classify.internal": args.internal,
             "collector.refresh_time": args.refresh_time, "metrics.listen": metrics}
    return config.load(args.config).replaced({k: v for k, v in flags.items() if v})


def cmd_run(args) -> int:
    from collector import daemon
    from collector.store import StoreError

    cfg = load_run_config(args)
    if not args.log_level:
        logging.getLogger().setLevel(cfg.get("log.level").upper())
    if not 1 <= args.workers <= 64:
        print("imflow: --workers: expected 1 to 64", file=sys.stderr)
        return 2
    try:
        return daemon.run(cfg, workers=args.workers)
    except StoreError as exc:
        print(f"imflow: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"imflow: {exc.strerror or exc}", file=sys.stderr)
        return 1


def cmd_top(args) -> int:
    from collector.report import tables as report
    from collector.store import StoreError, query

    by = tuple(x.strip() for x in args.by.split(",") if x.strip())
    allowed = ("host", "service", "category", "exporter", "interface", "direction")
    bad = [x for x in by if x not in allowed]
    if not by or bad:
        print(f"imflow: --by: expected a comma list of {', '.join(allowed)}", file=sys.stderr)
        return 2
    try:
        end = parse_time(args.end) if args.end else None
        start = parse_time(args.start) if args.start else _start(args.since, end)
    except ValueError as exc:
        print(f"imflow: {exc}", file=sys.stderr)
        return 2
    try:
        rows = query.top(args.db, start, end, by=by, service=args.service, category=args.category,
                         host=args.host, exporter=args.exporter, limit=args.limit or None)
    except StoreError as exc:
        print(f"imflow: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"imflow: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(report.render(rows, by, args.format))
    return 0


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
    from collector import config
    from collector.daemon.wiring import build_catalogue
    from collector.text import json_text, printable

    catalogue = build_catalogue(config.load(args.config))
    services = [s for s in catalogue.services[1:] if not args.category or s.category in args.category]
    if args.format == "json":
        print(json_text([dict(s.to_dict(), index=s.index) for s in services], indent=1))
        return 0
    print(f"{'id':<14} {'category':<8} {'name':<36} {'ports (alone)':<30} {'ports with prefixes':<22} prefixes")
    for s in services:
        owned = ", ".join(p for p in s.ports if p not in s.shared_ports) or "-"
        shared = ", ".join(s.shared_ports) or "-"
        print(f"{printable(s.id):<14} {printable(s.category):<8} {printable(s.name)[:36]:<36} "
              f"{_cut(printable(owned), 30):<30} {_cut(printable(shared), 22):<22} "
              f"{len(s.prefixes)}")
    print(f"{len(services)} services, prefix snapshot {catalogue.snapshot}"
          + (f", updated {catalogue.fetched}" if catalogue.fetched else ""))
    return 0


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


def cmd_catalogue_update(args) -> int:
    from collector import config
    from collector.classify.catalogue import load_catalogue
    from collector.classify.update import UpdateError, update_catalogue
    from collector.text import printable  # the lines may quote what vendors' servers sent

    cfg = config.load(args.config)
    catalogue = load_catalogue(cfg.get("classify.catalogue") or None)
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


def cmd_violations(args) -> int:
    from datetime import datetime, timezone

    from collector.store import StoreError, query
    from collector.report.tables import human_bytes
    from collector.text import csv_text, json_text, printable

    try:
        rows = query.usage(args.db, _start(args.since), None, violations_only=True)
    except StoreError as exc:
        print(f"imflow: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"imflow: {exc}", file=sys.stderr)
        return 2
    keys = ("host", "name", "owner", "service", "category", "bytes", "packets", "flows", "first_seen", "last_seen")
    names = host_names(args.config).lookup_many([r["host"] for r in rows])
    out = [{k: r[k] if k in r else names.get(r["host"], ("", ""))[0 if k == "name" else 1] for k in keys}
           for r in rows]

    def iso(t: int) -> str:
        return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M")

    if args.format == "json":
        print(json_text(out, indent=1))
    elif args.format == "csv":
        sys.stdout.write(csv_text(keys, ([r[k] for k in keys] for r in out)))
    else:  # host names come from the hosts file and DNS: escaped, never raw on a terminal
        print(f"{'host':<40} {'name':<20} {'service':<14} {'bytes':>14} {'flows':>9}  first seen (UTC)  "
              "last seen (UTC)")
        for r in out:
            print(f"{printable(r['host']):<40} {printable(r['name'])[:20]:<20} {printable(r['service']):<14} "
                  f"{human_bytes(r['bytes']):>14} "
                  f"{r['flows']:>9}  {iso(r['first_seen'])}  {iso(r['last_seen'])}")
        print(f"{len(out)} violations" if out else "no violations")
    return 0


def host_names(config_path: str | None):
    """Names for internal hosts from policy.hosts_file / policy.reverse_dns of the config."""
    from collector import config

    return _host_names(config.load(config_path))


def _host_names(cfg):
    """A missing or bad policy.hosts_file is a ConfigError naming the key (its names reach
    reports and terminals: control characters are refused when it is read)."""
    from collector.config import ConfigError
    from collector.policy.hostnames import HostMapError, HostNames

    try:
        return HostNames(cfg.get("policy.hosts_file") or None, reverse_dns=cfg.get("policy.reverse_dns"))
    except HostMapError as exc:
        raise ConfigError("policy.hosts_file", str(exc)) from None


def cmd_report(args) -> int:
    from collector import config, report
    from collector.daemon import wiring
    from collector.store import StoreError

    cfg = config.load(args.config)
    catalogue = wiring.build_catalogue(cfg)
    policy = wiring.build_policy(cfg, catalogue)
    try:
        data = report.build(args.db, _start(args.since), None, catalogue, policy, host_names(args.config))
    except StoreError as exc:
        print(f"imflow: {exc}", file=sys.stderr)
        return 1
    render = {"html": report.render_html, "csv": report.render_csv, "json": report.render_json}[args.format]
    text = render(data)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(text)
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def cmd_policy_render(args) -> int:
    from datetime import datetime, timezone

    from collector import config
    from collector.daemon import wiring
    from collector.policy import firewall

    cfg = config.load(args.config)
    catalogue = wiring.build_catalogue(cfg)
    policy = wiring.build_policy(cfg, catalogue)
    info = {"source": args.config or "(defaults: no [policy])", "generated": datetime.now(timezone.utc)}
    text = firewall.render(policy, catalogue, args.format, info)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(text)
    else:
        sys.stdout.write(text)
    return 0


def cmd_demo(args) -> int:
    from collector.tools.demo import run_demo

    return run_demo(db=args.db, hosts=args.hosts, every=args.every, duration=args.duration, port=args.port)


def cmd_check_config(args) -> int:
    from collector import config
    from collector.daemon import wiring

    cfg = config.load(args.file)
    wiring.check(cfg)
    _host_names(cfg)  # the hosts file too: `report` and `violations` read it
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
