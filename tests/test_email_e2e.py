"""A citizen reporting by e-mail, through the real gateway, Dovecot, aiosmtpd and database.

The gateway reads the inbox, answers in the same thread, and the citizen's reply continues
the conversation; our own replies landing in the same mailbox are never answered.
"""
from __future__ import annotations

from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest

from bots.gateway import Gateway
from store.repos import Store
from tests.chat import quang_nam
from tests.test_email import CITIZEN, FIXTURES, OUR, dovecot, eventually, inbox, jpeg, make_channel, smtp  # noqa: F401


@pytest.fixture
async def gateway(database, inbox, smtp):  # noqa: F811
    channel = make_channel(inbox, smtp_port=smtp.port, poll_seconds=1.0)
    gw = Gateway(database, quang_nam(), {"email": channel}, idle_seconds=0.1)
    await gw.start()
    yield gw
    await gw.stop()


def mail(number: int, body: str, *, reply_to: str | None = None, photo: bytes | None = None) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"Nguyễn Văn An <{CITIZEN}>"
    msg["To"] = OUR
    msg["Subject"] = "Re: Phản ánh ổ gà" if reply_to else "Phản ánh ổ gà"
    msg["Message-ID"] = f"<citizen-{number}@example.com>"
    if reply_to:
        msg["In-Reply-To"] = reply_to
        msg["References"] = reply_to
    msg.set_content(body)
    if photo is not None:
        msg.add_attachment(photo, maintype="image", subtype="jpeg", filename="o-ga.jpg")
    return msg.as_bytes()


async def replies_to_citizen(server) -> list[EmailMessage]:
    found = []
    for _flags, raw in await server.messages():
        msg = message_from_bytes(raw, policy=policy.default)
        if CITIZEN in str(msg["To"]):
            found.append(msg)
    return found


async def wait_for_reply(server, count: int) -> EmailMessage:
    async def arrived() -> bool:
        return len(await replies_to_citizen(server)) >= count
    await eventually(arrived, seconds=30)
    return (await replies_to_citizen(server))[count - 1]


def text_of(msg: EmailMessage) -> str:
    body = msg.get_body(preferencelist=("plain",))
    assert body is not None, "no text/plain part"
    return str(body.get_content())


async def test_complete_report_in_one_mail_then_confirmation_in_the_thread(gateway, inbox):  # noqa: F811
    body = ("Kính gửi IOC,\nTôi là Nguyễn Văn An, SĐT 0912 345 678. Ổ gà lớn trước số 12 Hùng Vương, "
            "phường Hải Châu, rất nguy hiểm cho xe máy.\nTrân trọng.")
    await inbox.append(mail(1, body, photo=jpeg()))
    summary = await wait_for_reply(inbox, 1)
    assert summary["In-Reply-To"] == "<citizen-1@example.com>"
    assert str(summary["Subject"]) == "Re: Phản ánh ổ gà"
    assert "Nguyễn Văn An" in text_of(summary) and "0912 345 678" in text_of(summary)
    await inbox.append(mail(2, "Đồng ý\n\nVào 24/11/2026 IOC đã viết:\n> Vui lòng kiểm tra",
                            reply_to=str(summary["Message-ID"])))
    ack = await wait_for_reply(inbox, 2)
    [report] = await Store(gateway.database).reflections.all()
    assert report.code in text_of(ack) and report.channel == "email"
    assert report.citizen.email == CITIZEN or report.sender == CITIZEN
    assert len(report.photos) == 1 and report.field == "transport"
    assert "<citizen-2@example.com>" in str(ack["References"])


async def test_incomplete_report_is_completed_over_replies_in_the_thread(gateway, inbox):  # noqa: F811
    await inbox.append(mail(10, "Đèn đường trước số 5 Bạch Đằng, phường Hải Châu bị hỏng cả tuần."))
    asked = await wait_for_reply(inbox, 1)
    assert "hình ảnh" in text_of(asked)
    await inbox.append(mail(11, "Ảnh đây ạ. Tôi là Nguyễn Văn An, 0912345678",
                            reply_to=str(asked["Message-ID"]), photo=jpeg("blue")))
    summary = await wait_for_reply(inbox, 2)
    assert "Đèn đường" in text_of(summary) and "0912 345 678" in text_of(summary)
    assert await Store(gateway.database).reflections.all() == []


async def test_auto_reply_and_bounce_are_not_answered(gateway, inbox, database):  # noqa: F811
    for name in ("auto_reply.eml", "bounce_dsn.eml"):
        await inbox.append((FIXTURES / name).read_bytes())
    store = Store(database)

    async def handled() -> bool:
        return await store.inbound.count(status="ignored") == 2
    await eventually(handled, seconds=30)
    assert await store.outbox.all() == []
    assert await replies_to_citizen(inbox) == []
