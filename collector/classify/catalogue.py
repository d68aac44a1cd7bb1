"""The service catalogue: which ports and prefixes mean which IM, P2P, VoIP or collaboration service.

The catalogue ships as `data/services.toml` (its header documents the format) and users extend or
override it from their config (docs/design.md §4). Loading validates everything and reports the first
problem as a one-line `CatalogueError` naming the offending key, e.g.
`service[3].ports[1]: "tcp/99999": port out of range 0-65535`.

Override rules for `extra` (the user's config section, `{"service": [ {...}, ... ]}`):

* an entry whose `id` is already in the catalogue changes that service: every key given replaces
  the shipped value (`ports`, `shared_ports`, `prefixes`, `prefix_sources` and `app_names`
  included); `add_ports`, `add_shared_ports`, `add_prefixes`, `add_prefix_sources` and
  `add_app_names` append to the list instead;
* an entry with a new id adds a service (`name` and `category` are then required);
* `other` is the built-in catch-all (index 0, category `other`); it cannot be overridden and no
  other service may use that id or category.

Port syntax: `tcp/N`, `udp/N`, `sctp/N`, or a bare `N` meaning tcp and udp; `N` may be a range
`lo-hi`. A port that is not in `shared_ports` classifies flows alone, so two services claiming the
same such port is an error (one of them has to mark it shared).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from collector.netflow.fields import NAME_ENGINE
from collector.text import text_problem

DATA = Path(__file__).resolve().parent / "data"  # the shipped files, installed beside the code
CATEGORIES = ("other", "im", "p2p", "voip", "collab")
PROTOCOLS = {"tcp": 6, "udp": 17, "sctp": 132}
PROTO_NAMES = {v: k for k, v in PROTOCOLS.items()}
LIST_KEYS = ("ports", "shared_ports", "prefixes", "prefix_sources", "app_names", "domains", "asns")
SERVICE_KEYS = frozenset(("id", "name", "category", "notes", "prefixes_date", *LIST_KEYS))
OVERRIDE_KEYS = SERVICE_KEYS | {f"add_{k}" for k in LIST_KEYS}
_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
# Catalogue text reaches firewall rules, reports, tables and logs: no control characters
# (C0, DEL, C1; a newline once injected a whole nftables table), and a length ceiling.
MAX_TEXT = {"name": 100, "notes": 2000, "category": 16, "prefixes_date": 32}
MAX_ITEM = 255  # one port, prefix, URL or application name
_PORT_RE = re.compile(r"^(?:(tcp|udp|sctp)/)?(\d{1,6})(?:-(\d{1,6}))?$")
# A domain pattern: "example.com" (that name only) or "*.example.com" (every name below it).
_DOMAIN_RE = re.compile(r"^(\*\.)?(?=.{1,253}$)([a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)"
                        r"(\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)*$")
_ASN_RE = re.compile(r"^(?:as)?(\d{1,10})$")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class CatalogueError(ValueError):
    """A catalogue or override problem; `str()` is one line: `key: message`."""

    def __init__(self, key: str, message: str):
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


@dataclass(frozen=True, slots=True)
class PortRange:
    proto: int  # IP protocol number: 6, 17 or 132
    lo: int
    hi: int

    def __str__(self) -> str:
        ports = str(self.lo) if self.lo == self.hi else f"{self.lo}-{self.hi}"
        return f"{PROTO_NAMES[self.proto]}/{ports}"


@dataclass(frozen=True)
class Service:
    index: int
    id: str
    name: str
    category: str
    ports: tuple[str, ...] = ()
    shared_ports: tuple[str, ...] = ()
    prefixes: tuple[str, ...] = ()
    prefix_sources: tuple[str, ...] = ()
    app_names: tuple[str, ...] = ()
    domains: tuple[str, ...] = ()  # DNS names: "whatsapp.net" or "*.whatsapp.net", lower case
    asns: tuple[int, ...] = ()  # autonomous systems that run the service's own network
    notes: str = ""
    prefixes_date: str | None = None
    # Parsed forms of the text fields above.
    port_ranges: tuple[PortRange, ...] = field(default=(), repr=False)
    shared_ranges: tuple[PortRange, ...] = field(default=(), repr=False)
    networks: tuple[Network, ...] = field(default=(), repr=False)
    # Where each `ports` entry came from (e.g. "service[3].add_ports[0]"), for error messages.
    port_keys: tuple[str, ...] = field(default=(), repr=False, compare=False)
    source_key: str = field(default="", repr=False, compare=False)  # e.g. "service[3]"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "name": self.name, "category": self.category}
        for key in LIST_KEYS:
            out[key] = list(getattr(self, key))
        if self.prefixes_date:
            out["prefixes_date"] = self.prefixes_date
        out["notes"] = self.notes
        return out


OTHER = Service(index=0, id="other", name="Other (unclassified)", category="other")


@dataclass(frozen=True)
class Catalogue:
    services: tuple[Service, ...]  # index 0 is `other`; a flow's service id indexes this
    snapshot: str  # date of the prefix snapshot
    fetched: str | None = None  # date of the last `imflow catalogue update`, if any
    by_id: dict[str, Service] = field(init=False, repr=False)
    categories: tuple[str, ...] = CATEGORIES
    by_app_name: dict[str, Service] = field(init=False, repr=False)  # IE 96 names, lower case
    domains: Any = field(init=False, repr=False, compare=False)  # classify.domains.DomainMatcher

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_id", {s.id: s for s in self.services})
        # app names are unique across services (_check_app_names): one dict answers each name
        object.__setattr__(self, "by_app_name", {n: s for s in self.services for n in s.app_names})
        from collector.classify.domains import DomainMatcher  # it imports this module

        object.__setattr__(self, "domains", DomainMatcher(self.services))

    def __len__(self) -> int:
        return len(self.services)

    def category_index(self) -> np.ndarray:
        """uint8 array: service index -> index into `categories`."""
        return np.array([self.categories.index(s.category) for s in self.services], np.uint8)

    def service_for_app_name(self, name: str) -> Service | None:
        """The service an exporter application name (IE 96) maps to, if any."""
        return self.by_app_name.get(name.strip().lower())

    def app_ids_for(self, names: dict[int, str]) -> dict[int, str]:
        """An exporter's application table (IE 95 id -> IE 96 name, learned from options data at
        run time) -> the `app_ids` mapping for the Classifier: ids whose names the catalogue knows."""
        out = {}
        for app_id, name in names.items():
            service = self.service_for_app_name(name)
            if service is None and app_id >> 56 == NAME_ENGINE:  # a server name (TLS SNI, HTTP Host)
                index = self.domains.match(name)
                service = self.services[index] if index else None
            if service is not None:
                out[app_id] = service.id
        return out

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"snapshot": self.snapshot}
        if self.fetched:
            out["fetched"] = self.fetched
        out["service"] = [s.to_dict() for s in self.services[1:]]
        return out


def load_catalogue(path: str | None = None, extra: dict | None = None) -> Catalogue:
    """Load the shipped catalogue (or the file at `path`), apply the user's `extra`, validate."""
    if path is None:
        raw = (DATA / "services.toml").read_bytes()
    else:
        with open(path, "rb") as f:
            raw = f.read()
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise CatalogueError(str(path or "services.toml"), f"not valid TOML: {e}") from None
    return build_catalogue(doc, extra)


