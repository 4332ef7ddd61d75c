"""The agency loop end to end: a chat report, the agency e-mail, replies and the citizen's result.

Real Dovecot (IMAP) and aiosmtpd (SMTP) on loopback, the embedded database and the real
gateway; the citizen talks on a replay Zalo channel. Every e-mail the gateway sends lands in
the one test mailbox (the SMTP server delivers everything there); agency officers and leaders
answer by SMTP to the Reply-To the gateway gave them, exactly as their mail client would.
"""
from __future__ import annotations

import re
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import make_msgid

import aiosmtplib
import pytest

from bots.gateway import Gateway
from channels.base import RetryLater
from channels.replay import ReplayChannel
from normalizer.messages import Outbound
from store.media import MediaStore
from store.repos import Store
from tests.chat import IMAGES, Citizen, Clock, quang_nam
from tests.test_email import OUR, dovecot, eventually, jpeg, make_channel  # noqa: F401 - dovecot: a fixture

# Fixtures the tests take as parameters: "x as x" re-exports them, so ruff reads neither the
# import as unused nor the parameters as redefinitions.
from tests.test_email import inbox as inbox
from tests.test_email import smtp as smtp

FULL = "Tôi là Nguyễn Văn An, 0912 345 678, ổ gà lớn trước số 12 Hùng Vương, phường Hải Châu"
PIN = {"lat": 16.0678, "lon": 108.2208}
FOCAL, HEAD, IOC = "xaydung@example.gov.vn", "giamdoc.xaydung@example.gov.vn", "ioc@ioc.example.vn"
RESULT = "Ngày 25/11/2026 Sở Xây dựng đã vá ổ gà trước số 12 Hùng Vương, mặt đường đã thông thoáng."


class FlakyZalo(ReplayChannel):
    """A Zalo channel whose platform refuses the first `failures` results (a real RetryLater)."""

    def __init__(self, failures: int) -> None:
        super().__init__("zalo", IMAGES)
        self.failures = failures

    async def send(self, address: str, message: Outbound) -> str | None:
        if message.kind == "result" and self.failures > 0:
            self.failures -= 1
            raise RetryLater("Zalo API 503", after=0)
        return await super().send(address, message)


class World:
    def __init__(self, database, inbox, smtp, zalo: ReplayChannel | None = None) -> None:
        media = MediaStore(database)
        self.email = make_channel(inbox, smtp_port=smtp.port, media_loader=media.load, poll_seconds=2.0)
        self.zalo = zalo or ReplayChannel("zalo", IMAGES)
        self.gw = Gateway(database, quang_nam(), {"zalo": self.zalo, "email": self.email}, clock=Clock(),
                          agency_token_secret="test-secret", ioc_email=IOC)
        self.inbox, self.smtp, self.store = inbox, smtp, Store(database)

    async def report(self, sender: str = "u1", text: str = FULL):
        citizen = Citizen(self.gw, "zalo", sender)
        await citizen.say(text, photo="pothole.jpg", location=PIN)
        await citizen.say("đồng ý")
        [case] = await citizen.reports()
        await self.gw.tick()  # the scheduler forwards it
        await self.gw.drain()
        return citizen, case

    async def mail_to(self, address: str, count: int = 1) -> EmailMessage:
        """The `count`-th e-mail the gateway started (not a reply) to `address`; waits for it."""
        found: list[EmailMessage] = []

        async def arrived() -> bool:
            found[:] = [m for m in await self._mails()
                        if m["To"].addresses[0].addr_spec == address and m["In-Reply-To"] is None]
            return len(found) >= count
        await eventually(arrived)
        return found[count - 1]

    async def _mails(self) -> list[EmailMessage]:
        return [message_from_bytes(raw, policy=policy.default) for _, raw in await self.inbox.messages()]

    async def answer(self, original: EmailMessage, sender: str, body: str, photo: bytes | None = None,
                     to: str | None = None) -> None:
        """`sender` replies to `original` from their mail client; wait until the gateway handled it."""
        mail = EmailMessage()
        mail["From"], mail["To"] = sender, to or str(original["Reply-To"])
        mail["Subject"] = "Re: " + str(original["Subject"])
        mail["Message-ID"] = make_msgid(domain="example.gov.vn")
        mail["In-Reply-To"] = mail["References"] = original["Message-ID"]
        quoted = "\n".join("> " + line for line in text_of(original).splitlines())
        mail.set_content(f"{body}\n\nVào 09:00 ngày 24/11/2026, IOC <{OUR}> đã viết:\n{quoted}\n")
        if photo is not None:
            mail.add_attachment(photo, maintype="image", subtype="jpeg", filename="sau-khi-va.jpg")
        before = await self.store.inbound.count(channel="email", sender=sender)
        await aiosmtplib.send(mail, hostname=self.smtp.host, port=self.smtp.port)
        await eventually(lambda: self._stored(sender, before))
        await self.gw.drain()

    async def _stored(self, sender: str, before: int) -> bool:
        return await self.store.inbound.count(channel="email", sender=sender) > before

    async def case(self, code: str):
        return await self.store.reflections.get(code)


@pytest.fixture
async def world(database, inbox, smtp):
    w = World(database, inbox, smtp)
    await w.gw.start(workers=False)
    yield w
    await w.gw.stop()


def text_of(mail: EmailMessage) -> str:
    body = mail.get_body(("plain",))
    assert body is not None, "the mail has no text/plain part"
    return body.get_content()


