"""Whole conversations through the real pipeline: what a citizen reads, and what gets filed."""
from __future__ import annotations

import pytest

from channels.replay import ReplayChannel
from store.repos import Store
from tests.chat import Citizen, Clock, make_gateway

FULL = "Tôi là Nguyễn Văn An, 0912 345 678, ổ gà lớn trước số 12 Hùng Vương, phường Hải Châu"
PIN = {"lat": 16.0678, "lon": 108.2208}  # central Đà Nẵng


@pytest.fixture
async def gateway(database):
    gw = make_gateway(database)
    await gw.start(workers=False)
    yield gw
    await gw.stop()


async def test_everything_in_one_message_then_photo_then_confirm(gateway):
    an = Citizen(gateway)
    assert "hình ảnh" in (await an.say(FULL))[-1]
    summary = (await an.say(photo="pothole.jpg"))[-1]
    assert "Nguyễn Văn An" in summary and "0912 345 678" in summary and "đồng ý" in summary
    ack = (await an.say("đồng ý"))[-1]
    [report] = await an.reports()
    assert report.code in ack and report.code.startswith("PA-2026-")
    assert report.citizen.phone == "+84912345678" and report.field == "transport"
    assert report.location.commune == "Phường Hải Châu" and len(report.photos) == 1
    assert report.status == "classified" and report.agency == "so_xay_dung"
    assert "06 ngày làm việc" in ack


async def test_fields_one_per_message_in_another_order(gateway):
    an = Citizen(gateway, sender="u2")
    await an.say(photo="pothole.jpg")
    await an.say(location=PIN)
    asked = (await an.say("Đèn đường hỏng cả tuần nay, tối om"))[-1]
    assert "họ tên" in asked
    asked = (await an.say("Trần Thị Bình"))[-1]
    assert "số điện thoại" in asked
    summary = (await an.say("0905123456"))[-1]
    assert "Trần Thị Bình" in summary and "0905 123 456" in summary
    await an.say("xác nhận")
    [report] = await an.reports()
    assert report.location.lat == PIN["lat"] and report.location.commune is not None
    assert report.citizen.name == "Trần Thị Bình" and report.content.startswith("Đèn đường")


async def test_invalid_phone_is_asked_again_with_a_reason(gateway):
    an = Citizen(gateway, sender="u3")
    await an.say("Tôi là Lê Văn Cường, rác thải tồn đọng ở chợ phường Hải Châu", photo="pothole.jpg")
    answer = (await an.say("12345"))[-1]
    assert "không hợp lệ" in answer and "số điện thoại" in answer
    assert await an.reports() == []


async def test_not_an_image_is_refused_and_photo_asked_again(gateway):
    an = Citizen(gateway, sender="u4")
    answer = (await an.say(FULL, photo="not_a_photo.jpg"))[-1]
    assert "không phải là hình ảnh" in answer and "hình ảnh hiện trường" in answer


async def test_correction_before_confirming(gateway):
    an = Citizen(gateway, sender="u5")
    await an.say(FULL, photo="pothole.jpg")
    summary = (await an.say("sửa số điện thoại: 0987 654 321"))[-1]
    assert "0987 654 321" in summary
    await an.say("đồng ý")
    [report] = await an.reports()
    assert report.citizen.phone == "+84987654321"


async def test_cancel_files_nothing_and_forgets_the_draft(gateway):
    an = Citizen(gateway, sender="u6")
    await an.say(FULL, photo="pothole.jpg")
    assert "hủy" in (await an.say("hủy"))[-1]
    assert await an.reports() == []
    assert await Store(gateway.database).conversations.get("zalo", "u6") is None


async def test_the_same_delivery_twice_gives_one_reply_and_one_change(gateway):
    an = Citizen(gateway, sender="u7")
    first = await an.say(FULL, message_id="zalo-msg-1")
    again = await an.say(FULL, message_id="zalo-msg-1")
    assert len(first) == 1 and again == []


async def test_state_survives_a_restart_of_the_gateway(database):
    clock = Clock()
    first = make_gateway(database, clock=clock)
    await first.start(workers=False)
    await Citizen(first, sender="u8").say(FULL)
    await first.stop()
    second = make_gateway(database, clock=clock)
    await second.start(workers=False)
    summary = (await Citizen(second, sender="u8").say(photo="pothole.jpg"))[-1]
    assert "Nguyễn Văn An" in summary
    await second.stop()


async def test_emergency_answers_at_once_and_files_urgent(gateway):
    an = Citizen(gateway, sender="u9")
    first = await an.say("Cháy lớn ở kho hàng số 5 Lê Duẩn phường Hải Châu, khói mù mịt")
    assert "114" in first[0] and "KHẨN" in first[0]
    await an.say("Tôi là Phạm Văn Dũng 0913222333", photo="pothole.jpg")
    await an.say("đồng ý")
    [report] = await an.reports()
    assert report.urgent and report.emergency_number == "114"


