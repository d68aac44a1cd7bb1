"""Usage policy: which services are allowed, monitored or blocked, for whom.

The `[policy]` section of the config says what the operator wants; the collector compares every
classified flow with it (a flow of a blocked service from an internal host is a *violation*) and
`collector.policy.firewall` turns the blocked part into firewall rules.

    [policy]
    default = "monitor"               # allow | monitor | block
    prefix_block = "service-ports"    # how firewall rules use prefixes (see collector.policy.firewall)
    [policy.categories]
    p2p = "block"
    [policy.services]
    msn = "block"
    [[policy.exceptions]]
    service = "bittorrent"            # or category = "p2p"
    hosts = ["10.1.2.0/24"]           # internal addresses or networks
    action = "allow"                  # required: allow, monitor or block
    note = "release mirrors"          # optional, shown in firewall comments (one line, <= 500)

Precedence for a flow of service S with internal host H:

1. exceptions naming S whose hosts contain H, the most specific network first;
2. exceptions naming S's category whose hosts contain H, the most specific network first;
3. `services.S`, then `categories.<category of S>`, then `default`.

The built-in catch-all service `other` is `allow` unless the operator names it (in `services`,
`categories` or an exception): `default = "block"` means "block every known IM/P2P/VoIP
service", not "everything unclassified is a violation".

Hosts are compared in the flow batch's 128-bit address space (IPv4 mapped into ::ffff:0:0/96,
collector.netflow.batch), so the scalar `Policy.action` and the vectorized `PolicyTable`
agree by construction.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from collector.classify.catalogue import Catalogue, Network
from collector.netflow.batch import addr_from_str, network_range
from collector.text import text_problem

ACTIONS = ("allow", "monitor", "block")  # index = the uint8 code of PolicyTable.actions
ALLOW, MONITOR, BLOCK = 0, 1, 2
PREFIX_BLOCK = ("service-ports", "all")
OTHER = "other"
POLICY_KEYS = ("default", "prefix_block", "categories", "services", "exceptions")
EXCEPTION_KEYS = ("service", "category", "hosts", "action", "note")
MAX_NOTE = 500  # characters; the note is written into firewall comments
_U64 = (1 << 64) - 1


class PolicyError(ValueError):
    """A policy configuration problem; `str()` is one line: `key: message`."""

    def __init__(self, key: str, message: str):
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


@dataclass(frozen=True)
class PolicyException:
    """One `[[policy.exceptions]]` entry: `action` for `networks`, for one service or category."""

    key: str  # "policy.exceptions[0]"
    service: str | None
    category: str | None
    networks: tuple[Network, ...]
    action: str
    note: str = ""

    @property
    def target(self) -> str:
        return self.service if self.service is not None else f"category {self.category}"

    def applies_to(self, service_id: str, category: str) -> bool:
        return self.service == service_id if self.service is not None else self.category == category


@dataclass(frozen=True)
class _Entry:
    """One network of one exception, in precedence order (see `Policy.entries`)."""

    exception: PolicyException
    network: Network
    first: int  # inclusive range in the 128-bit ADDR space
    last: int


@dataclass(frozen=True)
class Policy:
    default: str = "monitor"
    categories: dict[str, str] = field(default_factory=dict)
    services: dict[str, str] = field(default_factory=dict)
    exceptions: tuple[PolicyException, ...] = ()
    prefix_block: str = "service-ports"
    # service id -> category, from the catalogue the policy was validated against.
    service_categories: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    def base_action(self, service_id: str, category: str | None = None) -> str:
        """The action for hosts no exception covers (and for flows with no internal host)."""
        category = category if category is not None else self._category(service_id)
        if service_id in self.services:
            return self.services[service_id]
        if category in self.categories:
            return self.categories[category]
        if service_id == OTHER:
            return "allow"
        return self.default

    def action(self, service_id: str, host: str | None) -> str:
        """allow | monitor | block for a flow of `service_id` whose internal host is `host`."""
        category = self._category(service_id)
        if host is not None:
            hi, lo = addr_from_str(host)
            addr = hi << 64 | lo
            for entry in self._entries:
                if (entry.exception.applies_to(service_id, category)
                        and entry.first <= addr <= entry.last):
                    return entry.exception.action
        return self.base_action(service_id, category)

    def action_of_row(self, service_id: str, host: str) -> str:
        """The action for a stored row: as `action`, with "" for no host, and "unknown" for a
        service the catalogue no longer has (rows outlive catalogue changes)."""
        try:
            return self.action(service_id, host or None)
        except ValueError:
            return "unknown"

    def entries(self) -> tuple[_Entry, ...]:
        """Every (exception, network) pair in precedence order: service-specific before
        category-wide, then the most specific network, then config order. For any one service
        the first entry that applies and contains the host decides."""
        return self._entries

    @cached_property
    def _entries(self) -> tuple[_Entry, ...]:
        out = []
        for n, exc in enumerate(self.exceptions):
            for m, net in enumerate(exc.networks):
                first, last = network_range(net)
                out.append(((exc.service is None, -_mapped_prefixlen(net), n, m),
                            _Entry(exc, net, first, last)))
        return tuple(e for _, e in sorted(out, key=lambda t: t[0]))

    def entries_for(self, service_id: str, category: str | None = None) -> list[_Entry]:
        category = category if category is not None else self._category(service_id)
        return [e for e in self.entries() if e.exception.applies_to(service_id, category)]

    def blocked_services(self) -> list[str]:
        """Ids of the services blocked for hosts no exception covers, in catalogue order."""
        return [sid for sid, cat in self.service_categories.items()
                if self.base_action(sid, cat) == "block"]

    def vectorized(self, catalogue: Catalogue) -> PolicyTable:
        return PolicyTable(self, catalogue)

    def _category(self, service_id: str) -> str:
        try:
            return self.service_categories[service_id]
        except KeyError:
            raise ValueError(f"unknown service {service_id!r}") from None


class PolicyTable:
    """`Policy.action` for whole batches: uint8 per flow, 0 allow, 1 monitor, 2 block.

    The base action is one gather by service index; each exception network then overwrites the
    flows it covers, lowest precedence first, so the highest-precedence entry is written last.
    The cost is O(flows x exception networks) vectorized operations, no Python loop per flow.
    """

    def __init__(self, policy: Policy, catalogue: Catalogue):
        services = catalogue.services
        self.base = np.array([ACTIONS.index(policy.base_action(s.id, s.category))
                              for s in services], np.uint8)
        self._entries = []
        for e in reversed(policy.entries()):
            applies = np.array([e.exception.applies_to(s.id, s.category) for s in services], bool)
            if applies.any():
                bounds = (e.first >> 64, e.first & _U64, e.last >> 64, e.last & _U64)
                self._entries.append((applies, *map(np.uint64, bounds),
                                      ACTIONS.index(e.exception.action)))
        # whether any flow can be blocked: when none can, violations() is all False, and the
        # pipeline skips it (three passes over every batch for the default policy)
        self.blocks = bool((self.base == BLOCK).any()) or any(e[-1] == BLOCK for e in self._entries)

    def actions(self, service_idx: np.ndarray, host_hi: np.ndarray, host_lo: np.ndarray,
                has_host: np.ndarray) -> np.ndarray:
        out = self.base[service_idx]
        if not self._entries:
            return out
        hi = np.asarray(host_hi, np.uint64)
        lo = np.asarray(host_lo, np.uint64)
        has_host = np.asarray(has_host, bool)
        for applies, fhi, flo, lhi, llo, code in self._entries:
            # Compare addresses only on the rows of the services the exception names.
            rows = np.flatnonzero(applies[service_idx] & has_host)
            if not rows.size:
                continue
            h, low = hi[rows], lo[rows]
            inside = (((h > fhi) | ((h == fhi) & (low >= flo)))
                      & ((h < lhi) | ((h == lhi) & (low <= llo))))
            out[rows[inside]] = code
        return out

    def violations(self, service_idx: np.ndarray, host_hi: np.ndarray, host_lo: np.ndarray,
                   has_host: np.ndarray) -> np.ndarray:
        """bool per flow: a blocked service with an internal host (flows without one never are)."""
        has_host = np.asarray(has_host, bool)
        return (self.actions(service_idx, host_hi, host_lo, has_host) == BLOCK) & has_host


def parse_policy(section: dict | None, catalogue: Catalogue) -> Policy:
    """Validate the `[policy]` table against the catalogue; None or {} monitors everything."""
    section = {} if section is None else section
    if not isinstance(section, dict):
        raise PolicyError("policy", "expected a table")
    for key in section:
        if key not in POLICY_KEYS:
            raise PolicyError(f"policy.{key}", f"unknown key{_suggest(key, POLICY_KEYS)}")
    default = _choice(section.get("default", "monitor"), "policy.default", ACTIONS)
    prefix_block = _choice(section.get("prefix_block", "service-ports"), "policy.prefix_block",
                           PREFIX_BLOCK)
    known_categories = tuple(catalogue.categories)
    categories = _action_table(section.get("categories", {}), "policy.categories",
                               known_categories, "category")
    services = _action_table(section.get("services", {}), "policy.services",
                             tuple(catalogue.by_id), "service")
    raw_exceptions = section.get("exceptions", [])
    if not isinstance(raw_exceptions, list):
        raise PolicyError("policy.exceptions", "expected a list of tables ([[policy.exceptions]])")
    exceptions = tuple(_exception(t, f"policy.exceptions[{i}]", catalogue, known_categories)
                       for i, t in enumerate(raw_exceptions))
    policy = Policy(default=default, categories=categories, services=services,
                    exceptions=exceptions, prefix_block=prefix_block,
                    service_categories={s.id: s.category for s in catalogue.services})
    _check_conflicts(policy)
    return policy


# ---------------------------------------------------------------- internals


def _mapped_prefixlen(net: Network) -> int:
    return net.prefixlen + 96 if net.version == 4 else net.prefixlen


def _suggest(word: str, choices) -> str:
    import difflib  # only for a configuration error: not a module the running daemon keeps

    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def _choice(value: Any, key: str, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value.strip().lower() not in choices:
        raise PolicyError(key, f"{value!r}: expected one of {', '.join(choices)}")
    return value.strip().lower()


def _action_table(table: Any, where: str, known: tuple[str, ...], kind: str) -> dict[str, str]:
    if not isinstance(table, dict):
        raise PolicyError(where, f"expected a table of {kind} = action")
    out = {}
    for name, action in table.items():
        if name not in known:
            raise PolicyError(f"{where}.{name}", f"unknown {kind}{_suggest(name, known)}")
        out[name] = _choice(action, f"{where}.{name}", ACTIONS)
    return out


def _exception(table: Any, where: str, catalogue: Catalogue,
               categories: tuple[str, ...]) -> PolicyException:
    if not isinstance(table, dict):
        raise PolicyError(where, "expected a table")
    for key in table:
        if key not in EXCEPTION_KEYS:
            raise PolicyError(f"{where}.{key}", f"unknown key{_suggest(key, EXCEPTION_KEYS)}")
    service, category = table.get("service"), table.get("category")
    if (service is None) == (category is None):
        raise PolicyError(where, "give exactly one of service or category")
    if service is not None and service not in catalogue.by_id:
        raise PolicyError(f"{where}.service",
                          f"{service!r}: unknown service{_suggest(str(service), catalogue.by_id)}")
    if category is not None and category not in categories:
        raise PolicyError(f"{where}.category",
                          f"{category!r}: unknown category{_suggest(str(category), categories)}")
    hosts = table.get("hosts")
    if not isinstance(hosts, list) or not hosts:
        raise PolicyError(f"{where}.hosts", "expected a non-empty list of addresses or networks")
    networks = tuple(_network(h, f"{where}.hosts[{i}]") for i, h in enumerate(hosts))
    note = table.get("note", "")
    if not isinstance(note, str):
        raise PolicyError(f"{where}.note", f"{note!r}: expected a string")
    problem = text_problem(note, MAX_NOTE)  # it reaches firewall comments: no line of its own
    if problem:
        raise PolicyError(f"{where}.note", problem)
    if "action" not in table:  # an exception may allow or block: the reader must not have to guess
        raise PolicyError(f"{where}.action", "missing: say allow, monitor or block")
    return PolicyException(key=where, service=service, category=category, networks=networks,
                           action=_choice(table["action"], f"{where}.action", ACTIONS),
                           note=" ".join(note.split()))


def _network(text: Any, key: str) -> Network:
    if not isinstance(text, str):
        raise PolicyError(key, f"{text!r}: expected an address or network string")
    try:
        return ipaddress.ip_network(text.strip(), strict=True)
    except ValueError:
        pass
    try:
        loose = ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise PolicyError(key, f"{text!r}: not a network") from None
    raise PolicyError(key, f"{text!r}: host bits set (did you mean {loose}?)")


def _check_conflicts(policy: Policy) -> None:
    """The same network listed twice for the same service or category with different actions
    has no meaningful precedence: say so instead of silently taking the first."""
    seen: dict[tuple, tuple[str, str]] = {}
    for exc in policy.exceptions:
        for i, net in enumerate(exc.networks):
            ident = (exc.service, exc.category, network_range(net))
            key = f"{exc.key}.hosts[{i}]"
            if ident in seen and seen[ident][1] != exc.action:
                other_key, other_action = seen[ident]
                raise PolicyError(key, f"'{net}' for {exc.target} is also in {other_key} "
                                       f"with action {other_action}")
            seen.setdefault(ident, (key, exc.action))
