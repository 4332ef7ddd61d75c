"""IOC staff console through the command-line front end, on the real gateway and database.

The `scenario_*` helpers take a front end (`say(member, text) -> reply`) and are run here
through the CLI and in `test_staff_telegram.py` through the Telegram bot and the fake Bot API.
"""
from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Awaitable, Callable

import pytest

from bots import staff_commands as commands
from bots.gateway import Gateway
from bots.staff import StaffSetup
from bots.staff_cli import main, run_cli
from bots.staff_commands import Context, Request
from cases.staff_roles import Member, Roster, StaffFileError, load_roster
from channels.replay import ReplayChannel
from settings import Settings
from store.models import Conversation, Draft, Place, Reflection
from store.repos import Store, unit_of_work
from store.safe import UnsafeValue
from tests.chat import CHANNELS, IMAGES, ROOT, Clock, quang_nam

Say = Callable[[str, str], Awaitable[str]]
POTHOLE = "Ổ gà lớn giữa đường trước số 12 Hùng Vương"  # transport → Sở Xây dựng
UNCLEAR = "Có chuyện lạ ở đầu ngõ"  # stays `received` for IOC staff
ROSTER = Roster([
    Member(id="op", name="Trần Minh", role="ioc_operator", telegram_ids=[1001], emails=["op@ioc.vn"]),
    Member(id="sup", name="Lê Hoa", role="ioc_supervisor", telegram_ids=[1002]),
    Member(id="officer", name="Phạm Nam", role="agency_officer", agency="so_xay_dung", telegram_ids=[1003]),
    Member(id="health", name="Vũ Hà", role="agency_officer", agency="so_yte", telegram_ids=[1004]),
    Member(id="leader", name="Võ Lan", role="agency_leader", agency="so_xay_dung", telegram_ids=[1005]),
    Member(id="viewer", name="Đỗ Bình", role="viewer", telegram_ids=[1006]),
])
TELEGRAM_IDS = {m.id: m.telegram_ids[0] for m in ROSTER.members}
STAFF_CHAT = -1001234567890


def staff_gateway(database, channels) -> Gateway:
    return Gateway(database, quang_nam(), channels, clock=Clock(),
                   staff=StaffSetup(ROSTER, alert_chat=("telegram", str(STAFF_CHAT))))


async def file_case(gw: Gateway, content: str = POTHOLE, sender: str = "u1", *, confidential: bool = False,
                    urgent: bool = False, photos: list[str] | None = None, channel: str = "zalo") -> Reflection:
    draft = Draft(name="Nguyễn Văn An", phone="+84912345678", content=content, confidential=confidential,
                  urgent=urgent, photos=photos or [],
                  location=Place(address="12 Hùng Vương", commune="Phường Hải Châu", lat=16.0678, lon=108.2208))
    conv = Conversation(_id=f"{channel}:{sender}", channel=channel, sender=sender, draft=draft)
    async with unit_of_work(gw.database) as store:
        return await gw.desk.file(store, conv, gw.clock())


async def case(gw: Gateway, code: str) -> Reflection:
    found = await Store(gw.database).reflections.get(code)
    assert found is not None
    return found


def citizen_inbox(gw: Gateway, sender: str = "u1", channel: str = "zalo") -> list[str]:
    replay = gw.channels[channel]
    assert isinstance(replay, ReplayChannel)
    return [m.text for address, m in replay.sent if address == sender]


# ---- scenarios shared by both front ends ---------------------------------------------------
async def scenario_whole_case(say: Say, gw: Gateway) -> None:
    r = await file_case(gw, UNCLEAR)
    assert "Sở Xây dựng" in await say("op", f"/route {r.code} transport so_xay_dung")
    assert "Đã chuyển" in await say("op", f"/chuyen {r.code}")
    assert "chờ lãnh đạo duyệt" in await say("officer", f"/result {r.code} Đã vá ổ gà ngày 25/11")
    assert "Đã trả lại" in await say("leader", f"/tralai {r.code} ghi rõ ngày hoàn thành")
    assert "chờ lãnh đạo duyệt" in await say("officer", f"/ketqua {r.code} Ngày 25/11 đã vá ổ gà")
    assert "Đã sửa và duyệt" in await say("leader", f"/edit {r.code} Đã vá xong ổ gà trước số 12")
    assert "Không thể /approve" in await say("leader", f"/duyet {r.code}")  # already sent to the citizen
    assert "Đã đóng" in await say("op", f"/close {r.code}")
    assert "Đã mở lại" in await say("sup", f"/reopen {r.code} người dân báo ổ gà lại xuất hiện")
    done = await case(gw, r.code)
    assert done.status == "reopened" and done.result == "Đã vá xong ổ gà trước số 12"
    actors = [(h.actor, h.action, h.to_status) for h in done.history]
    assert ("staff:op", "transition", "classified") in actors
    assert ("staff:officer", "transition", "result_submitted") in actors
    assert ("staff:leader", "transition", "in_progress") in actors
    assert ("staff:leader", "transition", "approved") in actors
    assert ("system:publish", "transition", "published") in actors
    assert ("staff:sup", "transition", "reopened") in actors


