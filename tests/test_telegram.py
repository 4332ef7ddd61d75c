"""Telegram channel against the fake Bot API: python-telegram-bot really speaks HTTP to it."""
from __future__ import annotations

import asyncio
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import httpx
import pytest
from telegram.error import InvalidToken

from channels.base import PermanentFailure, RetryLater, Unreachable
from channels.telegram import MAX_TEXT, TelegramChannel
from channels.text_split import split_text
from channels.webapp import build_app
from normalizer.media import MediaRejected
from normalizer.messages import Button, Contact, GeoPoint, Inbound, MediaRef, Outbound
from tests.fakes import running
from tests.fakes.telegram_api import TOKEN, FakeTelegramAPI

FIXTURES = Path(__file__).parent / "fixtures" / "telegram"
STAFF_CHAT = -1001234567890
CITIZEN = "5551234567"
SECRET = "Zx_9-webhook-secret"
WEBHOOK_URL = "https://ioc.example.vn/telegram/webhook"


def update(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


def parsed(channel: TelegramChannel, message_id: str, sender: str, payload: dict[str, Any]) -> Inbound:
    """`channel.parse` of an update that it reads."""
    inbound = channel.parse(message_id, sender, payload)
    assert inbound is not None, "the update was not read"
    return inbound


class Sink:
    """Idempotent like the real store; `fail_after_store` simulates a lost database ack."""

    def __init__(self) -> None:
        self.stored: dict[str, tuple[str, dict[str, Any]]] = {}
        self.calls: list[str] = []
        self.fail_after_store: set[str] = set()

    async def __call__(self, message_id: str, sender: str, payload: dict[str, Any]) -> bool:
        self.calls.append(message_id)
        if message_id in self.stored:
            return False
        self.stored[message_id] = (sender, payload)
        if message_id in self.fail_after_store:
            self.fail_after_store.discard(message_id)
            raise ConnectionError("connection reset after the write")
        return True


class Photos:
    """Stands in for GridFS: the outbox hands `send` file ids, the loader gives bytes."""

    def __init__(self) -> None:
        self.files = {"gfs-1": b"\xff\xd8\xff\xe0 fake jpeg one", "gfs-2": b"\x89PNG fake two"}

    async def __call__(self, file_id: str) -> bytes:
        return self.files[file_id]


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegramAPI]:
    async with running(FakeTelegramAPI()) as api:
        yield api


@pytest.fixture
async def make_channel(fake: FakeTelegramAPI) -> AsyncIterator[Callable[..., TelegramChannel]]:
    made: list[TelegramChannel] = []

    def make(**options: Any) -> TelegramChannel:
        made.append(TelegramChannel(TOKEN, base_url=fake.base_url, base_file_url=fake.base_file_url,
                                    media_loader=Photos(), staff_chat_id=STAFF_CHAT, poll_timeout=1,
                                    **options))
        return made[-1]
    yield make
    for channel in made:  # closes their connection pools (stop is idempotent)
        await channel.stop()


@pytest.fixture
def channel(make_channel: Callable[..., TelegramChannel]) -> TelegramChannel:
    return make_channel()


async def until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    async with asyncio.timeout(seconds):
        while not condition():
            await asyncio.sleep(0.02)


# ---- long polling -----------------------------------------------------------------------
async def test_polling_hands_each_update_to_the_sink_and_advances_the_offset(
        fake: FakeTelegramAPI, channel: TelegramChannel) -> None:
    sink = Sink()
    fake.webhook = {"url": "https://old.example"}  # a stale webhook blocks getUpdates
    fake.push(update("private_text"))
    fake.push(update("private_photo"))
    await channel.start(sink)
    try:
        await until(lambda: len(sink.stored) == 2)
        await until(lambda: not fake.updates)  # confirmed by the next getUpdates' offset
    finally:
        await channel.stop()
    methods = [c.method for c in fake.calls]
    assert methods.index("deleteWebhook") < methods.index("getUpdates")
    assert sink.stored["731000001"][0] == CITIZEN
    assert sink.stored["731000002"][1]["message"]["photo"][2]["width"] == 1280
    offsets = [c.params.get("offset") for c in fake.calls_to("getUpdates")]
    assert 731000003 in offsets
    assert parsed(channel, "731000001", CITIZEN, sink.stored["731000001"][1]).text.startswith("Đèn")


