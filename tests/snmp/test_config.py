"""The [snmp] config section: defaults, forms, and one-line errors naming the key."""

from __future__ import annotations

import pytest

from collector.config import ConfigError
from collector.snmp import Target, parse_targets


def parse(*targets, env=None, **section):
    return parse_targets({**section, "targets": list(targets)}, env=env or {})


def test_v2c_defaults():
    (t,) = parse({"exporter": "192.0.2.1", "community": "public"})
    assert (t.exporter, t.host, t.port, t.version) == ("192.0.2.1", "192.0.2.1", 161, "2c")
    assert (t.interval, t.timeout, t.retries) == (60.0, 2.0, 1)
    assert t.community.reveal() == "public"
    assert t.security_level == "" and t.address == "192.0.2.1:161"


def test_no_section_or_no_targets():
    assert parse_targets(None) == [] and parse_targets({}) == []


@pytest.mark.parametrize("address, host, port", [
    ("192.0.2.1:1161", "192.0.2.1", 1161),
    ("198.51.100.7", "198.51.100.7", 161),
    ("[2001:db8::1]:1161", "2001:db8::1", 1161),
    ("[2001:DB8::1]", "2001:db8::1", 161),
    ("2001:db8::1", "2001:db8::1", 161),
    ("rtr1.example.net:161", "rtr1.example.net", 161),
    ("rtr1", "rtr1", 161),
])
def test_address_forms(address, host, port):
    (t,) = parse({"exporter": "192.0.2.1", "address": address, "community": "public"})
    assert (t.host, t.port) == (host, port)


def test_ipv6_exporter_is_normalised_and_is_the_default_address():
    (t,) = parse({"exporter": "2001:DB8:0::1", "community": "public"})
    assert t.exporter == t.host == "2001:db8::1" and t.address == "[2001:db8::1]:161"


def test_section_defaults_and_target_overrides():
    a, b = parse({"exporter": "192.0.2.1", "community": "public"},
                 {"exporter": "192.0.2.2", "community": "public", "interval": "5m", "timeout": "500ms",
                  "retries": 0},
                 interval=30, timeout=1.5, retries=3, backoff_max="1h")
    assert (a.interval, a.timeout, a.retries, a.backoff_max) == (30.0, 1.5, 3, 3600.0)
    assert (b.interval, b.timeout, b.retries) == (300.0, 0.5, 0)


def test_v3_levels_and_protocol_names():
    priv, auth, none = parse(
        {"exporter": "192.0.2.1", "version": "3", "user": "u", "auth_protocol": "SHA-256",
         "auth_key": "k" * 8, "priv_protocol": "AES-256", "priv_key": "p" * 8, "context": "vrf-a"},
        {"exporter": "192.0.2.2", "version": "3", "user": "u", "auth_protocol": "sha1", "auth_key": "k" * 8},
        {"exporter": "192.0.2.3", "version": "3", "user": "u"})
    assert (priv.security_level, priv.auth_protocol, priv.priv_protocol, priv.context) == \
        ("authPriv", "sha256", "aes256", "vrf-a")
    assert (auth.security_level, auth.auth_protocol, auth.priv_protocol) == ("authNoPriv", "sha", "")
    assert none.security_level == "noAuthNoPriv"
    for name, expected in (("AES128", "aes"), ("aes_192_c", "aes192c"), ("3DES", "3des"), ("des", "des")):
        (t,) = parse({"exporter": "192.0.2.1", "version": "3", "user": "u", "auth_protocol": "md5",
                      "auth_key": "k" * 8, "priv_protocol": name, "priv_key": "p" * 8})
        assert t.priv_protocol == expected


def test_secrets_from_environment():
    env = {"C": "from-env", "A": "auth-from-env", "P": "priv-from-env"}
    v2, v3 = parse({"exporter": "192.0.2.1", "community_env": "C"},
                   {"exporter": "192.0.2.2", "version": "3", "user": "u", "auth_protocol": "sha",
                    "auth_key_env": "A", "priv_protocol": "aes", "priv_key_env": "P"}, env=env)
    assert v2.community.reveal() == "from-env"
    assert (v3.auth_key.reveal(), v3.priv_key.reveal()) == ("auth-from-env", "priv-from-env")


def test_repr_and_str_hide_secrets():
    t = Target("192.0.2.1", "192.0.2.1", 161, "3", user="u", auth_protocol="sha", priv_protocol="aes",
               auth_key="auth-hidden-1", priv_key="priv-hidden-2", community="comm-hidden-3")
    for text in (repr(t), str(t), repr(t.auth_key), str(t.priv_key), f"{t.community}"):
        assert "hidden" not in text
    assert t.auth_key.reveal() == "auth-hidden-1"
    assert t == Target("192.0.2.1", "192.0.2.1", 161, "3", user="u", auth_protocol="sha", priv_protocol="aes",
                       auth_key="auth-hidden-1", priv_key="priv-hidden-2", community="comm-hidden-3")


