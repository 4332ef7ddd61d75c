"""The public results portal: one server-rendered page (list, search, filters, map, figures)
and the photos of public cases. No JavaScript: it loads fast on a phone and works offline.

`portal_routes` is called by the gateway when it builds the web app; the Open311 routes
(`portal.open311`) share its `PortalContext`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from portal import public
from portal.context import PortalContext
from portal.mapplot import plot
from store.public import PublicQuery

HERE = Path(__file__).resolve().parent
VN = ZoneInfo("Asia/Ho_Chi_Minh")
PAGE_SIZE = 20
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
                               "base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


def environment() -> Environment:
    """Jinja for the portal's HTML: autoescape on, Vietnamese date filter."""
    env = Environment(loader=FileSystemLoader(str(HERE / "templates")),
                      autoescape=select_autoescape(default=True), trim_blocks=True, lstrip_blocks=True)
    env.filters["vndate"] = lambda d: d.astimezone(VN).strftime("%d/%m/%Y") if d else ""
    return env


def portal_routes(ctx: PortalContext) -> list[BaseRoute]:
    """The portal, its photos and static files, and the Open311 API."""
    from portal.open311 import open311_routes

    env = environment()

    async def index(request: Request) -> Response:
        return await _index(ctx, env, request)

    async def photo(request: Request) -> Response:
        return await _photo(ctx, request.path_params["code"], request.path_params["n"])

    async def home(_: Request) -> Response:
        return RedirectResponse("/portal/", status_code=302)

    return [Route("/", home, methods=["GET"]), Route("/portal/", index, methods=["GET"]),
            Route("/portal/anh/{code}/{n:int}", photo, methods=["GET"]),
            Mount("/portal/static", StaticFiles(directory=HERE / "static"), name="portal-static"),
            *open311_routes(ctx)]


def filters(ctx: PortalContext, params: Any) -> tuple[dict[str, str], PublicQuery]:
    """Known filter values only (unknown ones are dropped): (for the form, for the query)."""
    policy = ctx.policy
    chosen = {"code": params.get("code", "").strip().upper()[:40],
              "field": params.get("field", "") if params.get("field", "") in policy.fields else "",
              "agency": params.get("agency", "") if params.get("agency", "") in {a.id for a in policy.agencies} else "",
              "commune": params.get("commune", "") if params.get("commune", "") in _communes(ctx) else ""}
    return chosen, PublicQuery(codes=(chosen["code"],) if chosen["code"] else (), field=chosen["field"] or None,
                               agency=chosen["agency"] or None, commune_code=chosen["commune"] or None)


def _communes(ctx: PortalContext) -> dict[str, str]:
    return {c.code: c.name for c in ctx.policy.gazetteer.communes}


async def _index(ctx: PortalContext, env: Environment, request: Request) -> Response:
    chosen, query = filters(ctx, request.query_params)
    raw_page = request.query_params.get("page", "1")
    page = max(1, int(raw_page)) if raw_page.isdigit() and len(raw_page) < 6 else 1
    db = ctx.database
    total = await public.count_public(db, query)
    cases = await public.find_public(db, query, skip=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE)
    figures = await public.agency_figures(db)
    html = env.get_template("index.html").render(
        cases=cases, total=total, page=page, pages=max(1, -(-total // PAGE_SIZE)), chosen=chosen,
        fields={k: f.vi for k, f in ctx.policy.fields.items()},
        agencies={a.id: a.name for a in ctx.policy.agencies}, communes=_communes(ctx),
        figures=figures, map=plot(cases), province=ctx.policy.province,
        page_url=lambda n: "?" + urlencode({**{k: v for k, v in chosen.items() if v}, "page": n}))
    return HTMLResponse(html, headers=SECURITY_HEADERS)


async def _photo(ctx: PortalContext, code: str, n: int) -> Response:
    file_id = await public.public_photo(ctx.database, code, n)
    if file_id is None:
        return Response(status_code=404, headers=SECURITY_HEADERS)
    try:
        data = await ctx.media.load(file_id)
        info = await ctx.media.info(file_id)
    except KeyError:
        return Response(status_code=404, headers=SECURITY_HEADERS)
    return Response(data, media_type=str(info.get("content_type", "image/jpeg")),
                    headers={**SECURITY_HEADERS, "Cache-Control": "public, max-age=300"})