async def test_start_survives_telegram_down_and_a_bad_token_fails_fast(
        fake: FakeTelegramAPI, make_channel: Callable[..., TelegramChannel]) -> None:
    sink = Sink()
    fake.fail("getMe", 502, "Bad Gateway", times=2)
    fake.push(update("private_text"))
    channel = make_channel()
    await channel.start(sink)  # does not raise: set-up continues in the background
    try:
        await until(lambda: len(sink.stored) == 1, seconds=8)
    finally:
        await channel.stop()
    wrong = TelegramChannel("999:wrong", base_url=fake.base_url, media_loader=Photos())
    with pytest.raises(InvalidToken):
        await wrong.start(sink)


async def test_redelivered_update_is_stored_exactly_once(
        fake: FakeTelegramAPI, channel: TelegramChannel) -> None:
    sink = Sink()
    sink.fail_after_store.add("731000004")  # stored, but the channel never heard back
    fake.push(update("private_text"))
    fake.push(update("private_text"))  # Telegram redelivers the same update_id
    fake.push(update("private_location"))
    await channel.start(sink)
    try:
        await until(lambda: sink.calls.count("731000004") == 2)
        await until(lambda: not fake.updates)
    finally:
        await channel.stop()
    assert sorted(sink.stored) == ["731000001", "731000004"]
    assert sink.calls.count("731000001") == 2  # offered twice, stored once


async def test_restart_after_clean_stop_gets_nothing_twice(
        fake: FakeTelegramAPI, make_channel: Callable[..., TelegramChannel]) -> None:
    first, second = Sink(), Sink()
    fake.push(update("private_text"))
    channel = make_channel()
    await channel.start(first)
    await until(lambda: len(first.stored) == 1)
    await channel.stop()
    fake.push(update("private_location"))
    channel = make_channel()
    await channel.start(second)
    try:
        await until(lambda: len(second.stored) == 1)
    finally:
        await channel.stop()
    assert list(second.stored) == ["731000004"]


async def test_polling_answers_a_button_press(fake: FakeTelegramAPI, channel: TelegramChannel) -> None:
    sink = Sink()
    fake.push(update("callback_query"))
    await channel.start(sink)
    try:
        await until(lambda: len(fake.calls_to("answerCallbackQuery")) == 1)
    finally:
        await channel.stop()
    assert fake.calls_to("answerCallbackQuery")[0].params["callback_query_id"] == "4382bfdwdsb323b2d9"


# ---- webhook ----------------------------------------------------------------------------
@pytest.fixture
async def hooked(fake: FakeTelegramAPI, make_channel: Callable[..., TelegramChannel]
                 ) -> AsyncIterator[tuple[TelegramChannel, Sink, httpx.AsyncClient]]:
    channel, sink = make_channel(webhook_url=WEBHOOK_URL, secret_token=SECRET), Sink()
    app = build_app(channel.routes(), _healthy)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as client:
        yield channel, sink, client
    await channel.stop()


async def _healthy() -> dict[str, Any]:
    return {"database": "ok", "channels": ["telegram"]}


def deliver(client: httpx.AsyncClient, payload: dict[str, Any], secret: str | None = SECRET):
    headers = {"X-Telegram-Bot-Api-Secret-Token": secret} if secret is not None else {}
    return client.post("/telegram/webhook", json=payload, headers=headers)


async def test_webhook_is_registered_with_the_secret(fake: FakeTelegramAPI, hooked) -> None:
    channel, sink, _ = hooked
    await channel.start(sink)
    assert fake.webhook == {"url": WEBHOOK_URL, "secret_token": SECRET,
                            "allowed_updates": ["message", "callback_query"]}
    assert not fake.calls_to("deleteWebhook") and not fake.calls_to("getUpdates")


