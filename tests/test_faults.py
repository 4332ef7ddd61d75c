"""Faults under load, through real mechanisms only: a SIGKILLed gateway process, a killed
database server, the server's own fail points, an SMTP server that is down, a Bot API
answering 429/500. Each test checks that nothing is lost and nothing is done twice.

The gateway runs in its own process (`bench.gateway_proc`, Telegram webhook mode) for the
crash tests; citizens are `bench.citizens` reports posted round by round (message 1 of
every citizen, then message 2…), without waiting for answers, so a backlog is in flight.
"""
from __future__ import annotations

import asyncio
import signal
import subprocess
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any, AsyncIterator

import httpx
import pytest
from aiosmtpd.controller import Controller
from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError

from bench.citizens import BenchTelegramAPI, chat_id, report_updates
from bench.gateway_proc import SECRET, TOKEN, WEBHOOK_PATH, WEBHOOK_URL
from bench.ingest import spawn_gateway
from bots.gateway import Gateway
from cases.policy import load_policy
from channels.email import EmailChannel
from channels.outbox import OutboxWorker, backoff
from channels.telegram import TelegramChannel
from normalizer.messages import Outbound, utcnow
from store.database import Database, connect
from store.embedded import EmbeddedServer, free_port
from store.media import MediaStore
from store.repos import Store

CITIZENS = 10
# Sent but not yet marked when killed: a citizen's replies go out one at a time, so at most
# one per citizen (the outbox sends a batch of different citizens' replies at once).
IN_FLIGHT_AT_MOST = CITIZENS


@pytest.fixture
async def api() -> AsyncIterator[BenchTelegramAPI]:
    fake = BenchTelegramAPI()
    await fake.start()
    yield fake
    await fake.stop()


class GatewayProcess:
    """The gateway as a child process, restartable; `url` changes with each start."""

    def __init__(self, uri: str, api: BenchTelegramAPI) -> None:
        self.uri, self.api = uri, api
        self.database = f"t_{uuid.uuid4().hex[:12]}"
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""

    async def start(self) -> None:
        self.proc, port = await asyncio.to_thread(
            spawn_gateway, self.uri, self.database, self.api.base_url.removesuffix("/bot"),
            ["--idle-seconds", "0.1"])
        self.url = f"http://127.0.0.1:{port}"

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)


async def post_round(url: str, updates: list[dict[str, Any]]) -> list[int]:
    """Deliver one update per citizen at once, as the platform would; the status codes."""
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        async def one(update: dict[str, Any]) -> int:
            try:
                r = await client.post(WEBHOOK_PATH, json=update,
                                      headers={"X-Telegram-Bot-Api-Secret-Token": SECRET})
                return r.status_code
            except httpx.HTTPError:
                return 0
        return list(await asyncio.gather(*(one(u) for u in updates)))


async def settled(uri: str, database: str, seconds: float = 300.0) -> dict[str, Any]:
    """Wait (bounded) until nothing is pending, then what the gateway stored and queued."""
    client: AsyncMongoClient = AsyncMongoClient(uri)
    db = client[database]
    try:
        async with asyncio.timeout(seconds):
            while await db.inbound.count_documents({"status": {"$nin": ["done"]}}) or \
                    await db.outbox.count_documents({"status": {"$ne": "sent"}}):
                await asyncio.sleep(0.3)
        outbox = [d async for d in db.outbox.find({}, {"address": 1, "status": 1})]
        return {"inbound": await db.inbound.count_documents({}),
                "message_ids": await db.inbound.distinct("message_id"),
                "reports": [d["sender"] async for d in db.reflections.find({}, {"sender": 1})],
                "outbox_per_chat": Counter(int(d["address"]) for d in outbox)}
    finally:
        await client.close()


