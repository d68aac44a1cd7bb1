"""Policy parsing, precedence and the vectorized table (collector/policy/model.py)."""

from __future__ import annotations

import ipaddress

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from collector.netflow.batch import addr_from_str
from collector.policy import ACTIONS, BLOCK, PolicyError, parse_policy
from tests.policy.common import fixed_catalogue, policy_file

CATALOGUE = fixed_catalogue()

# (service, host, expected) for golden/issue.toml: P2P blocked except BitTorrent from the
# release-mirror subnet; Teams allowed; msn blocked; everything else monitored.
ISSUE_CASES = [
    ("bittorrent", "10.1.2.7", "allow"),  # exception
    ("bittorrent", "10.1.2.0", "allow"),  # first address of the network
    ("bittorrent", "10.1.2.255", "allow"),  # last address
    ("bittorrent", "10.1.3.0", "block"),  # just outside
    ("bittorrent", "10.1.1.255", "block"),
    ("bittorrent", None, "block"),  # no internal host: no exception applies
    ("bittorrent", "::ffff:10.1.2.7", "allow"),  # IPv4-mapped IPv6 is the same host
    ("bittorrent", "fd00::1", "block"),
    ("edonkey", "10.1.2.7", "block"),  # the exception names bittorrent only
    ("ares", "10.5.0.1", "block"),  # category p2p
    ("msn", "10.1.2.7", "block"),  # services
    ("teams", "10.0.0.1", "allow"),
    ("telegram", "10.0.0.1", "monitor"),  # default
    ("zoom", None, "monitor"),
    ("other", "10.0.0.1", "allow"),  # the catch-all is allowed unless named
]

# (service, host, expected) for golden/full.toml.
FULL_CASES = [
    ("bittorrent", "10.1.2.7", "allow"),  # service exception
    ("bittorrent", "fd00:1:2:ffff::1", "allow"),  # its IPv6 network
    ("bittorrent", "fd00:1:3::1", "block"),
    ("bittorrent", "10.9.8.7", "allow"),  # category-wide exception (p2p, lab)
    ("edonkey", "10.9.8.7", "allow"),
    ("edonkey", "10.8.0.1", "block"),
    ("teams", "192.168.50.10", "allow"),  # service exception beats category block exception
    ("teams", "192.168.50.11", "block"),  # category-wide host block
    ("zoom", "192.168.50.10", "block"),  # the meeting-room exception names teams only
    ("zoom", "fd00:50::9", "block"),
    ("zoom", "192.168.51.1", "allow"),  # categories.collab
    ("zoom", None, "allow"),
    ("whatsapp", "10.0.0.1", "block"),
    ("sip", "10.0.0.1", "block"),
    ("msn", None, "block"),
]


@pytest.mark.parametrize(("service", "host", "expected"), ISSUE_CASES)
def test_issue_example(service, host, expected):
    assert policy_file("issue", CATALOGUE).action(service, host) == expected


@pytest.mark.parametrize(("service", "host", "expected"), FULL_CASES)
def test_full_example(service, host, expected):
    assert policy_file("full", CATALOGUE).action(service, host) == expected


def test_precedence_most_specific_network_first():
    policy = parse_policy({
        "default": "block",
        "exceptions": [
            {"service": "bittorrent", "hosts": ["10.0.0.0/8"], "action": "allow"},
            {"service": "bittorrent", "hosts": ["10.1.0.0/16"], "action": "block"},
            {"service": "bittorrent", "hosts": ["10.1.2.0/24"], "action": "monitor"},
            {"category": "p2p", "hosts": ["10.1.2.3"], "action": "block"},  # category: last
        ],
    }, CATALOGUE)
    assert policy.action("bittorrent", "10.2.0.1") == "allow"
    assert policy.action("bittorrent", "10.1.9.9") == "block"
    assert policy.action("bittorrent", "10.1.2.3") == "monitor"  # service-specific wins
    assert policy.action("edonkey", "10.1.2.3") == "block"
    assert policy.action("bittorrent", "192.0.2.1") == "block"


def test_services_beat_categories_beat_default():
    policy = parse_policy({"default": "block", "categories": {"im": "monitor"},
                           "services": {"msn": "allow"}}, CATALOGUE)
    assert [policy.action(s, None) for s in ("msn", "telegram", "teams")] == \
        ["allow", "monitor", "block"]


@pytest.mark.parametrize("section", [None, {}])
def test_empty_policy_monitors_everything(section):
    policy = parse_policy(section, CATALOGUE)
    assert policy.default == "monitor"
    assert all(policy.action(s.id, "10.0.0.1") == "monitor" for s in CATALOGUE.services[1:])
    assert policy.action("other", "10.0.0.1") == "allow"
    assert policy.blocked_services() == []


