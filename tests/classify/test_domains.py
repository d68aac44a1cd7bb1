"""Domain patterns (collector/classify/domains.py and the catalogue's `domains`)."""

from __future__ import annotations

import pytest

from collector.classify.catalogue import CatalogueError, load_catalogue
from collector.classify.domains import DomainMatcher

CAT = load_catalogue()
M = DomainMatcher(CAT.services)


@pytest.mark.parametrize("name, expected", [
    ("web.whatsapp.com", "whatsapp"), ("WEB.WhatsApp.COM.", "whatsapp"), ("whatsapp.net", "whatsapp"),
    ("mmg.whatsapp.net", "whatsapp"), ("signal.org", "signal"), ("chat.signal.org", "signal"),
    ("weixin.qq.com", "wechat"), ("long.weixin.qq.com", "wechat"), ("qq.com", "other"),
    ("notwhatsapp.net", "other"), ("whatsapp.net.example", "other"), ("discord.gg", "discord"),
    ("x" * 300 + ".whatsapp.net", "other"), ("", "other"), (b"\xff.whatsapp.net", "other"),
])
def test_match(name, expected):
    assert CAT.services[M.match(name)].id == expected


def test_wildcard_does_not_match_the_apex():
    m = DomainMatcher(load_catalogue(extra={"service": [{"id": "line", "domains": ["*.line.me"]}]}).services)
    assert m.match("line.me") == 0 and m.match("obs.line.me") != 0


@pytest.mark.parametrize("bad", ["*", "*.com*", "a..b", "exa mple.com", "-bad.com", "a.*.b", 3])
def test_bad_patterns_name_the_key(bad):
    with pytest.raises(CatalogueError) as e:
        load_catalogue(extra={"service": [{"id": "signal", "add_domains": [bad]}]})
    assert e.value.key == "service[0].add_domains[0]"


@pytest.mark.parametrize("bad", [0, -1, "ASX", 23456, 1 << 32, True])
def test_bad_asns_name_the_key(bad):
    with pytest.raises(CatalogueError) as e:
        load_catalogue(extra={"service": [{"id": "signal", "asns": [bad]}]})
    assert e.value.key == "service[0].asns[0]"
