"""report.build against a real database: totals, shares, first/last seen and policy status,
each compared with sums computed here from the rows that were written."""

from __future__ import annotations

import asyncio
import math

import pytest

from collector import __version__, report
from collector.policy.hostnames import HostNames
from collector.policy import parse_policy
from collector.store import BinRow, Store, StoreError
from tests.report.conftest import END, NOW, OLD_VIOLATION, START, T0
from tests.report.expect import HOUR, per_key, report_rows


@pytest.fixture(scope="module")
def built(db, catalogue, policy, host_map):
    return report.build(db, START, END, catalogue, policy, HostNames(host_map), now=NOW)


def test_header(built, db, catalogue, host_map):
    assert built["imflow_version"] == __version__
    assert built["database"] == db
    assert built["generated"] == "2026-01-08 00:00:00 UTC"
    assert built["period"]["start"] == START and built["period"]["end"] == END
    assert (built["period"]["resolution"], built["period"]["bin_seconds"]) == ("hour", HOUR)
    assert built["catalogue"]["snapshot"] == catalogue.snapshot
    assert built["names"] == {"host_map": host_map, "reverse_dns": False}
    pol = built["policy"]
    assert pol["default"] == "monitor" and pol["categories"] == {"p2p": "block"}
    assert pol["services"] == {"msn": "block"}
    assert set(pol["blocked_services"]) == {s.id for s in catalogue.services if s.category == "p2p"} | {"msn"}
    assert pol["exceptions"] == [{"key": "policy.exceptions[0]", "target": "bittorrent", "service": "bittorrent",
                                  "category": None, "hosts": ["10.1.2.0/24"], "action": "allow",
                                  "note": "release mirrors"}]
    assert any("Peer networks are not in this report" in n for n in built["notes"])


def test_totals_per_category_service_host(built, rows, policy):
    want = per_key(rows, lambda r: (r.category, r.service, r.host))
    got = report_rows(built)
    assert set(got) == set(want)
    for key, w in want.items():
        g = got[key]
        assert (g["bytes"], g["packets"], g["flows"]) == (w["bytes"], w["packets"], w["flows"]), key
        assert (g["first_seen"], g["last_seen"]) == (w["first_seen"], w["last_seen"]), key
        if key[2]:  # recorded at ingest is history; the violation is judged by today's policy
            assert g["recorded_violation"] == w["violation"], key
            assert g["violation"] == (policy.action(key[1], key[2]) == "block"), key

    services = per_key(rows, lambda r: (r.category, r.service))
    categories = per_key(rows, lambda r: r.category)
    for c in built["categories"]:
        if c["id"] in categories:
            assert (c["bytes"], c["packets"], c["flows"]) == tuple(categories[c["id"]][k]
                                                                   for k in ("bytes", "packets", "flows"))
        else:
            assert c["bytes"] == 0 and not c["services"]
        assert c["internal_hosts"] == len({r.host for r in rows if r.category == c["id"] and r.host})
        for s in c["services"]:
            w = services[(c["id"], s["id"])]
            assert (s["bytes"], s["packets"], s["flows"]) == (w["bytes"], w["packets"], w["flows"])
            assert (s["first_seen"], s["last_seen"]) == (w["first_seen"], w["last_seen"])
            assert s["internal_hosts"] == len({r.host for r in rows if r.service == s["id"] and r.host})
            assert [h["bytes"] for h in s["hosts"]] == sorted((h["bytes"] for h in s["hosts"]), reverse=True)

    t = built["totals"]
    assert (t["bytes"], t["packets"], t["flows"]) == (sum(r.bytes for r in rows), sum(r.packets for r in rows),
                                                      sum(r.flows for r in rows))
    assert t["internal_hosts"] == len({r.host for r in rows if r.host})
    hosts = per_key([r for r in rows if r.host], lambda r: r.host)
    assert {h["host"]: h["bytes"] for h in built["hosts"]} == {k: v["bytes"] for k, v in hosts.items()}


def test_shares_add_up(built, rows):
    total = sum(r.bytes for r in rows)
    assert math.isclose(sum(c["share_pct"] for c in built["categories"]), 100.0)
    assert math.isclose(sum(s["share_pct"] for c in built["categories"] for s in c["services"]), 100.0)
    other = sum(r.bytes for r in rows if r.category == "other")
    assert math.isclose(next(c for c in built["categories"] if c["id"] == "other")["share_pct"], 100 * other / total)
    for c in built["categories"]:
        for s in c["services"]:
            inside = sum(h["share_of_service_pct"] for h in s["hosts"])
            assert math.isclose(inside + 100 * s["no_internal_host"]["bytes"] / s["bytes"], 100.0)
    # biggest category first, the unclassified rest last
    named = [c for c in built["categories"] if c["id"] != "other"]
    assert [c["bytes"] for c in named] == sorted((c["bytes"] for c in named), reverse=True)
    assert built["categories"][-1]["id"] == "other"


