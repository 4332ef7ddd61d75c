"""How a case leaves for the body that handles it, chosen per agency (`send_method` in the policy).

Like FixMyStreet's send methods: `replies.forward.forward_pending` looks the agency's method up
in `SEND_METHODS` and asks it to queue the hand-off. Today every agency is reached by e-mail;
an HTTP hand-off to another system is one more class with the same `forward` and one more row.
"""
from __future__ import annotations

from datetime import datetime
from typing import Protocol

from cases.policy import Agency
from normalizer.texts import display_phone
from replies.loop import Loop, local_time, queue_mail
from replies.tokens import RESULT
from store.models import Reflection
from store.outbox_keys import Kind, outbox_key
from store.repos import Store


class SendMethod(Protocol):
    async def forward(self, store: Store, loop: Loop, case: Reflection, agency: Agency,
                      round_no: int, now: datetime, followup: str | None) -> None:
        """Queue the hand-off of `case` (round `round_no`) to `agency`; idempotent per round."""


def map_link(case: Reflection) -> str | None:
    """A map link to the reported point, when the citizen shared one."""
    lat, lon = case.location.lat, case.location.lon
    return None if lat is None or lon is None else f"https://www.google.com/maps?q={lat:.6f},{lon:.6f}"


def shares_contact(loop: Loop, case: Reflection) -> bool:
    """Name and phone go to the agency unless the case is confidential (§6, last point)."""
    return not case.confidential or loop.policy.share_contact_with_agency


class EmailSendMethod:
    """An e-mail to the agency's focal officer; the reply comes back to a signed plus-address."""

    async def forward(self, store: Store, loop: Loop, case: Reflection, agency: Agency,
                      round_no: int, now: datetime, followup: str | None) -> None:
        hours = loop.policy.deadline_hours("handle")
        contact = shares_contact(loop, case)
        text = loop.render(
            "agency_forward", case=case, agency=agency.name, round_no=round_no, followup=followup,
            field=loop.policy.fields[case.field].vi if case.field in loop.policy.fields else case.field,
            map_link=map_link(case), reported_at=local_time(case.created_at),
            hours=hours, due=local_time(loop.calendar.deadline(now, hours)),
            return_hours=loop.policy.deadline_hours("return_wrong_jurisdiction"),
            reporter=case.citizen.name if contact else None,
            phone=display_phone(case.citizen.phone or "") if contact else None)
        await queue_mail(store, outbox_key(Kind.FORWARD, case.code, round_no), agency.focal_email,
                         loop.subject("forward", case), text,
                         reply_to=loop.tokens.address(case.code, RESULT), photos=list(case.photos))


SEND_METHODS: dict[str, SendMethod] = {"email": EmailSendMethod()}
