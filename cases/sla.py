"""The SLA scheduler: reminders, escalations, lateness and progress notices, each sent once.

The gateway's scheduler (`Gateway.tick`) calls `sla_pass` every interval. A pass loads only
the cases with an alert due (index on `Reflection.next_due`), stamps due times where a state
change left them empty, and for each alert that has come due queues one message into the
outbox under a deterministic key, appends an audit entry and records the alert in
`reminders_sent` — all in one transaction per case, so a second pass or a restart never sends
anything twice. Alerts of a phase, given its levels L0…Ln (see `cases.deadlines`):
- `due_soon`: to L0's recipient `warn_before_hours` of working time before L0 is due;
- `escalated`: to Li's recipient when L(i-1) is due (focal → head);
- `late`: when Ln is due the case is flagged late (not a state) and the IOC is told;
- `citizen`: where the policy has `progress_notice` (Điện Biên), its subscribers are told that
  the case is still in progress.
"""
from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from datetime import datetime

from pymongo.errors import OperationFailure, PyMongoError

from cases import deadlines
from cases.calendar import WorkingCalendar
from cases.lifecycle import OPEN_STATES
from cases.policy import Policy
from normalizer.messages import Outbound
from normalizer.texts import Texts
from store.database import Database
from store.models import HistoryEntry, Reflection
from store.outbox_keys import Kind, outbox_key
from store.repos import Store, unit_of_work

log = logging.getLogger(__name__)
ACTOR = "system:sla"


@dataclass(frozen=True)
class SlaSettings:
    warn_before_hours: float = 2.0  # working time before the first level is due
    ioc_email: str | None = None  # where IOC notices go; None: only listed in the report
    batch: int = 200  # cases per pass at most


@dataclass
class SlaReport:
    """What one pass did, for the log and the IOC view."""
    queued: list[str] = field(default_factory=list)  # outbox keys
    late: list[str] = field(default_factory=list)  # codes newly flagged late
    for_ioc: list[str] = field(default_factory=list)  # "code: kind step" with no IOC address
    skipped: list[str] = field(default_factory=list)  # codes that changed under the pass


@dataclass(frozen=True)
class Alert:
    name: str  # unique within the phase; kept in reminders_sent
    at: datetime
    kind: str  # due_soon | escalated | late | citizen
    level: deadlines.Level


class _Changed(Exception):
    """The case moved while the pass handled it: roll back, retry next pass."""


@dataclass(frozen=True)
class _Context:
    policy: Policy
    calendar: WorkingCalendar
    texts: Texts
    settings: SlaSettings


async def sla_pass(database: Database, policy: Policy, calendar: WorkingCalendar, texts: Texts,
                   now: datetime, settings: SlaSettings = SlaSettings()) -> SlaReport:
    """One scheduler pass at `now`; called by `Gateway.tick` and, with a set clock, by tests."""
    ctx, report = _Context(policy, calendar, texts, settings), SlaReport()
    due = await Store(database).reflections.sla_candidates(now, OPEN_STATES, settings.batch)
    for reflection in due:
        try:
            async with unit_of_work(database) as store:
                await _handle_case(store, ctx, reflection, now, report)
        except (_Changed, OperationFailure) as exc:  # moved meanwhile, or a write conflict
            log.info("sla: %s skipped this pass: %s", reflection.code, type(exc).__name__)
            report.skipped.append(reflection.code)
        except Exception as exc:  # noqa: BLE001 - one broken case must not stop every other case's deadlines
            if isinstance(exc, PyMongoError):
                raise  # the database is down: the whole pass waits for the next one
            log.error("sla: %s failed this pass: %s", reflection.code, type(exc).__name__, exc_info=exc)
            report.skipped.append(reflection.code)
    return report


def plan(policy: Policy, calendar: WorkingCalendar, reflection: Reflection, warn_before_hours: float) -> list[Alert]:
    """Every alert of the case's current phase, sent or not, from its stamped due times."""
    lv = deadlines.levels(policy, reflection)
    if not lv or reflection.sla_since is None:
        return []
    alerts = []
    hours = policy.deadline_hours(lv[0].step)
    if hours > warn_before_hours:
        at = calendar.deadline(reflection.sla_since, hours - warn_before_hours)
        alerts.append(Alert(f"{lv[0].step}:0", at, "due_soon", lv[0]))
    for i in range(1, len(lv)):
        alerts.append(Alert(f"{lv[i].step}:{i}", lv[i - 1].due, "escalated", lv[i]))
    alerts.append(Alert(f"{lv[-1].step}:late", lv[-1].due, "late", lv[-1]))
    notice = reflection.deadlines.get(deadlines.CITIZEN_NOTICE)
    if notice is not None:
        alerts.append(Alert(deadlines.CITIZEN_NOTICE, notice, "citizen", lv[0]))
    return alerts


