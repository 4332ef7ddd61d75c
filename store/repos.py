"""Repositories: the only code that knows collection names and document shapes.

Bots, cases and channels' workers get a `Store` (optionally bound to a transaction
session by `unit_of_work`) and call these typed methods.
"""
from __future__ import annotations

import uuid
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any, AsyncIterator, Sequence

from bson import ObjectId
from pymongo import ReturnDocument, WriteConcern
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import DuplicateKeyError

from normalizer.messages import Outbound, utcnow
from store.base import Repo
from store.database import Database
from store.models import AuditEntry, Citizen, Conversation, Identity, InboundRecord, OutboxItem
from store.public import PublicReads
from store.reflections import ReflectionRepo
from store.report_runs import ReportRunRepo
from store.reports import ReportReads
from store.safe import plain


JOURNALED = WriteConcern(j=True)


def _journaled(collection: AsyncCollection, session: AsyncClientSession | None) -> AsyncCollection:
    """The collection with a journaled write concern, unless a transaction sets its own."""
    return collection if session is not None else collection.with_options(write_concern=JOURNALED)


async def _claim_oldest(collection: AsyncCollection, ready: dict[str, Any], order: str, owner: str,
                        skip: set[str], take: dict[str, Any], session: AsyncClientSession | None) -> Any:
    """Lease the oldest `ready` document whose `owner` is not in `skip`: the candidates are
    read by index, then one is taken by _id if still ready. (A negated filter such as $nin,
    or an $or, made the embedded server scan the whole collection on every claim.)"""
    candidates = collection.find(ready, {owner: 1}, sort=[(order, 1)], limit=len(skip) + 20, session=session)
    async for doc in candidates:
        if doc.get(owner) not in skip:
            return await collection.find_one_and_update({"_id": doc["_id"], **ready}, take,
                                                        return_document=ReturnDocument.AFTER, session=session)
    return None


class InboundRepo(Repo):
    """Raw events from the channels: stored before the platform is acknowledged."""

    async def record(self, channel: str, message_id: str, sender: str, payload: dict[str, Any]) -> bool:
        doc = {"channel": plain(channel), "message_id": plain(message_id), "sender": plain(sender),
               "payload": payload, "status": "pending", "attempts": 0, "received_at": utcnow()}
        try:  # journaled: the platform hears 200 only for what survives a server crash
            await _journaled(self.db.inbound, self.s).insert_one(doc, session=self.s)
        except DuplicateKeyError:
            return False
        return True

    async def get(self, channel: str, message_id: str) -> InboundRecord | None:
        """The stored event (raw payload included): the agency mail's attachments
        (`replies.agency_bot`), the Open311 request just recorded (`portal.open311`)."""
        doc = await self.db.inbound.find_one({"channel": plain(channel), "message_id": plain(message_id)},
                                             session=self.s)
        return InboundRecord.model_validate(doc) if doc else None

    async def claim(self, lease: timedelta = timedelta(seconds=60), exclude_senders: Sequence[str] = (),
                    hold_senders: Sequence[str] = ()) -> InboundRecord | None:
        """The oldest event ready to handle, leased. `exclude_senders` are in hand here;
        `hold_senders` had an event in hand when a previous run died: only that event (once
        its lease expires) may be claimed for them, so their later events do not overtake it."""
        now = utcnow()
        take = {"$set": {"status": "processing", "lease_until": now + lease}, "$inc": {"attempts": 1}}
        doc = await _claim_oldest(self.db.inbound, {"status": "processing", "lease_until": {"$lt": now}},
                                  "received_at", "sender", set(exclude_senders), take, self.s)
        doc = doc or await _claim_oldest(self.db.inbound, {"status": "pending"}, "received_at", "sender",
                                         {*exclude_senders, *hold_senders}, take, self.s)
        return InboundRecord.model_validate(doc) if doc else None

    async def in_hand(self) -> list[str]:
        """Senders with an event being processed (read only: a dead run's transaction may
        still hold those documents until the server expires it)."""
        return await self.db.inbound.distinct("sender", {"status": "processing"}, session=self.s)

    async def release(self, record_id: ObjectId) -> None:
        """Give a claimed event back (its transaction failed) without waiting for the lease."""
        await self.db.inbound.update_one({"_id": record_id, "status": "processing"},
                                         {"$set": {"status": "pending"}, "$unset": {"lease_until": ""}},
                                         session=self.s)

    async def finish(self, record_id: ObjectId, status: str, reason: str | None = None) -> None:
        await self.db.inbound.update_one(
            {"_id": record_id}, {"$set": {"status": status, "reason": reason, "done_at": utcnow()},
                                 "$unset": {"lease_until": ""}}, session=self.s)

    async def count(self, **filters: str) -> int:
        return await self.db.inbound.count_documents({k: plain(v) for k, v in filters.items()},
                                                     session=self.s)