def build_catalogue(doc: dict, extra: dict | None = None) -> Catalogue:
    """Validate a parsed catalogue document (and overrides) into a `Catalogue`."""
    _check_keys(doc, {"snapshot", "fetched", "service"}, "")
    snapshot = _date(doc, "snapshot", required=True)
    fetched = _date(doc, "fetched", required=False)
    entries: dict[str, dict[str, Any]] = {}
    _merge(entries, _service_list(doc), overrides=False)
    if extra:
        _check_keys(extra, {"service"}, "")
        _merge(entries, _service_list(extra), overrides=True)
    services = [OTHER]
    for i, (sid, fields_) in enumerate(entries.items(), start=1):
        services.append(_make_service(i, sid, fields_))
    _check_port_conflicts(services, user_keys={k for e in entries.values() for k in e.get("_user", ())})
    _check_app_names(services)
    return Catalogue(tuple(services), snapshot, fetched)


def parse_port(text: Any, key: str) -> tuple[PortRange, ...]:
    """'tcp/N', 'udp/N', 'sctp/N' or 'N' (tcp+udp), N a port or 'lo-hi' -> ranges."""
    if not isinstance(text, str):
        raise CatalogueError(key, f"{text!r}: expected a string like \"tcp/1863\"")
    m = _PORT_RE.match(text.strip().lower())
    if not m:
        raise CatalogueError(key, f'"{text}": expected "tcp/N", "udp/N", "sctp/N" or "N" '
                                  '(N a port or "lo-hi")')
    proto, lo, hi = m.group(1), int(m.group(2)), int(m.group(3) or m.group(2))
    for p in (lo, hi):
        if p > 65535:
            raise CatalogueError(key, f'"{text}": port out of range 0-65535')
    if lo > hi:
        raise CatalogueError(key, f'"{text}": range start above its end')
    protos = (PROTOCOLS[proto],) if proto else (6, 17)
    return tuple(PortRange(p, lo, hi) for p in protos)


