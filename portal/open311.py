"""Open311 GeoReport v2: services, public requests, and filing by partner apps with an API key.

Served under /open311/v2/ by the gateway's web app (`portal_routes`). GET answers only public
cases (`portal.public`), so the confidentiality rules are the portal's. A POST files the report
directly through `cases.filing.CaseDesk` in one transaction that also stores the raw request as
an inbound event of channel "open311" (marked done): the request arrives complete, so the
intake's conversation has nothing to ask, and the stored event keeps the record of what came in.
The partner's `service_code` is kept on the case as `requested_service_code`; the field used for
routing is the classifier's, as for chat reports.
"""
from __future__ import annotations

import hmac
import re
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any, Awaitable, Callable
from xml.etree import ElementTree as ET

import yaml
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from normalizer.phones import parse_phone
from portal import public
from portal.context import PortalContext
from store.models import Conversation, Draft, Place, Subscriber
from store.public import PublicQuery
from store.repos import unit_of_work

TEXTS: dict[str, Any] = yaml.safe_load((Path(__file__).parent / "templates" / "open311.yaml").read_text("utf-8"))
BASE = "/open311/v2"
MAX_BODY = 64_000
MAX_RESULTS = 1000
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class Open311Error(Exception):
    def __init__(self, status: int, key: str) -> None:
        super().__init__(key)
        self.status, self.key = status, key


def open311_routes(ctx: PortalContext) -> list[BaseRoute]:
    """GET services, GET/POST requests, GET one request; `.json` or `.xml` on each."""
    async def services(request: Request) -> Response:
        return await _respond(request, lambda: _services(ctx), "services", "service")

    async def requests(request: Request) -> Response:
        if request.method == "POST":
            return await _respond(request, lambda: _post(ctx, request), "service_requests", "request", 201)
        return await _respond(request, lambda: _list(ctx, request.query_params), "service_requests", "request")

    async def one(request: Request) -> Response:
        code = request.path_params["code"]
        return await _respond(request, lambda: _one(ctx, code), "service_requests", "request")

    return [Route(BASE + "/services.{fmt}", services, methods=["GET"]),
            Route(BASE + "/requests.{fmt}", requests, methods=["GET", "POST"]),
            Route(BASE + "/requests/{code}.{fmt}", one, methods=["GET"])]


async def _services(ctx: PortalContext) -> list[dict[str, Any]]:
    return [{"service_code": code, "service_name": f.vi, "description": TEXTS["service_description"].format(name=f.vi),
             "metadata": False, "type": "realtime", "keywords": ", ".join(f.keywords[:10]), "group": f.en}
            for code, f in ctx.policy.fields.items()]


def as_request(ctx: PortalContext, c: public.PublicCase) -> dict[str, Any]:
    """GeoReport v2 request fields of a public case (published results are 'closed')."""
    agency = c.result_agency or c.agency
    field = ctx.policy.fields.get(c.field)
    return {"service_request_id": c.code, "status": "closed", "status_notes": c.result,
            "service_name": field.vi if field else c.field, "service_code": c.field,
            "description": c.content, "agency_responsible": ctx.desk.agency_name(agency) if agency else None,
            "service_notice": None, "requested_datetime": _w3c(c.received_at),
            "updated_datetime": _w3c(c.published_at or c.updated_at), "expected_datetime": None,
            "address": ", ".join(p for p in (c.address, c.commune) if p) or None, "address_id": None,
            "zipcode": None, "lat": c.lat, "long": c.lon,
            "media_url": f"/portal/anh/{c.code}/0" if c.photo_count else None}


async def _list(ctx: PortalContext, params: Any) -> list[dict[str, Any]]:
    ids = params.get("service_request_id", "")
    codes = tuple(s.strip() for s in ids.split(",")) if ids else ()
    status = params.get("status", "")
    if status not in ("", "open", "closed"):
        raise Open311Error(400, "status")
    start, end = (_date(params[name]) if params.get(name) else None for name in ("start_date", "end_date"))
    query = PublicQuery(codes=codes[:MAX_RESULTS], field=params.get("service_code") or None,
                        received_from=start, received_to=end)
    if status == "open":
        return []  # only cases with a published result are public, and those are closed
    return [as_request(ctx, c) for c in await public.find_public(ctx.database, query, limit=MAX_RESULTS)]


async def _one(ctx: PortalContext, code: str) -> list[dict[str, Any]]:
    found = await public.find_public(ctx.database, PublicQuery(codes=(code,)), limit=1)
    if not found:
        raise Open311Error(404, "not_found")
    return [as_request(ctx, found[0])]


