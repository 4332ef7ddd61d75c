"""Forwarding: every case routed to an agency leaves for it, once per round.

`AgencyLoop.tick` (the gateway's scheduler) calls `forward_pending`: cases that are
`classified` with an agency, or `reopened` by an unhappy citizen, are handed to the
agency's send method (policy `send_method`) and move to `forwarded` in the same transaction.
The staff console's `/forward` hands one case over the same way (`forward_case`).
"""
from __future__ import annotations

import logging
from datetime import datetime

from cases.lifecycle import SYSTEM, Actor, TransitionError, transition
from cases.policy import Agency
from replies.loop import Loop
from replies.send_methods import SEND_METHODS
from store.models import Reflection
from store.repos import Store

log = logging.getLogger(__name__)
READY = ("classified", "reopened")
ACTOR = Actor("system:forward", SYSTEM)


async def forward_pending(store: Store, loop: Loop, now: datetime, limit: int = 50) -> int:
    """Forward every case ready for its agency; returns how many left."""
    sent = 0
    for case in await store.reflections.ready_to_forward(READY, limit):
        agency = loop.agency(case)
        if agency is None:
            log.warning("%s: agency %r is not in the policy; left for staff", case.code, case.agency)
            continue
        try:
            await forward_case(store, loop, case, agency, now)
        except TransitionError:
            continue  # changed meanwhile: the next pass sees its new state
        sent += 1
    return sent


async def forward_case(store: Store, loop: Loop, case: Reflection, agency: Agency, now: datetime,
                       actor: Actor = ACTOR) -> Reflection:
    """Move `case` to `forwarded` and hand it to `agency`'s send method (the staff `/forward`
    calls this as the member); raises TransitionError if the case changed meanwhile."""
    round_no = rounds(case) + 1
    moved = await transition(store, case, "forwarded", actor, at=now,
                             reason=f"{agency.id} ({agency.send_method}), round {round_no}")
    await SEND_METHODS[agency.send_method].forward(store, loop, moved, agency, round_no, now,
                                                   followup=_followup(case))
    return moved


def rounds(case: Reflection) -> int:
    """How many times the case has been forwarded before."""
    return sum(1 for h in case.history if h.to_status == "forwarded")


def _followup(case: Reflection) -> str | None:
    """The citizen's words that reopened the case, for the agency's next round."""
    if case.status != "reopened":
        return None
    return next((h.reason for h in reversed(case.history) if h.to_status == "reopened"), None)
