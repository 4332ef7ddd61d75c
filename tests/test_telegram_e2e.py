"""A Telegram citizen's whole report through the real gateway, database and fake Bot API.

The channel long-polls the fake server; the gateway stores each update, the pipeline parses
it, fetches photos from the fake's file route, the intake bot answers, and the outbox sends
the answers back to the fake — which is what the assertions read.
"""
from __future__ import annotations

import asyncio
import copy
import functools
import json
from collections import Counter
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import httpx
import pytest

from bots.gateway import Gateway
from bots.pipeline import MAX_ATTEMPTS
from cases.policy import load_policy
from channels.telegram import TelegramChannel
from store.database import Database
from store.media import MediaStore
from store.repos import Store
from tests.fakes import running
from tests.fakes.telegram_api import TOKEN, FakeTelegramAPI

FIXTURES = Path(__file__).parent / "fixtures"
POLICY = Path(__file__).parent.parent / "policies" / "quang_nam.yaml"
CITIZEN = 5551234567
LARGEST_PHOTO = "AgACAgUAAxkBAAMMZ0Nr-large"


def update(name: str, update_id: int, **changes: Any) -> dict[str, Any]:
    data = json.loads((FIXTURES / "telegram" / f"{name}.json").read_text(encoding="utf-8"))
    data["update_id"] = update_id
    body = data.get("message") or data["callback_query"]
    body.update(copy.deepcopy(changes))
    return data


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegramAPI]:
    async with running(FakeTelegramAPI()) as api:
        yield api


@pytest.fixture
async def gateway(fake: FakeTelegramAPI, database: Database) -> AsyncIterator[Gateway]:
    channel = TelegramChannel(TOKEN, base_url=fake.base_url, base_file_url=fake.base_file_url,
                              media_loader=MediaStore(database).load, poll_timeout=1)
    gateway = Gateway(database, load_policy(POLICY), {"telegram": channel})
    await gateway.start(workers=False)  # the channel polls; the test drives the workers
    yield gateway
    await gateway.stop()


async def until(condition: Callable[[], Any], seconds: float = 10.0) -> None:
    async with asyncio.timeout(seconds):
        while not await condition():
            await asyncio.sleep(0.02)


async def say(fake: FakeTelegramAPI, gateway: Gateway, *updates: dict[str, Any]) -> list[str]:
    """Push updates to the fake, wait until the channel stored them, process, return replies."""
    before = len(fake.calls_to("sendMessage"))
    store = Store(gateway.database)
    for u in updates:
        fake.push(u)
        mid = str(u["update_id"])
        await until(functools.partial(_stored, store, mid))
    await gateway.drain()
    return [c.params["text"] for c in fake.calls_to("sendMessage")[before:]]


async def _stored(store: Store, message_id: str) -> bool:
    return await store.inbound.count(channel="telegram", message_id=message_id) > 0


