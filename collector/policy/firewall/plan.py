"""What to drop for each blocked service, shared by every format: a `Plan` per service (its
first-match steps and packet clauses), and the same as `Rule`s for the formats that print one
line per rule.

What a blocked service becomes (per service, in catalogue order):

* its *owned* ports (catalogue `ports` minus `shared_ports`, per protocol, adjacent ranges
  merged) are dropped as **destination** ports, whichever side opened the connection. Both
  directions of every connection are covered: the packets towards the service port all carry it
  as destination port, and a connection whose first packet is dropped never starts. Source ports
  are not matched, because operating systems pick source ports from ranges that include service
  ports (BitTorrent 51413 lies inside the Linux and Windows ephemeral ranges): `sport 51413`
  would cut random HTTPS connections;
* its prefixes are dropped in both directions (to the prefix, and from it), restricted to the
  service's *shared* ports (`prefix_block = "service-ports"`, the default: "tcp dport 443 to the
  Telegram prefixes") or on every port (`prefix_block = "all"`, what the classifier counts);
  a service that lists prefixes and no ports at all is blocked by prefix on every port;
* shared ports (443, 80, 5222 ...) are **never** matched without a prefix: they carry other
  traffic too. A service known only by shared ports (WhatsApp, Signal) cannot be blocked by
  address and port; the file says so in a comment instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from collector.classify.catalogue import Catalogue, Network, Service
from collector.policy.firewall.ranges import Ranges, collapse, merge, port_text, subtract
from collector.policy.model import OTHER, Policy

PORT_PROTOS = (6, 17, 132)


@dataclass(frozen=True)
class Clause:
    """One packet pattern of a service: destination ports (any address), or its prefixes in
    both directions, optionally restricted to ports."""

    proto: int | None  # 6, 17, 132; None = every protocol (prefix clauses only)
    ports: Ranges  # () = any port
    prefixes: tuple[Network, ...] = ()  # () = any address


@dataclass(frozen=True)
class Step:
    """First-match step of a service: `accept` (an exception) or `drop`, for `hosts` or all."""

    verdict: str
    hosts: tuple[Network, ...] | None
    why: str


@dataclass
class Plan:
    service: Service
    steps: list[Step]
    clauses: list[Clause] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def plans(policy: Policy, catalogue: Catalogue) -> list[Plan]:
    """What to drop for each service blocked for some hosts, in catalogue order."""
    out = []
    for s in catalogue.services:
        steps = _steps(policy, s)
        if not steps:
            continue
        plan = Plan(s, steps)
        if s.id == OTHER:
            plan.notes.append("other (unclassified traffic) cannot be blocked by address/port: it "
                              "is everything the catalogue does not recognise; use a default-deny "
                              "forward policy for that")
        else:
            plan.clauses, plan.notes = _clauses(s, policy.prefix_block)
        out.append(plan)
    return out


def _steps(policy: Policy, s: Service) -> list[Step]:
    steps: list[Step] = []
    for entry in policy.entries_for(s.id, s.category):
        exc = entry.exception
        verdict = "drop" if exc.action == "block" else "accept"
        why = exc.key + (f' "{exc.note}"' if exc.note else "")
        if steps and steps[-1].verdict == verdict and steps[-1].hosts is not None:
            # Adjacent steps with one verdict commute under first-match: merge them.
            prev = steps.pop()
            whys = prev.why if why in prev.why.split(", ") else f"{prev.why}, {why}"
            steps.append(Step(verdict, (*prev.hosts, entry.network), whys))
        else:
            steps.append(Step(verdict, (entry.network,), why))
    if policy.base_action(s.id, s.category) == "block":
        steps.append(Step("drop", None, _base_key(policy, s)))
    while steps and steps[-1].verdict == "accept":
        steps.pop()  # an exception with no drop after it changes nothing
    return steps


def _base_key(policy: Policy, s: Service) -> str:
    if s.id in policy.services:
        return f"policy.services.{s.id}"
    if s.category in policy.categories:
        return f"policy.categories.{s.category}"
    return "policy.default"


def _clauses(s: Service, prefix_block: str) -> tuple[list[Clause], list[str]]:
    shared = {p: merge((r.lo, r.hi) for r in s.shared_ranges if r.proto == p) for p in PORT_PROTOS}
    owned = {p: subtract(merge((r.lo, r.hi) for r in s.port_ranges if r.proto == p), shared[p])
             for p in PORT_PROTOS}
    clauses = [Clause(p, owned[p]) for p in PORT_PROTOS if owned[p]]
    shared_text = ", ".join(port_text(p, shared[p]) for p in PORT_PROTOS if shared[p])
    notes = []
    if s.networks:
        if prefix_block == "all" or not (any(owned.values()) or any(shared.values())):
            clauses.append(Clause(None, (), s.networks))
        else:
            clauses += [Clause(p, shared[p], s.networks) for p in PORT_PROTOS if shared[p]]
    elif shared_text and clauses:
        notes.append(f"{s.id}: shared ports {shared_text} not blocked: they carry other traffic "
                     "too and the catalogue lists no prefixes to restrict them to")
    elif shared_text:
        notes.append(f"{s.id} cannot be blocked by address/port: its only ports ({shared_text}) "
                     "are shared with other traffic and the catalogue lists no prefixes for it; "
                     "add prefixes (classify.service add_prefixes) or filter by DNS/TLS name")
    if not clauses and not shared_text:
        notes.append(f"{s.id} cannot be blocked by address/port: the catalogue lists no ports or "
                     "prefixes for it (it is recognised by exporter application name only)")
    return clauses, notes


# ---------------------------------------------------------------- rules as data


@dataclass(frozen=True)
class Addr:
    nets: tuple[Network, ...]  # one family, collapsed and sorted
    name: str | None = None  # a named set holding `nets`


@dataclass(frozen=True)
class Rule:
    verdict: str  # drop | return (chains) | accept (Cisco permit)
    family: int | None  # 4, 6, or None = both (no address)
    proto: int | None = None
    src: Addr | None = None
    dst: Addr | None = None
    sport: Ranges = ()
    dport: Ranges = ()


def clause_rules(c: Clause, verdict: str, hosts: tuple[Network, ...] | None,
                 sets: dict[tuple[int, int], str] | None = None, svc: int = 0) -> Iterator[Rule]:
    """The rules of one clause; with `hosts`, only flows with one of them on the non-prefix side.
    `sets` maps (service index, family) to a named prefix set."""
    if not c.prefixes:
        if hosts is None:
            yield Rule(verdict, None, c.proto, dport=c.ports)
            return
        for fam in (4, 6):
            h = addr(hosts, fam)
            if h:
                yield Rule(verdict, fam, c.proto, src=h, dport=c.ports)
                yield Rule(verdict, fam, c.proto, dst=h, dport=c.ports)
        return
    for fam in (4, 6):
        p = addr(c.prefixes, fam, (sets or {}).get((svc, fam)))
        h = addr(hosts, fam) if hosts is not None else None
        if not p or (hosts is not None and not h):
            continue
        yield Rule(verdict, fam, c.proto, src=h, dst=p, dport=c.ports)
        yield Rule(verdict, fam, c.proto, src=p, sport=c.ports, dst=h)


def chain_rules(plan: Plan, sets: dict | None = None) -> list[Rule]:
    """Rules of a per-service chain (nftables, iptables): exceptions `return`."""
    rules: list[Rule] = []
    for step in plan.steps:
        if step.verdict == "accept":
            for fam in (4, 6):
                h = addr(step.hosts, fam)
                if h:
                    rules += [Rule("return", fam, src=h), Rule("return", fam, dst=h)]
        else:
            for c in plan.clauses:
                rules += clause_rules(c, "drop", step.hosts, sets, plan.service.index)
    return trim(rules)


def trim(rules: list[Rule]) -> list[Rule]:
    """Without the trailing rules that are not drops (a return with nothing after it)."""
    while rules and rules[-1].verdict != "drop":
        rules.pop()
    return rules


def addr(nets: Iterable[Network] | None, fam: int, name: str | None = None) -> Addr | None:
    picked = collapse(n for n in nets or () if n.version == fam)
    return Addr(picked, name) if picked else None
