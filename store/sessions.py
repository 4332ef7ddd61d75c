"""The pipeline's own database session, remembered so that the next run can end it.

A gateway killed in the middle of a batch leaves that batch's transaction open on the
server, holding its documents (the citizens' conversations and events) until the server's
transaction lifetime runs out (60 s by default on MongoDB and the embedded server). The
pipeline therefore runs its transactions on a session of its own, whose id it writes
down at start; the next start reads it and ends it with `killSessions` (which aborts
their transactions at once) before it takes up the events the dead run left.
"""
from __future__ import annotations

import contextlib
import logging

from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import PyMongoError

from store.database import Database

log = logging.getLogger(__name__)


class OwnSession:
    """One session; the pipeline's transactions take turns on it (`Pipeline._committing`)."""

    def __init__(self, database: Database, name: str) -> None:
        self.database, self.name = database, name
        self.session: AsyncClientSession | None = None  # None before `open`: the driver picks one

    async def open(self) -> None:
        """Called once at start: end the last run's session, then record this run's."""
        runs = self.database.db.sessions
        last = await runs.find_one({"_id": self.name})
        if last and last.get("lsids"):
            try:
                await self.database.client.admin.command({"killSessions": last["lsids"]})
                log.warning("%s: ended the session of the last run", self.name)
            except PyMongoError as exc:  # not allowed here: its transactions expire on their own
                log.warning("%s: could not end the last run's session: %s", self.name, exc)
        self.session = self.database.client.start_session()
        await runs.replace_one({"_id": self.name}, {"lsids": [self.session.session_id]}, upsert=True)

    async def close(self) -> None:
        if self.session is not None:
            with contextlib.suppress(PyMongoError):
                await self.session.end_session()
        self.session = None