def assert_exactly_once(state: dict[str, Any], accepted: set[str], api: BenchTelegramAPI) -> int:
    """Every accepted update processed once, one report per citizen, every reply queued once
    and delivered; returns the replies the platform got twice (the kill's send→mark window)."""
    assert set(state["message_ids"]) == accepted and state["inbound"] == len(accepted)
    assert sorted(state["reports"]) == sorted(str(chat_id(n)) for n in range(CITIZENS))
    assert all(state["outbox_per_chat"][chat_id(n)] == 6 for n in range(CITIZENS))
    duplicates = sum(api.replies[c] - n for c, n in state["outbox_per_chat"].items())
    assert all(api.replies[c] >= n for c, n in state["outbox_per_chat"].items())
    return duplicates


async def test_gateway_sigkilled_mid_load_loses_nothing_and_repeats_nothing(db_server, api) -> None:
    gateway = GatewayProcess(db_server.uri, api)
    await gateway.start()
    plans = [report_updates(n) for n in range(CITIZENS)]
    accepted: set[str] = set()
    try:
        for step in range(6):
            batch = [plan[step] for plan in plans]
            statuses = await post_round(gateway.url, batch)
            if step == 3:  # the backlog of rounds 3-4 is being processed: crash now
                gateway.kill()
                assert await post_round(gateway.url, batch) == [0] * CITIZENS  # nobody answers
                await gateway.start()
                statuses = await post_round(gateway.url, batch)  # the platform redelivers
            assert statuses == [200] * CITIZENS
            accepted |= {str(u["update_id"]) for u in batch}
        state = await settled(db_server.uri, gateway.database)
    finally:
        gateway.stop()
    duplicates = assert_exactly_once(state, accepted, api)
    print(f"replies sent twice after SIGKILL: {duplicates}")
    assert duplicates <= IN_FLIGHT_AT_MOST


async def test_database_killed_and_restarted_webhooks_answer_503_then_resume(tmp_path: Path, api) -> None:
    port = free_port()
    server = EmbeddedServer(tmp_path / "db", port)
    server.start()
    gateway = GatewayProcess(server.uri, api)
    await gateway.start()
    plans = [report_updates(n) for n in range(CITIZENS)]
    accepted: set[str] = set()
    try:
        for step in range(6):
            batch = [plan[step] for plan in plans]
            if step == 2:
                server.kill()
                started = time.monotonic()
                assert await post_round(gateway.url, batch) == [503] * CITIZENS
                assert time.monotonic() - started < 15  # the platform hears "retry" promptly
                server = EmbeddedServer(tmp_path / "db", port)
                server.start()
            assert await post_round(gateway.url, batch) == [200] * CITIZENS
            accepted |= {str(u["update_id"]) for u in batch}
        state = await settled(server.uri, gateway.database)
    finally:
        gateway.stop()
        server.stop()
    assert assert_exactly_once(state, accepted, api) == 0


# ---- in one process: fail points, a failing Bot API, SMTP down ---------------------------

POLICY = Path(__file__).parent.parent / "policies" / "quang_nam.yaml"
UNKNOWN_ERROR = 8  # not a retryable code: the driver hands it to us


@pytest.fixture
async def faulty(db_server: EmbeddedServer) -> AsyncIterator[tuple[Database, Any]]:
    """The gateway's database client, named so that fail points hit only it; and a switch."""
    app = f"faulty-{uuid.uuid4().hex[:8]}"
    database = await connect(f"{db_server.uri}&appName={app}", f"t_{uuid.uuid4().hex[:12]}")
    admin: AsyncMongoClient = AsyncMongoClient(db_server.uri)

    async def fail(commands: list[str], times: int, **how: Any) -> None:
        """The next `times` of `commands` fail with UNKNOWN_ERROR, or as `how` says."""
        data = {"failCommands": commands, "appName": app, **(how or {"errorCode": UNKNOWN_ERROR})}
        await admin.admin.command({"configureFailPoint": "failCommand", "mode": {"times": times}, "data": data})
    yield database, fail
    await admin.admin.command({"configureFailPoint": "failCommand", "mode": "off"})
    await database.client.drop_database(database.db.name)
    await database.close()
    await admin.close()


