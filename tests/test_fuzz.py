"""Property-based fuzzing of every webhook parser and of the normalizer (hypothesis).

Each webhook gets arbitrary JSON (and JSON shaped like the platform's) with a valid
signature, through the real web app and the real sink on the embedded database: it answers
200 or 400, never 500, and a 400 leaves nothing stored. What the sink stored then goes
through the channel's `parse` without an exception. The normalizer takes any text or bytes
without raising anything but its own `MediaRejected`.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any, AsyncIterator

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.gateway_proc import SECRET, TOKEN, WEBHOOK_PATH, WEBHOOK_URL
from bots.pipeline import Pipeline
from channels.facebook import FacebookChannel
from channels.telegram import TelegramChannel
from channels.webapp import build_app
from channels.zalo import ZaloChannel
from normalizer.media import MediaLimits, MediaRejected, inspect_image
from normalizer.phones import parse_phone
from normalizer.understand import understand
from store.database import Database
from store.media import MediaStore

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
keys = st.text(max_size=12) | st.sampled_from(["$gt", "$where", "a.b", "_id"])
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(keys, inner, max_size=5), max_leaves=20)
ids = st.integers(min_value=-2**40, max_value=2**40) | st.text(max_size=12) | st.none() | st.just({"$gt": ""})
texts = st.text(max_size=200) | st.sampled_from(['{"$where": "1"}', "<script>alert(1)</script>", "../../etc/passwd"])


def telegram_shaped() -> st.SearchStrategy[dict[str, Any]]:
    person = st.fixed_dictionaries({"id": ids, "is_bot": st.booleans(), "first_name": texts})
    chat = st.fixed_dictionaries({"id": ids, "type": st.sampled_from(["private", "group", "x"]) | texts})
    message = st.fixed_dictionaries({"message_id": ids, "date": ids, "chat": chat}, optional={
        "from": person, "text": texts, "caption": texts, "location": json_values | st.fixed_dictionaries(
            {"latitude": st.floats(), "longitude": st.floats()}),
        "photo": st.lists(json_values), "contact": json_values, "document": json_values})
    return st.fixed_dictionaries({"update_id": st.integers(0, 2**31)},
                                 optional={"message": message | json_values, "callback_query": json_values})


def zalo_shaped() -> st.SearchStrategy[dict[str, Any]]:
    event = st.sampled_from(["user_send_text", "user_send_image", "user_send_location", "follow", "oa_send_text"])
    return st.fixed_dictionaries({"event_name": event | texts, "timestamp": st.just(str(int(time.time() * 1000)))},
                                 optional={"sender": json_values | st.fixed_dictionaries({"id": ids}),
                                           "follower": json_values, "message": json_values | st.fixed_dictionaries(
                                               {"msg_id": ids, "text": texts, "attachments": json_values})})


def facebook_shaped() -> st.SearchStrategy[dict[str, Any]]:
    item = st.fixed_dictionaries({"sender": st.fixed_dictionaries({"id": ids}) | json_values,
                                  "timestamp": ids | st.just(int(time.time() * 1000))},
                                 optional={"message": json_values | st.fixed_dictionaries(
                                     {"mid": ids, "text": texts, "attachments": json_values}),
                                     "postback": json_values})
    entry = st.fixed_dictionaries({"messaging": st.lists(item, max_size=3) | json_values})
    return st.fixed_dictionaries({"object": st.just("page") | texts,
                                  "entry": st.lists(entry, max_size=2) | json_values})


async def no_media(_: str) -> bytes:
    raise KeyError("no media in fuzzing")


async def healthy() -> dict[str, Any]:
    return {"database": "ok"}


class Hooks:
    """The three webhook channels behind one web app, storing into the real database."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.telegram = TelegramChannel(TOKEN, media_loader=no_media, webhook_url=WEBHOOK_URL, secret_token=SECRET)
        self.zalo = ZaloChannel(app_id="app", app_secret="s", oa_secret_key="oa-key", refresh_token="r",
                                media_loader=no_media)
        self.facebook = FacebookChannel(page_token="p", app_secret="fb-secret", verify_token="v",
                                        media_loader=no_media)
        self.channels: dict[str, TelegramChannel | ZaloChannel | FacebookChannel] = {
            "telegram": self.telegram, "zalo": self.zalo, "facebook": self.facebook}

    async def start(self) -> httpx.AsyncClient:
        pipeline = Pipeline(self.database, self.channels, bot=None, media=MediaStore(self.database))  # type: ignore[arg-type]
        self.telegram._sink = pipeline.sink("telegram")  # webhook mode without calling the Bot API
        for channel in (self.zalo, self.facebook):
            channel.bind(self.database)
            channel._sink = pipeline.sink(channel.name)
        routes = [r for ch in self.channels.values() for r in ch.routes()]
        transport = httpx.ASGITransport(app=build_app(routes, healthy))
        return httpx.AsyncClient(transport=transport, base_url="http://hooks")

    async def post(self, client: httpx.AsyncClient, channel: str, payload: Any) -> int:
        body = json.dumps(payload).encode()
        if channel == "telegram":
            path, headers = WEBHOOK_PATH, {"X-Telegram-Bot-Api-Secret-Token": SECRET}
        elif channel == "zalo":
            stamp = str(payload.get("timestamp", "")) if isinstance(payload, dict) else ""
            mac = hashlib.sha256(b"app" + body + stamp.encode() + b"oa-key").hexdigest()
            path, headers = "/zalo/webhook", {"X-ZEvent-Signature": f"mac={mac}"}
        else:
            mac = hmac.new(b"fb-secret", body, hashlib.sha256).hexdigest()
            path, headers = "/facebook/webhook", {"X-Hub-Signature-256": f"sha256={mac}"}
        response = await client.post(path, content=body, headers={**headers, "content-type": "application/json"})
        return response.status_code


@pytest.fixture
async def hooks(database: Database) -> AsyncIterator[tuple[Hooks, httpx.AsyncClient]]:
    h = Hooks(database)
    client = await h.start()
    yield h, client
    await client.aclose()


async def check(hooks: tuple[Hooks, httpx.AsyncClient], channel: str, payload: Any) -> None:
    h, client = hooks
    before = await h.database.db.inbound.count_documents({})
    status = await h.post(client, channel, payload)
    after = await h.database.db.inbound.count_documents({})
    assert status in (200, 400, 403), status  # 403: Zalo without a usable timestamp
    if status != 200:
        assert after == before, "a refused payload left a partial write"
    async for doc in h.database.db.inbound.find({"channel": channel}):
        h.channels[channel].parse(doc["message_id"], doc["sender"], doc["payload"])


@FUZZ
@given(payload=telegram_shaped() | json_values)
async def test_telegram_webhook_never_500s(hooks, payload) -> None:
    await check(hooks, "telegram", payload)


@FUZZ
@given(payload=zalo_shaped() | json_values)
async def test_zalo_webhook_never_500s(hooks, payload) -> None:
    await check(hooks, "zalo", payload)


@FUZZ
@given(payload=facebook_shaped() | json_values)
async def test_facebook_webhook_never_500s(hooks, payload) -> None:
    await check(hooks, "facebook", payload)


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=400))
def test_understand_and_phones_take_any_text(text: str) -> None:
    understand(text, {}, [])
    parse_phone(text)


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=2000))
def test_image_checks_take_any_bytes(data: bytes) -> None:
    try:
        inspect_image(data, MediaLimits())
    except MediaRejected:
        pass