async def scenario_reject_tells_the_citizen(say: Say, gw: Gateway) -> None:
    r = await file_case(gw, UNCLEAR, sender="u2")
    answer = await say("op", f"/reject {r.code} unknownreason")
    assert "không có trong quy chế" in answer and "incomplete, out_of_scope" in answer
    assert "Đã từ chối" in await say("op", f"/tuchoi {r.code} incomplete thiếu hình ảnh hiện trường")
    [refusal] = citizen_inbox(gw, "u2")
    guidance = gw.policy.rejection_reasons["incomplete"].guidance
    assert r.code in refusal and guidance in refusal and "thiếu hình ảnh" in refusal
    assert (await case(gw, r.code)).status == "rejected"
    assert "không thể" in (await say("op", f"/reject {r.code} incomplete")).lower()
    assert len(citizen_inbox(gw, "u2")) == 1


async def scenario_request_info_once(say: Say, gw: Gateway) -> None:
    r = await file_case(gw, UNCLEAR, sender="u3")
    assert "Đã gửi đề nghị bổ sung" in await say("op", f"/ask {r.code} số nhà chính xác và ảnh chụp gần")
    second = await say("sup", f"/bosung {r.code} thêm ảnh")
    assert "chỉ cho phép đề nghị một lần" in second
    [request] = citizen_inbox(gw, "u3")
    assert r.code in request and "số nhà chính xác" in request
    assert "Đã đề nghị người dân bổ sung" in await say("op", f"/show {r.code}")


async def scenario_hide_duplicate_note(say: Say, gw: Gateway) -> None:
    first, second = await file_case(gw, sender="u4"), await file_case(gw, UNCLEAR, sender="u5")
    assert "Đã ẩn" in await say("op", f"/hide {second.code} ngôn từ xúc phạm cán bộ")
    assert "đã bị ẩn từ trước" in await say("op", f"/an {second.code} lần nữa")
    assert "đã ẩn" in await say("op", "/queue")
    assert "Đã bỏ ẩn" in await say("sup", f"/unhide {second.code} đã xem lại, nội dung phù hợp")
    assert f"trùng với {first.code}" in await say("op", f"/dup {second.code} {first.code}")
    assert f"Trùng với: {first.code}" in await say("op", f"/xem {second.code}")
    assert "đã được đánh dấu trùng" in await say("op", f"/dup {first.code} {second.code}")
    assert "Đã bỏ đánh dấu trùng" in await say("op", f"/undup {second.code}")
    assert "Đã ghi chú" in await say("officer", f"/note {first.code} đã cử đội kiểm tra hiện trường")
    shown = await say("op", f"/show {first.code}")
    assert "staff:officer: note (đã cử đội kiểm tra hiện trường)" in shown
    hidden = await case(gw, second.code)
    assert [h.action for h in hidden.history if h.actor.startswith("staff:")] == [
        "hide", "unhide", "duplicate_marked", "duplicate_unmarked"]


async def scenario_queue_filters_and_pages(say: Say, gw: Gateway) -> None:
    codes = [(await file_case(gw, sender=f"q{i}", urgent=i == 3)).code for i in range(12)]
    await Store(gw.database).reflections.annotate(codes[5], late=True)
    page1 = await say("op", "/queue field=transport")
    assert "12 — trang 1/2" in page1 and codes[3] in page1 and codes[11] not in page1
    assert page1.index(codes[3]) < page1.index(codes[0])  # urgent first
    assert "/queue field=transport page=2" in page1
    page2 = await say("op", "/ds field=transport page=2")
    assert codes[11] in page2 and codes[0] not in page2
    urgent = await say("viewer", "/queue urgent")
    assert codes[3] in urgent and "KHẨN" in urgent and codes[0] not in urgent
    late = await say("op", "/queue overdue=yes")
    assert codes[5] in late and "TRỄ HẠN" in late and codes[0] not in late
    assert "danh sách có 2 trang" in await say("op", "/queue field=transport page=7")
    assert "Không có phản ánh nào" in await say("op", "/queue state=rejected")


