"""The one shape every channel's traffic takes inside the gateway.

Channels build `Inbound` values from their raw payloads (through `Channel.parse`);
the bots read only these and answer with `Outbound` values, which the outbox later
hands back to the same channel's `send`. Nothing platform-specific crosses this line.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Literal

from pydantic import BaseModel, Field


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class GeoPoint(BaseModel):
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)


class Contact(BaseModel):
    """A phone number (and maybe a name) that the platform itself vouches for."""

    phone: str
    name: str | None = None


class MediaRef(BaseModel):
    """Where a channel can fetch an attachment from; resolved by the normalizer."""

    ref: str  # platform file id, CDN URL, or an e-mail part index
    declared_type: str | None = None
    filename: str | None = None
    size: int | None = None


class Photo(BaseModel):
    """A photo already checked and stored in GridFS."""

    file_id: str
    content_type: str
    size: int
    width: int | None = None
    height: int | None = None
    location: GeoPoint | None = None  # from EXIF GPS, when present


class Inbound(BaseModel):
    """A citizen's (or staff member's) message, whatever channel it came by."""

    channel: str
    sender: str  # platform user id, chat id, or e-mail address
    message_id: str  # the platform's id: (channel, message_id) is unique
    received_at: datetime = Field(default_factory=utcnow)
    text: str = ""
    media: list[MediaRef] = []  # filled by the channel's parse
    photos: list[Photo] = []  # filled by the normalizer after fetching `media`
    rejected_media: list[str] = []  # reasons, e.g. "not_an_image", "too_large"
    location: GeoPoint | None = None
    contact: Contact | None = None
    profile_name: str | None = None
    action: str | None = None  # button / quick-reply / postback payload
    chat_kind: Literal["private", "group", "email"] = "private"
    context: dict[str, str] = {}  # channel context kept for replies (subject, Message-ID…)


class Button(BaseModel):
    label: str
    action: str


class Outbound(BaseModel):
    """Something the gateway says; `send` renders it as well as the channel can."""

    text: str
    photos: list[str] = []  # GridFS file ids
    buttons: list[Button] = []  # confirm / cancel / ratings
    ask_location: bool = False  # offer a "share location" button where possible
    ask_contact: bool = False  # offer a "share phone" button where possible
    context: dict[str, str] = {}  # e.g. subject / In-Reply-To for e-mail threads
    kind: str = "reply"  # reply | result | reminder | notice: lets channels pick message tags


@dataclass(frozen=True)
class Delivery:
    channel: str
    address: str
    message: Outbound


def reply(inbound: Inbound, message: Outbound) -> Delivery:
    """Answer the sender on the channel the message came from, keeping its thread context."""
    if inbound.context and not message.context:
        message = message.model_copy(update={"context": dict(inbound.context)})
    return Delivery(inbound.channel, inbound.sender, message)
