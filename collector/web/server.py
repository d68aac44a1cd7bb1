"""The web page's HTTP side (aiohttp): routes, security headers, basic authentication, errors,
and `WebServer`, a component with `start()`/`stop()` that `imflow web` runs on its own and the
daemon attaches when `[web] listen` is set.

Read-only by construction: GET (and HEAD) routes only, every other method is 405. Every
response carries a Content-Security-Policy that allows no script, no frame and no fetch, and
`Cache-Control: no-store`. A page is built by `pages` and rendered by `render`; `?format=csv`
or `json` with `table=ID` is that table as a download.
"""

from __future__ import annotations

import logging
import urllib.parse

from aiohttp import web

from collector.store import StoreError
from collector.web import pages, render, select
from collector.web.auth import BasicAuth
from collector.web.site import Site, TooSlow

log = logging.getLogger(__name__)

CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
           "Cache-Control": "no-store", "X-Frame-Options": "DENY"}
SITE = web.AppKey("site", Site)
# the report is laid out for A4 and wide screens; on a phone its grids become one column and
# its wide tables scroll inside themselves
NARROW = ("@media (max-width:700px){main{padding:10px}dl.meta{grid-template-columns:1fr}"
          ".kpis{grid-template-columns:1fr 1fr}table{display:block;overflow-x:auto}"
          "svg text{font-size:20px}}")


def make_app(site: Site, auth: BasicAuth | None = None) -> web.Application:
    app = web.Application(middlewares=[_guard(auth)], client_max_size=1024)
    app[SITE] = site
    app.router.add_get("/", _page)
    for path in pages.PAGES:
        if path != "/":
            app.router.add_get(path, _page)
    app.router.add_get("/host/{addr}", _host)
    app.router.add_get("/service/{sid}", _service)
    app.router.add_get("/report", _report)
    app.on_cleanup.append(_close)
    return app


async def _close(app: web.Application) -> None:
    app[SITE].close()


def _guard(auth: BasicAuth | None):
    @web.middleware
    async def guard(request: web.Request, handler):
        request.app[SITE].refresh()
        if auth is not None and not auth.check(request.headers.get("Authorization")):
            resp = web.Response(status=401, text=render.error_html(401, "This page needs a user name and password."),
                                content_type="text/html", headers={"WWW-Authenticate": 'Basic realm="imflow", charset="UTF-8"'})
        else:
            try:
                resp = await handler(request)
            except web.HTTPException as exc:
                resp = web.Response(status=exc.status, text=render.error_html(exc.status, exc.reason),
                                    content_type="text/html", headers={k: v for k, v in exc.headers.items()
                                                                       if k in ("Allow",)})
        resp.headers.update(HEADERS)
        return resp
    return guard


def _selection(request: web.Request) -> select.Selection:
    site = request.app[SITE]
    try:
        return select.parse(request.query, site.categories, now=site.clock())
    except ValueError as exc:
        raise _Bad(400, str(exc), None) from None


class _Bad(Exception):
    def __init__(self, status: int, message: str, sel):
        super().__init__(message)
        self.status, self.message, self.sel = status, message, sel


async def _answer(request: web.Request, build, *args) -> web.Response:
    site = request.app[SITE]
    path = urllib.parse.quote(request.path, safe="/")
    sel = None
    try:
        sel = _selection(request)
        page = await build(site, sel, site.deadline(), *args)
    except _Bad as exc:
        return _error(site, exc.status, exc.message, path, exc.sel)
    except ValueError as exc:
        return _error(site, 400, str(exc), path, sel)
    except TooSlow:
        return _error(site, 503, f"The queries of this page took longer than {site.limits.query_timeout:g} s "
                      "(web.query_timeout): choose a shorter period or more filters.", path, sel)
    except StoreError as exc:
        return _error(site, 503, f"The store cannot answer: {exc}", path, sel)
    fmt = request.query.get("format")
    if fmt is None:
        return web.Response(text=render.page_html(page, sel, site.categories), content_type="text/html")
    table = page.table(request.query.get("table", ""))
    if table is None or fmt not in ("csv", "json"):
        return _error(site, 400, "format: csv or json, with table: the id of a table of this page", path, sel)
    name = f"imflow-{page.path.strip('/').replace('/', '-') or 'overview'}-{table.id}.{fmt}"
    name = "".join(c if c.isalnum() or c in "-._" else "_" for c in name)[:120]
    body = render.table_csv(table) if fmt == "csv" else render.table_json(table)
    return web.Response(text=body, content_type="text/csv" if fmt == "csv" else "application/json",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})


def _error(site: Site, status: int, message: str, path: str, sel) -> web.Response:
    return web.Response(status=status, text=render.error_html(status, message, path, sel, site.categories),
                        content_type="text/html")


async def _page(request: web.Request) -> web.Response:
    return await _answer(request, pages.PAGES[request.path])


async def _host(request: web.Request) -> web.Response:
    try:
        addr = pages.host_address(request.match_info["addr"])
    except ValueError:
        return _error(request.app[SITE], 404, "No such host: not an IP address.", "/hosts", None)
    return await _answer(request, pages.host, addr)


async def _service(request: web.Request) -> web.Response:
    site = request.app[SITE]
    sid = request.match_info["sid"]
    if sid not in site.catalogue.by_id:
        try:
            known = sid in await site.run(site.deadline(), site.reader.stored_services)
        except (TooSlow, StoreError):
            known = False
        if not known:
            return _error(site, 404, "No such service in the catalogue or the store.", "/services", None)
    return await _answer(request, pages.service, sid)


async def _report(request: web.Request) -> web.Response:
    site = request.app[SITE]
    try:
        sel = _selection(request)
    except _Bad as exc:
        return _error(site, 400, exc.message, "/report", None)
    fmt = request.query.get("format", "html")
    if site.report is None or fmt not in ("html", "csv", "json"):
        return _error(site, 404 if site.report is None else 400,
                      "No report here." if site.report is None else "format: html, csv or json", "/report", sel)
    try:
        text = await site.run(site.deadline(), site.report, sel.start, sel.end, fmt)
    except TooSlow:
        return _error(site, 503, "The report took longer than web.query_timeout.", "/report", sel)
    except StoreError as exc:
        return _error(site, 503, f"The store cannot answer: {exc}", "/report", sel)
    if fmt == "html":
        back = (f'<nav style="font:14px sans-serif;padding:6px 12px;background:#1f3a5f">'
                f'<a style="color:#fff" href="{render.link("/", sel)}">← imflow web</a> '
                f'<a style="color:#fff;margin-left:12px" href="{render.href("/report", sel, format="csv")}">CSV</a> '
                f'<a style="color:#fff;margin-left:12px" href="{render.href("/report", sel, format="json")}">JSON</a>'
                '</nav>')
        text = text.replace("</head>", f"<style>{NARROW}</style></head>", 1).replace("<body>", "<body>" + back, 1)
        return web.Response(text=text, content_type="text/html")
    return web.Response(text=text, content_type="text/csv" if fmt == "csv" else "application/json",
                        headers={"Content-Disposition": f'attachment; filename="imflow-report.{fmt}"'})