async def test_webhook_checks_the_secret_token(hooked) -> None:
    channel, sink, client = hooked
    await channel.start(sink)
    assert (await deliver(client, update("private_text"), secret=None)).status_code == 401
    assert (await deliver(client, update("private_text"), secret="Zx_9-webhook-secreT")).status_code == 403
    assert sink.stored == {}
    assert (await deliver(client, update("private_text"))).status_code == 200
    assert (await deliver(client, update("private_text"))).status_code == 200
    assert list(sink.stored) == ["731000001"] and sink.calls == ["731000001", "731000001"]
    assert sink.stored["731000001"] == (CITIZEN, update("private_text"))


@pytest.mark.parametrize("payload", [{}, {"update_id": "1"}, [1, 2], {"update_id": 5, "message": 3}])
async def test_webhook_refuses_what_is_not_an_update(hooked, payload: Any) -> None:
    channel, sink, client = hooked
    await channel.start(sink)
    assert (await deliver(client, payload)).status_code == 400
    assert sink.stored == {}


async def test_webhook_before_start_asks_telegram_to_retry(hooked) -> None:
    _, sink, client = hooked
    assert (await deliver(client, update("private_text"))).status_code == 503


async def test_webhook_answers_button_press_once(fake: FakeTelegramAPI, hooked) -> None:
    channel, sink, client = hooked
    await channel.start(sink)
    await deliver(client, update("callback_query"))
    await deliver(client, update("callback_query"))
    await channel.stop()  # waits for the answers sent after the 200
    assert len(fake.calls_to("answerCallbackQuery")) == 1


def test_webhook_needs_a_valid_secret(make_channel: Callable[..., TelegramChannel]) -> None:
    with pytest.raises(ValueError):
        make_channel(webhook_url=WEBHOOK_URL)
    with pytest.raises(ValueError):
        make_channel(webhook_url=WEBHOOK_URL, secret_token="has spaces")


# ---- parse ------------------------------------------------------------------------------
def test_parse_private_text(channel: TelegramChannel) -> None:
    inbound = parsed(channel, "731000001", CITIZEN, update("private_text"))
    assert inbound.channel == "telegram" and inbound.sender == CITIZEN
    assert inbound.message_id == "731000001" and inbound.chat_kind == "private"
    assert inbound.text == "Đèn đường ngõ 12 Trần Phú bị hỏng từ tối qua"
    assert inbound.profile_name == "Lan Nguyễn Thị"
    assert inbound.received_at == datetime.fromtimestamp(1763974800, timezone.utc)
    assert inbound.media == [] and inbound.location is None and inbound.contact is None


def test_parse_photo_takes_the_largest_size_and_the_caption(channel: TelegramChannel) -> None:
    inbound = parsed(channel, "731000002", CITIZEN, update("private_photo"))
    assert inbound.text == "Cột đèn số 7"
    assert inbound.media == [MediaRef(ref="AgACAgUAAxkBAAMMZ0Nr-large", declared_type="image/jpeg",
                                      size=120211)]


def test_parse_documents_keep_their_declared_type(channel: TelegramChannel) -> None:
    image = parsed(channel, "731000003", CITIZEN, update("private_document_image"))
    assert image.media == [MediaRef(ref="BQACAgUAAxkBAAMNZ0Ns-doc", declared_type="image/jpeg",
                                    filename="IMG_20251124_0815.jpg", size=2345678)]
    pdf = parsed(channel, "731000010", CITIZEN, update("private_document_pdf"))
    assert pdf.media[0].declared_type == "application/pdf" and pdf.text == "Đơn kèm theo"


def test_parse_location(channel: TelegramChannel) -> None:
    inbound = parsed(channel, "731000004", CITIZEN, update("private_location"))
    assert inbound.location == GeoPoint(lat=16.067781, lon=108.220824)


def test_parse_contact_only_when_it_is_the_senders_own(channel: TelegramChannel) -> None:
    own = parsed(channel, "731000005", CITIZEN, update("private_contact"))
    assert own.contact == Contact(phone="84912345678", name="Lan Nguyễn Thị")
    other = channel.parse("731000006", CITIZEN, update("private_contact_other"))
    assert other is not None and other.contact is None


