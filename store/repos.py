"""Repositories: the only code that knows collection names and document shapes.

Bots, cases and channels' workers get a `Store` (optionally bound to a transaction
session by `unit_of_work`) and call these typed methods.
"""
from __future__ import annotations

import uuid
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import datetime, timedelta
from typing import Any, AsyncIterator, Sequence

from pymongo import UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import DuplicateKeyError

from normalizer.messages import Outbound, utcnow
from store.base import Repo
from store.conversations import ConversationBuffer, ConversationRepo
from store.database import JOURNALED, Database, journaled
from store.inbound import InboundRepo
from store.models import AuditEntry, Citizen, Identity, OutboxItem
from store.public import PublicReads
from store.reflections import ReflectionRepo
from store.report_runs import ReportRunRepo
from store.reports import ReportReads
from store.safe import plain

OUTBOX_LEASE = timedelta(seconds=120)


class OutboxRepo(Repo):
    """Every message that leaves: stored first, sent by the outbox worker, never twice."""

    async def enqueue(self, key: str, channel: str, address: str, message: Outbound) -> bool:
        item = OutboxItem(_id=key, channel=channel, address=address, message=message)
        try:
            await self.db.outbox.insert_one(item.model_dump(by_alias=True, mode="python"), session=self.s)
        except DuplicateKeyError:
            return False
        return True

    async def enqueue_claimed(self, items: Sequence[OutboxItem], lease: timedelta = OUTBOX_LEASE) -> None:
        """The pipeline's replies, in its transaction: one write, already leased to this
        gateway's outbox (which gets them in memory), so the outbox's own claims skip them."""
        if not items:
            return
        until = utcnow() + lease
        for item in items:
            item.status, item.attempts = "sending", 1
        docs = [{**i.model_dump(by_alias=True, mode="python"), "lease_until": until} for i in items]
        await self.db.outbox.insert_many(docs, session=self.s)

    async def committed_replies(self, prefixes: Sequence[str]) -> list[OutboxItem]:
        """The items still being sent whose keys start with one of `prefixes`: replies a
        commit whose answer was lost queued for this gateway (read by key range, indexed)."""
        items: list[OutboxItem] = []
        for prefix in prefixes:
            upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
            cursor = self.db.outbox.find({"_id": {"$gte": prefix, "$lt": upper}, "status": "sending"},
                                         session=self.s)
            items += [OutboxItem.model_validate(d) async for d in cursor]
        return items

    async def claim(self, lease: timedelta = OUTBOX_LEASE,
                    exclude_addresses: Sequence[str] = ()) -> OutboxItem | None:
        """The next item due, leased; `exclude_addresses` are being sent to already."""
        now = utcnow()
        take = {"$set": {"status": "sending", "lease_until": now + lease}, "$inc": {"attempts": 1}}
        busy = set(exclude_addresses)
        doc = await self._claim_oldest({"status": "sending", "lease_until": {"$lt": now}}, busy, take)
        doc = doc or await self._claim_oldest({"status": "pending", "next_attempt_at": {"$lte": now}}, busy, take)
        return OutboxItem.model_validate(doc) if doc else None

    async def _claim_oldest(self, ready: dict[str, Any], busy: set[str], take: dict[str, Any]) -> dict[str, Any] | None:
        """Lease the oldest `ready` item whose address is not in `busy`: the candidates are
        read by index, then one is taken by _id if still ready. (A negated filter such as $nin,
        or an $or, made the embedded server scan the whole collection on every claim.)"""
        candidates = self.db.outbox.find(ready, {"address": 1}, sort=[("next_attempt_at", 1)],
                                         limit=len(busy) + 20, session=self.s)
        async for doc in candidates:
            if doc.get("address") not in busy:
                key = {"_id": doc["_id"]}
                return await self.update_then_get(self.db.outbox, {**key, **ready}, take, key)
        return None

    async def release_all(self) -> int:
        """At start: items a crashed gateway was sending go out again now (at-least-once)."""
        result = await self.db.outbox.update_many(
            {"status": "sending"}, {"$set": {"status": "pending", "next_attempt_at": utcnow()},
                                   "$unset": {"lease_until": ""}}, session=self.s)
        return result.modified_count

    async def mark(self, key: str, status: str, *, error: str | None = None,
                   retry_at: datetime | None = None) -> None:
        """An outcome other than "sent" (`mark_sent_many`): retry later, or given up on."""
        fields: dict[str, Any] = {"status": status, "last_error": error}
        if retry_at is not None:
            fields["next_attempt_at"] = retry_at
        await self.db.outbox.update_one({"_id": key}, {"$set": fields, "$unset": {"lease_until": ""}},
                                        session=self.s)

    async def mark_sent_many(self, sent: Sequence[tuple[str, str | None]]) -> list[None]:
        """Called by the outbox's group commit with every (key, platform id) sent meanwhile:
        one journaled write (a lost "sent" would send twice)."""
        now = utcnow()
        await journaled(self.db.outbox, self.s).bulk_write(
            [UpdateOne({"_id": key}, {"$set": {"status": "sent", "last_error": None, "sent_at": now,
                                                "platform_message_id": platform_id},
                                       "$unset": {"lease_until": ""}}) for key, platform_id in sent],
            ordered=False, session=self.s)
        return [None] * len(sent)

    async def all(self, **filters: str) -> list[OutboxItem]:
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


