"""Messenger channel against the fake Graph API: signed webhooks over HTTP into the real
gateway, the subscription challenge, the 24-hour window and message tags, error mapping."""
from __future__ import annotations

import copy
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from bots.gateway import Gateway
from cases.policy import load_policy
from channels.base import PermanentFailure, RetryLater, Unreachable, WindowClosed
from channels.facebook import FacebookChannel
from channels.outbox import OutboxWorker
from normalizer.media import MediaRejected
from normalizer.messages import Button, GeoPoint, Inbound, MediaRef, Outbound, utcnow
from store.database import Database
from store.media import MediaStore
from store.repos import Store
from store.windows import ReplyWindows
from tests.chat import serving
from tests.fakes import running
from tests.fakes.graph_api import (
    APP_SECRET,
    PAGE_TOKEN,
    VERIFY_TOKEN,
    VERSION,
    FakeGraphAPI,
)

FIXTURES = Path(__file__).parent / "fixtures"
POLICY = Path(__file__).parent.parent / "policies" / "quang_nam.yaml"
PSID = "7712345678901234"
FULL = "Tôi là Nguyễn Văn An, 0912 345 678, ổ gà lớn trước số 12 Hùng Vương, phường Hải Châu"


def webhook(name: str, mid: str | None = None, **message: Any) -> dict[str, Any]:
    data = json.loads((FIXTURES / "facebook" / f"{name}.json").read_text(encoding="utf-8"))
    for entry in data["entry"]:
        for item in entry["messaging"]:
            item["timestamp"] = int(time.time() * 1000)
    first = data["entry"][0]["messaging"][0]
    if "message" in first:
        first["message"].update(copy.deepcopy(message))
        first["message"]["mid"] = mid or first["message"]["mid"]
    return data


def parsed(channel: FacebookChannel, message_id: str, item: dict[str, Any]) -> Inbound:
    """`channel.parse` of an item from PSID that it reads."""
    inbound = channel.parse(message_id, PSID, item)
    assert inbound is not None, "the item was not read"
    return inbound