async def test_report_forwarded_answered_approved_delivered_and_rated(world):
    citizen, case = await world.report()
    forward = await world.mail_to(FOCAL)
    body = text_of(forward)
    assert case.code in forward["Subject"]
    assert re.fullmatch(rf"phananh\+{case.code}\.r\.[0-9a-f]{{16}}@ioc\.example\.vn", str(forward["Reply-To"]))
    assert "ổ gà lớn trước số 12 Hùng Vương" in body and "Phường Hải Châu" in body
    assert "https://www.google.com/maps?q=16.067800,108.220800" in body
    assert "Nguyễn Văn An" in body and "0912 345 678" in body
    assert "Thời hạn xử lý: 48 giờ làm việc" in body and "KHÔNG THUỘC THẨM QUYỀN" in body
    assert [p.get_content_type() for p in forward.iter_attachments()] == ["image/jpeg"]
    assert (await world.case(case.code)).status == "forwarded"

    await world.answer(forward, FOCAL, RESULT, photo=jpeg("green"))
    submitted = await world.case(case.code)
    assert submitted.status == "result_submitted" and submitted.result == RESULT
    assert len(submitted.result_attachments) == 1
    approval = await world.mail_to(HEAD)
    assert RESULT in text_of(approval) and "DUYỆT" in text_of(approval)

    await world.answer(approval, HEAD, "Duyệt")
    published = await world.case(case.code)
    assert published.status == "published"
    [(address, result)] = [(a, m) for a, m in world.zalo.sent if m.kind == "result"]
    assert address == "u1" and len(result.photos) == 1
    assert [b.label for b in result.buttons] == ["Hài lòng", "Chấp nhận được", "Không hài lòng"]
    assert result.text.split("\n")[:6] == [
        "Sở Xây dựng",
        "Kính chào: Ông/Bà Nguyễn Văn An",
        "Sau khi nhận được phản ánh của Ông/Bà, Sở Xây dựng đã tiến hành kiểm tra, xử lý và thông báo kết quả như sau:",
        RESULT,
        "(Đính kèm 1 tệp văn bản, hình ảnh.)",
        "Chúng tôi chân thành cám ơn Ông/Bà đã kịp thời phản ánh và mong tiếp tục nhận được phản ánh "
        "trong thời gian tới.",
    ]
    assert result.text.split("\n")[6] == "Trân trọng."

    thanks = await citizen.say("Hài lòng")
    assert thanks == [f"Cảm ơn Ông/Bà đã đánh giá kết quả xử lý phản ánh {case.code}."]
    closed = await world.case(case.code)
    assert closed.status == "closed" and closed.rating == "satisfied"
    raw = await world.store.database.db.reflections.find_one({"code": case.code})
    assert raw["publishable"] is True


async def test_wrong_jurisdiction_goes_back_to_the_ioc_with_the_reason(world):
    _, case = await world.report()
    forward = await world.mail_to(FOCAL)
    await world.answer(forward, FOCAL, "Không thuộc thẩm quyền: tuyến đường do UBND phường Hải Châu quản lý")
    returned = await world.case(case.code)
    assert returned.status == "returned"
    assert returned.history[-1].reason == "tuyến đường do UBND phường Hải Châu quản lý"
    notice = await world.mail_to(IOC)
    assert case.code in notice["Subject"] and "UBND phường Hải Châu quản lý" in text_of(notice)


async def test_leader_sends_back_and_the_officer_answers_again(world):
    _, case = await world.report()
    await world.answer(await world.mail_to(FOCAL), FOCAL, "Đã kiểm tra.")
    await world.answer(await world.mail_to(HEAD), HEAD, "Trả lại: đề nghị bổ sung ảnh sau khi vá và ngày hoàn thành")
    back = await world.case(case.code)
    assert back.status == "in_progress" and back.history[-1].role == "agency_leader"
    sent_back = await world.mail_to(FOCAL, count=2)
    assert "đề nghị bổ sung ảnh sau khi vá" in text_of(sent_back)
    await world.answer(sent_back, FOCAL, RESULT, photo=jpeg())
    again = await world.case(case.code)
    assert again.status == "result_submitted" and again.result == RESULT
    assert RESULT in text_of(await world.mail_to(HEAD, count=2))
    assert not [m for _, m in world.zalo.sent if m.kind == "result"]


async def test_unknown_sender_is_kept_for_staff_and_never_applied(world):
    _, case = await world.report()
    forward = await world.mail_to(FOCAL)
    await world.answer(forward, "ai.do@example.com", "Đã xử lý xong rồi nhé")
    after = await world.case(case.code)
    assert after.status == "forwarded" and after.result is None
    assert after.history[-1].action == "agency_mail_flagged" and "ai.do@example.com" in after.history[-1].reason
    notice = text_of(await world.mail_to(IOC))
    assert "ai.do@example.com" in notice and "Đã xử lý xong rồi nhé" in notice
    # Without the signed address (a reply to the bare inbox), even the officer is not applied.
    await world.answer(forward, FOCAL, RESULT, to=OUR)
    assert (await world.case(case.code)).status == "forwarded"


async def test_result_delivery_failing_twice_is_sent_once_on_the_third_try(database, inbox, smtp):
    w = World(database, inbox, smtp, zalo=FlakyZalo(failures=2))
    await w.gw.start(workers=False)
    try:
        _, case = await w.report()
        await w.answer(await w.mail_to(FOCAL), FOCAL, RESULT)
        await w.answer(await w.mail_to(HEAD), HEAD, "Approve")
    finally:
        await w.gw.stop()
    assert len([m for _, m in w.zalo.sent if m.kind == "result"]) == 1
    [item] = [i for i in await w.store.outbox.all() if i.id.startswith(f"result:{case.code}")]
    assert item.status == "sent" and item.attempts == 3
