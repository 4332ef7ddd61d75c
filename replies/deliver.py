"""The result to the citizen, in the Phụ lục 2 form, and what the citizen says back.

`replies.approval` calls `publish` once a result is approved: every subscriber of the case
(the reporter and citizens linked as duplicates) gets the result on their own channel through
the outbox, with the rating question (001 Đ11); what the citizen says back is read by
`replies.feedback`. The outbox worker calls `fall_back` (through
`AgencyLoop.on_window_closed`) when a platform's messaging window has closed.
"""
from __future__ import annotations

from datetime import datetime

from cases.lifecycle import SYSTEM, Actor, note, transition
from normalizer.messages import Button, Outbound
from replies.loop import EMAIL, Loop
from store.conversations import conversation_id
from store.media import MediaStore
from store.models import Conversation, OutboxItem, Person, Reflection, Subscriber
from store.outbox_keys import Kind, OutboxKey, outbox_key
from store.repos import Store

PUBLISHER = Actor("system:publish", SYSTEM)
RATINGS = ("satisfied", "acceptable", "not_satisfied")


async def publish(store: Store, loop: Loop, case: Reflection, now: datetime,
                  actor: Actor = PUBLISHER) -> Reflection:
    """Approved → published: queue the result for every subscriber and await their rating.

    `actor` is the staff member when the IOC publishes an approved result from the console."""
    moved = await transition(store, case, "published", actor, at=now, reason="result sent to the citizen",
                             changes={"publishable": not case.confidential, "published_at": now})
    round_no = sum(1 for h in moved.history if h.to_status == "published")
    images = await _images(store, moved.result_attachments)
    for sub in moved.subscribers:
        message = result_message(loop, moved, sub, images)
        await store.outbox.enqueue(outbox_key(Kind.RESULT, moved.code, round_no, sub.channel, sub.address),
                                   sub.channel, sub.address, message)
        await _await_rating(store, moved, sub)
    return moved


def result_message(loop: Loop, case: Reflection, sub: Subscriber, images: list[str]) -> Outbound:
    """Phụ lục 2 text, then the rating question with its three answers."""
    person = contact_of(case, sub.channel, sub.address)
    attachments = case.result_attachments if sub.channel == EMAIL else images
    result = loop.render("result", sub.language, agency=case.result_agency or case.agency,
                         citizen_name=person.name or "", summary=case.result or "", attachments=len(attachments))
    question = loop.render("rating_request", sub.language, code=case.code)
    buttons = [Button(label=label, action=label.lower())
               for label in (loop.render("rating_label", sub.language, key=k) for k in RATINGS)]
    return Outbound(text=f"{result}\n\n{question}", photos=attachments, buttons=buttons,
                    context=dict(sub.context), kind="result")


def contact_of(case: Reflection, channel: str, address: str) -> Person:
    """Name, phone and e-mail of a subscriber: the reporter, or a citizen linked as duplicate."""
    if (channel, address) == (case.channel, case.sender):
        return case.citizen
    for c in case.duplicate_candidates:
        if (c.channel, c.sender) == (channel, address):
            return Person(name=c.draft.name, phone=c.draft.phone, email=c.draft.email)
    return Person()


async def _images(store: Store, file_ids: list[str]) -> list[str]:
    """Chat platforms take pictures only; documents go by e-mail."""
    media, images = MediaStore(store.database), []
    for file_id in file_ids:
        try:
            if str((await media.info(file_id)).get("content_type", "")).startswith("image/"):
                images.append(file_id)
        except KeyError:
            continue
    return images


async def _await_rating(store: Store, case: Reflection, sub: Subscriber) -> None:
    conv = await store.conversations.get(sub.channel, sub.address) or Conversation(
        _id=conversation_id(sub.channel, sub.address), channel=sub.channel, sender=sub.address,
        stage="rating", language=sub.language, context=dict(sub.context))
    conv.rating_for = case.code
    await store.conversations.save(conv)


async def fall_back(store: Store, loop: Loop, item: OutboxItem, email_enabled: bool) -> str | None:
    """A result the platform refused (window closed): by e-mail if we know one, else SMS export.

    Returns the route used ("email" / "sms") and records it on the case.
    """
    key = OutboxKey.parse(item.id)
    if key is None or key.kind is not Kind.RESULT or key.case_code is None:
        return None
    case = await store.reflections.get(key.case_code)
    if case is None:
        return None
    person = contact_of(case, item.channel, item.address)
    actor = Actor("system:deliver", SYSTEM)
    if email_enabled and person.email and item.channel != EMAIL:
        subject = loop.subject("result", case)
        message = item.message.model_copy(update={"context": {"subject": subject}, "buttons": []})
        await store.outbox.enqueue(f"fallback:{item.id}", EMAIL, person.email, message)
        await note(store, case, actor, "result_fallback",
                   f"{item.channel} window closed; sent by e-mail to {person.email}")
        return "email"
    await note(store, case, actor, "result_fallback",
               f"{item.channel} window closed; SMS to {person.phone or 'unknown'}: {item.message.text}")
    return "sms"
