"""`imflow catalogue update`: refresh the vendor prefix lists of the catalogue (docs/design.md §4).

For every service with `prefix_sources`, each URL is fetched once (one attempt, a timeout, no
retries), parsed by the parser its URL calls for, and the union replaces the service's prefixes.
A service keeps its previous prefixes (the shipped snapshot) when any of its sources fails, so a
partial outage never shrinks a list. The result is written as a complete catalogue file, in the
shipped format, with `fetched` = the update date and `prefixes_date` on each refreshed service.

Formats, chosen by URL:
* `*.txt` (Telegram cidr.txt, Zoom ipranges): one CIDR per line, `#` comments allowed;
* `endpoints.office.com`: Microsoft 365 endpoints JSON; endpoint sets of serviceArea "Skype"
  with ids 11 and 12 (Teams media and signalling); a `clientrequestid` GUID is appended;
* `www.gstatic.com/ipranges/*.json`: Google's `prefixes[].ipv4Prefix / ipv6Prefix`;
* anything else is an HTML page: CIDRs are taken from its tables (for help.webex.com only from
  the section "IP subnets for Webex media services").

Parsers are pure functions of the text. Non-global networks (RFC 1918, documentation ranges ...)
are dropped: a vendor never serves them, a captive portal page might.
"""

from __future__ import annotations

import datetime as dt
import html
import ipaddress
import json
import os
import re
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from collector import __version__
from collector.classify.catalogue import Catalogue, Network

MAX_BYTES = 16 << 20
TIMEOUT = 20.0
USER_AGENT = f"imflow/{__version__} (catalogue update)"
WEBEX_SECTION = "IP subnets for Webex media services"
MS365_AREA, MS365_IDS = "Skype", (11, 12)

Fetch = Callable[[str], bytes]


class UpdateError(Exception):
    """A prefix source could not be fetched or parsed; `str()` names the URL."""

    def __init__(self, url: str, reason: str, report: UpdateReport | None = None):
        super().__init__(f"{url}: {reason}")
        self.url = url
        self.reason = reason
        self.report = report


