"""`imflow top` output (`report.tables.render`): an aligned table with human and exact bytes and
a total, JSON, CSV."""

from __future__ import annotations

import csv
import io
import json

import pytest

from collector.report.tables import human_bytes, render

ROWS = [{"host": "10.0.0.1", "service": "bittorrent", "bytes": 1_234_567_890, "packets": 1_000_000, "flows": 42},
        {"host": "", "service": "msn", "bytes": 999, "packets": 3, "flows": 1}]


def test_table_is_aligned_with_human_and_exact_bytes_and_a_total():
    text = render(ROWS, ("host", "service"), "table")
    lines = text.splitlines()
    assert lines[0].split() == ["host", "service", "traffic", "bytes", "packets", "flows"]
    assert "1.2 GB" in lines[2] and "1,234,567,890" in lines[2]
    assert "(none)" in lines[3] and "999 B" in lines[3]
    assert lines[-1].startswith("total (2 rows)") and "1,234,568,889" in lines[-1]
    # right-aligned numbers: every line (but the rules) ends at the same column
    assert len({len(line) for line in lines}) == 1


def test_json_keeps_exact_integers_and_key_order():
    data = json.loads(render(ROWS, ("service", "host"), "json"))
    assert data == [{k: r[k] for k in ("service", "host", "bytes", "packets", "flows")} for r in ROWS]
    assert list(data[0]) == ["service", "host", "bytes", "packets", "flows"]


def test_csv_has_a_header_then_rows():
    data = list(csv.reader(io.StringIO(render(ROWS, ("host", "service"), "csv"))))
    assert data == [["host", "service", "bytes", "packets", "flows"],
                    ["10.0.0.1", "bittorrent", "1234567890", "1000000", "42"], ["", "msn", "999", "3", "1"]]


def test_empty_results():
    assert render([], ("service",), "json") == "[]\n"
    assert render([], ("service",), "csv") == "service,bytes,packets,flows\n"
    assert "total (0 rows)" in render([], ("service",), "table")


def test_unknown_format():
    with pytest.raises(ValueError, match="table, json or csv"):
        render(ROWS, ("host",), "xml")


@pytest.mark.parametrize("n, text", [(0, "0 B"), (999, "999 B"), (1000, "1.0 kB"), (1_234_567, "1.2 MB"),
                                     (5 * 10**12, "5.0 TB")])
def test_human_bytes(n, text):
    assert human_bytes(n) == text


HOSTILE = [{"interface": "=cmd|' /C calc'!A0", "bytes": 3, "packets": 1, "flows": 1},
           {"interface": "eth0\x1b]0;pwned\x07\nforged", "bytes": 2, "packets": 1, "flows": 1}]


def test_table_escapes_names_one_line_per_row():
    lines = render(HOSTILE, ("interface",), "table").splitlines()
    assert len(lines) == 4 + len(HOSTILE)
    assert lines[3].startswith("eth0\\x1b]0;pwned\\x07\\nforged")
    assert not any(c in "".join(lines) for c in "\x1b\x07\r")


def test_csv_neutralises_formula_names():
    data = list(csv.reader(io.StringIO(render(HOSTILE, ("interface",), "csv"))))
    assert [r[0] for r in data[1:]] == ["'=cmd|' /C calc'!A0", "eth0\\x1b]0;pwned\\x07\\nforged"]
