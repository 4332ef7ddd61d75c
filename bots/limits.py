"""Abuse limits the pipeline applies before a bot sees a message: flood rate and dialog length.

`Pipeline._transaction` calls `Limits.check` inside the event's transaction, so each count
moves exactly once per processed event (a retried transaction rolls its increment back):
- more than `per_minute` messages from one (channel, sender) in a minute: the event is
  stored as `throttled` and not handled; the first one over the limit gets one polite
  notice (`templates/*/throttled.txt`), the rest of that minute get nothing;
- a conversation longer than `max_turns` messages is dropped and the citizen asked, once,
  to start again concisely (`templates/*/too_long.txt`); its event is stored as `too_long`.
Group chats (IOC staff) are not limited.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bots.base import Delivery, reply
from bots.texts import Texts
from normalizer.messages import Inbound, Outbound
from store.repos import Store


@dataclass(frozen=True)
class FloodLimits:
    per_minute: int = 20
    max_turns: int = 60


@dataclass(frozen=True)
class Verdict:
    """The event is not for the bot: store it with `status`, send `deliveries`."""

    status: str
    deliveries: list[Delivery]


class Limits:
    def __init__(self, texts: Texts, limits: FloodLimits = FloodLimits()) -> None:
        self.texts = texts
        self.limits = limits

    async def check(self, inbound: Inbound, received_at: datetime, store: Store) -> Verdict | None:
        """None when the bot may handle the message; called by the pipeline in its transaction."""
        if inbound.chat_kind == "group":
            return None
        count = await store.rates.hit(inbound.channel, inbound.sender, received_at)
        if count > self.limits.per_minute:
            notice = []
            if count == self.limits.per_minute + 1:
                conv = await store.conversations.get(inbound.channel, inbound.sender)
                notice = [self._notice(inbound, "throttled", conv.language if conv else "vi")]
            return Verdict("throttled", notice)
        turns, language = await store.conversations.count_turn(inbound.channel, inbound.sender)
        if turns > self.limits.max_turns:
            await store.conversations.delete(f"{inbound.channel}:{inbound.sender}")
            return Verdict("too_long", [self._notice(inbound, "too_long", language)])
        return None

    def _notice(self, inbound: Inbound, template: str, language: str) -> Delivery:
        text = self.texts.render(template, language, per_minute=self.limits.per_minute,
                                 max_turns=self.limits.max_turns)
        return reply(inbound, Outbound(text=text, kind="notice"))
