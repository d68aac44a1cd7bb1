"""The configuration: one TOML file, validated at load against one schema.

`SCHEMA` owns every key, SNMP targets included: its check, its default and one line saying what
it does. docs/configuration.md is generated from it (`python3 -m collector.config --markdown
FILE`) and components take their defaults from it (`default("limits.max_sessions")`).

Every problem is a `ConfigError` whose text is one line naming the key
(`store.retention_minute: '2x': not a duration (like 500ms, 90s, 15m, 24h, 7d, 5y)`); the CLI
turns it into exit status 2. Durations have one grammar (`parse_duration`) and a range per key.
A `Config` is not written after load: `replaced()` returns a new, checked one.

This module imports nothing from `collector`, so any package may read its defaults here.
"""

from __future__ import annotations

import copy
import ipaddress
import math
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

DEFAULT_INTERNAL = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7", "100.64.0.0/10"]
DEFAULT_LISTEN = ["0.0.0.0:2055", "[::]:2055", "0.0.0.0:4739", "[::]:4739", "0.0.0.0:6343", "[::]:6343"]
SNMP_PORT = 161  # the agent's UDP port (RFC 3417)
AUTH_PROTOCOLS = ("md5", "sha", "sha224", "sha256", "sha384", "sha512")
# aes192/aes256: key extension of draft-blumenthal (net-snmp's AES192/AES256);
# aes192c/aes256c: Reeder's (Cisco's)
PRIV_PROTOCOLS = ("des", "3des", "aes", "aes192", "aes256", "aes192c", "aes256c")
_PROTO_ALIASES = {"sha1": "sha", "aes128": "aes", "3desede": "3des"}


class ConfigError(Exception):
    """One line naming the key; never carries a secret's value."""

    def __init__(self, key: str, message: str):
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


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

    def __deepcopy__(self, memo: dict) -> Secret:
        return self


