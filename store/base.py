"""The base of every repository: the database's collections and an optional transaction session.

Subclassed by the repositories in `store.repos`, `store.reflections` and the read models;
`store.repos.Store` binds them all to the same session.
"""
from __future__ import annotations

from typing import Any, Mapping

from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection

from store.database import Database


class Repo:
    def __init__(self, database: Database, session: AsyncClientSession | None) -> None:
        self.db = database.db
        self.s = session

    async def update_then_get(self, collection: AsyncCollection, query: Mapping[str, Any], update: Mapping[str, Any],
                              read_back: Mapping[str, Any]) -> dict[str, Any] | None:
        """What `find_one_and_update(..., return_document=AFTER)` does, for the repositories'
        optimistic updates and claims: an indexed `update_one`, then the document read
        back by a unique key (`read_back`); None when nothing matched. The embedded server
        answers every findAndModify with a scan of the whole collection, whatever the filter
        (45-65 ms per call with 3,000 cases, and growing); these two commands took 6-8 ms.
        Inside a transaction the pair is atomic; outside one the read may already show a later
        writer's change, which is the case's current state (the write itself stays guarded by
        `query`)."""
        result = await collection.update_one(query, update, session=self.s)
        if not result.matched_count:
            return None
        return await collection.find_one(read_back, session=self.s)
