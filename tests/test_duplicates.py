"""Duplicate reports: linked to the open case nearby instead of opening a second one."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from cases.duplicates import DuplicateError, confirm_duplicate, handle_possible_duplicate, similarity, split_duplicate
from cases.filing import CaseDesk
from cases.lifecycle import CITIZEN, OPERATOR, SYSTEM, Actor, transition
from cases.policy import load_policy
from normalizer.texts import Texts
from store.models import Conversation, Draft, Place, Reflection
from store.repos import Store, unit_of_work
from tests.chat import stored_case

QN = load_policy(Path(__file__).resolve().parent.parent / "policies" / "quang_nam.yaml")
TEXTS = Texts()
DESK = CaseDesk(QN)
LAT, LON = 16.0678, 108.2208  # Đà Nẵng
M_PER_DEG_LAT = 111_320
T0 = datetime(2026, 11, 23, 2, 0, tzinfo=timezone.utc)
STAFF = Actor("staff:ioc-1", OPERATOR)
POTHOLE = "Ổ gà lớn giữa đường Hùng Vương, xe máy dễ bị ngã"


def conv(sender: str, content: str, metres_north: float = 0, language: str = "vi") -> Conversation:
    place = Place(lat=LAT + metres_north / M_PER_DEG_LAT, lon=LON, address="Hùng Vương, Hải Châu")
    return Conversation(_id=f"telegram:{sender}", channel="telegram", sender=sender, language=language,
                        draft=Draft(name="Trần Thị Bình", phone=f"+8491234{sender:0>4}", content=content,
                                    location=place))


async def existing_case(database) -> Reflection:
    return await DESK.file(Store(database), conv("1", POTHOLE), T0)


async def report_again(database, c: Conversation, at: datetime = T0 + timedelta(hours=3)):
    async with unit_of_work(database) as store:  # as in the intake's turn
        return await handle_possible_duplicate(store, QN, TEXTS, c, at)


async def test_report_30_m_away_is_linked_and_the_citizen_told_the_existing_code(database):
    first = await existing_case(database)
    diverted = await report_again(database, conv("2", "đường Hùng Vương có ổ gà rất lớn", metres_north=30))
    assert diverted is not None and diverted.existing.code == first.code
    text = diverted.message.text
    assert f"mã số {first.code}" in text and "sẽ nhận được kết quả xử lý" in text
    case = await stored_case(Store(database), first.code)
    assert [(s.channel, s.address) for s in case.subscribers] == [("telegram", "1"), ("telegram", "2")]
    assert [c.status for c in case.duplicate_candidates] == ["candidate"]
    assert case.history[-1].action == "duplicate_linked" and case.history[-1].actor == "citizen:telegram:2"
    assert len(await Store(database).reflections.all()) == 1  # no second case


async def test_report_without_diacritics_matches_and_english_speaker_is_answered_in_english(database):
    first = await existing_case(database)
    diverted = await report_again(database, conv("3", "o ga lon giua duong Hung Vuong", 10, language="en"))
    assert diverted is not None
    assert f"reference {first.code}" in diverted.message.text and "receive the result" in diverted.message.text


@pytest.mark.parametrize("content, metres, hours_later", [
    ("đường Hùng Vương có ổ gà rất lớn", 80, 3),  # beyond the 50 m radius
    ("Dây điện võng thấp sát đầu người trên đường Hùng Vương", 10, 3),  # another field
    ("Đèn giao thông ở ngã tư bị hỏng, xe cộ lộn xộn", 10, 3),  # same field, another matter
    ("đường Hùng Vương có ổ gà rất lớn", 10, 73),  # outside the 72 h window
])
async def test_not_a_duplicate(database, content, metres, hours_later):
    await existing_case(database)
    assert await report_again(database, conv("2", content, metres), T0 + timedelta(hours=hours_later)) is None


async def test_closed_case_is_not_a_duplicate_target(database):
    first = await existing_case(database)
    store = Store(database)
    case = first
    for to in ("forwarded", "result_submitted", "approved", "published", "closed"):
        case = await transition(store, case, to, Actor("system:test", SYSTEM), at=T0)
    assert await report_again(database, conv("2", "đường Hùng Vương có ổ gà rất lớn", 30)) is None


async def test_same_citizen_reporting_twice_is_subscribed_once(database):
    first = await existing_case(database)
    await report_again(database, conv("1", POTHOLE, 5))
    case = await stored_case(Store(database), first.code)
    assert len(case.subscribers) == 1 and len(case.duplicate_candidates) == 1


async def test_staff_confirm_keeps_the_citizen_on_the_existing_case(database):
    first = await existing_case(database)
    diverted = await report_again(database, conv("2", "đường Hùng Vương có ổ gà rất lớn", 30))
    case = await stored_case(Store(database), first.code)
    with pytest.raises(DuplicateError):
        await confirm_duplicate(Store(database), case, diverted.candidate.id, Actor("citizen:x", CITIZEN), T0)
    await confirm_duplicate(Store(database), case, diverted.candidate.id, STAFF, T0 + timedelta(hours=4))
    case = await stored_case(Store(database), first.code)
    assert case.duplicate_candidates[0].status == "confirmed" and len(case.subscribers) == 2
    assert (case.history[-1].action, case.history[-1].actor) == ("duplicate_confirmed", "staff:ioc-1")
    with pytest.raises(DuplicateError):
        await confirm_duplicate(Store(database), case, diverted.candidate.id, STAFF, T0)


async def test_staff_split_files_a_new_case_and_tells_the_citizen_its_code(database):
    first = await existing_case(database)
    diverted = await report_again(database, conv("2", "đường Hùng Vương có ổ gà rất lớn", 30))
    async with unit_of_work(database) as store:
        case = await stored_case(store, first.code)
        new, delivery = await split_duplicate(store, DESK, TEXTS, case, diverted.candidate.id, STAFF,
                                              T0 + timedelta(hours=4))
    assert new.code != first.code and new.sender == "2" and new.content == "đường Hùng Vương có ổ gà rất lớn"
    assert (delivery.channel, delivery.address) == ("telegram", "2")
    assert first.code in delivery.message.text and f"mã số {new.code}" in delivery.message.text
    old = await stored_case(Store(database), first.code)
    assert [s.address for s in old.subscribers] == ["1"]
    assert (old.duplicate_candidates[0].status, old.duplicate_candidates[0].split_code) == ("split", new.code)
    assert old.history[-1].action == "duplicate_split" and new.code in (old.history[-1].reason or "")


def test_similarity_folds_accents_and_tells_matters_apart():
    assert similarity("Ổ gà lớn", "O GA LON") == 1.0
    assert similarity("Ổ gà lớn", "Đèn đỏ hỏng") == 0.0
    assert similarity(POTHOLE, "Đèn giao thông ở ngã tư bị hỏng, xe cộ lộn xộn") < 0.35
