"""Duplicate reports: the same matter reported again near an open case (requirements §3; 004 Đ5.7).

The intake calls `handle_possible_duplicate` when a citizen confirms a draft, before filing:
if an open case of the same field lies within the policy's `duplicate.radius_m`, was filed
within `duplicate.window_hours` and says much the same, the report is linked to it as a
duplicate candidate, the citizen is subscribed to its result and told its code, and no second
case is opened. IOC staff then `confirm_duplicate`, or `split_duplicate` to file it on its own.
"""
from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise

from cases.filing import CaseDesk
from cases.lifecycle import CITIZEN, IOC, OPEN_STATES, Actor
from cases.policy import Policy
from normalizer.classify import classify
from normalizer.messages import Delivery, Outbound
from normalizer.text import fold
from normalizer.texts import Texts
from store.conversations import conversation_id
from store.models import Conversation, DuplicateCandidate, HistoryEntry, Place, Reflection, Subscriber
from store.repos import Store

SIMILARITY = 0.35  # see similarity(): same matter ≈ 0.45–1, another matter nearby ≈ 0.2
_WORD = re.compile(r"\w+")


class DuplicateError(Exception):
    """The candidate does not exist or was already confirmed or split."""


@dataclass(frozen=True)
class Diverted:
    """A report linked to an existing case instead of filed; `message` answers the citizen."""
    existing: Reflection
    candidate: DuplicateCandidate
    message: Outbound


def similarity(a: str, b: str) -> float:
    """How much two reports say the same, 0…1: Dice coefficient over accent-folded syllables and
    syllable pairs ("ổ gà" = "o ga"); pairs keep "ngã tư" apart from "bị ngã"."""
    fa, fb = _features(a), _features(b)
    if not fa or not fb:
        return 0.0
    return 2 * len(fa & fb) / (len(fa) + len(fb))


def _features(text: str) -> set[str]:
    words = _WORD.findall(fold(text))
    return set(words) | {f"{x} {y}" for x, y in pairwise(words)}


async def find_duplicate(store: Store, policy: Policy, *, field: str, content: str, location: Place | None,
                         now: datetime, threshold: float = SIMILARITY) -> Reflection | None:
    """The nearest open case of `field` that this report repeats, or None (no location: None)."""
    if location is None or location.lat is None or location.lon is None:
        return None
    query = {"field": field, "status": {"$in": list(OPEN_STATES)}, "duplicate_of": None,
             "created_at": {"$gte": now - timedelta(hours=policy.duplicate.window_hours)}}
    nearby = await store.reflections.near(location.lon, location.lat, policy.duplicate.radius_m, query)
    return next((r for r in nearby if similarity(content, r.content) >= threshold), None)


async def link_duplicate(store: Store, existing: Reflection, conv: Conversation, at: datetime) -> DuplicateCandidate:
    """Attach the conversation's report to `existing` and subscribe its author to the result."""
    candidate = DuplicateCandidate(
        id=uuid.uuid4().hex[:12], channel=conv.channel, sender=conv.sender, language=conv.language,
        context=conv.context, draft=conv.draft, similarity=similarity(conv.draft.content or "", existing.content),
        at=at)
    subscriber = Subscriber(channel=conv.channel, address=conv.sender, language=conv.language, context=conv.context)
    entry = HistoryEntry(actor=f"citizen:{conv.channel}:{conv.sender}", role=CITIZEN, action="duplicate_linked",
                         reason=f"phản ánh trùng {candidate.id}, độ tương đồng {candidate.similarity:.2f}", at=at)
    await store.reflections.link_candidate(existing.code, subscriber, candidate, entry)
    return candidate


async def handle_possible_duplicate(store: Store, policy: Policy, texts: Texts, conv: Conversation,
                                    at: datetime) -> Diverted | None:
    """Called by the intake before filing a confirmed draft; None means: file it as usual."""
    d = conv.draft
    field, _ = classify(d.content or "", policy.field_keywords())
    existing = await find_duplicate(store, policy, field=field, content=d.content or "", location=d.location, now=at)
    if existing is None:
        return None
    candidate = await link_duplicate(store, existing, conv, at)
    text = texts.render("duplicate", conv.language, code=existing.code, status=existing.status,
                        agency=_agency_name(policy, existing.agency))
    return Diverted(existing, candidate, Outbound(text=text, context=conv.context, kind="reply"))


async def confirm_duplicate(store: Store, existing: Reflection, candidate_id: str, actor: Actor,
                            at: datetime) -> None:
    """IOC staff agree the report repeats `existing`: the citizen stays subscribed to it."""
    entry = _staff_entry(actor, "duplicate_confirmed", f"xác nhận trùng {candidate_id}", at)
    if not await store.reflections.decide_candidate(existing.code, candidate_id, "confirmed", entry):
        raise DuplicateError(f"{existing.code}: no undecided duplicate {candidate_id}")


async def split_duplicate(store: Store, desk: CaseDesk, texts: Texts, existing: Reflection, candidate_id: str,
                          actor: Actor, at: datetime) -> tuple[Reflection, Delivery]:
    """IOC staff find a different matter: file it as its own case and tell the citizen its code.

    Call inside `unit_of_work`: a candidate decided meanwhile raises and undoes the new case.
    """
    entry = _staff_entry(actor, "duplicate_split", f"tách {candidate_id}", at)
    candidate = next((c for c in existing.duplicate_candidates if c.id == candidate_id), None)
    if candidate is None or candidate.status != "candidate":
        raise DuplicateError(f"{existing.code}: no undecided duplicate {candidate_id}")
    conv = Conversation(_id=conversation_id(candidate.channel, candidate.sender), channel=candidate.channel,
                        sender=candidate.sender, language=candidate.language, draft=candidate.draft,
                        context=candidate.context)
    new = await desk.file(store, conv, at)
    original = (candidate.channel, candidate.sender) == (existing.channel, existing.sender)
    unsubscribe = None if original else Subscriber(channel=candidate.channel, address=candidate.sender)
    entry = entry.model_copy(update={"reason": f"tách {candidate_id} thành {new.code}"})
    if not await store.reflections.decide_candidate(existing.code, candidate_id, "split", entry,
                                                    split_code=new.code, unsubscribe=unsubscribe):
        raise DuplicateError(f"{existing.code}: duplicate {candidate_id} was decided meanwhile")
    text = texts.render("duplicate_split", candidate.language, old_code=existing.code, code=new.code,
                        processing_time=desk.policy.processing_time_text, days=desk.handling_days())
    return new, Delivery(candidate.channel, candidate.sender, Outbound(text=text, context=candidate.context))


def _staff_entry(actor: Actor, action: str, reason: str, at: datetime) -> HistoryEntry:
    if actor.role not in IOC:
        raise DuplicateError(f"{actor.role} may not decide on duplicates")
    return HistoryEntry(actor=actor.id, role=actor.role, action=action, reason=reason, at=at)


def _agency_name(policy: Policy, agency_id: str | None) -> str:
    try:
        return policy.agency(agency_id).name if agency_id else ""
    except KeyError:
        return agency_id or ""