# --- durations: one grammar for the file and the command line ---------------------------

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def parse_duration(text: str) -> float:
    """'500ms', '90s', '15m', '24h', '7d', '2w', '5y' or a plain number of seconds -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|[smhdwy])?\s*", str(text))
    if not m:
        raise ValueError(f"{text!r}: not a duration (like 500ms, 90s, 15m, 24h, 7d, 5y)")
    return float(m.group(1)) * _UNITS[m.group(2) or "s"]


def format_duration(seconds: float) -> str:
    """Seconds as the docs and messages write them: 0.05 -> '50ms', 60 -> '60s', 86400 -> '1d'."""
    if 0 < seconds < 1:
        return f"{seconds * 1000:g}ms"
    if seconds < 600 or seconds % 60:
        return f"{seconds:g}s"
    for unit in ("y", "d", "h", "m"):
        if seconds % _UNITS[unit] == 0:
            return f"{seconds / _UNITS[unit]:g}{unit}"
    return f"{seconds:g}s"


# --- checks: (key, value as written) -> normalised value, or ConfigError ------------------
# Each check has a `kind` (what the docs call its type) and accepts its own output again, so a
# checked Config can be checked once more (`Config.replaced`).

def _kind(kind: str) -> Callable[[Callable], Callable]:
    def mark(check: Callable) -> Callable:
        check.kind = kind
        return check
    return mark


def _type(kind: type | tuple, name: str) -> Callable:
    def check(key: str, v: Any) -> Any:
        if (isinstance(v, bool) and kind is not bool) or not isinstance(v, kind):
            raise ConfigError(key, f"{v!r}: expected {name}")
        return v
    return check


def integer(lo: int | None = None, hi: int | None = None) -> Callable:
    @_kind("integer" + (f" {lo}–{hi}" if hi is not None else f" ≥ {lo}" if lo is not None else ""))
    def check(key: str, v: Any) -> int:
        v = _type(int, "an integer")(key, v)
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise ConfigError(key, f"{v}: out of range {lo if lo is not None else ''}-{hi if hi is not None else ''}")
        return v
    return check


def duration(lo: float = 0.0, hi: float | None = None, *, inclusive: bool = False) -> Callable:
    """A number of seconds or a string with a unit, more than `lo` (at least, if inclusive)."""
    if hi is not None:
        span = f"{format_duration(lo)} to {format_duration(hi)}"
    else:
        span = f"{'at least' if inclusive else 'more than'} {format_duration(lo)}"

    @_kind(f"duration, {span}")
    def check(key: str, v: Any) -> float:
        if isinstance(v, str):
            try:
                seconds = parse_duration(v)
            except ValueError as exc:
                raise ConfigError(key, str(exc)) from None
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            if not math.isfinite(v):
                raise ConfigError(key, f"{v}: not a finite number of seconds")
            seconds = float(v)
        else:
            raise ConfigError(key, f"{v!r}: expected a duration (a number of seconds, or like 500ms, 30s, 5m)")
        if seconds < lo or (seconds == lo and not inclusive) or (hi is not None and seconds > hi):
            raise ConfigError(key, f"{v!r}: out of range ({span})")
        return seconds
    return check


def string(choices: tuple[str, ...] | None = None, length: tuple[int, int] | None = None) -> Callable:
    @_kind(f"one of {', '.join(choices)}" if choices else
           f"string of {length[0]}–{length[1]} characters" if length else "string")
    def check(key: str, v: Any) -> str:
        v = _type(str, "a string")(key, v)
        if choices and v not in choices:
            raise ConfigError(key, f"{v!r}: expected one of {', '.join(choices)}")
        if length and not length[0] <= len(v) <= length[1]:
            raise ConfigError(key, f"expected {length[0]}-{length[1]} characters")
        return v
    return check


boolean = _kind("true or false")(_type(bool, "true or false"))


@_kind("network (CIDR)")
def network(key: str, v: Any) -> str:
    v = _type(str, "a network (CIDR)")(key, v)
    try:
        return str(ipaddress.ip_network(v, strict=False))
    except ValueError:
        raise ConfigError(key, f"{v!r}: not a network (like 10.0.0.0/8 or 2001:db8::/32)") from None


@_kind("IP address")
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


def endpoint(optional: bool = False, bare: str | None = None) -> Callable:
    """ADDR:PORT to listen on; `optional`: the empty string turns the listener off; `bare`: the
    address a bare PORT (or :PORT) means, when not every address (an endpoint without
    authentication is loopback unless asked otherwise)."""
    @_kind('ADDR:PORT, or "" for none' if optional else "ADDR:PORT")
    def check(key: str, v: Any) -> str:
        v = _type(str, "ADDR:PORT")(key, v)
        if optional and v == "":
            return v
        try:
            parse_endpoint(v)
        except ValueError as exc:
            raise ConfigError(key, str(exc)) from None
        if bare is not None and re.fullmatch(r"\s*:?\d+\s*", v):
            v = f"{bare}:{v.strip().lstrip(':')}"
        return v
    return check


@_kind("string of 1–64 characters, no colon or control character")
def web_user(key: str, v: Any) -> str:
    v = _type(str, "a string")(key, v)
    if v and not re.fullmatch(r"[^\x00-\x1f\x7f-\x9f:]{1,64}", v):
        raise ConfigError(key, "expected 1-64 characters, no colon or control character (RFC 7617)")
    return v


PASSWORD_HASH = re.compile(r"scrypt\$(\d{1,2})\$(\d{1,2})\$(\d{1,2})\$([A-Za-z0-9+/=]{16,88})\$([A-Za-z0-9+/=]{44})")


@_kind("scrypt$LOG2N$R$P$SALT$HASH")
def password_hash(key: str, v: Any) -> str:
    v = _type(str, "a string")(key, v)
    m = PASSWORD_HASH.fullmatch(v)
    if v and (m is None or not 10 <= int(m.group(1)) <= 20 or not 1 <= int(m.group(2)) <= 32
              or not 1 <= int(m.group(3)) <= 16):
        raise ConfigError(key, "not a password hash: run `imflow web --hash-password` and paste what it prints")
    return v


def split_host_port(text: str) -> tuple[str, int | None]:
    """'host', 'host:port', 'ipv6' or '[ipv6]:port' -> (host, port or None); ValueError."""
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
            raise ValueError(f"{text!r}: expected host, host:port or [ipv6]:port") from None
    if port is None:
        return host, None
    if not port.isdigit():
        raise ValueError(f"{text!r}: the port is not a number")
    if not 1 <= int(port) <= 65535:
        raise ValueError(f"{text!r}: port out of range 1-65535")
    return host, int(port)


@_kind('"unix:/PATH", loopback ADDR:PORT, or "" for none')
def dnstap_endpoint(key: str, v: Any) -> str:
    v = _type(str, "a string")(key, v).strip()
    if not v:
        return v
    if v.startswith("unix:"):
        path = v[5:]
        if not path.startswith("/") or len(path.encode()) > 107 or "\0" in path:
            raise ConfigError(key, f"{v!r}: expected unix:/absolute/path (at most 107 octets)")
        return v
    try:
        host, port = parse_endpoint(v)
    except ValueError as exc:
        raise ConfigError(key, f"{exc}; or unix:/path") from None
    if host == "localhost" or not ipaddress.ip_address(host).is_loopback or port == 0:
        raise ConfigError(key, f"{v!r}: dnstap is unauthenticated: listen on loopback (127.0.0.1:PORT "
                               "or [::1]:PORT, PORT not 0) or a unix socket")
    return v


@_kind("host, host:port or [ipv6]:port")
def host_port(key: str, v: Any) -> str:
    v = _type(str, "a string")(key, v)
    try:
        split_host_port(v)
    except ValueError as exc:
        raise ConfigError(key, str(exc)) from None
    return v


def check_secret(key: str, v: Any, min_length: int, origin: str = "") -> Secret:
    """A community or key, from the file or (`origin`) the environment; never echoed."""
    if isinstance(v, Secret):
        v = v.reveal()
    if not isinstance(v, str):
        raise ConfigError(key, "expected a string (value not shown)")
    if len(v) < min_length:
        raise ConfigError(key, f"too short{origin}: at least {min_length} characters (value not shown)")
    if len(v) > 255 or any(c in v for c in "\r\n\0"):
        raise ConfigError(key, f"longer than 255 characters or has a line break{origin} (value not shown)")
    return Secret(v)


def secret(min_length: int) -> Callable:
    @_kind(f"secret string of {min_length}–255 characters")
    def check(key: str, v: Any) -> Secret:
        return check_secret(key, v, min_length)
    return check


@_kind("environment variable name")
def env_name(key: str, v: Any) -> str:
    v = _type(str, "a string")(key, v)
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", v):
        raise ConfigError(key, f"{v!r}: not an environment variable name")
    return v


def protocol(choices: tuple[str, ...]) -> Callable:
    @_kind(f"one of {', '.join(choices)}")
    def check(key: str, v: Any) -> str:
        name = re.sub(r"[-_ ]", "", _type(str, "a string")(key, v).lower())
        name = _PROTO_ALIASES.get(name, name)
        if name not in choices:
            raise ConfigError(key, f"{v!r}: expected one of {', '.join(choices)}")
        return name
    return check


@_kind('"2c" or "3"')
def snmp_version(key: str, v: Any) -> str:
    if not isinstance(v, str) or v not in ("2c", "3"):
        raise ConfigError(key, f"{v!r}: expected 2c or 3")
    return v


def list_of(check: Callable) -> Callable:
    @_kind(f"list of {check.kind}")
    def run(key: str, v: Any) -> list:
        v = _type(list, "a list")(key, v)
        return [check(f"{key}[{i}]", x) for i, x in enumerate(v)]
    return run


def table_of(check_key: Callable, check_value: Callable) -> Callable:
    @_kind(f"table of {check_key.kind} = {check_value.kind}")
    def run(key: str, v: Any) -> dict:
        v = _type(dict, "a table")(key, v)
        return {check_key(f"{key}.{k}", k): check_value(f"{key}.{k}", x) for k, x in v.items()}
    return run


def passthrough(kind: type, name: str) -> Callable:
    """Checked in depth by the component that owns it (the catalogue, the policy)."""
    return _kind(name)(_type(kind, name))


class _Marker:
    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return self.name


REQUIRED = _Marker("REQUIRED")  # a table in a list of tables must give this key
INHERIT = _Marker("INHERIT")  # a table's key that defaults to its section's key of the same name


@dataclass(frozen=True)
class Key:
    check: Callable[[str, Any], Any]
    default: Any  # a value, REQUIRED, INHERIT, or None (in a list's tables: not given)
    doc: str  # one line for the docs
    shown: str = ""  # the default as the docs write it, where the value would not say it well


class Tables:
    """A list of tables (`[[snmp.targets]]`), each checked against its own keys; a key whose
    default is INHERIT takes the section's value."""

    def __init__(self, name: str, keys: dict[str, Key], doc: str):
        self.name, self.keys, self.doc = name, keys, doc
        self.kind = f"list of [[{name}]] tables"

    def __call__(self, key: str, v: Any, section: Mapping[str, Any]) -> list[dict[str, Any]]:
        if not isinstance(v, list):
            raise ConfigError(key, f"expected a list of tables ([[{self.name}]])")
        return [_check_keys(f"{key}[{i}]", self.keys, x, section) for i, x in enumerate(v)]


