"""Host map parsing and matching, and reverse DNS bounded by its timeout and deadline. No
outside network: names come from /etc/hosts (127.0.0.1 → localhost), failures from addresses
nothing resolves, slowness from an injected resolver that sleeps."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from collector.policy.hostnames import HostMapError, HostNames


def _map(tmp_path, text: str) -> str:
    path = tmp_path / "hosts.toml"
    path.write_text(text)
    return str(path)


def test_most_specific_match_per_field(host_map):
    names = HostNames(host_map)
    assert names.lookup("10.1.2.15") == ("build-server-3", "release team")
    assert names.lookup("10.1.2.16") == ("", "engineering")  # the subnet's owner, no name
    assert names.lookup("10.1.5.200") == ("guest wifi", "")
    assert names.lookup("10.1.6.1") == ("", "")
    assert names.lookup("::ffff:10.1.2.15") == ("build-server-3", "release team")  # v4-mapped
    assert names.lookup("not an address") == ("", "")
    assert names.lookup("") == ("", "")


def test_nested_networks_and_ipv6(tmp_path):
    names = HostNames(_map(tmp_path, """
[[host]]
match = "10.0.0.0/8"
name = "corporate"
owner = "IT"
[[host]]
match = "10.1.0.0/16"
name = "head office"
[[host]]
match = "10.1.2.3"
owner = "finance"
[[host]]
match = "2001:db8:1::/48"
name = "lab v6"
[[host]]
match = "2001:db8:1::5"
name = "lab printer"
[[host]]
match = "0.0.0.0/0"
owner = "somebody"
"""))
    assert names.lookup("10.1.2.3") == ("head office", "finance")
    assert names.lookup("10.1.9.9") == ("head office", "IT")
    assert names.lookup("10.200.0.1") == ("corporate", "IT")
    assert names.lookup("192.0.2.1") == ("", "somebody")
    assert names.lookup("2001:db8:1::5") == ("lab printer", "")
    assert names.lookup("2001:db8:1:ffff::1") == ("lab v6", "")
    assert names.lookup("2001:db8:2::1") == ("", "")  # IPv4's 0.0.0.0/0 does not cover IPv6
    assert names.lookup_many(["10.1.2.3", "2001:db8:1::5", "10.1.2.3"]) == {
        "10.1.2.3": ("head office", "finance"), "2001:db8:1::5": ("lab printer", "")}


@pytest.mark.parametrize("text, message", [
    (('[[host]]\nmatch = "10.1.2.0/24"\nname = "a"\n[[host]]\nmatch = "10.1.3.0/24"\nname = "b"\n'
     '[[host]]\nmatch = "10.1.2.0/33"\nname = "c"\n'),
     "hosts.toml: host[2].match: '10.1.2.0/33': not a network"),
    ('[[host]]\nmatch = "10.1.2.5/24"\nname = "a"\n',
     "hosts.toml: host[0].match: '10.1.2.5/24': host bits set (did you mean 10.1.2.0/24?)"),
    ('[[host]]\nmatch = "10.1.2.300"\nname = "a"\n', "hosts.toml: host[0].match: '10.1.2.300': not an address"),
    ('[[host]]\nmatch = 17\nname = "a"\n', "hosts.toml: host[0].match: 17: expected an address or network string"),
    ('[[host]]\nname = "a"\n', "hosts.toml: host[0].match: missing (an address or a network)"),
    ('[[host]]\nmatch = "10.0.0.1"\n', "hosts.toml: host[0]: give a name, an owner or both"),
    ('[[host]]\nmatch = "10.0.0.1"\nname = "a"\nowners = "x"\n',
     "hosts.toml: host[0].owners: unknown key (expected match, name, owner)"),
    ('[[host]]\nmatch = "10.0.0.1"\nname = 5\n', "hosts.toml: host[0].name: 5: expected a string"),
    ('[[host]]\nmatch = "10.0.0.1"\nname = "a"\n[[host]]\nmatch = "10.0.0.1/32"\nname = "b"\n',
     "hosts.toml: host[1].match: '10.0.0.1/32' is already in host[0]"),
    ('[[hosts]]\nmatch = "10.0.0.1"\n', "hosts.toml: hosts: unknown key (expected [[host]] tables)"),
    # names and owners reach reports and terminals: no control character, bounded
    ('[[host]]\nmatch = "10.0.0.1"\nname = "a\\u001b]0;x\\u0007"\n',
     "hosts.toml: host[0].name: control character U+001B not allowed"),
    ('[[host]]\nmatch = "10.0.0.1"\nowner = """team\nforged"""\n',
     "hosts.toml: host[0].owner: control character U+000A not allowed"),
    ('[[host]]\nmatch = "10.0.0.1"\nname = "a\\u0085"\n',
     "hosts.toml: host[0].name: control character U+0085 not allowed"),
    ('[[host]]\nmatch = "10.0.0.1"\nname = "' + "n" * 256 + '"\n',
     "hosts.toml: host[0].name: 256 characters: at most 255"),
    ('host = "10.0.0.1"\n', "hosts.toml: host: expected a list of tables ([[host]])"),
    ('[[host]\n', "hosts.toml: not valid TOML: "),
])
def test_errors_name_file_and_key(tmp_path, text, message):
    path = _map(tmp_path, text)
    with pytest.raises(HostMapError) as info:
        HostNames(path)
    got = str(info.value).replace(str(tmp_path) + "/", "")
    assert got.startswith(message) and "\n" not in got


def test_missing_file(tmp_path):
    with pytest.raises(HostMapError, match=r"nope\.toml: No such file"):
        HostNames(str(tmp_path / "nope.toml"))


def test_reverse_dns_is_off_by_default():
    calls = []
    names = HostNames(resolver=lambda a: calls.append(a) or "x.example")
    assert names.lookup("127.0.0.1") == ("", "") and calls == []


def test_reverse_dns_from_etc_hosts():
    if socket.gethostbyaddr("127.0.0.1")[0] != "localhost":
        pytest.skip("this machine does not map 127.0.0.1 to localhost")
    names = HostNames(reverse_dns=True)
    assert names.lookup("127.0.0.1") == ("localhost", "")
    assert names.lookup("127.0.0.1") == ("localhost", "") and names.cache_hits == 1


def test_reverse_dns_fills_in_names_the_map_lacks(tmp_path):
    path = _map(tmp_path, '[[host]]\nmatch = "127.0.0.0/8"\nowner = "loopback team"\n'
                          '[[host]]\nmatch = "127.0.0.2"\nname = "pinned"\n')
    seen = []
    names = HostNames(path, reverse_dns=True, resolver=lambda a: seen.append(a) or "from-dns.example.")
    assert names.lookup_many(["127.0.0.1", "127.0.0.2"]) == {
        "127.0.0.1": ("from-dns.example", "loopback team"), "127.0.0.2": ("pinned", "loopback team")}
    assert seen == ["127.0.0.1"]  # a mapped name needs no lookup


def test_failures_are_fast_and_cached():
    # Nothing answers for documentation and unique-local addresses here; the stdlib resolver
    # either says so at once or is cut off by the deadline.
    names = HostNames(reverse_dns=True, timeout=1.0)
    hosts = ["192.0.2.1", "198.51.100.7", "2001:db8::1", "fd00::1"]
    began = time.monotonic()
    assert names.lookup_many(hosts, deadline=2.0) == {h: ("", "") for h in hosts}
    assert time.monotonic() - began < 2.5


def test_negative_results_are_cached():
    calls = []

    def resolver(addr):
        calls.append(addr)
        raise socket.herror(1, "Unknown host")
    names = HostNames(reverse_dns=True, resolver=resolver)
    for _ in range(3):
        assert names.lookup("192.0.2.9") == ("", "")
    assert calls == ["192.0.2.9"] and names.failures == 1 and names.cache_hits == 2


def test_deadline_bounds_the_whole_call():
    release = threading.Event()

    def slow(addr):
        release.wait(30)  # a resolver that hangs (a dead DNS server)
        return "late.example"
    names = HostNames(reverse_dns=True, timeout=1.0, resolver=slow, workers=4)
    try:
        hosts = [f"10.0.0.{i}" for i in range(1, 41)]
        began = time.monotonic()
        got = names.lookup_many(hosts, deadline=0.3)
        took = time.monotonic() - began
        assert got == {h: ("", "") for h in hosts}
        assert 0.25 <= took < 0.8, took
        # the per-lookup timeout bounds a call below a longer deadline
        began = time.monotonic()
        assert names.lookup_many(["10.0.1.1"], deadline=5.0) == {"10.0.1.1": ("", "")}
        assert 0.9 <= time.monotonic() - began < 1.5
        assert names.timeouts == 41
    finally:
        release.set()
        names.close()


def test_per_lookup_timeout_and_late_answers_land_in_the_cache():
    def slow(addr):
        time.sleep(0.4)
        return "slow.example"
    names = HostNames(reverse_dns=True, timeout=0.1, resolver=slow)
    began = time.monotonic()
    assert names.lookup("10.0.0.1") == ("", "")
    assert time.monotonic() - began < 0.3
    time.sleep(0.6)  # the lookup finished in the background
    assert names.lookup("10.0.0.1") == ("slow.example", "")


def test_concurrent_requests_share_one_lookup():
    calls = []

    def resolver(addr):
        calls.append(addr)
        time.sleep(0.2)
        return "one.example"
    names = HostNames(reverse_dns=True, resolver=resolver)
    results = []
    threads = [threading.Thread(target=lambda: results.append(names.lookup("10.0.0.5"))) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [("one.example", "")] * 5 and calls == ["10.0.0.5"]


def test_ttl_and_size_bound_the_cache():
    now = [1000.0]
    calls = []
    names = HostNames(reverse_dns=True, cache_size=2, ttl=60, resolver=lambda a: calls.append(a) or f"h{a[-1]}",
                      clock=lambda: now[0])
    assert names.lookup("10.0.0.1") == ("h1", "")
    assert names.lookup("10.0.0.1") == ("h1", "") and len(calls) == 1
    now[0] += 61  # expired: asked again
    assert names.lookup("10.0.0.1") == ("h1", "") and len(calls) == 2
    names.lookup("10.0.0.2")
    names.lookup("10.0.0.3")  # evicts 10.0.0.1, the least recently used
    assert len(names._cache) == 2
    names.lookup("10.0.0.1")
    assert calls == ["10.0.0.1", "10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.1"]


def test_resolver_echoing_the_address_means_no_name():
    names = HostNames(reverse_dns=True, resolver=lambda a: a)
    assert names.lookup("10.0.0.1") == ("", "")


def test_bad_arguments():
    with pytest.raises(ValueError):
        HostNames(cache_size=0)
    with pytest.raises(ValueError):
        HostNames(timeout=0)


def test_reverse_dns_names_are_kept_as_answered_but_bounded():
    """A PTR answer is outside text: kept exact (it is escaped where it is shown), at most 255 characters."""
    names = HostNames(reverse_dns=True, resolver=lambda a: "\x1b]0;x\x07" + "n" * 400)
    name, _ = names.lookup("10.9.9.9")
    assert name == ("\x1b]0;x\x07" + "n" * 400)[:255]
