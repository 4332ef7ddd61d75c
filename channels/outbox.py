"""The outbox worker: sends what the bots queued, with retries, and records the outcome.

Started by the gateway beside the pipeline. The pipeline hands over the replies it just
committed (`accept`, already leased to this worker in the database); anything else queued
(agency loop, scheduler, staff, retries that came due) is claimed from the database with a
lease. A batch of items for different addresses is sent at once and the sent marks are
written together (a group commit); a failed send is retried with exponential backoff (or
the platform's Retry-After); a closed messaging window is handed to `on_window_closed` so
the agency loop can fall back to another route instead of dropping the message.
"""
from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta
from typing import Awaitable, Callable, Mapping

from channels.base import Channel, PermanentFailure, RetryLater, Unreachable, WindowClosed
from channels.work_queue import WorkQueue, run_worker
from normalizer.messages import utcnow
from store.database import Database
from store.group_commit import GroupCommit
from store.models import OutboxItem
from store.repos import Store
from store.retry import persist

log = logging.getLogger(__name__)

WindowClosedHook = Callable[[OutboxItem], Awaitable[None]]
BATCH = 16  # sends in flight at most (the channels keep a connection pool of about that size)


def backoff(attempt: int, base: float = 2.0, cap: float = 900.0) -> float:
    return min(cap, base ** attempt)


class OutboxWorker:
    def __init__(self, database: Database, channels: Mapping[str, Channel], *,
                 max_attempts: int = 8, on_window_closed: WindowClosedHook | None = None,
                 poll_seconds: float = 0.5, batch: int = BATCH) -> None:
        self.database = database
        self.channels = channels
        self.max_attempts = max_attempts
        self.on_window_closed = on_window_closed
        self.poll_seconds, self.batch = poll_seconds, batch
        self.wakeup = asyncio.Event()  # set when the pipeline handed something over
        self.queue: WorkQueue[OutboxItem, tuple[str, str]] = WorkQueue(key=lambda i: i.id,
                                                                       owner=lambda i: (i.channel, i.address))
        # One journaled bulk write, not a transaction: a gateway killed inside a transaction of
        # its own would leave it open on the embedded server, holding the marked items.
        self._sent: GroupCommit[tuple[str, str | None], None] = GroupCommit(
            lambda marks: Store(database).outbox.mark_sent_many(marks))
        self._polled_at = float("-inf")
        self._more_due = False  # the last look in the database found an item

    def accept(self, items: list[OutboxItem]) -> None:
        """Called by the pipeline after its commit: replies leased to this worker already."""
        self.queue.add(items)
        self.wakeup.set()

    async def deliver(self, look_in_database: bool = False) -> bool:
        """Send one batch: the replies handed over, and what is due in the database (agency
        mail, the scheduler's notices, retries): looked for every `poll_seconds`, at once
        again while the last look found something, and whenever `look_in_database` (the
        gateway's `drain`). Looking on every call cost the database four queries per message
        the pipeline handed over. Several `run` loops may call it at once, never two for the
        same address, so a citizen's replies arrive in the order queued. False when there was
        nothing to send."""
        if look_in_database or self._more_due or time.monotonic() - self._polled_at > self.poll_seconds:
            self._polled_at, self._more_due = time.monotonic(), True  # a look that fails is tried again next
            self._more_due = await self._claim()
        batch = self.queue.take(self.batch)
        if not batch:
            return False
        try:
            outcomes = await asyncio.gather(*(self._deliver(Store(self.database), i) for i in batch),
                                            return_exceptions=True)
            for item, outcome in zip(batch, outcomes, strict=True):
                if not isinstance(outcome, BaseException):
                    self.queue.finish(item)
        finally:
            self.queue.release(batch)
            self.wakeup.set()
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        return True

    async def _claim(self) -> bool:
        """Lease an item due in the database and queue it behind its address's others (one
        held here already, claimed again after its lease, is not queued twice); True if one was."""
        busy = sorted({address for _, address in self.queue.busy_owners()})
        item = await Store(self.database).outbox.claim(exclude_addresses=busy)
        if item is not None:
            self.queue.add([item])
        return item is not None

    async def _deliver(self, store: Store, item: OutboxItem) -> None:
        channel = self.channels.get(item.channel)
        if channel is None:
            await store.outbox.mark(item.id, "failed", error="channel not enabled")
            return
        try:
            platform_id = await channel.send(item.address, item.message)
        except RetryLater as exc:
            await self._retry(store, item, str(exc), exc.after)
        except WindowClosed as exc:
            await store.outbox.mark(item.id, "window_closed", error=str(exc))
            if self.on_window_closed is not None:
                await self.on_window_closed(item)
        except Unreachable as exc:
            await store.outbox.mark(item.id, "unreachable", error=str(exc))
            await store.citizens.mark_unreachable(item.channel, item.address)
        except PermanentFailure as exc:
            await store.outbox.mark(item.id, "failed", error=str(exc))
        except Exception as exc:  # noqa: BLE001 - network errors and channel bugs alike retry
            await self._retry(store, item, f"{type(exc).__name__}: {exc}", None)
        else:
            await self._mark_sent(item, platform_id)

    async def _mark_sent(self, item: OutboxItem, platform_id: str | None) -> None:
        """The message is out: a database outage now must not make it go out twice, so the
        mark is retried (~30 s) before the lease is left to expire (then it is resent)."""
        await persist(lambda: self._sent.submit((item.id, platform_id)))

    async def recover(self) -> None:
        """Called by the gateway at start: resend what a crashed run left half-sent."""
        if released := await Store(self.database).outbox.release_all():
            log.warning("outbox: %d message(s) were being sent when the last run stopped; sending again", released)

    async def _retry(self, store: Store, item: OutboxItem, error: str, after: float | None) -> None:
        if item.attempts >= self.max_attempts:
            log.error("giving up on %s after %d attempts: %s", item.id, item.attempts, error)
            await store.outbox.mark(item.id, "failed", error=error)
            return
        delay = after if after is not None else backoff(item.attempts)
        log.info("retrying %s in %.1f s: %s", item.id, delay, error)
        await store.outbox.mark(item.id, "pending", error=error, retry_at=utcnow() + timedelta(seconds=delay))

    async def run(self, stop: asyncio.Event, idle_seconds: float = 0.5) -> None:
        await run_worker(self.deliver, stop, self.wakeup, idle_seconds, "outbox")