async def scenario_personal_data(say: Say, gw: Gateway, private: bool = True) -> None:
    secret = await file_case(gw, sender="u6", confidential=True)
    public = await file_case(gw, UNCLEAR, sender="u7")
    phone = "0912 345 678"
    assert phone not in (op := await say("op", f"/show {secret.code}")) and "chỉ lãnh đạo IOC" in op
    assert phone not in await say("officer", f"/show {secret.code}")
    assert (phone in await say("sup", f"/show {secret.code}")) is private
    assert (phone in await say("op", f"/show {public.code}")) is private
    viewer = await say("viewer", f"/show {public.code}")
    assert phone not in viewer and "Nguyễn Văn An" not in viewer and "citizen:" not in viewer


async def scenario_refusals(say: Say, gw: Gateway) -> None:
    ours, theirs = await file_case(gw, sender="u8"), await file_case(gw, UNCLEAR, sender="u9")
    await say("op", f"/route {theirs.code} health so_yte")
    assert "không có quyền" in await say("viewer", f"/reject {ours.code} incomplete")
    assert "không có quyền" in await say("health", f"/show {ours.code}")
    assert "không có quyền" in await say("officer", f"/note {theirs.code} xem giúp")
    assert "không có quyền" in await say("officer", "/queue agency=so_yte")
    assert theirs.code not in await say("officer", "/queue")
    assert "không có quyền" in await say("officer", f"/approve {ours.code}")
    trail = await Store(gw.database).audit.trail(ours.code)
    assert {(e.actor, e.action) for e in trail} >= {("staff:viewer", "refused"), ("staff:health", "refused")}
    assert (await case(gw, ours.code)).status == "classified"


async def scenario_malformed(say: Say, gw: Gateway) -> None:
    r = await file_case(gw, sender="u10")
    assert "Sai cú pháp lệnh /reject" in await say("op", "/reject")
    assert "Sai cú pháp lệnh /route" in await say("op", "/route PA-26-1 transport")
    assert "Sai cú pháp lệnh /show" in await say("op", '/show {"$gt": ""}')
    assert "Sai cú pháp lệnh /dup" in await say("op", f'/dup {r.code} {{"$gt": ""}}')
    assert "Sai cú pháp lệnh /queue" in await say("op", "/queue page=0")
    assert "Sai cú pháp lệnh /hide" in await say("op", f"/hide {r.code}")
    assert 'Bộ lọc "state={"$gt":""}" không hợp lệ' in await say("op", '/queue state={"$gt":""}')
    assert "không hợp lệ" in await say("op", "/queue field=$where")
    assert "Sai cú pháp lệnh /route" in await say("op", f"/route {r.code} $where")
    assert "Lĩnh vực không hợp lệ" in await say("op", f"/route {r.code} khong_co")
    assert 'Không có lệnh "frobnicate"' in await say("op", "/frobnicate")
    assert "Không tìm thấy phản ánh PA-2026-999999" in await say("op", "/show PA-2026-999999")
    assert (await case(gw, r.code)).status == "classified"


async def scenario_stats(say: Say, gw: Gateway) -> None:
    r = await file_case(gw, sender="u11", urgent=True)
    await file_case(gw, UNCLEAR, sender="u12")
    await say("op", f"/reject {r.code} duplicate")
    today = await say("op", "/stats")
    assert "Tiếp nhận mới: 2 (khẩn: 1)" in today and "Từ chối: 1" in today
    assert "Thống kê tuần này" in await say("sup", "/thongke week")
    assert "Tiếp nhận mới: 0" in await say("health", "/stats today")  # only its own agency


# ---- the CLI front end -----------------------------------------------------------------------
@pytest.fixture
async def gw(database):
    gateway = staff_gateway(database, {n: ReplayChannel(n, IMAGES) for n in CHANNELS})
    await gateway.start(workers=False)
    yield gateway
    await gateway.stop()