class OutboxRepo(Repo):
    """Every message that leaves: stored first, sent by the outbox worker, never twice."""

    async def enqueue(self, key: str, channel: str, address: str, message: Outbound) -> bool:
        item = OutboxItem(_id=key, channel=channel, address=address, message=message)
        try:
            await self.db.outbox.insert_one(item.model_dump(by_alias=True, mode="python"), session=self.s)
        except DuplicateKeyError:
            return False
        return True

    async def claim(self, lease: timedelta = timedelta(seconds=120),
                    exclude_addresses: Sequence[str] = ()) -> OutboxItem | None:
        """The next item due, leased; `exclude_addresses` are being sent to already."""
        now = utcnow()
        take = {"$set": {"status": "sending", "lease_until": now + lease}, "$inc": {"attempts": 1}}
        busy = set(exclude_addresses)
        doc = await _claim_oldest(self.db.outbox, {"status": "sending", "lease_until": {"$lt": now}},
                                  "next_attempt_at", "address", busy, take, self.s)
        doc = doc or await _claim_oldest(self.db.outbox, {"status": "pending", "next_attempt_at": {"$lte": now}},
                                         "next_attempt_at", "address", busy, take, self.s)
        return OutboxItem.model_validate(doc) if doc else None

    async def release_all(self) -> int:
        """At start: items a crashed gateway was sending go out again now (at-least-once)."""
        result = await self.db.outbox.update_many(
            {"status": "sending"}, {"$set": {"status": "pending", "next_attempt_at": utcnow()},
                                   "$unset": {"lease_until": ""}}, session=self.s)
        return result.modified_count

    async def mark(self, key: str, status: str, *, error: str | None = None,
                   retry_at: datetime | None = None, platform_id: str | None = None) -> None:
        fields: dict[str, Any] = {"status": status, "last_error": error}
        if retry_at is not None:
            fields["next_attempt_at"] = retry_at
        if status == "sent":
            fields.update(sent_at=utcnow(), platform_message_id=platform_id)
        await _journaled(self.db.outbox, self.s).update_one(  # a lost "sent" would send twice
            {"_id": key}, {"$set": fields, "$unset": {"lease_until": ""}}, session=self.s)

    async def list(self, **filters: str) -> list[OutboxItem]:
        cursor = self.db.outbox.find({k: plain(v) for k, v in filters.items()}, session=self.s)
        return [OutboxItem.model_validate(d) async for d in cursor.sort("created_at", 1)]

    async def take_undelivered(self, limit: int = 50) -> list[OutboxItem]:
        """Items given up on (failed, unreachable) that staff were not told about yet; the
        staff alerts call this once per pass and it marks what it returns as told."""
        query = {"status": {"$in": ["failed", "unreachable"]}, "staff_told": {"$ne": True}}
        items = [OutboxItem.model_validate(d) async for d in
                 self.db.outbox.find(query, session=self.s).sort("created_at", 1).limit(limit)]
        if items:
            await self.db.outbox.update_many({"_id": {"$in": [i.id for i in items]}},
                                             {"$set": {"staff_told": True}}, session=self.s)
        return items


class ConversationRepo(Repo):
    async def get(self, channel: str, sender: str) -> Conversation | None:
        doc = await self.db.conversations.find_one({"_id": f"{plain(channel)}:{plain(sender)}"},
                                                   session=self.s)
        return Conversation.model_validate(doc) if doc else None

    async def save(self, conv: Conversation) -> None:
        conv.updated_at = utcnow()
        doc = conv.model_dump(by_alias=True, mode="python")
        del doc["_id"]  # $set, not replace: keeps the turn count that bots.limits keeps beside it
        await self.db.conversations.update_one({"_id": conv.id}, {"$set": doc}, upsert=True, session=self.s)

    async def count_turn(self, channel: str, sender: str) -> tuple[int, str]:
        """Count one more message in the open conversation: (turns so far, its language);
        (0, "vi") when none is open. Called by bots.limits for the conversation length cap."""
        doc = await self.db.conversations.find_one_and_update(
            {"_id": f"{plain(channel)}:{plain(sender)}"}, {"$inc": {"turns": 1}},
            projection={"turns": 1, "language": 1}, return_document=ReturnDocument.AFTER, session=self.s)
        return (doc["turns"], doc.get("language") or "vi") if doc else (0, "vi")

    async def delete(self, conv_id: str) -> None:
        await self.db.conversations.delete_one({"_id": plain(conv_id)}, session=self.s)

    async def expired(self, now: datetime, limit: int = 100) -> list[Conversation]:
        cursor = self.db.conversations.find(
            {"expires_at": {"$lte": now}, "expiry_notified": False}, session=self.s).limit(limit)
        return [Conversation.model_validate(d) async for d in cursor]