def signature(body: bytes, secret: str = APP_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


async def post(url: str, payload: dict[str, Any], headers: dict[str, str] | None = None) -> httpx.Response:
    body = json.dumps(payload, ensure_ascii=False).encode()
    headers = {"X-Hub-Signature-256": signature(body)} if headers is None else headers
    async with httpx.AsyncClient() as client:
        return await client.post(f"{url}/facebook/webhook", content=body,
                                 headers={"content-type": "application/json", **headers})


def make_channel(fake: FakeGraphAPI, database: Database, **options: Any) -> FacebookChannel:
    return FacebookChannel(page_token=PAGE_TOKEN, app_secret=APP_SECRET, verify_token=VERIFY_TOKEN,
                           graph_url=fake.url, api_version=VERSION,
                           media_loader=MediaStore(database).load, **options)


@pytest.fixture
async def fake() -> AsyncIterator[FakeGraphAPI]:
    async with running(FakeGraphAPI()) as api:
        yield api


@pytest.fixture
async def gateway(fake: FakeGraphAPI, database: Database) -> AsyncIterator[Gateway]:
    async with serving(database, {"facebook": make_channel(fake, database)}, load_policy(POLICY)) as gw:
        yield gw


@pytest.fixture
async def channel(fake: FakeGraphAPI, database: Database) -> AsyncIterator[FacebookChannel]:
    ch = make_channel(fake, database, message_tags={"result": "HUMAN_AGENT"})
    ch.bind(database)

    async def sink(*_: Any) -> bool:
        return True
    await ch.start(sink)
    await ReplyWindows(database).touch("facebook", PSID, utcnow())
    yield ch
    await ch.stop()


def url(gateway: Gateway) -> str:
    assert gateway.web is not None
    return gateway.web.url


async def say(gateway: Gateway, fake: FakeGraphAPI, payload: dict[str, Any]) -> list[dict[str, Any]]:
    before = len(fake.calls)
    response = await post(url(gateway), payload)
    assert response.status_code == 200, response.text
    await gateway.drain()
    return [c.body for c in fake.calls[before:]]


# ---- subscription and signatures ----------------------------------------------------------
async def test_subscription_challenge(gateway: Gateway) -> None:
    async with httpx.AsyncClient() as client:
        ok = await client.get(f"{url(gateway)}/facebook/webhook", params={
            "hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1158201444"})
        wrong = await client.get(f"{url(gateway)}/facebook/webhook", params={
            "hub.mode": "subscribe", "hub.verify_token": "guess", "hub.challenge": "1158201444"})
    assert (ok.status_code, ok.text) == (200, "1158201444")
    assert wrong.status_code == 403


@pytest.mark.parametrize("headers, status", [({}, 401), ({"X-Hub-Signature-256": "sha256=00"}, 403),
                                             ({"X-Hub-Signature-256": "sha1=abc"}, 403)])
async def test_bad_signatures_are_refused(gateway: Gateway, headers: dict[str, str], status: int) -> None:
    assert (await post(url(gateway), webhook("message_text"), headers)).status_code == status
    assert await Store(gateway.database).inbound.count(channel="facebook") == 0


async def test_signed_with_another_secret_is_refused(gateway: Gateway) -> None:
    payload = webhook("message_text")
    body = json.dumps(payload, ensure_ascii=False).encode()
    response = await post(url(gateway), payload, {"X-Hub-Signature-256": signature(body, "other")})
    assert response.status_code == 403


# ---- receiving ------------------------------------------------------------------------------
async def test_whole_report_is_filed_and_acknowledged(gateway: Gateway, fake: FakeGraphAPI) -> None:
    fake.add_file("pothole.jpg", (FIXTURES / "images" / "pothole.jpg").read_bytes())
    await say(gateway, fake, webhook("message_text", "m1", text=FULL))
    await say(gateway, fake, webhook("message_map_link", "m2"))
    image = webhook("message_image", "m3")
    image["entry"][0]["messaging"][0]["message"]["attachments"][0]["payload"]["url"] = fake.cdn_url("pothole.jpg")
    [summary] = await say(gateway, fake, image)
    assert "0912 345 678" in summary["message"]["text"]
    assert summary["message"]["quick_replies"][0]["payload"] == "confirm"
    assert summary["messaging_type"] == "RESPONSE" and summary["recipient"] == {"id": PSID}
    [ack] = await say(gateway, fake, webhook("quick_reply", "m4"))

    [report] = await Store(gateway.database).reflections.all()
    assert report.code in ack["message"]["text"]
    assert (report.channel, report.sender) == ("facebook", PSID)
    assert report.citizen.phone == "+84912345678" and len(report.photos) == 1
    assert (report.location.lat, report.location.lon) == (16.0679, 108.2209)


async def test_batched_entries_skip_echoes_and_receipts(gateway: Gateway) -> None:
    response = await post(url(gateway), webhook("batch_with_echo_and_receipts"))
    assert response.json() == {"ok": True, "received": 2, "new": 2}
    records = await gateway.database.db.inbound.find({}, {"message_id": 1, "sender": 1}).to_list()
    assert {(r["message_id"], r["sender"]) for r in records} == {
        ("m_batch_one", PSID), ("m_batch_two", "8823456789012345")}


async def test_the_same_event_delivered_twice_is_processed_once(gateway: Gateway, fake: FakeGraphAPI) -> None:
    payload = webhook("message_text", "m_dup", text=FULL)
    assert (await post(url(gateway), payload)).json()["new"] == 1
    assert (await post(url(gateway), payload)).json()["new"] == 0
    await gateway.drain()
    assert len(fake.calls) == 1


def test_parse_postback_quick_reply_and_links(database: Database) -> None:
    channel = FacebookChannel(page_token="t", app_secret="s", verify_token="v", media_loader=MediaStore(database).load)

    def item(name: str) -> dict[str, Any]:
        return webhook(name)["entry"][0]["messaging"][0]

    assert parsed(channel, "p", item("postback")).action == "help"
    quick = parsed(channel, "q", item("quick_reply"))
    assert (quick.action, quick.text) == ("confirm", "Đồng ý")
    osm = webhook("message_text", text="https://www.openstreetmap.org/?mlat=15.88&mlon=108.33#map=17/15.88/108.33")
    assert parsed(channel, "o", osm["entry"][0]["messaging"][0]).location == GeoPoint(lat=15.88, lon=108.33)
    assert parsed(channel, "a", item("message_text")).location is None


# ---- one bad item in a batch ----------------------------------------------------------------
OTHER = "8823456789012345"


def poison_batch() -> dict[str, Any]:
    """Meta's own messaging_postbacks example (a sender with only a `user_ref`, the timestamp a
    string of seconds) between two citizens' messages."""
    data = webhook("batch_with_user_ref_postback")
    data["entry"][0]["messaging"][1]["timestamp"] = str(int(time.time()))
    return data


async def test_poison_user_ref_item_is_ignored_and_the_two_citizens_answered(
        gateway: Gateway, fake: FakeGraphAPI) -> None:
    batch = poison_batch()
    response = await post(url(gateway), batch)
    assert response.status_code == 200 and response.json() == {"ok": True, "received": 3, "new": 3}
    await gateway.drain()
    assert {c.body["recipient"]["id"] for c in fake.calls} == {PSID, OTHER}
    record = await gateway.database.db.inbound.find_one({"channel": "facebook", "message_id": "m_MESSAGE-ID"})
    assert record is not None
    assert record["status"] == "ignored" and "user_ref" in record["reason"]
    assert record["sender"] == "user_ref:USER-REF-ID"
    assert await ReplyWindows(gateway.database).last("facebook", "user_ref:USER-REF-ID") is None

    answered = len(fake.calls)
    again = await post(url(gateway), batch)  # Meta resends the batch: nothing is new, nothing said twice
    assert again.status_code == 200 and again.json()["new"] == 0
    await gateway.drain()
    assert len(fake.calls) == answered


async def test_poison_items_of_unknown_shape_do_not_hold_back_the_batch(
        gateway: Gateway, fake: FakeGraphAPI, caplog: pytest.LogCaptureFixture) -> None:
    batch = poison_batch()
    items = batch["entry"][0]["messaging"]
    now = int(time.time() * 1000)
    items[1] = {"sender": {"id": "9934567890123456"}, "recipient": {"id": "104598372194856"},
                "timestamp": now, "message": "ổ gà bí mật"}  # a message that is not an object
    items.insert(2, {"sender": {"id": "9934567890123457"}, "recipient": {"id": "104598372194856"},
                     "timestamp": now, "message": {"mid": "m_huge", "text": "ổ gà bí mật", "seq": 2 ** 70}})
    items.insert(3, "ổ gà bí mật")  # not even an object
    batch["entry"].append({"id": "104598372194856", "time": now, "messaging": "ổ gà bí mật"})
    response = await post(url(gateway), batch)
    assert response.status_code == 200 and response.json()["received"] == 3
    await gateway.drain()
    assert {c.body["recipient"]["id"] for c in fake.calls} == {PSID, OTHER}
    record = await gateway.database.db.inbound.find_one({"sender": "9934567890123456"})
    assert record is not None
    assert (record["status"], record["reason"]) == ("ignored", "message is not an object")
    assert "item 0.2 (id 'm_huge') skipped: payload cannot be stored" in caplog.text
    assert "item 0.3 skipped: not an object" in caplog.text and "entry 1 skipped" in caplog.text
    assert "bí mật" not in caplog.text  # positions, ids and reasons; never what citizens wrote


@pytest.mark.parametrize("stamp, expected", [
    (1458692752478, datetime(2016, 3, 23, 0, 25, 52, 478000, tzinfo=UTC)),
    ("1458692752478", datetime(2016, 3, 23, 0, 25, 52, 478000, tzinfo=UTC)),
    ("1527459824", datetime(2018, 5, 27, 22, 23, 44, tzinfo=UTC)),
    (1527459824, datetime(2018, 5, 27, 22, 23, 44, tzinfo=UTC))])
def test_timestamps_in_milliseconds_or_seconds_numbers_or_strings(
        database: Database, stamp: int | str, expected: datetime) -> None:
    channel = FacebookChannel(page_token="t", app_secret="s", verify_token="v", media_loader=MediaStore(database).load)
    item = webhook("postback")["entry"][0]["messaging"][0]
    item["timestamp"] = stamp
    assert parsed(channel, "p", item).received_at == expected


async def test_a_string_seconds_timestamp_is_not_read_as_1970(gateway: Gateway, fake: FakeGraphAPI) -> None:
    """Read as milliseconds it was January 1970, the 24-hour window long shut: no answer."""
    payload = webhook("message_text", "m_seconds", text=FULL)
    payload["entry"][0]["messaging"][0]["timestamp"] = str(int(time.time()))
    [answer] = await say(gateway, fake, payload)
    assert answer["messaging_type"] == "RESPONSE" and answer["recipient"] == {"id": PSID}
    last = await ReplyWindows(gateway.database).last("facebook", PSID)
    assert last is not None and abs((utcnow() - last.replace(tzinfo=UTC)).total_seconds()) < 60


async def test_fetch_media_is_size_capped(fake: FakeGraphAPI, database: Database) -> None:
    fake.add_file("big.jpg", b"\xff" * 5000)
    channel = make_channel(fake, database, max_file_bytes=1000)
    with pytest.raises(MediaRejected, match="too_large"):
        await channel.fetch_media(MediaRef(ref=fake.cdn_url("big.jpg")))
    with pytest.raises(MediaRejected, match="unavailable"):
        await channel.fetch_media(MediaRef(ref=fake.cdn_url("gone.jpg")))
    await channel.stop()


# ---- sending --------------------------------------------------------------------------------
async def test_outside_the_window_a_tag_or_window_closed(
        fake: FakeGraphAPI, channel: FacebookChannel, database: Database) -> None:
    await database.db.reply_windows.update_one({"_id": f"facebook:{PSID}"},
                                               {"$set": {"last_inbound_at": utcnow() - timedelta(days=2)}})
    await channel.send(PSID, Outbound(text="Kết quả xử lý", kind="result"))
    assert fake.calls[-1].body["messaging_type"] == "MESSAGE_TAG" and fake.calls[-1].body["tag"] == "HUMAN_AGENT"
    with pytest.raises(WindowClosed):
        await channel.send(PSID, Outbound(text="Nhắc việc", kind="reminder"))

    closed: list[str] = []

    async def fallback(item: Any) -> None:
        closed.append(item.id)
    await ReplyWindows(database).touch("facebook", "old-user", utcnow() - timedelta(days=9))
    await Store(database).outbox.enqueue("res-1", "facebook", "old-user", Outbound(text="Kết quả", kind="result"))
    await OutboxWorker(database, {"facebook": channel}, on_window_closed=fallback).deliver()
    [item] = await Store(database).outbox.all(channel="facebook")
    assert item.status == "window_closed" and closed == ["res-1"]


@pytest.mark.parametrize("status, code, subcode, outcome", [
    (429, None, None, RetryLater), (500, 2, None, RetryLater), (400, 613, None, RetryLater),
    (400, 10, 2018278, WindowClosed), (400, 551, 1545041, Unreachable), (400, 100, None, PermanentFailure),
    (400, 190, None, RetryLater)])
async def test_graph_errors_are_mapped(fake: FakeGraphAPI, channel: FacebookChannel, status: int,
                                       code: int | None, subcode: int | None, outcome: type) -> None:
    fake.fail(status, code, subcode, retry_after=7 if status == 429 else None)
    with pytest.raises(outcome) as raised:
        await channel.send(PSID, Outbound(text="Xin chào"))
    if status == 429:
        assert isinstance(raised.value, RetryLater) and raised.value.after == 7


async def test_429_is_retried_by_the_outbox(fake: FakeGraphAPI, channel: FacebookChannel, database: Database) -> None:
    fake.fail(429, 4, None, retry_after=1)
    await Store(database).outbox.enqueue("r-1", "facebook", PSID, Outbound(text="Xin chào"))
    worker = OutboxWorker(database, {"facebook": channel})
    await worker.deliver()
    [item] = await Store(database).outbox.all()
    assert item.status == "pending" and item.next_attempt_at > utcnow()
    await database.db.outbox.update_one({"_id": "r-1"}, {"$set": {"next_attempt_at": utcnow()}})
    await worker.deliver()
    [item] = await Store(database).outbox.all()
    assert item.status == "sent" and item.platform_message_id == "m_2"


async def test_photo_upload_long_text_and_quick_replies(
        fake: FakeGraphAPI, channel: FacebookChannel, database: Database) -> None:
    file_id = await MediaStore(database).save(b"\xff\xd8\xff fake jpeg", content_type="image/jpeg",
                                              filename="p.jpg", metadata={})
    buttons = [Button(label=f"{n} sao - rất lâu rồi mới xử lý", action=f"rate:{n}") for n in range(1, 6)]
    await channel.send(PSID, Outbound(text="Đánh giá " * 300, photos=[file_id], buttons=buttons))
    upload, first, last = fake.calls
    assert upload.files["filedata"] == b"\xff\xd8\xff fake jpeg"
    assert upload.body["message"]["attachment"]["type"] == "image" and upload.body["recipient"] == {"id": PSID}
    assert len(first.body["message"]["text"]) <= 2000 and "quick_replies" not in first.body["message"]
    quick = last.body["message"]["quick_replies"]
    assert [q["payload"] for q in quick] == [f"rate:{n}" for n in range(1, 6)]
    assert all(len(q["title"]) <= 20 for q in quick)
