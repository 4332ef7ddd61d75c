"""OAuth token pairs that channels must keep across restarts (Zalo OA today).

`channels.zalo_client.ZaloTokens` is the only caller. A Zalo refresh token works once: the
pair it returns replaces the old one in a single compare-and-swap on one document, so two
processes (or a crash between refresh and save) can never leave us holding a spent token.
The document also remembers a hash of the refresh token the operator configured, so a
restart keeps the rotated pair, while a newly configured token (re-authorised OA) wins.
"""
from __future__ import annotations

import hashlib
from datetime import datetime

from pydantic import BaseModel
from pymongo.errors import DuplicateKeyError

from normalizer.messages import utcnow
from store.database import Database
from store.safe import plain


class TokenPair(BaseModel):
    access_token: str | None = None
    refresh_token: str
    expires_at: datetime | None = None  # of the access token; None = unknown, refresh first
    refreshed_at: datetime | None = None


def _fingerprint(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenStore:
    """One document per credential in the `tokens` collection, keyed e.g. "zalo:<app id>"."""

    def __init__(self, database: Database, key: str) -> None:
        self._tokens = database.db.tokens
        self._key = plain(key)

    async def seed(self, refresh_token: str, access_token: str | None = None) -> None:
        """Called at channel start with the configured token: stored unless already seeded."""
        seed = _fingerprint(refresh_token)
        pair = TokenPair(access_token=access_token, refresh_token=refresh_token)
        try:
            await self._tokens.update_one(
                {"_id": self._key, "seed": {"$ne": seed}},
                {"$set": {**pair.model_dump(), "seed": seed, "seeded_at": utcnow()}}, upsert=True)
        except DuplicateKeyError:
            pass  # seeded with this very token before: keep the pair it was rotated into

    async def load(self) -> TokenPair | None:
        doc = await self._tokens.find_one({"_id": self._key})
        return TokenPair.model_validate(doc) if doc else None

    async def swap(self, spent_refresh_token: str, pair: TokenPair) -> bool:
        """Replace the pair only if it still holds `spent_refresh_token`; False if another
        process got there first (then `load` gives its pair)."""
        result = await self._tokens.update_one(
            {"_id": self._key, "refresh_token": plain(spent_refresh_token)},
            {"$set": {**pair.model_dump(), "last_error": None}})
        return result.modified_count == 1

    async def record_failure(self, reason: str) -> None:
        """Kept on the document for operators (never the token itself)."""
        await self._tokens.update_one({"_id": self._key},
                                      {"$set": {"last_error": reason[:300], "failed_at": utcnow()}})
