"""`imflow catalogue update`: parsers on small sample texts, the update with an injected fetch.
No test leaves this machine; the one real fetch goes to a closed port on 127.0.0.1."""

from __future__ import annotations

import datetime as dt
import json
import socket

import pytest

from collector.classify.catalogue import load_catalogue
from collector.classify.update import (
    UpdateError,
    default_fetch,
    fetch_prefixes,
    parse_cidr_lines,
    parse_google,
    parse_html,
    parse_ms365,
    parser_for,
    request_url,
    update_catalogue,
)

TELEGRAM = """\
91.108.56.0/22
91.108.4.0/22
# comment
149.154.160.0/20

2001:b28:f23d::/48
"""

MS365 = json.dumps([
    {"id": 1, "serviceArea": "Exchange", "ips": ["13.107.6.152/31"]},
    {"id": 11, "serviceArea": "Skype", "ips": ["52.112.0.0/14", "52.122.0.0/15", "2603:1063::/38"],
     "udpPorts": "3478,3479,3480,3481"},
    {"id": 12, "serviceArea": "Skype", "ips": ["52.112.0.0/14", "52.123.0.0/16"], "tcpPorts": "443"},
    {"id": 13, "serviceArea": "Skype", "urls": ["*.teams.microsoft.com"]},
])

GOOG = json.dumps({"syncToken": "1", "creationTime": "2026-11-01T00:00:00",
                   "prefixes": [{"ipv4Prefix": "74.125.0.0/16"}, {"ipv6Prefix": "2001:4860::/32"}]})

WEBEX = """<html><body>
<h2>Network requirements</h2><p>Do not use 10.0.0.0/8 for anything.</p>
<table><tr><td>8.8.8.0/24</td></tr></table>
<h2 id="s1">IP subnets for Webex&nbsp;media services</h2>
<p>Use these subnets (see note on 20.50.235.0/24*).</p>
<h3>IPv4</h3>
<table><tr><th>Subnet</th></tr><tr><td>62.109.192.0/18</td></tr><tr><td>20.50.235.0/24*</td></tr>
<tr><td>163.129.0.0/17</td></tr></table>
<h3>IPv6</h3>
<table><tr><td>2402:2500::/34</td></tr><tr><td>2a00:a640::/34</td></tr></table>
<h2>Revision history</h2>
<table><tr><td>2025-04-04: removed 66.114.160.0/20</td></tr></table>
</body></html>"""

SLACK = "<html><p>Allow UDP 22466 and TCP 443 to 99.77.128.0/18 (Amazon Chime).</p></html>"


def test_parse_cidr_lines():
    assert [str(n) for n in parse_cidr_lines(TELEGRAM)] == [
        "91.108.56.0/22", "91.108.4.0/22", "149.154.160.0/20", "2001:b28:f23d::/48"]
    with pytest.raises(ValueError, match="line 2"):
        parse_cidr_lines("91.108.56.0/22\n<html>captive portal</html>\n")


def test_parse_ms365_takes_skype_ids_11_and_12():
    assert sorted(map(str, parse_ms365(MS365))) == sorted(
        ["52.112.0.0/14", "52.122.0.0/15", "2603:1063::/38", "52.112.0.0/14", "52.123.0.0/16"])
    with pytest.raises(ValueError):
        parse_ms365(json.dumps([{"id": 1, "serviceArea": "Exchange"}]))
    with pytest.raises(ValueError):
        parse_ms365("{}")


def test_parse_google():
    assert [str(n) for n in parse_google(GOOG)] == ["74.125.0.0/16", "2001:4860::/32"]
    with pytest.raises(ValueError):
        parse_google("[]")


def test_parse_html_section_only():
    nets = [str(n) for n in parse_html(WEBEX, "IP subnets for Webex media services")]
    assert nets == ["62.109.192.0/18", "20.50.235.0/24", "163.129.0.0/17", "2402:2500::/34", "2a00:a640::/34"]
    with pytest.raises(ValueError, match="not found"):
        parse_html("<html></html>", "IP subnets for Webex media services")


def test_parse_html_prose_when_no_tables():
    assert [str(n) for n in parse_html(SLACK)] == ["99.77.128.0/18"]


def test_parser_for_urls():
    assert parser_for("https://core.telegram.org/resources/cidr.txt") is parse_cidr_lines
    assert parser_for("https://assets.zoom.us/docs/ipranges/ZoomMeetings-IPv6.txt") is parse_cidr_lines
    assert parser_for("https://endpoints.office.com/endpoints/worldwide") is parse_ms365
    assert parser_for("https://www.gstatic.com/ipranges/goog.json") is parse_google
    assert parser_for("https://slack.com/help/articles/36284146785427") is parse_html
    webex = parser_for("https://help.webex.com/en-us/article/WBX000028782")
    assert [str(n) for n in webex(WEBEX)][0] == "62.109.192.0/18"


