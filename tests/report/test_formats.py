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
from collector.text import UNSAFE, printable
from tests.report.conftest import END, NOW, START
from tests.report.expect import per_key, report_rows


@pytest.fixture(scope="module")
def built(db, catalogue, policy, host_map):
    return report.build(db, START, END, catalogue, policy, HostNames(host_map), now=NOW)


def _ts(text: str) -> int:
    return int(dt.datetime.strptime(text, "%Y-%m-%d %H:%M:%S UTC").replace(tzinfo=dt.UTC).timestamp())


def test_csv_one_row_per_category_service_host(built, rows, policy):
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
        assert x["violation_at_ingest"] == ("yes" if w["violation"] and key[2] else "no")
        assert x["violation"] == ("yes" if key[2] and policy.action(key[1], key[2]) == "block" else "no")
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


HOSTILE = "\x1b]0;pwned\x07 x\ny\rz \x9b31m \u2028 \u202eevil"


def _hostile(built) -> dict:
    """The report as if reverse DNS had answered with control characters for one host."""
    patched = json.loads(report.render_json(built))
    host = patched["categories"][0]["services"][0]["hosts"][0]
    host["name"], host["owner"] = HOSTILE, "-" + HOSTILE
    return patched


def test_csv_escapes_control_characters_in_names(built):
    text = report.render_csv(_hostile(built))
    assert not UNSAFE.search(text.replace("\n", ""))
    lines = list(csv.DictReader(io.StringIO(text)))
    assert len(text.splitlines()) == len(lines) + 1  # no forged line
    (line,) = [x for x in lines if x["host_name"].startswith("\\x1b")]
    assert line["host_name"] == printable(HOSTILE)
    assert line["host_owner"] == "'-" + printable(HOSTILE)


def test_json_escapes_c1_and_separators_and_keeps_the_exact_value(built):
    patched = _hostile(built)
    text = report.render_json(patched)
    assert not UNSAFE.search(text.replace("\n", ""))
    assert json.loads(text) == patched
