"""Which bot answers a message: staff commands, agency replies, or the citizen intake.

The pipeline hands every parsed message to `Dispatcher.handle`; each specialised bot
registers with a predicate (`claims`) in the gateway, tried in order, and the intake
takes what nobody claimed — except group chats, which never reach the citizen dialogue.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from bots.base import Bot, Delivery
from normalizer.messages import Inbound
from store.repos import Store

Claim = Callable[[Inbound], bool]


@dataclass
class Dispatcher:
    intake: Bot
    routes: list[tuple[Claim, Bot]] = field(default_factory=list)

    def add(self, claims: Claim, bot: Bot) -> None:
        self.routes.append((claims, bot))

    async def handle(self, inbound: Inbound, store: Store) -> list[Delivery]:
        for claims, bot in self.routes:
            if claims(inbound):
                return await bot.handle(inbound, store)
        if inbound.chat_kind == "group":
            return []
        return await self.intake.handle(inbound, store)
