"""The shipped catalogue and catalogue validation: every error is one line naming its key."""

from __future__ import annotations

import datetime as dt
import ipaddress
import re

import pytest

from collector.classify.catalogue import CatalogueError, build_catalogue, load_catalogue
from collector.classify.update import dumps

FIXED_PORTS = {  # id -> ports that must be listed (proto, port); "both" = tcp and udp
    "msn": [("tcp", 1863)], "wimd": [("tcp", 2980)], "icona": [("tcp", 4800)],
    "yahoo": [("tcp", 5050)], "aim": [("tcp", 5190)],
    "xmpp": [("tcp", 5222), ("tcp", 5223), ("tcp", 5269)],
    "bittorrent": [(p, n) for p in ("tcp", "udp") for n in (6881, 6885, 6889, 6969, 51413)],
    "sip": [(p, n) for p in ("tcp", "udp") for n in (5060, 5061)],
}
FIXED_IDS = """msn wimd icona yahoo aim xmpp irc gadugadu qq bittorrent edonkey gnutella kazaa
directconnect soulseek ipfs sip iax2 h323 mgcp sccp stun zoom teams webex meet telegram whatsapp
signal slack discord matrix mattermost""".split()


def covers(text: str, proto: str, port: int) -> bool:
    """Independent reading of the port syntax: 'tcp/N', 'udp/N', 'sctp/N', 'N' = tcp+udp."""
    m = re.fullmatch(r"(?:(tcp|udp|sctp)/)?(\d+)(?:-(\d+))?", text)
    assert m, text
    protos = {m.group(1)} if m.group(1) else {"tcp", "udp"}
    lo, hi = int(m.group(2)), int(m.group(3) or m.group(2))
    return proto in protos and lo <= port <= hi


def owns(service, proto: str, port: int) -> bool:
    return any(covers(t, proto, port) for t in service.ports) and not any(
        covers(t, proto, port) for t in service.shared_ports)


@pytest.fixture(scope="module")
def shipped():
    return load_catalogue()


def test_shipped_catalogue_shape(shipped):
    assert len(shipped.services) - 1 >= 40
    assert shipped.services[0].id == "other" and shipped.services[0].category == "other"
    assert dt.date.fromisoformat(shipped.snapshot)
    assert shipped.categories == ("other", "im", "p2p", "voip", "collab")
    ids = [s.id for s in shipped.services]
    assert len(ids) == len(set(ids))
    assert all(s.index == i for i, s in enumerate(shipped.services))
    assert {s.category for s in shipped.services[1:]} == {"im", "p2p", "voip", "collab"}
    for s in shipped.services[1:]:
        assert s.name and s.notes, s.id
        for url in s.prefix_sources:
            assert url.startswith("https://"), url


@pytest.mark.parametrize("sid", FIXED_IDS)
def test_fixed_ids_present(shipped, sid):
    assert sid in shipped.by_id


@pytest.mark.parametrize("sid,proto,port", [(s, p, n) for s, pp in FIXED_PORTS.items() for p, n in pp])
def test_fixed_ports(shipped, sid, proto, port):
    assert any(covers(t, proto, port) for t in shipped.by_id[sid].ports)


def test_no_two_services_own_a_port(shipped):
    # Any overlap of two ranges contains the start of one of them: checking every range start
    # and end (and their neighbours, where shared ports cut owned ranges) is exhaustive.
    ends = {int(n) for s in shipped.services for t in (*s.ports, *s.shared_ports)
            for n in re.findall(r"\d+", t.split("/")[-1])}
    ends |= {n + 1 for n in ends} | {n - 1 for n in ends if n}  # owned = ports minus shared
    for proto in ("tcp", "udp", "sctp"):
        for port in ends:
            owners = [s.id for s in shipped.services[1:] if owns(s, proto, port)]
            assert len(owners) <= 1, (proto, port, owners)


def test_shared_port_decisions(shipped):
    by = shipped.by_id
    assert owns(by["xmpp"], "tcp", 5222)  # its IANA port
    for sid in ("whatsapp", "telegram", "threema"):
        assert covers_any(by[sid].shared_ports, "tcp", 5222) and not owns(by[sid], "tcp", 5222)
    assert not owns(by["xmpp"], "tcp", 5223)  # Apple push notifications
    assert owns(by["stun"], "udp", 3478)
    for sid in ("teams", "zoom", "meet", "whatsapp", "messenger"):
        assert not owns(by[sid], "udp", 3478)
    for s in shipped.services[1:]:
        assert not owns(s, "tcp", 443) and not owns(s, "tcp", 80) and not owns(s, "udp", 443), s.id


