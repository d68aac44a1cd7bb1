"""The configuration: one TOML file, validated at load against a declared schema.

Every problem is a `ConfigError` whose text is one line naming the key
(`store.retention.minute: "2x": not a duration (like 90s, 15m, 24h, 7d, 5y)`); the CLI turns
it into exit status 2. Defaults live in the schema, so a missing file section means defaults.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from dataclasses import dataclass
from typing import Any, Callable

DEFAULT_INTERNAL = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7", "100.64.0.0/10"]
DEFAULT_LISTEN = ["0.0.0.0:2055", "[::]:2055", "0.0.0.0:4739", "[::]:4739"]


class ConfigError(Exception):
    def __init__(self, key: str, message: str):
        super().__init__(f"{key}: {message}")
        self.key = key


# --- value checkers: (key, raw value) -> normalised value, or ConfigError -----------------

def _type(kind: type | tuple, name: str) -> Callable:
    def check(key: str, v: Any) -> Any:
        if isinstance(v, bool) and kind is not bool:
            raise ConfigError(key, f"{v!r}: expected {name}")
        if not isinstance(v, kind):
            raise ConfigError(key, f"{v!r}: expected {name}")
        return v
    return check


def integer(lo: int | None = None, hi: int | None = None) -> Callable:
    def check(key: str, v: Any) -> int:
        v = _type(int, "an integer")(key, v)
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise ConfigError(key, f"{v}: out of range {lo if lo is not None else ''}-{hi if hi is not None else ''}")
        return v
    return check


def number(lo: float = 0.0) -> Callable:
    def check(key: str, v: Any) -> float:
        v = _type((int, float), "a number")(key, v)
        if v < lo:
            raise ConfigError(key, f"{v}: must be at least {lo}")
        return float(v)
    return check


def string(choices: tuple[str, ...] | None = None) -> Callable:
    def check(key: str, v: Any) -> str:
        v = _type(str, "a string")(key, v)
        if choices and v not in choices:
            raise ConfigError(key, f"{v!r}: expected one of {', '.join(choices)}")
        return v
    return check


boolean = _type(bool, "true or false")

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def parse_duration(text: str) -> float:
    """'90s', '15m', '24h', '7d', '2w', '5y' or a plain number of seconds -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdwy]?)\s*", str(text))
    if not m:
        raise ValueError(f"{text!r}: not a duration (like 90s, 15m, 24h, 7d, 5y)")
    return float(m.group(1)) * _UNITS.get(m.group(2) or "s", 1)


def duration(key: str, v: Any) -> float:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    try:
        return parse_duration(_type(str, "a duration")(key, v))
    except ValueError as exc:
        raise ConfigError(key, str(exc)) from None


def network(key: str, v: Any) -> str:
    v = _type(str, "a network (CIDR)")(key, v)
    try:
        return str(ipaddress.ip_network(v, strict=False))
    except ValueError:
        raise ConfigError(key, f"{v!r}: not a network (like 10.0.0.0/8 or 2001:db8::/32)") from None


def address(key: str, v: Any) -> str:
    v = _type(str, "an address")(key, v)
    try:
        return str(ipaddress.ip_address(v))
    except ValueError:
        raise ConfigError(key, f"{v!r}: not an IP address") from None


def parse_endpoint(text: str, default_port: int | None = None) -> tuple[str, int]:
    """'0.0.0.0:2055', '[::]:4739', ':2055', '2055' -> (host, port)."""
    text = text.strip()
    m = re.fullmatch(r"\[([0-9A-Fa-f:.%\w]+)\]:(\d+)|([^:\[\]]*):(\d+)|(\d+)", text)
    if m is None:
        if default_port is not None:
            host, port = text.strip("[]"), default_port
        else:
            raise ValueError(f"{text!r}: expected ADDR:PORT (like 0.0.0.0:2055 or [::]:4739)")
    elif m.group(5):
        host, port = "0.0.0.0", int(m.group(5))
    else:
        host = m.group(1) if m.group(1) is not None else (m.group(3) or "0.0.0.0")
        port = int(m.group(2) or m.group(4))
    if not 0 <= port <= 65535:
        raise ValueError(f"{text!r}: port {port} out of range 0-65535")
    if host != "localhost":
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"{text!r}: {host!r} is not an IP address") from None
    return host, port


def endpoint(key: str, v: Any) -> str:
    v = _type(str, "ADDR:PORT")(key, v)
    try:
        parse_endpoint(v)
    except ValueError as exc:
        raise ConfigError(key, str(exc)) from None
    return v


def list_of(check: Callable) -> Callable:
    def run(key: str, v: Any) -> list:
        v = _type(list, "a list")(key, v)
        return [check(f"{key}[{i}]", x) for i, x in enumerate(v)]
    return run


def table_of(check_key: Callable, check_value: Callable) -> Callable:
    def run(key: str, v: Any) -> dict:
        v = _type(dict, "a table")(key, v)
        return {check_key(f"{key}.{k}", k): check_value(f"{key}.{k}", x) for k, x in v.items()}
    return run


