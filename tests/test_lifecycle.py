"""Lifecycle rules: who may move a case where, one winner under contention, the audit trail."""
from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from cases.calendar import WorkingCalendar
from cases.lifecycle import (
    CITIZEN,
    LEADER,
    OFFICER,
    OPERATOR,
    SYSTEM,
    Actor,
    TransitionError,
    set_hidden,
    transition,
    transitioned,
)
from cases.policy import load_policy
from cases.sla import SlaSettings, sla_pass
from normalizer.texts import Texts
from store.models import Reflection
from store.repos import Store
from tests.chat import stored_case

BP = load_policy(Path(__file__).resolve().parent.parent / "policies" / "binh_phuoc_1022.yaml")
T0 = datetime(2026, 11, 23, 2, 0, tzinfo=timezone.utc)  # Monday 09:00 in Việt Nam
ROBOT = Actor("system:routing", SYSTEM)
OPERATOR_A = Actor("staff:ioc-1", OPERATOR)
OFFICER_A = Actor("staff:officer-1", OFFICER)
LEADER_A = Actor("staff:leader-1", LEADER)


async def new_case(database, status_path: tuple[str, ...] = ()) -> Reflection:
    store = Store(database)
    r = Reflection(code="PA-2026-000001", channel="zalo", sender="u1", content="Ổ gà giữa đường",
                   field="transport", agency="so_xay_dung", created_at=T0, entered_at={"received": T0})
    await store.reflections.insert(r)
    for to in status_path:
        r = await transition(store, r, to, ROBOT, at=T0)
    return r


@pytest.mark.parametrize("path, to, actor", [
    ((), "published", OPERATOR_A),  # skipping the agency altogether
    (("classified",), "forwarded", OFFICER_A),  # only the IOC forwards
    (("classified", "forwarded", "result_submitted"), "approved", OFFICER_A),  # officers don't approve
    (("classified", "forwarded"), "closed", Actor("citizen:zalo:u1", CITIZEN)),
])
async def test_forbidden_move_raises_and_changes_nothing(database, path, to, actor):
    case = await new_case(database, path)
    with pytest.raises(TransitionError, match=f"may not move {case.code}"):
        await transition(Store(database), case, to, actor)
    stored = await stored_case(Store(database), case.code)
    assert stored.status == case.status and stored.version == case.version


async def test_two_concurrent_transitions_exactly_one_wins(database):
    case = await new_case(database, ("classified", "forwarded"))
    results = await asyncio.gather(
        transition(Store(database), case, "in_progress", OFFICER_A, reason="đang xử lý"),
        transition(Store(database), case, "returned", OPERATOR_A, reason="sai thẩm quyền"),
        return_exceptions=True)
    winners = [r for r in results if isinstance(r, Reflection)]
    losers = [r for r in results if isinstance(r, TransitionError)]
    assert len(winners) == 1 and len(losers) == 1 and "changed by someone else" in str(losers[0])
    stored = await stored_case(Store(database), case.code)
    assert stored.status == winners[0].status and stored.version == case.version + 1
    assert [h.to_status for h in stored.history].count(winners[0].status) == 1


async def test_every_transition_leaves_actor_from_to_reason_and_time(database):
    case = await new_case(database)
    store = Store(database)
    steps = [("classified", ROBOT, "theo lĩnh vực: transport"), ("forwarded", OPERATOR_A, None),
             ("in_progress", OFFICER_A, "đã cử cán bộ kiểm tra"), ("result_submitted", OFFICER_A, "đã vá"),
             ("in_progress", LEADER_A, "bổ sung ảnh sau khi vá")]
    for n, (to, actor, reason) in enumerate(steps, start=1):
        case = await transition(store, case, to, actor, reason=reason, at=T0 + timedelta(hours=n))
    trail = [(h.actor, h.role, h.from_status, h.to_status, h.reason, h.at) for h in case.history]
    assert trail == [
        ("system:routing", SYSTEM, "received", "classified", "theo lĩnh vực: transport", T0 + timedelta(hours=1)),
        ("staff:ioc-1", OPERATOR, "classified", "forwarded", None, T0 + timedelta(hours=2)),
        ("staff:officer-1", OFFICER, "forwarded", "in_progress", "đã cử cán bộ kiểm tra", T0 + timedelta(hours=3)),
        ("staff:officer-1", OFFICER, "in_progress", "result_submitted", "đã vá", T0 + timedelta(hours=4)),
        ("staff:leader-1", LEADER, "result_submitted", "in_progress", "bổ sung ảnh sau khi vá",
         T0 + timedelta(hours=5)),
    ]


async def test_starting_work_keeps_the_clock_a_send_back_restarts_it(database):
    case = await new_case(database, ("classified", "forwarded"))
    store = Store(database)
    case = await transition(store, case, "in_progress", OFFICER_A, at=T0 + timedelta(hours=1))
    assert case.sla_since == T0
    case = await transition(store, case, "result_submitted", OFFICER_A, at=T0 + timedelta(hours=2))
    case = await transition(store, case, "in_progress", LEADER_A, at=T0 + timedelta(hours=3))
    assert case.sla_since == T0 + timedelta(hours=3) and case.next_due == T0 + timedelta(hours=3)


async def test_hiding_keeps_deadlines_and_reminders(database):
    await new_case(database, ("classified", "forwarded"))
    calendar, texts = WorkingCalendar.from_policy(BP), Texts()
    await sla_pass(database, BP, calendar, texts, T0, SlaSettings())
    store = Store(database)
    stamped = await stored_case(store, "PA-2026-000001")
    hidden = await set_hidden(store, stamped, True, OPERATOR_A, reason="ngôn từ xúc phạm")
    assert hidden.hidden and hidden.deadlines == stamped.deadlines and hidden.deadlines
    with pytest.raises(TransitionError):
        await set_hidden(store, hidden, False, OFFICER_A, reason="")
    await sla_pass(database, BP, calendar, texts, stamped.deadlines["focal_answer"], SlaSettings())
    addresses = [i.address for i in await store.outbox.all()]
    assert addresses == ["xaydung@example.gov.vn", "giamdoc.xaydung@example.gov.vn"]  # still supervised
    assert (await stored_case(store, "PA-2026-000001")).history[2].action == "hide"


async def test_a_move_made_before_the_insert_stores_what_the_same_move_after_it_would(database):
    """Filing routes a new case in memory (`transitioned`) and inserts it once: the stored case
    is the one a stored case moved by `transition` becomes, history and SLA clock included."""
    store = Store(database)
    fresh = Reflection(code="PA-2026-000002", channel="zalo", sender="u1", content="Ổ gà giữa đường",
                       field="transport", created_at=T0, entered_at={"received": T0})
    await store.reflections.insert(fresh)
    moved = await transition(store, fresh, "classified", ROBOT, reason="theo lĩnh vực", at=T0,
                             changes={"agency": "so_xay_dung"})
    routed = transitioned(fresh.model_copy(update={"code": "PA-2026-000003"}), "classified", ROBOT,
                          reason="theo lĩnh vực", at=T0, changes={"agency": "so_xay_dung"})
    await store.reflections.insert(routed)
    stored = await store.reflections.get("PA-2026-000003")
    assert stored == routed
    assert stored.model_dump(exclude={"code", "id"}) == moved.model_dump(exclude={"code", "id"})
    assert [(h.actor, h.from_status, h.to_status) for h in stored.history] == [
        ("system:routing", "received", "classified")]
    assert stored.version == 1 and stored.sla_since == T0 and stored.entered_at["classified"] == T0
    with pytest.raises(TransitionError):
        transitioned(fresh, "published", OPERATOR_A)
