"""The report's top peer networks, from the flow audit log: the networks and their totals are
summed here with `ipaddress` from the audit rows written; hostile names in the log cannot
break the HTML; a database without audit flows for the period gets the note instead."""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections import Counter

import pytest

from collector import report
from collector.report.build import PEER_NETWORKS
from collector.store import BinRow, Store
from collector.store.rows import AuditRow
from tests.store.test_audit import make_rows

NOW = time.time()
T0 = NOW - 3 * 3600


@pytest.fixture(scope="module")
def db(tmp_path_factory, catalogue):
    path = str(tmp_path_factory.mktemp("peers") / "imflow.db")
    audit = make_rows(3000, seed=9, t0=T0)
    audit.append(AuditRow(T0 + 5, T0 + 6, "192.0.2.1", "10.0.0.9", "203.0.113.250", 1, 2, 6,
                          "<script>x</script>", "im", 10**12, 1, 0, 0, "out"))  # the biggest, hostile name

    async def go():
        s = Store(path)
        await s.start()
        await s.write([BinRow(int(T0) // 60 * 60, "192.0.2.1", "msn", "im", "10.0.0.9", 500, 5, 1)], [], audit)
        await s.stop()
    asyncio.run(go())
    return path, audit


def test_top_peer_networks_are_the_audit_logs_sums(db, catalogue):
    path, audit = db
    built = report.build(path, T0 - 60, NOW, catalogue, None, now=NOW)
    want: Counter = Counter()
    hosts: dict[str, set] = {}
    for r in audit:
        net = str(ipaddress.ip_network(f"{r.peer}/{24 if '.' in r.peer else 48}", strict=False))
        want[net] += r.bytes
        hosts.setdefault(net, set()).add(r.host)
    top = want.most_common(PEER_NETWORKS)
    got = built["peer_networks"]
    assert [(n["network"], n["bytes"]) for n in got] == top
    assert all(n["internal_hosts"] == len(hosts[n["network"]]) for n in got)
    assert got[0]["network"] == "203.0.113.0/24"
    assert sum(n["share_pct"] for n in got) == pytest.approx(100.0 * sum(b for _, b in top) / sum(want.values()))
    assert any(n.startswith("Top peer networks") for n in built["notes"])
    html = report.render_html(built)
    assert "<h2>Top peer networks</h2>" in html and "<code>203.0.113.0/24</code>" in html
    assert "<script>" not in html


def test_no_audit_flows_in_the_period_gives_the_note(db, catalogue):
    path, _ = db
    built = report.build(path, NOW - 7 * 86400, NOW - 6 * 86400, catalogue, None, now=NOW)
    assert built["peer_networks"] == []
    assert any("Peer networks are not in this report" in n for n in built["notes"])
    assert "Top peer networks</h2>" not in report.render_html(built)