def parse_prefix(text: Any, key: str) -> Network:
    if not isinstance(text, str):
        raise CatalogueError(key, f"{text!r}: expected a CIDR string")
    try:
        return ipaddress.ip_network(text.strip(), strict=True)
    except ValueError as e:
        raise CatalogueError(key, f'"{text}": {e}') from None


def parse_domain(text: Any, key: str) -> str:
    """'example.com' or '*.example.com' (lower-cased, without a final dot)."""
    if not isinstance(text, str):
        raise CatalogueError(key, f"{text!r}: expected a domain like \"*.whatsapp.net\"")
    name = text.strip().lower().rstrip(".")
    if not _DOMAIN_RE.match(name):
        raise CatalogueError(key, f'"{text}": expected a DNS name like "signal.org" or "*.whatsapp.net"')
    return name


def parse_asn(value: Any, key: str) -> int:
    """32934, "32934" or "AS32934" -> 32934 (1 to 4294967294; 23456 is AS_TRANS, never an origin)."""
    m = _ASN_RE.match(value.strip().lower()) if isinstance(value, str) else None
    asn = int(m.group(1)) if m else value if isinstance(value, int) and not isinstance(value, bool) else None
    if asn is None or not 0 < asn < 0xFFFF_FFFF or asn == 23456:
        raise CatalogueError(key, f"{value!r}: expected an AS number like 32934")
    return asn


# ---------------------------------------------------------------- internals


def check_text(key: str, text: str, limit: int) -> str:
    """`text` if it holds no control character and at most `limit` characters."""
    problem = text_problem(text, limit)
    if problem:
        raise CatalogueError(key, problem)
    return text


def _check_keys(table: Any, allowed: set[str] | frozenset[str], where: str) -> None:
    if not isinstance(table, dict):
        raise CatalogueError(where or "catalogue", "expected a table")
    for k in table:
        if k not in allowed:
            raise CatalogueError(f"{where}.{k}" if where else k, "unknown key")


def _date(doc: dict, key: str, required: bool) -> str | None:
    value = doc.get(key)
    if value is None:
        if required:
            raise CatalogueError(key, "missing (a date like \"2026-11-28\")")
        return None
    if isinstance(value, dt.date):
        return value.isoformat()
    try:
        return dt.date.fromisoformat(str(value)).isoformat()
    except ValueError:
        raise CatalogueError(key, f"{value!r}: not a date like \"2026-11-28\"") from None


def _service_list(doc: dict) -> list[dict]:
    services = doc.get("service", [])
    if not isinstance(services, list):
        raise CatalogueError("service", "expected a list of service tables ([[service]])")
    return services


def _merge(entries: dict[str, dict[str, Any]], tables: list, overrides: bool) -> None:
    """Fold service tables into `entries` (id -> field dict with `_key`/`_port_keys`)."""
    allowed = OVERRIDE_KEYS if overrides else SERVICE_KEYS
    seen: dict[str, str] = {}
    for i, table in enumerate(tables):
        where = f"service[{i}]"
        _check_keys(table, allowed, where)
        sid = table.get("id")
        if not isinstance(sid, str) or not _ID_RE.match(sid):
            raise CatalogueError(f"{where}.id", f"{sid!r}: expected an id of [a-z0-9_-], at most 32 chars")
        if sid == OTHER.id:
            raise CatalogueError(f"{where}.id", '"other" is the built-in catch-all and cannot be defined')
        if sid in seen:
            raise CatalogueError(f"{where}.id", f'"{sid}": duplicate id (first at {seen[sid]})')
        seen[sid] = where
        if sid in entries and not overrides:
            raise CatalogueError(f"{where}.id", f'"{sid}": duplicate id')
        entry = entries.setdefault(sid, {"_key": where, "_port_keys": []})
        for key, value in table.items():
            if key == "id":
                continue
            base = key.removeprefix("add_")
            if base in LIST_KEYS:
                if not isinstance(value, list):
                    raise CatalogueError(f"{where}.{key}", "expected a list")
                keys = [f"{where}.{key}[{j}]" for j in range(len(value))]
                for item, k in zip(value, keys):
                    if isinstance(item, str):
                        check_text(k, item, MAX_ITEM)
                if overrides:
                    entry.setdefault("_user", set()).update(keys)
                if key.startswith("add_"):
                    entry[base] = list(entry.get(base, [])) + value
                    entry[f"_{base}_keys"] = entry.get(f"_{base}_keys", []) + keys
                else:
                    entry[base] = list(value)
                    entry[f"_{base}_keys"] = keys
            else:
                if key == "prefixes_date" and isinstance(value, dt.date):
                    value = value.isoformat()
                if not isinstance(value, str):
                    raise CatalogueError(f"{where}.{key}", f"{value!r}: expected a string")
                entry[key] = check_text(f"{where}.{key}", value, MAX_TEXT.get(key, MAX_ITEM))
                entry[f"_{key}_key"] = f"{where}.{key}"
        entry["_key"] = entry.get("_key", where)


