"""Simulated Telegram citizens for `bench.ingest` and the crash tests.

Each citizen files one full report in six updates, as a person on Telegram would: the
problem in words, a location pin, a photo, "yes" to the offered name, their own contact,
and "confirm". Every citizen has its own chat, phone number and pin (pins ~70 m apart, so
no report is taken for a duplicate of another). `BenchTelegramAPI` is the fake Bot API
that also wakes a citizen when a reply reaches its chat.
"""
from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from starlette.responses import Response

from bench.gateway_proc import SECRET, WEBHOOK_PATH
from tests.fakes.telegram_api import Call, FakeTelegramAPI

ROOT = Path(__file__).resolve().parent.parent
PHOTO_ID = "bench-photo-large"
PHOTO = (ROOT / "tests" / "fixtures" / "images" / "pothole.jpg").read_bytes()
MESSAGES_PER_REPORT = 6
_update_ids = itertools.count(1)


class BenchTelegramAPI(FakeTelegramAPI):
    """The test fake, plus a per-chat count of replies and a wake-up of that chat's citizen
    when one arrives (only that citizen: waking all of them per reply made the benchmark's
    own process the bottleneck)."""

    def __init__(self) -> None:
        super().__init__()
        self.replies: Counter[int] = Counter()
        self._waiting: dict[int, tuple[int, asyncio.Future[None]]] = {}
        self.add_file(PHOTO_ID, PHOTO)

    async def _api_sendMessage(self, call: Call) -> Response:
        response = await super()._api_sendMessage(call)
        chat = int(call.params["chat_id"])
        self.replies[chat] += 1
        count, future = self._waiting.get(chat, (0, None))
        if future is not None and self.replies[chat] >= count and not future.done():
            future.set_result(None)
        return response

    async def wait_replies(self, chat_id: int, count: int, timeout: float) -> bool:
        """Called by a citizen after each message: True once `count` replies reached it."""
        if self.replies[chat_id] >= count:
            return True
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting[chat_id] = (count, future)
        try:
            await asyncio.wait_for(future, timeout)
            return True
        except TimeoutError:
            return False
        finally:
            self._waiting.pop(chat_id, None)


def chat_id(n: int) -> int:
    return 700_000_000 + n


def report_updates(n: int) -> list[dict[str, Any]]:
    """The six updates of citizen `n`'s report, with fresh update ids."""
    uid, now = chat_id(n), int(time.time())
    user = {"id": uid, "is_bot": False, "first_name": "Lan", "last_name": f"Nguyễn Thị {n}"}
    chat = {"id": uid, "type": "private", "first_name": "Lan"}
    lat, lon = 16.050 + (n % 50) * 0.0007, 108.200 + (n // 50 % 50) * 0.0007

    def message(**content: Any) -> dict[str, Any]:
        return {"update_id": next(_update_ids), "message": {
            "message_id": next(_update_ids), "from": user, "chat": chat, "date": now, **content}}

    def button(data: str) -> dict[str, Any]:
        bot_msg = {"message_id": 1, "chat": chat, "date": now, "text": "?"}
        return {"update_id": next(_update_ids), "callback_query": {
            "id": f"q{n}-{data}", "from": user, "message": bot_msg, "chat_instance": "1", "data": data}}

    return [
        message(text=f"Đèn đường trước nhà số {n} Trần Phú bị hỏng từ tối qua"),
        message(location={"latitude": lat, "longitude": lon}),
        message(photo=[{"file_id": PHOTO_ID, "file_unique_id": "u", "width": 64, "height": 48,
                        "file_size": len(PHOTO)}], caption="Cột đèn"),
        button("yes"),
        message(contact={"phone_number": f"8491{n:07d}", "first_name": "Lan", "user_id": uid}),
        button("confirm"),
    ]


@dataclass
class Tally:
    """What the citizens saw: acknowledgement latencies and every kind of error."""

    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    missing_replies: int = 0
    reports_finished: int = 0
    first_send: float | None = None
    last_reply: float = 0.0


class Pacer:
    """Spreads sends to at most `rate` per second over all citizens (0: no limit)."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.next = time.perf_counter()

    async def slot(self) -> None:
        if not self.interval:
            return
        now = time.perf_counter()
        self.next = max(self.next + self.interval, now)
        await asyncio.sleep(self.next - now)


async def post(client: httpx.AsyncClient, update: dict[str, Any], tally: Tally) -> int:
    """Send one update to the webhook; record the acknowledgement latency and status."""
    start = time.perf_counter()
    tally.first_send = tally.first_send or start
    try:
        response = await client.post(WEBHOOK_PATH, json=update,
                                     headers={"X-Telegram-Bot-Api-Secret-Token": SECRET})
        status = response.status_code
    except httpx.HTTPError:
        status = 0  # connection refused or reset: counted as an error
    tally.latencies.append(time.perf_counter() - start)
    tally.statuses[status] += 1
    return status


async def citizen(n: int, client: httpx.AsyncClient, api: BenchTelegramAPI, tally: Tally,
                  pacer: Pacer, deadline: float, reply_timeout: float = 60.0) -> None:
    """One person: send a message, wait for the bot's answer, send the next one."""
    for i, update in enumerate(report_updates(n), start=1):
        if time.perf_counter() > deadline:
            return
        await pacer.slot()
        if await post(client, update, tally) != 200:
            return
        if not await api.wait_replies(chat_id(n), i, reply_timeout):
            tally.missing_replies += 1
            return
        tally.last_reply = max(tally.last_reply, time.perf_counter())
    tally.reports_finished += 1


CITIZENS_PER_CLIENT = 10


async def crowd(url: str, api: BenchTelegramAPI, citizens: int, duration: float, rate: float = 0.0) -> Tally:
    """Called by `bench.ingest` and `bench.ceiling`: `citizens` people against the webhook at
    `url`, each filing one report, until done or `duration` seconds have passed."""
    # Small pools: httpx looks at every pooled connection for each request, so one client
    # with a connection per citizen spent more CPU here than the gateway did.
    clients = [httpx.AsyncClient(base_url=url, timeout=30, limits=httpx.Limits(max_connections=CITIZENS_PER_CLIENT))
               for _ in range(0, citizens, CITIZENS_PER_CLIENT)]
    tally, pacer, deadline = Tally(), Pacer(rate), time.perf_counter() + duration
    try:
        await asyncio.gather(*(citizen(n, clients[n // CITIZENS_PER_CLIENT], api, tally, pacer, deadline)
                               for n in range(citizens)))
    finally:
        for client in clients:
            await client.aclose()
    return tally
