"""The web page's HTTP side: read-only (GET and HEAD only), the security headers, basic
authentication with a hashed password, bad parameters answered 400 in one line, the query time
cap (503), and the configuration's refusals naming the key."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from collector import config as C
from collector.web import WebServer, auth_of, site_of
from collector.web.auth import BasicAuth, hash_password, verify
from tests.web.conftest import Server, write_config

Q = "?from=2026-01-01&to=2026-01-08"


def request(url: str, method: str = "GET", headers: dict | None = None) -> tuple[int, dict, str]:
    req = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, dict(r.headers), r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read().decode()


def test_read_only_and_security_headers(server):
    status, headers, _ = request(server.url + "/" + Q)
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    csp = headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp and "frame-ancestors 'none'" in csp
    assert headers["X-Content-Type-Options"] == "nosniff" and headers["Cache-Control"] == "no-store"
    assert request(server.url + "/", "HEAD")[0] == 200
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        status, headers, _ = request(server.url + "/hosts", method)
        assert status == 405, method
        assert "Content-Security-Policy" in headers


@pytest.mark.parametrize("query, says", [
    ("?since=forever", "period:"), ("?from=2026-13-45", "period:"), ("?from=2026-01-08&to=2026-01-01", "after"),
    ("?category=chat", "category:"), ("?host=10.1.2.300", "host:"), ("?host=" + "1" * 200, "host:"),
    ("?" + "&".join(["service=x"] * 40), "service: at most"),
    ("?table=nope&format=csv", "format:"),
])
def test_bad_parameters_are_400_naming_the_parameter(server, query, says):
    status, _, body = request(server.url + "/" + query)
    assert status == 400 and says in body


def test_unknown_things_are_404(server):
    for path in ("/nope", "/host/not-an-address", "/service/no-such-service"):
        assert request(server.url + path)[0] == 404, path


def test_password_hash_round_trip():
    stored = hash_password("correct horse")
    assert verify("correct horse", stored) and not verify("correct hors", stored)
    assert C.validate({"web": {"auth_user": "ops", "auth_password_hash": stored}}).get("web.auth_password_hash") == stored
    out = subprocess.run([sys.executable, "-m", "collector", "web", "--hash-password"], input="s3cret pass\n",
                         check=False, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and verify("s3cret pass", out.stdout.strip())
    assert "s3cret" not in out.stdout + out.stderr


@pytest.mark.parametrize("section, key", [
    ({"auth_password_hash": "md5$x"}, "web.auth_password_hash"),
    ({"auth_user": "a:b"}, "web.auth_user"),
    ({"listen": "10.0.0.1:99999"}, "web.listen"),
    ({"max_rows": 1}, "web.max_rows"),
])
def test_bad_web_config_names_the_key(section, key):
    with pytest.raises(C.ConfigError) as err:
        C.validate({"web": section})
    assert err.value.key == key


def test_auth_needs_both_keys(tmp_path, web_db):
    cfg = write_config(tmp_path / "c.toml", '[web]\nauth_user = "ops"\n')
    out = subprocess.run([sys.executable, "-m", "collector", "web", "--db", web_db, "--config", str(cfg)],
                         check=False, capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "web.auth_password_hash" in out.stderr and len(out.stderr.splitlines()) == 1


def test_basic_authentication(tmp_path, web_db):
    import base64

    stored = hash_password("letmein")
    cfg = write_config(tmp_path / "c.toml", f'[web]\nauth_user = "ops"\nauth_password_hash = "{stored}"\n')
    srv = Server(web_db, cfg)
    try:
        status, headers, body = request(srv.url + "/")
        assert status == 401 and headers["WWW-Authenticate"].startswith("Basic realm=")
        assert "10.1.2.15" not in body
        for user, password in (("ops", "wrong"), ("root", "letmein"), ("ops", "")):
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            assert request(srv.url + "/", headers={"Authorization": f"Basic {token}"})[0] == 401
        assert request(srv.url + "/", headers={"Authorization": "Basic !!!"})[0] == 401
        good = {"Authorization": "Basic " + base64.b64encode(b"ops:letmein").decode()}
        status, _, body = request(srv.url + "/hosts" + Q, headers=good)
        assert status == 200 and "10.1.2.15" in body
        assert request(srv.url + "/hosts" + Q + "&table=hosts&format=csv", headers=good)[0] == 200
    finally:
        assert srv.stop() == 0


def test_checker_remembers_only_good_credentials():
    import base64

    check = BasicAuth("ops", hash_password("pw"))
    good = "Basic " + base64.b64encode(b"ops:pw").decode()
    assert check.check(good) and check.check(good) and not check.check("Basic " + base64.b64encode(b"ops:px").decode())
    assert not check.check(None) and not check.check("Bearer x") and not check.check("Basic " + "A" * 2000)


class SlowReader:
    """A store that takes 2 s per question: a fault this test cannot provoke in SQLite on demand."""

    where = "slow"

    def __init__(self, real):
        self.real = real

    def __getattr__(self, name):
        def slow(*args, **kw):
            time.sleep(2.0)
            return getattr(self.real, name)(*args, **kw)
        return slow


def test_slow_queries_are_cut_off_at_the_time_cap(web_db):
    cfg = C.validate({"web": {"query_timeout": 0.5, "max_queries": 1}})
    site = site_of(cfg, web_db)
    site.reader = SlowReader(site.reader)
    server = WebServer(site, "127.0.0.1:0")

    async def go():
        await server.start()
        try:
            t0 = time.monotonic()
            status, _, body = await asyncio.to_thread(request, server.url + "hosts" + Q)
            took = time.monotonic() - t0
            return status, body, took
        finally:
            await server.stop()
    status, body, took = asyncio.run(go())
    assert status == 503 and "web.query_timeout" in body
    assert took < 1.9  # answered at the cap, not when the query ended


def test_daemon_style_component_refuses_a_busy_port(web_db):
    import socket

    cfg = C.validate({})
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        server = WebServer(site_of(cfg, web_db), f"127.0.0.1:{port}", auth_of(cfg))
        with pytest.raises(OSError) as err:
            asyncio.run(server.start())
        assert f"web page 127.0.0.1:{port}" in str(err.value)


def test_listening_beyond_loopback_without_authentication_warns(tmp_path, web_db):
    srv = Server(web_db, write_config(tmp_path / "c.toml"), "--listen", "0.0.0.0:0")
    try:
        assert srv.url.startswith("http://0.0.0.0:")
        assert any("WARNING" in line and "no authentication" in line for line in srv.log), srv.log
    finally:
        srv.stop()


def test_link_share_from_the_speeds_the_daemon_knows(web_db):
    """In the daemon the SNMP poller's ifHighSpeed gives each interface's share of its link: the
    average rate over the period (bits / seconds) over the speed."""
    import json

    speeds = {("192.0.2.1", "Gi0/0"): 10_000, ("2001:db8::1", "Gi0/1"): 1_000_000}
    site = site_of(C.validate({}), web_db, speeds=lambda exporter, name: speeds.get((exporter, name)))
    server = WebServer(site, "127.0.0.1:0")

    async def go():
        await server.start()
        try:
            return await asyncio.to_thread(request, server.url + "exporters" + Q + "&table=interfaces&format=json")
        finally:
            await server.stop()
    status, _, body = asyncio.run(go())
    assert status == 200
    rows = json.loads(body)
    seconds = 7 * 86400  # the period asked for
    for r in rows:
        speed = speeds.get((r["exporter"], r["interface"]))
        assert r["rate_bps"] == pytest.approx(8 * r["bytes"] / seconds)
        if speed is None:
            assert r["link_pct"] is None
        else:
            assert r["link_pct"] == pytest.approx(100 * 8 * r["bytes"] / seconds / speed)
    assert sum(r["link_pct"] is not None for r in rows) == 3  # Gi0/0 in and out, Gi0/1 out


def test_a_missing_database_is_a_503_page_saying_so(tmp_path):
    srv = Server(str(tmp_path / "nowhere.db"), write_config(tmp_path / "c.toml"))
    try:
        status, _, body = request(srv.url + "/hosts")
        assert status == 503 and "no database at" in body and "nowhere.db" in body
    finally:
        assert srv.stop() == 0
