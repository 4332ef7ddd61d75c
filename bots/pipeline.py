"""From a stored raw event to the bot's answer in the outbox, exactly once.

The gateway gives each channel `sink(channel)`: an event is stored before the platform is
acknowledged (a group commit: one journaled insert for every event that arrived meanwhile)
and handed to the pipeline in memory. `Pipeline.process` takes a batch of queued events of
different senders, lets their channels parse them, resolves media, and runs the bot for
every event of the batch inside one transaction that also queues the replies and marks the
events done; the replies then reach the outbox in memory (`on_queued`). So a bot turn costs
the database a share of a few batched writes, not round trips of its own.

A crash before the commit leaves the events pending in the database, and the next start
queues them again (`recover`); a redelivered event is refused by the unique index at the
sink. One gateway process serves one database: the queue in memory is the list of work.
"""
from __future__ import annotations

import asyncio
import logging
import random
from collections import defaultdict
from typing import Any, Callable, Iterable, Mapping, Sequence

from bson import ObjectId
from pymongo.errors import PyMongoError

from bots.base import Bot
from bots.limits import Limits
from channels.base import Channel, EventSink
from channels.work_queue import WorkQueue, run_worker
from normalizer.media import MediaLimits, resolve_media
from normalizer.messages import Inbound
from normalizer.texts import Texts
from store.conversations import ConversationBuffer, conversation_id
from store.database import Database
from store.errors import conflict, describe, unavailable
from store.group_commit import GroupCommit
from store.inbound import UNFINISHED, Recorded
from store.media import MediaStore
from store.models import InboundRecord, OutboxItem
from store.outbox_keys import reply_prefix
from store.repos import Store, unit_of_work
from store.sessions import OwnSession

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
TRANSACTION_TRIES = 8  # a write conflict with another transaction is retried at once
BATCH = 64  # events per transaction at most
Item = tuple[InboundRecord, Inbound]


class AlreadyHandled(Exception):
    """Some events of a batch were handled by a commit whose answer was lost: redo the rest."""