class Table(Tables):
    """One table of keys inside a section (`[store.clickhouse]`); left out, every key takes its
    default."""

    def __init__(self, name: str, keys: dict[str, Key], doc: str):
        super().__init__(name, keys, doc)
        self.kind = f"table [{name}]"
        self.heading = f"[{name}]"

    def __call__(self, key: str, v: Any, section: Mapping[str, Any]) -> dict[str, Any]:
        return _check_keys(key, self.keys, v)

    def defaults(self) -> dict[str, Any]:
        return _check_keys(self.name, self.keys, {})


def identifier(key: str, v: Any) -> str:
    """A ClickHouse database or cluster name: letters, digits and _, not starting with a digit."""
    v = _type(str, "a string")(key, v)
    if v and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", v):
        raise ConfigError(key, f"{v!r}: expected a name of letters, digits and _ (not starting with a digit)")
    return v


identifier.kind = "name"


def database_name(key: str, v: Any) -> str:
    if not identifier(key, v):
        raise ConfigError(key, "a database name is required")
    return v


database_name.kind = "name"


def http_url(key: str, v: Any) -> str:
    v = _type(str, "a string")(key, v)
    m = re.fullmatch(r"(https?)://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::(\d{1,5}))?/?", v)
    if not m or (m.group(3) and not 0 < int(m.group(3)) < 65536):
        raise ConfigError(key, f"{v!r}: expected an HTTP URL like http://127.0.0.1:8123")
    return v.rstrip("/")


