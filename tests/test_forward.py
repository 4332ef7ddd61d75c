"""Forwarding and delivery rules on the embedded database, without the mail servers.

What the agency reads for a confidential case, what citizens linked as duplicates receive,
an unhappy citizen reopening the case to the agency, agencies that need no leader approval,
and the fallback when a platform's messaging window has closed.
"""
from __future__ import annotations

from datetime import UTC, datetime

from cases.lifecycle import LEADER, OFFICER, SYSTEM, Actor, transition
from normalizer.messages import Inbound, Outbound
from normalizer.signals import parse_command
from normalizer.texts import Texts
from replies import approval
from replies.deliver import fall_back
from replies.feedback import citizen_feedback
from replies.forward import forward_pending
from replies.loop import Loop
from replies.tokens import Tokens
from store.models import (
    Draft,
    DuplicateCandidate,
    HistoryEntry,
    Person,
    Place,
    Reflection,
    Subscriber,
)
from store.repos import Store
from tests.chat import quang_nam, stored_case

NOW = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)  # Tuesday 09:00 in Vietnam
OFFICER_A = Actor("agency:xaydung@example.gov.vn", OFFICER)
LEADER_A = Actor("agency:giamdoc.xaydung@example.gov.vn", LEADER)


def make_loop(**policy_changes) -> Loop:
    policy = quang_nam()
    if policy_changes:
        gaz = policy.gazetteer
        policy = policy.model_copy(update=policy_changes)
        policy._gazetteer = gaz
    return Loop(policy, Texts(), Tokens("secret", "phananh@ioc.example.vn"), "ioc@ioc.example.vn")


async def routed_case(store: Store, *, confidential: bool = False, email: str | None = None,
                      subscribers: list[Subscriber] | None = None,
                      candidates: list[DuplicateCandidate] | None = None) -> Reflection:
    case = Reflection(
        code="PA-2026-000007", channel="zalo", sender="u1", content="Ổ gà lớn trước số 12 Hùng Vương",
        citizen=Person(name="Nguyễn Văn An", phone="+84912345678", email=email),
        location=Place(address="12 Hùng Vương", commune="Phường Hải Châu"), field="transport",
        agency="so_xay_dung", confidential=confidential, created_at=NOW, updated_at=NOW,
        subscribers=subscribers or [Subscriber(channel="zalo", address="u1")],
        duplicate_candidates=candidates or [],
        history=[HistoryEntry(actor="citizen:zalo:u1", role="citizen", action="filed", to_status="received", at=NOW)])
    await store.reflections.insert(case)
    return await transition(store, case, "classified", Actor("system:routing", SYSTEM), at=NOW)


async def outbox(store: Store, prefix: str) -> list:
    return [i for i in await store.outbox.all() if i.id.startswith(prefix)]


async def published(store: Store, loop: Loop, **kw) -> Reflection:
    await routed_case(store, **kw)
    assert await forward_pending(store, loop, NOW) == 1
    case = await stored_case(store, "PA-2026-000007")
    await approval.submit_result(store, loop, case, "Đã vá ổ gà.", [], OFFICER_A, NOW)
    return await approval.approve(store, loop, "PA-2026-000007", LEADER_A, NOW)


async def test_confidential_case_reaches_the_agency_without_name_or_phone_and_is_never_public(database):
    store, loop = Store(database), make_loop()
    await published(store, loop, confidential=True)
    [forward] = await outbox(store, "fwd:")
    assert "Nguyễn Văn An" not in forward.message.text and "0912 345 678" not in forward.message.text
    assert "giữ bí mật thông tin cá nhân" in forward.message.text
    raw = await database.db.reflections.find_one({"code": "PA-2026-000007"})
    assert raw["status"] == "published" and raw["publishable"] is False