class Pipeline:
    def __init__(self, database: Database, channels: Mapping[str, Channel], bot: Bot,
                 media: MediaStore, limits: MediaLimits = MediaLimits(),
                 flood: Limits | None = None, batch: int = BATCH) -> None:
        self.database = database
        self.channels = channels
        self.bot = bot
        self.media = media
        self.media_limits = limits
        self.limits = flood or Limits(Texts())
        self.batch = batch
        self.session = OwnSession(database, "pipeline")
        self._committing = asyncio.Lock()  # one transaction at a time, on `session`
        self.wakeup = asyncio.Event()
        self.on_queued: Callable[[list[OutboxItem]], None] = lambda items: None  # the gateway: outbox.accept
        self.queue: WorkQueue[InboundRecord, tuple[str, str]] = WorkQueue(key=lambda r: r.id,
                                                                          owner=lambda r: (r.channel, r.sender))
        self._inserts = GroupCommit(self._store_events)

    def sink(self, channel: str) -> EventSink:
        async def store_event(message_id: str, sender: str, payload: dict[str, Any]) -> bool:
            if await self._inserts.submit((channel, message_id, sender, payload)) is None:
                # known: a redelivery (or a first delivery whose 200 was lost)
                await self._requeue_if_unfinished(channel, message_id)
                return False
            return True
        return store_event

    async def _store_events(self, events: Sequence[tuple[str, str, str, dict[str, Any]]]) -> list[Recorded]:
        """The group commit's write: the new events are queued as soon as they are stored (an
        event refused alone is raised to its own caller by the group commit)."""
        records = await Store(self.database).inbound.record_many(events)
        self._enqueue(r for r in records if isinstance(r, InboundRecord))
        return records

    async def stored(self) -> None:
        """Called by `Gateway.drain`: returns once every event received so far is stored and queued."""
        await self._inserts.flushed()

    async def recover(self) -> None:
        """Called by the gateway before anything arrives: end the transactions a killed
        run left open, then queue what it stored and did not finish, oldest first."""
        await self.session.open()
        records = await Store(self.database).inbound.unfinished()
        if records:
            log.warning("pipeline: %d event(s) stored by the last run were not handled yet", len(records))
            self._enqueue(records)

    async def process(self) -> bool:
        """Handle one batch of queued events; False when there was nothing to do. Several
        `run` loops may call this at once: a sender in hand is skipped, so each sender's
        events are handled in order, and one loop fetches its batch's photos while another
        commits (the transactions themselves take turns: two at once conflicted on shared
        documents such as the case-code counter, and were redone)."""
        batch = self.queue.take(self.batch)
        if not batch:
            return False
        try:  # a database error leaves the rest pending there, and first in line here
            items = [item for record in batch if (item := await self._parse(record)) is not None]
            items = await self._with_media(items)
            async with self._committing:  # another loop's batch gets its photos meanwhile
                await self._run(items)
        finally:
            self.queue.release(batch)
            self.wakeup.set()
        return True

    def _enqueue(self, records: Iterable[InboundRecord]) -> None:
        self.queue.add(records)
        self.wakeup.set()

    async def _finish(self, record: InboundRecord, status: str, reason: str | None = None) -> None:
        await Store(self.database).inbound.finish(record.id, status, reason, attempts=record.attempts)
        self.queue.finish(record)

    async def _parse(self, record: InboundRecord) -> Item | None:
        """The event as an `Inbound`, or None once an event no bot is to see is finished."""
        channel = self.channels.get(record.channel)
        if channel is None:
            await self._finish(record, "failed", "channel not enabled")
            return None
        try:
            inbound = channel.parse(record.message_id, record.sender, record.payload)
        except Exception as exc:  # noqa: BLE001 - parse is pure: retrying the same payload cannot help
            log.exception("event %s/%s cannot be parsed", record.channel, record.message_id)
            await self._finish(record, "failed", f"unparseable: {exc!r}"[:300])
            return None
        if inbound is None:
            await self._skip(channel, record)
            return None
        return record, inbound

    async def _skip(self, channel: Channel, record: InboundRecord) -> None:
        status, reason = channel.skip_reason(record.payload)
        bounced = channel.undeliverable(record.payload)
        if bounced:
            await Store(self.database).citizens.mark_unreachable(record.channel, bounced)
            log.info("%s: %s is undeliverable", record.channel, bounced)
        await self._finish(record, status, reason)

    async def _with_media(self, items: list[Item]) -> list[Item]:
        """Photos fetched and stored before the transaction; the limit counts the photos
        already in each report (one query for the batch)."""
        with_media = [(r, i) for r, i in items if i.media]
        if not with_media:
            return items
        drafts = ConversationBuffer(self.database, None)
        await drafts.load(conversation_id(i.channel, i.sender) for _, i in with_media)

        async def resolve(record: InboundRecord, inbound: Inbound) -> Inbound:
            conv = await drafts.get(inbound.channel, inbound.sender)
            channel = self.channels[record.channel]
            already = len(conv.draft.photos) if conv else 0
            return await resolve_media(inbound, channel.fetch_media, self.media, self.media_limits, already)
        resolved = iter(await asyncio.gather(*(resolve(r, i) for r, i in with_media), return_exceptions=True))
        ready: list[Item] = []
        for record, inbound in items:
            outcome = next(resolved) if inbound.media else inbound
            if isinstance(outcome, PyMongoError):
                raise outcome
            if isinstance(outcome, Exception):
                async with self._committing:  # `_failed` writes on the pipeline's session
                    await self._failed(record, outcome)
            elif isinstance(outcome, BaseException):  # a cancelled fetch: not this message's fault
                raise outcome
            else:
                ready.append((record, outcome))
        return ready

    async def _run(self, items: list[Item]) -> None:
        """Commit the batch. When the database is unavailable the error goes up (the worker
        waits, the batch stays first in line, no event is blamed); any other failure is the
        fault of some event of the batch: each event is then tried alone, and the one that
        fails alone is counted (`_failed`), so it can never hold the others back."""
        if not items:
            return
        try:
            replies = await self._commit(items)
        except Exception as exc:  # noqa: BLE001 - one bad event must not stop the loop
            if unavailable(exc) or (len(items) == 1 and conflict(exc)):
                raise
            if len(items) == 1:
                await self._failed(items[0][0], exc)
            else:
                await self._one_by_one(items)
            return
        for record, _ in items:
            self.queue.finish(record)
        if replies:
            self.on_queued(replies)

    async def _one_by_one(self, items: list[Item]) -> None:
        """Each event in a transaction of its own: the others go on when one is in conflict."""
        held_up: PyMongoError | None = None
        for item in items:
            try:
                await self._run([item])
            except PyMongoError as exc:
                if unavailable(exc):
                    raise
                held_up = exc  # a conflict that outlasted the retries: the rest go on
        if held_up is not None:
            raise held_up

    async def _commit(self, items: list[Item]) -> list[OutboxItem]:
        """The transaction, retried after a write conflict; events that a lost commit already
        handled are dropped from it, never redone."""
        for attempt in range(1, TRANSACTION_TRIES + 1):
            try:
                return await self._transaction(items)
            except AlreadyHandled:
                items = await self._still_pending(items)
                if not items:
                    return []
            except PyMongoError as exc:
                if attempt == TRANSACTION_TRIES or unavailable(exc) or not conflict(exc):
                    raise
                await asyncio.sleep(random.uniform(0, 0.01 * 2 ** attempt))
        return await self._transaction(items)

    async def _transaction(self, items: list[Item]) -> list[OutboxItem]:
        """Every bot turn of the batch (unless a limit stops it), its replies queued and its
        events marked: all or nothing."""
        async with unit_of_work(self.database, buffered=True, session=self.session.session) as store:
            assert store.buffer is not None
            await store.buffer.load(conversation_id(i.channel, i.sender) for _, i in items)
            replies: list[OutboxItem] = []
            finished: dict[str, list[ObjectId]] = defaultdict(list)
            for record, inbound in items:
                verdict = await self.limits.check(inbound, record.received_at, store)
                if verdict is None:
                    status, deliveries = "done", await self.bot.handle(inbound, store)
                else:
                    status, deliveries = verdict.status, verdict.deliveries
                replies += [OutboxItem(_id=f"{reply_prefix(record.id)}{n}", channel=d.channel, address=d.address,
                                       message=d.message) for n, d in enumerate(deliveries)]
                finished[status].append(record.id)
                await asyncio.sleep(0)  # a turn may run without any I/O: let webhooks be answered between turns
            # The events are marked before the replies are inserted: after a commit whose
            # answer was lost, this finds them handled before the replies' keys collide.
            marked = [await store.inbound.finish_many(ids, status) for status, ids in finished.items()]
            if sum(marked) < len(items):
                raise AlreadyHandled
            await store.outbox.enqueue_claimed(replies)
        return replies

    async def _still_pending(self, items: list[Item]) -> list[Item]:
        """The events of `items` a lost commit did not handle; the replies it did commit for
        the others (leased to this gateway, but never handed over) go to the outbox now."""
        store = Store(self.database)
        pending = await store.inbound.unfinished_of([record.id for record, _ in items])
        handled = [record for record, _ in items if record.id not in pending]
        for record in handled:
            log.warning("event %s/%s was handled by a commit whose answer was lost",
                        record.channel, record.message_id)
            self.queue.finish(record)
        replies = await store.outbox.committed_replies([reply_prefix(r.id) for r in handled])
        if replies:
            self.on_queued(replies)
        return [(record, inbound) for record, inbound in items if record.id in pending]

    async def _failed(self, record: InboundRecord, exc: Exception) -> None:
        """A bot (or a media download) failed on this event: tried again next, up to
        MAX_ATTEMPTS times, then failed for good. Called holding `_committing`: the count is
        written in a transaction on the pipeline's session, which also ends the failed
        transaction left open there (a refused commit leaves it holding this very event)."""
        record.attempts += 1
        reason = describe(exc)
        log.error("event %s/%s failed (attempt %d of %d): %s", record.channel, record.message_id,
                  record.attempts, MAX_ATTEMPTS, reason,
                  exc_info=None if isinstance(exc, PyMongoError) else exc)  # a bug: its traceback
        status = "failed" if record.attempts >= MAX_ATTEMPTS else "pending"
        async with unit_of_work(self.database, session=self.session.session) as store:
            await store.inbound.finish(record.id, status, reason, attempts=record.attempts)
        if status == "failed":
            self.queue.finish(record)
        else:
            self.queue.again(record)

    async def _requeue_if_unfinished(self, channel: str, message_id: str) -> None:
        """A redelivered event whose first delivery was stored but not acknowledged (the
        write's answer was lost): queue it unless it is handled or held already."""
        record = await Store(self.database).inbound.get(channel, message_id)
        if record is not None and record.status in UNFINISHED and not self.queue.knows(record.id):
            self._enqueue([record])

    async def run(self, stop: asyncio.Event, idle_seconds: float = 0.5) -> None:
        await run_worker(self.process, stop, self.wakeup, idle_seconds, "pipeline")