def test_other_is_allowed_unless_named():
    assert parse_policy({"default": "block"}, CATALOGUE).action("other", "10.0.0.1") == "allow"
    named = parse_policy({"default": "allow", "services": {"other": "monitor"}}, CATALOGUE)
    assert named.action("other", None) == "monitor"
    by_category = parse_policy({"categories": {"other": "block"}}, CATALOGUE)
    assert by_category.action("other", None) == "block"
    by_exception = parse_policy({"exceptions": [{"service": "other", "hosts": ["10.0.0.0/8"],
                                                 "action": "block"}]}, CATALOGUE)
    assert by_exception.action("other", "10.1.1.1") == "block"
    assert by_exception.action("other", "192.168.0.1") == "allow"


def test_blocked_services_in_catalogue_order():
    assert policy_file("issue", CATALOGUE).blocked_services() == \
        ["msn", "bittorrent", "edonkey", "ares"]
    assert policy_file("full", CATALOGUE).blocked_services() == \
        ["msn", "whatsapp", "telegram", "bittorrent", "edonkey", "ares", "sip"]


def test_actions_are_case_insensitive():
    policy = parse_policy({"default": "Block", "services": {"msn": " ALLOW "}}, CATALOGUE)
    assert (policy.default, policy.services["msn"]) == ("block", "allow")


ERRORS = [
    ({"defualt": "block"}, "policy.defualt: unknown key (did you mean default?)"),
    ({"default": "deny"}, "policy.default: 'deny': expected one of allow, monitor, block"),
    ({"default": 1}, "policy.default: 1: expected one of allow, monitor, block"),
    ({"prefix_block": "some"}, "policy.prefix_block: 'some': expected one of service-ports, all"),
    ({"services": {"msnn": "block"}}, "policy.services.msnn: unknown service (did you mean msn?)"),
    ({"services": {"zzzz": "block"}}, "policy.services.zzzz: unknown service"),
    ({"services": {"msn": "drop"}}, "policy.services.msn: 'drop': expected one of allow, monitor, block"),
    ({"services": ["msn"]}, "policy.services: expected a table of service = action"),
    ({"categories": {"p2": "block"}}, "policy.categories.p2: unknown category (did you mean p2p?)"),
    ({"exceptions": {"service": "msn"}},
     "policy.exceptions: expected a list of tables ([[policy.exceptions]])"),
    ({"exceptions": ["msn"]}, "policy.exceptions[0]: expected a table"),
    ({"exceptions": [{"hosts": ["10.0.0.0/8"]}]},
     "policy.exceptions[0]: give exactly one of service or category"),
    ({"exceptions": [{"service": "msn", "category": "im", "hosts": ["10.0.0.0/8"]}]},
     "policy.exceptions[0]: give exactly one of service or category"),
    ({"exceptions": [{"service": "bittorent", "hosts": ["10.0.0.0/8"]}]},
     "policy.exceptions[0].service: 'bittorent': unknown service (did you mean bittorrent?)"),
    ({"exceptions": [{"category": "pp2", "hosts": ["10.0.0.0/8"]}]},
     "policy.exceptions[0].category: 'pp2': unknown category (did you mean p2p?)"),
    ({"exceptions": [{"service": "msn", "hosts": []}]},
     "policy.exceptions[0].hosts: expected a non-empty list of addresses or networks"),
    ({"exceptions": [{"service": "msn", "hosts": "10.0.0.0/8"}]},
     "policy.exceptions[0].hosts: expected a non-empty list of addresses or networks"),
    ({"exceptions": [{"service": "msn", "hosts": ["10.1.2.0/24", "10.1.2.0/33"]}]},
     "policy.exceptions[0].hosts[1]: '10.1.2.0/33': not a network"),
    ({"exceptions": [{"service": "msn", "hosts": ["10.1.2.300"]}]},
     "policy.exceptions[0].hosts[0]: '10.1.2.300': not a network"),
    ({"exceptions": [{"service": "msn", "hosts": [10]}]},
     "policy.exceptions[0].hosts[0]: 10: expected an address or network string"),
    ({"exceptions": [{"service": "msn", "hosts": ["10.1.2.5/24"]}]},
     "policy.exceptions[0].hosts[0]: '10.1.2.5/24': host bits set (did you mean 10.1.2.0/24?)"),
    ({"exceptions": [{"service": "msn", "hosts": ["10.0.0.0/8"], "action": "permit"}]},
     "policy.exceptions[0].action: 'permit': expected one of allow, monitor, block"),
    ({"exceptions": [{"service": "msn", "hosts": ["10.0.0.0/8"], "hostz": 1}]},
     "policy.exceptions[0].hostz: unknown key (did you mean hosts?)"),
    ({"exceptions": [{"service": "msn", "hosts": ["10.0.0.0/8"], "note": 3}]},
     "policy.exceptions[0].note: 3: expected a string"),
    # the note reaches firewall comments: no control character, no line break, bounded
    ({"exceptions": [{"service": "msn", "hosts": ["10.0.0.0/8"], "note": "ok\n} table inet evil {"}]},
     "policy.exceptions[0].note: control character U+000A not allowed"),
    ({"exceptions": [{"service": "msn", "hosts": ["10.0.0.0/8"], "note": "x\x1b[2J"}]},
     "policy.exceptions[0].note: control character U+001B not allowed"),
    ({"exceptions": [{"service": "msn", "hosts": ["10.0.0.0/8"], "note": "x\u2028y"}]},
     "policy.exceptions[0].note: control character U+2028 not allowed"),
    ({"exceptions": [{"service": "msn", "hosts": ["10.0.0.0/8"], "note": "n" * 501}]},
     "policy.exceptions[0].note: 501 characters: at most 500"),
    ({"exceptions": [{"service": "msn", "hosts": ["10.0.0.0/8"], "action": "allow"},
                     {"service": "msn", "hosts": ["fd00::/8", "10.0.0.0/8"], "action": "block"}]},
     ("policy.exceptions[1].hosts[1]: '10.0.0.0/8' for msn is also in "
      "policy.exceptions[0].hosts[0] with action allow")),
]


