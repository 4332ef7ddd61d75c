"""The inbound events: every raw event a channel received, stored before the platform is acknowledged.

The pipeline's sink records them (`record_many`), the pipeline marks them handled in its
transaction (`finish_many`) and finds them again at start (`unfinished`); the staff alerts
take the ones given up on (`take_failed`). Part of `store.repos.Store`.
"""
from __future__ import annotations

from typing import Any, Sequence

from bson import ObjectId
from bson.errors import BSONError
from pymongo.errors import BulkWriteError, PyMongoError, WriteError

from normalizer.messages import utcnow
from store.base import Repo
from store.database import journaled
from store.errors import DUPLICATE_KEY, unavailable
from store.models import InboundRecord
from store.safe import UnsafeValue, plain

Recorded = InboundRecord | None | Exception  # per event: stored, known before, or refused alone
UNFINISHED = ["pending", "processing"]  # "processing": left by runs from before the in-memory queue


class InboundRepo(Repo):
    """Raw events from the channels: stored before the platform is acknowledged."""

    async def record(self, channel: str, message_id: str, sender: str, payload: dict[str, Any]) -> bool:
        """One event stored (Open311 intake, inside its own transaction); False if known."""
        outcome = (await self.record_many([(channel, message_id, sender, payload)]))[0]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome is not None

    async def record_many(self, events: Sequence[tuple[str, str, str, dict[str, Any]]]) -> list[Recorded]:
        """Called by the pipeline's sink with every event that arrived meanwhile: one journaled
        write (the platform hears 200 only for what survives a server crash). Per event its new
        record, None when that (channel, message id) was stored before, or the error that event
        alone met (a value that is not plain, a document the server refuses): one bad event never
        fails the others written with it. An outage raises for all."""
        now = utcnow()
        outcomes: list[Recorded] = []
        docs: list[dict[str, Any]] = []
        for channel, message_id, sender, payload in events:
            try:
                docs.append({"channel": plain(channel), "message_id": plain(message_id), "sender": plain(sender),
                             "payload": payload, "status": "pending", "attempts": 0, "received_at": now})
            except UnsafeValue as exc:
                outcomes.append(exc)
            else:
                outcomes.append(None)
        inserted = iter(await self._insert(docs))
        return [outcome if isinstance(outcome, Exception) else next(inserted) for outcome in outcomes]

    async def _insert(self, docs: list[dict[str, Any]]) -> list[Recorded]:
        """The documents inserted together; when the batch as a whole is refused (a document
        too large fails it before it is sent), each alone, so only the bad one fails."""
        if not docs:
            return []
        refused: dict[int, Exception | None] = {}
        try:
            await journaled(self.db.inbound, self.s).insert_many(docs, ordered=False, session=self.s)
        except BulkWriteError as exc:  # the others were inserted (unordered): per document
            for error in exc.details.get("writeErrors", []):
                duplicate = error.get("code") in DUPLICATE_KEY
                refused[error["index"]] = None if duplicate else WriteError(error.get("errmsg", ""),
                                                                            error.get("code"), error)
        except (PyMongoError, BSONError) as exc:
            if len(docs) == 1 or unavailable(exc):
                raise
            return [outcome for doc in docs for outcome in await self._insert_alone(doc)]
        return [refused[n] if n in refused else InboundRecord.model_validate(doc) for n, doc in enumerate(docs)]

    async def _insert_alone(self, doc: dict[str, Any]) -> list[Recorded]:
        try:
            return await self._insert([doc])
        except (PyMongoError, BSONError) as exc:
            if unavailable(exc):
                raise
            return [exc]

    async def get(self, channel: str, message_id: str) -> InboundRecord | None:
        """The stored event (raw payload included): the agency mail's attachments
        (`replies.agency_bot`), the Open311 request just recorded (`portal.open311`), a
        redelivered event the pipeline may not hold (`bots.pipeline`)."""
        doc = await self.db.inbound.find_one({"channel": plain(channel), "message_id": plain(message_id)},
                                             session=self.s)
        return InboundRecord.model_validate(doc) if doc else None

    async def unfinished(self) -> list[InboundRecord]:
        """At start: the events a previous run stored but did not finish, oldest first."""
        cursor = self.db.inbound.find({"status": {"$in": UNFINISHED}}, session=self.s)
        return [InboundRecord.model_validate(d) async for d in cursor.sort("received_at", 1)]

    async def unfinished_of(self, record_ids: Sequence[ObjectId]) -> set[ObjectId]:
        """Which of these events are still to be handled (after a commit whose answer was lost)."""
        cursor = self.db.inbound.find({"_id": {"$in": list(record_ids)}, "status": {"$in": UNFINISHED}},
                                      {"_id": 1}, session=self.s)
        return {d["_id"] async for d in cursor}

    async def finish_many(self, record_ids: Sequence[ObjectId], status: str, reason: str | None = None,
                          attempts: int | None = None) -> int:
        """Mark unfinished events handled (or, with status "pending", tried `attempts` times);
        how many were still unfinished (fewer means another commit, whose answer was lost,
        already handled some: the caller must not redo them)."""
        fields: dict[str, Any] = {"status": status, "reason": reason, "done_at": utcnow()}
        if attempts is not None:
            fields["attempts"] = attempts
        result = await self.db.inbound.update_many(
            {"_id": {"$in": list(record_ids)}, "status": {"$in": UNFINISHED}}, {"$set": fields}, session=self.s)
        return result.modified_count

    async def finish(self, record_id: ObjectId, status: str, reason: str | None = None,
                     attempts: int | None = None) -> None:
        await self.finish_many([record_id], status, reason, attempts)

    async def take_failed(self, limit: int = 50) -> list[InboundRecord]:
        """Events given up on that staff were not told about yet; the staff alerts call this
        once per pass and it marks what it returns as told (so each is told once)."""
        query = {"status": "failed", "staff_told": {"$ne": True}}
        cursor = self.db.inbound.find(query, {"payload": 0}, session=self.s).sort("received_at", 1).limit(limit)
        records = [InboundRecord.model_validate({**d, "payload": {}}) async for d in cursor]  # the body stays put
        if records:
            await self.db.inbound.update_many({"_id": {"$in": [r.id for r in records]}},
                                              {"$set": {"staff_told": True}}, session=self.s)
        return records

    async def count(self, **filters: str) -> int:
        return await self.db.inbound.count_documents({k: plain(v) for k, v in filters.items()},
                                                     session=self.s)