def test_parse_callback_query_as_action(channel: TelegramChannel) -> None:
    inbound = parsed(channel, "731000007", CITIZEN, update("callback_query"))
    assert inbound.action == "confirm" and inbound.text == ""
    assert inbound.sender == CITIZEN and inbound.chat_kind == "private"
    assert inbound.context == {"user_id": CITIZEN}


def test_parse_staff_group_is_marked_and_other_groups_ignored(channel: TelegramChannel) -> None:
    staff = parsed(channel, "731000008", str(STAFF_CHAT), update("staff_group_message"))
    assert staff.chat_kind == "group" and staff.sender == str(STAFF_CHAT)
    assert staff.text == "/xem PA-2025-000123"
    assert staff.context["user_id"] == "8880002222" and staff.profile_name == "Minh Trần"
    assert channel.parse("731000009", "-4012345678", update("other_group_message")) is None


def test_parse_ignores_other_update_kinds(channel: TelegramChannel) -> None:
    edited = {"update_id": 1, "edited_message": update("private_text")["message"]}
    assert channel.parse("1", CITIZEN, edited) is None


# ---- media ------------------------------------------------------------------------------
async def test_fetch_media_downloads_the_file(fake: FakeTelegramAPI, channel: TelegramChannel) -> None:
    fake.add_file("AgACAgUAAxkBAAMMZ0Nr-large", b"\xff\xd8\xff\xe0 jpeg bytes", "photos/file_7.jpg")
    data = await channel.fetch_media(MediaRef(ref="AgACAgUAAxkBAAMMZ0Nr-large", size=20))
    assert data == b"\xff\xd8\xff\xe0 jpeg bytes"
    assert fake.calls_to("getFile")[0].params["file_id"] == "AgACAgUAAxkBAAMMZ0Nr-large"


async def test_fetch_media_refuses_files_over_the_cap(
        fake: FakeTelegramAPI, make_channel: Callable[..., TelegramChannel]) -> None:
    channel = make_channel(max_file_bytes=100)
    fake.add_file("big", b"x" * 101)
    with pytest.raises(MediaRejected, match="too_large"):
        await channel.fetch_media(MediaRef(ref="big"))  # size unknown until getFile
    with pytest.raises(MediaRejected, match="too_large"):
        await channel.fetch_media(MediaRef(ref="big", size=5000))
    assert len(fake.calls_to("getFile")) == 1


# ---- send -------------------------------------------------------------------------------
def words(count: int, tail: str) -> str:
    return " ".join(["đèn"] * count) + tail


@pytest.mark.parametrize("text", [
    "\n\n".join([words(749, " ab"), words(749, " ab"), words(749, " abcd")]),  # paragraphs
    words(2249, " abcd"),  # one long paragraph: cut between words
])
async def test_send_splits_a_9000_char_text_into_3_clean_messages(
        fake: FakeTelegramAPI, channel: TelegramChannel, text: str) -> None:
    assert len(text) == 9000
    message_id = await channel.send(CITIZEN, Outbound(text=text))
    sent = [c.params["text"] for c in fake.calls_to("sendMessage")]
    assert len(sent) == 3 and all(len(part) <= MAX_TEXT for part in sent)
    assert " ".join(sent).split() == text.split()  # nothing lost, no word cut in two
    assert all(part == part.strip() for part in sent)
    if "\n\n" in text:
        assert sent == text.split("\n\n")
    assert message_id == str(fake._next_message_id)


def test_split_text_prefers_paragraphs_then_lines_then_words() -> None:
    para = ("a" * 50 + "\n") * 2
    assert split_text(para + "\n" + "b" * 80, limit=120) == [para.strip(), "b" * 80]
    assert split_text("x" * 60 + "\n" + "y" * 60, limit=100) == ["x" * 60, "y" * 60]
    assert split_text("w" * 250, limit=100) == ["w" * 100, "w" * 100, "w" * 50]
    assert split_text("", MAX_TEXT) == [] and split_text("ngắn", MAX_TEXT) == ["ngắn"]


