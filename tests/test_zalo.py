"""Zalo OA channel against the fake OA API: signed webhooks over HTTP into the real gateway,
customer-service replies, token rotation kept in the database, reply windows, retries."""
from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from bots.gateway import Gateway
from cases.policy import load_policy
from channels.base import PermanentFailure, RetryLater, WindowClosed
from channels.outbox import OutboxWorker
from channels.zalo import ZaloChannel
from normalizer.messages import Button, GeoPoint, Outbound, utcnow
from settings import Settings
from store.database import Database
from store.media import MediaStore
from store.repos import Store
from store.tokens import TokenStore
from store.windows import ReplyWindows
from tests.chat import serving
from tests.fakes import running
from tests.fakes.zalo_api import (
    APP_ID,
    APP_SECRET,
    FIRST_ACCESS,
    FIRST_REFRESH,
    OA_SECRET_KEY,
    FakeZaloAPI,
)

FIXTURES = Path(__file__).parent / "fixtures"
POLICY = Path(__file__).parent.parent / "policies" / "quang_nam.yaml"
CITIZEN = "2468458835291979223"
FULL = "Tôi là Nguyễn Văn An, 0912 345 678, ổ gà lớn trước số 12 Hùng Vương, phường Hải Châu"
STAFF = ("telegram", "-1001234567890")


def event(name: str, msg_id: str | None = None, ms: int | None = None, **message: Any) -> dict[str, Any]:
    data = json.loads((FIXTURES / "zalo" / f"{name}.json").read_text(encoding="utf-8"))
    data["timestamp"] = str(ms if ms is not None else int(time.time() * 1000))
    if "message" in data:
        data["message"].update(message)
        data["message"]["msg_id"] = msg_id or data["message"]["msg_id"]
    return data


def signature(body: bytes, timestamp: str, secret: str = OA_SECRET_KEY) -> str:
    return "mac=" + hashlib.sha256(APP_ID.encode() + body + timestamp.encode() + secret.encode()).hexdigest()


async def post(url: str, payload: dict[str, Any], headers: dict[str, str] | None = None) -> httpx.Response:
    body = json.dumps(payload, ensure_ascii=False).encode()
    if headers is None:
        headers = {"X-ZEvent-Signature": signature(body, payload["timestamp"])}
    async with httpx.AsyncClient() as client:
        return await client.post(f"{url}/zalo/webhook", content=body,
                                 headers={"content-type": "application/json", **headers})


def make_channel(fake: FakeZaloAPI, database: Database, **options: Any) -> ZaloChannel:
    return ZaloChannel(app_id=APP_ID, app_secret=APP_SECRET, oa_secret_key=OA_SECRET_KEY,
                       refresh_token=FIRST_REFRESH, access_token=FIRST_ACCESS, api_url=fake.url,
                       oauth_url=fake.url, media_loader=MediaStore(database).load, **options)


@pytest.fixture
async def fake() -> AsyncIterator[FakeZaloAPI]:
    async with running(FakeZaloAPI()) as api:
        yield api


@pytest.fixture
async def gateway(fake: FakeZaloAPI, database: Database) -> AsyncIterator[Gateway]:
    async with serving(database, {"zalo": make_channel(fake, database)}, load_policy(POLICY)) as gw:
        yield gw


@pytest.fixture
async def channel(fake: FakeZaloAPI, database: Database) -> AsyncIterator[ZaloChannel]:
    """A started channel without a gateway, for send-side tests; the citizen wrote just now."""
    ch = make_channel(fake, database, staff_alert=STAFF)
    ch.bind(database)

    async def sink(*_: Any) -> bool:
        return True
    await ch.start(sink)
    await ReplyWindows(database).touch("zalo", CITIZEN, utcnow())
    yield ch
    await ch.stop()


async def say(gateway: Gateway, fake: FakeZaloAPI, payload: dict[str, Any]) -> list[dict[str, Any]]:
    before = len(fake.sent())
    assert gateway.web is not None
    response = await post(gateway.web.url, payload)
    assert response.status_code == 200, response.text
    await gateway.drain()
    return fake.sent()[before:]