@pytest.fixture
async def gateway(faulty: tuple[Database, Any], api: BenchTelegramAPI) -> AsyncIterator[Gateway]:
    """Webhook mode, workers driven by the test, so each injected fault lands where meant."""
    database = faulty[0]
    channel = TelegramChannel(TOKEN, media_loader=MediaStore(database).load, base_url=api.base_url,
                              base_file_url=api.base_file_url, webhook_url=WEBHOOK_URL, secret_token=SECRET)
    gw = Gateway(database, load_policy(POLICY), {"telegram": channel}, web=("127.0.0.1", 0))
    await gw.start(workers=False)
    yield gw
    await gw.stop()


async def step(work: Any) -> bool | None:
    """One pass of a worker loop, which survives a database error the same way."""
    try:
        async with asyncio.timeout(30):
            return await work()
    except PyMongoError:
        return None


async def test_injected_write_errors_lose_and_repeat_nothing(gateway: Gateway, faulty, api) -> None:
    _, fail = faulty
    assert gateway.web is not None
    update = report_updates(0)[0]
    await fail(["insert"], 1)  # storing the webhook fails: the platform is told to retry
    assert await post_round(gateway.web.url, [update]) == [503]
    assert await post_round(gateway.web.url, [update]) == [200]
    await fail(["commitTransaction"], 1)  # the bot's turn cannot commit: counted, redone
    assert await step(gateway.pipeline.process) is True
    assert await step(gateway.pipeline.process) is True
    await fail(["update"], 2)  # the reply is sent, then its mark fails twice: retried, not resent
    assert await step(gateway.outbox.deliver) is True
    store = Store(gateway.database)
    await store.outbox.enqueue("alert-1", "telegram", str(chat_id(1)), Outbound(text="Nhắc việc"))
    await fail(["update"], 1)  # the outbox cannot claim what others queued: nothing happens
    assert await step(lambda: gateway.outbox.deliver(look_in_database=True)) is None
    assert await step(gateway.outbox.deliver) is True  # a failed look is looked again at once
    assert await store.inbound.count(status="done") == 1
    assert [i.status for i in await store.outbox.all()] == ["sent", "sent"]
    assert api.replies[chat_id(0)] == 1 and api.replies[chat_id(1)] == 1


async def test_lost_commit_answer_is_taken_as_done_and_its_replies_sent_once(gateway: Gateway, faulty, api) -> None:
    """The commit goes through but its answer is lost (the server applies it and answers with
    a write-concern error, the driver's own retry too): the batch is retried, found handled,
    nothing is redone, the replies that commit queued are sent once, and the line goes on."""
    _, fail = faulty
    assert gateway.web is not None
    first = [report_updates(n)[0] for n in range(3)]
    assert await post_round(gateway.web.url, first) == [200] * 3
    await fail(["commitTransaction"], 1, writeConcernError={"code": 64, "errmsg": "waiting for replication timed out",
                                                          "errInfo": {"wtimeout": True}})
    assert await step(gateway.pipeline.process) is None  # unknown outcome: the worker waits
    assert await step(gateway.pipeline.process) is True  # found handled by the lost commit
    assert await step(gateway.pipeline.process) is False  # nothing left in line
    second = [report_updates(n)[1] for n in range(3)]
    assert await post_round(gateway.web.url, second) == [200] * 3
    assert await step(gateway.pipeline.process) is True
    while await step(gateway.outbox.deliver):
        pass
    store = Store(gateway.database)
    assert await store.inbound.count(status="done") == 6
    outbox = await store.outbox.all()
    assert len(outbox) == 6 and {i.status for i in outbox} == {"sent"}
    assert all(api.replies[chat_id(n)] == 2 for n in range(3))  # one answer per message, none twice


