"""Group commit: many concurrent callers, one database write for all of them.

The pipeline's sink (webhook events) and the outbox (sent marks) submit one item each and
wait for its outcome; while one write is in flight, the items that arrive meanwhile are
gathered and go in the next write. Nothing waits for a timer: a lone item is written at
once, and under load each write carries everything that queued behind the previous one,
so the database sees one round trip (and one journal flush) per batch instead of per item.
"""
from __future__ import annotations

import asyncio
from typing import Awaitable, Callable, Generic, Sequence, TypeVar

T = TypeVar("T")
R = TypeVar("R")

Write = Callable[[Sequence[T]], Awaitable[Sequence[R | Exception]]]


class GroupCommit(Generic[T, R]):
    """`write(items)` returns one result per item, in order, or raises for all of them; a
    result that is an exception is raised to that item's caller alone."""

    def __init__(self, write: Write[T, R], max_batch: int = 256) -> None:
        self.write = write
        self.max_batch = max_batch
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        """Called once per item; returns its result when the write that carried it is done."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_all(), name="group-commit")
        return await future

    async def flushed(self) -> None:
        """Returns once every item submitted so far is written (or failed)."""
        while self._writer is not None and not self._writer.done():
            await asyncio.wait([self._writer])

    async def _write_all(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting[:self.max_batch], self._waiting[self.max_batch:]
            try:
                results = await self.write([item for item, _ in batch])
            except BaseException as exc:  # every caller of this batch hears the same failure
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)
