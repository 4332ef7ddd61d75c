"""Public portal: what it shows, search and filters, and what it never lets out through any URL."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from cases.filing import CaseDesk
from cases.policy import load_policy
from channels.webapp import build_app
from portal import PortalContext, portal_routes
from store.media import MediaStore
from store.models import Person, Place, Reflection
from store.repos import Store

ROOT = Path(__file__).resolve().parent.parent
POLICY = load_policy(ROOT / "policies" / "quang_nam.yaml")
API_KEY = "test-open311-key"
PHOTO = ROOT / "tests" / "fixtures" / "images" / "pothole.jpg"
NAME, PHONE, EMAIL = "Trần Thị Bích", "+84912345678", "bich.tran@example.com"
SECRETS = [NAME, PHONE, "0912 345 678", "0912345678", "912345678", EMAIL]
PRIVATE_CODES = ["PA-2026-000002", "PA-2026-000003", "PA-2026-000004"]  # confidential, hidden, unpublished


def image_bytes() -> bytes:
    return PHOTO.read_bytes()


async def add_case(database: Any, code: str, status: str, *, confidential: bool = False, hidden: bool = False,
                   field: str = "transport", agency: str | None = None, lat: float = 16.06,
                   result: str | None = None) -> Reflection:
    photo = await MediaStore(database).save(image_bytes(), content_type="image/jpeg", filename="p.jpg")
    at = datetime(2026, 3, 2, 2, 0, tzinfo=timezone.utc)
    agency = agency or POLICY.agencies[0].id
    r = Reflection(code=code, status=status, channel="telegram", sender="u1",
                   citizen=Person(name=NAME, phone=PHONE, email=EMAIL),
                   content=f"Ổ gà lớn trước nhà, tôi là {NAME}, gọi 0912 345 678 hoặc {EMAIL}",
                   location=Place(lat=lat, lon=108.21, address="12 Hùng Vương", commune="Phường Hải Châu",
                                  commune_code=POLICY.gazetteer.communes[1].code),
                   photos=[photo], field=field, agency=agency, confidential=confidential, hidden=hidden,
                   result=result or f"Đã vá ổ gà. Liên hệ {NAME} qua {PHONE} đã xong.",
                   entered_at={"received": at, "published": at}, created_at=at, updated_at=at)
    await Store(database).reflections.insert(r)
    return r


async def seed(database: Any) -> None:
    """One public case, one confidential, one hidden, one not yet published (all with photos)."""
    await add_case(database, "PA-2026-000001", "published", result="Đã vá ổ gà <script>alert(1)</script>")
    await add_case(database, "PA-2026-000002", "published", confidential=True)
    await add_case(database, "PA-2026-000003", "closed", hidden=True)
    await add_case(database, "PA-2026-000004", "in_progress")
    await add_case(database, "PA-2026-000005", "closed", field="environment", lat=16.08,
                   agency=POLICY.agencies[1].id)


def make_app(database: Any, api_key: str | None = API_KEY):
    async def health() -> dict[str, Any]:
        return {"database": "ok"}
    ctx = PortalContext(database, POLICY, CaseDesk(POLICY), open311_api_key=api_key)
    return build_app([], health, extra_routes=portal_routes(ctx))


@pytest.fixture
async def client(database):
    await seed(database)
    transport = httpx.ASGITransport(app=make_app(database))
    async with httpx.AsyncClient(transport=transport, base_url="http://portal.test") as c:
        yield c


async def test_page_lists_published_results_in_vietnamese(client: httpx.AsyncClient) -> None:
    page = await client.get("/portal/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assert '<html lang="vi">' in html and "Kết quả xử lý phản ánh" in html
    assert "PA-2026-000001" in html and "PA-2026-000005" in html
    assert "Sau khi nhận được phản ánh của Ông/Bà" in html and POLICY.agencies[0].name in html
    assert "Giao thông" in html or POLICY.fields["transport"].vi in html
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html  # escaped
    assert html.count("<circle") == 2  # both public cases on the map
    assert "Chỉ số theo cơ quan xử lý" in html and 'name="viewport"' in html


async def test_search_by_code_and_filters(client: httpx.AsyncClient) -> None:
    found = (await client.get("/portal/", params={"code": "pa-2026-000005"})).text
    assert 'id="PA-2026-000005"' in found and 'id="PA-2026-000001"' not in found
    by_field = (await client.get("/portal/", params={"field": "environment"})).text
    assert 'id="PA-2026-000005"' in by_field and 'id="PA-2026-000001"' not in by_field
    by_agency = (await client.get("/portal/", params={"agency": POLICY.agencies[0].id})).text
    assert 'id="PA-2026-000001"' in by_agency and 'id="PA-2026-000005"' not in by_agency
    unknown = await client.get("/portal/", params={"field": {"$ne": 1}.__repr__(), "page": "x"})
    assert unknown.status_code == 200 and 'id="PA-2026-000001"' in unknown.text
    private = (await client.get("/portal/", params={"code": "PA-2026-000002"})).text
    assert "Không tìm thấy" in private and 'id="PA-2026-000002"' not in private


async def test_photos_only_for_public_cases(client: httpx.AsyncClient) -> None:
    ok = await client.get("/portal/anh/PA-2026-000001/0")
    assert ok.status_code == 200 and ok.content == image_bytes()
    for code in PRIVATE_CODES:
        assert (await client.get(f"/portal/anh/{code}/0")).status_code == 404
    assert (await client.get("/portal/anh/PA-2026-000001/1")).status_code == 404
    assert (await client.get("/portal/anh/nothing/0")).status_code == 404


def probes(app: Any) -> dict[str, list[str]]:
    """Every URL pattern the app serves → concrete URLs trying to reach each private thing."""
    codes = ["PA-2026-000001", *PRIVATE_CODES]
    return {
        "/healthz": ["/healthz"],
        "/": ["/"],
        "/portal/": ["/portal/", *(f"/portal/?code={c}" for c in codes), "/portal/?page=2"],
        "/portal/anh/{code}/{n:int}": [f"/portal/anh/{c}/0" for c in PRIVATE_CODES],
        "/portal/static": ["/portal/static/portal.css"],
        "/open311/v2/services.{fmt}": ["/open311/v2/services.json", "/open311/v2/services.xml"],
        "/open311/v2/requests.{fmt}": [
            "/open311/v2/requests.json", "/open311/v2/requests.xml", "/open311/v2/requests.json?status=open",
            "/open311/v2/requests.json?service_request_id=" + ",".join(codes)],
        "/open311/v2/requests/{code}.{fmt}": [f"/open311/v2/requests/{c}.{f}" for c in codes for f in ("json", "xml")],
    }


async def test_nothing_private_through_any_url(database) -> None:
    await seed(database)
    app = make_app(database)
    table = probes(app)
    assert {getattr(r, "path", None) for r in app.routes} == set(table), "a new route needs probing here"
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://portal.test") as c:
        for urls in table.values():
            for url in urls:
                response = await c.get(url)
                body = response.content.decode("utf-8", "replace")
                for secret in SECRETS + PRIVATE_CODES:
                    if url.endswith(f"{secret}/0") or f"={secret}" in url:
                        continue  # the code in our own request line is not a leak
                    assert secret not in body, f"{url} shows {secret!r}"
                if "/anh/" in url:
                    assert response.status_code == 404, url
        # The public case's answer and content are shown with the citizen's identity masked.
        page = (await c.get("/portal/?code=PA-2026-000001")).text
        assert "Ổ gà lớn trước nhà, tôi là ***" in page
