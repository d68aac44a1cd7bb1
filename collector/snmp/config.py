"""The `[snmp]` section: targets (one per flow exporter), SNMPv2c communities and SNMPv3 USM
users (RFC 3414; AES RFC 3826; SHA-2 RFC 7860), with secrets that never reach a log or an
error message."""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

DEFAULT_PORT = 161
DEFAULT_INTERVAL = 60.0
DEFAULT_TIMEOUT = 2.0
DEFAULT_RETRIES = 1
DEFAULT_BACKOFF_MAX = 600.0

AUTH_PROTOCOLS = ("md5", "sha", "sha224", "sha256", "sha384", "sha512")
# aes192/aes256: key extension of draft-blumenthal (net-snmp's AES192/AES256);
# aes192c/aes256c: Reeder's (Cisco's)
PRIV_PROTOCOLS = ("des", "3des", "aes", "aes192", "aes256", "aes192c", "aes256c")
_PROTO_ALIASES = {"sha1": "sha", "aes128": "aes", "3desede": "3des"}


class SnmpConfigError(ValueError):
    """One line naming the key; never contains a secret's value."""

    def __init__(self, key: str, message: str):
        super().__init__(f"{key}: {message}")
        self.key = key


class Secret:
    """A community or key: repr and str never show it; `reveal()` does."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class Target:
    exporter: str
    host: str
    port: int
    version: str  # "2c" or "3"
    interval: float = DEFAULT_INTERVAL
    timeout: float = DEFAULT_TIMEOUT  # per request, seconds
    retries: int = DEFAULT_RETRIES
    backoff_max: float = DEFAULT_BACKOFF_MAX
    user: str = ""
    auth_protocol: str = ""  # "" (noAuthNoPriv) or one of AUTH_PROTOCOLS
    priv_protocol: str = ""  # "" (no privacy) or one of PRIV_PROTOCOLS
    context: str = ""
    community: Secret | None = field(default=None, repr=False)
    auth_key: Secret | None = field(default=None, repr=False)
    priv_key: Secret | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        for name in ("community", "auth_key", "priv_key"):
            value = getattr(self, name)
            if isinstance(value, str):
                object.__setattr__(self, name, Secret(value))

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def security_level(self) -> str:
        if self.version != "3":
            return ""
        if not self.auth_protocol:
            return "noAuthNoPriv"
        return "authPriv" if self.priv_protocol else "authNoPriv"

    def secrets(self) -> list[str]:
        return [s.reveal() for s in (self.community, self.auth_key, self.priv_key) if s]


_COMMON_KEYS = {"exporter", "address", "version", "interval", "timeout", "retries", "backoff_max"}
_V2C_KEYS = {"community", "community_env"}
_V3_KEYS = {"user", "auth_protocol", "auth_key", "auth_key_env", "priv_protocol", "priv_key",
            "priv_key_env", "context"}
_SECTION_KEYS = {"targets", "interval", "timeout", "retries", "backoff_max"}


def _seconds(key: str, value: Any, lo: float, hi: float) -> float:
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*", value)
        if not m:
            raise SnmpConfigError(key, f"{value!r}: not a duration (like 500ms, 30s, 5m)")
        value = float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[m.group(2) or "s"]
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SnmpConfigError(key, f"{value!r}: expected a number of seconds")
    if not lo <= value <= hi:
        raise SnmpConfigError(key, f"{value:g}: out of range {lo:g}-{hi:g} seconds")
    return float(value)


def _integer(key: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SnmpConfigError(key, f"{value!r}: expected an integer")
    if not lo <= value <= hi:
        raise SnmpConfigError(key, f"{value}: out of range {lo}-{hi}")
    return value


def _text(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise SnmpConfigError(key, f"{value!r}: expected a string")
    return value


def _protocol(key: str, value: Any, choices: tuple[str, ...]) -> str:
    name = re.sub(r"[-_ ]", "", _text(key, value).lower())
    name = _PROTO_ALIASES.get(name, name)
    if name not in choices:
        raise SnmpConfigError(key, f"{value!r}: expected one of {', '.join(choices)}")
    return name


def _secret(prefix: str, table: Mapping, name: str, env: Mapping[str, str],
            min_length: int) -> Secret | None:
    """`name` in the file or `name_env` naming an environment variable; never echoes it."""
    key, env_key, origin = f"{prefix}.{name}", f"{prefix}.{name}_env", ""
    if name in table and f"{name}_env" in table:
        raise SnmpConfigError(key, f"give either {name} or {name}_env, not both")
    if name in table:
        value = table[name]
        if not isinstance(value, str):
            raise SnmpConfigError(key, "expected a string (value not shown)")
    elif f"{name}_env" in table:
        var = _text(env_key, table[f"{name}_env"])
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", var):
            raise SnmpConfigError(env_key, f"{var!r}: not an environment variable name")
        if var not in env:
            raise SnmpConfigError(env_key, f"environment variable {var} is not set")
        value, key, origin = env[var], env_key, f" (from ${var})"
    else:
        return None
    if len(value) < min_length:
        raise SnmpConfigError(key, f"too short{origin}: at least {min_length} characters (value not shown)")
    if len(value) > 255 or any(c in value for c in "\r\n\0"):
        raise SnmpConfigError(key, f"longer than 255 characters or has a line break{origin} (value not shown)")
    return Secret(value)


def _split_address(key: str, text: str) -> tuple[str, int | None]:
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\](?::(\d+))?", text)
    if m:
        host, port = m.group(1), m.group(2)
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:  # a bare name, IPv4 or IPv6 address
        host, port = text, None
    try:
        host = str(ipaddress.ip_address(host))
    except ValueError:
        if ":" in host or not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,252})", host):
            raise SnmpConfigError(key, f"{text!r}: expected host, host:port or [ipv6]:port") from None
    if port is None:
        return host, None
    if not port.isdigit():
        raise SnmpConfigError(key, f"{text!r}: the port is not a number")
    if not 1 <= int(port) <= 65535:
        raise SnmpConfigError(key, f"{text!r}: port out of range 1-65535")
    return host, int(port)


def _target(i: int, table: Any, defaults: dict, env: Mapping[str, str]) -> Target:
    prefix = f"snmp.targets[{i}]"
    if not isinstance(table, Mapping):
        raise SnmpConfigError(prefix, "expected a table")
    for k in table:
        if k not in _COMMON_KEYS | _V2C_KEYS | _V3_KEYS:
            raise SnmpConfigError(f"{prefix}.{k}", "unknown key")
    if "exporter" not in table:
        raise SnmpConfigError(f"{prefix}.exporter", "required (the flow exporter's address)")
    raw = _text(f"{prefix}.exporter", table["exporter"])
    try:
        exporter = str(ipaddress.ip_address(raw))
    except ValueError:
        raise SnmpConfigError(f"{prefix}.exporter", f"{raw!r}: not an IP address") from None
    host, port = exporter, None
    if "address" in table:
        host, port = _split_address(f"{prefix}.address", _text(f"{prefix}.address", table["address"]))
    version = table.get("version", "2c")
    if version not in ("2c", "3"):
        raise SnmpConfigError(f"{prefix}.version", f"{version!r}: expected 2c or 3")
    for k in table:
        if k in (_V3_KEYS if version == "2c" else _V2C_KEYS):
            raise SnmpConfigError(f"{prefix}.{k}", f"not used with version {version}")
    opts: dict[str, Any] = dict(
        exporter=exporter, host=host, port=port or DEFAULT_PORT, version=version,
        interval=_seconds(f"{prefix}.interval", table.get("interval", defaults["interval"]), 1, 86400),
        timeout=_seconds(f"{prefix}.timeout", table.get("timeout", defaults["timeout"]), 0.05, 60),
        retries=_integer(f"{prefix}.retries", table.get("retries", defaults["retries"]), 0, 10),
        backoff_max=defaults["backoff_max"],
    )
    if version == "2c":
        opts["community"] = _secret(prefix, table, "community", env, 1)
        if opts["community"] is None:
            raise SnmpConfigError(f"{prefix}.community", "required for version 2c (or community_env)")
        return Target(**opts)
    if "user" not in table:
        raise SnmpConfigError(f"{prefix}.user", "required for version 3")
    opts["user"] = _text(f"{prefix}.user", table["user"])
    if not 1 <= len(opts["user"]) <= 32:
        raise SnmpConfigError(f"{prefix}.user", "expected 1-32 characters")
    opts["context"] = _text(f"{prefix}.context", table.get("context", ""))
    for kind, choices in (("auth", AUTH_PROTOCOLS), ("priv", PRIV_PROTOCOLS)):
        key = _secret(prefix, table, f"{kind}_key", env, 8)
        proto = table.get(f"{kind}_protocol")
        if (proto is None) != (key is None):
            missing = f"{kind}_protocol" if proto is None else f"{kind}_key"
            given = f"{kind}_key" if proto is None else f"{kind}_protocol"
            raise SnmpConfigError(f"{prefix}.{missing}", f"required with {given}")
        if proto is not None:
            opts[f"{kind}_protocol"] = _protocol(f"{prefix}.{kind}_protocol", proto, choices)
            opts[f"{kind}_key"] = key
    if opts.get("priv_protocol") and not opts.get("auth_protocol"):
        raise SnmpConfigError(f"{prefix}.priv_protocol", "privacy needs authentication (auth_protocol, auth_key)")
    return Target(**opts)


def parse_targets(section: Any, env: Mapping[str, str] = os.environ) -> list[Target]:
    """Validate the `[snmp]` section: `targets` (list of tables) and optional defaults
    `interval`, `timeout`, `retries`, `backoff_max`. Raises SnmpConfigError."""
    if section is None:
        return []
    if not isinstance(section, Mapping):
        raise SnmpConfigError("snmp", "expected a table")
    for k in section:
        if k not in _SECTION_KEYS:
            raise SnmpConfigError(f"snmp.{k}", "unknown key")
    defaults = {
        "interval": _seconds("snmp.interval", section.get("interval", DEFAULT_INTERVAL), 1, 86400),
        "timeout": _seconds("snmp.timeout", section.get("timeout", DEFAULT_TIMEOUT), 0.05, 60),
        "retries": _integer("snmp.retries", section.get("retries", DEFAULT_RETRIES), 0, 10),
        "backoff_max": _seconds("snmp.backoff_max", section.get("backoff_max", DEFAULT_BACKOFF_MAX), 1, 86400),
    }
    tables = section.get("targets", [])
    if not isinstance(tables, list):
        raise SnmpConfigError("snmp.targets", "expected a list of tables ([[snmp.targets]])")
    targets: list[Target] = []
    seen: dict[str, int] = {}
    for i, table in enumerate(tables):
        target = _target(i, table, defaults, env)
        if target.exporter in seen:
            raise SnmpConfigError(f"snmp.targets[{i}].exporter",
                                  f"{target.exporter}: already used by snmp.targets[{seen[target.exporter]}]")
        seen[target.exporter] = i
        targets.append(target)
    return targets


