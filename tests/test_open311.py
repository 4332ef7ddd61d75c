"""Open311 GeoReport v2: field lists per the spec, filters, XML, filing with an API key."""
from __future__ import annotations

from datetime import datetime
from xml.etree import ElementTree as ET
from zoneinfo import ZoneInfo

import httpx
import pytest

from cases.lifecycle import Actor, transition
from store.repos import Store
from tests.test_portal import API_KEY, POLICY, make_app

# A fixture the tests take as a parameter: "x as x" re-exports it, so ruff reads neither the
# import as unused nor the parameters as redefinitions.
from tests.test_portal import client as client

VN = ZoneInfo("Asia/Ho_Chi_Minh")
# GeoReport v2 (wiki.open311.org/GeoReport_v2): the fields of a service and of a request.
SERVICE_FIELDS = {"service_code", "service_name", "description", "metadata", "type", "keywords", "group"}
REQUEST_FIELDS = {"service_request_id", "status", "status_notes", "service_name", "service_code", "description",
                  "agency_responsible", "service_notice", "requested_datetime", "updated_datetime",
                  "expected_datetime", "address", "address_id", "zipcode", "lat", "long", "media_url"}
REPORT = {"api_key": API_KEY, "service_code": "transport", "lat": "16.0544", "long": "108.2022",
          "address_string": "45 Bạch Đằng", "description": "Ổ gà sâu giữa đường Bạch Đằng, xe máy dễ ngã",
          "first_name": "An", "last_name": "Nguyễn Văn", "phone": "0912 345 678", "email": "an@example.com",
          "device_id": "app-1"}


async def test_services_list_every_field_of_the_policy(client: httpx.AsyncClient) -> None:
    services = (await client.get("/open311/v2/services.json")).json()
    assert {s["service_code"] for s in services} == set(POLICY.fields)
    assert all(set(s) == SERVICE_FIELDS and s["type"] == "realtime" and s["metadata"] is False for s in services)
    xml = ET.fromstring((await client.get("/open311/v2/services.xml")).content)
    assert xml.tag == "services" and len(xml.findall("service")) == len(POLICY.fields)


async def test_requests_have_the_georeport_fields_and_filters(client: httpx.AsyncClient) -> None:
    listed = (await client.get("/open311/v2/requests.json")).json()
    assert [r["service_request_id"] for r in listed] == ["PA-2026-000005", "PA-2026-000001"]
    first = next(r for r in listed if r["service_request_id"] == "PA-2026-000001")
    assert set(first) == REQUEST_FIELDS and first["status"] == "closed" and first["service_code"] == "transport"
    assert first["lat"] == 16.06 and first["long"] == 108.21 and first["media_url"] == "/portal/anh/PA-2026-000001/0"
    assert first["requested_datetime"] == "2026-03-02T02:00:00+00:00"
    assert first["agency_responsible"] == POLICY.agencies[0].name
    by_code = (await client.get("/open311/v2/requests.json", params={"service_code": "environment"})).json()
    assert [r["service_request_id"] for r in by_code] == ["PA-2026-000005"]
    assert (await client.get("/open311/v2/requests.json", params={"status": "open"})).json() == []
    later = await client.get("/open311/v2/requests.json", params={"start_date": "2026-03-03T00:00:00+07:00"})
    assert later.json() == []
    bad = await client.get("/open311/v2/requests.json", params={"start_date": "yesterday"})
    assert bad.status_code == 400 and set(bad.json()[0]) == {"code", "description"}
    one = await client.get("/open311/v2/requests/PA-2026-000001.xml")
    node = ET.fromstring(one.content).find("request")
    assert node is not None and {child.tag for child in node} == REQUEST_FIELDS
    assert (await client.get("/open311/v2/requests/PA-2026-000002.json")).status_code == 404  # confidential
    assert (await client.get("/open311/v2/requests/PA-2026-000001.html")).status_code == 400


async def test_post_files_a_report_into_the_same_pipeline(client: httpx.AsyncClient, database) -> None:
    year = datetime.now(VN).year
    await database.db.counters.insert_one({"_id": f"reflection-{year}", "n": 100})  # past the seeded codes
    answer = await client.post("/open311/v2/requests.json", data=REPORT)
    assert answer.status_code == 201, answer.text
    [filed] = answer.json()
    code = filed["service_request_id"]
    assert code == f"PA-{year}-000101" and code in filed["service_notice"]
    store = Store(database)
    case = await store.reflections.get(code)
    assert case is not None and case.channel == "open311" and case.citizen.phone == "+84912345678"
    assert case.citizen.name == "Nguyễn Văn An" and case.location.lat == 16.0544 and case.location.commune_code
    assert case.field == "transport" and case.status == "classified" and case.agency
    assert [(s.channel, s.address) for s in case.subscribers] == [("email", "an@example.com")]
    assert await store.inbound.count(channel="open311", status="done") == 1
    # Not public until its result is published; then it is, without the reporter's identity.
    assert (await client.get(f"/open311/v2/requests/{code}.json")).status_code == 404
    await publish(store, case)
    shown = (await client.get(f"/open311/v2/requests/{code}.json")).json()[0]
    assert shown["status_notes"] == "Đã vá" and "0912" not in str(shown) and "an@example.com" not in str(shown)


async def publish(store: Store, case) -> None:
    robot, officer = Actor("system:test", "system"), Actor("staff:1", "agency_officer")
    for to, actor in (("forwarded", robot), ("result_submitted", officer), ("approved", robot)):
        case = await transition(store, case, to, actor)
    await transition(store, case, "published", robot, changes={"result": "Đã vá"})


@pytest.mark.parametrize("change, status, missing", [
    ({"api_key": "wrong"}, 403, "api_key"), ({"api_key": None}, 403, "api_key"),
    ({"service_code": "nope"}, 400, "service_code"), ({"lat": None, "long": None, "address_string": None}, 400, "lat"),
    ({"description": ""}, 400, "description"), ({"phone": "123"}, 400, "phone"),
    ({"first_name": None, "last_name": None}, 400, "first_name"), ({"email": "not-mail"}, 400, "email")])
async def test_post_refuses_bad_requests_and_files_nothing(client: httpx.AsyncClient, database, change, status,
                                                           missing) -> None:
    form = {k: v for k, v in {**REPORT, **change}.items() if v is not None}
    answer = await client.post("/open311/v2/requests.json", data=form)
    assert answer.status_code == status
    assert missing in answer.json()[0]["description"]
    assert await Store(database).inbound.count(channel="open311") == 0


async def test_post_is_off_without_a_configured_key(database) -> None:
    transport = httpx.ASGITransport(app=make_app(database, api_key=None))
    async with httpx.AsyncClient(transport=transport, base_url="http://portal.test") as c:
        answer = await c.post("/open311/v2/requests.xml", data=REPORT)
    assert answer.status_code == 403 and ET.fromstring(answer.content).tag == "errors"
