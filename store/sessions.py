"""The gateway's database sessions, remembered so that the next run can end them.

A gateway killed in the middle of a transaction leaves it open on the server, holding its
documents (the citizens' conversations and events, a case the scheduler was moving) until
the server's transaction lifetime runs out (60 s by default on MongoDB and the embedded
server). So every transaction the gateway runs is on a session it started and wrote down
at start: the pipeline's own (`OwnSession`, one, its transactions take turns) and the pool
the rest draws from (`SessionPool`: the scheduler, the agency loop, staff, Open311, through
`store.repos.unit_of_work`). The next start reads the ids and ends them with
`killSessions` (which aborts their transactions at once) before it takes up any work.
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


class SessionPool:
    """`size` sessions recorded under `name`; `lease` lends one to one transaction at a time."""

    def __init__(self, database: Database, name: str, size: int = 1) -> None:
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
                log.warning("%s: ended the session(s) of the last run", self.name)
            except PyMongoError as exc:  # not allowed here: its transactions expire on their own
                log.warning("%s: could not end the last run's sessions: %s", self.name, exc)
        self._all = [self.database.client.start_session() for _ in range(self.size)]
        for session in self._all:
            self._free.put_nowait(session)
        await runs.replace_one({"_id": self.name}, {"lsids": [s.session_id for s in self._all]}, upsert=True)

    @contextlib.asynccontextmanager
    async def lease(self) -> AsyncIterator[AsyncClientSession]:
        """A recorded session for one transaction; waits while all are in use."""
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
        self._free = asyncio.Queue()


class OwnSession(SessionPool):
    """The pipeline's one session; its transactions take turns on it (`Pipeline._committing`)."""

    def __init__(self, database: Database, name: str) -> None:
        super().__init__(database, name, size=1)

    @property
    def session(self) -> AsyncClientSession | None:
        """None before `open`: the driver picks one."""
        return self._all[0] if self._all else None
