"""What the public may see of a case, in one place for the portal pages and the Open311 API.

A case is public when its result is published (published or closed) and it is neither
confidential nor hidden. Of a public case only the code, field, agency, place, dates, state,
the agency's answer and the photo count leave the server; the citizen's name, phone and
e-mail never do, and are also masked inside the free texts (content, answer) together with
anything that looks like a phone number or an e-mail address. The queries are in
`store.public`; this module gives them `PUBLIC_STATES` and shapes what they return.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from store.database import Database
from store.models import Reflection
from store.public import AgencyFigures, PublicQuery
from store.repos import Store

PUBLIC_STATES = ("published", "closed")  # result published; never when confidential or hidden
MASK = "***"
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")
_PHONE = re.compile(r"(?:\+?\d[\s.\-()]*){9,}")


@dataclass(frozen=True)
class PublicCase:
    code: str
    field: str
    agency: str | None
    address: str | None
    commune: str | None
    commune_code: str | None
    lat: float | None
    lon: float | None
    status: str
    received_at: datetime
    published_at: datetime | None
    updated_at: datetime
    content: str
    result: str | None
    result_agency: str | None
    photo_count: int


def mask(text: str | None, reflection: Reflection) -> str | None:
    """`text` without the citizen's identity, phone numbers or e-mail addresses."""
    if not text:
        return text
    for value in (reflection.citizen.name, reflection.citizen.email, reflection.citizen.phone):
        if value:
            text = re.sub(re.escape(value), MASK, text, flags=re.IGNORECASE)
    return _PHONE.sub(MASK, _EMAIL.sub(MASK, text))


def public_view(reflection: Reflection) -> PublicCase:
    """The public projection of a case the caller already found public (`store.public`)."""
    loc = reflection.location
    return PublicCase(
        code=reflection.code, field=reflection.field, agency=reflection.agency,
        address=mask(loc.address, reflection), commune=loc.commune, commune_code=loc.commune_code,
        lat=loc.lat, lon=loc.lon, status=reflection.status,
        received_at=reflection.created_at, published_at=reflection.entered_at.get("published"),
        updated_at=reflection.updated_at, content=mask(reflection.content, reflection) or "",
        result=mask(reflection.result, reflection), result_agency=reflection.result_agency,
        photo_count=len(reflection.photos))


async def find_public(database: Database, query: PublicQuery, *, skip: int = 0,
                      limit: int = 50) -> list[PublicCase]:
    """Public cases matching `query`, newest first (the portal's list, Open311 requests)."""
    found = await Store(database).public.find(PUBLIC_STATES, query, skip, limit)
    return [public_view(r) for r in found]


async def count_public(database: Database, query: PublicQuery) -> int:
    return await Store(database).public.count(PUBLIC_STATES, query)


async def public_photo(database: Database, code: str, index: int) -> str | None:
    """GridFS id of photo `index` of a public case, or None (unknown, not public, no such photo)."""
    photos = await Store(database).public.photos(PUBLIC_STATES, code)
    return photos[index] if 0 <= index < len(photos) else None


async def agency_figures(database: Database) -> list[AgencyFigures]:
    """The portal's per-agency figures over the public cases."""
    return await Store(database).public.agency_figures(PUBLIC_STATES)
