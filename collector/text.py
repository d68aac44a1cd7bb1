"""Writing text that came from outside: one rule for every writer (docs/security.md, "Output escaping").

Interface and application names (exporter options data, SNMP ifName/ifAlias/sysName), host names
(reverse DNS, the hosts file) and config text are written by someone else. Whatever imflow prints,
logs or saves goes through one of these:

- `printable(value)`: tables, logs, firewall comments. Control characters (C0, DEL, C1),
  the Unicode line and paragraph separators, bidirectional overrides and lone surrogates become
  visible escapes (`\\x1b`, `\\n`, `\\u2028`), so nothing reaches a terminal that could retitle it,
  clear it, move the cursor or forge a line.
- `html_text(value)`: HTML, `printable` then the five characters `html.escape` replaces (quotes
  too), by one table: the `html` package would bring its 2,000-entry table of named references
  into every daemon (0.5 MiB resident) for this.
- `csv_cell(value)` / `csv_text(header, rows)`: CSV. A cell a spreadsheet would run as a formula
  (one starting with `=`, `+`, `-`, `@`, tab or CR) gets a leading `'`, as OWASP recommends
  against CSV injection; control characters are escaped as by `printable`.
- `json_text(obj)`: JSON. `json.dumps` escapes C0 itself; DEL, C1, U+2028/U+2029, bidi controls
  and lone surrogates are escaped here too (`\\u009b`), which JSON readers decode back to the
  exact value.
- `text_problem(text, limit)`: validating config text at load (no control character at all,
  at most `limit` characters); the caller raises its own error naming the key.
"""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterable
from typing import Any

# What config text may not hold (the catalogue's `CONTROL` is the same class).
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# What output escapes: CONTROL, plus what reorders a line on screen (bidi embeddings, overrides
# and isolates, "Trojan Source") and lone surrogates (not encodable as UTF-8).
UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
                    r"\ud800-\udfff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
FORMULA_LEAD = ("=", "+", "-", "@", "\t", "\r")

_HTML = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#x27;"})


def _escape(m: re.Match) -> str:
    c = m.group()
    return _NAMED.get(c) or (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}")


def printable(value: Any) -> str:
    """`str(value)` with every unsafe character shown as an escape: safe for a terminal, one line."""
    text = value if isinstance(value, str) else str(value)
    return UNSAFE.sub(_escape, text)


def html_text(value: Any) -> str:
    """`printable(value)` escaped for HTML text and attribute values."""
    return printable(value).translate(_HTML)


def csv_cell(value: Any) -> Any:
    """A CSV cell no spreadsheet runs: text starting like a formula gets a leading `'`, control
    characters are escaped. Numbers and other non-text values pass as they are."""
    if not isinstance(value, str):
        return value
    text = printable(value)
    return "'" + text if value[:1] in FORMULA_LEAD or text[:1] in FORMULA_LEAD else text


def csv_text(header: Iterable[str], rows: Iterable[Iterable[Any]]) -> str:
    """A header line, then one line per row, every cell through `csv_cell`; "\\n" line ends."""
    import csv  # here: the daemon imports this module for its log lines, not for CSV

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([csv_cell(c) for c in header])
    writer.writerows([csv_cell(c) for c in row] for row in rows)
    return out.getvalue()


_JSON_UNSAFE = re.compile(r"[\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
                          r"\ud800-\udfff]")


def json_text(obj: Any, *, indent: int | None = None, ascii: bool = True) -> str:
    """`json.dumps(obj)` whose text holds no raw control, separator or bidi character; with
    `ascii=False` other non-ASCII characters stay as they are (UTF-8 names stay readable)."""
    text = json.dumps(obj, indent=indent, ensure_ascii=ascii)
    # These characters only ever occur inside JSON strings, where \\uXXXX means the same.
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def text_problem(text: str, limit: int) -> str | None:
    """Why config text cannot be used ("control character U+001B not allowed", "300 characters:
    at most 255"), or None: the same rule as the catalogue's `check_text`."""
    bad = CONTROL.search(text)
    if bad:
        return f"control character U+{ord(bad.group()):04X} not allowed"
    if len(text) > limit:
        return f"{len(text)} characters: at most {limit}"
    return None


class LogFormatter(logging.Formatter):
    """Every log line stays one line whatever a sender put into a name it quotes: the message is
    escaped by `printable` (a backstop: callers need not remember); tracebacks, our own code's
    text, are kept as they are."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = printable(record.message)
        return super().formatMessage(record)
