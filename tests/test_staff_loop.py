"""The staff console working the agency loop: results, approval, return, duplicates, /ask answers.

The real gateway and database; citizens talk on replay channels and every e-mail the gateway
sends lands on the replay e-mail channel, which is what the assertions read. The `scenario_*`
helpers take a front end (`say(member, text) -> reply`); `test_staff_telegram.py` runs the
ones that need no e-mail channel through the Telegram bot too.
"""
from __future__ import annotations

import io

import pytest

from bots.gateway import Gateway
from bots.staff import StaffSetup
from bots.staff_cli import run_cli
from cases.lifecycle import SYSTEM, Actor, transition
from channels.replay import ReplayChannel
from normalizer.messages import utcnow
from normalizer.texts import Texts
from replies.loop import make_loop
from store.repos import Store, unit_of_work
from tests.chat import CHANNELS, IMAGES, Citizen, Clock, quang_nam
from tests.test_staff import POTHOLE, ROSTER, STAFF_CHAT, UNCLEAR, Say, case, citizen_inbox, file_case

FOCAL, HEAD, IOC = "xaydung@example.gov.vn", "giamdoc.xaydung@example.gov.vn", "ioc@ioc.example.vn"
RESULT = "Ngày 25/11/2026 Sở Xây dựng đã vá ổ gà trước số 12 Hùng Vương"
SAME_POTHOLE = "Tôi là Trần Thị Bình, 0987 654 321, ổ gà lớn giữa đường trước số 12 Hùng Vương, phường Hải Châu"
PIN = {"lat": 16.0678, "lon": 108.2208}


def mails(gw: Gateway, to: str) -> list[str]:
    """The e-mails the outbox sent to `to` (subject and text)."""
    replay = gw.channels["email"]
    assert isinstance(replay, ReplayChannel)
    return [f"{m.context.get('subject', '')}\n{m.text}" for address, m in replay.sent if address == to]


async def forwarded(say: Say, gw: Gateway, sender: str) -> str:
    """A pothole case filed by `sender` and forwarded to Sở Xây dựng; its code."""
    r = await file_case(gw, POTHOLE, sender=sender)
    assert "Đã chuyển" in await say("op", f"/forward {r.code}")
    return r.code


# ---- scenarios shared by both front ends ---------------------------------------------------
async def scenario_approve_delivers_the_result(say: Say, gw: Gateway) -> None:
    code = await forwarded(say, gw, "a1")
    assert "chờ lãnh đạo duyệt" in await say("officer", f"/result {code} {RESULT}")
    assert "kết quả đã được gửi cho 1 người phản ánh" in await say("leader", f"/duyet {code}")
    [result] = citizen_inbox(gw, "a1")
    assert "Sở Xây dựng" in result and RESULT in result and "Nguyễn Văn An" in result and code in result
    done = await case(gw, code)
    assert done.status == "published" and done.entered_at["published"] == gw.clock()
    moves = [(h.actor, h.to_status) for h in done.history if h.action == "transition"]
    assert moves[-3:] == [("staff:officer", "result_submitted"), ("staff:leader", "approved"),
                          ("system:publish", "published")]


async def scenario_edit_and_approve(say: Say, gw: Gateway) -> None:
    code = await forwarded(say, gw, "a2")
    await say("officer", f"/ketqua {code} đã vá")
    assert "Đã sửa và duyệt" in await say("sup", f"/sua {code} {RESULT}")
    [result] = citizen_inbox(gw, "a2")
    assert RESULT in result and "đã vá\n" not in result
    assert (await case(gw, code)).result == RESULT


async def scenario_return_to_ioc(say: Say, gw: Gateway) -> None:
    code = await forwarded(say, gw, "a3")
    assert "Đã trả" in await say("officer", f"/trave {code} đường tỉnh lộ do Sở GTVT quản lý")
    returned = await case(gw, code)
    assert returned.status == "returned"
    assert returned.history[-1].actor == "staff:officer" and "Sở GTVT" in (returned.history[-1].reason or "")
    assert "Đã phân loại" in await say("op", f"/route {code} transport so_xay_dung")