# ---- a whole report ---------------------------------------------------------------------
async def test_whole_report_is_filed_and_acknowledged(gateway: Gateway, fake: FakeZaloAPI) -> None:
    fake.add_file("pothole.jpg", (FIXTURES / "images" / "pothole.jpg").read_bytes())
    await say(gateway, fake, event("user_send_text", "m1", text=FULL))
    await say(gateway, fake, event("user_send_location", "m2"))
    image = event("user_send_image", "m3")
    image["message"]["attachments"][0]["payload"]["url"] = fake.cdn_url("pothole.jpg")
    [summary] = await say(gateway, fake, image)
    assert "0912 345 678" in summary["text"]
    buttons = summary["attachment"]["payload"]["buttons"]
    assert buttons[0] == {"title": buttons[0]["title"], "type": "oa.query.hide", "payload": "#ioc:confirm"}
    [ack] = await say(gateway, fake, event("user_send_text", "m4", text="#ioc:confirm"))

    [report] = await Store(gateway.database).reflections.all()
    assert report.code in ack["text"]
    assert (report.channel, report.sender) == ("zalo", CITIZEN)
    assert report.citizen.phone == "+84912345678" and len(report.photos) == 1
    assert (report.location.lat, report.location.lon) == (16.0678, 108.2208)
    cs_calls = [c for c in fake.calls if c.path == "/v3.0/oa/message/cs"]
    assert all(c.json["recipient"] == {"user_id": CITIZEN} for c in cs_calls)
    assert all(c.headers["access_token"] == FIRST_ACCESS for c in cs_calls)


async def test_the_same_event_delivered_twice_is_processed_once(gateway: Gateway, fake: FakeZaloAPI) -> None:
    first = event("user_send_text", "dup-1", text=FULL)
    assert gateway.web is not None
    assert (await post(gateway.web.url, first)).json()["new"] == 1
    assert (await post(gateway.web.url, first)).json()["new"] == 0
    await gateway.drain()
    assert len(fake.sent()) == 1
    assert await Store(gateway.database).inbound.count(channel="zalo") == 1


async def test_echoes_follow_and_files(gateway: Gateway, fake: FakeZaloAPI) -> None:
    assert gateway.web is not None
    assert (await post(gateway.web.url, event("oa_send_text"))).json() == {"ok": True, "received": 0, "new": 0}
    assert (await post(gateway.web.url, event("follow"))).json()["new"] == 1
    await gateway.drain()
    assert fake.sent() == []  # follow opens the window but says nothing by itself
    assert await ReplyWindows(gateway.database).last("zalo", CITIZEN) is not None
    channel = gateway.channels["zalo"]
    inbound = channel.parse("f1", CITIZEN, event("user_send_file"))
    assert inbound is not None and inbound.media[0].filename == "bien-ban.pdf" and inbound.media[0].size == 48213
    located = channel.parse("l1", CITIZEN, event("user_send_location_message"))
    assert located is not None and located.location == GeoPoint(lat=15.8801, lon=108.338)
    linked = channel.parse("t1", CITIZEN, event("user_send_text", text="https://maps.google.com/?q=16.07,108.22"))
    assert linked is not None and linked.location == GeoPoint(lat=16.07, lon=108.22)


# ---- signatures ---------------------------------------------------------------------------
WINDOW_MS = 3 * 3600_000  # ZALO_REDELIVERY_SECONDS' default


@pytest.mark.parametrize("case, status", [("missing", 401), ("wrong", 403), ("past_redelivery", 403),
                                          ("future", 403), ("tampered", 403)])
async def test_bad_signatures_are_refused(gateway: Gateway, case: str, status: int,
                                         caplog: pytest.LogCaptureFixture) -> None:
    shift = {"past_redelivery": -WINDOW_MS - 60_000, "future": 15 * 60_000}.get(case, 0)
    payload = event("user_send_text", "sig-1", ms=int(time.time() * 1000) + shift)
    body = json.dumps(payload, ensure_ascii=False).encode()  # the bytes `post` sends
    headers = {"missing": {}, "wrong": {"X-ZEvent-Signature": signature(body, payload["timestamp"], "nope")},
               "past_redelivery": {"X-ZEvent-Signature": signature(body, payload["timestamp"])},
               "future": {"X-ZEvent-Signature": signature(body, payload["timestamp"])},
               "tampered": {"X-ZEvent-Signature": signature(body, str(int(payload["timestamp"]) + 1))}}[case]
    assert gateway.web is not None
    response = await post(gateway.web.url, payload, headers)
    assert response.status_code == status
    assert await Store(gateway.database).inbound.count(channel="zalo") == 0
    why = {"past_redelivery": "past Zalo's redeliveries", "future": "in the future"}.get(case, "X-ZEvent-Signature")
    assert why in caplog.text  # the log says which check refused it


