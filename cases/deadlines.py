"""Due times of a case's current step, from the policy's `deadlines` and the working calendar.

A case's states fall into phases (classify, forward, handle, approve, publish); each phase has
a clock that starts when the case enters it. `lifecycle.transition` calls `on_transition` on
every state change so a new phase restarts the clock; the SLA scheduler (`cases.sla`) then
calls `due_times` to stamp `Reflection.deadlines` and `levels` to know who answers for what.

In the handle phase the policy's `escalation` list is a chain: each level's limit counts from
the previous level's due time (Bình Phước: focal 8 h, then the head 48 more), and past the
last level the case is late. Other phases have one level: the step of that name.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cases.calendar import WorkingCalendar
from cases.policy import Policy
from store.models import Reflection

# State → phase; states missing here (published, closed, rejected) run no clock.
PHASES: dict[str, str] = {
    "received": "classify", "returned": "classify", "classified": "forward", "reopened": "forward",
    "forwarded": "handle", "in_progress": "handle", "result_submitted": "approve", "approved": "publish"}
# Who answers for a one-level phase (the IOC classifies, forwards and publishes).
OWNERS: dict[str, str] = {"classify": "ioc", "forward": "ioc", "handle": "focal", "approve": "head",
                          "publish": "ioc"}
PROGRESS_NOTICE = "progress_notice"  # optional step: tell the citizen the case is still in progress
CITIZEN_NOTICE = "citizen_notice"  # its key in Reflection.deadlines


@dataclass(frozen=True)
class Level:
    step: str
    recipient: str  # focal | head | ioc
    due: datetime


def phase_of(status: str) -> str | None:
    """The phase whose clock runs while a case is in `status` (None: no clock)."""
    return PHASES.get(status)


def on_transition(from_status: str, to_status: str, at: datetime) -> dict[str, Any]:
    """Fields `lifecycle.transition` sets with a state change: a new phase restarts the clock.

    Moves within a phase (forwarded → in_progress) keep the clock. The due times are stamped
    by the scheduler's next pass (`next_due = at` makes the case due at once).
    """
    phase = phase_of(to_status)
    if phase is not None and phase == phase_of(from_status):
        return {}
    return {"sla_since": at, "deadlines": {}, "reminders_sent": [], "next_due": at if phase else None}


def chain(policy: Policy, phase: str) -> list[tuple[str, str]]:
    """(step, recipient) levels of a phase, in order."""
    if phase == "handle" and policy.escalation:
        return [(level.step, level.recipient) for level in policy.escalation]
    return [(phase, OWNERS[phase])]


def due_times(policy: Policy, calendar: WorkingCalendar, status: str, since: datetime) -> dict[str, datetime]:
    """What `Reflection.deadlines` holds for a case in `status` whose phase began at `since`."""
    phase = phase_of(status)
    if phase is None:
        return {}
    dues: dict[str, datetime] = {}
    start = since
    for step, _ in chain(policy, phase):
        start = calendar.deadline(start, policy.deadline_hours(step))
        dues[step] = start
    if phase == "handle" and PROGRESS_NOTICE in policy.deadlines:
        dues[CITIZEN_NOTICE] = calendar.deadline(since, policy.deadline_hours(PROGRESS_NOTICE))
    return dues


def levels(policy: Policy, reflection: Reflection) -> list[Level]:
    """The stamped escalation levels of the case's current phase, in order."""
    phase = phase_of(reflection.status)
    if phase is None or not reflection.deadlines:
        return []
    return [Level(step, recipient, reflection.deadlines[step]) for step, recipient in chain(policy, phase)]
