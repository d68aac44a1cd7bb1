"""nftables (`nft -f`): one `inet` table for both families, a named interval set per service
and family for its prefixes, and a chain per service jumped from the forward chain. An exception
`return`s from the service's chain, so it skips that service's rules only and never accepts."""

from __future__ import annotations

import textwrap

from collector.classify.catalogue import PROTO_NAMES, Catalogue
from collector.policy.firewall.plan import Plan, Rule, chain_rules, plans
from collector.policy.firewall.ranges import collapse, net_text, range_text
from collector.policy.firewall.text import comment, header, para, plan_comment
from collector.policy.model import Policy


def render_nftables(policy: Policy, catalogue: Catalogue, info: dict) -> str:
    all_plans = plans(policy, catalogue)
    how = para("Load with `nft -f FILE`. One inet table covers IPv4 and IPv6; the first two "
               "statements make a reload replace it atomically. The chain hooks `forward`: the "
               "traffic to block crosses this router between internal hosts and the Internet. It "
               "only drops, and an accept in another table never overrides a drop here, so its "
               "priority does not matter.")
    out = comment(header(policy, catalogue, "nftables", info, all_plans, how), "#")
    out += ["", "table inet imflow", "delete table inet imflow", "", "table inet imflow {"]
    sets: dict[tuple[int, int], str] = {}
    names = _idents(all_plans)
    for p in all_plans:
        for c in p.clauses:
            for fam in (4, 6):
                nets = collapse(n for n in c.prefixes if n.version == fam)
                key = (p.service.index, fam)
                if nets and key not in sets:
                    sets[key] = f"pfx_{names[p.service.index]}_v{fam}"
                    elements = _elements([net_text(n) for n in nets])
                    out += [f"\tset {sets[key]} {{", f"\t\ttype ipv{fam}_addr",
                            "\t\tflags interval", *elements, "\t}", ""]
    chains, jumps = [], []
    for p in all_plans:
        chain = f"svc_{names[p.service.index]}"
        rules = [_nft_rule(r) for r in chain_rules(p, sets)]
        if not rules:
            chains += [*comment(plan_comment(p), "\t#"), ""]
            continue
        jumps.append(f"\t\tjump {chain}")
        chains += [f"\tchain {chain} {{", *comment(plan_comment(p), "\t\t#"),
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
            addrs = f"@{a.name}" if a.name else _nft_set([net_text(n) for n in a.nets])
            parts.append(f"{ip} {side} {addrs}")
    for side, ports in (("sport", r.sport), ("dport", r.dport)):
        if ports:  # clauses with a protocol always have ports
            items = [range_text(lo, hi, "-") for lo, hi in ports]
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


def _idents(all_plans: list[Plan]) -> dict[int, str]:
    """Service index -> an nft identifier (ids may hold '-'); a clash gets the index appended."""
    out: dict[int, str] = {}
    for p in all_plans:
        name = p.service.id.replace("-", "_")
        out[p.service.index] = name if name not in out.values() else f"{name}_{p.service.index}"
    return out