http_url.kind = "URL"


def _check_keys(prefix: str, keys: Mapping[str, Key], given: Any,
                section: Mapping[str, Any] | None = None) -> dict[str, Any]:
    if not isinstance(given, Mapping):
        raise ConfigError(prefix, "expected a table")
    for name in given:
        if name not in keys:
            raise ConfigError(f"{prefix}.{name}", f"unknown key (known: {', '.join(sorted(keys))})")
    out: dict[str, Any] = {}
    # lists of tables last: their keys default to this section's
    for name, spec in sorted(keys.items(), key=lambda item: isinstance(item[1].check, Tables)):
        key, value = f"{prefix}.{name}", given.get(name)
        if value is not None:  # TOML has no null: None is "not given"
            out[name] = spec.check(key, value, out) if isinstance(spec.check, Tables) else spec.check(key, value)
        elif spec.default is REQUIRED:
            raise ConfigError(key, f"required ({spec.doc})")
        elif spec.default is INHERIT:
            out[name] = section[name] if section else None
        else:
            out[name] = copy.deepcopy(spec.default)
    return {name: out[name] for name in keys}


# --- the schema -------------------------------------------------------------------------

_SECRET_NOTE = "(never logged)"

SNMP_TARGET = {
    "exporter": Key(address, REQUIRED, "the flow exporter's address that this agent describes"),
    "address": Key(host_port, None, f"where to poll the agent (port {SNMP_PORT} if not given)",
                   shown=f"`exporter:{SNMP_PORT}`"),
    "version": Key(snmp_version, "2c", "SNMP version: 2c (community) or 3 (USM user)"),
    "interval": Key(duration(1, 86400, inclusive=True), INHERIT, "how often this agent is polled"),
    "timeout": Key(duration(0.05, 60, inclusive=True), INHERIT, "how long to wait for each answer"),
    "retries": Key(integer(0, 10), INHERIT, "requests sent again after a timeout"),
    "backoff_max": Key(duration(1, 86400, inclusive=True), INHERIT,
                       "after failures the interval doubles, up to this"),
    "community": Key(secret(1), None, f"version 2c: the community {_SECRET_NOTE}; or community_env"),
    "community_env": Key(env_name, None, "version 2c: the environment variable that holds the community"),
    "user": Key(string(length=(1, 32)), None, "version 3: the USM user (RFC 3414)"),
    "auth_protocol": Key(protocol(AUTH_PROTOCOLS), None,
                         "version 3: authentication (SHA-2: RFC 7860); none: noAuthNoPriv"),
    "auth_key": Key(secret(8), None, f"version 3: the authentication key {_SECRET_NOTE}; or auth_key_env"),
    "auth_key_env": Key(env_name, None, "version 3: the environment variable that holds the authentication key"),
    "priv_protocol": Key(protocol(PRIV_PROTOCOLS), None,
                         "version 3: privacy (AES: RFC 3826; aes192c, aes256c: Cisco's key extension); "
                         "needs authentication; none: authNoPriv"),
    "priv_key": Key(secret(8), None, f"version 3: the privacy key {_SECRET_NOTE}; or priv_key_env"),
    "priv_key_env": Key(env_name, None, "version 3: the environment variable that holds the privacy key"),
    "context": Key(string(), None, "version 3: the context name", shown='`""`'),
}

