"""The web page in headless Chromium, served by `imflow web` from a database of known rows:
every page renders without horizontal overflow at 1280 and 390 px, its numbers equal `imflow
top` / `imflow violations` run as commands on the same database and period, and the sums of
the rows the test wrote; links and the filter form lead where they say."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import urllib.request
from collections import Counter

import pytest

from collector.text import printable
from tests.report import png
from tests.web.conftest import HOSTILE_SERVICE

PERIOD = ["--from", "2026-01-01", "--to", "2026-01-08"]
Q = "?from=2026-01-01&to=2026-01-08"
PAGES = {"overview": "/", "hosts": "/hosts", "services": "/services", "violations": "/violations",
         "exporters": "/exporters", "host": "/host/10.1.2.15", "host6": "/host/fd00::5",
         "service": "/service/bittorrent", "report": "/report"}


def cli(config, db, *args) -> list[dict]:
    out = subprocess.run([sys.executable, "-m", "collector", *args, "--db", db, "--config", str(config), *PERIOD,
                          "--format", "json"], check=False, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def table(browser, tid: str) -> list[dict]:
    """A table of the page as the browser shows it: header labels -> cell texts."""
    return browser.eval(f"""(() => {{
        const t = document.getElementById({json.dumps(tid)});
        const head = [...t.tHead.rows[0].cells].map(c => c.textContent.trim());
        return [...t.tBodies[0].rows].map(r => Object.fromEntries([...r.cells].map((c, i) => [head[i], c.textContent.trim()])));
    }})()""")


def num(text: str) -> int:
    return int(text.replace(",", ""))


def download(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as r:
        return r.read().decode()


@pytest.mark.parametrize("width", [1280, 390])
def test_every_page_renders_without_overflow(server, browser, tmp_path, width):
    browser.size(width, 900, mobile=width < 600)
    for name, path in PAGES.items():
        browser.open(server.url + path + Q)
        assert browser.eval("document.scripts.length") == 0, name  # nothing runs: JavaScript off changes nothing
        assert browser.overflow() == 0, f"{name} at {width} px is wider than the window"
        if name != "report":
            assert browser.eval("document.querySelector('h1').textContent"), name
            assert browser.eval("document.querySelectorAll('table caption').length") >= 1, name
        shot = browser.screenshot(tmp_path / f"{name}-{width}.png")
        pixels = png.read(shot)
        assert pixels.shape[1] == width, name  # the screenshot is as wide as the window: nothing sticks out
        assert png.non_white(pixels) > pixels.shape[0] * pixels.shape[1] * 0.02, f"{name}: blank"
    errors = [e for e in browser.events if e.get("method") == "Runtime.exceptionThrown"]
    assert errors == []


def test_overview_equals_imflow_top_and_the_rows_written(server, browser, web_db, web_rows, tmp_path):
    config = server.proc.args[server.proc.args.index("--config") + 1]
    browser.size(1280)
    browser.open(server.url + "/" + Q)
    shown = {r["Category"]: num(r["Bytes"]) for r in table(browser, "categories")}
    names = {"im": "Instant messaging", "p2p": "Peer-to-peer file sharing", "voip": "Voice over IP",
             "collab": "Collaboration and meetings", "other": "Other (unclassified)"}
    top = {names.get(r["category"], r["category"]): r["bytes"] for r in cli(config, web_db, "top", "--by", "category",
                                                                            "--limit", "0")}
    truth = Counter()
    for r in web_rows:
        truth[names.get(r.category, r.category)] += r.bytes
    assert shown == top == dict(truth)
    hosts = {r["Host"]: num(r["Bytes"]) for r in table(browser, "hosts")}
    top_hosts = cli(config, web_db, "top", "--by", "host", "--limit", "10")
    assert hosts == {(r["host"] or "(no internal host)"): r["bytes"] for r in top_hosts}
    services = [(r["Service"], num(r["Bytes"]), r["Share"]) for r in table(browser, "services")]
    top_services = cli(config, web_db, "top", "--by", "category,service", "--limit", "10")
    assert services == [(printable(r["service"]), r["bytes"], f"{r['share_pct']:.1f} %") for r in top_services]


@pytest.mark.parametrize("path, args, key, label", [
    ("/hosts", ("--by", "host"), "host", "Host"),
    ("/services", ("--by", "category,service"), "service", "Service"),
    ("/host/10.1.2.15", ("--by", "service", "--host", "10.1.2.15"), "service", "Service"),
    ("/host/fd00::5", ("--by", "service", "--host", "fd00::5"), "service", "Service"),
    ("/service/bittorrent", ("--by", "host", "--service", "bittorrent"), "host", "Host"),
    ("/exporters", ("--by", "exporter"), "exporter", "Exporter"),
])
def test_tables_equal_imflow_top(server, browser, web_db, path, args, key, label):
    config = server.proc.args[server.proc.args.index("--config") + 1]
    browser.size(1280)
    browser.open(server.url + path + Q)
    tid = {"Host": "hosts", "Service": "services", "Exporter": "exporters"}[label]
    shown = {r[label]: (num(r["Bytes"]), num(r["Packets"]), num(r["Flows"])) for r in table(browser, tid)}
    top = cli(config, web_db, "top", *args, "--limit", "0")
    want = {(printable(r[key]) or "(no internal host)"): (r["bytes"], r["packets"], r["flows"]) for r in top}
    if path.startswith("/host/"):
        want.pop("(no internal host)", None)
    assert shown == want and shown


def test_interfaces_equal_imflow_top(server, browser, web_db):
    config = server.proc.args[server.proc.args.index("--config") + 1]
    browser.size(1280)
    browser.open(server.url + "/exporters" + Q)
    rows = json.loads(download(server.url + "/exporters" + Q + "&table=interfaces&format=json"))
    top = cli(config, web_db, "top", "--by", "exporter,interface,direction", "--limit", "0")
    assert [(r["exporter"], r["interface"], r["direction"], r["bytes"]) for r in rows] == \
        [(r["exporter"], r["interface"], r["direction"], r["bytes"]) for r in top]
    shown = table(browser, "interfaces")
    assert [num(r["Bytes"]) for r in shown] == [r["bytes"] for r in top]


def test_violations_equal_imflow_violations(server, browser, web_db):
    config = server.proc.args[server.proc.args.index("--config") + 1]
    browser.size(1280)
    browser.open(server.url + "/violations" + Q)
    shown = sorted((r["Host"], r["Service"], num(r["Bytes"])) for r in table(browser, "violations"))
    want = sorted((r["host"], r["service"], r["bytes"]) for r in cli(config, web_db, "violations"))
    assert shown == want and len(shown) >= 5
    browser.open(server.url + "/violations" + Q + "&recorded=1")
    shown = sorted((r["Host"], r["Service"]) for r in table(browser, "violations"))
    want = sorted((r["host"], r["service"]) for r in cli(config, web_db, "violations", "--recorded"))
    assert shown == want and ("10.9.9.9", "xmpp") in shown  # recorded under an earlier policy


def test_links_keep_the_period_and_lead_to_their_page(server, browser):
    browser.size(1280)
    browser.open(server.url + "/" + Q)
    browser.follow("#hosts tbody a")
    assert "/host/" in browser.url() and "from=2026-01-01" in browser.url() and "to=2026-01-08" in browser.url()
    host = browser.eval("document.querySelector('h1').textContent").removeprefix("Host ")
    browser.follow("#services tbody a")
    assert "/service/" in browser.url() and "from=2026-01-01" in browser.url()
    assert host in [r["Host"] for r in table(browser, "hosts")]  # the host we came from used it
    for label in ("Overview", "Hosts", "Services", "Violations", "Exporters"):
        browser.follow(f"nav a:nth-child({['Overview', 'Hosts', 'Services', 'Violations', 'Exporters'].index(label) + 1})")
        assert browser.eval("document.querySelector('h1').textContent").startswith(label.split()[0][:4]) or \
            label == "Exporters"
        assert "from=2026-01-01" in browser.url()
    browser.follow("nav a:nth-child(6)")  # the report, for the same period
    assert "Network usage audit" in browser.dom() and "2026-01-01 00:00 UTC" in browser.dom()


def test_the_filter_form_builds_a_shareable_url(server, browser, web_db):
    config = server.proc.args[server.proc.args.index("--config") + 1]
    browser.size(390, 900, mobile=True)
    browser.open(server.url + "/services" + Q)
    browser.eval("document.querySelector('input[name=category][value=p2p]').checked = true")
    browser.eval("document.querySelector('input[name=host]').value = '10.1.2.0/24'")
    browser.follow("form.period button")
    url = browser.url()
    assert "category=p2p" in url and "host=10.1.2.0%2F24" in url and "from=2026-01-01" in url
    shown = {r["Service"]: num(r["Bytes"]) for r in table(browser, "services")}
    top = cli(config, web_db, "top", "--by", "service", "--category", "p2p", "--host", "10.1.2.0/24", "--limit", "0")
    assert top
    assert shown == {r["service"]: r["bytes"] for r in top} and set(shown) == {"bittorrent", "edonkey"}
    browser.open(url)  # the same URL opened again (a shared link) shows the same
    assert {r["Service"]: num(r["Bytes"]) for r in table(browser, "services")} == shown
    assert browser.eval("document.querySelector('input[name=category][value=p2p]').checked") is True


def test_every_table_downloads_as_csv_and_json(server, browser):
    browser.size(1280)
    for path in ("/", "/hosts", "/services", "/violations", "/exporters", "/host/10.1.2.15", "/service/bittorrent"):
        browser.open(server.url + path + Q)
        ids = browser.eval("[...document.querySelectorAll('table')].map(t => t.id)")
        links = browser.eval("[...document.querySelectorAll('h2 .dl a')].map(a => a.href)")
        assert len(links) == 2 * len(ids), path
        for tid in ids:
            shown = table(browser, tid)
            csv_url = next(u for u in links if f"table={tid}&" in u and "format=csv" in u)
            json_url = next(u for u in links if f"table={tid}&" in u and "format=json" in u)
            rows = list(csv.DictReader(io.StringIO(download(csv_url))))
            data = json.loads(download(json_url))
            if shown and list(shown[0].values()) == ["no rows"]:
                shown = []
            assert len(rows) == len(data) == len(shown), (path, tid)
            if "bytes" in (rows[0] if rows else {}):
                assert [int(r["bytes"]) for r in rows] == [d["bytes"] for d in data] == \
                    [num(r["Bytes"]) for r in shown], (path, tid)


def test_hostile_service_is_reachable_by_its_link(server, browser):
    browser.size(1280)
    browser.open(server.url + "/services" + Q)
    hrefs = browser.eval("[...document.querySelectorAll('#services a')].map(a => a.href)")
    target = next(h for h in hrefs if "HYPERLINK" in urllib.parse.unquote(h))
    browser.open(target)
    assert browser.eval("document.querySelector('h1').textContent") == "Service " + printable(HOSTILE_SERVICE)
    assert [r["Host"] for r in table(browser, "hosts")] == ["10.66.6.6", "(no internal host)"]


import urllib.parse


def test_host_page_lists_its_latest_audit_log_flows(server, browser, web_db):
    from tests.web.conftest import audit_rows

    config = server.proc.args[server.proc.args.index("--config") + 1]
    browser.size(1280)
    browser.open(server.url + "/host/10.1.2.15" + Q)
    shown = [(r["Peer"], r["Peer port"], num(r["Bytes"])) for r in table(browser, "flows")]
    truth = sorted((a for a in audit_rows() if a.host == "10.1.2.15"), key=lambda a: -a.end)[:100]
    assert shown == [(a.peer, str(a.peer_port), a.bytes) for a in truth]
    # the same flows as imflow flows lists for the host from the earliest end among them
    out = subprocess.run([sys.executable, "-m", "collector", "flows", "--db", web_db, "--config", config,
                          "--host", "10.1.2.15", "--from", str(min(a.end for a in truth)), "--to", "2026-01-08",
                          "--limit", "0", "--format", "json"], check=False, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert sorted((f["peer"], f["bytes"]) for f in json.loads(out.stdout)) == sorted((a.peer, a.bytes) for a in truth)


def test_the_last_menu_replaces_typed_dates(server, browser):
    browser.size(1280)
    browser.open(server.url + "/hosts" + Q)
    assert browser.eval("document.querySelector('select[name=since]').value") == ""  # "from/to"
    browser.eval("document.querySelector('select[name=since]').value = '7d'")
    browser.follow("form.period button.last")
    assert "since=7d" in browser.url() and "use=last" in browser.url()
    assert browser.eval("document.querySelector('p.intro').textContent").endswith("the last 7d; \"(no internal host)\" "
                                                                                  "is traffic between two outside addresses.")
    assert browser.eval("document.querySelector('input[name=from]').value") == ""
    browser.eval("document.querySelector('input[name=from]').value = '2026-01-02'")
    browser.follow("form.period button.apply")  # typed dates win with Apply (and Enter)
    assert "from=2026-01-02" in browser.url()
    assert browser.eval("document.querySelector('p.intro').textContent").startswith("Internal hosts by bytes, 2026-01-02")
