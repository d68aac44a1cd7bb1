"""Firewall rendering (collector/policy/firewall/): golden files, the shared-port rule, headers.

The golden files under golden/ are reviewed line by line (golden/README.md explains every pf and
Cisco construct). Regenerate them after an intended change with

    IMFLOW_UPDATE_GOLDEN=1 python -m pytest tests/policy/test_firewall.py

and read the diff before committing it. nftables and iptables output is also checked by the real
tools in test_firewall_tools.py.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
import tomllib

import pytest

from collector import __version__
from collector.policy.firewall import FORMATS, render, render_iptables
from collector.policy import parse_policy
from tests.policy.common import GOLDEN, HEADER, POLICIES, fixed_catalogue, policy_file

CATALOGUE = fixed_catalogue()
UPDATE = os.environ.get("IMFLOW_UPDATE_GOLDEN") == "1"


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", POLICIES)
def test_golden(name, fmt):
    text = render(policy_file(name, CATALOGUE), CATALOGUE, fmt, HEADER)
    path = GOLDEN / f"{name}.{fmt}"
    if UPDATE:
        path.write_text(text)
    assert path.exists(), f"{path} missing: run with IMFLOW_UPDATE_GOLDEN=1 and review it"
    assert text == path.read_text(), f"{path} differs: rerun with IMFLOW_UPDATE_GOLDEN=1 and review"


# ---------------------------------------------------------------- shared ports


def _owned(catalogue) -> set[tuple[str, int]]:
    """(proto, port) pairs some service owns (lists in `ports` and not in `shared_ports`)."""
    names = {6: "tcp", 17: "udp", 132: "sctp"}
    out = set()
    for s in catalogue.services:
        shared = {(names[r.proto], p) for r in s.shared_ranges for p in range(r.lo, r.hi + 1)}
        out |= {(names[r.proto], p) for r in s.port_ranges
                for p in range(r.lo, r.hi + 1)} - shared
    return out


def _ranges(items: list[str], sep: str) -> list[tuple[int, int]]:
    out = []
    for item in items:
        lo, _, hi = item.partition(sep)
        out.append((int(lo), int(hi or lo)))
    return out


def _cisco_addrs(tokens: list[str]) -> tuple[list, list[tuple[int, int]]]:
    """Addresses and ports of ` deny|permit PROTO SRC [PORT] DST [PORT]`."""
    nets, ports, i = [], [], 0
    while i < len(tokens):
        t = tokens[i]
        if t == "any":
            i += 1
        elif t == "host":
            nets.append(ipaddress.ip_network(tokens[i + 1]))
            i += 2
        elif t == "eq":
            ports.append((int(tokens[i + 1]), int(tokens[i + 1])))
            i += 2
        elif t == "range":
            ports.append((int(tokens[i + 1]), int(tokens[i + 2])))
            i += 3
        elif "/" in t:
            nets.append(ipaddress.ip_network(t))
            i += 1
        else:  # IPv4 address and wildcard mask
            nets.append(ipaddress.ip_network(f"{t}/{tokens[i + 1]}"))
            i += 2
    return nets, ports


def _inside(nets, prefixes) -> bool:
    """Some address of the rule lies within the catalogue's prefixes (collapsed, like the
    renderer does: a maximal block holds every aligned block of the union)."""
    return any(n.version == p.version and n.subnet_of(p) for n in nets for p in prefixes)


def port_rules(fmt: str, text: str, catalogue) -> list[tuple[str, bool, str, list]]:
    """(line, restricted to a service prefix, proto, port ranges) of every rule matching ports."""
    every = [n for s in catalogue.services for n in s.networks]
    prefixes = [n for v in (4, 6) for n in ipaddress.collapse_addresses(
        x for x in every if x.version == v)]
    tables = {f"imflow_{s.id}" for s in catalogue.services}
    out = []
    for line in text.splitlines():
        if fmt == "nftables":
            m = re.search(r"\b(tcp|udp|sctp) [ds]port (\{[^}]*\}|\S+)", line)
            if m and not line.lstrip().startswith("#"):
                items = m.group(2).strip("{} ").split(", ")
                out.append((line, "@pfx_" in line, m.group(1), _ranges(items, "-")))
        elif fmt in ("iptables", "ip6tables", "iptables-script", "ip6tables-script"):
            m = re.search(r"--[ds]ports? (\S+)", line)
            if m and line.startswith("-A"):
                nets = {ipaddress.ip_network(a) for a in re.findall(r"-[sd] (\S+)", line)}
                proto = re.search(r"-p (\w+)", line).group(1)
                out.append((line, _inside(nets, prefixes), proto, _ranges(m.group(1).split(","), ":")))
        elif fmt == "pf":
            m = re.search(r" port (\{[^}]*\}|\S+)", line)
            if m and line.startswith("block"):
                items = m.group(1).strip("{} ").split(", ")
                named = set(re.findall(r"<([^>]+)>", line))
                proto = re.search(r"proto (\w+)", line).group(1)
                out.append((line, bool(named & tables), proto, _ranges(items, ":")))
        elif fmt == "cisco-acl":
            tokens = line.split()
            if tokens[:1] in (["deny"], ["permit"]) and len(tokens) > 2:
                nets, ports = _cisco_addrs(tokens[2:])
                if ports:
                    out.append((line, _inside(nets, prefixes), tokens[1], ports))
    return out


def _section(name: str) -> dict:
    with open(GOLDEN / f"{name}.toml", "rb") as f:
        return tomllib.load(f)["policy"]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("which", ["issue", "full", "full-all-ports", "shipped-block-all"])
def test_shared_ports_never_without_prefix(which, fmt, shipped):
    if which == "shipped-block-all":
        catalogue = shipped
        policy = parse_policy({"default": "block"}, shipped)
    else:
        catalogue = CATALOGUE
        section = _section(which.removesuffix("-all-ports"))
        if which.endswith("-all-ports"):
            section["prefix_block"] = "all"
        policy = parse_policy(section, CATALOGUE)
    owned = _owned(catalogue)
    rules = port_rules(fmt, render(policy, catalogue, fmt, HEADER), catalogue)
    assert rules, "the policy blocks ports: the parser found no rule"
    for line, prefixed, proto, ranges in rules:
        if prefixed:
            continue
        for lo, hi in ranges:
            unowned = [p for p in range(lo, hi + 1) if (proto, p) not in owned]
            assert not unowned, f"shared port {proto}/{unowned[0]} without a prefix: {line!r}"
    if which in ("full", "shipped-block-all"):
        # Not vacuous: tcp/443 is blocked, but only towards prefixes (Telegram, Teams ...).
        assert any(prefixed and any(lo <= 443 <= hi for lo, hi in r)
                   for _, prefixed, _, r in rules), "expected tcp/443 restricted to prefixes"


# ---------------------------------------------------------------- header and comments


def test_header_says_what_and_where_from():
    text = render(policy_file("issue", CATALOGUE), CATALOGUE, "nftables", HEADER)
    head = text.split("\n\n", 1)[0]
    assert head.splitlines()[0] == (f"# Generated by imflow {__version__} (nftables); do not edit, "
                                    "regenerate with `imflow policy render`.")
    assert "# Catalogue: snapshot 2026-11-28, fetched 2026-12-01." in head
    assert "# Policy: /etc/imflow/imflow.toml." in head
    assert "# Generated at: 2026-12-02T09:00:00Z." in head
    assert "# Blocked: msn (policy.services.msn); bittorrent, edonkey, ares (policy.categories.p2p)." \
        in head
    assert "# Exception: bittorrent not blocked for 10.1.2.0/24 (policy.exceptions[0])." in head
    assert "# Not blockable by address/port: ares (see below)." in head


def test_header_without_info_and_with_datetime():
    policy = policy_file("issue", CATALOGUE)
    bare = render(policy, CATALOGUE, "pf", {})
    assert "# Policy: (not recorded)." in bare and "# Generated at: (not recorded)." in bare
    when = dt.datetime(2026, 12, 2, 9, 0, tzinfo=dt.UTC)
    stamped = render(policy, CATALOGUE, "pf", {"generated": when})
    assert "# Generated at: 2026-12-02T09:00:00+00:00." in stamped


@pytest.mark.parametrize("fmt", FORMATS)
def test_unblockable_services_are_explained(fmt):
    text = render(policy_file("full", CATALOGUE), CATALOGUE, fmt, HEADER)
    flat = " ".join(re.sub(r"^\s*(#|!|remark)", "", line).strip() for line in text.splitlines()
                    if re.match(r"^\s*(#|!| remark)", line))
    assert "whatsapp cannot be blocked by address/port: its only ports (tcp/443, tcp/5222, " \
           "udp/3478) are shared with other traffic and the catalogue lists no prefixes" in flat
    assert "ares cannot be blocked by address/port" in flat
    assert "zoom: shared ports tcp/443 not blocked" in flat
    assert not re.search(r"svc_whatsapp|IMFLOW-whatsapp|imflow_whatsapp", text)


@pytest.mark.parametrize("fmt", ["pf", "cisco-acl"])
def test_sctp_is_reported_where_ports_cannot_match_it(fmt):
    text = render(policy_file("full", CATALOGUE), CATALOGUE, fmt, HEADER)
    assert "sip: sctp/5060-5061 not blocked" in text
    assert "sctp" not in "\n".join(line for line in text.splitlines()
                                   if line.startswith(("block", " deny", " permit")))


def test_other_cannot_be_blocked_by_rules():
    policy = parse_policy({"services": {"other": "block"}}, CATALOGUE)
    for fmt in FORMATS:
        assert "other (unclassified traffic) cannot be blocked by address/port" in \
            render(policy, CATALOGUE, fmt, HEADER)


def test_adjacent_port_ranges_are_merged():
    policy = policy_file("issue", CATALOGUE)
    assert "tcp dport { 6881-6890, 51413 } drop" in render(policy, CATALOGUE, "nftables", HEADER)
    assert "--dports 6881:6890,51413 " in render(policy, CATALOGUE, "iptables", HEADER)
    assert "port { 6881:6890, 51413 }" in render(policy, CATALOGUE, "pf", HEADER)
    assert " deny tcp any any range 6881 6890" in render(policy, CATALOGUE, "cisco-acl", HEADER)


def test_output_is_deterministic():
    section = _section("full")
    reordered = {**section, "services": dict(reversed(section["services"].items())),
                 "categories": dict(reversed(section["categories"].items()))}
    for fmt in FORMATS:
        first = render(policy_file("full", CATALOGUE), CATALOGUE, fmt, HEADER)
        assert first == render(policy_file("full", CATALOGUE), CATALOGUE, fmt, HEADER)
        assert first == render(parse_policy(reordered, CATALOGUE), CATALOGUE, fmt, HEADER)


def test_nothing_blocked():
    policy = parse_policy(None, CATALOGUE)
    for fmt in FORMATS:
        text = render(policy, CATALOGUE, fmt, HEADER)
        assert "Blocked: nothing." in text
        assert not re.search(r"^(-A IMFLOW-\S+ .*DROP|block drop| deny)| drop$", text, re.MULTILINE)


def test_render_iptables_returns_both_families():
    policy = policy_file("full", CATALOGUE)
    v4, v6 = render_iptables(policy, CATALOGUE, HEADER)
    assert v4 == render(policy, CATALOGUE, "iptables", HEADER)
    assert v6 == render(policy, CATALOGUE, "ip6tables", HEADER)
    rules4 = "\n".join(line for line in v4.splitlines() if line.startswith("-A"))
    rules6 = "\n".join(line for line in v6.splitlines() if line.startswith("-A"))
    assert "-s fd00:1:2::/48 -j RETURN" in rules6 and "fd00" not in rules4
    assert "-s 10.1.2.0/24 -j RETURN" in rules4 and "10.1.2.0" not in rules6


def test_unknown_format():
    with pytest.raises(ValueError, match="unknown firewall format 'ipfw'"):
        render(policy_file("issue", CATALOGUE), CATALOGUE, "ipfw", HEADER)


def test_cisco_lines_paste_cleanly():
    policy = parse_policy({**_section("full"), "exceptions": [
        {"service": "bittorrent", "hosts": ["10.1.2.0/24"], "action": "allow", "note": "why not? " * 20}]},
        CATALOGUE)
    text = render(policy, CATALOGUE, "cisco-acl", HEADER)
    assert "?" not in text  # '?' asks the IOS command line for help, even mid-paste
    for line in text.splitlines():
        if line.startswith(" remark "):
            assert len(line) - len(" remark ") <= 100, line
    blocks = text.split("\n!\n")
    assert " permit ip any any" in blocks[-2] or text.count(" permit ip any any") == 1
    assert text.rstrip("!\n").endswith(" permit ipv6 any any")


def test_pf_tables_are_declared_before_use():
    text = render(policy_file("full", CATALOGUE), CATALOGUE, "pf", HEADER)
    declared: set[str] = set()
    for line in text.splitlines():
        if line.startswith("table <"):
            declared.add(line.split("<", 1)[1].split(">", 1)[0])
        elif line.startswith("block"):
            assert set(re.findall(r"<([^>]+)>", line)) <= declared, line
    assert all(len(name) <= 31 for name in declared)
    assert "table <imflow_teams_only> const { 192.168.50.0/24, fd00:50::/64, !192.168.50.10 }" in text


# --- defence in depth: text that slipped past the load checks -----------------------------

INJECT = "x\n}\ntable inet evil { chain c { type filter hook input priority -1000; policy drop; } }\n#"


def _bypassing_checks(text: str):
    """The `full` policy and the catalogue built in-process, with `text` where config text
    goes: a service name, the category name shown in comments, every exception's note, and the
    header's source. None of it passed the load checks that refuse control characters."""
    import dataclasses

    from collector.classify.catalogue import Catalogue

    services = tuple(dataclasses.replace(s, name=s.name + text) if s.index else s for s in CATALOGUE.services)
    catalogue = Catalogue(services, snapshot="2026-01-01" + text, fetched=text)
    policy = policy_file("full", CATALOGUE)
    policy = dataclasses.replace(policy, exceptions=tuple(dataclasses.replace(e, note=e.note + text)
                                                          for e in policy.exceptions))
    return policy, catalogue, {"source": "/etc/imflow.toml" + text, "generated": "2026-12-02T09:00:00Z" + text}


