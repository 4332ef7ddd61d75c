"""IOC staff console through Telegram: the staff group and members' private chats.

The real Telegram channel long-polls the fake Bot API; staff messages go through the gateway's
pipeline to the staff bot and its answers through the outbox back to the fake, which is what
the assertions read. Citizens' reports and the messages they receive use a replay channel.
"""
from __future__ import annotations

import asyncio
import itertools
from typing import Any, AsyncIterator, Callable

import pytest

from bots.gateway import Gateway
from channels.replay import ReplayChannel
from channels.telegram import TelegramChannel
from store.database import Database
from store.media import MediaStore
from store.repos import Store
from tests.chat import IMAGES
from tests.fakes import running
from tests.fakes.telegram_api import TOKEN, FakeTelegramAPI
from tests.test_staff import (
    STAFF_CHAT,
    TELEGRAM_IDS,
    UNCLEAR,
    Say,
    case,
    file_case,
    scenario_hide_duplicate_note,
    scenario_malformed,
    scenario_personal_data,
    scenario_queue_filters_and_pages,
    scenario_refusals,
    scenario_reject_tells_the_citizen,
    scenario_request_info_once,
    scenario_stats,
    scenario_whole_case,
    staff_gateway,
)
from tests.test_staff_loop import (
    scenario_answer_to_ask_is_attached,
    scenario_approve_delivers_the_result,
    scenario_duplicates_confirmed_and_split,
    scenario_edit_and_approve,
    scenario_return_to_ioc,
    scenario_roles_are_refused,
)

STRANGER = 5550000001
_ids = itertools.count(1)


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegramAPI]:
    async with running(FakeTelegramAPI()) as api:
        yield api


@pytest.fixture
async def gw(fake: FakeTelegramAPI, database: Database) -> AsyncIterator[Gateway]:
    telegram = TelegramChannel(TOKEN, base_url=fake.base_url, base_file_url=fake.base_file_url,
                               media_loader=MediaStore(database).load, staff_chat_id=STAFF_CHAT, poll_timeout=1)
    gateway = staff_gateway(database, {"telegram": telegram, "zalo": ReplayChannel("zalo", IMAGES)})
    await gateway.start(workers=False)
    yield gateway
    await gateway.stop()


def message(user: int, text: str, chat: int) -> dict[str, Any]:
    kind = {"type": "supergroup", "title": "IOC trực ban"} if chat < 0 else {"type": "private", "first_name": "A"}
    return {"update_id": next(_ids), "message": {
        "message_id": next(_ids), "date": 1763975000, "text": text, "chat": {"id": chat, **kind},
        "from": {"id": user, "is_bot": False, "first_name": "Cán bộ"}}}


def button(user: int, data: str, chat: int) -> dict[str, Any]:
    return {"update_id": next(_ids), "callback_query": {
        "id": f"q{next(_ids)}", "from": {"id": user, "is_bot": False, "first_name": "Cán bộ"},
        "chat_instance": "1", "data": data,
        "message": {"message_id": 9, "date": 1763975000, "chat": {"id": chat, "type": "supergroup"}}}}


async def deliver(fake: FakeTelegramAPI, gw: Gateway, update: dict[str, Any], chat: int) -> str:
    """Push one update, wait until the channel stored it, run the workers; the bot's answer."""
    before = len(fake.calls_to("sendMessage"))
    store = Store(gw.database)
    fake.push(update)
    async with asyncio.timeout(10):
        while not await store.inbound.count(channel="telegram", message_id=str(update["update_id"])):
            await asyncio.sleep(0.02)
    await gw.drain()
    return "\n".join(c.params["text"] for c in fake.calls_to("sendMessage")[before:] if c.params["chat_id"] == chat)


def front_end(fake: FakeTelegramAPI, gw: Gateway, private: bool = False) -> Say:
    async def say(member: str, text: str) -> str:
        user = TELEGRAM_IDS[member]
        chat = user if private else STAFF_CHAT
        return await deliver(fake, gw, message(user, text, chat), chat)
    return say


@pytest.fixture
def group(fake: FakeTelegramAPI, gw: Gateway) -> Say:
    return front_end(fake, gw)


@pytest.mark.parametrize("scenario", [
    scenario_whole_case, scenario_reject_tells_the_citizen, scenario_request_info_once,
    scenario_hide_duplicate_note, scenario_queue_filters_and_pages, scenario_refusals, scenario_malformed,
    scenario_stats])
async def test_each_command_in_the_staff_group(group: Say, gw: Gateway, scenario: Callable[..., Any]) -> None:
    await scenario(group, gw)


@pytest.mark.parametrize("scenario", [
    scenario_approve_delivers_the_result, scenario_edit_and_approve, scenario_return_to_ioc,
    scenario_duplicates_confirmed_and_split, scenario_answer_to_ask_is_attached, scenario_roles_are_refused])