@pytest.mark.parametrize(("section", "message"), ERRORS, ids=[m.split(":")[0] for _, m in ERRORS])
def test_config_errors_name_the_key(section, message):
    with pytest.raises(PolicyError) as err:
        parse_policy(section, CATALOGUE)
    assert str(err.value) == message
    assert "\n" not in str(err.value)
    assert message.startswith(err.value.key + ":")


def test_not_a_table():
    with pytest.raises(PolicyError, match=r"^policy: expected a table$"):
        parse_policy(["default"], CATALOGUE)  # type: ignore[arg-type]


def test_same_network_same_action_twice_is_fine():
    policy = parse_policy({"exceptions": [
        {"service": "msn", "hosts": ["10.0.0.0/8"], "action": "allow"},
        {"service": "msn", "hosts": ["10.0.0.0/8"], "action": "allow"},
        {"category": "im", "hosts": ["10.0.0.0/8"], "action": "block"},  # other target: fine
    ]}, CATALOGUE)
    assert policy.action("msn", "10.1.1.1") == "allow"
    assert policy.action("telegram", "10.1.1.1") == "block"


def test_unknown_service_id_in_action():
    with pytest.raises(ValueError, match="unknown service 'nope'"):
        policy_file("issue", CATALOGUE).action("nope", None)


# ---------------------------------------------------------------- vectorized table


def _columns(hosts: list[str | None]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pairs = [addr_from_str(h) if h is not None else (0, 0) for h in hosts]
    hi = np.array([p[0] for p in pairs], np.uint64)
    lo = np.array([p[1] for p in pairs], np.uint64)
    return hi, lo, np.array([h is not None for h in hosts], bool)


def _check_table(policy, services: list[str], hosts: list[str | None]) -> None:
    table = policy.vectorized(CATALOGUE)
    idx = np.array([CATALOGUE.by_id[s].index for s in services], np.uint16)
    hi, lo, has = _columns(hosts)
    got = table.actions(idx, hi, lo, has)
    assert got.dtype == np.uint8
    want = [ACTIONS.index(policy.action(s, h)) for s, h in zip(services, hosts, strict=True)]
    assert got.tolist() == want
    violations = table.violations(idx, hi, lo, has)
    assert violations.tolist() == [w == BLOCK and h is not None for w, h in zip(want, hosts)]
    if not table.blocks:  # nothing can be blocked: the pipeline skips violations() altogether
        assert BLOCK not in want
        assert all(policy.action(s, None) != "block" for s in CATALOGUE.by_id)


@pytest.mark.parametrize("name", ["issue", "full"])
def test_table_matches_examples(name):
    cases = ISSUE_CASES if name == "issue" else FULL_CASES
    _check_table(policy_file(name, CATALOGUE), [c[0] for c in cases], [c[1] for c in cases])


SERVICE_IDS = [s.id for s in CATALOGUE.services]
V4_NETS = st.builds(lambda a, n: ipaddress.ip_network(f"10.{a}.0.0/16").supernet(16 - n)
                    if n <= 16 else ipaddress.ip_network(f"10.{a}.0.0/{n}", strict=False),
                    st.integers(0, 3), st.integers(8, 32))
V6_NETS = st.builds(lambda a, n: ipaddress.ip_network(f"fd00:{a}::/{n}", strict=False),
                    st.integers(0, 3), st.sampled_from([16, 32, 48, 64, 127, 128]))
EXCEPTIONS = st.lists(st.fixed_dictionaries({
    "target": st.one_of(st.tuples(st.just("service"), st.sampled_from(SERVICE_IDS)),
                        st.tuples(st.just("category"), st.sampled_from(CATALOGUE.categories))),
    "hosts": st.lists(st.one_of(V4_NETS, V6_NETS), min_size=1, max_size=3),
    "action": st.sampled_from(ACTIONS),
}), max_size=6)


def _hosts_near(networks) -> st.SearchStrategy:
    """Addresses at and around the exception networks' edges, and random ones."""
    edges = []
    for net in networks:
        for addr in (net.network_address, net.broadcast_address):
            for delta in (-1, 0, 1):
                try:
                    edges.append(str(addr + delta))
                except ipaddress.AddressValueError:
                    pass
    random_v4 = st.integers(0, 2**32 - 1).map(lambda n: str(ipaddress.IPv4Address(n)))
    random_v6 = st.integers(0, 2**128 - 1).map(lambda n: str(ipaddress.IPv6Address(n)))
    near = st.sampled_from(edges) if edges else random_v4
    return st.one_of(st.none(), near, random_v4, random_v6,
                     st.integers(0, 2**16).map(lambda n: str(ipaddress.IPv4Address(0x0A000000 + n))))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), default=st.sampled_from(ACTIONS),
       categories=st.dictionaries(st.sampled_from(CATALOGUE.categories), st.sampled_from(ACTIONS)),
       services=st.dictionaries(st.sampled_from(SERVICE_IDS), st.sampled_from(ACTIONS)),
       exceptions=EXCEPTIONS)