V2 = {"exporter": "192.0.2.1", "community": "public"}
V3 = {"exporter": "192.0.2.1", "version": "3", "user": "u"}
AUTH = {"auth_protocol": "sha", "auth_key": "s3cr3t-auth"}


@pytest.mark.parametrize("section, key, fragment", [
    ({"targets": [{**V2, "version": "4"}]}, "snmp.targets[0].version", "'4': expected 2c or 3"),
    ({"targets": [{**V2, "version": 2}]}, "snmp.targets[0].version", "expected 2c or 3"),
    ({"targets": [{**V2, "comunity": "x"}]}, "snmp.targets[0].comunity", "unknown key"),
    ({"targets": [{"community": "x"}]}, "snmp.targets[0].exporter", "required"),
    ({"targets": [{**V2, "exporter": "rtr1"}]}, "snmp.targets[0].exporter", "not an IP address"),
    ({"targets": [{**V2, "address": "192.0.2.1:99999"}]}, "snmp.targets[0].address", "port out of range"),
    ({"targets": [{**V2, "address": "192.0.2.1:x"}]}, "snmp.targets[0].address", "not a number"),
    ({"targets": [{**V2, "address": "bad host!"}]}, "snmp.targets[0].address", "expected host"),
    ({"targets": [{"exporter": "192.0.2.1"}]}, "snmp.targets[0].community", "required for version 2c"),
    ({"targets": [{**V2, "community_env": "X"}]}, "snmp.targets[0].community", "not both"),
    ({"targets": [{"exporter": "192.0.2.1", "community_env": "UNSET_VAR"}]},
     "snmp.targets[0].community_env", "UNSET_VAR is not set"),
    ({"targets": [{"exporter": "192.0.2.1", "community_env": "no such"}]},
     "snmp.targets[0].community_env", "not an environment variable name"),
    ({"targets": [{**V2, "user": "u"}]}, "snmp.targets[0].user", "not used with version 2c"),
    ({"targets": [{**V3, "community": "x"}]}, "snmp.targets[0].community", "not used with version 3"),
    ({"targets": [{"exporter": "192.0.2.1", "version": "3"}]}, "snmp.targets[0].user", "required"),
    ({"targets": [{**V3, "auth_protocol": "sha"}]}, "snmp.targets[0].auth_key", "required with auth_protocol"),
    ({"targets": [{**V3, "auth_key": "12345678"}]}, "snmp.targets[0].auth_protocol", "required with auth_key"),
    ({"targets": [{**V3, **AUTH, "auth_protocol": "sha3"}]}, "snmp.targets[0].auth_protocol", "expected one of"),
    ({"targets": [{**V3, **AUTH, "priv_protocol": "aes512", "priv_key": "12345678"}]},
     "snmp.targets[0].priv_protocol", "expected one of"),
    ({"targets": [{**V3, "priv_protocol": "aes", "priv_key": "12345678"}]},
     "snmp.targets[0].priv_protocol", "privacy needs authentication"),
    ({"targets": [{**V3, "auth_protocol": "sha", "auth_key": "short"}]}, "snmp.targets[0].auth_key", "too short"),
    ({"targets": [{**V2, "interval": -1}]}, "snmp.targets[0].interval", "out of range"),
    ({"targets": [{**V2, "interval": "soon"}]}, "snmp.targets[0].interval", "not a duration"),
    ({"targets": [{**V2, "timeout": 0}]}, "snmp.targets[0].timeout", "out of range"),
    ({"targets": [{**V2, "retries": True}]}, "snmp.targets[0].retries", "expected an integer"),
    ({"targets": [V2, {**V2, "community": "y"}]}, "snmp.targets[1].exporter", "already used by snmp.targets[0]"),
    ({"targets": {"exporter": "192.0.2.1"}}, "snmp.targets", "expected a list of tables"),
    ({"targets": ["192.0.2.1"]}, "snmp.targets[0]", "expected a table"),
    ({"targets": [], "timout": 1}, "snmp.timout", "unknown key"),
    ({"targets": [], "retries": 11}, "snmp.retries", "out of range"),
    ("yes", "snmp", "expected a table"),
])
def test_errors_name_the_key(section, key, fragment):
    with pytest.raises(ConfigError) as info:
        parse_targets(section, env={"X": "x"})
    assert info.value.key == key
    text = str(info.value)
    assert text.startswith(f"{key}") and fragment in text and "\n" not in text


def test_secret_from_environment_too_short_names_the_env_key():
    with pytest.raises(ConfigError) as info:
        parse({**V3, "auth_protocol": "sha", "auth_key_env": "K"}, env={"K": "short-k"})
    assert info.value.key == "snmp.targets[0].auth_key_env"
    assert "$K" in str(info.value) and "short-k" not in str(info.value)