async def test_each_agency_loop_command_in_the_staff_group(group: Say, gw: Gateway,
                                                          scenario: Callable[..., Any]) -> None:
    await scenario(group, gw)


async def test_personal_data_never_in_the_group_and_by_role_in_private(fake: FakeTelegramAPI, gw: Gateway) -> None:
    await scenario_personal_data(front_end(fake, gw), gw, private=False)
    await scenario_personal_data(front_end(fake, gw, private=True), gw, private=True)


async def test_a_case_is_shown_with_its_photos(fake: FakeTelegramAPI, group: Say, gw: Gateway) -> None:
    photo = (IMAGES / "pothole.jpg").read_bytes()
    file_id = await MediaStore(gw.database).save(photo, content_type="image/jpeg", filename="pothole.jpg")
    r = await file_case(gw, photos=[file_id])
    shown = await group("officer", f"/xem@ioc_test_bot {r.code}")
    assert f"Phản ánh {r.code}" in shown and "Hình ảnh: 1" in shown
    [sent] = fake.calls_to("sendPhoto")
    assert sent.params["chat_id"] == STAFF_CHAT and sent.files["photo"] == photo


async def test_next_page_button_shows_the_next_page(fake: FakeTelegramAPI, group: Say, gw: Gateway) -> None:
    codes = [(await file_case(gw, sender=f"p{i}")).code for i in range(11)]
    await group("op", "/queue")
    keyboard = fake.calls_to("sendMessage")[-1].params["reply_markup"]["inline_keyboard"]
    assert keyboard[0][0]["callback_data"] == "/queue page=2"
    page2 = await deliver(fake, gw, button(TELEGRAM_IDS["op"], "/queue page=2", STAFF_CHAT), STAFF_CHAT)
    assert "trang 2/2" in page2 and codes[10] in page2


async def test_strangers_are_refused_and_logged_and_chatter_is_ignored(fake: FakeTelegramAPI, gw: Gateway) -> None:
    r = await file_case(gw, UNCLEAR)
    refused = await deliver(fake, gw, message(STRANGER, f"/reject {r.code} incomplete", STAFF_CHAT), STAFF_CHAT)
    assert "không có quyền" in refused
    assert await deliver(fake, gw, message(STRANGER, "Chào cả nhà, hôm nay mưa to", STAFF_CHAT), STAFF_CHAT) == ""
    [entry] = await Store(gw.database).audit.trail("")
    assert entry.actor == f"telegram:{STRANGER}" and entry.action == "refused" and r.code in (entry.reason or "")
    assert (await case(gw, r.code)).status == "received"


async def test_a_staff_command_from_a_citizen_chat_does_nothing(fake: FakeTelegramAPI, gw: Gateway) -> None:
    r = await file_case(gw, UNCLEAR)
    answer = await deliver(fake, gw, message(STRANGER, f"/reject {r.code} incomplete", STRANGER), STRANGER)
    assert "không có quyền" not in answer and "Đã từ chối" not in answer
    assert (await case(gw, r.code)).status == "received"
    assert await Store(gw.database).audit.trail("") == []


async def test_a_member_in_private_gets_a_hint_for_plain_text(fake: FakeTelegramAPI, gw: Gateway) -> None:
    user = TELEGRAM_IDS["op"]
    assert "/help" in await deliver(fake, gw, message(user, "xin chào", user), user)
    assert "/queue" in await deliver(fake, gw, message(user, "/start", user), user)


async def test_new_urgent_cases_are_pushed_to_the_staff_group(fake: FakeTelegramAPI, gw: Gateway) -> None:
    r = await file_case(gw, urgent=True)
    await gw.tick()
    await gw.tick()
    await gw.drain()
    alerts = [c.params["text"] for c in fake.calls_to("sendMessage") if c.params["chat_id"] == STAFF_CHAT]
    assert len(alerts) == 1 and r.code in alerts[0] and f"/show {r.code}" in alerts[0]



async def test_a_message_given_up_on_is_shown_to_staff_once(fake: FakeTelegramAPI, gw: Gateway) -> None:
    citizen = 777001
    fake.fail("sendMessage", 403, "Forbidden: bot was blocked by the user")
    await deliver(fake, gw, message(citizen, "xin chào", citizen), citizen)
    statuses = [i.status for i in await Store(gw.database).outbox.all() if i.address == str(citizen)]
    assert statuses.count("unreachable") == 1
    await gw.tick()
    await gw.tick()
    await gw.drain()
    notices = [c.params["text"] for c in fake.calls_to("sendMessage")
               if c.params["chat_id"] == STAFF_CHAT and "Không gửi được" in c.params["text"]]
    assert len(notices) == 1 and str(citizen) in notices[0] and "blocked" in notices[0]