class RateRepo(Repo):
    """Messages per (channel, sender) per minute, for the flood limit (bots.limits)."""

    async def hit(self, channel: str, sender: str, at: datetime) -> int:
        """Count one message in the minute of `at`; the count so far in that minute."""
        minute = at.replace(second=0, microsecond=0)
        doc = await self.db.rates.find_one_and_update(
            {"_id": f"{plain(channel)}:{plain(sender)}:{minute:%Y%m%d%H%M}"},
            {"$inc": {"n": 1}, "$setOnInsert": {"expires_at": minute + timedelta(minutes=2)}},
            upsert=True, return_document=ReturnDocument.AFTER, session=self.s)
        return doc["n"]


class CitizenRepo(Repo):
    """One citizen across channels, keyed by the verified phone number."""

    async def by_phone(self, phone: str) -> Citizen | None:
        doc = await self.db.citizens.find_one({"phone": plain(phone)}, session=self.s)
        return Citizen.model_validate(doc) if doc else None

    async def by_identity(self, channel: str, address: str) -> Citizen | None:
        doc = await self.db.citizens.find_one(
            {"identities": {"$elemMatch": {"channel": plain(channel), "address": plain(address)}}},
            session=self.s)
        return Citizen.model_validate(doc) if doc else None

    async def remember(self, phone: str, name: str, channel: str, address: str,
                       email: str | None = None, contact_address: str | None = None) -> Citizen:
        """Create or update the citizen with this phone and link this channel identity."""
        found = await self.by_phone(phone)
        updates = {"name": name, **({"email": email} if email else {}),
                   **({"address": contact_address} if contact_address else {})}
        if found is None:
            doc = {"_id": uuid.uuid4().hex, "phone": plain(phone), "identities": [],
                   "created_at": utcnow(), **updates}
            await self.db.citizens.insert_one(doc, session=self.s)
        await self.db.citizens.update_one({"phone": phone}, {"$set": updates}, session=self.s)
        identity = Identity(channel=channel, address=address).model_dump()
        await self.db.citizens.update_one(
            {"phone": phone, "identities": {"$not": {"$elemMatch": {"channel": channel, "address": address}}}},
            {"$push": {"identities": identity}}, session=self.s)
        return await self.by_phone(phone)  # type: ignore[return-value]

    async def mark_unreachable(self, channel: str, address: str) -> None:
        await self.db.citizens.update_many(
            {"identities": {"$elemMatch": {"channel": plain(channel), "address": plain(address)}}},
            {"$set": {"identities.$[i].unreachable": True}},
            array_filters=[{"i.channel": channel, "i.address": address}], session=self.s)


class AuditRepo(Repo):
    async def add(self, entry: AuditEntry) -> None:
        await self.db.audit.insert_one(entry.model_dump(), session=self.s)

    async def trail(self, code: str) -> list[AuditEntry]:
        cursor = self.db.audit.find({"reflection_code": plain(code)}, session=self.s).sort("at", 1)
        return [AuditEntry.model_validate(d) async for d in cursor]


class Store:
    """The repositories, all bound to the same (optional) transaction session."""

    def __init__(self, database: Database, session: AsyncClientSession | None = None) -> None:
        self.database = database
        self.inbound = InboundRepo(database, session)
        self.outbox = OutboxRepo(database, session)
        self.conversations = ConversationRepo(database, session)
        self.rates = RateRepo(database, session)
        self.citizens = CitizenRepo(database, session)
        self.reflections = ReflectionRepo(database, session)
        self.audit = AuditRepo(database, session)
        self.report_runs = ReportRunRepo(database, session)
        self.reports = ReportReads(database, session)  # read model: case statistics
        self.public = PublicReads(database, session)  # read model: what the portal may show


@asynccontextmanager
async def unit_of_work(database: Database) -> AsyncIterator[Store]:
    """A `Store` whose writes commit together or not at all."""
    async with database.client.start_session() as session:
        async with await session.start_transaction(write_concern=JOURNALED):  # durable before sent
            yield Store(database, session)