CLICKHOUSE = Table("store.clickhouse", {
    "urls": Key(list_of(http_url), ["http://127.0.0.1:8123"],
                "HTTP interfaces of ClickHouse, tried in order: the collector writes to the first that answers"),
    "database": Key(database_name, "imflow", "the database (created if missing)"),
    "cluster": Key(identifier, "", "a cluster of `remote_servers`: write local tables, read through "
                   "Distributed ones over every shard", shown="none"),
    "timeout": Key(duration(0.1, 3600, inclusive=True), 10.0, "how long one request may take"),
    "max_buffer_rows": Key(integer(1000), 1_000_000,
                           "rows kept in memory while ClickHouse does not take them; past it the oldest "
                           "flushes are dropped and counted"),
}, "Used when `store.backend` is `\"clickhouse\"`. The user and password come from the environment: "
   "`IMFLOW_CLICKHOUSE_USER`, `IMFLOW_CLICKHOUSE_PASSWORD` (ClickHouse's `default` user when unset).")

_ACTIONS = ("allow", "monitor", "block")

SCHEMA: dict[str, dict[str, Key]] = {
    "collector": {
        "listen": Key(list_of(endpoint()), DEFAULT_LISTEN,
                      "UDP sockets for NetFlow v5/v9, IPFIX and sFlow v5, every version on every port (`--listen`)"),
        "rcvbuf": Key(integer(65536, 1 << 31), 32 << 20,
                      "receive buffer asked for each socket, in bytes; the kernel caps it at `net.core.rmem_max`",
                      shown="33554432 (32 MiB)"),
        "refresh_time": Key(duration(), 60.0,
                            "flush cadence: bins to the store, figures to the metrics (`--refresh-time`)"),
        "status_interval": Key(duration(), 60.0, "how often the status line is logged"),
        "batch_size": Key(integer(1, 1_000_000), 2048, "datagrams handed to the decoder at once; `1024` keeps "
                          "4-5 MiB less at its peak for 5-8 % more CPU a flow "
                          "(docs/performance.md, Memory)"),
        "batch_delay": Key(duration(0, inclusive=True), 0.1,
                           "or after this long since the first datagram of a batch"),
        "template_state": Key(string(), "", "where templates are saved at stop and read at start",
                              shown="store.path + `.templates.json`"),
    },
    "exporters": {
        "allow": Key(list_of(network), [], "networks allowed to send flows; others are dropped and counted",
                     shown="`[]` (everyone)"),
        "sampling": Key(table_of(address, integer(1, 1 << 31)), {},
                        'sampling rate per exporter (`{ "192.0.2.1" = 100 }`), for exporters that do not '
                        "announce it; wins over an announced one"),
    },
    "limits": {
        "max_sessions": Key(integer(1), 10_000,
                            "exporter sessions (address, port, version, domain); the least recently seen goes"),
        "max_templates_per_session": Key(integer(1), 512, "templates per session"),
        "max_templates": Key(integer(1), 50_000, "templates over all sessions"),
        "max_pending_per_session": Key(integer(0), 512,
                                       "data sets held per session for a template that has not arrived yet"),
        "max_pending_bytes_per_session": Key(integer(0), 1 << 20, "bytes of such data held per session",
                                             shown="1048576 (1 MiB)"),
        "max_pending_bytes": Key(integer(0), 64 << 20, "bytes of such data held over all sessions",
                                 shown="67108864 (64 MiB)"),
        "pending_max_age": Key(duration(), 120.0, "how long such data waits for its template"),
        "max_names_per_session": Key(integer(0), 4096, "interface and application names learned from options data"),
        "max_name_bytes_per_session": Key(integer(0), 256 << 10,
                                          "octets of such names per session (each cut to 255 characters)",
                                          shown="262144 (256 KiB)"),
        "max_name_bytes": Key(integer(0), 32 << 20, "octets of such names over all sessions",
                              shown="33554432 (32 MiB)"),
        "max_template_bytes_per_session": Key(integer(0), 256 << 10,
                                              "octets of template definitions (as sent) per session",
                                              shown="262144 (256 KiB)"),
        "max_template_bytes": Key(integer(0), 16 << 20,
                                  "octets of template definitions over all sessions; the least recently "
                                  "seen sessions that have sent no flow go first", shown="16777216 (16 MiB)"),
        "max_new_template_bytes_per_batch": Key(integer(0), 16 << 10,
                                                "octets of template sets parsed per batch for sessions that have "
                                                "sent no flow yet (a template flood), and as many again for those "
                                                "whose data is held waiting for them; the rest waits in a bounded "
                                                "queue for the next batches (or an idle moment), then is shed and "
                                                "counted",
                                                shown="16384 (16 KiB)"),
        "max_open_bins": Key(integer(1000), 2_000_000,
                             "aggregation bins in memory (also while the store refuses writes); "
                             "what a full table drops is counted"),
    },
    "store": {
        "path": Key(string(), "imflow.db", "the SQLite database (`--db`)"),
        "retention_minute": Key(duration(), 2 * 86400.0, "how long per-minute rollups are kept"),
        "retention_hour": Key(duration(), 90 * 86400.0, "how long per-hour rollups are kept"),
        "retention_day": Key(duration(), 5 * 365 * 86400.0, "how long per-day rollups are kept"),
        "backend": Key(string(("sqlite", "clickhouse")), "sqlite",
                       "where the rollups (and the flow audit log) go: the embedded SQLite file `path`, "
                       "or ClickHouse (`[store.clickhouse]`; docs/stores.md)"),
        "clickhouse": Key(CLICKHOUSE, CLICKHOUSE.defaults(), "the ClickHouse backend (below)",
                          shown="see below"),
    },
    "audit": {
        "categories": Key(list_of(string(("im", "p2p", "voip", "collab", "other"))),
                          ["im", "p2p", "voip", "collab"],
                          "categories whose flows the audit log keeps one by one; `[]` turns it off"),
        "max_age": Key(duration(), 7 * 86400.0, "how long audit log rows are kept (pruned hourly)"),
        "max_rows": Key(integer(1000), 10_000_000, "rows the audit log keeps at most; the oldest go first"),
        "max_pending": Key(integer(1000), 1_000_000,
                           "flows held in memory until the flush (also while the store refuses writes); "
                           "what a full buffer drops is counted"),
    },
    "classify": {
        "internal": Key(list_of(network), DEFAULT_INTERNAL,
                        "internal networks: bytes are attributed to the host on this side (`--internal`)"),
        "catalogue": Key(string(), "", "a catalogue file (such as `imflow catalogue update` writes)",
                         shown="the shipped one"),
        "service": Key(passthrough(list, "list of [[classify.service]] tables"), [],
                       "services added to the catalogue or overriding shipped ones (checked by the catalogue)"),
        "app_ids": Key(table_of(string(), string()), {},
                       'exporter application ids (IE 95, `"engine:selector"`) to services: `{ "13:453" = "teams" }`'),
        "asn_prefixes": Key(string(), "", "an ASN prefix snapshot for the catalogue's `asns` (such as "
                            "`imflow catalogue update --asn-database FILE.mmdb` writes)", shown="the shipped one"),
    },
    "dns": {
        "dnstap": Key(dnstap_endpoint, "", "where imflow listens for a resolver's dnstap (Frame Streams): "
                      "`unix:/run/imflow/dnstap.sock`, or `127.0.0.1:PORT` / `[::1]:PORT` (loopback only)",
                      shown="off"),
        "max_addresses": Key(integer(1, 10_000_000), 100_000,
                             "addresses learned from answers; the least recently learned goes first"),
        "grace": Key(duration(0, 86400, inclusive=True), 300.0,
                     "how long a learned address still counts after its answer's TTL"),
        "max_ttl": Key(duration(1, 7 * 86400, inclusive=True), 86400.0, "answers' TTLs are capped at this"),
        "max_clients": Key(integer(0), 10_000, "(client, service) pairs counted: who resolved which service"),
    },
    "metrics": {
        "listen": Key(endpoint(optional=True, bare="127.0.0.1"), "",
                      "the Prometheus endpoint `/metrics` (`--metrics`); a bare PORT means 127.0.0.1:PORT",
                      shown="off"),
        "max_host_series": Key(integer(0), 5000,
                               'per-host series; the hosts beyond are added up under `host="other"`'),
    },
    "log": {
        "level": Key(string(("debug", "info", "warning", "error")), "info", "what is logged (`--log-level`)"),
    },
    "web": {
        "listen": Key(endpoint(optional=True, bare="127.0.0.1"), "",
                      "where the daemon serves the read-only web page (docs/web.md); a bare PORT means "
                      "127.0.0.1:PORT; `imflow web` uses 127.0.0.1:9751 when this is empty",
                      shown="off"),
        "auth_user": Key(web_user, "", "basic authentication: the user name (with `auth_password_hash`)",
                         shown="none"),
        "auth_password_hash": Key(password_hash, "",
                                  "basic authentication: the password's hash, as `imflow web --hash-password` "
                                  "prints it (`scrypt$…`)", shown="none"),
        "max_rows": Key(integer(10, 100_000), 500, "rows per table on the page and in its downloads"),
        "query_timeout": Key(duration(0.1, 600, inclusive=True), 15.0,
                             "a page whose queries take longer is answered 503"),
        "max_queries": Key(integer(1, 64), 2, "queries running at once; further requests wait"),
    },
    # Checked in depth by collector.policy.parse_policy against the catalogue.
    "policy": {
        "default": Key(string(_ACTIONS), "monitor", "the action for services no other key names"),
        "prefix_block": Key(string(("service-ports", "all")), "service-ports",
                            "firewall rules block a service's prefixes on its ports only, or on all ports"),
        "categories": Key(passthrough(dict, "table of category = action"), {}, "an action per category"),
        "services": Key(passthrough(dict, "table of service = action"), {}, "an action per service"),
        "exceptions": Key(passthrough(list, "list of [[policy.exceptions]] tables"), [],
                          "actions for internal networks, by service or category"),
        "hosts_file": Key(string(), "", "a TOML file of [[host]] names and owners for reports", shown="none"),
        "reverse_dns": Key(boolean, False, "name hosts by PTR lookups (cached, bounded by a deadline)"),
    },
    # The rules between keys (version 2c or 3, secrets from the environment, one target per
    # exporter) are collector.snmp.config's.
    "snmp": {
        "interval": Key(duration(1, 86400, inclusive=True), 60.0, "how often each agent is polled"),
        "timeout": Key(duration(0.05, 60, inclusive=True), 2.0, "how long to wait for each answer"),
        "retries": Key(integer(0, 10), 1, "requests sent again after a timeout"),
        "backoff_max": Key(duration(1, 86400, inclusive=True), 600.0,
                           "after failures the interval doubles, up to this"),
        "targets": Key(Tables("snmp.targets", SNMP_TARGET,
                                  "One table per flow exporter whose SNMP agent is polled. A key left out "
                                  "takes the `[snmp]` key of the same name or the default below; secrets "
                                  "are best read from the environment (`*_env`)."),
                       [], "the agents, one per flow exporter (below)"),
    },
}

