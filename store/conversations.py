"""Open intake conversations, one document per (channel, sender), and the pipeline's buffer of them.

`ConversationRepo` serves every caller that changes one conversation at a time (the
scheduler's expiry, staff commands, tests). `ConversationBuffer` is what the pipeline binds
into a batch's `Store`: it reads the conversations of all the batch's senders in one query,
lets the bots change them in memory, and writes every change in one bulk write before the
batch's transaction commits, so a turn costs the database no round trip of its own.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Iterable

from pymongo import DeleteOne, ReplaceOne, ReturnDocument

from normalizer.messages import utcnow
from store.base import Repo
from store.models import Conversation
from store.safe import plain


def conversation_id(channel: str, sender: str) -> str:
    return f"{plain(channel)}:{plain(sender)}"


def _document(conv: Conversation) -> dict[str, Any]:
    conv.updated_at = utcnow()
    return conv.model_dump(by_alias=True, mode="python")


class ConversationRepo(Repo):
    async def get(self, channel: str, sender: str) -> Conversation | None:
        doc = await self.db.conversations.find_one({"_id": conversation_id(channel, sender)}, session=self.s)
        return Conversation.model_validate(doc) if doc else None

    async def save(self, conv: Conversation) -> None:
        doc = _document(conv)
        del doc["_id"]  # $set, not replace: keeps the turn count that bots.limits keeps beside it
        await self.db.conversations.update_one({"_id": conv.id}, {"$set": doc}, upsert=True, session=self.s)

    async def count_turn(self, channel: str, sender: str) -> tuple[int, str]:
        """Count one more message in the open conversation: (turns so far, its language);
        (0, "vi") when none is open. Called by bots.limits for the conversation length cap."""
        doc = await self.db.conversations.find_one_and_update(
            {"_id": conversation_id(channel, sender)}, {"$inc": {"turns": 1}},
            projection={"turns": 1, "language": 1}, return_document=ReturnDocument.AFTER, session=self.s)
        return (doc["turns"], doc.get("language") or "vi") if doc else (0, "vi")

    async def delete(self, conv_id: str) -> None:
        await self.db.conversations.delete_one({"_id": plain(conv_id)}, session=self.s)

    async def expired(self, now: datetime, limit: int = 100) -> list[Conversation]:
        cursor = self.db.conversations.find(
            {"expires_at": {"$lte": now}, "expiry_notified": False}, session=self.s).limit(limit)
        return [Conversation.model_validate(d) async for d in cursor]


class ConversationBuffer(ConversationRepo):
    """The same operations on documents held in memory for one pipeline batch; `flush` writes them."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._docs: dict[str, dict[str, Any] | None] = {}  # None: known not to exist (or deleted)
        self._changed: set[str] = set()

    async def load(self, conv_ids: Iterable[str]) -> None:
        """Read the conversations the batch will touch, in one query."""
        missing = [plain(i) for i in conv_ids if i not in self._docs]
        if not missing:
            return
        found = {d["_id"]: d async for d in self.db.conversations.find({"_id": {"$in": missing}}, session=self.s)}
        self._docs.update({i: found.get(i) for i in missing})

    async def _doc(self, conv_id: str) -> dict[str, Any] | None:
        await self.load([conv_id])
        return self._docs[conv_id]

    async def get(self, channel: str, sender: str) -> Conversation | None:
        doc = await self._doc(conversation_id(channel, sender))
        return Conversation.model_validate(doc) if doc else None

    async def save(self, conv: Conversation) -> None:
        doc = _document(conv)
        old = await self._doc(conv.id)
        if old is not None and "turns" in old:
            doc["turns"] = old["turns"]
        self._docs[conv.id] = doc
        self._changed.add(conv.id)

    async def count_turn(self, channel: str, sender: str) -> tuple[int, str]:
        doc = await self._doc(conversation_id(channel, sender))
        if doc is None:
            return 0, "vi"
        doc["turns"] = doc.get("turns", 0) + 1
        self._changed.add(doc["_id"])
        return doc["turns"], doc.get("language") or "vi"

    async def delete(self, conv_id: str) -> None:
        self._docs[plain(conv_id)] = None
        self._changed.add(conv_id)

    async def flush(self) -> None:
        """Called by the pipeline last in the batch's transaction."""
        ops = [ReplaceOne({"_id": i}, doc, upsert=True) if (doc := self._docs[i]) is not None else DeleteOne({"_id": i})
               for i in sorted(self._changed)]
        if ops:
            await self.db.conversations.bulk_write(ops, ordered=False, session=self.s)
        self._changed.clear()
