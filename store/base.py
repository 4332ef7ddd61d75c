"""The base of every repository: the database's collections and an optional transaction session.

Subclassed by the repositories in `store.repos`, `store.reflections` and the read models;
`store.repos.Store` binds them all to the same session.
"""
from __future__ import annotations

from pymongo.asynchronous.client_session import AsyncClientSession

from store.database import Database


class Repo:
    def __init__(self, database: Database, session: AsyncClientSession | None) -> None:
        self.db = database.db
        self.s = session
