"""A citizen's answer to the IOC's request for more information (`/ask`, once per case).

`bots.staff_commands.request_info` calls `await_answer` once the request is queued: each
subscriber's conversation remembers the case (`info_for`), as a result awaiting a rating
does. The intake calls `attach_answer` when such a citizen writes with no report in progress:
their words and photos are added to that case (an audit entry and its photos) instead of
starting a new report, and they are told which case received them. One message answers.
"""
from __future__ import annotations

from cases.lifecycle import CITIZEN, OPEN_STATES, TransitionError
from normalizer.messages import Inbound
from normalizer.texts import Texts
from store.conversations import conversation_id
from store.models import Conversation, HistoryEntry, Reflection
from store.repos import Store


async def await_answer(store: Store, reflection: Reflection) -> None:
    """Mark every subscriber's conversation as owing `reflection` an answer."""
    for sub in reflection.subscribers:
        conv = await store.conversations.get(sub.channel, sub.address) or Conversation(
            _id=conversation_id(sub.channel, sub.address), channel=sub.channel, sender=sub.address,
            stage="info", language=sub.language, context=dict(sub.context))
        conv.info_for = reflection.code
        await store.conversations.save(conv)


async def attach_answer(store: Store, texts: Texts, conv: Conversation, inbound: Inbound) -> str | None:
    """Add the message to the case awaiting it and return the acknowledgement; None (read the
    message as usual) when it holds neither text nor photos or the case is no longer open."""
    text, photos = inbound.text.strip(), [p.file_id for p in inbound.photos]
    if not text and not photos:
        return None
    case = await store.reflections.get(conv.info_for or "")
    await _answered(store, conv)
    if case is None or case.status not in OPEN_STATES:
        return None
    entry = HistoryEntry(actor=f"citizen:{inbound.channel}:{inbound.sender}", role=CITIZEN, action="info_added",
                         from_status=case.status, to_status=case.status,
                         reason=text or f"{len(photos)} ảnh", at=inbound.received_at)
    if await store.reflections.amend(case, {"photos": [*case.photos, *photos]}, entry) is None:
        raise TransitionError(f"{case.code} changed meanwhile")  # the pipeline runs the message again
    return texts.render("info_added", conv.language, code=case.code, photos=len(photos), text=bool(text))


async def _answered(store: Store, conv: Conversation) -> None:
    conv.info_for = None
    if conv.stage == "info" and not conv.rating_for:
        await store.conversations.delete(conv.id)
    else:
        await store.conversations.save(conv)
