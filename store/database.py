"""Connection to MongoDB (or the embedded server) and the indexes every collection needs.

`run_bots.py` and the tests call `connect` once and pass the resulting `Database` to the
repositories; nothing else creates a client.
"""
from __future__ import annotations

import contextlib
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Protocol, Sequence

from gridfs import AsyncGridFSBucket
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, WriteConcern
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import CollectionInvalid, PyMongoError

from store.geocells import cell_of
from store.group_commit import GroupCommit


class DatabaseUnavailable(RuntimeError):
    """The configured database did not answer in time."""


JOURNALED = WriteConcern(j=True)


def journaled(collection: AsyncCollection, session: AsyncClientSession | None) -> AsyncCollection:
    """The collection with a journaled write concern, unless a transaction sets its own."""
    return collection if session is not None else collection.with_options(write_concern=JOURNALED)


class SessionLender(Protocol):
    """What `store.sessions.SessionPool` offers `store.repos.unit_of_work`."""

    def lease(self) -> AbstractAsyncContextManager[AsyncClientSession]: ...


@dataclass
class Database:
    client: AsyncMongoClient
    db: AsyncDatabase
    _journal: GroupCommit[None, None] | None = field(default=None, init=False, repr=False, compare=False)
    # Set by the gateway at start: `unit_of_work` then runs every transaction on a session
    # the next start can end (store.sessions); CLIs and tests leave it None.
    transactions: SessionLender | None = field(default=None, init=False, repr=False, compare=False)

    async def flush_journal(self) -> None:
        """Returns once every transaction committed before the call is on disk. Called by
        `store.repos.unit_of_work` after its commit. The embedded server (SecantusDB 0.7)
        commits a transaction without flushing its log, whatever the write concern says:
        killed right after, it lost 5 of 5 such commits. One journaled write flushes the log
        up to itself, earlier commits included; callers waiting meanwhile share it."""
        if self._journal is None:
            self._journal = GroupCommit(self._journaled_write)
        await self._journal.submit(None)

    async def _journaled_write(self, callers: Sequence[None]) -> list[None]:
        await self.db.journal.with_options(write_concern=JOURNALED).update_one(
            {"_id": "flush"}, {"$inc": {"n": 1}}, upsert=True)
        return [None] * len(callers)

    @property
    def fs(self) -> AsyncGridFSBucket:
        return AsyncGridFSBucket(self.db, bucket_name="media")

    async def ping(self) -> bool:
        try:
            await self.db.command("ping")
            return True
        except PyMongoError:
            return False

    async def close(self) -> None:
        await self.client.close()


async def connect(uri: str, name: str, timeout_ms: int = 5000) -> Database:
    """Open the client, check the server answers within `timeout_ms`, create indexes."""
    client: AsyncMongoClient = AsyncMongoClient(
        uri, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms, tz_aware=True)
    database = Database(client, client[name])
    try:
        await database.db.command("ping")
        await ensure_indexes(database.db)
    except PyMongoError as exc:
        await client.close()
        first_line = str(exc).splitlines()[0][:200]
        raise DatabaseUnavailable(f"database at {_redact(uri)} is unreachable: {first_line}") from None
    return database


def _redact(uri: str) -> str:
    if "@" in uri:
        scheme, _, rest = uri.partition("://")
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return uri


# Collections written inside transactions: created up front, because a collection created
# implicitly by a transaction's first insert makes concurrent transactions conflict.
TRANSACTIONAL = ("inbound", "outbox", "conversations", "citizens", "reflections", "counters", "audit")


async def stamp_geo_cells(db: AsyncDatabase) -> None:
    """Cases filed before `geo_cell` existed get theirs, once (`ensure_indexes` at start)."""
    async for doc in db.reflections.find({"geo": {"$exists": True}, "geo_cell": {"$exists": False}}, {"geo": 1}):
        lon, lat = doc["geo"]["coordinates"]
        await db.reflections.update_one({"_id": doc["_id"]}, {"$set": {"geo_cell": cell_of(lat, lon)}})


async def ensure_indexes(db: AsyncDatabase) -> None:
    existing = set(await db.list_collection_names())
    for name in TRANSACTIONAL:
        if name not in existing:
            with contextlib.suppress(CollectionInvalid):  # another process created it meanwhile
                await db.create_collection(name)
    await db.inbound.create_index([("channel", ASCENDING), ("message_id", ASCENDING)], unique=True)
    await db.inbound.create_index([("status", ASCENDING), ("received_at", ASCENDING)])
    await db.outbox.create_index([("status", ASCENDING), ("next_attempt_at", ASCENDING)])
    await db.outbox.create_index([("status", ASCENDING), ("lease_until", ASCENDING)])  # expired leases
    await db.reflections.create_index("code", unique=True)
    await db.reflections.create_index([("status", ASCENDING), ("created_at", DESCENDING)])
    await db.reflections.create_index([("citizen_id", ASCENDING)])
    await db.reflections.create_index([("geo_cell", ASCENDING)])  # cases near a point (store.geocells)
    await stamp_geo_cells(db)
    await db.reflections.create_index([("next_due", ASCENDING)])  # cases.sla: alerts due
    await db.reflections.create_index([("late", ASCENDING), ("late_at", ASCENDING)])  # IOC late list
    await db.citizens.create_index("phone", unique=True, sparse=True)
    await db.citizens.create_index([("identities.channel", ASCENDING), ("identities.address", ASCENDING)])
    await db.conversations.create_index([("expires_at", ASCENDING)])
    await db.audit.create_index([("reflection_code", ASCENDING), ("at", ASCENDING)])
    # GridFS's own indexes for the "media" bucket (store.media writes files without the
    # driver's per-upload index check)
    await db["media.files"].create_index([("filename", ASCENDING), ("uploadDate", ASCENDING)])
    await db["media.chunks"].create_index([("files_id", ASCENDING), ("n", ASCENDING)], unique=True)
    await db.agencies.create_index("agency_id", unique=True)
