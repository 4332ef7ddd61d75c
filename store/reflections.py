"""The reflections (filed cases) collection: the only code that knows a case document's shape.

`ReflectionRepo` is reached as `Store.reflections` by filing, the lifecycle (`cases.lifecycle`),
the SLA scheduler, duplicates, the staff console, the agency loop and the portal's intake.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Sequence

from pymongo import ReturnDocument

from store.base import Repo
from store.geocells import cell_of, cells_around, distance_m
from store.models import DuplicateCandidate, HistoryEntry, Reflection, Subscriber
from store.safe import plain, safe_key


class ReflectionRepo(Repo):
    async def next_code(self, year: int) -> str:
        # findAndModify scans its collection on the embedded server (see Repo.update_then_get),
        # but this one holds a document a year, and the increment must return its own value.
        doc = await self.db.counters.find_one_and_update(
            {"_id": f"reflection-{year}"}, {"$inc": {"n": 1}}, upsert=True,
            return_document=ReturnDocument.AFTER, session=self.s)
        assert doc is not None  # upserted, and the document after the update is returned
        return f"PA-{year}-{doc['n']:06d}"

    async def insert(self, reflection: Reflection) -> None:
        doc = reflection.model_dump(mode="python")
        if reflection.location.lat is not None and reflection.location.lon is not None:
            doc["geo"] = {"type": "Point", "coordinates": [reflection.location.lon, reflection.location.lat]}
            doc["geo_cell"] = cell_of(reflection.location.lat, reflection.location.lon)
        await self.db.reflections.insert_one(doc, session=self.s)

    # --- lifecycle (cases.lifecycle) --------------------------------------------------------
    async def apply_change(self, code: str, version: int, status: str, sets: dict[str, Any],
                           entry: HistoryEntry) -> Reflection | None:
        """`cases.lifecycle`'s optimistic update: set `sets`, bump the version and append `entry`,
        only if the case is still at `version` in `status`; None when someone changed it meanwhile."""
        doc = await self.update_then_get(
            self.db.reflections, {"code": plain(code), "version": plain(version, int), "status": plain(status)},
            {"$set": sets, "$inc": {"version": 1}, "$push": {"history": entry.model_dump()}}, {"code": plain(code)})
        return Reflection.model_validate(doc) if doc else None

    async def push_history(self, code: str, entry: HistoryEntry) -> None:
        """Append an audit entry that changes no state (`cases.lifecycle.note`)."""
        await self.db.reflections.update_one({"code": plain(code)}, {"$push": {"history": entry.model_dump()}},
                                             session=self.s)

    async def ready_to_forward(self, states: Sequence[str], limit: int) -> list[Reflection]:
        """Cases in `states` with an agency, least recently changed first (`replies.forward`)."""
        cursor = self.db.reflections.find({"status": {"$in": [plain(s) for s in states]}, "agency": {"$ne": None}},
                                          session=self.s)
        return [Reflection.model_validate(d) async for d in cursor.sort("updated_at", 1).limit(limit)]

    async def annotate(self, code: str, **fields: object) -> None:
        """Set descriptive fields that are not part of the lifecycle (routing reason…)."""
        await self.db.reflections.update_one({"code": plain(code)}, {"$set": fields}, session=self.s)

    async def get(self, code: str) -> Reflection | None:
        doc = await self.db.reflections.find_one({"code": plain(code)}, session=self.s)
        return Reflection.model_validate(doc) if doc else None

    async def for_citizen(self, citizen_id: str) -> list[Reflection]:
        cursor = self.db.reflections.find({"citizen_id": plain(citizen_id)}, session=self.s)
        return [Reflection.model_validate(d) async for d in cursor.sort("created_at", 1)]

    async def all(self) -> list[Reflection]:
        cursor = self.db.reflections.find({}, session=self.s).sort("created_at", 1)
        return [Reflection.model_validate(d) async for d in cursor]

    # --- SLA and duplicates (cases.sla, cases.duplicates) ---------------------------------
    async def sla_candidates(self, now: datetime, open_states: Sequence[str], limit: int = 200) -> list[Reflection]:
        """Cases with an SLA alert due by `now` (index on next_due), or open and never stamped."""
        query = {"$or": [{"next_due": {"$lte": now}},
                         {"sla_since": None, "status": {"$in": list(open_states)}}]}
        cursor = self.db.reflections.find(query, session=self.s).sort("next_due", 1).limit(limit)
        return [Reflection.model_validate(d) async for d in cursor]

    async def update_if_unchanged(self, reflection: Reflection, sets: dict[str, Any],
                                  entries: list[HistoryEntry]) -> bool:
        """Set fields and append audit entries, unless the case changed state meanwhile."""
        result = await self.db.reflections.update_one(
            {"code": plain(reflection.code), "version": reflection.version, "status": reflection.status},
            {"$set": sets, "$push": {"history": {"$each": [e.model_dump() for e in entries]}}},
            session=self.s)
        return result.matched_count == 1

    async def late_open(self, open_states: Sequence[str]) -> list[Reflection]:
        """The IOC's list of late cases still open, longest late first."""
        cursor = self.db.reflections.find({"late": True, "status": {"$in": list(open_states)}},
                                          session=self.s).sort("late_at", 1)
        return [Reflection.model_validate(d) async for d in cursor]

    async def near(self, lon: float, lat: float, radius_m: float, query: dict[str, Any],
                   limit: int = 20) -> list[Reflection]:
        """Cases matching `query` within `radius_m` of the point, nearest first: the cases of
        the grid cells around it (`store.geocells`, indexed), measured here."""
        lat, lon = float(lat), float(lon)
        cursor = self.db.reflections.find({"geo_cell": {"$in": cells_around(lat, lon, radius_m)}, **query},
                                          session=self.s)
        found = [(distance_m(lat, lon, *d["geo"]["coordinates"][::-1]), d) async for d in cursor]
        nearest = sorted((pair for pair in found if pair[0] <= radius_m), key=lambda pair: pair[0])
        return [Reflection.model_validate(d) for _, d in nearest[:limit]]

    async def link_candidate(self, code: str, subscriber: Subscriber, candidate: DuplicateCandidate,
                             entry: HistoryEntry) -> None:
        """Record a duplicate report on a case and subscribe its author (once) to the result."""
        await self.db.reflections.update_one(
            {"code": plain(code)},
            {"$push": {"duplicate_candidates": candidate.model_dump(), "history": entry.model_dump()}},
            session=self.s)
        await self.db.reflections.update_one(
            {"code": plain(code), "subscribers": {"$not": {"$elemMatch": {
                "channel": plain(subscriber.channel), "address": plain(subscriber.address)}}}},
            {"$push": {"subscribers": subscriber.model_dump()}}, session=self.s)

    async def decide_candidate(self, code: str, candidate_id: str, status: str, entry: HistoryEntry,
                               split_code: str | None = None, unsubscribe: Subscriber | None = None) -> bool:
        """Staff decision on a duplicate candidate; False if it was already decided."""
        sets = {"duplicate_candidates.$.status": status, "duplicate_candidates.$.split_code": split_code}
        update: dict[str, Any] = {"$set": sets, "$push": {"history": entry.model_dump()}}
        if unsubscribe is not None:
            update["$pull"] = {"subscribers": {"channel": unsubscribe.channel, "address": unsubscribe.address}}
        result = await self.db.reflections.update_one(
            {"code": plain(code), "duplicate_candidates": {"$elemMatch": {
                "id": plain(candidate_id), "status": "candidate"}}}, update, session=self.s)
        return result.matched_count == 1

    # --- staff console (bots.staff_commands, bots.staff_views) ---------------------------------
    async def query(self, filters: dict[str, str | bool], page: int, per_page: int,
                    states: Sequence[str]) -> tuple[list[Reflection], int]:
        """One page of the staff queue (urgent first, then oldest) and the number of matches.

        `filters` maps a case field (status, field, agency, channel, urgent, late) to the value
        it must equal; without a status filter only cases in `states` are listed."""
        query: dict[str, Any] = {safe_key(k): plain(v, bool) if isinstance(v, bool) else plain(v)
                                 for k, v in filters.items()}
        query.setdefault("status", {"$in": list(states)})
        total = await self.db.reflections.count_documents(query, session=self.s)
        cursor = (self.db.reflections.find(query, session=self.s)
                  .sort([("urgent", -1), ("created_at", 1)])
                  .skip((plain(page, int) - 1) * per_page).limit(per_page))
        return [Reflection.model_validate(d) async for d in cursor], total

    async def amend(self, reflection: Reflection, sets: dict[str, Any], entry: HistoryEntry) -> Reflection | None:
        """Set non-state fields (result text, duplicate link…) with their audit entry, only if the
        case is still the version the caller read; None when someone changed it meanwhile."""
        doc = await self.update_then_get(
            self.db.reflections, {"code": plain(reflection.code), "version": reflection.version},
            {"$set": {**sets, "updated_at": entry.at}, "$inc": {"version": 1},
             "$push": {"history": entry.model_dump()}},
            {"code": plain(reflection.code)})
        return Reflection.model_validate(doc) if doc else None

    async def touched_since(self, since: datetime, agency: str | None = None) -> list[Reflection]:
        """Cases filed or changed since `since`, optionally of one agency (staff statistics)."""
        query: dict[str, Any] = {"$or": [{"created_at": {"$gte": since}}, {"updated_at": {"$gte": since}}]}
        if agency is not None:
            query["agency"] = plain(agency)
        cursor = self.db.reflections.find(query, session=self.s)
        return [Reflection.model_validate(d) async for d in cursor]

    async def needing_alert(self, flag: str, open_states: Sequence[str]) -> list[Reflection]:
        """Open cases with `flag` (urgent, late) set and not yet pushed to the staff chat."""
        query = {safe_key(flag): True, "status": {"$in": list(open_states)},
                 "history.action": {"$ne": f"staff_alert_{flag}"}}
        cursor = self.db.reflections.find(query, session=self.s).sort("created_at", 1)
        return [Reflection.model_validate(d) async for d in cursor]
