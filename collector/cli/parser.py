"""`imflow`'s commands and flags (argparse). docs/imflow.1 and completions/ are generated from
`build_parser()` by `python3 -m collector.cli.docs`; a test keeps them equal."""

from __future__ import annotations

import argparse

from collector import __version__, kernels
from collector.cli.commands import (cmd_catalogue_update, cmd_check_config, cmd_decode, cmd_demo,
                                    cmd_flows, cmd_policy_render, cmd_report, cmd_run, cmd_services,
                                    cmd_top, cmd_violations, cmd_web)

EPILOG = """\
Start with `imflow demo`. `imflow COMMAND --help` explains each command.
Exit status: 0 success, 1 runtime failure, 2 bad usage or configuration.
Docs: README.md, and docs/ by topic (configuration, exporters, operations); man imflow.
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="imflow",
        description="NetFlow v5/v9, IPFIX and sFlow collector: who on the network uses instant "
                    "messaging, P2P file sharing and VoIP, how much, and what to block.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"imflow {__version__} ({kernels.status()})")
    sub = p.add_subparsers(title="commands", metavar="COMMAND")

    d = sub.add_parser("decode", help="decode a capture of NetFlow/IPFIX/sFlow export traffic",
                       description="Read a pcap or pcapng file of captured export datagrams (UDP, any "
                                   "port, IPv4/IPv6; Ethernet, Linux cooked, raw IP) and print every "
                                   "flow record (sFlow: every flow sample). Templates and options carry across datagrams in "
                                   "capture order, per exporter session, as in the daemon. A summary "
                                   "(datagrams, flows per version, held/expired data, errors by "
                                   "reason) goes to stderr.")
    d.add_argument("capture", help="pcap or pcapng file")
    d.add_argument("--format", choices=("jsonl", "table"), default="jsonl",
                   help="jsonl: one JSON object per flow (default); table: aligned columns")
    d.add_argument("--templates", metavar="FILE",
                   help="load template state saved by the daemon before decoding (for captures "
                        "that start after the templates were sent)")
    d.add_argument("--save-templates", metavar="FILE", help="write the template state at the end")
    d.add_argument("--port", type=int, action="append", metavar="PORT",
                   help="only datagrams to this UDP port (repeatable; default: every UDP datagram)")
    d.add_argument("--quiet", "-q", action="store_true", help="no summary on stderr")
    d.set_defaults(func=cmd_decode, log_level="warning")

    c = sub.add_parser("check-config", help="validate a configuration file",
                       description="Validate a TOML configuration. Prints 'FILE: ok' or one line naming "
                                   "the first bad key, and exits 2 on a problem.")
    c.add_argument("file", help="the TOML file to check")
    c.set_defaults(func=cmd_check_config, log_level="warning")

    r = sub.add_parser("run", help="run the collector daemon",
                       description="Collect NetFlow v5/v9 and IPFIX, classify every flow to a service, "
                                   "keep 1-minute/1-hour/1-day rollups per (exporter, service, internal "
                                   "host) in SQLite. Flags override the config file. SIGTERM/SIGINT flush "
                                   "everything and exit 0; SIGHUP reloads the catalogue and config.",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="example:\n  imflow run --listen 0.0.0.0:2055 --listen [::]:4739 --db /var/lib/imflow/imflow.db")
    r.add_argument("--config", "-c", metavar="FILE", help="TOML configuration (docs/configuration.md)")
    r.add_argument("--listen", action="append", metavar="ADDR:PORT",
                   help="UDP listener, repeatable (default 0.0.0.0:2055, [::]:2055, 0.0.0.0:4739, [::]:4739, "
                        "0.0.0.0:6343, [::]:6343; every port takes NetFlow, IPFIX and sFlow)")
    r.add_argument("--db", metavar="PATH", help="SQLite database (default ./imflow.db)")
    r.add_argument("--internal", action="append", metavar="CIDR",
                   help="internal network, repeatable (default RFC 1918, RFC 4193, 100.64.0.0/10)")
    r.add_argument("--refresh-time", metavar="SECONDS", help="flush cadence (default 60)")
    r.add_argument("--metrics", metavar="ADDR:PORT",
                   help="Prometheus /metrics endpoint (e.g. 127.0.0.1:9750); a bare PORT is 127.0.0.1:PORT, "
                        "0.0.0.0:PORT exposes it")
    r.add_argument("--workers", type=int, default=1, metavar="N",
                   help="receiving processes sharing the ports (SO_REUSEPORT); default 1")
    r.add_argument("--log-level", choices=("debug", "info", "warning", "error"),
                   help="default: log.level of the config (info)")
    r.set_defaults(func=cmd_run)

    t = sub.add_parser("top", help="top hosts, services or categories from the database",
                       description="Who used what: bytes, packets and flows grouped by host, service, "
                                   "category, exporter or time bucket, from the rollups `imflow run` "
                                   "keeps, with each row's share of the selection's bytes.",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="examples:\n  imflow top --since 24h --by host,service --category p2p\n"
                              "  imflow top --since 7d --by day,service --limit 5\n"
                              "  imflow top --since 7d --by service --format json\n"
                              "  imflow top --from 2026-11-01 --to 2026-11-02 --host 10.1.2.0/24\n\n"
                              "The per-interface figures count each flow twice: in on the interface "
                              "it entered,\nout on the one it left; read the in rows or the out rows, "
                              "not their sum.")
    _window(t, "1h", "store.path, host names (policy.hosts_file) and [[classify.service]]")
    t.add_argument("--by", default="service",
                   help="host, service, category, exporter, interface, direction, method, minute, hour, day, "
                        "or a comma list (default service). minute/hour/day are time buckets (UTC). "
                        "interface and direction read the per-interface rollups, which count each flow "
                        "twice: in on one interface, out on another. method: how the flows were "
                        "classified (port, prefix, asn, dns, name, app-id; none for other), not per host")
    _filters(t)
    t.add_argument("--exporter", action="append", metavar="ADDR", help="only this exporter (repeatable)")
    t.add_argument("--limit", type=int, default=20, metavar="N",
                   help="rows (default 20; 0 = all): the biggest; with a time bucket and other keys, "
                        "the biggest of each bucket; with time buckets alone, the latest")
    t.add_argument("--format", choices=("table", "json", "csv"), default="table",
                   help="aligned columns (default), a JSON list of rows, or CSV with a header")
    t.set_defaults(func=cmd_top, log_level="warning")

    fl = sub.add_parser("flows", help="single flows from the audit log: who talked to whom, when, on which port",
                        description="The flow audit log ([audit] of the config, docs/audit.md): single "
                                    "flows of the watched categories (im, p2p, voip, collab by default) with "
                                    "time, exporter, internal host, peer, ports, protocol, service, bytes, "
                                    "packets and interfaces. Filters combine with AND; a repeated filter "
                                    "accepts any of its values. A flow is listed when it overlaps the period.",
                        formatter_class=argparse.RawDescriptionHelpFormatter,
                        epilog="examples:\n  imflow flows --host 10.1.2.3 --service msn --from 2026-11-28T14:00 "
                               "--to 2026-11-28T14:05\n"
                               "  imflow flows --since 24h --peer 203.0.113.0/24 --port 5060 --proto udp\n"
                               "  imflow flows --since 7d --category p2p --by peer-net --limit 10\n"
                               "  imflow flows --since 1h --sort bytes --limit 0 --format json")
    _window(fl, "1h", "[audit] categories (for notes), store.path and [[classify.service]]")
    fl.add_argument("--host", action="append", metavar="ADDR|CIDR", help="only these internal hosts (repeatable)")
    fl.add_argument("--peer", action="append", metavar="ADDR|CIDR",
                    help="only these peers, the other end of the flow (repeatable)")
    fl.add_argument("--port", action="append", metavar="PORT", help="either end's port (repeatable)")
    fl.add_argument("--proto", action="append", metavar="PROTO",
                    help="tcp, udp, icmp, icmpv6, sctp, gre, esp or a number (repeatable)")
    fl.add_argument("--service", action="append", metavar="ID", help="only this service (repeatable)")
    fl.add_argument("--category", action="append", metavar="NAME", help="im, p2p, voip, collab or other (repeatable)")
    fl.add_argument("--exporter", action="append", metavar="ADDR", help="only this exporter (repeatable)")
    fl.add_argument("--sort", choices=("start", "end", "bytes", "packets", "duration"), default="start",
                    help="start or end: oldest first (default start); bytes, packets, duration: biggest first")
    fl.add_argument("--by", metavar="KEYS",
                    help="totals per group instead of single flows: a comma list of peer-net, peer, host, "
                         "service, category, exporter, peer-port, proto (peer-net: the peer's /24 or /48, "
                         "see --peer-prefix); biggest first")
    fl.add_argument("--peer-prefix", default="24,48", metavar="V4,V6",
                    help="the network sizes of --by peer-net, multiples of 8 (default 24,48)")
    fl.add_argument("--limit", type=int, default=100, metavar="N", help="rows (default 100; 0 = all)")
    fl.add_argument("--format", choices=("table", "json", "csv"), default="table",
                    help="aligned columns (default), a JSON list of rows, or CSV with a header")
    fl.set_defaults(func=cmd_flows, log_level="warning")

    s = sub.add_parser("services", help="show the service catalogue",
                       description="The catalogue imflow classifies with: the shipped one plus the "
                                   "[[classify.service]] entries of the config, and how each service is "
                                   "detected: by its own ports, its prefixes, or only by the application "
                                   "ids some routers send (those are invisible without them).")
    _config(s, "add this config's [[classify.service]] entries and classify.app_ids")
    s.add_argument("--category", action="append", metavar="NAME",
                   help="only this category: im, p2p, voip, collab or other (repeatable)")
    s.add_argument("--format", choices=("table", "json", "csv"), default="table",
                   help="aligned columns, nothing cut (default), JSON with every port and prefix, or CSV")
    s.set_defaults(func=cmd_services, log_level="warning")

    cat = sub.add_parser("catalogue", help="catalogue maintenance (update)",
                         description="Maintain the service catalogue: `imflow catalogue update` refreshes "
                                     "the vendors' prefix lists.")
    catsub = cat.add_subparsers(title="commands", metavar="COMMAND")
    u = catsub.add_parser("update", help="refresh vendor prefix lists",
                          description="Fetch the prefix lists vendors publish (Telegram cidr.txt, Zoom, "
                                      "Microsoft 365 endpoints, Webex ...) and write a catalogue file with "
                                      "the fetch date. Point classify.catalogue at it. Offline, it fails "
                                      "with a clear error and the shipped snapshot stays in use.")
    _config(u, "read classify.catalogue from this config")
    u.add_argument("--out", default="imflow-catalogue.toml", metavar="FILE",
                   help="where to write (default ./imflow-catalogue.toml)")
    u.add_argument("--asn-database", metavar="FILE.mmdb",
                   help="instead: refresh the ASN prefix snapshot from this MaxMind-format ASN database "
                        "(GeoLite2-ASN, DB-IP ASN Lite ...), for the catalogue's asns only; nothing is fetched")
    u.add_argument("--asn-out", default="imflow-asn-prefixes.txt", metavar="FILE",
                   help="where --asn-database writes the snapshot (default ./imflow-asn-prefixes.txt); "
                        "point classify.asn_prefixes at it")
    u.set_defaults(func=cmd_catalogue_update, log_level="warning")
    cat.set_defaults(func=lambda a: cat.print_help() or 2, log_level="warning")

    v = sub.add_parser("violations", help="internal hosts that used services the policy blocks",
                       description="Host, service, bytes, flows, first and last seen of the traffic of "
                                   "services that the policy in force now ([policy] of the config) blocks "
                                   "for internal hosts, judged from the stored traffic, so a policy written "
                                   "today finds last week's violations. --recorded lists instead what the "
                                   "collector recorded at ingest, under the policy of that time.")
    _window(v, "24h", "the [policy] to judge by, host names (policy.hosts_file, policy.reverse_dns), "
                      "store.path")
    _filters(v)
    v.add_argument("--limit", type=int, default=0, metavar="N", help="rows, biggest first (default 0 = all)")
    v.add_argument("--recorded", action="store_true",
                   help="the verdicts recorded at ingest (history) instead of today's policy")
    v.add_argument("--format", choices=("table", "json", "csv"), default="table",
                   help="aligned columns (default), a JSON list of rows, or CSV with a header")
    v.set_defaults(func=cmd_violations, log_level="warning")

    rep = sub.add_parser("report", help="the audit report: who used what, policy status, shares",
                         description="Per category and service: the internal hosts that used it, bytes, "
                                     "flows, first and last seen, policy status and violations; totals and "
                                     "shares of all traffic. HTML is one self-contained file with inline SVG "
                                     "charts (no network fetches), readable printed.")
    _window(rep, "7d", "for [policy], host names (policy.hosts_file) and store.path")
    rep.add_argument("--format", choices=("html", "csv", "json"), default="html",
                     help="one self-contained HTML page (default), CSV rows, or JSON")
    rep.add_argument("--out", metavar="FILE", help="write here instead of stdout")
    rep.set_defaults(func=cmd_report, log_level="warning")

    w = sub.add_parser("web", help="a read-only web page: overview, hosts, services, violations",
                       description="Serve a read-only web page from the database: traffic by category and "
                                   "service over a period (charts), top hosts and services, a page per "
                                   "host and per service, violations, exporters and interfaces, the audit "
                                   "report; every table as CSV and JSON. The period and filters are in the "
                                   "URL. No script, no external fetch. Loopback unless --listen or [web] "
                                   "listen says otherwise; basic authentication with web.auth_user and "
                                   "web.auth_password_hash. SIGINT/SIGTERM stop it.",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="examples:\n  imflow web --db /var/lib/imflow/imflow.db\n"
                              "  imflow web --listen 127.0.0.1:8080 --config /etc/imflow/imflow.toml\n"
                              "  imflow web --hash-password < password.txt\n\n"
                              "The daemon serves the same page when [web] listen is set (docs/web.md).")
    _config(w, "[web], [policy], host names and store.path")
    w.add_argument("--db", metavar="PATH",
                   help="database (default $IMFLOW_DB, else store.path of the config, ./imflow.db)")
    w.add_argument("--listen", metavar="ADDR:PORT",
                   help="where to serve (default web.listen of the config, else 127.0.0.1:9751); a bare PORT "
                        "is 127.0.0.1:PORT, 0.0.0.0:PORT exposes it")
    w.add_argument("--hash-password", action="store_true",
                   help="read a password (from the terminal, or one line of stdin) and print the hash for "
                        "web.auth_password_hash; serve nothing")
    w.set_defaults(func=cmd_web, log_level="info")

    pol = sub.add_parser("policy", help="policy tools (render firewall rules)",
                         description="Tools for the [policy] section of the config: `imflow policy render` "
                                     "turns the blocked services into firewall rules.")
    polsub = pol.add_subparsers(title="commands", metavar="COMMAND")
    pr = polsub.add_parser("render", help="firewall rules for the blocked services",
                           description="Turn the blocked services' ports and prefixes (and the exceptions) "
                                       "into rules: nftables (nft -f), iptables / ip6tables "
                                       "(iptables-restore --noflush), the same as a shell script that can "
                                       "be run again to reload (iptables-script / ip6tables-script), pf, "
                                       "or a Cisco extended ACL. Shared "
                                       "ports (443, 80 ...) are only ever blocked together with a "
                                       "service's prefixes.")
    _config(pr, "the config with the [policy] section")
    pr.add_argument("--format", choices=("nftables", "iptables", "ip6tables", "iptables-script", "ip6tables-script",
                                         "pf", "cisco-acl"), required=True, metavar="FORMAT",
                    help="the firewall's rule language (required): nftables, iptables, ip6tables, "
                         "iptables-script, ip6tables-script, pf or cisco-acl")
    pr.add_argument("--out", metavar="FILE", help="write here instead of stdout")
    pr.set_defaults(func=cmd_policy_render, log_level="warning")
    pol.set_defaults(func=lambda a: pol.print_help() or 2, log_level="warning")

    m = sub.add_parser("demo", help="collector + simulated router + live top lists",
                       description="Starts the collector on loopback and a built-in exporter that sends "
                                   "NetFlow v9 for simulated hosts (IM, P2P, VoIP, collaboration and web), "
                                   "and prints the top services and hosts every few seconds until Ctrl-C.")
    m.add_argument("--config", "-c", metavar="FILE",
                   help="use this config's [policy] and [classify] (catalogue, services, app ids)")
    m.add_argument("--db", metavar="PATH", help="database (default: a temporary folder)")
    m.add_argument("--hosts", type=int, default=40, metavar="N", help="simulated internal hosts (default 40)")
    m.add_argument("--every", type=float, default=5.0, metavar="SECONDS", help="screen refresh (default 5)")
    m.add_argument("--duration", type=float, metavar="SECONDS", help="stop after this long (default: Ctrl-C)")
    m.add_argument("--port", type=int, default=0, help="loopback UDP port for the collector (default: any free)")
    m.set_defaults(func=cmd_demo, log_level="warning")
    return p


def _duration(text: str) -> float | None:
    """--since: seconds, or None for 'all'; a bad value is argparse's usage error (exit 2)."""
    from collector.config import parse_duration

    if text == "all":
        return None
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