@pytest.mark.parametrize("minutes", [30, 110])
async def test_redelivery_with_the_original_timestamp_is_accepted_once(
        gateway: Gateway, fake: FakeZaloAPI, minutes: int) -> None:
    """Zalo retries a failed delivery (+30 s … +110 min) with its first signed timestamp, e.g.
    after our 503s while the database was down: the message is taken, and answered once."""
    payload = event("user_send_text", f"late-{minutes}", ms=int(time.time() * 1000) - minutes * 60_000,
                    text=FULL)
    assert gateway.web is not None
    first = await post(gateway.web.url, payload)
    assert (first.status_code, first.json()["new"]) == (200, 1)
    await gateway.drain()
    again = await post(gateway.web.url, payload)  # the retry after a lost answer: same bytes, same signature
    assert (again.status_code, again.json()["new"]) == (200, 0)
    await gateway.drain()
    [answer] = [c.json for c in fake.calls if c.path == "/v3.0/oa/message/cs"]  # one answer, not two
    assert answer["recipient"] == {"user_id": CITIZEN} and answer["message"]["text"]
    assert await Store(gateway.database).inbound.count(channel="zalo") == 1


async def test_redelivery_window_is_the_channels_setting(fake: FakeZaloAPI, database: Database) -> None:
    """ZALO_REDELIVERY_SECONDS: a delivery older than the window is refused as a replay."""
    short = make_channel(fake, database, redelivery_seconds=600)
    async with serving(database, {"zalo": short}, load_policy(POLICY)) as gw:
        assert gw.web is not None
        old = event("user_send_text", "late-20", ms=int(time.time() * 1000) - 20 * 60_000, text=FULL)
        fresh = event("user_send_text", "late-5", ms=int(time.time() * 1000) - 5 * 60_000, text=FULL)
        assert (await post(gw.web.url, old)).status_code == 403
        assert (await post(gw.web.url, fresh)).status_code == 200


def test_redelivery_setting_covers_zalos_retries() -> None:
    """Zalo's last retry comes about 110 minutes after the first attempt."""
    # pydantic-settings takes `_env_file`, but mypy sees only the fields in Settings' signature
    assert Settings(_env_file=None).zalo_redelivery_seconds >= 2 * 3600  # type: ignore[call-arg]


# ---- tokens ----------------------------------------------------------------------------
async def test_expired_token_is_refreshed_and_the_new_pair_survives_a_restart(
        fake: FakeZaloAPI, channel: ZaloChannel, database: Database) -> None:
    fake.expire()
    await channel.send(CITIZEN, Outbound(text="Xin chào"))
    assert fake.refreshes == 1 and fake.sent()[-1]["text"] == "Xin chào"
    stored = await TokenStore(database, f"zalo:{APP_ID}").load()
    assert stored is not None and (stored.access_token, stored.refresh_token) == ("access-1", "refresh-1")

    again = make_channel(fake, database)  # same configured (now spent) refresh token
    again.bind(database)
    await again.start(lambda *_: asyncio.sleep(0, True))
    fake.expire()
    await again.send(CITIZEN, Outbound(text="Lần hai"))
    await again.stop()
    assert fake.refreshes == 2 and fake.sent()[-1]["text"] == "Lần hai"
    stored = await TokenStore(database, f"zalo:{APP_ID}").load()
    assert stored is not None and stored.refresh_token == "refresh-2"


async def test_concurrent_sends_refresh_once(fake: FakeZaloAPI, channel: ZaloChannel) -> None:
    fake.expire()
    await asyncio.gather(*(channel.send(CITIZEN, Outbound(text=f"tin {i}")) for i in range(5)))
    assert fake.refreshes == 1 and len(fake.sent()) == 5