async def test_poison_errors_end_each_event_as_failed_and_nothing_stays_stuck(gateway: Gateway, faulty, api) -> None:
    """A server error that is not an outage, met every time (each turn's insert of its replies
    is refused): the batch is split, each event is tried a bounded number of times and then
    recorded failed with the reason; the line is empty afterwards and the next citizens are
    answered."""
    _, fail = faulty
    assert gateway.web is not None
    assert await post_round(gateway.web.url, [report_updates(n)[0] for n in range(3)]) == [200] * 3
    await fail(["insert"], 1000)
    passes = 0
    while await step(gateway.pipeline.process) and passes < 50:
        passes += 1
    store = Store(gateway.database)
    failed = [r for r in await gateway.database.db.inbound.find({"status": "failed"}).to_list(None)]
    assert len(failed) == 3 and all("code 8" in r["reason"] for r in failed)
    assert all(r["attempts"] == 5 for r in failed)
    assert await step(gateway.pipeline.process) is False  # nothing left in line
    await fail(["insert"], 0)
    assert await post_round(gateway.web.url, [report_updates(n)[0] for n in range(3, 5)]) == [200] * 2
    assert await step(gateway.pipeline.process) is True
    while await step(gateway.outbox.deliver):
        pass
    assert await store.inbound.count(status="done") == 2
    assert api.replies[chat_id(3)] == 1 and api.replies[chat_id(4)] == 1 and api.replies[chat_id(0)] == 0


async def test_bot_api_429_and_500_are_retried_after_retry_after_then_backoff(gateway: Gateway, api) -> None:
    api.fail("sendMessage", 429, "Too Many Requests: retry after 2", retry_after=2)
    api.fail("sendMessage", 500, "Internal Server Error")
    store = Store(gateway.database)
    await store.outbox.enqueue("k1", "telegram", str(chat_id(1)), Outbound(text="Xin chào"))
    assert await gateway.outbox.deliver()
    [item] = await store.outbox.all()
    assert item.status == "pending" and 1.5 < (item.next_attempt_at - utcnow()).total_seconds() <= 2
    assert not await gateway.outbox.deliver()  # not before the platform's Retry-After
    await asyncio.sleep(2)
    assert await gateway.outbox.deliver()  # the 500
    [item] = await store.outbox.all()
    assert item.status == "pending" and (item.next_attempt_at - utcnow()).total_seconds() > backoff(2) - 1
    await asyncio.sleep(backoff(2))
    assert await gateway.outbox.deliver()
    assert [i.status for i in await store.outbox.all()] == ["sent"]
    assert len(api.calls_to("sendMessage")) == 3 and api.replies[chat_id(1)] == 1


class Mailbox:
    """An SMTP server on a fixed port that can go away and come back; 550 for `gone@`."""

    def __init__(self) -> None:
        self.port = free_port()
        self.received: list[list[str]] = []  # the recipients of each message
        self.controller: Controller | None = None

    async def handle_RCPT(self, server, session, envelope, address, options):  # noqa: ANN001
        if address.startswith("gone@"):
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001
        self.received.append(envelope.rcpt_tos)
        return "250 accepted"

    def up(self) -> None:
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()


async def test_smtp_down_then_back_is_delivered_and_a_refusal_is_marked(database: Database) -> None:
    mailbox = Mailbox()
    channel = EmailChannel(imap_host="unused", imap_port=0, imap_user="", imap_password="", imap_ssl=False,
                           smtp_host="127.0.0.1", smtp_port=mailbox.port, smtp_user=None, smtp_password=None,
                           smtp_security="none", address="ioc@example.vn", display_name="IOC",
                           media_loader=MediaStore(database).load, smtp_timeout=5.0)
    outbox, store = OutboxWorker(database, {"email": channel}), Store(database)
    await store.outbox.enqueue("mail-1", "email", "dan@example.com", Outbound(text="Kết quả"))
    assert await outbox.deliver()  # nobody listens: retried later, with backoff
    [item] = await store.outbox.all()
    assert item.status == "pending" and (item.last_error or "").startswith("SMTP unavailable")
    mailbox.up()
    try:
        await asyncio.sleep((item.next_attempt_at - utcnow()).total_seconds())
        assert await outbox.deliver()
        await store.outbox.enqueue("mail-2", "email", "gone@example.com", Outbound(text="Kết quả"))
        assert await outbox.deliver()
    finally:
        assert mailbox.controller is not None
        mailbox.controller.stop()
    sent, refused = await store.outbox.all(_id="mail-1"), await store.outbox.all(_id="mail-2")
    assert sent[0].status == "sent" and mailbox.received == [["dan@example.com"]]
    assert refused[0].status == "unreachable" and "550" in (refused[0].last_error or "")
