"""The rendered rules against the real tools: `nft -c`, `iptables-restore --test`, then loaded
for real into throwaway network namespaces, and finally a router namespace that forwards TCP
connections between an internal and an external namespace with the rules loaded.

Needs root (or CAP_NET_ADMIN + CAP_SYS_ADMIN) and the Debian nftables/iptables packages; each
test skips with the reason when a tool or the privilege is missing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from collector.policy.firewall import render
from collector.policy import parse_policy
from tests.policy.common import HEADER, fixed_catalogue, need, policy_file

CATALOGUE = fixed_catalogue()
NETPROBE = str(Path(__file__).with_name("netprobe.py"))


def run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    if check and done.returncode:
        raise AssertionError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr}")
    return done


def cases(shipped):
    """(name, policy, catalogue): every construct, on the test and the shipped catalogue."""
    full = policy_file("full", CATALOGUE)
    all_ports = parse_policy({"default": "monitor", "prefix_block": "all",
                              "services": {"telegram": "block", "msn": "block"},
                              "categories": {"collab": "block"}}, CATALOGUE)
    return [
        ("issue", policy_file("issue", CATALOGUE), CATALOGUE),
        ("full", full, CATALOGUE),
        ("all-ports", all_ports, CATALOGUE),
        ("empty", parse_policy(None, CATALOGUE), CATALOGUE),
        ("shipped-block-all", parse_policy({"default": "block"}, shipped), shipped),
        ("shipped-all-ports", parse_policy({"default": "block", "prefix_block": "all"}, shipped),
         shipped),
    ]


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


# ---------------------------------------------------------------- syntax, by the tools


def test_nft_accepts_every_rendering(tmp_path, shipped):
    nft = need("nft")
    for name, policy, catalogue in cases(shipped):
        path = write(tmp_path, f"{name}.nft", render(policy, catalogue, "nftables", HEADER))
        done = run(nft, "-c", "-f", path, check=False)
        if done.returncode and "Operation not permitted" in done.stderr:
            pytest.skip("nft -c needs CAP_NET_ADMIN")
        assert done.returncode == 0, f"{name}: nft -c -f rejected it:\n{done.stderr}"


def test_iptables_restore_accepts_every_rendering(tmp_path, shipped, netns):
    tools = {"iptables": need("iptables-restore"), "ip6tables": need("ip6tables-restore")}
    ns = netns()
    for name, policy, catalogue in cases(shipped):
        for fmt, tool in tools.items():
            path = write(tmp_path, f"{name}.{fmt}", render(policy, catalogue, fmt, HEADER))
            done = run("ip", "netns", "exec", ns, tool, "--test", path, check=False)
            assert done.returncode == 0, f"{name}: {fmt}-restore --test rejected it:\n{done.stderr}"


# ---------------------------------------------------------------- loaded for real


def test_nft_ruleset_loads_and_reloads(tmp_path, netns):
    nft = need("nft")
    ns = netns()
    path = write(tmp_path, "full.nft", render(policy_file("full", CATALOGUE), CATALOGUE,
                                              "nftables", HEADER))
    for _ in range(2):  # the second load replaces the table instead of adding to it
        run("ip", "netns", "exec", ns, nft, "-f", path)
    listing = run("ip", "netns", "exec", ns, nft, "list", "ruleset").stdout
    assert listing.count("table inet imflow {") == 1
    assert "type filter hook forward priority filter; policy accept;" in listing
    assert listing.count("jump svc_bittorrent") == 1
    chain = run("ip", "netns", "exec", ns, nft, "list", "chain", "inet", "imflow",
                "svc_bittorrent").stdout
    assert "ip saddr { 10.1.2.0/24, 10.9.0.0/16 } return" in chain
    assert "ip6 saddr fd00:1:2::/48 return" in chain
    assert "tcp dport { 6881-6890, 51413 } drop" in chain
    telegram = run("ip", "netns", "exec", ns, nft, "list", "chain", "inet", "imflow",
                   "svc_telegram").stdout
    assert "ip daddr @pfx_telegram_v4 tcp dport { 80, 443 } drop" in telegram
    elements = run("ip", "netns", "exec", ns, nft, "list", "set", "inet", "imflow",
                   "pfx_telegram_v4").stdout
    assert "149.154.160.0/20" in elements


@pytest.mark.parametrize("fmt", ["iptables", "ip6tables"])
def test_iptables_rules_load(tmp_path, netns, fmt):
    restore, tool = need(f"{fmt}-restore"), need(fmt)
    ns = netns()
    path = write(tmp_path, f"full.{fmt}", render(policy_file("full", CATALOGUE), CATALOGUE,
                                                 fmt, HEADER))
    run("ip", "netns", "exec", ns, restore, "--noflush", path)
    block = run("ip", "netns", "exec", ns, tool, "-S", "IMFLOW-BLOCK").stdout.splitlines()
    assert block[0] == "-N IMFLOW-BLOCK"
    assert "-A IMFLOW-BLOCK -j IMFLOW-bittorrent" in block
    assert "-A IMFLOW-BLOCK -j IMFLOW-whatsapp" not in block  # nothing to drop: no chain
    forward = run("ip", "netns", "exec", ns, tool, "-S", "FORWARD").stdout.splitlines()
    assert forward[1] == "-A FORWARD -j IMFLOW-BLOCK"  # first rule, after the policy line
    bt = run("ip", "netns", "exec", ns, tool, "-S", "IMFLOW-bittorrent").stdout
    host = "10.1.2.0/24" if fmt == "iptables" else "fd00:1:2::/48"
    assert f"-A IMFLOW-bittorrent -s {host} -j RETURN" in bt
    assert f"-A IMFLOW-bittorrent -d {host} -j RETURN" in bt
    assert "-A IMFLOW-bittorrent -p tcp -m multiport --dports 6881:6890,51413 -j DROP" in bt
    telegram = run("ip", "netns", "exec", ns, tool, "-S", "IMFLOW-telegram").stdout
    prefix = "149.154.160.0/20" if fmt == "iptables" else "2001:67c:4e8::/48"
    assert f"-A IMFLOW-telegram -d {prefix} -p tcp -m multiport --dports 80,443 -j DROP" in telegram
    # A reload replaces the rules of the chains (only the FORWARD jump is added again).
    run("ip", "netns", "exec", ns, restore, "--noflush", path)
    assert run("ip", "netns", "exec", ns, tool, "-S", "IMFLOW-bittorrent").stdout == bt


@pytest.mark.parametrize("fam", ["iptables", "ip6tables"])
def test_the_script_format_reloads_with_one_forward_jump(tmp_path, netns, fam):
    """Loading the restore file twice inserts the FORWARD jump twice (a restore file cannot test
    for a rule); the script inserts it once however often it runs."""
    tool = need(fam)
    need(f"{fam}-restore")
    ns = netns()
    restore = write(tmp_path, f"full.{fam}", render(policy_file("full", CATALOGUE), CATALOGUE, fam, HEADER))
    for _ in range(2):
        run("ip", "netns", "exec", ns, f"{fam}-restore", "--noflush", restore)
    jumps = [x for x in run("ip", "netns", "exec", ns, tool, "-S", "FORWARD").stdout.splitlines() if "IMFLOW" in x]
    assert len(jumps) == 2  # why the script format exists

    ns = netns()
    script = write(tmp_path, f"full.{fam}-script", render(policy_file("full", CATALOGUE), CATALOGUE,
                                                          f"{fam}-script", HEADER))
    for _ in range(3):
        run("ip", "netns", "exec", ns, "sh", script)
    forward = run("ip", "netns", "exec", ns, tool, "-S", "FORWARD").stdout.splitlines()
    assert [x for x in forward if "IMFLOW" in x] == ["-A FORWARD -j IMFLOW-BLOCK"]
    assert forward[1] == "-A FORWARD -j IMFLOW-BLOCK"  # first, after the policy line
    bt = run("ip", "netns", "exec", ns, tool, "-S", "IMFLOW-bittorrent").stdout
    assert "-A IMFLOW-bittorrent -p tcp -m multiport --dports 6881:6890,51413 -j DROP" in bt
    assert bt.count("--dports 6881:6890,51413 -j DROP") == 1  # replaced, not added again


# ---------------------------------------------------------------- packets through a router

# (source, destination, port, connects once the full policy is loaded). The client is
# internal: 10.1.2.0/24 and fd00:1:2::/48 are BitTorrent's release-mirror exception. The server
# holds an ordinary address and one inside Telegram's prefixes.
PROBES_OUT = [
    ("10.1.3.2", "198.51.100.2", 6881, False),  # BitTorrent: p2p blocked
    ("10.1.2.2", "198.51.100.2", 6881, True),  # the exception
    ("10.1.3.2", "198.51.100.2", 1863, False),  # msn
    ("10.1.3.2", "198.51.100.2", 443, True),  # a shared port alone is never blocked
    ("10.1.3.2", "149.154.160.2", 443, False),  # ... but is towards Telegram's prefix
    ("10.1.3.2", "149.154.160.2", 8080, True),  # prefix_block = service-ports
    ("fd00:1:3::2", "2001:db8:100::2", 6881, False),
    ("fd00:1:2::2", "2001:db8:100::2", 6881, True),
    ("fd00:1:3::2", "2001:db8:100::2", 443, True),
    ("fd00:1:3::2", "2001:67c:4e8::2", 443, False),
]
PROBES_IN = [  # an external peer connecting to an internal BitTorrent listener
    ("198.51.100.2", "10.1.3.2", 6881, False),
    ("198.51.100.2", "10.1.2.2", 6881, True),
    ("2001:db8:100::2", "fd00:1:3::2", 6881, False),
    ("2001:db8:100::2", "fd00:1:2::2", 6881, True),
]


def _router(netns) -> tuple[str, str, str]:
    """client -- router -- server, addresses as in the probes."""
    client, router, server = netns(), netns(), netns()
    for ns in (client, router, server):  # no duplicate address detection: usable at once
        run("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0")
    run("ip", "link", "add", "c0", "netns", client, "type", "veth", "peer", "name", "rc",
        "netns", router)
    run("ip", "link", "add", "s0", "netns", server, "type", "veth", "peer", "name", "rs",
        "netns", router)
    addrs = {
        (client, "c0"): ["10.1.2.2/24", "10.1.3.2/24", "fd00:1:2::2/64", "fd00:1:3::2/64"],
        (router, "rc"): ["10.1.2.1/24", "10.1.3.1/24", "fd00:1:2::1/64", "fd00:1:3::1/64"],
        (router, "rs"): ["198.51.100.1/24", "149.154.160.1/24", "2001:db8:100::1/64",
                         "2001:67c:4e8::1/64"],
        (server, "s0"): ["198.51.100.2/24", "149.154.160.2/24", "2001:db8:100::2/64",
                         "2001:67c:4e8::2/64"],
    }
    for (ns, dev), nets in addrs.items():
        for net in nets:
            run("ip", "-n", ns, "addr", "add", net, "dev", dev, *(["nodad"] if ":" in net else []))
        run("ip", "-n", ns, "link", "set", dev, "up")
        run("ip", "-n", ns, "link", "set", "lo", "up")
    for ns, v4, v6 in ((client, "10.1.2.1", "fd00:1:2::1"), (server, "198.51.100.1", "2001:db8:100::1")):
        run("ip", "-n", ns, "route", "add", "default", "via", v4)
        run("ip", "-n", ns, "-6", "route", "add", "default", "via", v6)
    run("ip", "netns", "exec", router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    run("ip", "netns", "exec", router, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
    return client, router, server


def _listen(ns: str, *ports: int) -> subprocess.Popen:
    proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, NETPROBE, "listen",
                             *map(str, ports)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def _probe(ns: str, probes) -> list[bool]:
    args = [str(x) for src, dst, port, _ in probes for x in (src, dst, port)]
    return json.loads(run("ip", "netns", "exec", ns, sys.executable, NETPROBE, "probe",
                          *args).stdout)


@pytest.mark.parametrize("fmt", ["nftables", "iptables"])
def test_router_drops_what_the_policy_blocks(tmp_path, netns, fmt):
    tools = [need("nft")] if fmt == "nftables" else [need("iptables-restore"),
                                                      need("ip6tables-restore")]
    client, router, server = _router(netns)
    listeners = [_listen(server, 6881, 1863, 443, 8080), _listen(client, 6881)]
    try:
        # Without rules every connection opens: a later failure is the rules' doing.
        assert _probe(client, PROBES_OUT) == [True] * len(PROBES_OUT)
        assert _probe(server, PROBES_IN) == [True] * len(PROBES_IN)
        policy = policy_file("full", CATALOGUE)
        if fmt == "nftables":
            path = write(tmp_path, "full.nft", render(policy, CATALOGUE, "nftables", HEADER))
            run("ip", "netns", "exec", router, tools[0], "-f", path)
        else:
            for tool, family in zip(tools, ("iptables", "ip6tables"), strict=True):
                path = write(tmp_path, f"full.{family}", render(policy, CATALOGUE, family, HEADER))
                run("ip", "netns", "exec", router, tool, "--noflush", path)
        got_out = dict(zip(PROBES_OUT, _probe(client, PROBES_OUT), strict=True))
        got_in = dict(zip(PROBES_IN, _probe(server, PROBES_IN), strict=True))
        for probes, got in ((PROBES_OUT, got_out), (PROBES_IN, got_in)):
            for p in probes:
                assert got[p] == p[3], f"{p[0]} -> [{p[1]}]:{p[2]} should " + \
                    ("connect" if p[3] else "be dropped")
    finally:
        for proc in listeners:
            proc.kill()
            proc.wait()