@pytest.fixture
def cli(gw: Gateway) -> Say:
    async def say(who: str, text: str) -> str:
        out = io.StringIO()
        await run_cli(gw.database, gw.policy, ROSTER, gw.agency.loop, who, [text], io.StringIO(), out,
                      clock=gw.clock)
        await gw.drain()
        return out.getvalue()
    return say


async def test_whole_case_from_routing_to_reopening(cli: Say, gw: Gateway) -> None:
    await scenario_whole_case(cli, gw)


async def test_rejection_sends_the_citizen_the_reason_and_guidance_once(cli: Say, gw: Gateway) -> None:
    await scenario_reject_tells_the_citizen(cli, gw)


async def test_information_is_requested_from_the_citizen_once_only(cli: Say, gw: Gateway) -> None:
    await scenario_request_info_once(cli, gw)


async def test_hide_duplicate_and_note_are_audited(cli: Say, gw: Gateway) -> None:
    await scenario_hide_duplicate_note(cli, gw)


async def test_queue_filters_and_pagination(cli: Say, gw: Gateway) -> None:
    await scenario_queue_filters_and_pages(cli, gw)


async def test_personal_data_only_for_roles_that_need_it(cli: Say, gw: Gateway) -> None:
    await scenario_personal_data(cli, gw)


async def test_roles_and_agencies_are_enforced_and_refusals_logged(cli: Say, gw: Gateway) -> None:
    await scenario_refusals(cli, gw)


async def test_malformed_and_injected_arguments_get_usage_and_change_nothing(cli: Say, gw: Gateway) -> None:
    await scenario_malformed(cli, gw)


async def test_stats_today_and_this_week(cli: Say, gw: Gateway) -> None:
    await scenario_stats(cli, gw)


async def test_unknown_identity_is_not_authorised_and_logged(cli: Say, gw: Gateway) -> None:
    r = await file_case(gw)
    assert "không có quyền" in await cli('{"$gt": ""}', f"/reject {r.code} incomplete")
    assert "không có quyền" in await cli("Trần Minh", f"/show {r.code}")  # a display name is not an id
    assert "Trần Minh" in await cli("op@ioc.vn", "/help")  # a configured e-mail is
    refused = [e for e in await Store(gw.database).audit.trail("") if e.action == "refused"]
    assert [e.actor.split(":", 2)[2] for e in refused] == ['{"$gt": ""}', "Trần Minh"]
    assert (await case(gw, r.code)).status == "classified"


async def test_two_staff_changing_one_case_at_once_one_wins(gw: Gateway) -> None:
    r = await file_case(gw, UNCLEAR)
    both_read = asyncio.Barrier(2)

    class ReadThenWait(Store):  # both commands read the case before either writes
        def __init__(self) -> None:
            super().__init__(gw.database)
            read = self.reflections.get

            async def get(code: str) -> Reflection | None:
                found = await read(code)
                await both_read.wait()
                return found
            self.reflections.get = get  # type: ignore[method-assign]

    def run(member: str, request: Request) -> Awaitable[commands.Result]:
        ctx = Context(ReadThenWait(), gw.policy, gw.texts, ROSTER.find(member), gw.clock(),  # type: ignore[arg-type]
                      gw.agency.loop)
        return commands.execute(ctx, request)

    results = await asyncio.gather(
        run("op", Request("route", code=r.code, field="transport", agency="so_xay_dung")),
        run("sup", Request("reject", code=r.code, reason="incomplete")))
    assert sorted(res.ok for res in results) == [False, True]
    [lost] = [res for res in results if not res.ok]
    assert lost.values["error"] == "conflict"
    from bots.staff import render
    assert "vừa được người khác thay đổi" in render(gw.texts, lost)
    assert len((await case(gw, r.code)).history) == 2  # filed + the one winning change


async def test_command_layer_and_repository_refuse_operator_values(gw: Gateway) -> None:
    ctx = Context(Store(gw.database), gw.policy, gw.texts, ROSTER.find("op"), gw.clock(),  # type: ignore[arg-type]
                  gw.agency.loop)
    result = await commands.execute(ctx, Request("queue", filters={"state": {"$gt": ""}}))  # type: ignore[dict-item]
    assert result.values["error"] == "bad_filter"
    with pytest.raises(UnsafeValue):
        await Store(gw.database).reflections.query({"status": {"$ne": None}}, 1, 10, ["received"])  # type: ignore[dict-item]
    with pytest.raises(UnsafeValue):
        await Store(gw.database).reflections.query({"$where": "1"}, 1, 10, ["received"])