def default_fetch(url: str, timeout: float = TIMEOUT) -> bytes:
    """GET one URL: one attempt, `timeout` seconds, at most MAX_BYTES."""
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise UpdateError(url, "only http and https URLs are fetched")
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read(MAX_BYTES + 1)
    except urllib.error.HTTPError as e:
        raise UpdateError(url, f"HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        raise UpdateError(url, f"cannot connect ({e.reason}); offline or blocked?") from None
    except (TimeoutError, OSError) as e:
        raise UpdateError(url, f"{type(e).__name__}: {e}") from None
    if len(body) > MAX_BYTES:
        raise UpdateError(url, f"response larger than {MAX_BYTES} bytes")
    return body


# ---------------------------------------------------------------- parsers (pure)


def parse_cidr_lines(text: str) -> list[Network]:
    """One CIDR (or address) per line; blank lines and `#` comments skipped; anything else fails."""
    out = []
    for n, line in enumerate(text.splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            out.append(ipaddress.ip_network(line, strict=False))
        except ValueError:
            raise ValueError(f"line {n}: {line[:60]!r} is not a CIDR") from None
    return out


def parse_ms365(text: str, service_area: str = MS365_AREA, ids: tuple[int, ...] = MS365_IDS) -> list[Network]:
    """Microsoft 365 endpoints JSON: `ips` of the endpoint sets with this serviceArea and ids."""
    data = json.loads(text)
    if not isinstance(data, list):
        raise ValueError("expected a JSON list of endpoint sets")
    out, matched = [], 0
    for endpoint_set in data:
        if not isinstance(endpoint_set, dict):
            continue
        if endpoint_set.get("serviceArea") == service_area and endpoint_set.get("id") in ids:
            matched += 1
            out += [ipaddress.ip_network(ip, strict=False) for ip in endpoint_set.get("ips", [])]
    if not matched:
        raise ValueError(f"no endpoint set with serviceArea {service_area} and id in {list(ids)}")
    return out


def parse_google(text: str) -> list[Network]:
    """Google ipranges JSON (goog.json, cloud.json): prefixes[].ipv4Prefix / ipv6Prefix."""
    data = json.loads(text)
    if not isinstance(data, dict) or not isinstance(data.get("prefixes"), list):
        raise ValueError('expected a JSON object with a "prefixes" list')
    out = []
    for entry in data["prefixes"]:
        for key in ("ipv4Prefix", "ipv6Prefix"):
            if isinstance(entry, dict) and key in entry:
                out.append(ipaddress.ip_network(entry[key], strict=False))
    return out


_CIDR_RE = re.compile(r"(?<![\w.:])"  # an IPv4 or IPv6 address, "/", a length; validated later
                      r"((?:\d{1,3}\.){3}\d{1,3}|[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7})"
                      r"/(\d{1,3})(?![\w.])")
_TABLE_RE = re.compile(r"<table\b.*?</table\s*>", re.I | re.S)


def parse_html(text: str, section: str | None = None) -> list[Network]:
    """CIDRs in an HTML page's tables (the whole page if it has none). With `section`, only the
    part from the heading containing that text to the next heading of the same or higher level."""
    if section is not None:
        text = _section(text, section)
    tables = _TABLE_RE.findall(text)
    body = " ".join(tables) if tables else text
    body = html.unescape(re.sub(r"<[^>]*>", " ", body))
    out = []
    for address, length in _CIDR_RE.findall(body):
        try:
            out.append(ipaddress.ip_network(f"{address}/{length}", strict=False))
        except ValueError:
            continue
    return out


def _section(text: str, marker: str) -> str:
    # Words of the marker may be separated by any whitespace, &nbsp; or inline tags.
    gap = r"(?:\s|&nbsp;|&#160;|&#xa0;|<[^>]*>)+"
    found = re.search(gap.join(map(re.escape, marker.split())), text, re.I)
    if not found:
        raise ValueError(f'section "{marker}" not found')
    at = found.start()
    level = 6
    opened = list(re.finditer(r"<h([1-6])\b", text[:at], re.I))
    if opened and not re.search(r"</h[1-6]\s*>", text[opened[-1].end():at], re.I):
        level = int(opened[-1].group(1))
    end = re.compile(rf"<h[1-{level}]\b", re.I).search(text, at)
    return text[at:end.start() if end else len(text)]


def parser_for(url: str) -> Callable[[str], list[Network]]:
    parts = urllib.parse.urlsplit(url)
    host, path = parts.hostname or "", parts.path
    if host == "endpoints.office.com" or host.endswith(".endpoints.office.com"):
        return parse_ms365
    if host == "www.gstatic.com" and path.startswith("/ipranges/") and path.endswith(".json"):
        return parse_google
    if path.endswith(".txt"):
        return parse_cidr_lines
    if host == "help.webex.com":
        return lambda text: parse_html(text, WEBEX_SECTION)
    return parse_html


def request_url(url: str, client_request_id: str) -> str:
    """The URL actually fetched: Microsoft's endpoint service requires a clientrequestid GUID."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if host.endswith("endpoints.office.com") and "clientrequestid=" not in parts.query.lower():
        query = "&".join(q for q in (parts.query, f"clientrequestid={client_request_id}") if q)
        return urllib.parse.urlunsplit(parts._replace(query=query))
    return url


def fetch_prefixes(url: str, fetch: Fetch = default_fetch, client_request_id: str = "") -> list[Network]:
    """Fetch and parse one source: sorted, de-duplicated global networks. Raises UpdateError."""
    body = fetch(request_url(url, client_request_id or str(uuid.uuid4())))
    try:
        nets = parser_for(url)(body.decode("utf-8", errors="replace"))
    except (ValueError, TypeError, KeyError) as e:
        raise UpdateError(url, f"cannot parse: {e}") from None
    nets = sorted({n for n in nets if n.is_global}, key=lambda n: (n.version, n))
    if not nets:
        raise UpdateError(url, "no prefixes found")
    return nets


# ---------------------------------------------------------------- the update


@dataclass
class ServiceUpdate:
    id: str
    status: str  # "fetched" or "failed"
    prefixes: int  # prefixes the service has in the written file
    previous: int  # prefixes it had before
    error: str | None = None


@dataclass
class UpdateReport:
    date: str
    path: str
    services: list[ServiceUpdate] = field(default_factory=list)

    @property
    def failed(self) -> list[ServiceUpdate]:
        return [s for s in self.services if s.status == "failed"]

    def lines(self) -> list[str]:
        out = []
        for s in self.services:
            if s.status == "fetched":
                out.append(f"{s.id}: fetched {s.prefixes} prefixes (was {s.previous})")
            else:
                out.append(f"{s.id}: FAILED, kept {s.previous} prefixes: {s.error}")
        return out


def update_catalogue(catalogue: Catalogue, out_path: str, fetch: Fetch = default_fetch,
                     today: dt.date | None = None, client_request_id: str | None = None) -> UpdateReport:
    """Fetch every service's prefix_sources and write the refreshed catalogue to `out_path`.

    Pass the catalogue as loaded from a file (shipped or a previous update), without the user's
    config overrides, or they would be baked into the file. Raises UpdateError, and writes
    nothing, when every source failed (offline)."""
    date = (today or dt.date.today()).isoformat()
    crid = client_request_id or str(uuid.uuid4())
    report = UpdateReport(date, out_path)
    cache: dict[str, list[Network] | UpdateError] = {}
    doc = catalogue.to_dict()
    first_error: UpdateError | None = None
    for entry in doc["service"]:
        sources = entry["prefix_sources"]
        if not sources:
            continue
        previous = len(entry["prefixes"])
        nets: list[Network] = []
        error: UpdateError | None = None
        for url in sources:
            if url not in cache:
                try:
                    cache[url] = fetch_prefixes(url, fetch, crid)
                except UpdateError as e:
                    cache[url] = e
            result = cache[url]
            if isinstance(result, UpdateError):
                error = result
                break
            nets += result
        if error is not None:
            first_error = first_error or error
            report.services.append(ServiceUpdate(entry["id"], "failed", previous, previous, str(error)))
            continue
        unique = sorted(set(nets), key=lambda n: (n.version, n))
        entry["prefixes"] = [str(n) for n in unique]
        entry["prefixes_date"] = date
        report.services.append(ServiceUpdate(entry["id"], "fetched", len(unique), previous))
    if first_error is not None and not any(s.status == "fetched" for s in report.services):
        raise UpdateError(first_error.url, first_error.reason, report)
    doc["fetched"] = date
    _write_atomic(out_path, dumps(doc))
    return report


def dumps(doc: dict) -> str:
    """A catalogue document (Catalogue.to_dict() shape) as TOML text."""
    lines = ["# imflow service catalogue, written by `imflow catalogue update`.",
             "# Format: see collector/classify/data/services.toml.", ""]
    lines.append(f"snapshot = {_str(doc['snapshot'])}")
    if doc.get("fetched"):
        lines.append(f"fetched = {_str(doc['fetched'])}")
    for entry in doc["service"]:
        lines += ["", "[[service]]"]
        for key, value in entry.items():
            if isinstance(value, list):
                lines.append(f"{key} = {_list(value)}")
            elif value is not None:
                lines.append(f"{key} = {_str(value)}")
    return "\n".join(lines) + "\n"


def _str(value: str) -> str:
    out = []
    for ch in str(value):
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _list(values: list) -> str:
    items = [_str(v) for v in values]
    one_line = "[" + ", ".join(items) + "]"
    if len(one_line) <= 90:
        return one_line
    return "[\n" + "".join(f"  {item},\n" for item in items) + "]"


def _write_atomic(path: str, text: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".catalogue-", suffix=".toml", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