def test_policy_status(built, policy):
    got = report_rows(built)
    assert got[("p2p", "bittorrent", "10.1.2.15")]["policy"] == "allow"  # the release-mirror exception
    assert got[("p2p", "bittorrent", "fd00::5")]["policy"] == "block"
    assert got[("p2p", "edonkey", "10.1.2.15")]["policy"] == "block"  # the exception names bittorrent only
    assert got[("im", "msn", "10.1.5.33")]["policy"] == "block"
    assert got[("voip", "sip", "10.9.9.9")]["policy"] == "monitor"
    assert got[("other", "other", "10.9.9.9")]["policy"] == "allow"
    for (category, sid, host), h in got.items():
        if host:
            assert h["policy"] == policy.action(sid, host)
    # recorded under an older policy: a violation then, history now (xmpp is only monitored today)
    old = got[("im", OLD_VIOLATION[1], OLD_VIOLATION[0])]
    assert old["recorded_violation"] and not old["violation"] and old["policy"] == "monitor"
    services = {s["id"]: s for c in built["categories"] for s in c["services"]}
    assert services["bittorrent"]["policy"] == "block" and services["bittorrent"]["violation"]
    assert services["bittorrent"]["exceptions"][0]["hosts"] == ["10.1.2.0/24"]
    assert services["zoom"]["policy"] == "monitor" and not services["zoom"]["violation"]
    cats = {c["id"]: c for c in built["categories"]}
    assert cats["p2p"]["policy"] == "block" and cats["im"]["policy_overrides"] == {"msn": "block"}
    want = sorted((h, s) for (c, s, h), e in got.items() if h and policy.action(s, h) == "block")
    assert sorted((v["host"], v["service"]) for v in built["violations"]) == want
    assert built["totals"]["violations"] == len(want)
    assert built["totals"]["violating_hosts"] == len({h for h, _ in want})


def test_names(built):
    got = report_rows(built)
    assert (got[("p2p", "bittorrent", "10.1.2.15")]["name"], got[("p2p", "bittorrent", "10.1.2.15")]["owner"]) \
        == ("build-server-3", "release team")
    assert (got[("p2p", "bittorrent", "10.1.2.20")]["name"], got[("p2p", "bittorrent", "10.1.2.20")]["owner"]) \
        == ("", "engineering")
    assert got[("im", "msn", "10.1.5.33")]["name"] == "guest wifi"
    assert (got[("voip", "sip", "fd00::5")]["name"], got[("voip", "sip", "fd00::5")]["owner"]) == ("", "")


def test_daily_sums_to_totals(built, rows):
    assert [d["day"] for d in built["daily"]] == [f"2026-01-0{i}" for i in range(1, 8)]
    per_day = per_key(rows, lambda r: (r.bin - r.bin % 86400, r.category))
    for d in built["daily"]:
        assert d["bytes"] == {c: v["bytes"] for (day, c), v in per_day.items() if day == d["start"]}


def test_without_names_and_policy(db, catalogue):
    built = report.build(db, None, None, catalogue, None, None, now=NOW)
    assert all(h["name"] == "" and h["owner"] == "" for h in built["hosts"])
    assert built["policy"]["default"] == "monitor" and built["policy"]["blocked_services"] == []
    assert built["period"]["start"] is None and built["period"]["data_first"] <= START + 3600


def test_period_filters_and_edges(tmp_path, catalogue, policy):
    path = str(tmp_path / "edges.db")
    rows = [BinRow(T0 + 60 * m, "192.0.2.1", "sip", "voip", "10.0.0.1", 1000 + m, 1, 1) for m in range(180)]

    async def write():
        store = Store(path, clock=lambda: T0 + 3 * 3600)
        await store.start()
        await store.write(rows)
        await store.stop()
    asyncio.run(write())
    # within the minute table's reach: exact minute edges
    built = report.build(path, T0 + 600, T0 + 1200, catalogue, policy, None, now=T0 + 3 * 3600)
    assert built["period"]["resolution"] == "minute"
    assert built["totals"]["bytes"] == sum(r.bytes for r in rows if T0 + 600 <= r.bin < T0 + 1200)
    (h,) = built["categories"][0]["services"][0]["hosts"]
    assert (h["first_seen"], h["last_seen"]) == (T0 + 600, T0 + 1200)
    # nothing in the period: an empty report, not an error
    empty = report.build(path, T0 - 86400, T0 - 3600, catalogue, policy, None, now=T0 + 3 * 3600)
    assert empty["totals"]["bytes"] == 0 and empty["hosts"] == [] and empty["daily"] == []
    assert all(c["share_pct"] == 0 for c in empty["categories"])
    assert "no traffic recorded" in report.render_html(empty)
    assert report.render_csv(empty).count("\n") == 1


def test_missing_database(tmp_path, catalogue, policy):
    with pytest.raises(StoreError, match="no database"):
        report.build(str(tmp_path / "nope.db"), None, None, catalogue, policy, None, now=NOW)


def test_service_the_catalogue_no_longer_has(tmp_path, catalogue):
    path = str(tmp_path / "old.db")

    async def write():
        store = Store(path, clock=lambda: NOW)
        await store.start()
        await store.write([BinRow(NOW - 600, "192.0.2.1", "napster", "p2p", "10.0.0.7", 5000, 5, 1, True)])
        await store.stop()
    asyncio.run(write())
    built = report.build(path, None, None, catalogue, parse_policy({"default": "block"}, catalogue), None, now=NOW)
    (svc,) = next(c for c in built["categories"] if c["id"] == "p2p")["services"]
    assert (svc["id"], svc["name"], svc["policy"]) == ("napster", "napster", "unknown")
    # not judged now (no policy knows the service), recorded at ingest
    assert svc["hosts"][0]["policy"] == "unknown" and not svc["hosts"][0]["violation"]
    assert svc["hosts"][0]["recorded_violation"]