CONFIG_HELP = ("; default $IMFLOW_CONFIG, else /etc/imflow/imflow.toml when present, else the "
               "built-in defaults")


def _config(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--config", "-c", metavar="FILE", help=what + CONFIG_HELP)


def _window(p: argparse.ArgumentParser, since: str, config: str) -> None:
    """The configuration, the database and the period: shared by top, violations and report."""
    _config(p, config)
    p.add_argument("--db", metavar="PATH",
                   help="database (default $IMFLOW_DB, else store.path of the config, ./imflow.db)")
    p.add_argument("--since", default=since, type=_duration, metavar="DURATION",
                   help=f"how far back: 15m, 24h, 7d ... or 'all' (default {since})")
    p.add_argument("--from", dest="start", metavar="TIME",
                   help="start: ISO date/time, UTC unless it gives an offset (2026-11-28T14:00, "
                        "2026-11-28T14:00+01:00), or UNIX seconds; overrides --since")
    p.add_argument("--to", "--until", dest="end", metavar="TIME", help="end, like --from (default now)")


def _filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--service", action="append", metavar="ID", help="only this service (repeatable)")
    p.add_argument("--category", action="append", metavar="NAME", help="im, p2p, voip, collab or other (repeatable)")
    p.add_argument("--host", action="append", metavar="ADDR|CIDR", help="only these internal hosts (repeatable)")