def covers_any(texts, proto, port):
    return any(covers(t, proto, port) for t in texts)


def test_shipped_prefixes(shipped):
    by = shipped.by_id
    assert "149.154.160.0/20" in by["telegram"].prefixes and "2001:67c:4e8::/48" in by["telegram"].prefixes
    assert len(by["telegram"].prefixes) == 14
    assert "52.112.0.0/14" in by["teams"].prefixes
    assert "62.109.192.0/18" in by["webex"].prefixes and "163.129.0.0/17" in by["webex"].prefixes
    assert "66.114.160.0/20" not in by["webex"].prefixes  # removed 2025-04-04
    assert "99.77.128.0/18" in by["slack"].prefixes
    assert "74.125.250.0/24" in by["meet"].prefixes
    assert by["telegram"].prefix_sources == ("https://core.telegram.org/resources/cidr.txt",)
    for s in shipped.services:
        for p in s.prefixes:
            assert ipaddress.ip_network(p).is_global, (s.id, p)


def test_round_trip_through_writer(shipped, tmp_path):
    path = tmp_path / "cat.toml"
    path.write_text(dumps(shipped.to_dict()))
    again = load_catalogue(str(path))
    assert again.services == shipped.services and again.snapshot == shipped.snapshot


# ---------------------------------------------------------------- overrides


def test_override_replaces_and_add_appends(shipped):
    cat = load_catalogue(extra={"service": [
        {"id": "msn", "ports": ["tcp/1864"], "name": "MSN"},
        {"id": "telegram", "add_prefixes": ["95.161.64.0/20"]},
        {"id": "webex", "prefixes": ["62.109.192.0/18"]},
        {"id": "irc", "add_ports": ["tcp/6698"]},
        {"id": "corpchat", "name": "Corp chat", "category": "collab", "ports": ["tcp/7777"],
         "prefixes": ["203.0.113.0/24"]},
    ]})
    assert cat.by_id["msn"].ports == ("tcp/1864",) and cat.by_id["msn"].name == "MSN"
    assert cat.by_id["msn"].app_names == shipped.by_id["msn"].app_names
    assert cat.by_id["telegram"].prefixes == shipped.by_id["telegram"].prefixes + ("95.161.64.0/20",)
    assert cat.by_id["webex"].prefixes == ("62.109.192.0/18",)
    assert cat.by_id["irc"].ports == shipped.by_id["irc"].ports + ("tcp/6698",)
    new = cat.services[-1]
    assert new.id == "corpchat" and new.index == len(cat.services) - 1 == len(shipped.services)
    # Existing services keep their index: dashboards and stored rollups name them by id, but
    # a classified batch carries indexes.
    assert [s.id for s in cat.services[:-1]] == [s.id for s in shipped.services]


def test_shared_port_may_be_listed_twice():
    cat = load_catalogue(extra={"service": [
        {"id": "mychat", "name": "x", "category": "im", "ports": ["tcp/1863"],
         "shared_ports": ["tcp/1863"]}]})
    assert "mychat" in cat.by_id


MINIMAL = {"snapshot": "2026-01-01",
           "service": [{"id": "a", "name": "A", "category": "im", "ports": ["tcp/1"]}]}

