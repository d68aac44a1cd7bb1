"""Item 4 of issue 17: time buckets (`--by minute|hour|day`, alone or with other keys) and the
share of each row in `top`."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from tests.cli.conftest import ROWS, imflow, sums

WIDTH = {"minute": 60, "hour": 3600, "day": 86400}


def iso(t: int) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def top(site, *args):
    p = imflow("top", "--config", str(site["config"]), "--since", "6h", "--format", "json", "--limit", "0",
               *args, cwd=site["cwd"])
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


@pytest.mark.parametrize("bucket", ["minute", "hour", "day"])
def test_time_buckets_alone(site, bucket):
    w = WIDTH[bucket]
    want = sums(ROWS, lambda r: iso(r.bin - r.bin % w))
    got = top(site, "--by", bucket)
    assert {r[bucket]: r["bytes"] for r in got} == {k: c["bytes"] for k, c in want.items()}
    assert [r[bucket] for r in got] == sorted(r[bucket] for r in got)  # in time order
    assert sum(r["share_pct"] for r in got) == pytest.approx(100.0)


def test_time_bucket_with_other_keys_and_limit_per_bucket(site):
    want = sums(ROWS, lambda r: (iso(r.bin - r.bin % 3600), r.service))
    got = top(site, "--by", "hour,service")
    assert {(r["hour"], r["service"]): (r["bytes"], r["packets"], r["flows"]) for r in got} == {
        k: (c["bytes"], c["packets"], c["flows"]) for k, c in want.items()}
    hours = {h for h, _ in want}
    for h in hours:  # share: of the same hour's total
        total = sum(c["bytes"] for (hh, _), c in want.items() if hh == h)
        for r in got:
            if r["hour"] == h:
                assert r["share_pct"] == pytest.approx(100.0 * r["bytes"] / total)
    limited = top(site, "--by", "day,service", "--limit", "2")
    days = sums(ROWS, lambda r: (iso(r.bin - r.bin % 86400), r.service))
    for d in {d for d, _ in days}:
        best = sorted(((c["bytes"], s) for (dd, s), c in days.items() if dd == d), reverse=True)[:2]
        assert [(r["bytes"], r["service"]) for r in limited if r["day"] == d] == best


def test_share_is_of_the_whole_selection_not_of_the_rows_shown(site):
    want = sums([r for r in ROWS if r.category != "other"], lambda r: r.host)
    total = sum(c["bytes"] for c in want.values())
    got = top(site, "--by", "host", "--category", "p2p", "--category", "im", "--category", "voip",
              "--limit", "1")
    assert len(got) == 1
    best = max(want, key=lambda h: want[h]["bytes"])
    assert got[0]["host"] == best
    assert got[0]["share_pct"] == pytest.approx(100.0 * want[best]["bytes"] / total)
    table = imflow("top", "--config", str(site["config"]), "--since", "6h", "--by", "service",
                   cwd=site["cwd"]).stdout
    assert "share" in table.splitlines()[0] and "%" in table.splitlines()[2]


def test_table_shows_buckets_in_utc(site):
    p = imflow("top", "--config", str(site["config"]), "--since", "6h", "--by", "hour", cwd=site["cwd"])
    assert p.returncode == 0, p.stderr
    first = min(r.bin - r.bin % 3600 for r in ROWS)
    assert "hour (UTC)" in p.stdout.splitlines()[0]
    assert datetime.fromtimestamp(first, timezone.utc).strftime("%Y-%m-%d %H:%M") in p.stdout


def test_time_buckets_alone_keep_the_latest(site):
    want = sorted({r.bin - r.bin % 3600 for r in ROWS})[-2:]
    got = top(site, "--by", "hour", "--limit", "2")
    assert [r["hour"] for r in got] == [iso(t) for t in want]