def passthrough(kind: type, name: str) -> Callable:
    """Checked by the component that owns it (the catalogue, for example)."""
    return _type(kind, name)


# --- the schema -------------------------------------------------------------------------

SCHEMA: dict[str, dict[str, tuple[Callable, Any]]] = {
    "collector": {
        "listen": (list_of(endpoint), DEFAULT_LISTEN),
        "rcvbuf": (integer(65536, 1 << 31), 32 << 20),
        "refresh_time": (duration, 60.0),
        "status_interval": (duration, 60.0),
        "batch_size": (integer(1, 1_000_000), 2048),
        "batch_delay": (number(0.0), 0.1),
        "template_state": (string(), ""),
    },
    "exporters": {
        "allow": (list_of(network), []),
        "sampling": (table_of(address, integer(1, 1 << 31)), {}),
    },
    "limits": {
        "max_sessions": (integer(1), 10_000),
        "max_templates_per_session": (integer(1), 512),
        "max_templates": (integer(1), 50_000),
        "max_pending_per_session": (integer(0), 512),
        "max_pending_bytes_per_session": (integer(0), 1 << 20),
        "max_pending_bytes": (integer(0), 64 << 20),
        "pending_max_age": (duration, 120.0),
        "max_names_per_session": (integer(0), 4096),
        "max_open_bins": (integer(1000), 2_000_000),
    },
    "store": {
        "path": (string(), "imflow.db"),
        "retention_minute": (duration, 2 * 86400.0),
        "retention_hour": (duration, 90 * 86400.0),
        "retention_day": (duration, 5 * 365 * 86400.0),
    },
    "classify": {
        "internal": (list_of(network), DEFAULT_INTERNAL),
        "catalogue": (string(), ""),
        "service": (passthrough(list, "a list of [[classify.service]] tables"), []),
        "app_ids": (table_of(string(), string()), {}),
    },
    "metrics": {
        "listen": (endpoint, ""),
        "max_host_series": (integer(0), 5000),
    },
    "log": {
        "level": (string(("debug", "info", "warning", "error")), "info"),
    },
    # Checked in depth by collector.policy.parse_policy against the catalogue.
    "policy": {
        "default": (string(("allow", "monitor", "block")), "monitor"),
        "prefix_block": (string(("service-ports", "all")), "service-ports"),
        "categories": (passthrough(dict, "a table of category = action"), {}),
        "services": (passthrough(dict, "a table of service = action"), {}),
        "exceptions": (passthrough(list, "a list of [[policy.exceptions]] tables"), []),
        "hosts_file": (string(), ""),
        "reverse_dns": (boolean, False),
    },
    # Checked in depth by collector.snmp.parse_targets.
    "snmp": {
        "targets": (passthrough(list, "a list of [[snmp.targets]] tables"), []),
        "timeout": (number(0.1), 2.0),
        "retries": (integer(0, 10), 1),
    },
}


@dataclass
class Config:
    values: dict[str, dict[str, Any]]
    path: str | None = None

    def __getitem__(self, section: str) -> dict[str, Any]:
        return self.values[section]

    def get(self, dotted: str) -> Any:
        section, key = dotted.split(".", 1)
        return self.values[section][key]

    def set(self, dotted: str, value: Any) -> None:
        """Apply a command-line override, checked like the file's value."""
        section, key = dotted.split(".", 1)
        check, _ = SCHEMA[section][key]
        self.values[section][key] = check(dotted, value)


def validate(raw: dict[str, Any], extra_sections: dict | None = None) -> Config:
    schema = dict(SCHEMA, **(extra_sections or {}))
    values: dict[str, dict[str, Any]] = {}
    for section, value in raw.items():
        if section not in schema:
            raise ConfigError(section, f"unknown section (known: {', '.join(sorted(schema))})")
        if not isinstance(value, dict):
            raise ConfigError(section, "expected a table")
        for key in value:
            if key not in schema[section]:
                raise ConfigError(f"{section}.{key}", f"unknown key (known: {', '.join(sorted(schema[section]))})")
    for section, keys in schema.items():
        given = raw.get(section, {})
        values[section] = {}
        for key, (check, default) in keys.items():
            if key in given:
                values[section][key] = check(f"{section}.{key}", given[key])
            else:
                values[section][key] = default() if callable(default) else _copy(default)
    return Config(values)


def _copy(v: Any) -> Any:
    return list(v) if isinstance(v, list) else dict(v) if isinstance(v, dict) else v


def load(path: str | None) -> Config:
    """Read and validate a TOML file (None: the embedded defaults)."""
    if path is None:
        return validate({})
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(path, "no such file") from None
    except OSError as exc:
        raise ConfigError(path, exc.strerror or str(exc)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, f"not valid TOML: {exc}") from None
    cfg = validate(raw)
    cfg.path = path
    return cfg
