"""Case statistics read model: the aggregation pipelines over the reflections collection.

`cases.reports` (reports, the periodic summary) calls `ReportReads`; it keeps the domain
meaning — which states count as handled or open, the periods, the display names — and passes
it down as data. `store.public` reuses `counters` for the portal's per-agency figures.
"""
from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from store.base import Repo

# Breakdown → (group key, display name found in the data).
BREAKDOWNS = {"channel": ("$channel", None), "field": ("$field", None), "agency": ("$agency", None),
              "commune": ("$location.commune_code", "$location.commune")}
COUNTS = ("received", "handled", "on_time", "late", "in_progress", "rejected", "hidden",
          "satisfied", "acceptable", "not_satisfied")


@dataclass
class Row:
    """One line of a breakdown (or the total): counts and handling-time percentiles."""
    key: str
    name: str
    received: int = 0
    handled: int = 0
    on_time: int = 0
    late: int = 0
    in_progress: int = 0
    rejected: int = 0
    hidden: int = 0
    satisfied: int = 0
    acceptable: int = 0
    not_satisfied: int = 0
    median_hours: float | None = None
    p90_hours: float | None = None

    @property
    def on_time_rate(self) -> float | None:
        return self.on_time / self.handled if self.handled else None


@dataclass(frozen=True)
class Breakdowns:
    """`ReportReads.breakdowns`: the total (None without cases), one list of rows per breakdown
    (name from the data, else the key) and (week start as a UTC instant, field, cases) per week."""
    total: Row | None
    by: dict[str, list[Row]]
    weekly: list[tuple[datetime, str, int]]


@dataclass(frozen=True)
class HandlingSpan:
    """A handled case whose handling time is missing or stale: filed at, published at."""
    id: Any
    created_at: datetime
    published_at: datetime | None


class ReportReads(Repo):
    async def unstamped(self, handled: Sequence[str]) -> AsyncIterator[HandlingSpan]:
        """Cases in `handled` states whose stamped handling end is not their publication time
        (`cases.reports.stamp_handling_hours`)."""
        query = {"status": {"$in": list(handled)}, "$expr": {"$ne": ["$handling_end", "$entered_at.published"]}}
        async for doc in self.db.reflections.find(query, {"code": 1, "created_at": 1, "entered_at": 1},
                                                  session=self.s):
            yield HandlingSpan(doc["_id"], doc["created_at"], doc.get("entered_at", {}).get("published"))

    async def stamp(self, span: HandlingSpan, hours: float) -> None:
        """Store the working hours from filing to `span.published_at` on the case."""
        await self.db.reflections.update_one(
            {"_id": span.id}, {"$set": {"handling_working_hours": hours, "handling_end": span.published_at}},
            session=self.s)

    async def breakdowns(self, start: datetime, end: datetime, handled: Sequence[str], open_states: Sequence[str],
                         timezone: str) -> Breakdowns:
        """Counts of the cases filed in `[start, end)` (`cases.reports.build_report`): total, by
        channel, field, agency and commune, and per local week (in `timezone`, Monday first) and field."""
        facets = {name: _group_stages(key, name_expr, handled, open_states)
                  for name, (key, name_expr) in BREAKDOWNS.items()}
        facets["total"] = _group_stages(None, None, handled, open_states)
        facets["weekly"] = _weekly_stages(timezone)
        cursor = await self.db.reflections.aggregate(
            [{"$match": {"created_at": {"$gte": start, "$lt": end}}}, {"$facet": facets}], session=self.s)
        result = (await cursor.to_list(1))[0]
        return Breakdowns(total=_row(result["total"][0]) if result["total"] else None,
                          by={b: [_row(d) for d in result[b]] for b in BREAKDOWNS},
                          weekly=[(d["_id"]["week"], d["_id"]["field"], d["n"]) for d in result["weekly"]])


def counters(name: Any, handled_states: Sequence[str], open_states: Sequence[str]) -> dict[str, Any]:
    """$group accumulators of a report row (also the portal's figures in `store.public`)."""
    handled = {"$in": ["$status", list(handled_states)]}
    late = {"$eq": ["$late", True]}

    def when(cond: Any) -> dict[str, Any]:
        return {"$sum": {"$cond": [cond, 1, 0]}}

    return {
        "received": {"$sum": 1},
        "handled": when(handled),
        "on_time": when({"$and": [handled, {"$not": [late]}]}),
        "late": when(late),
        "in_progress": when({"$in": ["$status", list(open_states)]}),
        "rejected": when({"$eq": ["$status", "rejected"]}),
        "hidden": when({"$eq": ["$hidden", True]}),
        "satisfied": when({"$eq": ["$rating", "satisfied"]}),
        "acceptable": when({"$eq": ["$rating", "acceptable"]}),
        "not_satisfied": when({"$eq": ["$rating", "not_satisfied"]}),
        "hours": {"$push": {"$cond": [handled, {"$ifNull": ["$handling_working_hours", None]}, None]}},
        "name": {"$first": name},
    }


def _group_stages(key: Any, name: Any, handled: Sequence[str], open_states: Sequence[str]) -> list[dict[str, Any]]:
    """Sort by handling time first so each group's pushed list arrives sorted (MongoDB ≥ 4.x
    and the embedded server alike), then pick the nearest-rank percentiles from it."""
    hours = {"$filter": {"input": "$hours", "cond": {"$ne": ["$$this", None]}}}
    return [
        {"$sort": {"handling_working_hours": 1}},
        {"$group": {"_id": {"$ifNull": [key, ""]}, **counters(name, handled, open_states)}},
        {"$set": {"hours": hours}},
        {"$set": {"median_hours": _rank("$hours", 0.5), "p90_hours": _rank("$hours", 0.9)}},
        {"$unset": "hours"},
    ]


def _rank(array: str, p: float) -> dict[str, Any]:
    """Nearest rank: the value at rank ceil(p·n) of the sorted `array`, None when empty."""
    index = {"$subtract": [{"$ceil": {"$multiply": [p, {"$size": array}]}}, 1]}
    return {"$cond": [{"$gt": [{"$size": array}, 0]}, {"$arrayElemAt": [array, index]}, None]}


def _weekly_stages(timezone: str) -> list[dict[str, Any]]:
    week = {"$dateTrunc": {"date": "$created_at", "unit": "week", "timezone": timezone, "startOfWeek": "monday"}}
    return [{"$group": {"_id": {"week": week, "field": "$field"}, "n": {"$sum": 1}}}]


def _row(doc: dict[str, Any]) -> Row:
    key = str(doc["_id"] or "")
    return Row(key=key, name=doc.get("name") or key, median_hours=doc.get("median_hours"),
               p90_hours=doc.get("p90_hours"), **{c: int(doc.get(c, 0)) for c in COUNTS})
