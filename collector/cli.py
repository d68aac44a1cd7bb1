"""The `imflow` command line. The only place that configures logging and prints."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from collector import __version__
from collector.config import ConfigError

EPILOG = """\
commands:
  decode CAPTURE        print every flow record in a pcap/pcapng of export traffic
  check-config FILE     validate a configuration file (exit 2 on the first problem)

Exit status: 0 success, 1 runtime failure, 2 bad usage or configuration.
Docs: README.md (configuration reference, metrics, schema).
"""


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    logging.basicConfig(level=getattr(args, "log_level", "INFO").upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args) or 0
    except ConfigError as exc:
        print(f"imflow: config: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `imflow decode x.pcap | head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="imflow",
        description="NetFlow v5/v9 and IPFIX collector: who on the network uses instant "
                    "messaging, P2P file sharing and VoIP, how much, and what to block.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"imflow {__version__}")
    sub = p.add_subparsers(title="commands", metavar="COMMAND")

    d = sub.add_parser("decode", help="decode a capture of NetFlow/IPFIX export traffic",
                       description="Read a pcap or pcapng file of captured export datagrams (UDP, any "
                                   "port, IPv4/IPv6; Ethernet, Linux cooked, raw IP) and print every "
                                   "flow record. Templates and options carry across datagrams in "
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
    c.add_argument("file")
    c.set_defaults(func=cmd_check_config, log_level="warning")
    return p


def cmd_check_config(args) -> int:
    from collector import config

    config.load(args.file)
    print(f"{args.file}: ok")
    return 0


def cmd_decode(args) -> int:
    from collector.capture import CaptureError
    from collector.decodeview import decode_capture

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


if __name__ == "__main__":
    raise SystemExit(main())
