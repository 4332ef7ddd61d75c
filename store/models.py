"""Typed records the repositories read and write; bots and cases never see raw documents."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from normalizer.messages import Outbound, utcnow


class Record(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class Identity(Record):
    channel: str
    address: str
    unreachable: bool = False


class Citizen(Record):
    id: str = Field(alias="_id")
    phone: str | None = None  # E.164, verified; the key across channels
    name: str | None = None
    email: str | None = None
    address: str | None = None
    identities: list[Identity] = []
    created_at: datetime = Field(default_factory=utcnow)


class Place(Record):
    lat: float | None = None
    lon: float | None = None
    address: str | None = None
    commune: str | None = None
    commune_code: str | None = None


class Consent(Record):
    """Which ways the citizen agreed to receive the result (Law 91/2025/QH15, Decree 356/2025).

    Asked once during intake, never pre-ticked; `ways` holds the ones agreed to, from
    CONSENT_WAYS; `wording` is the exact question shown, `at` when the answer came.
    """

    ways: list[str] = []
    wording: str = ""
    at: datetime = Field(default_factory=utcnow)


CONSENT_WAYS = ("chat", "zalo_phone", "sms", "email")


class Person(Record):
    name: str | None = None
    phone: str | None = None
    phone_verified: bool = False  # the platform vouched for it, or the citizen typed back a code
    email: str | None = None
    address: str | None = None


class Subscriber(Record):
    channel: str
    address: str
    language: str = "vi"
    context: dict[str, str] = {}


class HistoryEntry(Record):
    actor: str  # "citizen:<channel>:<id>", "staff:<id>", "system:<part>"
    role: str
    action: str  # filed | transition | hide | unhide | note | reminder…
    from_status: str | None = None
    to_status: str | None = None
    reason: str | None = None
    at: datetime = Field(default_factory=utcnow)


class Reflection(Record):
    """A filed citizen report (phản ánh) and where it stands."""

    code: str
    status: str = "received"
    channel: str
    sender: str
    citizen_id: str | None = None
    citizen: Person = Person()
    content: str
    location: Place = Place()
    photos: list[str] = []
    field: str = "other"
    field_confidence: float = 0.0
    agency: str | None = None
    confidential: bool = False
    urgent: bool = False
    emergency_number: str | None = None
    language: str = "vi"
    duplicate_of: str | None = None
    hidden: bool = False
    hidden_reason: str | None = None
    routing_reason: str | None = None
    history: list[HistoryEntry] = []
    # The agency's answer (agency loop, staff edits) and what the citizen thought of it.
    result: str | None = None
    result_attachments: list[str] = []  # GridFS ids of files the agency attached
    result_agency: str | None = None
    rating: str | None = None  # satisfied | acceptable | not_satisfied
    publishable: bool = False  # set when the result is published: never for confidential cases
    published_at: datetime | None = None
    extension_until: str | None = None  # ISO date an agency asked for ("need more time until…")
    entered_at: dict[str, datetime] = {}
    subscribers: list[Subscriber] = []
    deadlines: dict[str, datetime] = {}
    # SLA state (cases.deadlines, cases.sla): clock start of the current phase, next alert
    # moment (indexed), alerts already handled in this phase, lateness (a flag, not a state).
    sla_since: datetime | None = None
    next_due: datetime | None = None
    reminders_sent: list[str] = []
    late: bool = False
    late_at: datetime | None = None
    duplicate_candidates: list[DuplicateCandidate] = []
    info_requested: bool = False  # the citizen was asked once to complete the report (002 Đ15.4)
    version: int = 0
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class InboundRecord(Record):
    id: Any = Field(alias="_id")
    channel: str
    message_id: str
    sender: str
    payload: dict[str, Any]
    status: str = "pending"  # pending | processing | done | ignored | failed
    attempts: int = 0
    reason: str | None = None
    received_at: datetime = Field(default_factory=utcnow)


class OutboxItem(Record):
    id: str = Field(alias="_id")  # deterministic: a redelivered cause never queues twice
    channel: str
    address: str
    message: Outbound
    status: str = "pending"  # pending | sending | sent | failed | window_closed | unreachable
    attempts: int = 0
    next_attempt_at: datetime = Field(default_factory=utcnow)
    last_error: str | None = None
    platform_message_id: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    sent_at: datetime | None = None


class AuditEntry(Record):
    reflection_code: str
    actor: str  # "citizen:<channel>:<id>", "staff:<id>", "system:<part>"
    action: str
    from_status: str | None = None
    to_status: str | None = None
    reason: str | None = None
    at: datetime = Field(default_factory=utcnow)


class Draft(Record):
    """What the intake conversation has gathered so far."""

    name: str | None = None
    name_offered: str | None = None  # from the platform profile or a past report; needs a yes
    phone: str | None = None
    phone_offered: str | None = None
    phone_verified: bool = False  # set only from a platform-vouched Contact (or a one-time code)
    consent: Consent | None = None  # None until the citizen answered the consent question
    email: str | None = None
    address: str | None = None
    content: str | None = None
    location: Place | None = None
    photos: list[str] = []
    confidential: bool = False
    urgent: bool = False
    emergency_number: str | None = None


class Conversation(Record):
    id: str = Field(alias="_id")  # "<channel>:<sender>"
    channel: str
    sender: str
    stage: str = "collecting"  # collecting | confirming | rating | info
    language: str = "vi"
    draft: Draft = Draft()
    asking: str | None = None  # the field the last question asked for
    context: dict[str, str] = {}  # channel context to thread replies (e-mail subject, ids)
    rating_for: str | None = None
    info_for: str | None = None  # the case whose /ask this citizen has not answered yet (cases.info_answer)
    updated_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime | None = None
    expiry_notified: bool = False


class DuplicateCandidate(Record):
    """A later report of the same matter, linked to a case instead of filed (cases.duplicates)."""

    id: str
    channel: str
    sender: str
    language: str = "vi"
    context: dict[str, str] = {}
    draft: Draft
    similarity: float
    status: str = "candidate"  # candidate | confirmed | split
    split_code: str | None = None
    at: datetime = Field(default_factory=utcnow)


Reflection.model_rebuild()