def _make_service(index: int, sid: str, e: dict[str, Any]) -> Service:
    where = e["_key"]
    for key in ("name", "category"):
        if not e.get(key):
            raise CatalogueError(f"{where}.{key}", f'missing for service "{sid}"')
    category = e["category"].strip().lower()
    if category not in CATEGORIES[1:]:
        raise CatalogueError(e.get("_category_key", f"{where}.category"),
                             f'"{e["category"]}": expected one of {", ".join(CATEGORIES[1:])}')
    lists: dict[str, list] = {k: e.get(k, []) for k in LIST_KEYS}
    keys: dict[str, list[str]] = {k: e.get(f"_{k}_keys", []) for k in LIST_KEYS}
    def pairs(name: str):
        return zip(lists[name], keys[name], strict=True)

    port_ranges = [r for text, key in pairs("ports") for r in parse_port(text, key)]
    shared = [r for text, key in pairs("shared_ports") for r in parse_port(text, key)]
    networks = [parse_prefix(t, k) for t, k in pairs("prefixes")]
    for text, key in pairs("prefix_sources"):
        if not isinstance(text, str) or not re.match(r"^https?://[^\s/]+", text):
            raise CatalogueError(key, f"{text!r}: expected an http(s) URL")
    domains = [parse_domain(t, k) for t, k in pairs("domains")]
    asns = [parse_asn(t, k) for t, k in pairs("asns")]
    app_names = []
    for text, key in pairs("app_names"):
        if not isinstance(text, str) or not text.strip():
            raise CatalogueError(key, f"{text!r}: expected a non-empty name")
        app_names.append(text.strip().lower())
    prefixes_date = None
    if e.get("prefixes_date"):
        prefixes_date = _date({"prefixes_date": e["prefixes_date"]}, "prefixes_date", False)
    return Service(
        index=index, id=sid, name=e["name"], category=category,
        ports=tuple(p.strip().lower() for p in lists["ports"]),
        shared_ports=tuple(p.strip().lower() for p in lists["shared_ports"]),
        prefixes=tuple(str(n) for n in networks),
        prefix_sources=tuple(lists["prefix_sources"]),
        app_names=tuple(app_names), domains=tuple(dict.fromkeys(domains)), asns=tuple(dict.fromkeys(asns)),
        notes=e.get("notes", ""), prefixes_date=prefixes_date,
        port_ranges=tuple(port_ranges), shared_ranges=tuple(shared), networks=tuple(networks),
        port_keys=tuple(keys["ports"]), source_key=where,
    )


def _check_port_conflicts(services: list[Service], user_keys: set[str]) -> None:
    """No (proto, port) may be a non-shared port of two services. The catalogue file's entries
    are registered first, so a clash with a user's entry is reported at the user's key."""
    owner = {p: np.zeros(65536, np.int32) for p in PROTOCOLS.values()}
    shared = {}
    for s in services[1:]:
        shared[s.index] = {p: np.zeros(65536, bool) for p in PROTOCOLS.values()}
        for r in s.shared_ranges:
            shared[s.index][r.proto][r.lo:r.hi + 1] = True
    entries = [(key in user_keys, s, text, key)
               for s in services[1:] for text, key in zip(s.ports, s.port_keys, strict=True)]
    for _, s, text, key in sorted(entries, key=lambda e: e[0]):
        for r in parse_port(text, key):
            span = slice(r.lo, r.hi + 1)
            mine = ~shared[s.index][r.proto][span]
            taken = owner[r.proto][span][mine]
            clash = taken[(taken != 0) & (taken != s.index)]
            if clash.size:
                other = services[int(clash[0])].id
                raise CatalogueError(key, f'"{text}": {PROTO_NAMES[r.proto]} port also claimed by '
                                          f'service "{other}"; list it in shared_ports of one of them')
            owner[r.proto][span][mine] = s.index


def _check_app_names(services: list[Service]) -> None:
    seen: dict[str, str] = {}
    for s in services[1:]:
        for name in s.app_names:
            if name in seen and seen[name] != s.id:
                raise CatalogueError(f"{s.source_key}.app_names",
                                     f'"{name}": also an application name of service "{seen[name]}"')
            seen[name] = s.id
