"""Retrying one small database write through a short outage.

The outbox calls `persist` to mark a message sent (it is out: a lost mark would send it
again) and the pipeline to hand back an event whose transaction failed (a sender's later
events must not overtake it). Both hold their citizen's place in line while they retry.
"""
from __future__ import annotations

import asyncio
import time
from typing import Awaitable, Callable, TypeVar

from pymongo.errors import PyMongoError

T = TypeVar("T")


async def persist(write: Callable[[], Awaitable[T]], seconds: float = 30.0) -> T:
    """Run `write` until it succeeds or `seconds` pass (then its last error is raised)."""
    deadline, delay = time.monotonic() + seconds, 0.05
    while True:
        try:
            return await write()
        except PyMongoError:
            if time.monotonic() + delay > deadline:
                raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