async def scenario_duplicates_confirmed_and_split(say: Say, gw: Gateway) -> None:
    assert isinstance(gw.clock, Clock)  # the test clock `gw` was built with
    gw.clock.now = utcnow()  # filed just before the citizens write (their messages carry the real time)
    existing = await file_case(gw, POTHOLE, sender="d0")
    for sender in ("d1", "d2"):
        citizen = Citizen(gw, "zalo", sender)
        await citizen.say(SAME_POTHOLE, location=PIN, photo="pothole.jpg")
        assert any(existing.code in t for t in await citizen.say("đồng ý"))
    first, second = (await case(gw, existing.code)).duplicate_candidates
    shown = await say("op", f"/show {existing.code}")
    assert f"- {first.id} (" in shown and f"- {second.id} (" in shown and "chờ /dupok" in shown
    assert "0987" not in shown
    assert "Đã xác nhận" in await say("op", f"/xacnhantrung {existing.code} {first.id}")
    assert "đã được xác nhận trùng từ trước" in await say("sup", f"/dupsplit {existing.code} {first.id}")
    assert "Đã tách" in await say("sup", f"/tachtrung {existing.code} {second.id}")
    after = await case(gw, existing.code)
    [confirmed, split] = after.duplicate_candidates
    assert (confirmed.status, split.status) == ("confirmed", "split") and split.split_code
    assert [s.address for s in after.subscribers] == ["d0", "d1"]
    new = await case(gw, split.split_code)
    assert new.sender == "d2" and new.citizen.phone == "+84987654321"
    assert any(split.split_code in t and existing.code in t for t in citizen_inbox(gw, "d2"))
    assert f"đã tách thành {split.split_code}" in await say("op", f"/show {existing.code}")
    assert "không có phản ánh trùng mã abc123" in await say("op", f"/dupok {existing.code} abc123")


async def scenario_answer_to_ask_is_attached(say: Say, gw: Gateway) -> None:
    r = await file_case(gw, UNCLEAR, sender="i1")
    await say("op", f"/ask {r.code} số nhà chính xác và ảnh chụp gần")
    citizen = Citizen(gw, "zalo", "i1")
    [thanks] = await citizen.say("Trước số nhà 14 Trần Phú", photo="pothole.jpg")
    assert r.code in thanks and "1 ảnh bổ sung đã được thêm" in thanks
    answered = await case(gw, r.code)
    assert len(answered.photos) == 1 and answered.history[-1].action == "info_added"
    assert answered.history[-1].reason == "Trước số nhà 14 Trần Phú" and len(await citizen.reports()) == 1
    assert "Trước số nhà 14" in await say("op", f"/show {r.code}")
    again = await citizen.say("Đèn đường hỏng ở ngõ 5")  # answered once: a new report starts
    assert not any("đã được thêm" in t for t in again)


async def scenario_roles_are_refused(say: Say, gw: Gateway) -> None:
    code = await forwarded(say, gw, "r1")
    assert "không có quyền" in await say("op", f"/result {code} {RESULT}")
    assert "không có quyền" in await say("health", f"/trave {code} không phải việc của Sở Y tế")
    assert "không có quyền" in await say("leader", f"/return {code} không thuộc thẩm quyền")
    await say("officer", f"/result {code} {RESULT}")
    for member, text in [("officer", f"/approve {code}"), ("viewer", f"/approve {code}"),
                         ("op", f"/edit {code} khác"), ("officer", f"/sendback {code} sửa"),
                         ("officer", f"/publish {code}"), ("officer", f"/dupok {code} abc123"),
                         ("leader", f"/dupsplit {code} abc123")]:
        assert "không có quyền" in await say(member, text), text
    assert (await case(gw, code)).status == "result_submitted" and citizen_inbox(gw, "r1") == []
    refused = {e.actor for e in await Store(gw.database).audit.trail(code) if e.action == "refused"}
    assert refused >= {"staff:op", "staff:health", "staff:leader", "staff:officer", "staff:viewer"}


# ---- the CLI front end, with the replay e-mail channel -------------------------------------
@pytest.fixture
async def gw(database):
    channels = {n: ReplayChannel(n, IMAGES) for n in CHANNELS}
    gateway = Gateway(database, quang_nam(), channels, clock=Clock(), agency_token_secret="test-secret",
                      ioc_email=IOC, staff=StaffSetup(ROSTER, alert_chat=("telegram", str(STAFF_CHAT))))
    await gateway.start(workers=False)
    yield gateway
    await gateway.stop()


