"""The outbox worker: sends what the bots queued, with retries, and records the outcome.

Started by the gateway beside the pipeline. Each item is claimed with a lease, sent
through its channel, and marked; a failed send is retried with exponential backoff (or
the platform's Retry-After); a closed messaging window is handed to `on_window_closed`
so the agency loop can fall back to another route instead of dropping the message.
"""
from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Awaitable, Callable, Mapping

from pymongo.errors import PyMongoError

from channels.base import Channel, PermanentFailure, RetryLater, Unreachable, WindowClosed
from normalizer.messages import utcnow
from store.database import Database
from store.models import OutboxItem
from store.repos import Store
from store.retry import persist

log = logging.getLogger(__name__)

WindowClosedHook = Callable[[OutboxItem], Awaitable[None]]


def backoff(attempt: int, base: float = 2.0, cap: float = 900.0) -> float:
    return min(cap, base ** attempt)


class OutboxWorker:
    def __init__(self, database: Database, channels: Mapping[str, Channel], *,
                 max_attempts: int = 8, on_window_closed: WindowClosedHook | None = None) -> None:
        self.database = database
        self.channels = channels
        self.max_attempts = max_attempts
        self.on_window_closed = on_window_closed
        self.wakeup = asyncio.Event()  # set by the pipeline when it queued something
        self._claiming = asyncio.Lock()
        self._busy: set[str] = set()  # addresses being sent to: their messages stay in order

    async def deliver_one(self) -> bool:
        """Claim, send and mark one item; several `run` loops may call it at once, never
        two for the same address, so a citizen's replies arrive in the order queued."""
        store = Store(self.database)
        async with self._claiming:
            item = await store.outbox.claim(exclude_addresses=sorted(self._busy))
            if item is None:
                return False
            self._busy.add(item.address)
        try:
            await self._deliver(store, item)
        finally:
            self._busy.discard(item.address)
        return True

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
            await self._mark_sent(store, item, platform_id)

    async def _mark_sent(self, store: Store, item: OutboxItem, platform_id: str | None) -> None:
        """The message is out: a database outage now must not make it go out twice, so the
        mark is retried (~30 s) before the lease is left to expire (then it is resent)."""
        await persist(lambda: store.outbox.mark(item.id, "sent", platform_id=platform_id))

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
        await run_worker(self.deliver_one, stop, self.wakeup, idle_seconds, "outbox")


async def run_worker(step: Callable[[], Awaitable[bool]], stop: asyncio.Event, wakeup: asyncio.Event,
                     idle_seconds: float, name: str) -> None:
    """The loop of the pipeline's and the outbox's workers: `step` until there is nothing to do,
    then sleep until woken, stopped or `idle_seconds` pass; a database outage only pauses it."""
    while not stop.is_set():
        wakeup.clear()  # before the claim: a wake-up after it is not lost
        try:
            busy = await step()
        except PyMongoError as exc:
            log.warning("database unavailable in %s: %s", name, str(exc).splitlines()[0])
            busy = False
        if not busy:
            await wait_any(stop, wakeup, idle_seconds)


async def wait_any(stop: asyncio.Event, wakeup: asyncio.Event, timeout: float) -> None:
    """Called by an idle worker loop: return on stop, on new work, or after `timeout`."""
    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wakeup.wait())]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
