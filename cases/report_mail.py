"""The periodic summary e-mailed to agency leaders and the IOC (Bình Phước Đ14.3).

The gateway runs `run_summaries`, which calls `send_due_summaries` every few minutes. For each kind of period
(week, month, quarter, year) it looks at the last one that has ended; the first pass after
it ends computes the report once (`cases.reports`), queues one e-mail per agency that received
cases (to its head) and one to the IOC through the outbox, and records the period as done in
the same transaction, so a restart or a second pass never sends it twice.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime, timedelta
from typing import Callable

from pymongo.errors import DuplicateKeyError, PyMongoError

from cases.calendar import WorkingCalendar
from cases.policy import Policy
from cases.reports import KINDS, Report, build_report, last_complete, policy_names
from normalizer.messages import Outbound, utcnow
from normalizer.texts import Texts
from store.database import Database
from store.outbox_keys import Kind, outbox_key
from store.repos import Store, unit_of_work

log = logging.getLogger(__name__)


async def send_due_summaries(database: Database, policy: Policy, calendar: WorkingCalendar, texts: Texts,
                             now: datetime, ioc_email: str | None) -> list[str]:
    """Queue the summaries of periods that ended and were not sent yet; return outbox keys."""
    queued: list[str] = []
    for kind in KINDS:
        period = last_complete(kind, now)
        run_id = f"{kind}:{period.start.date():%Y%m%d}"
        if await Store(database).report_runs.done(run_id):
            continue
        report = await build_report(database, period, calendar, policy_names(policy))
        try:
            async with unit_of_work(database) as store:
                keys = []
                for address, message in _messages(policy, texts, kind, report, ioc_email):
                    key = outbox_key(Kind.REPORT, run_id, address)
                    if await store.outbox.enqueue(key, "email", address, message):
                        keys.append(key)
                await store.report_runs.record(run_id, now, report.total.received)
        except DuplicateKeyError:
            continue  # another pass recorded this period meanwhile
        queued += keys
    return queued


def _messages(policy: Policy, texts: Texts, kind: str, report: Report,
              ioc_email: str | None) -> list[tuple[str, Outbound]]:
    """(address, message) per agency with cases in the period, and the IOC's; none if empty."""
    if report.total.received == 0:
        return []
    rows = {r.key: r for r in report.by["agency"]}
    out = []
    for agency in policy.agencies:
        if agency.id in rows:
            out.append((agency.head_email, _message(policy, texts, kind, report, agency.name, rows[agency.id])))
    if ioc_email:
        out.append((ioc_email, _message(policy, texts, kind, report, None, None)))
    return out


def _message(policy: Policy, texts: Texts, kind: str, report: Report, agency: str | None,
             agency_row: object) -> Outbound:
    last = (report.period.end - timedelta(seconds=1)).astimezone(report.period.start.tzinfo)
    values = {"kind": kind, "kind_name": texts.render("report_kind", "vi", kind=kind),
              "period": report.period.label, "agency": agency, "agency_row": agency_row,
              "total": report.total, "agencies": report.by["agency"], "province": policy.province,
              "first": f"{report.period.start:%Y-%m-%d}", "last": f"{last:%Y-%m-%d}"}
    subject = texts.render("report_summary_subject", "vi", **values)
    return Outbound(text=texts.render("report_summary", "vi", **values), context={"subject": subject},
                    kind="notice")


async def run_summaries(database: Database, policy: Policy, texts: Texts, stop: asyncio.Event, *,
                        ioc_email: str | None, clock: Callable[[], datetime] = utcnow,
                        interval_s: float = 300.0) -> None:
    """The gateway's summary loop: checks for ended periods every `interval_s` until `stop`."""
    calendar = WorkingCalendar.from_policy(policy)
    while not stop.is_set():
        try:
            keys = await send_due_summaries(database, policy, calendar, texts, clock(), ioc_email)
            if keys:
                log.info("report summaries queued: %d", len(keys))
        except PyMongoError as exc:
            log.warning("report summaries skipped, database unavailable: %s", str(exc).splitlines()[0])
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_s)