async def test_policy_may_hand_a_confidential_contact_to_the_agency(database):
    store = Store(database)
    await routed_case(store, confidential=True)
    await forward_pending(store, make_loop(share_contact_with_agency=True), NOW)
    [forward] = await outbox(store, "fwd:")
    assert "Nguyễn Văn An, điện thoại 0912 345 678" in forward.message.text


async def test_citizens_linked_as_duplicates_receive_the_same_result_in_their_language(database):
    store, loop = Store(database), make_loop()
    anna = DuplicateCandidate(id="d1", channel="telegram", sender="77", language="en",
                              draft=Draft(name="Anna Schmidt", phone="+84905123456"), similarity=0.9)
    subs = [Subscriber(channel="zalo", address="u1"), Subscriber(channel="telegram", address="77", language="en")]
    await published(store, loop, subscribers=subs, candidates=[anna])
    results = {i.channel: i.message.text for i in await outbox(store, "result:")}
    assert results["zalo"].startswith("Sở Xây dựng\nKính chào: Ông/Bà Nguyễn Văn An\n")
    assert results["telegram"].startswith("Sở Xây dựng\nDear Mr/Ms Anna Schmidt,\n")
    assert "Đã vá ổ gà." in results["telegram"] and "Satisfied / Acceptable / Not satisfied" in results["telegram"]


async def test_not_satisfied_reopens_the_case_to_the_agency_with_the_citizens_words(database):
    store, loop = Store(database), make_loop()
    await published(store, loop)
    conv = await store.conversations.get("zalo", "u1")
    assert conv is not None and conv.rating_for == "PA-2026-000007"
    words = "Không hài lòng, ổ gà vẫn còn"
    inbound = Inbound(channel="zalo", sender="u1", message_id="m9", text=words)
    answer = await citizen_feedback(store, loop.texts, conv, inbound, parse_command(words))
    assert answer is not None and "đã được chuyển lại cơ quan xử lý" in answer
    reopened = await stored_case(store, "PA-2026-000007")
    assert reopened.status == "reopened" and reopened.rating == "not_satisfied"
    assert await forward_pending(store, loop, NOW) == 1
    [_, second] = await outbox(store, "fwd:")
    assert second.id == "fwd:PA-2026-000007:2" and words in second.message.text
    assert "(chuyển lần 2)" in second.message.text


async def test_agency_without_leader_approval_goes_straight_to_the_citizen(database):
    loop = make_loop()
    no_leader = [a.model_copy(update={"requires_leader_approval": False}) if a.id == "so_xay_dung" else a
                 for a in loop.policy.agencies]
    loop = make_loop(agencies=no_leader)
    store = Store(database)
    await routed_case(store)
    await forward_pending(store, loop, NOW)
    case = await stored_case(store, "PA-2026-000007")
    await approval.submit_result(store, loop, case, "Đã vá ổ gà.", [], OFFICER_A, NOW)
    assert (await stored_case(store, "PA-2026-000007")).status == "published"
    assert await outbox(store, "apr:") == [] and len(await outbox(store, "result:")) == 1


async def test_closed_window_falls_back_to_email_else_sms_and_records_which(database):
    store, loop = Store(database), make_loop()
    await published(store, loop, email="an@example.com")
    [item] = await outbox(store, "result:")
    assert await fall_back(store, loop, item, email_enabled=True) == "email"
    [mail] = await outbox(store, "fallback:")
    assert mail.channel == "email" and mail.address == "an@example.com" and "Đã vá ổ gà." in mail.message.text
    assert await fall_back(store, loop, item, email_enabled=False) == "sms"
    history = (await stored_case(store, "PA-2026-000007")).history
    notes = [h.reason or "" for h in history if h.action == "result_fallback"]
    assert "sent by e-mail to an@example.com" in notes[0] and "SMS to +84912345678" in notes[1]
    assert await fall_back(store, loop, item.model_copy(update={"id": "in:x:0", "message": Outbound(text="hi")}),
                           email_enabled=True) is None
