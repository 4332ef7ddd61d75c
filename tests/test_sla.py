"""SLA scheduler: each shipped policy driven end to end with a set clock (no waiting, no wall time)."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

from cases.calendar import WorkingCalendar
from cases.filing import CaseDesk
from cases.lifecycle import LEADER, OFFICER, OPEN_STATES, SYSTEM, Actor, transition
from cases.policy import Policy, load_policy
from cases.sla import SlaSettings, sla_pass
from normalizer.texts import Texts
from store.database import connect
from store.models import Conversation, Draft, HistoryEntry, Place, Reflection, Subscriber
from store.repos import Store

POLICIES = Path(__file__).resolve().parent.parent / "policies"
QN = load_policy(POLICIES / "quang_nam.yaml")
BP = load_policy(POLICIES / "binh_phuoc_1022.yaml")
DB = load_policy(POLICIES / "dien_bien.yaml")
VN = ZoneInfo("Asia/Ho_Chi_Minh")
TEXTS = Texts()
SETTINGS = SlaSettings(warn_before_hours=2, ioc_email="ioc@example.gov.vn")
ROBOT = Actor("system:test", SYSTEM)
OFFICER_A = Actor("staff:officer-1", OFFICER)
LEADER_A = Actor("staff:leader-1", LEADER)


def vn(day: int, hour: int, minute: int = 0, month: int = 11) -> datetime:
    """A Vietnamese wall-clock time in 2026 (23/11 is a Monday), as UTC."""
    return datetime(2026, month, day, hour, minute, tzinfo=VN).astimezone(timezone.utc)


async def run(database, policy: Policy, now: datetime, settings: SlaSettings = SETTINGS):
    return await sla_pass(database, policy, WorkingCalendar.from_policy(policy), TEXTS, now, settings)


async def sent(database) -> list[tuple[str, str, str]]:
    """(channel, address, first line) of everything queued so far."""
    return [(i.channel, i.address, i.message.text) for i in await Store(database).outbox.all()]


async def forwarded_case(database, agency: str, at: datetime, subscribers: list[Subscriber] | None = None,
                         code: str = "PA-2026-000001") -> Reflection:
    """A case filed and forwarded to `agency` at `at`, as the IOC would."""
    store = Store(database)
    r = Reflection(code=code, channel="telegram", sender="42", content="Ổ gà lớn giữa đường Hùng Vương",
                   field="transport", agency=agency, created_at=at, updated_at=at, entered_at={"received": at},
                   subscribers=subscribers or [Subscriber(channel="telegram", address="42")],
                   history=[HistoryEntry(actor="citizen:telegram:42", role="citizen", action="filed",
                                         to_status="received", at=at)])
    await store.reflections.insert(r)
    r = await transition(store, r, "classified", ROBOT, at=at)
    return await transition(store, r, "forwarded", ROBOT, at=at)


async def load(database, code: str = "PA-2026-000001") -> Reflection:
    found = await Store(database).reflections.get(code)
    assert found is not None
    return found


def actions(r: Reflection) -> list[str]:
    return [h.action for h in r.history if h.actor == "system:sla"]


async def test_quang_nam_reminds_focal_escalates_to_head_then_late(database, db_server):
    desk = CaseDesk(QN)
    conv = Conversation(_id="telegram:42", channel="telegram", sender="42", draft=Draft(
        name="Nguyễn Văn An", phone="+84912345678", content="Ổ gà lớn giữa đường, xe máy dễ bị ngã",
        location=Place(lat=16.07, lon=108.22, address="12 Hùng Vương", commune_code="20194")))
    filed = await desk.file(Store(database), conv, vn(23, 7, 30))
    assert filed.agency == "so_xay_dung"
    await transition(Store(database), filed, "forwarded", ROBOT, at=vn(23, 8))
    await run(database, QN, vn(23, 8))
    # 6 working days of 8 h (07–11, 13–17) for the agency, then 1 day for its head to approve.
    assert (await load(database, filed.code)).deadlines == {"handle": vn(1, 8, month=12), "approve": vn(2, 8, month=12)}

    await run(database, QN, vn(30, 15, 59))
    assert await sent(database) == []
    await run(database, QN, vn(30, 16))  # two working hours before the handling deadline
    [(channel, address, text)] = await sent(database)
    assert (channel, address) == ("email", "xaydung@example.gov.vn")
    assert filed.code in text and "sắp đến hạn" in text and "08:00 01/12/2026" in text

    await run(database, QN, vn(1, 8, month=12))
    assert [a for _, a, _ in await sent(database)][1:] == ["giamdoc.xaydung@example.gov.vn"]
    report = await run(database, QN, vn(2, 8, month=12))
    assert report.late == [filed.code]
    assert [a for _, a, _ in await sent(database)][2:] == ["ioc@example.gov.vn"]
    case = await load(database, filed.code)
    assert case.late and case.late_at == vn(2, 8, month=12) and case.status == "forwarded"
    assert actions(case) == ["due_soon", "escalated", "late"]
    assert [c.code for c in await Store(database).reflections.late_open(OPEN_STATES)] == [filed.code]


async def test_binh_phuoc_focal_8_hours_then_head_48_more_then_late(database):
    case = await forwarded_case(database, "so_xay_dung", vn(23, 9))  # Monday 09:00
    await run(database, BP, vn(23, 9))
    await run(database, BP, vn(23, 16, 59))
    assert await sent(database) == []
    await run(database, BP, vn(23, 17))  # 6 of the focal officer's 8 working hours are gone
    assert [a for _, a, _ in await sent(database)] == ["xaydung@example.gov.vn"]

    progress = await transition(Store(database), await load(database), "in_progress", OFFICER_A, at=vn(24, 8))
    assert progress.sla_since == case.sla_since  # starting work does not restart the clock
    await run(database, BP, vn(24, 8, 59))
    assert len(await sent(database)) == 1
    await run(database, BP, vn(24, 9))  # 8 working hours after forwarding: to the head
    _, address, text = (await sent(database))[1]
    assert address == "giamdoc.xaydung@example.gov.vn" and "chuyển lên" in text

    await run(database, BP, vn(2, 8, 59, month=12))
    assert not (await load(database)).late
    report = await run(database, BP, vn(2, 9, month=12))  # 48 more working hours
    assert report.late == [case.code]
    late = await load(database)
    assert late.late and late.status == "in_progress" and actions(late) == ["due_soon", "escalated", "late"]
    assert "TRỄ HẠN" in (await sent(database))[2][2]


async def test_binh_phuoc_answered_in_time_is_never_escalated(database):
    await forwarded_case(database, "so_xay_dung", vn(23, 9))
    for at in (vn(23, 9), vn(23, 17)):
        await run(database, BP, at)
    store = Store(database)
    for to, actor, at in (("result_submitted", OFFICER_A, vn(24, 8)), ("approved", LEADER_A, vn(24, 10)),
                          ("published", ROBOT, vn(24, 10, 30))):
        await transition(store, await load(database), to, actor, at=at)
    for day in (24, 25, 26, 30):
        await run(database, BP, vn(day, 16))
    # Only the focal officer's reminder of Monday: no escalation to the head, never late.
    assert [a for _, a, _ in await sent(database)] == ["xaydung@example.gov.vn"]
    case = await load(database)
    assert not case.late and actions(case) == ["due_soon"]


async def test_second_pass_and_restart_never_send_twice(database, db_server):
    await forwarded_case(database, "so_xay_dung", vn(23, 9))
    for at in (vn(23, 9), vn(23, 17), vn(23, 17), vn(24, 9)):
        await run(database, BP, at)
    assert len(await sent(database)) == 2
    restarted = await connect(db_server.uri, database.db.name)
    try:
        report = await run(restarted, BP, vn(24, 9, 30))
        assert report.queued == [] and len(await sent(restarted)) == 2
    finally:
        await restarted.close()
    assert actions(await load(database)) == ["due_soon", "escalated"]


async def test_dien_bien_tells_citizens_it_is_still_in_progress_after_6_working_days(database):
    subscribers = [Subscriber(channel="telegram", address="42", language="vi"),
                   Subscriber(channel="email", address="anna@example.com", language="en",
                              context={"subject": "Broken street light"})]
    await forwarded_case(database, "ubnd_03127", vn(23, 9), subscribers)
    await run(database, DB, vn(23, 9))
    await run(database, DB, vn(1, 8, 59, month=12))
    assert [a for _, a, _ in await sent(database)] == ["ubnd-03127@example.gov.vn"]  # focal, 2 h before
    await run(database, DB, vn(1, 9, month=12))  # 6 working days after forwarding
    items = await Store(database).outbox.all()
    notices = {(i.channel, i.address): i for i in items if i.message.kind == "notice"}
    assert notices[("telegram", "42")].message.text.startswith("Phản ánh PA-2026-000001 của Ông/Bà đang được")
    assert "6 ngày làm việc" in notices[("telegram", "42")].message.text
    assert "still being handled" in notices[("email", "anna@example.com")].message.text
    assert notices[("email", "anna@example.com")].message.context == {"subject": "Broken street light"}
    assert "chutich-03127@example.gov.vn" in [i.address for i in items]  # escalated to the chairman
    await run(database, DB, vn(1, 10, month=12))
    assert len(await Store(database).outbox.all()) == len(items)
    await run(database, DB, vn(9, 9, month=12))  # the head's 6 working days are over too
    case = await load(database)
    assert case.late and actions(case) == ["due_soon", "escalated", "progress_notice", "late"]


async def test_unrouted_case_past_classification_is_listed_for_the_ioc(database):
    store = Store(database)
    at = vn(23, 9)
    await store.reflections.insert(Reflection(code="PA-2026-000002", channel="zalo", sender="7", content="Góp ý",
                                              created_at=at, entered_at={"received": at}))
    no_ioc_mail = SlaSettings(warn_before_hours=2)
    await run(database, QN, at, no_ioc_mail)
    assert (await load(database, "PA-2026-000002")).deadlines == {"classify": vn(23, 11)}
    assert (await run(database, QN, vn(23, 10, 59), no_ioc_mail)).late == []
    report = await run(database, QN, vn(23, 13), no_ioc_mail)  # lunch break is not working time
    assert report.late == ["PA-2026-000002"] and report.for_ioc == ["PA-2026-000002: late classify"]
    assert await sent(database) == []


async def test_closing_a_case_stops_its_reminders(database):
    case = await forwarded_case(database, "so_xay_dung", vn(23, 9))
    await run(database, BP, vn(23, 9))
    store = Store(database)
    for to, actor in (("result_submitted", OFFICER_A), ("approved", ROBOT), ("published", ROBOT)):
        case = await transition(store, await load(database), to, actor, at=vn(23, 10))
    assert case.deadlines == {} and case.next_due is None
    await run(database, BP, vn(30, 9))
    assert await sent(database) == [] and not (await load(database)).late

