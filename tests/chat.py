"""A citizen talking to a real gateway (real pipeline, store and outbox) through replay channels."""
from __future__ import annotations

import uuid
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, AsyncIterator, Mapping

from bots.gateway import Gateway
from cases.policy import Policy, load_policy
from channels.base import Channel
from channels.replay import ReplayChannel
from store.database import Database
from store.models import Reflection
from store.repos import Store

ROOT = Path(__file__).resolve().parent.parent
IMAGES = Path(__file__).parent / "fixtures" / "images"
CHANNELS = ("zalo", "telegram", "email", "facebook")


class Clock:
    def __init__(self, start: datetime = datetime(2026, 11, 24, 2, 0, tzinfo=timezone.utc)) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += timedelta(**kw)


def quang_nam() -> Policy:
    return load_policy(ROOT / "policies" / "quang_nam.yaml")


def make_gateway(database: Database, policy: Policy | None = None, clock: Clock | None = None) -> Gateway:
    channels = {n: ReplayChannel(n, IMAGES) for n in CHANNELS}
    return Gateway(database, policy or quang_nam(), channels, clock=clock or Clock())


@asynccontextmanager
async def serving(database: Database, channels: Mapping[str, Channel],
                  policy: Policy | None = None) -> AsyncIterator[Gateway]:
    """A gateway whose web app serves the channels' webhooks on a free port; workers left to
    `drain`, so a test decides when stored events are processed."""
    gw = Gateway(database, policy or quang_nam(), channels, web=("127.0.0.1", 0))
    await gw.start(workers=False)
    try:
        yield gw
    finally:
        await gw.stop()


async def stored_case(store: Store, code: str) -> Reflection:
    """The case as stored now; the test fails if there is none."""
    case = await store.reflections.get(code)
    assert case is not None, f"no case {code}"
    return case


class Citizen:
    def __init__(self, gateway: Gateway, channel: str = "zalo", sender: str = "u1") -> None:
        self.gateway, self.channel, self.sender = gateway, channel, sender

    async def say(self, text: str = "", message_id: str | None = None, **extra: Any) -> list[str]:
        channel = self.gateway.channels[self.channel]
        assert isinstance(channel, ReplayChannel)
        before = len(channel.sent)
        await channel.feed({"sender": self.sender, "text": text, **extra}, message_id or uuid.uuid4().hex)
        await self.gateway.drain()
        return [m.text for addr, m in channel.sent[before:] if addr == self.sender]

    async def reports(self) -> list[Reflection]:
        return [r for r in await Store(self.gateway.database).reflections.all()
                if (r.channel, r.sender) == (self.channel, self.sender)]
