"""The `[snmp]` section into targets: one per flow exporter, SNMPv2c communities and SNMPv3 USM
users (RFC 3414; AES RFC 3826; SHA-2 RFC 7860), with secrets that never reach a log or an
error message.

The keys, their defaults and each key's check are collector.config's schema; this module adds
the rules between keys: which keys go with which version, a secret from the file or from the
environment, protocols and keys in pairs, one target per exporter. Every problem is a
`ConfigError` naming the key."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from collector import config as C
from collector.config import AUTH_PROTOCOLS, PRIV_PROTOCOLS, ConfigError, Secret

__all__ = ["AUTH_PROTOCOLS", "PRIV_PROTOCOLS", "Secret", "Target", "parse_targets", "targets_of"]


@dataclass(frozen=True)
class Target:
    exporter: str
    host: str
    port: int
    version: str  # "2c" or "3"
    interval: float = C.default("snmp.interval")
    timeout: float = C.default("snmp.timeout")  # per request, seconds
    retries: int = C.default("snmp.retries")
    backoff_max: float = C.default("snmp.backoff_max")
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


_V2C_KEYS = ("community", "community_env")
_V3_KEYS = ("user", "auth_protocol", "auth_key", "auth_key_env", "priv_protocol", "priv_key",
            "priv_key_env", "context")


def _secret(prefix: str, table: Mapping, name: str, env: Mapping[str, str], min_length: int) -> Secret | None:
    """`name` in the file or `name_env` naming an environment variable; never echoes it."""
    key, env_key = f"{prefix}.{name}", f"{prefix}.{name}_env"
    value, var = table[name], table[f"{name}_env"]
    if value is not None and var is not None:
        raise ConfigError(key, f"give either {name} or {name}_env, not both")
    if var is None:
        return value  # checked by the schema
    if var not in env:
        raise ConfigError(env_key, f"environment variable {var} is not set")
    return C.check_secret(env_key, env[var], min_length, origin=f" (from ${var})")


def _target(prefix: str, table: Mapping[str, Any], env: Mapping[str, str]) -> Target:
    version = table["version"]
    for k in (_V3_KEYS if version == "2c" else _V2C_KEYS):
        if table[k] is not None:
            raise ConfigError(f"{prefix}.{k}", f"not used with version {version}")
    host, port = C.split_host_port(table["address"]) if table["address"] is not None else (table["exporter"], None)
    opts: dict[str, Any] = {"exporter": table["exporter"], "host": host, "port": port or C.SNMP_PORT,
                            "version": version, **{k: table[k] for k in ("interval", "timeout", "retries",
                                                                          "backoff_max")}}
    if version == "2c":
        opts["community"] = _secret(prefix, table, "community", env, 1)
        if opts["community"] is None:
            raise ConfigError(f"{prefix}.community", "required for version 2c (or community_env)")
        return Target(**opts)
    if table["user"] is None:
        raise ConfigError(f"{prefix}.user", "required for version 3")
    opts["user"], opts["context"] = table["user"], table["context"] or ""
    for kind in ("auth", "priv"):
        key = _secret(prefix, table, f"{kind}_key", env, 8)
        proto = table[f"{kind}_protocol"]
        if (proto is None) != (key is None):
            missing = f"{kind}_protocol" if proto is None else f"{kind}_key"
            given = f"{kind}_key" if proto is None else f"{kind}_protocol"
            raise ConfigError(f"{prefix}.{missing}", f"required with {given}")
        if proto is not None:
            opts[f"{kind}_protocol"], opts[f"{kind}_key"] = proto, key
    if opts.get("priv_protocol") and not opts.get("auth_protocol"):
        raise ConfigError(f"{prefix}.priv_protocol", "privacy needs authentication (auth_protocol, auth_key)")
    return Target(**opts)


def targets_of(section: Mapping[str, Any], env: Mapping[str, str] = os.environ) -> list[Target]:
    """The checked `[snmp]` section (`cfg["snmp"]`) -> targets. Raises ConfigError."""
    targets: list[Target] = []
    seen: dict[str, int] = {}
    for i, table in enumerate(section["targets"]):
        target = _target(f"snmp.targets[{i}]", table, env)
        if target.exporter in seen:
            raise ConfigError(f"snmp.targets[{i}].exporter",
                              f"{target.exporter}: already used by snmp.targets[{seen[target.exporter]}]")
        seen[target.exporter] = i
        targets.append(target)
    return targets


def parse_targets(section: Any, env: Mapping[str, str] = os.environ) -> list[Target]:
    """An `[snmp]` table as a file writes it (None: no section) -> targets: the schema's checks,
    then the rules between keys. Raises ConfigError."""
    if section is None:
        return []
    return targets_of(C.check_section("snmp", section), env)