async def test_whole_report_is_stored_and_acknowledged(fake: FakeTelegramAPI, gateway: Gateway) -> None:
    fake.add_file(LARGEST_PHOTO, (FIXTURES / "images" / "pothole.jpg").read_bytes())
    await say(fake, gateway, update("private_text", 1), update("private_location", 2),
              update("private_photo", 3))
    assert fake.calls_to("getFile")[0].params["file_id"] == LARGEST_PHOTO
    await say(fake, gateway, update("callback_query", 4, id="q4", data="yes"))  # name offered
    await say(fake, gateway, update("private_contact", 5))
    summary = fake.calls_to("sendMessage")[-1]
    assert "0912 345 678" in summary.params["text"]
    assert summary.params["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "confirm"
    [ack] = await say(fake, gateway, update("callback_query", 6, id="q6", data="confirm"))

    [reflection] = await Store(gateway.database).reflections.all()
    assert reflection.code in ack
    assert (reflection.channel, reflection.sender) == ("telegram", str(CITIZEN))
    assert reflection.citizen.name == "Lan Nguyễn Thị" and reflection.citizen.phone == "+84912345678"
    assert reflection.content.startswith("Đèn đường ngõ 12 Trần Phú")
    assert (reflection.location.lat, reflection.location.lon) == (16.067781, 108.220824)
    assert len(reflection.photos) == 1
    assert all(c.params["chat_id"] == CITIZEN for c in fake.calls_to("sendMessage"))
    await gateway.stop()  # waits for the button answers, sent after the 200
    assert [c.params["callback_query_id"] for c in fake.calls_to("answerCallbackQuery")] == ["q4", "q6"]


async def test_redelivered_update_is_processed_once(fake: FakeTelegramAPI, gateway: Gateway) -> None:
    first = update("private_text", 21)
    replies = await say(fake, gateway, first, first)  # Telegram delivers the same update twice
    assert len(replies) == 1
    store = Store(gateway.database)
    assert await store.inbound.count(channel="telegram", message_id="21") == 1
    assert await store.inbound.count(channel="telegram") == 1


async def test_a_photo_that_is_not_an_image_is_refused(fake: FakeTelegramAPI, gateway: Gateway) -> None:
    fake.add_file("BQACAgUAAxkBAAMNZ0Ns-doc", (FIXTURES / "images" / "not_a_photo.jpg").read_bytes())
    await say(fake, gateway, update("private_text", 31), update("private_location", 32))
    [answer] = await say(fake, gateway, update("private_document_image", 33, document={
        "file_name": "anh.jpg", "mime_type": "image/jpeg", "file_id": "BQACAgUAAxkBAAMNZ0Ns-doc",
        "file_unique_id": "AgADdoc", "file_size": 1200}))
    conversation = await Store(gateway.database).conversations.get("telegram", str(CITIZEN))
    assert conversation is not None and conversation.draft.photos == []
    assert conversation.asking == "photo"
    assert gateway.intake.say("problem", "vi", problem="not_an_image", value="") in answer


async def test_webhook_mode_through_the_gateways_web_app(fake: FakeTelegramAPI, database: Database) -> None:
    channel = TelegramChannel(TOKEN, base_url=fake.base_url, base_file_url=fake.base_file_url,
                              media_loader=MediaStore(database).load,
                              webhook_url="https://ioc.example.vn/hooks/telegram", secret_token="s3cr3t")
    gateway = Gateway(database, load_policy(POLICY), {"telegram": channel}, web=("127.0.0.1", 0))
    await gateway.start(workers=False)
    try:
        assert fake.webhook is not None and fake.webhook["url"] == "https://ioc.example.vn/hooks/telegram"
        assert gateway.web is not None
        async with httpx.AsyncClient(base_url=gateway.web.url) as client:
            wrong = await client.post("/hooks/telegram", json=update("private_text", 41),
                                      headers={"X-Telegram-Bot-Api-Secret-Token": "guess"})
            right = await client.post("/hooks/telegram", json=update("private_text", 41),
                                      headers={"X-Telegram-Bot-Api-Secret-Token": "s3cr3t"})
            health = await client.get("/healthz")
        assert (wrong.status_code, right.status_code) == (403, 200)
        assert health.json() == {"database": "ok", "channels": ["telegram"]}
        await gateway.drain()
        assert len(fake.calls_to("sendMessage")) == 1
    finally:
        await gateway.stop()


def from_chat(data: dict[str, Any], chat_id: int) -> dict[str, Any]:
    body = data["message"]
    body["chat"], body["from"] = {**body["chat"], "id": chat_id}, {**body["from"], "id": chat_id}
    return data


async def test_an_event_that_keeps_failing_holds_up_nobody_else(fake: FakeTelegramAPI, gateway: Gateway) -> None:
    """Three citizens' messages in one batch; one photo cannot be fetched (the Bot API keeps
    answering 500): the other two are answered, the photo is tried MAX_ATTEMPTS times and
    then marked failed, and that citizen's next message is handled as usual."""
    fake.add_file(LARGEST_PHOTO, (FIXTURES / "images" / "pothole.jpg").read_bytes())
    fake.fail("getFile", 500, "Internal Server Error", times=MAX_ATTEMPTS)
    await say(fake, gateway, from_chat(update("private_text", 51), 1001),
              from_chat(update("private_photo", 52), 1002), from_chat(update("private_text", 53), 1003))
    answered = Counter(c.params["chat_id"] for c in fake.calls_to("sendMessage"))
    assert answered == {1001: 1, 1003: 1}
    store = Store(gateway.database)
    assert len(fake.calls_to("getFile")) == MAX_ATTEMPTS
    assert await store.inbound.count(message_id="52", status="failed") == 1
    assert await store.inbound.count(status="done") == 2
    [reply] = await say(fake, gateway, from_chat(update("private_text", 54), 1002))
    assert reply and await store.inbound.count(message_id="54", status="done") == 1
