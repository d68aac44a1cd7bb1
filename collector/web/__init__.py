"""`imflow web`: a read-only web page served by imflow itself (docs/web.md, DESIGN.md §12).

Overview, hosts, services, a page per host and per service, violations, exporters and
interfaces, and the audit report, for a period and filters given in the URL. Every number comes
from `collector.store.reader` (the query path of `imflow top` and `imflow violations`); the HTML
is rendered on the server with inline SVG charts and no script.

`WebServer` is the component: `imflow web` starts one alone, and the daemon attaches one when
`[web] listen` is set (started after the core, stopped before it).
"""

from __future__ import annotations

import ipaddress
import logging

from collector.web.site import Limits, Site

log = logging.getLogger(__name__)

DEFAULT_LISTEN = "127.0.0.1:9751"  # `imflow web` without [web] listen


def auth_of(cfg):
    """The BasicAuth of `[web]`, or None; ConfigError when only one of the two keys is set."""
    from collector.config import ConfigError
    from collector.web.auth import BasicAuth

    user, hashed = cfg.get("web.auth_user"), cfg.get("web.auth_password_hash")
    if bool(user) != bool(hashed):
        raise ConfigError("web.auth_password_hash" if user else "web.auth_user",
                          "basic authentication needs both web.auth_user and web.auth_password_hash")
    return BasicAuth(user, hashed) if user else None


def site_of(cfg, db: str | None = None, speeds=None, live=None) -> Site:
    """The pages' context for this configuration: its reader, catalogue, policy and limits;
    `live` (the daemon's): () -> the catalogue and policy in force now."""
    from collector.daemon import wiring
    from collector.store.reader import open_reader

    catalogue = wiring.build_catalogue(cfg)
    policy = wiring.build_policy(cfg, catalogue)
    reader = open_reader(cfg, db)

    def report(start, end, fmt):  # what `imflow report` writes, from the same reader
        from collector import report as rep
        from collector.daemon.wiring import build_host_names

        data = rep.build(reader, start, end, site.catalogue, site.policy, build_host_names(cfg),
                         install=wiring.build_install(cfg))
        return {"html": rep.render_html, "csv": rep.render_csv, "json": rep.render_json}[fmt](data)

    site = Site(reader, catalogue, policy, Limits.from_config(cfg), speeds=speeds, report=report, live=live)
    return site


def speeds_of(poller):
    """(exporter, interface name) -> bits/s from an SNMP poller's last walk, or None."""
    if poller is None:
        return None

    def speed(exporter: str, name: str) -> int | None:
        state = poller.state().get(exporter)
        if state is None:
            return None
        return next((i.speed_bits for i in state.interfaces.values() if i.name == name and i.speed_bits), None)
    return speed


class WebServer:
    """The page as a component: `start()` binds `listen`, `stop()` closes it."""

    def __init__(self, site: Site, listen: str, auth=None):
        self.site, self.listen, self.auth = site, listen, auth
        self.address: tuple[str, int] | None = None
        self._runner = None

    async def start(self) -> None:
        from aiohttp import web

        from collector.config import parse_endpoint
        from collector.web.server import make_app

        host, port = parse_endpoint(self.listen)
        self._runner = web.AppRunner(make_app(self.site, self.auth), access_log=None, handle_signals=False,
                                   shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            self._runner = None
            where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            raise OSError(exc.errno, f"web page {where}: {exc.strerror or exc}") from None
        self.address = site._server.sockets[0].getsockname()[:2]
        if self.auth is None and not _loopback(host):
            log.warning("the web page on %s has no authentication (set web.auth_user and "
                        "web.auth_password_hash, and put it behind a TLS reverse proxy)", self.url)
        log.info("web page on %s", self.url)

    @property
    def url(self) -> str:
        if self.address is None:
            return ""
        host, port = self.address
        return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def _loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
