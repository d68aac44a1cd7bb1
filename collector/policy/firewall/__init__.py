"""Firewall rules for the blocked part of the policy: nftables, iptables-restore, pf, Cisco ACL.

Pure text rendering: `render(policy, catalogue, fmt, header_info)` returns a file the operator
loads on the router or firewall that forwards traffic between the internal network and the
Internet. The rules only ever drop; everything they do not drop is left to the rest of the
operator's ruleset.

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

Exceptions (`[[policy.exceptions]]`, internal hosts, either side of the flow) keep the policy's
precedence (`Policy.entries`): for nftables and iptables each service has its own chain, jumped
from the forward chain, that starts with `return` for the excepted hosts, so an exception skips
that service's rules only and never accepts traffic on the operator's behalf. pf has no return:
its drop rules exclude the excepted hosts with `! <table>`. Cisco ACLs are first-match lists
with no sub-chains: `permit` lines for the excepted hosts come before the service's `deny` lines
and the list ends with `permit ip any any`.

Limits: rules see addresses and ports, not the classifier's tie-breaks or exporter application
ids; a port owned by one service (xmpp tcp/5222) is dropped also towards prefixes of another.
pf and IOS ACLs match ports only for tcp and udp, so sctp ports are listed as not blocked there.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import textwrap
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from collector import __version__
from collector.classify.catalogue import (
    PROTO_NAMES,
    Catalogue,
    Network,
    PortRange,
    Service,
)
from collector.policy.model import OTHER, Policy

FORMATS = ("nftables", "iptables", "ip6tables", "pf", "cisco-acl")
CHAIN = "IMFLOW-BLOCK"
ACL_V6 = "IMFLOW-BLOCK-V6"
REMARK_MAX = 100  # IOS remark text limit
PORT_PROTOS = (6, 17, 132)
Ranges = tuple[tuple[int, int], ...]


# ---------------------------------------------------------------- the plan, shared by all formats


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
    shared = {p: _merge((r.lo, r.hi) for r in s.shared_ranges if r.proto == p) for p in PORT_PROTOS}
    owned = {p: _subtract(_merge((r.lo, r.hi) for r in s.port_ranges if r.proto == p), shared[p])
             for p in PORT_PROTOS}
    clauses = [Clause(p, owned[p]) for p in PORT_PROTOS if owned[p]]
    shared_text = ", ".join(_port_text(p, shared[p]) for p in PORT_PROTOS if shared[p])
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


def _clause_rules(c: Clause, verdict: str, hosts: tuple[Network, ...] | None,
                  sets: dict[tuple[int, int], str] | None = None, svc: int = 0) -> Iterator[Rule]:
    """The rules of one clause; with `hosts`, only flows with one of them on the non-prefix side.
    `sets` maps (service index, family) to a named prefix set."""
    if not c.prefixes:
        if hosts is None:
            yield Rule(verdict, None, c.proto, dport=c.ports)
            return
        for fam in (4, 6):
            h = _addr(hosts, fam)
            if h:
                yield Rule(verdict, fam, c.proto, src=h, dport=c.ports)
                yield Rule(verdict, fam, c.proto, dst=h, dport=c.ports)
        return
    for fam in (4, 6):
        p = _addr(c.prefixes, fam, (sets or {}).get((svc, fam)))
        h = _addr(hosts, fam) if hosts is not None else None
        if not p or (hosts is not None and not h):
            continue
        yield Rule(verdict, fam, c.proto, src=h, dst=p, dport=c.ports)
        yield Rule(verdict, fam, c.proto, src=p, sport=c.ports, dst=h)


def _chain_rules(plan: Plan, sets: dict | None = None) -> list[Rule]:
    """Rules of a per-service chain (nftables, iptables): exceptions `return`."""
    rules: list[Rule] = []
    for step in plan.steps:
        if step.verdict == "accept":
            for fam in (4, 6):
                h = _addr(step.hosts, fam)
                if h:
                    rules += [Rule("return", fam, src=h), Rule("return", fam, dst=h)]
        else:
            for c in plan.clauses:
                rules += _clause_rules(c, "drop", step.hosts, sets, plan.service.index)
    return _trim(rules)


def _trim(rules: list[Rule]) -> list[Rule]:
    while rules and rules[-1].verdict != "drop":
        rules.pop()
    return rules


def _addr(nets: Iterable[Network] | None, fam: int, name: str | None = None) -> Addr | None:
    picked = _collapse(n for n in nets or () if n.version == fam)
    return Addr(picked, name) if picked else None


# ---------------------------------------------------------------- header


def header(policy: Policy, catalogue: Catalogue, fmt: str, info: dict, all_plans: list[Plan],
           how: list[str]) -> list[str]:
    """Header lines (without comment markers) shared by every format."""
    generated = info.get("generated")
    if isinstance(generated, dt.datetime | dt.date):
        generated = generated.isoformat()
    snapshot = f"snapshot {catalogue.snapshot}" + (f", fetched {catalogue.fetched}"
                                                  if catalogue.fetched else "")
    lines = [f"Generated by imflow {__version__} ({fmt}); do not edit, regenerate with "
             + "`imflow policy render`.",
             f"Catalogue: {snapshot}.",
             f"Policy: {info.get('source') or '(not recorded)'}.",
             f"Generated at: {generated or '(not recorded)'}.",
             *_wrap(f"Prefixes: prefix_block = \"{policy.prefix_block}\" ("
                    + ("every port to and from a blocked service's prefixes"
                       if policy.prefix_block == "all"
                       else "a blocked service's shared ports only together with its prefixes")
                    + ").")]
    by_why: dict[str, list[str]] = {}
    for p in all_plans:
        for step in p.steps:
            if step.verdict == "drop" and step.hosts is None:
                by_why.setdefault(step.why, []).append(p.service.id)
    blocked = "; ".join(f"{', '.join(ids)} ({why})" for why, ids in by_why.items())
    lines += _wrap(f"Blocked: {blocked or 'nothing'}.")
    excepted: dict[tuple[str, str, str], list[str]] = {}
    for p in all_plans:
        for step in p.steps:
            if step.hosts is not None:
                verb = "blocked" if step.verdict == "drop" else "not blocked"
                key = (verb, _hosts_text(step.hosts), step.why)
                excepted.setdefault(key, []).append(p.service.id)
    for (verb, hosts, why), ids in excepted.items():
        lines += _wrap(f"Exception: {', '.join(ids)} {verb} for {hosts} ({why}).")
    unblockable = [p.service.id for p in all_plans if not p.clauses]
    if unblockable:
        lines += _wrap(f"Not blockable by address/port: {', '.join(unblockable)} (see below).")
    return [*lines, "", *how]


def _wrap(text: str, width: int = 96) -> list[str]:
    return textwrap.wrap(text, width, subsequent_indent="  ", break_on_hyphens=False)


def _para(text: str) -> list[str]:
    return textwrap.wrap(text, 92, break_on_hyphens=False)


def _comment(lines: Iterable[str], mark: str) -> list[str]:
    return [f"{mark} {line}".rstrip() for line in lines]


# ---------------------------------------------------------------- nftables


def render_nftables(policy: Policy, catalogue: Catalogue, info: dict) -> str:
    all_plans = plans(policy, catalogue)
    how = _para("Load with `nft -f FILE`. One inet table covers IPv4 and IPv6; the first two "
                "statements make a reload replace it atomically. The chain hooks `forward`: the "
                "traffic to block crosses this router between internal hosts and the Internet. It "
                "only drops, and an accept in another table never overrides a drop here, so its "
                "priority does not matter.")
    out = _comment(header(policy, catalogue, "nftables", info, all_plans, how), "#")
    out += ["", "table inet imflow", "delete table inet imflow", "", "table inet imflow {"]
    sets: dict[tuple[int, int], str] = {}
    names = _idents(all_plans)
    for p in all_plans:
        for c in p.clauses:
            for fam in (4, 6):
                nets = _collapse(n for n in c.prefixes if n.version == fam)
                key = (p.service.index, fam)
                if nets and key not in sets:
                    sets[key] = f"pfx_{names[p.service.index]}_v{fam}"
                    elements = _elements([_net_text(n) for n in nets])
                    out += [f"\tset {sets[key]} {{", f"\t\ttype ipv{fam}_addr",
                            "\t\tflags interval", *elements, "\t}", ""]
    chains, jumps = [], []
    for p in all_plans:
        chain = f"svc_{names[p.service.index]}"
        rules = [_nft_rule(r) for r in _chain_rules(p, sets)]
        if not rules:
            chains += [*_comment(_plan_comment(p), "\t#"), ""]
            continue
        jumps.append(f"\t\tjump {chain}")
        chains += [f"\tchain {chain} {{", *_comment(_plan_comment(p), "\t\t#"),
                   *(f"\t\t{r}" for r in rules), "\t}", ""]
    out += ["\tchain forward {", "\t\ttype filter hook forward priority filter; policy accept;",
            *jumps, "\t}", "", *chains]
    while out[-1] == "":
        out.pop()
    return "\n".join([*out, "}", ""])


def _nft_rule(r: Rule) -> str:
    parts = []
    ip = "ip" if r.family == 4 else "ip6"
    for side, a in (("saddr", r.src), ("daddr", r.dst)):
        if a:
            addrs = f"@{a.name}" if a.name else _nft_set([_net_text(n) for n in a.nets])
            parts.append(f"{ip} {side} {addrs}")
    for side, ports in (("sport", r.sport), ("dport", r.dport)):
        if ports:  # clauses with a protocol always have ports
            items = [_range(lo, hi, "-") for lo, hi in ports]
            parts.append(f"{PROTO_NAMES[r.proto]} {side} {_nft_set(items)}")
    parts.append(r.verdict)
    return " ".join(parts)


def _nft_set(items: list[str]) -> str:
    return items[0] if len(items) == 1 else "{ " + ", ".join(items) + " }"


def _elements(items: list[str]) -> list[str]:
    lines = textwrap.wrap(", ".join(items), 88, break_on_hyphens=False)
    if len(lines) == 1:
        return [f"\t\telements = {{ {lines[0]} }}"]
    return ["\t\telements = {", *(f"\t\t\t{line}" for line in lines), "\t\t}"]


def _plan_comment(p: Plan, extra: Iterable[str] = (), width: int = 96) -> list[str]:
    lines = [f"{p.service.id}: {p.service.name} ({p.service.category})"]
    for step in p.steps:
        what = "exception" if step.verdict == "accept" else "block"
        lines += _wrap(f"{what} for {_hosts_text(step.hosts)}: {step.why}", width)
    for note in (*p.notes, *extra):
        lines += _wrap(note, width)
    return lines


def _sctp_note(p: Plan, tool: str) -> list[str]:
    sctp = [_port_text(132, c.ports) for c in p.clauses if c.proto == 132]
    if not sctp:
        return []
    ports = ", ".join(sctp)
    return [f"{p.service.id}: {ports} not blocked: {tool} match ports only for tcp and udp"]


def _hosts_text(hosts) -> str:
    return "all hosts" if hosts is None else ", ".join(_net_text(n) for n in hosts)


# ---------------------------------------------------------------- iptables


def render_iptables(policy: Policy, catalogue: Catalogue, info: dict) -> tuple[str, str]:
    """(iptables-restore text, ip6tables-restore text)."""
    return _iptables(policy, catalogue, info, 4), _iptables(policy, catalogue, info, 6)


def _iptables(policy: Policy, catalogue: Catalogue, info: dict, fam: int) -> str:
    tool = "iptables" if fam == 4 else "ip6tables"
    all_plans = plans(policy, catalogue)
    how = _para(f"Load with `{tool}-restore --noflush FILE` (without --noflush the whole "
                f"filter table is replaced). Chain {CHAIN} is inserted first in FORWARD, so that "
                "earlier ACCEPT rules cannot bypass it: the traffic to block crosses this router. "
                "Each service has its own chain; an exception RETURNs from it and never ACCEPTs. "
                "A reload flushes the chains but inserts the jump again: run "
                f"`{tool} -D FORWARD -j {CHAIN}` before reloading.")
    out = _comment(header(policy, catalogue, tool, info, all_plans, how), "#")
    decls, jumps, body = [f":{CHAIN} - [0:0]"], [], []
    for p in all_plans:
        rules = [r for r in _chain_rules(p) if r.family in (None, fam)]
        rules = _trim(rules)
        comment = _comment(_plan_comment(p), "#")
        if not rules:
            body += [*comment, ""]
            continue
        chain = _short(f"IMFLOW-{p.service.id}", 28)
        decls.append(f":{chain} - [0:0]")
        jumps.append(f"-A {CHAIN} -j {chain}")
        body += [*comment, *(line for r in rules for line in _ipt_rules(chain, r)), ""]
    out += ["", "*filter", *decls, f"-I FORWARD 1 -j {CHAIN}", *jumps, "", *body, "COMMIT", ""]
    return "\n".join(out)


def _ipt_rules(chain: str, r: Rule) -> Iterator[str]:
    verdict = r.verdict.upper()  # DROP, RETURN
    ports = r.sport or r.dport
    flag = "sport" if r.sport else "dport"
    for src in (r.src.nets if r.src else (None,)):
        for dst in (r.dst.nets if r.dst else (None,)):
            head = f"-A {chain}" + (f" -s {_net_text(src)}" if src else "") \
                + (f" -d {_net_text(dst)}" if dst else "")
            if r.proto is None:
                yield f"{head} -j {verdict}"
                continue
            proto = PROTO_NAMES[r.proto]
            if len(ports) == 1:
                yield f"{head} -p {proto} -m {proto} --{flag} {_range(*ports[0], ':')} -j {verdict}"
                continue
            for chunk in _multiport_chunks(ports):
                listed = ",".join(_range(lo, hi, ":") for lo, hi in chunk)
                yield f"{head} -p {proto} -m multiport --{flag}s {listed} -j {verdict}"


def _multiport_chunks(ports: Ranges) -> Iterator[Ranges]:
    """multiport takes at most 15 ports per rule, a range counting as two."""
    chunk: list[tuple[int, int]] = []
    used = 0
    for lo, hi in ports:
        cost = 1 if lo == hi else 2
        if used + cost > 15:
            yield tuple(chunk)
            chunk, used = [], 0
        chunk.append((lo, hi))
        used += cost
    if chunk:
        yield tuple(chunk)


# ---------------------------------------------------------------- pf


def render_pf(policy: Policy, catalogue: Catalogue, info: dict) -> str:
    all_plans = plans(policy, catalogue)
    how = _para("Load into an anchor: put `anchor \"imflow\"` in pf.conf before your pass "
                "rules, then `pfctl -a imflow -f FILE`. `block drop quick` without a direction or "
                "interface matches forwarded packets on every interface, in and out, and stops "
                "evaluation there. pf has no return, so exceptions are excluded with `! <table>` "
                "instead of passed: these rules never pass traffic on your behalf.")
    out = _comment(header(policy, catalogue, "pf", info, all_plans, how), "#")
    tables: list[tuple[str, str]] = []  # (name, declaration)
    rules: list[str] = []
    for p in all_plans:
        base = _short(f"imflow_{p.service.id}".replace("-", "_"), 31)
        prefix_table = None
        if any(c.prefixes for c in p.clauses):
            prefix_table = base
            tables.append((base, _pf_table(base, _collapse_all(n for c in p.clauses
                                                                for n in c.prefixes))))
        rules += _comment(_plan_comment(p, _sctp_note(p, "pf rules")), "#")
        allowed: list[Network] = []
        n = 0
        for step in p.steps:
            if step.verdict == "accept":
                allowed += step.hosts or ()
                continue
            n += 1
            suffix = "" if len(p.steps) == 1 or n == 1 else str(n)
            only = None
            if step.hosts is not None:
                only_nets, holes = _pf_minus(step.hosts, allowed)
                if not only_nets:
                    continue
                only = _short(f"{base}_only{suffix}", 31)
                tables.append((only, _pf_table(only, only_nets, holes)))
            excl = None
            if allowed:
                excl = _short(f"{base}_except{suffix}", 31)
                tables.append((excl, _pf_table(excl, _collapse_all(allowed))))
            for c in p.clauses:
                if c.proto != 132:
                    rules += _pf_rules(c, only, excl, prefix_table)
        rules.append("")
    used = "\n".join(rules)  # an exclusion table only prefix rules would use stays unused
    out += ["", *(decl for name, decl in tables if f"<{name}>" in used), "", *rules]
    while out[-1] == "":
        out.pop()
    return "\n".join([*out, ""])


def _pf_rules(c: Clause, only: str | None, excl: str | None, prefixes: str | None) -> Iterator[str]:
    proto = f" proto {PROTO_NAMES[c.proto]}" if c.proto else ""
    ports = f" port {_pf_ports(c.ports)}" if c.ports else ""
    not_excl = f"! <{excl}>" if excl else "any"
    if not c.prefixes:
        if only is None:
            yield f"block drop quick{proto} from {not_excl} to {not_excl}{ports}"
        else:
            yield f"block drop quick{proto} from <{only}> to {not_excl}{ports}"
            yield f"block drop quick{proto} from {not_excl} to <{only}>{ports}"
        return
    host = f"<{only}>" if only else not_excl
    yield f"block drop quick{proto} from {host} to <{prefixes}>{ports}"
    yield f"block drop quick{proto} from <{prefixes}>{ports} to {host}"


def _pf_ports(ports: Ranges) -> str:
    items = [_range(lo, hi, ":") for lo, hi in ports]
    return items[0] if len(items) == 1 else "{ " + ", ".join(items) + " }"


def _pf_minus(nets: Iterable[Network], minus: list[Network]) -> tuple[tuple[Network, ...], ...]:
    """`nets` without `minus` as a pf table: (entries, negated entries). A pf table answers by
    longest prefix, so a negated entry inside a positive one cuts a hole; a positive entry
    inside an excluded network is dropped instead. CIDR blocks either nest or are disjoint."""
    keep = _collapse_all(n for n in nets if not any(m.version == n.version and m.supernet_of(n)
                                                    for m in minus))
    holes = _collapse_all(m for m in minus if any(m.version == n.version and n.supernet_of(m)
                                                  and n != m for n in keep))
    return keep, holes


def _pf_table(name: str, nets: Iterable[Network], holes: Iterable[Network] = ()) -> str:
    items = ", ".join([*(_net_text(n) for n in nets), *(f"!{_net_text(n)}" for n in holes)])
    lines = textwrap.wrap(items, 88, break_on_hyphens=False)
    if len(lines) == 1:
        return f"table <{name}> const {{ {items} }}"
    return " \\\n\t".join([f"table <{name}> const {{", *lines[:-1], f"{lines[-1]} }}"])


# ---------------------------------------------------------------- Cisco IOS ACL


def render_cisco(policy: Policy, catalogue: Catalogue, info: dict) -> str:
    all_plans = plans(policy, catalogue)
    how = _para("Paste in configuration mode. IOS ACLs are stateless and first-match: apply "
                f"{CHAIN} and {ACL_V6} inbound on the inside and the outside interface "
                f"(`ip access-group {CHAIN} in`, `ipv6 traffic-filter {ACL_V6} in`) so that the "
                "first packet towards a blocked port is dropped whichever side sends it. "
                "Exceptions are permit lines before a service's deny lines; each list ends with a "
                "permit of everything else, so merge its lines before your own final rules if you "
                "already filter on those interfaces.")
    out = _comment((_ios_text(line) for line in
                    header(policy, catalogue, "cisco-acl", info, all_plans, how)), "!")
    for fam, name, kw, anyproto in ((4, CHAIN, "ip access-list extended", "ip"),
                                    (6, ACL_V6, "ipv6 access-list", "ipv6")):
        out += ["!", f"no {kw} {name}", f"{kw} {name}"]
        for p in all_plans:
            out += [f" remark {_ios_text(line)}"
                    for line in _plan_comment(p, _sctp_note(p, "IOS ACLs"), width=REMARK_MAX)]
            for step in p.steps:
                for c in p.clauses:
                    if c.proto == 132:
                        continue
                    for r in _clause_rules(c, step.verdict, step.hosts):
                        if r.family in (None, fam):
                            out += _acl_lines(r, fam, anyproto)
        out += [" remark everything else is left to the rest of the configuration",
                f" permit {anyproto} any any"]
    return "\n".join([*out, "!", ""])


def _ios_text(text: str) -> str:
    """'?' asks the IOS command line for help even inside a remark: pasting would break."""
    return text.replace("?", "")


def _acl_lines(r: Rule, fam: int, anyproto: str) -> Iterator[str]:
    proto = PROTO_NAMES[r.proto] if r.proto else anyproto
    for src in (r.src.nets if r.src else (None,)):
        for dst in (r.dst.nets if r.dst else (None,)):
            for sp in r.sport or (None,):
                for dp in r.dport or (None,):
                    yield (f" {'deny' if r.verdict == 'drop' else 'permit'} {proto} "
                           f"{_acl_addr(src, fam)}{_acl_port(sp)} "
                           f"{_acl_addr(dst, fam)}{_acl_port(dp)}")


def _acl_addr(net: Network | None, fam: int) -> str:
    if net is None:
        return "any"
    if net.prefixlen == net.max_prefixlen:
        return f"host {net.network_address}"
    if fam == 6:
        return str(net)
    return f"{net.network_address} {net.hostmask}"


def _acl_port(r: tuple[int, int] | None) -> str:
    if r is None:
        return ""
    return f" eq {r[0]}" if r[0] == r[1] else f" range {r[0]} {r[1]}"


# ---------------------------------------------------------------- entry point


def render(policy: Policy, catalogue: Catalogue, fmt: str, header_info: dict | None = None) -> str:
    """The rules in `fmt` (one of FORMATS). `header_info`: `source` (the config path) and
    `generated` (time string or datetime; passed in so that output is reproducible)."""
    info = header_info or {}
    if fmt == "nftables":
        return render_nftables(policy, catalogue, info)
    if fmt in ("iptables", "ip6tables"):
        return _iptables(policy, catalogue, info, 4 if fmt == "iptables" else 6)
    if fmt == "pf":
        return render_pf(policy, catalogue, info)
    if fmt == "cisco-acl":
        return render_cisco(policy, catalogue, info)
    raise ValueError(f"unknown firewall format {fmt!r}: expected one of {', '.join(FORMATS)}")


# ---------------------------------------------------------------- helpers


def _merge(ranges: Iterable[tuple[int, int]]) -> Ranges:
    """Sorted, with overlapping and adjacent ranges merged."""
    out: list[list[int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return tuple((lo, hi) for lo, hi in out)


def _subtract(ranges: Ranges, minus: Ranges) -> Ranges:
    out = []
    for lo, hi in ranges:
        for mlo, mhi in minus:
            if mhi < lo or mlo > hi:
                continue
            if mlo > lo:
                out.append((lo, mlo - 1))
            lo = mhi + 1
            if lo > hi:
                break
        if lo <= hi:
            out.append((lo, hi))
    return _merge(out)


def _range(lo: int, hi: int, sep: str) -> str:
    return str(lo) if lo == hi else f"{lo}{sep}{hi}"


def _port_text(proto: int, ports: Ranges) -> str:
    return ", ".join(str(PortRange(proto, lo, hi)) for lo, hi in ports)


def _collapse(nets: Iterable[Network]) -> tuple[Network, ...]:
    return tuple(ipaddress.collapse_addresses(nets))


def _collapse_all(nets: Iterable[Network]) -> tuple[Network, ...]:
    nets = list(nets)
    return tuple(n for fam in (4, 6) for n in _collapse(x for x in nets if x.version == fam))


def _net_text(net: Network) -> str:
    """A single address without its /32 or /128."""
    return str(net.network_address) if net.prefixlen == net.max_prefixlen else str(net)


def _idents(all_plans: list[Plan]) -> dict[int, str]:
    """Service index -> an nft identifier (ids may hold '-'); a clash gets the index appended."""
    out: dict[int, str] = {}
    for p in all_plans:
        name = p.service.id.replace("-", "_")
        out[p.service.index] = name if name not in out.values() else f"{name}_{p.service.index}"
    return out


def _short(name: str, limit: int) -> str:
    """Names longer than the tool allows keep a prefix and a stable hash of the whole."""
    if len(name) <= limit:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:6]
    return f"{name[:limit - 7]}_{digest}"