async def _handle_case(store: Store, ctx: _Context, reflection: Reflection, now: datetime,
                       report: SlaReport) -> None:
    sets: dict[str, object] = {}
    if not reflection.deadlines:
        since = reflection.sla_since or reflection.entered_at.get(reflection.status, reflection.created_at)
        due = deadlines.due_times(ctx.policy, ctx.calendar, reflection.status, since)
        sets = {"sla_since": since, "deadlines": due}
        reflection = reflection.model_copy(update=sets)
    alerts = plan(ctx.policy, ctx.calendar, reflection, ctx.settings.warn_before_hours)
    sent = list(reflection.reminders_sent)
    entries: list[HistoryEntry] = []
    for alert in alerts:
        if alert.at <= now and alert.name not in sent:
            entries.append(await _send(store, ctx, reflection, alert, now, report))
            sent.append(alert.name)
            if alert.kind == "late" and not reflection.late:
                sets.update(late=True, late_at=alert.at)
                report.late.append(reflection.code)
    sets.update(reminders_sent=sent, next_due=min((a.at for a in alerts if a.name not in sent), default=None))
    if not await store.reflections.update_if_unchanged(reflection, sets, entries):
        raise _Changed(reflection.code)


async def _send(store: Store, ctx: _Context, reflection: Reflection, alert: Alert, now: datetime,
                report: SlaReport) -> HistoryEntry:
    """Queue the alert's message(s); return its audit entry."""
    key = outbox_key(Kind.SLA, reflection.code, f"{reflection.sla_since:%Y%m%dT%H%M%SZ}", alert.name)
    if alert.kind == "citizen":
        for n, sub in enumerate(reflection.subscribers):
            text = ctx.texts.render("still_in_progress", sub.language, code=reflection.code,
                                    agency=_agency_name(ctx.policy, reflection), days=_days(ctx.policy))
            if await store.outbox.enqueue(f"{key}:{n}", sub.channel, sub.address,
                                          Outbound(text=text, context=sub.context, kind="notice")):
                report.queued.append(f"{key}:{n}")
        return _entry("progress_notice", f"{len(reflection.subscribers)} người theo dõi", now)
    recipient = "ioc" if alert.kind == "late" else alert.level.recipient
    address = _address(ctx, reflection, recipient)
    if address is None:
        report.for_ioc.append(f"{reflection.code}: {alert.kind} {alert.level.step}")
    elif await store.outbox.enqueue(key, "email", address, _reminder(ctx, reflection, alert)):
        report.queued.append(key)
    return _entry(alert.kind, f"{alert.level.step} → {recipient} <{address or 'danh sách IOC'}>, "
                              f"hạn {alert.level.due:%Y-%m-%d %H:%M} UTC", now)


def _reminder(ctx: _Context, reflection: Reflection, alert: Alert) -> Outbound:
    values = {"kind": alert.kind, "step": alert.level.step, "code": reflection.code,
              "due": alert.level.due.astimezone(ctx.calendar.tz).strftime("%H:%M %d/%m/%Y"),
              "agency": _agency_name(ctx.policy, reflection), "content": reflection.content,
              "address": reflection.location.address or "", "province": ctx.policy.province}
    subject = ctx.texts.render("reminder_subject", "vi", **values)
    return Outbound(text=ctx.texts.render("reminder", "vi", **values), context={"subject": subject},
                    kind="reminder")


def _address(ctx: _Context, reflection: Reflection, recipient: str) -> str | None:
    """E-mail of the focal officer or head of the case's agency; the IOC's otherwise."""
    if recipient in ("focal", "head") and reflection.agency:
        with contextlib.suppress(KeyError):
            agency = ctx.policy.agency(reflection.agency)
            return agency.focal_email if recipient == "focal" else agency.head_email
    return ctx.settings.ioc_email


def _agency_name(policy: Policy, reflection: Reflection) -> str:
    try:
        return policy.agency(reflection.agency).name if reflection.agency else ""
    except KeyError:
        return reflection.agency or ""


def _days(policy: Policy) -> int:
    return round(policy.deadline_hours(deadlines.PROGRESS_NOTICE) / policy.calendar.hours_per_working_day)


def _entry(action: str, reason: str, at: datetime) -> HistoryEntry:
    return HistoryEntry(actor=ACTOR, role="system", action=action, reason=reason, at=at)
