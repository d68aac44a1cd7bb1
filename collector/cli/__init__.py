"""The `imflow` command line: `main`, the only place that configures logging and prints. The
commands and their flags are in `parser`, what each command does in `commands`; the man page and
the shell completions are generated from the parser (`python3 -m collector.cli.docs`)."""

from __future__ import annotations

import logging
import os
import sys

from collector.cli.parser import build_parser
from collector.config import ConfigError
from collector.store.errors import StoreError
from collector.text import LogFormatter, printable

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from collector.daemon.tuning import tune_malloc

    tune_malloc()
    handler = logging.StreamHandler()
    handler.setFormatter(LogFormatter(LOG_FORMAT))
    logging.basicConfig(level=(getattr(args, "log_level", None) or "info").upper(), handlers=[handler])
    try:
        return args.func(args) or 0
    except ConfigError as exc:
        print(f"imflow: config: {printable(exc)}", file=sys.stderr)
        return 2
    except StoreError as exc:  # the database: missing, locked, read-only, not imflow's
        print(f"imflow: {printable(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `imflow decode x.pcap | head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
