"""Periodic and on-demand case statistics, computed by aggregation pipelines on the server.

`run_bots.py report` and the scheduler's periodic summary (`cases.report_mail`) call
`build_report`; the exports in `bots.report_cli` turn a `Report` into XLSX, CSV and PNG.
The pipelines themselves are in `store.reports`; this module says what the counts mean.

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

from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from cases.calendar import WorkingCalendar
from cases.lifecycle import OPEN_STATES
from cases.policy import Policy
from store.database import Database
from store.reports import BREAKDOWNS, Row
from store.repos import Store

VN = ZoneInfo("Asia/Ho_Chi_Minh")
HANDLED = ("published", "closed")
KINDS = ("week", "month", "quarter", "year")


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
    reads, stamped = Store(database).reports, 0
    async for span in reads.unstamped(HANDLED):
        if span.published_at is None:
            continue
        hours = calendar.working_time_between(span.created_at, span.published_at).total_seconds() / 3600
        await reads.stamp(span, round(hours, 2))
        stamped += 1
    return stamped


async def build_report(database: Database, period: Period, calendar: WorkingCalendar,
                       names: dict[str, dict[str, str]] | None = None) -> Report:
    """Totals, the four breakdowns and the weekly series for `period`; `names` maps a breakdown
    to key → display name (fields, agencies, communes from the policy)."""
    await stamp_handling_hours(database, calendar)
    found = await Store(database).reports.breakdowns(period.start, period.end, HANDLED, OPEN_STATES, VN.key)
    names = names or {}
    rows = {b: sorted((replace(r, name=names.get(b, {}).get(r.key) or r.name) for r in found.by[b]),
                      key=lambda r: (-r.received, r.key))
            for b in BREAKDOWNS}
    weekly = [(week.astimezone(VN).date(), fld, n) for week, fld, n in found.weekly]
    return Report(period, found.total or Row("", ""), rows, sorted(weekly))


def policy_names(policy: Policy) -> dict[str, dict[str, str]]:
    """Display names of fields and agencies for `build_report` (communes come from the data)."""
    return {"field": {code: f.vi for code, f in policy.fields.items()},
            "agency": {a.id: a.name for a in policy.agencies}}
