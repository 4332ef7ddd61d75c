"""What an agency's answer does to its case: result, return, more time, leader's decision.

`replies.agency_bot.AgencyBot` calls these for e-mail replies; staff commands (`bots/staff.py`,
`bots/staff_commands.py`) call `approve` and `send_back` for leaders and IOC supervisors who act
in chat. All run inside the caller's transaction and queue their e-mails in the outbox.
"""
from __future__ import annotations

from datetime import date, datetime

from cases.lifecycle import SYSTEM, Actor, note, transition
from replies.deliver import publish
from replies.loop import Loop, local_time, notify_ioc, queue_mail
from replies.tokens import APPROVAL, RESULT
from store.models import Reflection
from store.outbox_keys import Kind, outbox_key
from store.repos import Store

SYSTEM_APPROVAL = Actor("system:approval", SYSTEM)


async def submit_result(store: Store, loop: Loop, case: Reflection, text: str, attachments: list[str],
                        actor: Actor, now: datetime) -> Reflection:
    """The officer's result: to the leader for approval, or straight to the citizen (policy)."""
    agency = loop.agency(case)
    changes = {"result": text, "result_attachments": attachments,
               "result_agency": agency.name if agency else case.agency}
    moved = await transition(store, case, "result_submitted", actor, at=now, changes=changes,
                             reason="result submitted")
    if agency is not None and agency.requires_leader_approval:
        text = loop.render("approval_request", case=moved, agency=agency.name, attachments=len(attachments))
        await queue_mail(store, outbox_key(Kind.APPROVAL, case.code, moved.version), agency.head_email,
                         loop.subject("approval", moved), text,
                         reply_to=loop.tokens.address(case.code, APPROVAL), photos=attachments)
        return moved
    approved = await transition(store, moved, "approved", SYSTEM_APPROVAL, at=now,
                                reason="the policy needs no leader approval for this agency")
    return await publish(store, loop, approved, now)


async def return_to_ioc(store: Store, loop: Loop, case: Reflection, reason: str, actor: Actor,
                        now: datetime) -> Reflection:
    """'Not our jurisdiction': the case goes back to the IOC with the officer's reason."""
    moved = await transition(store, case, "returned", actor, at=now, reason=reason or "not our jurisdiction")
    await notify_ioc(store, loop, f"ioc:returned:{case.code}:{moved.version}", moved, "returned",
                     agency=case.result_agency or case.agency, reason=reason)
    return moved


async def more_time(store: Store, loop: Loop, case: Reflection, until: date | None, reason: str,
                    actor: Actor, now: datetime) -> Reflection:
    """'Need more time until DATE': recorded on the case and reported to the IOC."""
    text = f"more time until {until:%d/%m/%Y}: {reason}" if until else f"more time: {reason}"
    if case.status == "forwarded":
        case = await transition(store, case, "in_progress", actor, at=now, reason=text)
    else:
        await note(store, case, actor, "more_time", text)
    await store.reflections.annotate(case.code, extension_until=until.isoformat() if until else None)
    await notify_ioc(store, loop, f"ioc:more_time:{case.code}:{case.version}:{now:%Y%m%d%H%M%S}", case,
                     "more_time", until=f"{until:%d/%m/%Y}" if until else "", reason=reason)
    return case


async def approve(store: Store, loop: Loop, code: str, actor: Actor, now: datetime,
                  edited: str | None = None) -> Reflection:
    """Leader approves (optionally with an edited result, Quảng Nam Đ9); the citizen gets it."""
    case = await _get(store, code)
    changes = {"result": edited} if edited else None
    moved = await transition(store, case, "approved", actor, at=now, changes=changes,
                             reason="edited and approved" if edited else "approved")
    return await publish(store, loop, moved, now)


async def send_back(store: Store, loop: Loop, code: str, actor: Actor, comment: str,
                    now: datetime) -> Reflection:
    """Leader sends the result back with a comment; the focal officer is asked again."""
    case = await _get(store, code)
    moved = await transition(store, case, "in_progress", actor, at=now, reason=comment or "sent back")
    agency = loop.agency(moved)
    if agency is not None:
        text = loop.render("sent_back", case=moved, agency=agency.name, comment=comment,
                           at=local_time(now))
        await queue_mail(store, outbox_key(Kind.SEND_BACK, code, moved.version), agency.focal_email,
                         loop.subject("sent_back", moved), text,
                         reply_to=loop.tokens.address(code, RESULT))
    return moved


async def _get(store: Store, code: str) -> Reflection:
    case = await store.reflections.get(code)
    if case is None:
        raise LookupError(f"no case {code}")
    return case
