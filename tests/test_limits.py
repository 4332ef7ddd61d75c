"""Abuse limits and hostile input, through the real gateway, web app and database.

Body size (413), photo bytes and pixels (decompression bombs), photos per report, a
flood from one sender (throttled, one polite notice), an endless conversation (started
over), webhook signatures (missing, wrong, replayed) with no secret in the logs, escaping
of user text on web pages, operators in user input, and user file names.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import time
from typing import Any, AsyncIterator, Awaitable, Callable

import httpx
import pytest
from PIL import Image

from bench.gateway_proc import SECRET, TOKEN, WEBHOOK_PATH, WEBHOOK_URL
from bots.gateway import Gateway
from bots.limits import FloodLimits
from channels.facebook import FacebookChannel
from channels.replay import ReplayChannel
from channels.telegram import TelegramChannel
from channels.webapp import build_app
from channels.zalo import ZaloChannel
from normalizer.media import MediaLimits, MediaRejected, inspect_image
from normalizer.texts import Texts
from store.database import Database
from store.repos import Store
from tests.chat import CHANNELS, IMAGES, Citizen, Clock, quang_nam

POTHOLE = (IMAGES / "pothole.jpg").read_bytes()


def png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("1", (width, height)).save(out, "PNG", optimize=True)
    return out.getvalue()


@pytest.fixture
async def limited(database: Database) -> AsyncIterator[Callable[..., Awaitable[Gateway]]]:
    """Builds a started gateway on replay channels with the given flood limits."""
    made: list[Gateway] = []

    async def build(**flood: int) -> Gateway:
        channels = {n: ReplayChannel(n, IMAGES) for n in CHANNELS}
        gateway = Gateway(database, quang_nam(), channels, clock=Clock(), flood=FloodLimits(**flood))
        await gateway.start(workers=False)
        made.append(gateway)
        return gateway
    yield build
    for gateway in made:
        await gateway.stop()


# ---- photos ------------------------------------------------------------------------------

def test_photo_over_the_byte_limit_is_refused() -> None:
    with pytest.raises(MediaRejected, match="too_large"):
        inspect_image(POTHOLE, MediaLimits(max_bytes=len(POTHOLE) - 1))


def test_photo_over_the_pixel_limit_is_refused_from_its_header() -> None:
    with pytest.raises(MediaRejected, match="too_many_pixels"):
        inspect_image(png(3000, 2000), MediaLimits(max_pixels=5_000_000))


def test_decompression_bomb_is_refused_without_decoding_it() -> None:
    bomb = png(12_000, 12_000)  # 144 megapixels in a few kilobytes
    assert len(bomb) < 100_000
    started = time.monotonic()
    with pytest.raises(MediaRejected):
        inspect_image(bomb, MediaLimits())
    assert time.monotonic() - started < 2


async def test_photos_per_report_are_capped_across_messages(database: Database, limited) -> None:
    gateway = await limited()
    citizen = Citizen(gateway, "zalo", "p1")
    for _ in range(6):
        answer = await citizen.say(photo="pothole.jpg")
    conv = await Store(database).conversations.get("zalo", "p1")
    assert conv is not None and len(conv.draft.photos) == MediaLimits().max_count
    assert gateway.intake.say("problem", "vi", problem="too_many", value="") in answer[-1]
    assert await database.db["media.files"].count_documents({}) == MediaLimits().max_count


# ---- flood and endless conversations -------------------------------------------------

async def test_a_flood_is_throttled_with_one_polite_notice(database: Database, limited) -> None:
    citizen = Citizen(await limited(per_minute=3), "zalo", "f1")
    answers = [await citizen.say(f"tin nhắn số {n}") for n in range(7)]
    notice = Texts().render("throttled", "vi", per_minute=3)
    assert answers[3] == [notice] and answers[4:] == [[], [], []]
    store = Store(database)
    assert await store.inbound.count(status="throttled") == 4
    assert await store.inbound.count(status="done") == 3


async def test_an_endless_conversation_is_started_over_once(database: Database, limited) -> None:
    citizen = Citizen(await limited(max_turns=4), "telegram", "c1")
    answers = [await citizen.say(f"đèn đường hỏng lần {n}") for n in range(6)]
    assert answers[5] == [Texts().render("too_long", "vi", max_turns=4)]
    assert await Store(database).conversations.get("telegram", "c1") is None
    assert await Store(database).inbound.count(status="too_long") == 1
    assert (await citizen.say("Ổ gà trước nhà số 5 Trần Phú"))  # a fresh start is answered


# ---- webhooks: body size, signatures, secrets ----------------------------------------

@pytest.fixture
async def hooks(database: Database) -> AsyncIterator[httpx.AsyncClient]:
    """Telegram, Zalo and Facebook webhooks behind the real web app, 4 KB body limit."""
    async def no_media(_: str) -> bytes:
        return b""

    async def healthy() -> dict[str, Any]:
        return {"database": "ok"}
    channels: dict[str, TelegramChannel | ZaloChannel | FacebookChannel] = {
        "telegram": TelegramChannel(TOKEN, media_loader=no_media, webhook_url=WEBHOOK_URL, secret_token=SECRET),
        "zalo": ZaloChannel(app_id="app", app_secret="zalo-app-secret", oa_secret_key="zalo-oa-key",
                            refresh_token="r", media_loader=no_media),
        "facebook": FacebookChannel(page_token="p", app_secret="fb-app-secret", verify_token="v",
                                    media_loader=no_media)}
    for channel in channels.values():
        if hasattr(channel, "bind"):
            channel.bind(database)

    async def sink(message_id: str, sender: str, payload: dict) -> bool:
        return await Store(database).inbound.record("x", message_id, sender, payload)
    for channel in channels.values():
        channel._sink = sink  # webhook mode without calling the platforms' APIs
    routes = [r for ch in channels.values() for r in ch.routes()]
    app = build_app(routes, healthy, max_body_bytes=4096)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hooks") as client:
        yield client


async def test_a_body_over_the_limit_is_413_and_stores_nothing(hooks, database: Database) -> None:
    big = {"update_id": 1, "message": {"text": "x" * 5000}}
    r = await hooks.post(WEBHOOK_PATH, json=big, headers={"X-Telegram-Bot-Api-Secret-Token": SECRET})
    assert r.status_code == 413 and await database.db.inbound.count_documents({}) == 0


def zalo_signature(body: bytes, stamp: str) -> str:
    return "mac=" + hashlib.sha256(b"app" + body + stamp.encode() + b"zalo-oa-key").hexdigest()


async def test_every_webhook_refuses_missing_wrong_and_replayed_signatures(
        hooks, database: Database, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    tg = json.dumps({"update_id": 7, "message": {"message_id": 1, "date": 1, "chat": {"id": 1, "type": "private"}}})
    old = str(int((time.time() - 4 * 3600) * 1000))  # past ZALO_REDELIVERY_SECONDS
    zalo = json.dumps({"event_name": "user_send_text", "timestamp": old,
                       "sender": {"id": "z1"}, "message": {"msg_id": "m1", "text": "hi"}}).encode()
    fb = json.dumps({"object": "page", "entry": []}).encode()
    tg_h, z_h, fb_h = "X-Telegram-Bot-Api-Secret-Token", "X-ZEvent-Signature", "X-Hub-Signature-256"
    cases = [(WEBHOOK_PATH, tg.encode(), {}, 401), (WEBHOOK_PATH, tg.encode(), {tg_h: "guess"}, 403),
             ("/zalo/webhook", zalo, {}, 401), ("/zalo/webhook", zalo, {z_h: "mac=00"}, 403),
             ("/zalo/webhook", zalo, {z_h: zalo_signature(zalo, old)}, 403),  # signed, but an hour old
             ("/facebook/webhook", fb, {}, 401), ("/facebook/webhook", fb, {fb_h: "sha256=00"}, 403)]
    for path, body, headers, status in cases:
        r = await hooks.post(path, content=body, headers={**headers, "content-type": "application/json"})
        assert r.status_code == status, (path, headers)
    assert await database.db.inbound.count_documents({}) == 0
    for secret in (SECRET, "zalo-oa-key", "zalo-app-secret", "fb-app-secret", TOKEN):
        assert secret not in caplog.text


# ---- what users write never becomes markup, an operator or a file name ---------------

async def test_user_text_stays_text_and_user_file_names_never_reach_the_disk(database: Database, limited) -> None:
    """Web pages escape it (tests/test_portal.py); e-mails to agencies are text/plain."""
    gateway = await limited()
    hostile = Citizen(gateway, "zalo", '{"$gt": ""}')
    await Citizen(gateway, "zalo", "someone-else").say("Đèn đường hỏng ở Hải Châu")
    [answer] = await hostile.say('<script>alert(1)</script> {"$where": "sleep(1000)"} ổ gà số 9 Trần Phú',
                                 photo="../../../../../../etc/hostname")
    conv = await Store(database).conversations.get("zalo", '{"$gt": ""}')
    assert conv is not None and conv.sender == '{"$gt": ""}'
    assert (conv.draft.content or "").startswith("<script>alert(1)</script>")
    assert conv.draft.photos == []  # the path outside the transcript folder was not read
    assert gateway.intake.say("problem", "vi", problem="not_an_image", value="") in answer
    await hostile.say(photo="pothole.jpg")
    [stored] = [f async for f in database.db["media.files"].find({})]
    assert stored["filename"].startswith("zalo-") and "/" not in stored["filename"]
