"""From a stored raw event to the bot's answer in the outbox, exactly once.

The gateway gives each channel `sink(channel)` to store events before acknowledging
them; `Pipeline.run` then claims stored events one by one, lets the channel parse them,
resolves media, and runs the bot inside a transaction that also queues the replies and
marks the event done. A crash anywhere before the commit leaves the event to be claimed
again after its lease; a redelivered event is refused by the unique index at the sink.
"""
from __future__ import annotations

import asyncio
import logging
import random
from typing import Any, Callable, Mapping

from pymongo.errors import PyMongoError

from bots.base import Bot, Delivery
from bots.limits import Limits
from bots.texts import Texts
from channels.base import Channel, EventSink
from channels.outbox import run_worker
from normalizer.media import MediaLimits, resolve_media
from normalizer.messages import Inbound
from store.database import Database
from store.media import MediaStore
from store.models import InboundRecord
from store.repos import Store, unit_of_work
from store.retry import persist

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
TRANSACTION_TRIES = 8  # a write conflict between workers' transactions is retried at once


class Pipeline:
    def __init__(self, database: Database, channels: Mapping[str, Channel], bot: Bot,
                 media: MediaStore, limits: MediaLimits = MediaLimits(),
                 flood: Limits | None = None) -> None:
        self.database = database
        self.channels = channels
        self.bot = bot
        self.media = media
        self.media_limits = limits
        self.limits = flood or Limits(Texts())
        self.wakeup = asyncio.Event()
        self.on_queued: Callable[[], None] = lambda: None  # the gateway wakes the outbox here
        self._claiming = asyncio.Lock()
        self._busy: set[str] = set()  # senders with an event in hand: one at a time each
        self._held: set[str] = set()  # senders whose event a crashed run held (see recover)

    def sink(self, channel: str) -> EventSink:
        async def store_event(message_id: str, sender: str, payload: dict[str, Any]) -> bool:
            new = await Store(self.database).inbound.record(channel, message_id, sender, payload)
            if new:
                self.wakeup.set()
            return new
        return store_event

    async def process_one(self) -> bool:
        """Claim and handle one stored event; False when there was nothing to do.

        Several `run` loops may call this at once: claims are taken one at a time and skip
        senders whose earlier event is still in hand, so each sender's events are handled
        in order while different senders' events overlap their database round trips."""
        async with self._claiming:
            record = await Store(self.database).inbound.claim(exclude_senders=sorted(self._busy),
                                                              hold_senders=sorted(self._held))
            if record is None:
                return False
            self._busy.add(record.sender)
        try:
            await self._handle(record)
        except PyMongoError:
            await self._release(record)
            raise
        except Exception as exc:  # noqa: BLE001 - one bad event must not stop the loop
            log.exception("event %s/%s failed", record.channel, record.message_id)
            status = "failed" if record.attempts >= MAX_ATTEMPTS else "pending"
            await Store(self.database).inbound.finish(record.id, status, f"{type(exc).__name__}: {exc}"[:300])
        finally:
            self._busy.discard(record.sender)
            self._held.discard(record.sender)  # its held event was the only one it could get
        return True

    async def recover(self) -> None:
        """Called by the gateway at start: senders whose event a crashed run held wait until
        that event is claimed again (after its lease), so their later events keep their order."""
        self._held = set(await Store(self.database).inbound.in_hand())
        if self._held:
            log.warning("pipeline: %d sender(s) had an event in hand when the last run stopped", len(self._held))

    async def _release(self, record: InboundRecord) -> None:
        """Hand a failed event back, retrying through a short outage while its sender stays
        in hand (so its later events wait); after that, its lease expires instead."""
        try:
            await persist(lambda: Store(self.database).inbound.release(record.id))
        except PyMongoError:
            log.warning("event %s/%s left to its lease", record.channel, record.message_id)

    async def _handle(self, record: InboundRecord) -> None:
        channel = self.channels.get(record.channel)
        if channel is None:
            await Store(self.database).inbound.finish(record.id, "failed", "channel not enabled")
            return
        try:
            inbound = channel.parse(record.message_id, record.sender, record.payload)
        except Exception as exc:  # noqa: BLE001 - parse is pure: retrying the same payload cannot help
            log.exception("event %s/%s cannot be parsed", record.channel, record.message_id)
            await Store(self.database).inbound.finish(record.id, "failed", f"unparseable: {exc!r}"[:300])
            return
        if inbound is None:
            await self._skip(channel, record)
            return
        if inbound.media:  # the photo limit is per report, not per message
            conv = await Store(self.database).conversations.get(inbound.channel, inbound.sender)
            already = len(conv.draft.photos) if conv else 0
            inbound = await resolve_media(inbound, channel.fetch_media, self.media, self.media_limits, already)
        for attempt in range(1, TRANSACTION_TRIES + 1):
            try:
                deliveries = await self._transaction(record, inbound)
                break
            except PyMongoError as exc:  # another worker's transaction touched the same document
                if attempt == TRANSACTION_TRIES or not exc.has_error_label("TransientTransactionError"):
                    raise
                await asyncio.sleep(random.uniform(0, 0.01 * 2 ** attempt))
        if deliveries:
            self.on_queued()

    async def _transaction(self, record: InboundRecord, inbound: Inbound) -> list[Delivery]:
        """The bot's turn (unless a limit stops it), its replies queued and the event
        marked: all or nothing."""
        async with unit_of_work(self.database) as store:
            verdict = await self.limits.check(inbound, record.received_at, store)
            if verdict is None:
                status, deliveries = "done", await self.bot.handle(inbound, store)
            else:
                status, deliveries = verdict.status, verdict.deliveries
            for n, d in enumerate(deliveries):
                await store.outbox.enqueue(f"in:{record.id}:{n}", d.channel, d.address, d.message)
            await store.inbound.finish(record.id, status)
        return deliveries

    async def _skip(self, channel: Channel, record: InboundRecord) -> None:
        store = Store(self.database)
        status, reason = getattr(channel, "skip_reason", lambda _: ("ignored", None))(record.payload)
        bounced = getattr(channel, "undeliverable", lambda _: None)(record.payload)
        if bounced:
            await store.citizens.mark_unreachable(record.channel, bounced)
            log.info("%s: %s is undeliverable", record.channel, bounced)
        await store.inbound.finish(record.id, status, reason)

    async def run(self, stop: asyncio.Event, idle_seconds: float = 0.5) -> None:
        await run_worker(self.process_one, stop, self.wakeup, idle_seconds, "pipeline")