def test_split_text_counts_utf16_units() -> None:
    parts = split_text("🚧" * 3000, MAX_TEXT)  # each emoji is two UTF-16 units
    assert [len(p) for p in parts] == [2048, 952]


async def test_send_inline_keyboard_on_the_last_message(fake: FakeTelegramAPI, channel: TelegramChannel) -> None:
    buttons = [Button(label="Gửi", action="confirm"), Button(label="Huỷ", action="cancel")]
    await channel.send(CITIZEN, Outbound(text="Xác nhận?", buttons=buttons))
    markup = fake.calls_to("sendMessage")[0].params["reply_markup"]
    assert markup == {"inline_keyboard": [[{"text": "Gửi", "callback_data": "confirm"}],
                                          [{"text": "Huỷ", "callback_data": "cancel"}]]}


async def test_send_reply_keyboard_asks_for_location_and_phone(
        fake: FakeTelegramAPI, make_channel: Callable[..., TelegramChannel]) -> None:
    channel = make_channel(location_label="Gửi vị trí", contact_label="Gửi số điện thoại")
    await channel.send(CITIZEN, Outbound(text="Bạn ở đâu?", ask_location=True, ask_contact=True))
    markup = fake.calls_to("sendMessage")[0].params["reply_markup"]
    assert markup["keyboard"] == [[{"text": "Gửi vị trí", "request_location": True},
                                   {"text": "Gửi số điện thoại", "request_contact": True}]]
    assert markup["one_time_keyboard"] is True and markup["resize_keyboard"] is True
    await channel.send(str(STAFF_CHAT), Outbound(text="nhóm", ask_location=True))
    assert "reply_markup" not in fake.calls_to("sendMessage")[1].params


async def test_send_photos_from_the_media_loader(fake: FakeTelegramAPI, channel: TelegramChannel) -> None:
    await channel.send(CITIZEN, Outbound(text="Kết quả xử lý", photos=["gfs-1", "gfs-2"],
                                         buttons=[Button(label="Hài lòng", action="rate:5")]))
    photos = fake.calls_to("sendPhoto")
    assert [c.files["photo"] for c in photos] == [b"\xff\xd8\xff\xe0 fake jpeg one", b"\x89PNG fake two"]
    assert all(c.params["chat_id"] == int(CITIZEN) for c in photos)
    assert "reply_markup" in fake.calls_to("sendMessage")[0].params
    assert [c.method for c in fake.calls if c.method.startswith("send")] == \
        ["sendPhoto", "sendPhoto", "sendMessage"]


async def test_send_with_a_missing_photo_fails_for_good(channel: TelegramChannel) -> None:
    with pytest.raises(PermanentFailure):
        await channel.send(CITIZEN, Outbound(text="ảnh", photos=["gfs-gone"]))


async def test_flood_control_is_retry_later_with_the_servers_delay(
        fake: FakeTelegramAPI, channel: TelegramChannel) -> None:
    fake.fail("sendMessage", 429, "Too Many Requests: retry after 7", retry_after=7)
    with pytest.raises(RetryLater) as caught:
        await channel.send(CITIZEN, Outbound(text="xin chào"))
    assert caught.value.after == 7
    assert await channel.send(CITIZEN, Outbound(text="xin chào"))  # the next try goes through


@pytest.mark.parametrize(("status", "description", "outcome"), [
    (403, "Forbidden: bot was blocked by the user", Unreachable),
    (403, "Forbidden: user is deactivated", Unreachable),
    (400, "Bad Request: chat not found", Unreachable),
    (400, "Bad Request: message text is empty", PermanentFailure),
    (502, "Bad Gateway", RetryLater),
    (500, "Internal Server Error", RetryLater),
])
async def test_send_errors_map_to_outbox_outcomes(
        fake: FakeTelegramAPI, channel: TelegramChannel,
        status: int, description: str, outcome: type[Exception]) -> None:
    fake.fail("sendMessage", status, description)
    with pytest.raises(outcome):
        await channel.send(CITIZEN, Outbound(text="xin chào"))
