"""Firewall rules for the blocked part of the policy: nftables, iptables-restore, pf, Cisco ACL.

Pure text rendering: `render(policy, catalogue, fmt, header_info)` returns a file the operator
loads on the router or firewall that forwards traffic between the internal network and the
Internet. The rules only ever drop; everything they do not drop is left to the rest of the
operator's ruleset.

`plan` decides what to drop for each blocked service (owned ports as destination ports, prefixes
in both directions, shared ports never without a prefix; its docstring says why), `text` writes
the header and comments every format shares, `ranges` merges ports and collapses networks, and
one module per format turns the plans into rules: `nftables`, `iptables` (both families),
`pf`, `cisco`.

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

import re

from collector.classify.catalogue import Catalogue
from collector.policy.firewall.cisco import render_cisco
from collector.policy.firewall.iptables import render_family, render_iptables, render_script
from collector.policy.firewall.nftables import render_nftables
from collector.policy.firewall.pf import render_pf
from collector.policy.firewall.plan import plans
from collector.policy.firewall.text import CHAIN
from collector.policy.model import Policy

FORMATS = ("nftables", "iptables", "ip6tables", "iptables-script", "ip6tables-script", "pf", "cisco-acl")
# Service ids become chain, set and table names: the catalogue's id rule, checked again here.
SAFE_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
# In the rendered file: a line break is "\n" only, and no other control character but tab.
_STRAY = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")

__all__ = ["CHAIN", "FORMATS", "plans", "render", "render_cisco", "render_iptables", "render_nftables",
           "render_pf"]


def render(policy: Policy, catalogue: Catalogue, fmt: str, header_info: dict | None = None) -> str:
    """The rules in `fmt` (one of FORMATS). `header_info`: `source` (the config path) and
    `generated` (time string or datetime; passed in so that output is reproducible)."""
    info = header_info or {}
    for s in catalogue.services:
        if not SAFE_ID.fullmatch(s.id):
            raise ValueError(f"service id {s.id!r}: not usable in firewall rules (a-z, 0-9, _ and -)")
    if fmt == "nftables":
        text = render_nftables(policy, catalogue, info)
    elif fmt in ("iptables", "ip6tables"):
        text = render_family(policy, catalogue, info, 4 if fmt == "iptables" else 6)
    elif fmt in ("iptables-script", "ip6tables-script"):
        text = render_script(policy, catalogue, info, 4 if fmt == "iptables-script" else 6)
    elif fmt == "pf":
        text = render_pf(policy, catalogue, info)
    elif fmt == "cisco-acl":
        text = render_cisco(policy, catalogue, info)
    else:
        raise ValueError(f"unknown firewall format {fmt!r}: expected one of {', '.join(FORMATS)}")
    stray = _STRAY.search(text)  # comments escape them: this is the last line of defence
    if stray:
        line = text.count("\n", 0, stray.start()) + 1
        raise ValueError(f"{fmt} rules: control character U+{ord(stray.group()):04X} on line {line}")
    return text