SECTIONS = {
    "collector": "Receiving flow export.",
    "exporters": "Who may send, and at which sampling rate.",
    "limits": "Ceilings on what senders and traffic can make imflow hold; what a ceiling drops is counted.",
    "store": "The database of per-minute, per-hour and per-day rollups.",
    "audit": "The flow audit log: single flows of the watched categories, for `imflow flows` (docs/audit.md).",
    "classify": "Which side is internal, and the service catalogue.",
    "dns": "Addresses learned from a resolver's answers (dnstap) for the catalogue's domain patterns "
           "(docs/dns.md). Only names of catalogue services are kept.",
    "metrics": "The Prometheus endpoint.",
    "log": "Logging, to standard error (the journal under systemd).",
    "web": "The read-only web page (`imflow web`, or served by the daemon when `listen` is set).",
    "policy": "What is allowed, monitored or blocked; checked in depth against the catalogue.",
    "snmp": "Interface names, speeds and counters of the exporters, polled beside the flow path. "
            "The section's timing keys are the defaults of every target.",
}


def default(dotted: str) -> Any:
    """The schema's default of a key: `default("limits.max_sessions")`, `default("snmp.timeout")`."""
    section, key = dotted.split(".", 1)
    return copy.deepcopy(SCHEMA[section][key].default)