async def test_complaint_is_refused_and_nothing_filed(gateway):
    an = Citizen(gateway, sender="u10")
    answer = (await an.say("Tôi muốn khiếu nại quyết định thu hồi đất của UBND xã"))[-1]
    assert "Khiếu nại" in answer or "khiếu nại" in answer
    assert await an.reports() == []


async def test_abuse_is_refused_politely(gateway):
    an = Citizen(gateway, sender="u11")
    answer = (await an.say("lũ ăn hại, đồ ngu, đường hỏng mãi không sửa"))[-1]
    assert "ngôn từ" in answer
    assert await Store(gateway.database).conversations.get("zalo", "u11") is None


async def test_english_conversation_stays_in_english(gateway):
    tom = Citizen(gateway, "telegram", "t1")
    asked = (await tom.say("Hello, there is a big pothole in front of 20 Bach Dang street, Hai Chau ward"))[-1]
    assert "photo" in asked
    await tom.say(photo="pothole.jpg")
    await tom.say("My name is Tom Smith")
    summary = (await tom.say("+84 912 000 111"))[-1]
    assert "Please check your report" in summary
    ack = (await tom.say("confirm"))[-1]
    assert "Your report has been received" in ack


async def test_status_only_for_the_citizen_who_filed(gateway):
    an = Citizen(gateway, sender="u12")
    await an.say(FULL, photo="pothole.jpg")
    await an.say("đồng ý")
    [report] = await an.reports()
    assert "đã tiếp nhận" in (await an.say(f"tra cứu {report.code}"))[-1]
    stranger = Citizen(gateway, sender="u13")
    assert "Không tìm thấy" in (await stranger.say(f"tra cứu {report.code}"))[-1]


async def test_returning_citizen_is_offered_their_name_and_phone(gateway):
    an = Citizen(gateway, sender="u14")
    await an.say(FULL, photo="pothole.jpg")
    await an.say("đồng ý")
    asked = (await an.say("Rác ứ đọng ở kiệt 20 Hoàng Diệu phường Hải Châu", photo="pothole.jpg"))[-1]
    assert "Nguyễn Văn An" in asked
    asked = (await an.say("đúng"))[-1]
    assert "0912 345 678" in asked
    summary = (await an.say("đúng"))[-1]
    assert "Rác" in summary
    await an.say("đồng ý")
    assert len(await an.reports()) == 2


async def test_one_citizen_across_channels(gateway):
    await Citizen(gateway, "zalo", "z1").say(FULL, photo="pothole.jpg")
    await Citizen(gateway, "zalo", "z1").say("đồng ý")
    tg = Citizen(gateway, "telegram", "t9")
    await tg.say("Tôi là Nguyễn Văn An 0912345678, cột điện nghiêng ở số 3 Trần Phú phường Hải Châu",
                 photo="pothole.jpg")
    await tg.say("đồng ý")
    reports = await Store(gateway.database).reflections.all()
    assert len(reports) == 2 and reports[0].citizen_id == reports[1].citizen_id
    code = reports[0].code
    assert "đã tiếp nhận" in (await tg.say(f"tra cứu {code}"))[-1]


async def test_incomplete_conversation_expires_with_a_notice(database):
    clock = Clock()
    gw = make_gateway(database, clock=clock)
    await gw.start(workers=False)
    an = Citizen(gw, sender="u15")
    await an.say(FULL)
    clock.advance(hours=25)
    await gw.tick()
    await gw.drain()
    zalo = gw.channels["zalo"]
    assert isinstance(zalo, ReplayChannel)  # make_gateway's channels replay
    sent = [m.text for a, m in zalo.sent if a == "u15"]
    assert "quá thời gian" in sent[-1]
    assert await Store(database).conversations.get("zalo", "u15") is None
    await gw.tick()
    await gw.drain()
    assert len([m for a, m in zalo.sent if a == "u15"]) == len(sent)
    await gw.stop()


async def test_confidential_request_is_kept_with_the_report(gateway):
    an = Citizen(gateway, sender="u16")
    await an.say(FULL + ". Đề nghị giữ bí mật danh tính", photo="pothole.jpg")
    await an.say("đồng ý")
    [report] = await an.reports()
    assert report.confidential is True


async def test_a_greeting_alone_gets_the_instructions(gateway):
    hello = await Citizen(gateway, sender="u17").say("xin chào", profile_name="Mai")
    assert "Xin chào" in hello[0] and "phản ánh" in hello[0]


async def test_profile_name_is_offered_not_asked(gateway):
    mai = Citizen(gateway, sender="u18")
    await mai.say("Rác ứ đọng ở kiệt 20 Hoàng Diệu phường Hải Châu", photo="pothole.jpg",
                  profile_name="Trần Thị Mai")
    assert "Trần Thị Mai" in (await mai.say(location=PIN))[-1]
