"""The pipeline's own database sessions, remembered so that the next run can end them.

A gateway killed in the middle of a batch leaves that batch's transaction open on the
server, holding its documents (the citizens' conversations and events) until the server's
transaction lifetime runs out (60 s by default on MongoDB and the embedded server). The
pipeline therefore runs its transactions on a few sessions of its own, whose ids it writes
down at start; the next start reads them and ends them with `killSessions` (which aborts
their transactions at once) before it takes up the events the dead run left.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import AsyncIterator

from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import PyMongoError

from store.database import Database

log = logging.getLogger(__name__)


class OwnSessions:
    def __init__(self, database: Database, name: str, size: int) -> None:
        self.database, self.name, self.size = database, name, size
        self._free: asyncio.Queue[AsyncClientSession] = asyncio.Queue()
        self._all: list[AsyncClientSession] = []

    async def open(self) -> None:
        """Called once at start: end the last run's sessions, then record this run's."""
        runs = self.database.db.sessions
        last = await runs.find_one({"_id": self.name})
        if last and last.get("lsids"):
            try:
                await self.database.client.admin.command({"killSessions": last["lsids"]})
                log.warning("%s: ended the %d session(s) of the last run", self.name, len(last["lsids"]))
            except PyMongoError as exc:  # not allowed here: its transactions expire on their own
                log.warning("%s: could not end the last run's sessions: %s", self.name, exc)
        self._all = [self.database.client.start_session() for _ in range(self.size)]
        for session in self._all:
            self._free.put_nowait(session)
        await runs.replace_one({"_id": self.name}, {"lsids": [s.session_id for s in self._all]}, upsert=True)

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncClientSession | None]:
        """One of the sessions for a transaction (None before `open`: the driver picks one)."""
        if not self._all:
            yield None
            return
        session = await self._free.get()
        try:
            yield session
        finally:
            self._free.put_nowait(session)

    async def close(self) -> None:
        for session in self._all:
            with contextlib.suppress(PyMongoError):
                await session.end_session()
        self._all = []