# --- the configuration ------------------------------------------------------------------

@dataclass
class Config:
    values: dict[str, dict[str, Any]]
    path: str | None = None

    def __getitem__(self, section: str) -> dict[str, Any]:
        return self.values[section]

    def get(self, dotted: str) -> Any:
        section, key = dotted.split(".", 1)
        return self.values[section][key]

    def replaced(self, changes: Mapping[str, Any]) -> Config:
        """A new Config with `changes` applied and everything checked again; this one is left
        as it is. Keys are dotted (`"store.path"`) or a whole section (`"policy"`); values are
        as a file writes them, or as another Config holds them. Targets already checked keep
        their timing: replace `snmp.targets` too to change it."""
        raw = copy.deepcopy(self.values)
        for dotted, value in changes.items():
            section, _, key = dotted.partition(".")
            if section not in SCHEMA:
                raise ConfigError(section, f"unknown section (known: {', '.join(sorted(SCHEMA))})")
            if key:
                raw.setdefault(section, {})[key] = value
            else:
                raw[section] = copy.deepcopy(value)
        cfg = validate(raw)
        cfg.path = self.path
        return cfg


def validate(raw: Mapping[str, Any]) -> Config:
    """A TOML document (as tomllib reads it) -> a checked Config with every default filled in."""
    for section in raw:
        if section not in SCHEMA:
            raise ConfigError(section, f"unknown section (known: {', '.join(sorted(SCHEMA))})")
    return Config({section: _check_keys(section, keys, raw.get(section, {})) for section, keys in SCHEMA.items()})