async def test_urgent_and_late_cases_are_pushed_to_the_staff_chat_once(gw: Gateway) -> None:
    urgent = await file_case(gw, urgent=True)
    calm = await file_case(gw, sender="u2")
    await gw.tick()
    await gw.tick()
    await Store(gw.database).reflections.annotate(calm.code, late=True)
    await gw.tick()
    await gw.drain()
    sent = [m.text for address, m in gw.channels["telegram"].sent if address == str(STAFF_CHAT)]  # type: ignore[attr-defined]
    assert len(sent) == 2
    assert "KHẨN" in sent[0] and urgent.code in sent[0] and "0912" not in sent[0]
    assert "TRỄ HẠN" in sent[1] and calm.code in sent[1]


async def test_poison_event_given_up_on_is_told_to_the_staff_chat_once(gw: Gateway) -> None:
    """An event that can never be handled (its channel is no longer enabled) ends failed with
    its reason, and the staff chat hears of it once, without the message's content."""
    assert await gw.pipeline.sink("viber")("v-1", "viber-user", {"text": "Số 0912345678, cống vỡ"})
    await gw.drain()
    assert await Store(gw.database).inbound.count(status="failed") == 1
    await gw.tick()
    await gw.tick()
    await gw.drain()
    sent = [m.text for address, m in gw.channels["telegram"].sent if address == str(STAFF_CHAT)]  # type: ignore[attr-defined]
    assert len(sent) == 1
    assert "v-1" in sent[0] and "channel not enabled" in sent[0] and "0912" not in sent[0]


async def test_interactive_shell_runs_commands_until_exit(gw: Gateway) -> None:
    r = await file_case(gw)
    out = io.StringIO()
    stdin = io.StringIO(f"show {r.code}\n\nnote {r.code} gọi lại cho người dân\nexit\nshow {r.code}\n")
    status = await run_cli(gw.database, gw.policy, ROSTER, gw.agency.loop, "op", [], stdin, out, clock=gw.clock)
    assert status == 0 and out.getvalue().count("IOC> ") == 4  # one prompt per line read, blank included
    assert f"Phản ánh {r.code}" in out.getvalue() and "Đã ghi chú" in out.getvalue()


def test_run_bots_staff_command_reads_the_membership_file(db_server, tmp_path: Path, capsys) -> None:
    staff = tmp_path / "staff.yaml"
    staff.write_text((ROOT / "policies" / "staff" / "staff.example.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    # pydantic-settings takes `_env_file`, but mypy sees only the fields in Settings' signature
    settings = Settings(_env_file=None, mongodb_uri=db_server.uri,  # type: ignore[call-arg]
                        mongodb_database=f"cli_{tmp_path.name[-8:]}", staff_file=str(staff))
    assert main(["--as", "minh.tran", "queue"], settings) == 0
    assert "Không có phản ánh nào" in capsys.readouterr().out
    assert main(["--as", "someone", "queue"], settings) == 1
    assert "không có quyền" in capsys.readouterr().out
    assert main(["--as", "minh.tran", "reject"], settings) == 2
    assert "Sai cú pháp lệnh /reject" in capsys.readouterr().out


def test_membership_file_errors_name_the_entry(tmp_path: Path) -> None:
    policy = quang_nam()
    cases = {
        "members: [{id: a, name: A, role: agency_officer}]": "members.0: agency roles need an agency",
        "members: [{id: a, name: A, role: boss}]": "members.0.role",
        "members: [{id: a, name: A, role: agency_leader, agency: so_khong_co}]": "unknown agency 'so_khong_co'",
        "members: [{id: a, name: A, role: viewer, telegram_ids: [7]}, {id: b, name: B, role: viewer, "
        "telegram_ids: [7]}]": "telegram 7 belongs to both a and b",
        "staff: []": "expected a top-level 'members:' list",
    }
    for text, message in cases.items():
        path = tmp_path / "staff.yaml"
        path.write_text(text, encoding="utf-8")
        with pytest.raises(StaffFileError, match=message.replace("(", r"\(")):
            load_roster(path, policy)
    assert len(load_roster(ROOT / "policies" / "staff" / "staff.example.yaml", policy).members) == 5