@pytest.fixture
def cli(gw: Gateway) -> Say:
    loop = make_loop(gw.policy, Texts(), "test-secret", None, IOC)  # as `run_bots.py staff` builds it

    async def say(who: str, text: str) -> str:
        out = io.StringIO()
        await run_cli(gw.database, gw.policy, ROSTER, loop, who, [text], io.StringIO(), out, clock=gw.clock)
        await gw.drain()
        return out.getvalue()
    return say


@pytest.mark.parametrize("scenario", [
    scenario_approve_delivers_the_result, scenario_edit_and_approve, scenario_return_to_ioc,
    scenario_duplicates_confirmed_and_split, scenario_answer_to_ask_is_attached, scenario_roles_are_refused])
async def test_each_loop_command_from_the_cli(cli: Say, gw: Gateway, scenario) -> None:
    await scenario(cli, gw)


async def test_result_asks_the_leader_by_mail_and_send_back_mails_the_officer(cli: Say, gw: Gateway) -> None:
    code = await forwarded(cli, gw, "m1")
    [forward] = mails(gw, FOCAL)  # /forward hands the case to the agency's send method
    assert code in forward and POTHOLE in forward
    await cli("officer", f"/result {code} {RESULT}")
    [request] = mails(gw, HEAD)
    assert code in request and RESULT in request and "DUYỆT" in request
    assert "đã gửi thư cho đầu mối xaydung@example.gov.vn" in await cli("leader", f"/tralai {code} ghi rõ ngày")
    [_, sent_back] = mails(gw, FOCAL)
    assert code in sent_back and "ghi rõ ngày" in sent_back and RESULT in sent_back
    [item] = [m for a, m in gw.channels["email"].sent if a == FOCAL][1:]  # type: ignore[attr-defined]
    token = gw.agency.loop.tokens.find([item.context["reply_to"]])
    assert token is not None and token.code == code  # the CLI signs as the gateway: the reply is accepted
    assert (await case(gw, code)).status == "in_progress" and citizen_inbox(gw, "m1") == []


async def test_returned_case_is_reported_to_the_ioc(cli: Say, gw: Gateway) -> None:
    code = await forwarded(cli, gw, "m2")
    await cli("officer", f"/return {code} thuộc thẩm quyền UBND xã")
    [notice] = mails(gw, IOC)
    assert code in notice and "UBND xã" in notice


async def test_publish_sends_an_approved_result_as_the_staff_member(cli: Say, gw: Gateway) -> None:
    code = await forwarded(cli, gw, "m3")
    await cli("officer", f"/result {code} {RESULT}")
    async with unit_of_work(gw.database) as store:  # approved, not yet published (e.g. before this release)
        stuck = await store.reflections.get(code)
        assert stuck is not None
        await transition(store, stuck, "approved", Actor("system:test", SYSTEM), at=gw.clock())
    assert "Đã công khai kết quả" in await cli("op", f"/congkhai {code}")
    [result] = citizen_inbox(gw, "m3")
    assert RESULT in result
    assert (await case(gw, code)).history[-1].actor == "staff:op"


async def test_a_citizen_writing_a_report_when_asked_keeps_their_draft(cli: Say, gw: Gateway) -> None:
    r = await file_case(gw, UNCLEAR, sender="i2")
    citizen = Citizen(gw, "zalo", "i2")
    await citizen.say("Cây đổ chắn ngang đường")
    await cli("op", f"/ask {r.code} ảnh chụp gần")
    answer = await citizen.say("Tên tôi là Nguyễn Văn An")
    assert not any("đã được thêm" in t for t in answer)
    assert len((await case(gw, r.code)).history) == len(r.history) + 1  # only the request itself


def test_the_acknowledgement_is_worded_in_both_languages(gw: Gateway) -> None:
    assert "added to report PA-2026-000001" in gw.texts.render("info_added", "en", code="PA-2026-000001",
                                                              photos=2, text=True)
    assert "Thông tin bổ sung đã được thêm vào phản ánh PA-2026-000001" in gw.texts.render(
        "info_added", "vi", code="PA-2026-000001", photos=0, text=True)