def check_section(section: str, raw: Any) -> dict[str, Any]:
    """One section as a file writes it -> checked values with defaults filled in."""
    return _check_keys(section, SCHEMA[section], raw)


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


# --- the docs: docs/configuration.md is this function's output --------------------------

_INTRO = """\
# Configuration

<!-- Generated from collector/config.py's schema by `python3 -m collector.config --markdown
docs/configuration.md`; tests/test_config_docs.py keeps the two equal. Edit the schema. -->

One TOML file: `imflow run --config FILE`. Every key is optional; what is left out takes the
default below. A commented example is `deploy/imflow.toml.example`.

`imflow check-config FILE` checks everything a start would refuse: the keys, the catalogue
overrides, the policy, the SNMP targets. A problem is one line naming the key, exit status 2:

```
$ imflow check-config bad.toml
imflow: config: snmp.targets[0].timeout: '2m': out of range (50ms to 60s)
```

A **duration** is a number of seconds or a string with a unit: `"500ms"`, `"30s"`, `"5m"`,
`"24h"`, `"7d"`, `"2w"`, `"5y"` (a year is 365 days). Each duration key has its range. The
command line's `--since` takes the same grammar.
"""


def _shown(spec: Key) -> str:
    if spec.shown:
        return spec.shown
    if spec.default is REQUIRED:
        return "required"
    if spec.default is None:
        return "none"
    if spec.default is INHERIT:
        return "the section's"
    if getattr(spec.check, "kind", "").startswith("duration") and spec.default:
        return f'`"{format_duration(spec.default)}"`'
    if isinstance(spec.default, bool):
        return f"`{str(spec.default).lower()}`"
    if isinstance(spec.default, str):
        return f'`"{spec.default}"`'
    if isinstance(spec.default, list):
        return "`[" + ", ".join(f'"{x}"' for x in spec.default) + "]`"
    return f"`{spec.default}`"


def _table(keys: Mapping[str, Key], inherit_from: str = "") -> list[str]:
    lines = ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]
    for name, spec in keys.items():
        shown = f"`{inherit_from}.{name}`" if spec.default is INHERIT else _shown(spec)
        lines.append(f"| `{name}` | {spec.check.kind} | {shown} | {spec.doc} |")
    return lines


def markdown() -> str:
    out = [_INTRO]
    for section, keys in SCHEMA.items():
        out += [f"## [{section}]", "", SECTIONS[section], "", *_table(keys), ""]
        for spec in keys.values():
            if isinstance(spec.check, Tables):
                out += [f"### {getattr(spec.check, 'heading', f'[[{spec.check.name}]]')}", "", spec.check.doc, "",
                        *_table(spec.check.keys, section), ""]
    return "\n".join(out)


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] != ["--markdown"] or len(sys.argv) > 3:
        sys.exit("usage: python3 -m collector.config --markdown [FILE]")
    if len(sys.argv) == 3:
        with open(sys.argv[2], "w") as fh:
            fh.write(markdown())
    else:
        sys.stdout.write(markdown())