class CitizenRepo(Repo):
    """One citizen across channels, keyed by the verified phone number."""

    async def by_phone(self, phone: str) -> Citizen | None:
        doc = await self.db.citizens.find_one({"phone": plain(phone)}, session=self.s)
        return Citizen.model_validate(doc) if doc else None

    async def by_identity(self, channel: str, address: str) -> Citizen | None:
        """Dotted fields, so the (identities.channel, identities.address) index answers it (the
        embedded server scans every citizen for $elemMatch); the pair is then checked here."""
        cursor = self.db.citizens.find({"identities.channel": plain(channel), "identities.address": plain(address)},
                                       session=self.s)
        async for doc in cursor:
            citizen = Citizen.model_validate(doc)
            if any((i.channel, i.address) == (channel, address) for i in citizen.identities):
                return citizen
        return None

    async def remember(self, phone: str, name: str, channel: str, address: str,
                       email: str | None = None, contact_address: str | None = None) -> Citizen:
        """Create or update the citizen with this phone and link this channel identity: one
        upsert; a citizen known before is read back, and gets a second write only for an
        identity not linked yet (a new one is exactly the document the upsert made)."""
        updates = {"name": name, **({"email": email} if email else {}),
                   **({"address": contact_address} if contact_address else {})}
        identity = Identity(channel=channel, address=address).model_dump()
        now = utcnow()
        created = {"_id": uuid.uuid4().hex, "identities": [identity],
                   "created_at": now.replace(microsecond=now.microsecond // 1000 * 1000)}  # as BSON stores it
        result = await self.db.citizens.update_one(
            {"phone": plain(phone)}, {"$set": updates, "$setOnInsert": created}, upsert=True, session=self.s)
        if result.upserted_id is not None:
            return Citizen.model_validate({"phone": phone, **updates, **created})
        citizen = Citizen.model_validate(await self.db.citizens.find_one({"phone": plain(phone)}, session=self.s))
        if not any((i.channel, i.address) == (channel, address) for i in citizen.identities):
            await self.db.citizens.update_one(
                {"_id": citizen.id}, {"$push": {"identities": identity}}, session=self.s)
            citizen.identities.append(Identity.model_validate(identity))
        return citizen

    async def mark_unreachable(self, channel: str, address: str) -> None:
        await self.db.citizens.update_many(
            {"identities.channel": plain(channel), "identities.address": plain(address)},  # indexed
            {"$set": {"identities.$[i].unreachable": True}},
            array_filters=[{"i.channel": channel, "i.address": address}], session=self.s)


class AuditRepo(Repo):
    async def add(self, entry: AuditEntry) -> None:
        await self.db.audit.insert_one(entry.model_dump(), session=self.s)

    async def trail(self, code: str) -> list[AuditEntry]:
        cursor = self.db.audit.find({"reflection_code": plain(code)}, session=self.s).sort("at", 1)
        return [AuditEntry.model_validate(d) async for d in cursor]


class Store:
    """The repositories, all bound to the same (optional) transaction session. `buffered`
    (the pipeline's batches) keeps conversations in memory until `flush`."""

    def __init__(self, database: Database, session: AsyncClientSession | None = None,
                 buffered: bool = False) -> None:
        self.database = database
        self.inbound = InboundRepo(database, session)
        self.outbox = OutboxRepo(database, session)
        self.buffer = ConversationBuffer(database, session) if buffered else None
        self.conversations = self.buffer or ConversationRepo(database, session)
        self.citizens = CitizenRepo(database, session)
        self.reflections = ReflectionRepo(database, session)
        self.audit = AuditRepo(database, session)
        self.report_runs = ReportRunRepo(database, session)
        self.reports = ReportReads(database, session)  # read model: case statistics
        self.public = PublicReads(database, session)  # read model: what the portal may show


@asynccontextmanager
async def unit_of_work(database: Database, buffered: bool = False,
                       session: AsyncClientSession | None = None) -> AsyncIterator[Store]:
    """A `Store` whose writes commit together or not at all, and are on disk when the block
    is left (`Database.flush_journal`): what follows may tell the world. On `session` if one
    is given (the pipeline's own), else on one of the gateway's recorded sessions when it
    runs (`store.sessions`), else on a new one."""
    async with AsyncExitStack() as stack:
        if session is None and database.transactions is not None:
            session = await stack.enter_async_context(database.transactions.lease())
        elif session is None:
            session = await stack.enter_async_context(database.client.start_session())
        async with await session.start_transaction(write_concern=JOURNALED):
            store = Store(database, session, buffered)
            yield store
            if store.buffer is not None:
                await store.buffer.flush()
    await database.flush_journal()
