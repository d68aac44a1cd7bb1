"""CSV and JSON parse back to the numbers of the rows written."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math

import pytest

from collector import report
from collector.policy.hostnames import HostNames
from tests.report.conftest import END, NOW, START
from tests.report.expect import per_key, report_rows


@pytest.fixture(scope="module")
def built(db, catalogue, policy, host_map):
    return report.build(db, START, END, catalogue, policy, HostNames(host_map), now=NOW)


def _ts(text: str) -> int:
    return int(dt.datetime.strptime(text, "%Y-%m-%d %H:%M:%S UTC").replace(tzinfo=dt.UTC).timestamp())


def test_csv_one_row_per_category_service_host(built, rows):
    lines = list(csv.DictReader(io.StringIO(report.render_csv(built))))
    assert tuple(lines[0]) == report.CSV_COLUMNS
    want = per_key(rows, lambda r: (r.category, r.service, r.host))
    got = {(x["category"], x["service"], x["host"]): x for x in lines}
    assert len(got) == len(lines) == len(want)
    total = sum(r.bytes for r in rows)
    for key, w in want.items():
        x = got[key]
        assert (int(x["bytes"]), int(x["packets"]), int(x["flows"])) == (w["bytes"], w["packets"], w["flows"])
        assert (_ts(x["first_seen"]), _ts(x["last_seen"])) == (w["first_seen"], w["last_seen"])
        assert x["violation"] == ("yes" if w["violation"] and key[2] else "no")
        assert math.isclose(float(x["share_pct"]), 100 * w["bytes"] / total, abs_tol=1e-4)
    assert sum(int(x["bytes"]) for x in lines) == total
    assert math.isclose(sum(float(x["share_pct"]) for x in lines), 100.0, abs_tol=0.01)
    assert got[("p2p", "bittorrent", "10.1.2.15")]["host_name"] == "build-server-3"
    assert got[("p2p", "bittorrent", "10.1.2.15")]["policy"] == "allow"


def test_csv_keeps_names_out_of_formulas(built):
    patched = json.loads(report.render_json(built))
    patched["categories"][0]["services"][0]["hosts"][0]["owner"] = "=HYPERLINK(\"x\")"
    (line,) = [x for x in csv.DictReader(io.StringIO(report.render_csv(patched))) if x["host_owner"].startswith("'")]
    assert line["host_owner"] == "'=HYPERLINK(\"x\")"


def test_json_round_trip(built, rows):
    back = json.loads(report.render_json(built))
    assert back == json.loads(json.dumps(built))  # plain data: nothing lost on the way
    assert back["format_version"] == report.FORMAT_VERSION
    want = per_key(rows, lambda r: (r.category, r.service, r.host))
    got = report_rows(back)
    for key, w in want.items():
        assert {k: got[key][k] for k in ("bytes", "packets", "flows", "first_seen", "last_seen")} == \
            {k: w[k] for k in ("bytes", "packets", "flows", "first_seen", "last_seen")}
    assert back["totals"]["bytes"] == sum(r.bytes for r in rows)
    assert math.isclose(sum(c["share_pct"] for c in back["categories"]), 100.0)
