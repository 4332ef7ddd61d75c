"""What the citizen says back about a published result: a rating or a follow-up.

The intake conversation calls `citizen_feedback` for every message of a citizen whose
conversation awaits a rating (`Conversation.rating_for`, set by `replies.deliver.publish`).
"""
from __future__ import annotations

from cases.lifecycle import CITIZEN, Actor, note, transition
from normalizer.messages import Inbound
from normalizer.signals import Command
from normalizer.texts import Texts
from store.models import Conversation
from store.repos import Store


async def citizen_feedback(store: Store, texts: Texts, conv: Conversation, inbound: Inbound,
                           command: Command | None) -> str | None:
    """A rating, or a follow-up question, on the result awaiting rating; None if neither.

    'Không hài lòng' and follow-up questions reopen the case to the agency with the
    citizen's words (001 Đ11); the other ratings close it.
    """
    rating = command.value if command is not None and command.kind == "rating" else None
    followup = rating is None and command is None and "?" in inbound.text and not conv.draft.content
    case = await store.reflections.get(conv.rating_for or "")
    if case is None or (rating is None and not followup):
        return None
    actor = Actor(f"citizen:{inbound.channel}:{inbound.sender}", CITIZEN)
    words = inbound.text.strip() or (rating or "")
    at = inbound.received_at
    if rating in ("satisfied", "acceptable") and case.status == "published":
        await transition(store, case, "closed", actor, at=at, reason=words, changes={"rating": rating})
    elif case.status in ("published", "closed") and (followup or rating == "not_satisfied"):
        changes = {"rating": rating} if rating else None
        await transition(store, case, "reopened", actor, at=at, reason=words, changes=changes)
    else:
        await note(store, case, actor, "rating", words)
    await _done_rating(store, conv)
    return texts.render("rating_thanks", conv.language, code=case.code, kind=rating or "followup")


async def _done_rating(store: Store, conv: Conversation) -> None:
    conv.rating_for = None
    if conv.stage == "rating":
        await store.conversations.delete(conv.id)
    else:
        await store.conversations.save(conv)
