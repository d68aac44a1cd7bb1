"""iptables-restore and ip6tables-restore: one file per family, chain `CHAIN` inserted first in
FORWARD and a chain per service jumped from it. An exception `RETURN`s from the service's
chain; ports go through `-m multiport` in chunks of 15.

A restore file cannot ask whether a rule is there, so loading it again inserts the FORWARD
jump again. The `*-script` formats wrap the same rules in a shell script that loads them and
then inserts the jump only when `iptables -C` does not find it: run it as often as you like."""

from __future__ import annotations

from collections.abc import Iterator

from collector.classify.catalogue import PROTO_NAMES, Catalogue
from collector.policy.firewall.plan import Rule, chain_rules, plans, trim
from collector.policy.firewall.ranges import Ranges, net_text, range_text
from collector.policy.firewall.text import CHAIN, comment, header, para, plan_comment, short
from collector.policy.model import Policy


def render_iptables(policy: Policy, catalogue: Catalogue, info: dict) -> tuple[str, str]:
    """(iptables-restore text, ip6tables-restore text)."""
    return render_family(policy, catalogue, info, 4), render_family(policy, catalogue, info, 6)


def render_family(policy: Policy, catalogue: Catalogue, info: dict, fam: int, hook: bool = True) -> str:
    """The iptables-restore (`fam` 4) or ip6tables-restore (6) text; `hook`: with the jump from
    FORWARD (the script formats add it themselves, once)."""
    tool = "iptables" if fam == 4 else "ip6tables"
    all_plans = plans(policy, catalogue)
    if hook:
        how = para(f"Load with `{tool}-restore --noflush FILE` (without --noflush the whole "
                   f"filter table is replaced). Chain {CHAIN} is inserted first in FORWARD, so that "
                   "earlier ACCEPT rules cannot bypass it: the traffic to block crosses this router. "
                   "Each service has its own chain; an exception RETURNs from it and never ACCEPTs. "
                   "A reload flushes the chains but inserts the jump again: run "
                   f"`{tool} -D FORWARD -j {CHAIN}` before reloading, or render "
                   f"`--format {tool}-script`, which inserts it only once.")
    else:
        how = para(f"Run this script as root: it loads the rules with `{tool}-restore --noflush` "
                   f"and inserts the jump to {CHAIN} first in FORWARD only if `{tool} -C` does not "
                   "find it, so running it again replaces the rules and keeps one jump. Each "
                   "service has its own chain; an exception RETURNs from it and never ACCEPTs.")
    out = comment(header(policy, catalogue, f"{tool}-script" if not hook else tool, info, all_plans, how), "#")
    decls, jumps, body = [f":{CHAIN} - [0:0]"], [], []
    for p in all_plans:
        rules = [r for r in chain_rules(p) if r.family in (None, fam)]
        rules = trim(rules)
        notes = comment(plan_comment(p), "#")
        if not rules:
            body += [*notes, ""]
            continue
        chain = short(f"IMFLOW-{p.service.id}", 28)
        decls.append(f":{chain} - [0:0]")
        jumps.append(f"-A {CHAIN} -j {chain}")
        body += [*notes, *(line for r in rules for line in _ipt_rules(chain, r)), ""]
    out += ["", "*filter", *decls, *([f"-I FORWARD 1 -j {CHAIN}"] if hook else []), *jumps, "", *body, "COMMIT", ""]
    return "\n".join(out)


SCRIPT_END = "IMFLOW_RULES"  # the here-document's end: no rule or comment line is this word alone


def render_script(policy: Policy, catalogue: Catalogue, info: dict, fam: int) -> str:
    """A POSIX sh script for `fam` that loads the rules and hooks FORWARD once, whatever ran
    before: the reload a restore file cannot do."""
    tool = "iptables" if fam == 4 else "ip6tables"
    rules = render_family(policy, catalogue, info, fam, hook=False)
    if any(line == SCRIPT_END for line in rules.splitlines()):
        raise ValueError(f"{tool} rules: a line reads {SCRIPT_END}")
    return "\n".join(["#!/bin/sh", "set -eu", f"{tool}-restore --noflush <<'{SCRIPT_END}'", rules.rstrip("\n"),
                      SCRIPT_END, f"{tool} -C FORWARD -j {CHAIN} 2>/dev/null || {tool} -I FORWARD 1 -j {CHAIN}", ""])


def _ipt_rules(chain: str, r: Rule) -> Iterator[str]:
    verdict = r.verdict.upper()  # DROP, RETURN
    ports = r.sport or r.dport
    flag = "sport" if r.sport else "dport"
    for src in (r.src.nets if r.src else (None,)):
        for dst in (r.dst.nets if r.dst else (None,)):
            head = f"-A {chain}" + (f" -s {net_text(src)}" if src else "") \
                + (f" -d {net_text(dst)}" if dst else "")
            if r.proto is None:
                yield f"{head} -j {verdict}"
                continue
            proto = PROTO_NAMES[r.proto]
            if len(ports) == 1:
                yield f"{head} -p {proto} -m {proto} --{flag} {range_text(*ports[0], ':')} -j {verdict}"
                continue
            for chunk in _multiport_chunks(ports):
                listed = ",".join(range_text(lo, hi, ":") for lo, hi in chunk)
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
