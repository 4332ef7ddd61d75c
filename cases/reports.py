"""Periodic and on-demand case statistics, computed by aggregation pipelines on the server.

`run_bots.py report`, the scheduler's periodic summary (`cases.report_mail`) and the public
portal's per-agency figures call `build_report` / `agency_figures`; the exports in
`cases.report_export` turn a `Report` into XLSX, CSV and PNG.

A report covers the cases *received* in the period `[start, end)` (their state as of now):
- received: all of them; handled: result published (published or closed);
- on_time / late: handled and never flagged late / flagged late by the SLA scheduler (any state);
- in_progress: still open; rejected; hidden (a flag, counted whatever the state);
- satisfaction: ratings `satisfied` / `acceptable` / `not_satisfied`;
- median and 90th percentile of `handling_working_hours` over handled cases, nearest-rank:
  the value at rank ceil(p·n) of the sorted list.
`handling_working_hours` (working time from filing to publication, per the policy's calendar)
is stamped on each case by `stamp_handling_hours`, which runs before every report.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from cases.calendar import WorkingCalendar
from cases.lifecycle import OPEN_STATES
from cases.policy import Policy
from store.database import Database

VN = ZoneInfo("Asia/Ho_Chi_Minh")
HANDLED = ("published", "closed")
KINDS = ("week", "month", "quarter", "year")
# Breakdown → (group key, display name found in the data; else the names given by the caller).
BREAKDOWNS = {"channel": ("$channel", None), "field": ("$field", None), "agency": ("$agency", None),
              "commune": ("$location.commune_code", "$location.commune")}
COUNTS = ("received", "handled", "on_time", "late", "in_progress", "rejected", "hidden",
          "satisfied", "acceptable", "not_satisfied")


@dataclass(frozen=True)
class Period:
    """Local (Asia/Ho_Chi_Minh) calendar period, as UTC-aware instants `[start, end)`."""
    kind: str  # week | month | quarter | year | range
    start: datetime
    end: datetime

    @property
    def label(self) -> str:
        first, last = self.start.astimezone(VN).date(), (self.end - timedelta(seconds=1)).astimezone(VN).date()
        return f"{first:%d/%m/%Y}–{last:%d/%m/%Y}"


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


@dataclass
class Report:
    period: Period
    total: Row
    by: dict[str, list[Row]] = field(default_factory=dict)
    weekly_by_field: list[tuple[date, str, int]] = field(default_factory=list)


def local_range(first: date, last: date) -> Period:
    """The period of whole local days `first`…`last` (the CLI's --from/--to)."""
    return Period("range", datetime.combine(first, time(), VN),
                  datetime.combine(last + timedelta(days=1), time(), VN))


def period_containing(kind: str, day: date) -> Period:
    """The week (Monday first), month, quarter or year that contains local `day`."""
    if kind == "week":
        first = day - timedelta(days=day.weekday())
        nxt = first + timedelta(days=7)
    elif kind == "month":
        first = day.replace(day=1)
        nxt = (first + timedelta(days=32)).replace(day=1)
    elif kind == "quarter":
        first = date(day.year, 3 * ((day.month - 1) // 3) + 1, 1)
        nxt = (first + timedelta(days=93)).replace(day=1)
    elif kind == "year":
        first, nxt = date(day.year, 1, 1), date(day.year + 1, 1, 1)
    else:
        raise ValueError(f"unknown period kind {kind!r}")
    return Period(kind, datetime.combine(first, time(), VN), datetime.combine(nxt, time(), VN))


def last_complete(kind: str, now: datetime) -> Period:
    """The most recent period of `kind` that has ended by `now` (the scheduler's summary)."""
    current = period_containing(kind, now.astimezone(VN).date())
    return period_containing(kind, current.start.date() - timedelta(days=1))


async def stamp_handling_hours(database: Database, calendar: WorkingCalendar) -> int:
    """Store working hours from filing to publication on handled cases that lack it (or were
    republished since); returns how many were stamped. Runs before each report."""
    query = {"status": {"$in": list(HANDLED)},
             "$expr": {"$ne": ["$handling_end", "$entered_at.published"]}}
    cursor = database.db.reflections.find(query, {"code": 1, "created_at": 1, "entered_at": 1})
    stamped = 0
    async for doc in cursor:
        end = doc.get("entered_at", {}).get("published")
        if end is None:
            continue
        hours = calendar.working_time_between(doc["created_at"], end).total_seconds() / 3600
        await database.db.reflections.update_one(
            {"_id": doc["_id"]}, {"$set": {"handling_working_hours": round(hours, 2), "handling_end": end}})
        stamped += 1
    return stamped


async def build_report(database: Database, period: Period, calendar: WorkingCalendar,
                       names: dict[str, dict[str, str]] | None = None) -> Report:
    """Totals, the four breakdowns and the weekly series for `period`; `names` maps a breakdown
    to key → display name (fields, agencies, communes from the policy)."""
    await stamp_handling_hours(database, calendar)
    match = {"created_at": {"$gte": period.start, "$lt": period.end}}
    facets = {name: _group_stages(*exprs) for name, exprs in BREAKDOWNS.items()}
    facets["total"] = _group_stages(None, None)
    facets["weekly"] = _weekly_stages()
    cursor = await database.db.reflections.aggregate([{"$match": match}, {"$facet": facets}])
    result = (await cursor.to_list(1))[0]
    names = names or {}
    rows = {b: sorted((_row(d, names.get(b, {})) for d in result[b]), key=lambda r: (-r.received, r.key))
            for b in BREAKDOWNS}
    total = _row(result["total"][0], {}) if result["total"] else Row("", "")
    weekly = [(d["_id"]["week"].astimezone(VN).date(), d["_id"]["field"], d["n"]) for d in result["weekly"]]
    return Report(period, total, rows, sorted(weekly))


def _counters(name: Any = None) -> dict[str, Any]:
    handled = {"$in": ["$status", list(HANDLED)]}
    late = {"$eq": ["$late", True]}

    def when(cond: Any) -> dict[str, Any]:
        return {"$sum": {"$cond": [cond, 1, 0]}}

    return {
        "received": {"$sum": 1},
        "handled": when(handled),
        "on_time": when({"$and": [handled, {"$not": [late]}]}),
        "late": when(late),
        "in_progress": when({"$in": ["$status", list(OPEN_STATES)]}),
        "rejected": when({"$eq": ["$status", "rejected"]}),
        "hidden": when({"$eq": ["$hidden", True]}),
        "satisfied": when({"$eq": ["$rating", "satisfied"]}),
        "acceptable": when({"$eq": ["$rating", "acceptable"]}),
        "not_satisfied": when({"$eq": ["$rating", "not_satisfied"]}),
        "hours": {"$push": {"$cond": [handled, {"$ifNull": ["$handling_working_hours", None]}, None]}},
        "name": {"$first": name},
    }


def _group_stages(key: Any, name: Any) -> list[dict[str, Any]]:
    """Sort by handling time first so each group's pushed list arrives sorted (MongoDB ≥ 4.x
    and the embedded server alike), then pick the nearest-rank percentiles from it."""
    hours = {"$filter": {"input": "$hours", "cond": {"$ne": ["$$this", None]}}}
    return [
        {"$sort": {"handling_working_hours": 1}},
        {"$group": {"_id": {"$ifNull": [key, ""]}, **_counters(name)}},
        {"$set": {"hours": hours}},
        {"$set": {"median_hours": _rank("$hours", 0.5), "p90_hours": _rank("$hours", 0.9)}},
        {"$unset": "hours"},
    ]


def _rank(array: str, p: float) -> dict[str, Any]:
    index = {"$subtract": [{"$ceil": {"$multiply": [p, {"$size": array}]}}, 1]}
    return {"$cond": [{"$gt": [{"$size": array}, 0]}, {"$arrayElemAt": [array, index]}, None]}


def _weekly_stages() -> list[dict[str, Any]]:
    week = {"$dateTrunc": {"date": "$created_at", "unit": "week", "timezone": "Asia/Ho_Chi_Minh",
                           "startOfWeek": "monday"}}
    return [{"$group": {"_id": {"week": week, "field": "$field"}, "n": {"$sum": 1}}}]


def _row(doc: dict[str, Any], names: dict[str, str]) -> Row:
    key = str(doc["_id"] or "")
    return Row(key=key, name=names.get(key) or doc.get("name") or key, median_hours=doc.get("median_hours"),
               p90_hours=doc.get("p90_hours"), **{c: int(doc.get(c, 0)) for c in COUNTS})


async def agency_figures(database: Database, query: dict[str, Any]) -> list[dict[str, Any]]:
    """Handled, on-time and satisfaction counts per agency over cases matching `query`
    (the portal passes its public-case filter)."""
    wanted = ("handled", "on_time", "satisfied", "acceptable", "not_satisfied")
    cursor = await database.db.reflections.aggregate([
        {"$match": {**query, "status": {"$in": list(HANDLED)}}},
        {"$group": {"_id": "$agency", **{k: v for k, v in _counters().items() if k in wanted}}},
        {"$sort": {"_id": 1}}])
    return [d async for d in cursor]


def policy_names(policy: Policy) -> dict[str, dict[str, str]]:
    """Display names of fields and agencies for `build_report` (communes come from the data)."""
    return {"field": {code: f.vi for code, f in policy.fields.items()},
            "agency": {a.id: a.name for a in policy.agencies}}