async def _post(ctx: PortalContext, request: Request) -> list[dict[str, Any]]:
    if int(request.headers.get("content-length") or 0) > MAX_BODY:
        raise Open311Error(413, "too_large")
    form = dict(await request.form())
    if not ctx.open311_api_key:
        raise Open311Error(403, "disabled")
    if not hmac.compare_digest(str(form.get("api_key", "")).encode(), ctx.open311_api_key.encode()):
        raise Open311Error(403, "api_key")
    draft = _draft(ctx, {k: str(v).strip() for k, v in form.items() if isinstance(v, str)})
    sender = str(form.get("account_id") or form.get("device_id") or form.get("email") or "api")[:200]
    conv = Conversation(_id=f"open311:{sender}", channel="open311", sender=sender, draft=draft)
    now = ctx.clock()
    raw = {k: str(v) for k, v in form.items() if k != "api_key"}
    async with unit_of_work(ctx.database) as store:
        message_id = uuid.uuid4().hex
        await store.inbound.record("open311", message_id, sender, raw)
        reflection = await ctx.desk.file(store, conv, now)
        subscribers = [Subscriber(channel="email", address=draft.email).model_dump()] if draft.email else []
        await store.reflections.annotate(reflection.code, subscribers=subscribers,
                                         requested_service_code=raw["service_code"])
        record = await store.inbound.get("open311", message_id)
        assert record is not None  # recorded above, in this unit of work
        await store.inbound.finish(record.id, "done")
    return [{"service_request_id": reflection.code, "service_notice":
             TEXTS["service_notice"].format(code=reflection.code), "account_id": None}]


def _draft(ctx: PortalContext, form: dict[str, str]) -> Draft:
    """A complete draft from the request's fields, or Open311Error naming what is wrong."""
    if form.get("service_code") not in ctx.policy.fields:
        raise Open311Error(400, "service_code")
    if not form.get("description"):
        raise Open311Error(400, "description")
    name = " ".join(p for p in (form.get("last_name"), form.get("first_name")) if p)
    if not name:
        raise Open311Error(400, "name")
    phone = parse_phone(form.get("phone", ""))
    if phone is None:
        raise Open311Error(400, "phone")
    email = form.get("email") or None
    if email and not _EMAIL.match(email):
        raise Open311Error(400, "email")
    return Draft(name=name[:200], phone=phone, email=email, content=form["description"][:4000],
                 location=_place(ctx, form))


def _place(ctx: PortalContext, form: dict[str, str]) -> Place:
    address = form.get("address_string") or None
    lat: float | None
    lon: float | None
    try:
        lat, lon = float(form.get("lat", "")), float(form.get("long", ""))
    except ValueError:
        lat = lon = None
    if lat is None or lon is None or not (-90 <= lat <= 90 and -180 <= lon <= 180):
        if not address:
            raise Open311Error(400, "location")
        return Place(address=address[:500])
    commune = ctx.policy.gazetteer.nearest(lat, lon)
    return Place(lat=lat, lon=lon, address=address and address[:500], commune=commune.name if commune else None,
                 commune_code=commune.code if commune else None)


def _date(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise Open311Error(400, "date") from None
    if parsed.tzinfo is None:
        raise Open311Error(400, "date")
    return parsed


def _w3c(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value else None


# --- rendering ---------------------------------------------------------------------------
async def _respond(request: Request, build: Callable[[], Awaitable[list[dict[str, Any]]]], root: str,
                   item: str, status: int = 200) -> Response:
    """Check the format first (nothing is filed for a bad one), then answer or give the error list."""
    fmt = request.path_params["fmt"]
    if fmt not in ("json", "xml"):
        return _render("json", _errors(Open311Error(400, "format")), "errors", "error", 400)
    try:
        return _render(fmt, await build(), root, item, status)
    except Open311Error as exc:
        return _render(fmt, _errors(exc), "errors", "error", exc.status)


def _errors(exc: Open311Error) -> list[dict[str, Any]]:
    return [{"code": exc.status, "description": TEXTS["errors"][exc.key]}]


def _render(fmt: str, items: list[dict[str, Any]], root: str, item: str, status: int) -> Response:
    if fmt == "json":
        return JSONResponse(items, status_code=status)
    top = ET.Element(root)
    for entry in items:
        node = ET.SubElement(top, item)
        for key, value in entry.items():
            ET.SubElement(node, key).text = _xml_text(value)
    body = b'<?xml version="1.0" encoding="utf-8"?>' + ET.tostring(top, encoding="utf-8", xml_declaration=False)
    return Response(body, status_code=status, media_type="text/xml; charset=utf-8")


def _xml_text(value: Any) -> str:
    if value is None:
        return ""
    return str(value).lower() if isinstance(value, bool) else str(value)
