"""Abuse limits the pipeline applies before a bot sees a message: flood rate and dialog length.

`Pipeline` calls `Limits.check` inside the event's transaction:
- more than `per_minute` messages from one (channel, sender) in a minute: the event is
  stored as `throttled` and not handled; the first one over the limit gets one polite
  notice (`templates/*/throttled.txt`), the rest of that minute get nothing. The counts live
  in memory (`FloodCounter`): they only matter for a minute, a restart forgetting them lets
  a flood start again at zero for at most that minute, and a database write per message
  would cost more than the whole bot turn; an event counted once is never counted again,
  so a retried transaction does not count twice;
- a conversation longer than `max_turns` messages is dropped and the citizen asked, once,
  to start again concisely (`templates/*/too_long.txt`); its event is stored as `too_long`.
  This count is kept in the conversation, so it moves exactly once per committed event.
Group chats (IOC staff) are not limited.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from normalizer.messages import Delivery, Inbound, Outbound, reply
from normalizer.texts import Texts
from store.conversations import conversation_id
from store.repos import Store


@dataclass(frozen=True)
class FloodLimits:
    per_minute: int = 20
    max_turns: int = 60


class FloodCounter:
    """Messages per (channel, sender) in the current minute."""

    def __init__(self) -> None:
        self._minute: datetime | None = None
        self._counts: dict[tuple[str, str], int] = {}
        self._counted: dict[str, int] = {}  # event key → its count: a retried event counts once

    def hit(self, channel: str, sender: str, event: str, at: datetime) -> int:
        """Count the event `event` (once) in the minute of `at`; the count so far in that minute."""
        minute = at.replace(second=0, microsecond=0)
        if self._minute is None or minute > self._minute:  # a new minute: the old counts are done
            self._minute, self._counts, self._counted = minute, {}, {}
        elif minute < self._minute:  # a late event of a past minute is not held against anyone
            return 1
        if event not in self._counted:
            key = (channel, sender)
            self._counts[key] = self._counted[event] = self._counts.get(key, 0) + 1
        return self._counted[event]


@dataclass(frozen=True)
class Verdict:
    """The event is not for the bot: store it with `status`, send `deliveries`."""

    status: str
    deliveries: list[Delivery]


class Limits:
    def __init__(self, texts: Texts, limits: FloodLimits = FloodLimits()) -> None:
        self.texts = texts
        self.limits = limits
        self.flood = FloodCounter()

    async def check(self, inbound: Inbound, received_at: datetime, store: Store) -> Verdict | None:
        """None when the bot may handle the message; called by the pipeline in its transaction."""
        if inbound.chat_kind == "group":
            return None
        count = self.flood.hit(inbound.channel, inbound.sender, inbound.message_id, received_at)
        if count > self.limits.per_minute:
            notice = []
            if count == self.limits.per_minute + 1:
                conv = await store.conversations.get(inbound.channel, inbound.sender)
                notice = [self._notice(inbound, "throttled", conv.language if conv else "vi")]
            return Verdict("throttled", notice)
        turns, language = await store.conversations.count_turn(inbound.channel, inbound.sender)
        if turns > self.limits.max_turns:
            await store.conversations.delete(conversation_id(inbound.channel, inbound.sender))
            return Verdict("too_long", [self._notice(inbound, "too_long", language)])
        return None

    def _notice(self, inbound: Inbound, template: str, language: str) -> Delivery:
        text = self.texts.render(template, language, per_minute=self.limits.per_minute,
                                 max_turns=self.limits.max_turns)
        return reply(inbound, Outbound(text=text, kind="notice"))
