"""The states a reflection goes through and who may move it between them.

Every change of a case's state goes through `transition`: it checks the move is allowed
for the actor's role, and writes the new state and its audit entry in one update that
only succeeds if nobody changed the case in between (so two staff cannot both win).
Called by filing, the staff commands, the agency loop and the SLA scheduler.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cases.deadlines import on_transition
from normalizer.messages import utcnow
from store.models import HistoryEntry, Reflection
from store.repos import Store

SYSTEM, CITIZEN, OPERATOR, SUPERVISOR, OFFICER, LEADER = (
    "system", "citizen", "ioc_operator", "ioc_supervisor", "agency_officer", "agency_leader")
IOC = (OPERATOR, SUPERVISOR)

# (from, to) → roles allowed to make the move.
ALLOWED: dict[tuple[str, str], tuple[str, ...]] = {
    ("received", "classified"): (SYSTEM, *IOC),
    ("received", "rejected"): IOC,
    ("classified", "forwarded"): (SYSTEM, *IOC),
    ("classified", "classified"): IOC,  # re-route to another field/agency
    ("classified", "rejected"): IOC,
    ("returned", "classified"): IOC,
    ("returned", "rejected"): IOC,
    ("forwarded", "in_progress"): (SYSTEM, OFFICER, *IOC),
    ("forwarded", "returned"): (SYSTEM, OFFICER, *IOC),
    ("forwarded", "result_submitted"): (SYSTEM, OFFICER),
    ("in_progress", "returned"): (SYSTEM, OFFICER, *IOC),
    ("in_progress", "result_submitted"): (SYSTEM, OFFICER),
    ("result_submitted", "approved"): (SYSTEM, LEADER, SUPERVISOR),
    ("result_submitted", "in_progress"): (SYSTEM, LEADER, SUPERVISOR),  # sent back
    ("approved", "published"): (SYSTEM, *IOC),
    ("published", "closed"): (SYSTEM, CITIZEN, *IOC),
    ("published", "reopened"): (CITIZEN, *IOC),
    ("closed", "reopened"): (CITIZEN, *IOC),
    ("reopened", "forwarded"): (SYSTEM, *IOC),
    ("reopened", "in_progress"): (SYSTEM, OFFICER, *IOC),
    ("rejected", "received"): (SUPERVISOR,),
}
STATES = tuple(sorted({s for pair in ALLOWED for s in pair} | {"closed", "rejected"}))
OPEN_STATES = ("received", "classified", "returned", "forwarded", "in_progress",
               "result_submitted", "approved", "reopened")


class TransitionError(Exception):
    """A move that is not allowed, or a case that changed under the caller."""


@dataclass(frozen=True)
class Actor:
    id: str  # "citizen:zalo:123", "staff:tg:456", "system:sla"…
    role: str


def allowed(from_status: str, to_status: str, role: str) -> bool:
    return role in ALLOWED.get((from_status, to_status), ())


async def transition(store: Store, reflection: Reflection, to_status: str, actor: Actor, *,
                     reason: str | None = None, changes: dict[str, Any] | None = None,
                     at: datetime | None = None) -> Reflection:
    """Move `reflection` to `to_status`, applying `changes`, or raise TransitionError."""
    sets, entry = _change(reflection, to_status, actor, reason, changes, at or utcnow())
    return await _apply(store, reflection, {**sets, f"entered_at.{to_status}": entry.at}, entry)


def transitioned(reflection: Reflection, to_status: str, actor: Actor, *, reason: str | None = None,
                 changes: dict[str, Any] | None = None, at: datetime | None = None) -> Reflection:
    """The same move made in memory, on a case not stored yet: filing routes a new case before
    its single insert (an update and a read back saved per report)."""
    sets, entry = _change(reflection, to_status, actor, reason, changes, at or utcnow())
    return reflection.model_copy(update={**sets, "entered_at": {**reflection.entered_at, to_status: entry.at},
                                         "version": reflection.version + 1, "history": [*reflection.history, entry]})


def _change(reflection: Reflection, to_status: str, actor: Actor, reason: str | None,
            changes: dict[str, Any] | None, now: datetime) -> tuple[dict[str, Any], HistoryEntry]:
    if not allowed(reflection.status, to_status, actor.role):
        raise TransitionError(f"{actor.role} may not move {reflection.code} "
                              f"from {reflection.status} to {to_status}")
    entry = HistoryEntry(actor=actor.id, role=actor.role, action="transition",
                         from_status=reflection.status, to_status=to_status, reason=reason, at=now)
    sets = {"status": to_status, "updated_at": now,
            **on_transition(reflection.status, to_status, now), **(changes or {})}  # SLA clock
    return sets, entry


async def set_hidden(store: Store, reflection: Reflection, hidden: bool, actor: Actor,
                     reason: str) -> Reflection:
    """Hide or unhide (Điện Biên Đ9): never public while hidden, but handling and deadlines go on."""
    if actor.role not in IOC:
        raise TransitionError(f"{actor.role} may not hide or unhide a case")
    if reflection.hidden == hidden:
        raise TransitionError(f"{reflection.code} is already {'hidden' if hidden else 'visible'}")
    entry = HistoryEntry(actor=actor.id, role=actor.role, action="hide" if hidden else "unhide",
                         from_status=reflection.status, to_status=reflection.status, reason=reason, at=utcnow())
    return await _apply(store, reflection, {"hidden": hidden, "hidden_reason": reason if hidden else None}, entry)


async def _apply(store: Store, reflection: Reflection, sets: dict[str, Any], entry: HistoryEntry) -> Reflection:
    """Write `sets` and `entry` if the case is still the version and state the caller read."""
    moved = await store.reflections.apply_change(reflection.code, reflection.version, reflection.status,
                                                 sets, entry)
    if moved is None:
        raise TransitionError(f"{reflection.code} was changed by someone else; reload and retry")
    return moved


async def note(store: Store, reflection: Reflection, actor: Actor, action: str, text: str) -> None:
    """An audit entry that changes no state (internal note, reminder sent…)."""
    entry = HistoryEntry(actor=actor.id, role=actor.role, action=action, reason=text, at=utcnow())
    await store.reflections.push_history(reflection.code, entry)
