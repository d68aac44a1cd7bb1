"""Where the query commands look: which configuration, which database, which names exist.

Precedence, for every command that reads the database (`top`, `violations`, `report`) or the
configuration (`services`, `policy render`): the flag, then the environment, then the default.

- configuration: `--config FILE`, else `$IMFLOW_CONFIG`, else /etc/imflow/imflow.toml when it
  exists, else the embedded defaults;
- database: `--db PATH`, else `$IMFLOW_DB`, else `store.path` of that configuration (default
  ./imflow.db), so a command run on the server reads what the daemon writes.
"""

from __future__ import annotations

import difflib
import os

from collector import config

DEFAULT_CONFIG = "/etc/imflow/imflow.toml"
CONFIG_ENV = "IMFLOW_CONFIG"
DB_ENV = "IMFLOW_DB"


class UsageError(ValueError):
    """A flag names something that does not exist: exit status 2, one line."""


def config_path(flag: str | None, default: str = DEFAULT_CONFIG) -> str | None:
    """The configuration file to read, or None for the embedded defaults."""
    if flag:
        return flag
    if os.environ.get(CONFIG_ENV):
        return os.environ[CONFIG_ENV]
    return default if os.path.exists(default) else None


def load(flag: str | None) -> config.Config:
    return config.load(config_path(flag))


def db_path(flag: str | None, cfg: config.Config) -> str:
    return flag or os.environ.get(DB_ENV) or cfg.get("store.path")


def check_names(values: list[str] | None, known, flag: str, kind: str, list_known: bool = False) -> None:
    """Every value of a filter flag must name a known service/category: a typo would otherwise
    be an empty answer that looks like "nobody used it"."""
    known = list(known)
    for value in values or ():
        if value in known:
            continue
        close = difflib.get_close_matches(value, known, n=1)
        hint = f"did you mean {close[0]}?" if close else ""
        if list_known:
            hint = "; ".join(filter(None, (hint, "known: " + ", ".join(known))))
        elif not close:
            hint = "`imflow services` lists them"
        raise UsageError(f"{flag} {value!r}: unknown {kind} ({hint})")