async def test_a_refused_refresh_alerts_staff_once(
        fake: FakeZaloAPI, channel: ZaloChannel, database: Database) -> None:
    fake.refresh_token = "revoked-in-the-console"
    fake.expire()
    for _ in range(2):
        with pytest.raises(RetryLater):
            await channel.send(CITIZEN, Outbound(text="Xin chào"))
    [alert] = await Store(database).outbox.all(channel="telegram")
    assert alert.address == STAFF[1] and "ZALO_REFRESH_TOKEN" in alert.message.text
    doc = await database.db.tokens.find_one({"_id": f"zalo:{APP_ID}"})
    assert doc is not None and "Invalid refresh token" in doc["last_error"]


# ---- reply window, errors -------------------------------------------------------------------
async def test_window_closed_is_reported_and_marked_in_the_outbox(
        fake: FakeZaloAPI, channel: ZaloChannel, database: Database) -> None:
    fake.fail("/v3.0/oa/message/cs", -230)
    with pytest.raises(WindowClosed):
        await channel.send(CITIZEN, Outbound(text="Kết quả xử lý"))
    closed: list[str] = []

    async def fallback(item: Any) -> None:
        closed.append(item.id)
    worker = OutboxWorker(database, {"zalo": channel}, on_window_closed=fallback)
    await ReplyWindows(database).touch("zalo", "silent-user", utcnow() - timedelta(days=8))
    await Store(database).outbox.enqueue("result-1", "zalo", "silent-user", Outbound(text="Kết quả", kind="result"))
    calls = len(fake.calls)
    assert await worker.deliver()
    [item] = await Store(database).outbox.all(channel="zalo")
    assert item.status == "window_closed" and closed == ["result-1"]
    assert len(fake.calls) == calls  # after 7 days of silence Zalo is not even asked


@pytest.mark.parametrize("error, status", [(-32, 200), (None, 502), (None, 429)])
async def test_rate_limit_and_server_errors_are_retried(
        fake: FakeZaloAPI, channel: ZaloChannel, database: Database, error: int | None, status: int) -> None:
    fake.fail("/v3.0/oa/message/cs", error, status=status)
    await Store(database).outbox.enqueue("r-1", "zalo", CITIZEN, Outbound(text="Xin chào"))
    worker = OutboxWorker(database, {"zalo": channel})
    await worker.deliver()
    [item] = await Store(database).outbox.all()
    assert item.status == "pending" and item.next_attempt_at > utcnow()
    await database.db.outbox.update_one({"_id": "r-1"}, {"$set": {"next_attempt_at": utcnow()}})
    await worker.deliver()
    [item] = await Store(database).outbox.all()
    assert item.status == "sent" and fake.sent()[-1]["text"] == "Xin chào"


async def test_photos_are_uploaded_then_sent_and_other_errors_are_permanent(
        fake: FakeZaloAPI, channel: ZaloChannel, database: Database) -> None:
    file_id = await MediaStore(database).save(b"\xff\xd8\xff fake jpeg", content_type="image/jpeg",
                                              filename="p.jpg", metadata={})
    await channel.send(CITIZEN, Outbound(text="Ảnh hiện trường", photos=[file_id, "https://cdn.example/x.jpg"],
                                         buttons=[Button(label="Đánh giá 5", action="rate:5")]))
    [upload] = [c for c in fake.calls if c.path == "/v2.0/oa/upload/image"]
    assert upload.files["file"] == b"\xff\xd8\xff fake jpeg"
    uploaded, by_url, text = fake.sent()[-3:]
    assert uploaded["attachment"]["payload"]["elements"][0]["attachment_id"].startswith("att-")
    assert by_url["attachment"]["payload"]["elements"][0]["url"] == "https://cdn.example/x.jpg"
    assert text["attachment"]["payload"]["buttons"][0]["payload"] == "#ioc:rate:5"
    fake.fail("/v3.0/oa/message/cs", -201)
    with pytest.raises(PermanentFailure):
        await channel.send(CITIZEN, Outbound(text="x"))