def test_request_url_adds_client_request_id():
    guid = "6c9a2b1e-0000-4000-8000-000000000001"
    assert request_url("https://endpoints.office.com/endpoints/worldwide", guid) == \
        f"https://endpoints.office.com/endpoints/worldwide?clientrequestid={guid}"
    assert request_url("https://endpoints.office.com/endpoints/worldwide?ServiceAreas=Skype", guid).endswith(
        f"?ServiceAreas=Skype&clientrequestid={guid}")
    assert request_url("https://endpoints.office.com/x?clientrequestid=abc", guid).endswith("=abc")
    assert request_url("https://core.telegram.org/resources/cidr.txt", guid) == "https://core.telegram.org/resources/cidr.txt"


def test_fetch_prefixes_drops_non_global_and_duplicates():
    body = b"10.0.0.0/8\n192.0.2.0/24\n91.108.4.0/22\n91.108.4.0/22\n2001:db8::/32\n2a0a:f280::/32\n"
    nets = fetch_prefixes("https://x.example/list.txt", lambda url: body)
    assert [str(n) for n in nets] == ["91.108.4.0/22", "2a0a:f280::/32"]
    with pytest.raises(UpdateError, match=r"^https://x.example/list.txt: no prefixes found"):
        fetch_prefixes("https://x.example/list.txt", lambda url: b"10.0.0.0/8\n")
    with pytest.raises(UpdateError, match=r"^https://x.example/list.txt: cannot parse: line 1"):
        fetch_prefixes("https://x.example/list.txt", lambda url: b"<html>")


class FakeWeb:
    def __init__(self, pages):
        self.pages = pages
        self.calls = []

    def __call__(self, url):
        self.calls.append(url)
        for prefix, body in self.pages.items():
            if url.startswith(prefix):
                return body.encode()
        raise UpdateError(url, "cannot connect (offline)")


def test_update_catalogue(tmp_path):
    shipped = load_catalogue()
    web = FakeWeb({
        "https://core.telegram.org/resources/cidr.txt": TELEGRAM,
        "https://endpoints.office.com/endpoints/worldwide?clientrequestid=": MS365,
        "https://help.webex.com/": WEBEX,
        "https://slack.com/": SLACK,
        # Zoom: only some files reachable -> the service keeps its snapshot.
        "https://assets.zoom.us/docs/ipranges/Zoom.txt": "3.7.35.0/25\n",
    })
    out = tmp_path / "sub" / "catalogue.toml"
    report = update_catalogue(shipped, str(out), fetch=web, today=dt.date(2026, 12, 1),
                              client_request_id="guid-1")
    status = {s.id: (s.status, s.prefixes, s.previous) for s in report.services}
    assert status == {
        "telegram": ("fetched", 4, 14), "teams": ("fetched", 4, 4), "zoom": ("failed", 0, 0),
        "webex": ("fetched", 5, 35), "meet": ("failed", 6, 6), "slack": ("fetched", 1, 1)}
    assert [s.id for s in report.failed] == ["zoom", "meet"]
    assert "https://assets.zoom.us/docs/ipranges/ZoomMeetings.txt" in report.failed[0].error
    assert any(line.startswith("zoom: FAILED, kept 0 prefixes") for line in report.lines())
    assert len(web.calls) == len(set(web.calls))  # one attempt per URL

    updated = load_catalogue(str(out))
    assert updated.fetched == "2026-12-01" and updated.snapshot == shipped.snapshot
    tg = updated.by_id["telegram"]
    assert tg.prefixes == ("91.108.4.0/22", "91.108.56.0/22", "149.154.160.0/20", "2001:b28:f23d::/48")
    assert tg.prefixes_date == "2026-12-01"
    assert updated.by_id["teams"].prefixes == (
        "52.112.0.0/14", "52.122.0.0/15", "52.123.0.0/16", "2603:1063::/38")
    assert updated.by_id["meet"].prefixes == shipped.by_id["meet"].prefixes
    assert updated.by_id["meet"].prefixes_date is None
    for before, after in zip(shipped.services, updated.services, strict=True):
        for key in ("id", "ports", "shared_ports", "prefix_sources", "app_names", "notes"):
            assert getattr(before, key) == getattr(after, key)


def test_offline_update_raises_and_writes_nothing(tmp_path):
    out = tmp_path / "catalogue.toml"
    with pytest.raises(UpdateError) as info:
        update_catalogue(load_catalogue(), str(out), fetch=FakeWeb({}), today=dt.date(2026, 12, 1))
    assert str(info.value).startswith("https://core.telegram.org/resources/cidr.txt: cannot connect")
    assert info.value.report is not None and not info.value.report.services[0].status == "fetched"
    assert not out.exists()


def test_default_fetch_errors_name_the_url():
    with pytest.raises(UpdateError, match=r"^file:///etc/passwd: only http and https"):
        default_fetch("file:///etc/passwd")
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/cidr.txt"
    with pytest.raises(UpdateError, match=rf"^{url}: cannot connect"):
        default_fetch(url, timeout=2)
