"""The line of work in memory that the pipeline and the outbox take their batches from, and their loop.

The pipeline queues the events its sink stored, the outbox the replies the pipeline
committed; both are also in the database, so the line is only the fast way to them (a
restart fills it again from there). Items have a key (never queued twice) and an owner (a
citizen's address): a batch holds one item per owner, and an owner in hand is skipped until
its batch is released, so each citizen's messages are handled and answered in order while
different citizens' overlap.
"""
from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Awaitable, Callable, Generic, Hashable, Iterable, TypeVar

from pymongo.errors import PyMongoError

from store.errors import conflict, describe, unavailable

log = logging.getLogger(__name__)

T = TypeVar("T")
Owner = TypeVar("Owner", bound=Hashable)  # an item's owner


class WorkQueue(Generic[T, Owner]):
    """One line per owner; the owners take turns (an owner whose item was taken goes to the
    back of the turn order), so one citizen's flood never starves the others."""

    def __init__(self, key: Callable[[T], Hashable], owner: Callable[[T], Owner]) -> None:
        self.key, self.owner = key, owner
        self._lines: dict[Owner, deque[T]] = {}  # owner → its items, owners in turn order
        self._size = 0
        self._known: set[Hashable] = set()  # keys queued or in hand
        self._waiting: set[Hashable] = set()  # keys queued
        self._busy: set[Owner] = set()  # owners in hand
        self._finished: set[Hashable] = set()  # keys in hand that are done with

    def __len__(self) -> int:
        return self._size

    def knows(self, key: Hashable) -> bool:
        return key in self._known

    def busy_owners(self) -> set[Owner]:
        return set(self._busy)

    def add(self, items: Iterable[T]) -> None:
        """New work at the end of its owner's line; keys already known are skipped."""
        for item in items:
            if self.key(item) not in self._known:
                self._known.add(self.key(item))
                self._queue(item, front=False)

    def take(self, limit: int) -> list[T]:
        """Up to `limit` items, the first of each owner's line, owners not in hand, in turn
        order; their owners are in hand until `release`."""
        batch: list[T] = []
        for owner, items in self._lines.items():
            if len(batch) == limit:
                break
            if owner not in self._busy:
                batch.append(items.popleft())
        for item in batch:
            owner = self.owner(item)
            rest = self._lines.pop(owner)
            if rest:
                self._lines[owner] = rest  # back of the turn order
        self._size -= len(batch)
        self._waiting.difference_update(self.key(i) for i in batch)
        self._busy.update(self.owner(i) for i in batch)
        return batch

    def finish(self, item: T) -> None:
        """The item is done with (in whatever outcome the database now records)."""
        self._finished.add(self.key(item))

    def again(self, item: T) -> None:
        """Try the item again next: front of its owner's line (the owner waits for `release`)."""
        self._queue(item, front=True)

    def release(self, batch: Iterable[T]) -> None:
        """The batch is over: its owners are free; what was neither finished nor tried
        again (a database error cut it short) goes back to the front of its line."""
        for item in batch:
            key = self.key(item)
            self._busy.discard(self.owner(item))
            if key in self._finished:
                self._finished.discard(key)
                self._known.discard(key)
            elif key not in self._waiting:
                self._queue(item, front=True)

    def _queue(self, item: T, front: bool) -> None:
        items = self._lines.setdefault(self.owner(item), deque())
        items.appendleft(item) if front else items.append(item)
        self._waiting.add(self.key(item))
        self._size += 1


async def run_worker(step: Callable[[], Awaitable[bool]], stop: asyncio.Event, wakeup: asyncio.Event,
                     idle_seconds: float, name: str, max_pause: float = 5.0) -> None:
    """The loop of the pipeline's and the outbox's workers: `step` until there is nothing to do,
    then sleep until woken, stopped or `idle_seconds` pass. A database error only pauses it,
    longer after each failure in a row (up to `max_pause`), and is logged at the 1st, 2nd,
    4th, 8th… failure in a row, then once when the database answers again: an outage is a
    few lines in the log, not thousands."""
    failures = 0
    while not stop.is_set():
        wakeup.clear()  # before the claim: a wake-up after it is not lost
        try:
            busy = await step()
        except Exception as exc:  # noqa: BLE001 - the loop must outlive any failure
            failures += 1
            if failures & (failures - 1) == 0:
                log.warning("%s in %s (%d in a row), trying again: %s", _kind(exc), name, failures, describe(exc),
                            exc_info=None if isinstance(exc, PyMongoError) else exc)  # a bug: its traceback
            await wait_any(stop, asyncio.Event(), min(idle_seconds * 2 ** (failures - 1), max_pause))
            continue
        if failures:
            log.warning("%s: the database answers again after %d failed attempt(s)", name, failures)
            failures = 0
        if not busy:
            await wait_any(stop, wakeup, idle_seconds)


def _kind(exc: Exception) -> str:
    if not isinstance(exc, PyMongoError):
        return "unexpected error"
    if unavailable(exc):
        return "database unavailable"
    return "write conflict" if conflict(exc) else "database error"


async def wait_any(stop: asyncio.Event, wakeup: asyncio.Event, timeout: float) -> None:
    """Called by an idle worker loop: return on stop, on new work, or after `timeout`."""
    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wakeup.wait())]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
