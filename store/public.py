"""Public read model: the cases the portal and the Open311 API may show, and their figures.

Called by `portal.public` only. The rule of what is public is the portal's: it passes the
states in which a case's result is published (`portal.public.PUBLIC_STATES`); a case flagged
confidential or hidden is never public whatever its state, so that part is fixed here.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypedDict

from store.base import Repo
from store.models import Reflection
from store.reports import counters
from store.safe import plain


@dataclass(frozen=True)
class PublicQuery:
    """What the portal's search or an Open311 request asks for; unset parts match everything."""
    codes: tuple[str, ...] = ()
    field: str | None = None
    agency: str | None = None
    commune_code: str | None = None
    received_from: datetime | None = None  # inclusive
    received_to: datetime | None = None  # inclusive


class AgencyFigures(TypedDict):
    """Public handled cases of one agency (`_id`: its id, None when unrouted), as the portal page reads them."""
    _id: str | None
    handled: int
    on_time: int
    satisfied: int
    acceptable: int
    not_satisfied: int


class PublicReads(Repo):
    async def find(self, states: Sequence[str], query: PublicQuery, skip: int, limit: int) -> list[Reflection]:
        """Public cases matching `query`, newest first, without history and subscribers."""
        cursor = self.db.reflections.find(_filter(states, query), {"history": 0, "subscribers": 0}, session=self.s)
        cursor = cursor.sort([("created_at", -1), ("code", -1)]).skip(plain(skip, int)).limit(plain(limit, int))
        return [Reflection.model_validate(d) async for d in cursor]

    async def count(self, states: Sequence[str], query: PublicQuery) -> int:
        return await self.db.reflections.count_documents(_filter(states, query), session=self.s)

    async def photos(self, states: Sequence[str], code: str) -> list[str]:
        """GridFS ids of the photos of public case `code` (none if unknown or not public)."""
        doc = await self.db.reflections.find_one(_filter(states, PublicQuery(codes=(code,))), {"photos": 1},
                                                 session=self.s)
        return list((doc or {}).get("photos", []))

    async def agency_figures(self, states: Sequence[str]) -> list[AgencyFigures]:
        """Handled, on-time and satisfaction counts per agency over the public cases, by agency id
        (every public state counts as handled)."""
        wanted = ("handled", "on_time", "satisfied", "acceptable", "not_satisfied")
        accumulators = counters(None, states, ())
        cursor = await self.db.reflections.aggregate([
            {"$match": _filter(states, PublicQuery())},
            {"$group": {"_id": "$agency", **{k: v for k, v in accumulators.items() if k in wanted}}},
            {"$sort": {"_id": 1}}], session=self.s)
        return [AgencyFigures(_id=d["_id"], handled=d["handled"], on_time=d["on_time"], satisfied=d["satisfied"],
                              acceptable=d["acceptable"], not_satisfied=d["not_satisfied"]) async for d in cursor]


def _filter(states: Sequence[str], query: PublicQuery) -> dict[str, Any]:
    found: dict[str, Any] = {"status": {"$in": [plain(s) for s in states]}, "confidential": {"$ne": True},
                             "hidden": {"$ne": True}}
    if len(query.codes) == 1:
        found["code"] = plain(query.codes[0])
    elif query.codes:
        found["code"] = {"$in": [plain(c) for c in query.codes]}
    for key, value in (("field", query.field), ("agency", query.agency),
                       ("location.commune_code", query.commune_code)):
        if value is not None:
            found[key] = plain(value)
    dates = {op: when for op, when in (("$gte", query.received_from), ("$lte", query.received_to)) if when}
    if dates:
        found["created_at"] = dates
    return found