def _rules(text: str, fmt: str) -> list[str]:
    marks = {"nftables": "#", "iptables": "#", "ip6tables": "#", "iptables-script": "#", "ip6tables-script": "#",
             "pf": "#", "cisco-acl": "!"}
    return [line for line in text.splitlines()
            if not line.strip().startswith((marks[fmt], "remark")) and line.strip()]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("payload", [INJECT, "\r\x1b[2J\x0b\x0c\x85\u2028\u2029\x00", "\t\x7f\x9b"])
def test_control_characters_never_reach_the_rules(fmt, payload):
    policy, catalogue, info = _bypassing_checks(payload)
    text = render(policy, catalogue, fmt, info)
    # the rules are exactly those of the clean policy: nothing injected, nothing lost
    assert _rules(text, fmt) == _rules(render(policy_file("full", CATALOGUE), CATALOGUE, fmt, HEADER), fmt)
    bad = re.findall(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]", text)
    assert not bad, f"control characters in {fmt} output: {bad!r}"
    assert "evil" not in "\n".join(_rules(text, fmt))
    assert len(text.splitlines()) == len(text.split("\n")) - 1  # \n is the only line break


def test_unsafe_service_ids_are_refused():
    import dataclasses

    from collector.classify.catalogue import Catalogue

    services = tuple(dataclasses.replace(s, id="msn\n}") if s.id == "msn" else s for s in CATALOGUE.services)
    catalogue = Catalogue(services, snapshot=CATALOGUE.snapshot)
    policy = parse_policy({"services": {"msn": "block"}}, CATALOGUE)
    policy = dataclasses.replace(policy, services={"msn\n}": "block"},
                                 service_categories={s.id: s.category for s in services})
    for fmt in FORMATS:
        with pytest.raises(ValueError, match="service id 'msn\\\\n}'"):
            render(policy, catalogue, fmt, HEADER)
