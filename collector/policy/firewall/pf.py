"""pf (OpenBSD, FreeBSD) rules for an anchor: `block drop quick` for tcp and udp, a const table
per service for its prefixes. pf has no return, so an exception is not a pass rule: the drop
rules exclude the excepted hosts with `! <table>`, and a block for some hosts only uses a table
with the excepted ones cut out as negated entries."""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Iterator

from collector.classify.catalogue import PROTO_NAMES, Catalogue, Network
from collector.policy.firewall.plan import Clause, plans
from collector.policy.firewall.ranges import Ranges, collapse_all, net_text, range_text
from collector.policy.firewall.text import comment, header, para, plan_comment, sctp_note, short
from collector.policy.model import Policy


def render_pf(policy: Policy, catalogue: Catalogue, info: dict) -> str:
    all_plans = plans(policy, catalogue)
    how = para("Load into an anchor: put `anchor \"imflow\"` in pf.conf before your pass "
               "rules, then `pfctl -a imflow -f FILE`. `block drop quick` without a direction or "
               "interface matches forwarded packets on every interface, in and out, and stops "
               "evaluation there. pf has no return, so exceptions are excluded with `! <table>` "
               "instead of passed: these rules never pass traffic on your behalf.")
    out = comment(header(policy, catalogue, "pf", info, all_plans, how), "#")
    tables: list[tuple[str, str]] = []  # (name, declaration)
    rules: list[str] = []
    for p in all_plans:
        base = short(f"imflow_{p.service.id}".replace("-", "_"), 31)
        prefix_table = None
        if any(c.prefixes for c in p.clauses):
            prefix_table = base
            tables.append((base, _pf_table(base, collapse_all(n for c in p.clauses
                                                               for n in c.prefixes))))
        rules += comment(plan_comment(p, sctp_note(p, "pf rules")), "#")
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
                only = short(f"{base}_only{suffix}", 31)
                tables.append((only, _pf_table(only, only_nets, holes)))
            excl = None
            if allowed:
                excl = short(f"{base}_except{suffix}", 31)
                tables.append((excl, _pf_table(excl, collapse_all(allowed))))
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
    items = [range_text(lo, hi, ":") for lo, hi in ports]
    return items[0] if len(items) == 1 else "{ " + ", ".join(items) + " }"


def _pf_minus(nets: Iterable[Network], minus: list[Network]) -> tuple[tuple[Network, ...], ...]:
    """`nets` without `minus` as a pf table: (entries, negated entries). A pf table answers by
    longest prefix, so a negated entry inside a positive one cuts a hole; a positive entry
    inside an excluded network is dropped instead. CIDR blocks either nest or are disjoint."""
    keep = collapse_all(n for n in nets if not any(m.version == n.version and m.supernet_of(n)
                                                   for m in minus))
    holes = collapse_all(m for m in minus if any(m.version == n.version and n.supernet_of(m)
                                                 and n != m for n in keep))
    return keep, holes


def _pf_table(name: str, nets: Iterable[Network], holes: Iterable[Network] = ()) -> str:
    items = ", ".join([*(net_text(n) for n in nets), *(f"!{net_text(n)}" for n in holes)])
    lines = textwrap.wrap(items, 88, break_on_hyphens=False)
    if len(lines) == 1:
        return f"table <{name}> const {{ {items} }}"
    return " \\\n\t".join([f"table <{name}> const {{", *lines[:-1], f"{lines[-1]} }}"])
