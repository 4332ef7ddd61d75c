"""Turning a confirmed draft into a case: code, citizen, field, agency, first audit entries.

The intake bot calls `CaseDesk.file` inside the turn's transaction when the citizen
confirms; staff commands and the agency loop use the same desk to look agencies up.
"""
from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from cases.lifecycle import SYSTEM, Actor, transitioned
from cases.policy import Policy
from cases.routing import route
from normalizer.classify import classify
from store.models import Conversation, HistoryEntry, Person, Reflection, Subscriber
from store.repos import Store

VN = ZoneInfo("Asia/Ho_Chi_Minh")


class CaseDesk:
    def __init__(self, policy: Policy) -> None:
        self.policy = policy

    def agency_name(self, agency_id: str) -> str:
        try:
            return self.policy.agency(agency_id).name
        except KeyError:
            return agency_id

    def handling_days(self) -> int:
        return round(self.policy.deadline_hours("handle") / self.policy.calendar.hours_per_working_day)

    async def file(self, store: Store, conv: Conversation, at: datetime) -> Reflection:
        d = conv.draft
        assert d.name and d.phone and d.content and d.location is not None, "draft is incomplete"
        citizen = await store.citizens.remember(d.phone, d.name, conv.channel, conv.sender, d.email)
        field, confidence = classify(d.content, self.policy.field_keywords())
        actor = f"citizen:{conv.channel}:{conv.sender}"
        reflection = Reflection(
            code=await store.reflections.next_code(at.astimezone(VN).year),
            channel=conv.channel, sender=conv.sender, citizen_id=citizen.id,
            citizen=Person(name=d.name, phone=d.phone, email=d.email),
            content=d.content, location=d.location, photos=d.photos, field=field,
            field_confidence=confidence, confidential=d.confidential, urgent=d.urgent,
            emergency_number=d.emergency_number, language=conv.language,
            subscribers=[Subscriber(channel=conv.channel, address=conv.sender,
                                    language=conv.language, context=conv.context)],
            history=[HistoryEntry(actor=actor, role="citizen", action="filed", to_status="received", at=at)],
            entered_at={"received": at}, created_at=at, updated_at=at)
        reflection = self._route(reflection, at)
        await store.reflections.insert(reflection)
        return reflection

    def _route(self, reflection: Reflection, at: datetime) -> Reflection:
        """The new case as routing leaves it, before it is stored: classified for its agency,
        or received with the reason staff must route it by hand (history says which)."""
        decision = route(self.policy, reflection.field, reflection.location.commune_code,
                         reflection.field_confidence)
        if decision.needs_staff:
            return reflection.model_copy(update={"routing_reason": decision.reason})
        return transitioned(reflection, "classified", Actor("system:routing", SYSTEM), reason=decision.reason, at=at,
                            changes={"agency": decision.agency_id, "routing_reason": decision.reason})
