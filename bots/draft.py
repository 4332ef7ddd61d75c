"""Folding what a citizen said into the draft report, and what is still missing.

The intake bot calls `absorb` for each message with the normalizer's reading of the text
and whatever the platform attached (photos, a location pin, a shared contact); it returns
the problems to explain back (an invalid phone, a location outside the province).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from cases.gazetteer import Gazetteer
from normalizer.extract import extract_address
from normalizer.messages import Inbound
from normalizer.phones import parse_phone, phone_problem
from normalizer.text import title_case_name
from normalizer.understand import Understanding
from store.models import Draft, Place

REQUIRED = ("content", "location", "photo", "name", "phone")
MAX_PIN_DISTANCE_KM = 60.0


@dataclass
class Problem:
    code: str
    value: str = ""


@dataclass
class Absorbed:
    problems: list[Problem] = field(default_factory=list)
    changed: bool = False


def missing(draft: Draft) -> list[str]:
    have = {"content": bool(draft.content), "location": draft.location is not None,
            "photo": bool(draft.photos), "name": bool(draft.name), "phone": bool(draft.phone)}
    return [f for f in REQUIRED if not have[f]]


def absorb(draft: Draft, inbound: Inbound, u: Understanding | None, asking: str | None,
           gazetteer: Gazetteer) -> Absorbed:
    out = Absorbed()
    _media(draft, inbound, out, gazetteer)
    if inbound.contact is not None:
        phone = parse_phone(inbound.contact.phone)
        if phone:
            draft.phone, draft.phone_verified, out.changed = phone, True, True
            if inbound.contact.name and not draft.name:
                draft.name_offered = title_case_name(inbound.contact.name)
    if u is not None:
        _text(draft, inbound.text, u, asking, out, gazetteer)
    return out


def _media(draft: Draft, inbound: Inbound, out: Absorbed, gazetteer: Gazetteer) -> None:
    for photo in inbound.photos:
        draft.photos.append(photo.file_id)
        out.changed = True
        if draft.location is None and photo.location is not None:
            _pin(draft, photo.location.lat, photo.location.lon, out, gazetteer, quiet=True)
    out.problems += [Problem(code) for code in dict.fromkeys(inbound.rejected_media)]
    for refused in filter(None, inbound.context.get("refused_attachments", "").splitlines()):
        out.problems.append(Problem("attachment_refused", refused.split(":")[0]))
    if inbound.location is not None:
        _pin(draft, inbound.location.lat, inbound.location.lon, out, gazetteer)


def _pin(draft: Draft, lat: float, lon: float, out: Absorbed, gazetteer: Gazetteer,
         quiet: bool = False) -> None:
    commune = gazetteer.nearest(lat, lon, max_km=MAX_PIN_DISTANCE_KM)
    if commune is None and gazetteer.communes:
        if not quiet:
            out.problems.append(Problem("location_outside"))
        return
    address = draft.location.address if draft.location else None
    draft.location = Place(lat=lat, lon=lon, address=address,
                           commune=commune.name if commune else None,
                           commune_code=commune.code if commune else None)
    out.changed = True


def _text(draft: Draft, text: str, u: Understanding, asking: str | None, out: Absorbed,
          gazetteer: Gazetteer) -> None:
    if u.name:
        draft.name, draft.name_offered = u.name, None
        out.changed = True
    elif asking == "name" and _looks_like_name(text):
        draft.name, draft.name_offered = title_case_name(text.strip()), None
        out.changed = True
    if u.phone:
        draft.phone_verified = draft.phone_verified and u.phone == draft.phone  # a typed number is not vouched for
        draft.phone, draft.phone_offered = u.phone, None
        out.changed = True
    elif asking == "phone":
        problem = phone_problem(text)
        if problem:
            code = "phone_not_vietnamese" if problem == "not_vietnamese" else "phone_invalid"
            out.problems.append(Problem(code, text.strip()[:40]))
    if u.email and not draft.email:
        draft.email, out.changed = u.email, True
    _address(draft, text, u, asking, out)
    content = text.strip() if asking == "content" and not u.name and not u.phone else u.content
    if content and (not draft.content or asking == "content"):
        draft.content = content if not draft.content or asking != "content" else f"{draft.content} {content}"
        out.changed = True


def _address(draft: Draft, text: str, u: Understanding, asking: str | None, out: Absorbed) -> None:
    address = u.address or (extract_address(text) if asking == "location" else None)
    if not address and asking == "location" and len(text.split()) >= 2 and not (u.name or u.phone):
        address = text.strip()
    if not address:
        return
    place = draft.location or Place()
    place.address = address
    if u.commune_code and not place.commune_code:
        place.commune, place.commune_code = u.commune, u.commune_code
    draft.location = place
    out.changed = True


def _looks_like_name(text: str) -> bool:
    words = text.strip().split()
    return 2 <= len(words) <= 6 and all(w.isalpha() for w in words)