def test_table_equals_scalar(data, default, categories, services, exceptions):
    section = {"default": default, "categories": categories, "services": services,
               "exceptions": [{e["target"][0]: e["target"][1], "action": e["action"],
                               "hosts": [str(n) for n in e["hosts"]]} for e in exceptions]}
    try:
        policy = parse_policy(section, CATALOGUE)
    except PolicyError:
        assume(False)  # the same network twice for one target with two actions
    networks = [n for e in exceptions for n in e["hosts"]]
    flows = data.draw(st.lists(st.tuples(st.sampled_from(SERVICE_IDS), _hosts_near(networks)),
                               min_size=1, max_size=60))
    _check_table(policy, [f[0] for f in flows], [f[1] for f in flows])


def test_table_is_vectorized_over_large_batches():
    policy = policy_file("full", CATALOGUE)
    table = policy.vectorized(CATALOGUE)
    rng = np.random.default_rng(1)
    n = 200_000
    idx = rng.integers(0, len(CATALOGUE), n).astype(np.uint16)
    v4 = np.where(rng.random(n) < 0.5, rng.integers(0x0A000000, 0x0B000000, n),  # 10/8
                  rng.integers(0xC0A83200, 0xC0A83300, n)).astype(np.uint64)  # 192.168.50/24
    lo = v4 | np.uint64(0xFFFF_0000_0000)
    hi = np.zeros(n, np.uint64)
    has = rng.random(n) < 0.9
    got = table.actions(idx, hi, lo, has)
    sample = rng.integers(0, n, 300)
    for i in sample:
        host = str(ipaddress.IPv4Address(int(lo[i]) & 0xFFFFFFFF)) if has[i] else None
        assert got[i] == ACTIONS.index(policy.action(SERVICE_IDS[idx[i]], host))


def _check_config(tmp_path, hosts_file: str | None, hosts_text: str | None = None):
    import subprocess
    import sys
    if hosts_text is not None:
        (tmp_path / "hosts.toml").write_text(hosts_text)
    cfg = tmp_path / "imflow.toml"
    cfg.write_text("[policy]\ndefault = \"monitor\"\n" + (f'hosts_file = "{hosts_file}"\n' if hosts_file else ""))
    return subprocess.run([sys.executable, "-m", "collector", "check-config", str(cfg)],
                          capture_output=True, text=True, timeout=120)


def test_check_config_reads_the_hosts_file(tmp_path):
    """The host map's names reach reports and terminals: check-config refuses what `report` would."""
    hosts = str(tmp_path / "hosts.toml")
    ok = _check_config(tmp_path, hosts, '[[host]]\nmatch = "10.1.2.0/24"\nname = "build farm"\n')
    assert ok.returncode == 0, ok.stderr
    missing = _check_config(tmp_path, str(tmp_path / "nope.toml"))
    assert missing.returncode == 2
    assert missing.stderr.startswith("imflow: config: policy.hosts_file: ") and "nope.toml" in missing.stderr
    assert len(missing.stderr.splitlines()) == 1
    bad = _check_config(tmp_path, hosts, '[[host]]\nmatch = "10.1.2.0/24"\nname = "x\\u001b[2J"\n')
    assert bad.returncode == 2
    assert "host[0].name: control character U+001B not allowed" in bad.stderr
    assert len(bad.stderr.splitlines()) == 1