EXTRA_ERRORS = [
    ({"id": "x", "name": "X", "category": "im", "ports": ["tcp/1", "tcp/99999"]},
     'service[0].ports[1]: "tcp/99999": port out of range 0-65535'),
    ({"id": "x", "name": "X", "category": "im", "ports": ["tcp:80"]}, "service[0].ports[0]: "),
    ({"id": "x", "name": "X", "category": "im", "ports": ["icmp/8"]}, "service[0].ports[0]: "),
    ({"id": "x", "name": "X", "category": "im", "ports": ["100-10"]},
     'service[0].ports[0]: "100-10": range start above its end'),
    ({"id": "x", "name": "X", "category": "im", "ports": [80]}, "service[0].ports[0]: 80: expected a string"),
    ({"id": "x", "name": "X", "category": "im", "shared_ports": ["udp/70000"]},
     "service[0].shared_ports[0]: "),
    ({"id": "x", "name": "X", "category": "im", "prefixes": ["10.0.0.1/8"]},
     'service[0].prefixes[0]: "10.0.0.1/8": 10.0.0.1/8 has host bits set'),
    ({"id": "x", "name": "X", "category": "im", "prefixes": ["300.1.1.0/24"]}, "service[0].prefixes[0]: "),
    ({"id": "x", "name": "X", "category": "im", "prefix_sources": ["ftp://example.net/x"]},
     "service[0].prefix_sources[0]: "),
    ({"id": "x", "name": "X", "category": "chat"},
     'service[0].category: "chat": expected one of im, p2p, voip, collab'),
    ({"id": "x", "name": "X", "category": "other"}, "service[0].category: "),
    ({"id": "msn", "category": "other"}, "service[0].category: "),
    ({"id": "x", "category": "im"}, 'service[0].name: missing for service "x"'),
    ({"id": "x", "name": "X"}, 'service[0].category: missing for service "x"'),
    ({"id": "Bad Id", "name": "X", "category": "im"}, "service[0].id: "),
    ({"id": "other", "name": "X", "category": "im"}, "service[0].id: "),
    ({"id": "x", "name": "X", "category": "im", "colour": "red"}, "service[0].colour: unknown key"),
    ({"id": "x", "name": "X", "category": "im", "ports": "tcp/1"}, "service[0].ports: expected a list"),
    ({"id": "x", "name": "X", "category": "im", "ports": ["tcp/1863"]},
     'service[0].ports[0]: "tcp/1863": tcp port also claimed by service "msn"'),
    ({"id": "x", "name": "X", "category": "im", "ports": ["5040-5100"]},
     'service[0].ports[0]: "5040-5100": tcp port also claimed by service "yahoo"'),
    ({"id": "irc", "add_ports": ["udp/3478"]},
     'service[0].add_ports[0]: "udp/3478": udp port also claimed by service "stun"'),
    ({"id": "x", "name": "X", "category": "im", "app_names": ["msn"]}, "service[0].app_names: "),
]


@pytest.mark.parametrize("entry,expected", EXTRA_ERRORS)
def test_override_errors_name_the_key(entry, expected):
    with pytest.raises(CatalogueError) as info:
        load_catalogue(extra={"service": [entry]})
    text = str(info.value)
    assert text.startswith(expected), text
    assert "\n" not in text and info.value.key == text.split(": ", 1)[0]


@pytest.mark.parametrize("doc,expected", [
    ({**MINIMAL, "service": MINIMAL["service"] * 2},
     'service[1].id: "a": duplicate id (first at service[0])'),
    ({"service": MINIMAL["service"]}, "snapshot: missing"),
    ({**MINIMAL, "snapshot": "soon"}, "snapshot: "),
    ({**MINIMAL, "owner": "me"}, "owner: unknown key"),
    ({**MINIMAL, "service": {"id": "a"}}, "service: expected a list"),
    ({**MINIMAL, "service": [{**MINIMAL["service"][0], "add_ports": ["tcp/2"]}]},
     "service[0].add_ports: unknown key"),
])
def test_file_errors_name_the_key(doc, expected):
    with pytest.raises(CatalogueError) as info:
        build_catalogue(doc)
    assert str(info.value).startswith(expected), str(info.value)


def test_duplicate_ids_in_overrides():
    with pytest.raises(CatalogueError, match=r"^service\[1\]\.id: \"msn\": duplicate id"):
        load_catalogue(extra={"service": [{"id": "msn", "name": "a"}, {"id": "msn", "name": "b"}]})


def test_unknown_top_level_override_key():
    with pytest.raises(CatalogueError, match=r"^services: unknown key"):
        load_catalogue(extra={"services": []})


def test_bad_toml_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("snapshot = \n")
    with pytest.raises(CatalogueError, match="not valid TOML"):
        load_catalogue(str(path))


def test_app_name_lookup(shipped):
    assert shipped.service_for_app_name("BitTorrent").id == "bittorrent"
    assert shipped.service_for_app_name("no-such-app") is None
    table = {0x0D000001: "bittorrent", 0x0D000002: "http", 0x0D000003: "MS-Teams"}
    assert shipped.app_ids_for(table) == {0x0D000001: "bittorrent", 0x0D000003: "teams"}
