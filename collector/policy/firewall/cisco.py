"""Cisco IOS extended access lists, one for IPv4 (`CHAIN`) and one for IPv6 (`ACL_V6`), to paste
in configuration mode. ACLs are first-match lists with no sub-chains: `permit` lines for a
service's excepted hosts come before its `deny` lines, and each list ends with
`permit ip any any`. IOS matches ports only for tcp and udp."""

from __future__ import annotations

from collections.abc import Iterator

from collector.classify.catalogue import PROTO_NAMES, Catalogue, Network
from collector.policy.firewall.plan import Rule, clause_rules, plans
from collector.policy.firewall.text import CHAIN, comment, header, para, plan_comment, sctp_note
from collector.policy.model import Policy
from collector.text import printable

ACL_V6 = "IMFLOW-BLOCK-V6"
REMARK_MAX = 100  # IOS remark text limit


def render_cisco(policy: Policy, catalogue: Catalogue, info: dict) -> str:
    all_plans = plans(policy, catalogue)
    how = para("Paste in configuration mode. IOS ACLs are stateless and first-match: apply "
               f"{CHAIN} and {ACL_V6} inbound on the inside and the outside interface "
               f"(`ip access-group {CHAIN} in`, `ipv6 traffic-filter {ACL_V6} in`) so that the "
               "first packet towards a blocked port is dropped whichever side sends it. "
               "Exceptions are permit lines before a service's deny lines; each list ends with a "
               "permit of everything else, so merge its lines before your own final rules if you "
               "already filter on those interfaces.")
    out = comment((_ios_text(line) for line in
                   header(policy, catalogue, "cisco-acl", info, all_plans, how)), "!")
    for fam, name, kw, anyproto in ((4, CHAIN, "ip access-list extended", "ip"),
                                    (6, ACL_V6, "ipv6 access-list", "ipv6")):
        out += ["!", f"no {kw} {name}", f"{kw} {name}"]
        for p in all_plans:
            out += [f" remark {_ios_text(line)}"
                    for line in plan_comment(p, sctp_note(p, "IOS ACLs"), width=REMARK_MAX)]
            for step in p.steps:
                for c in p.clauses:
                    if c.proto == 132:
                        continue
                    for r in clause_rules(c, step.verdict, step.hosts):
                        if r.family in (None, fam):
                            out += _acl_lines(r, fam, anyproto)
        out += [" remark everything else is left to the rest of the configuration",
                f" permit {anyproto} any any"]
    return "\n".join([*out, "!", ""])


def _ios_text(text: str) -> str:
    """'?' asks the IOS command line for help even inside a remark: pasting would break.
    Control characters are escaped, as in every format's comments."""
    return printable(text).replace("?", "")


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
