"""The e-mail channel against a real Dovecot (IMAP) and a real aiosmtpd (SMTP) on loopback.

Reading: unseen mail reaches the sink once and is flagged \\Seen only afterwards, also across
a server restart. Parsing: the stored fixtures in tests/fixtures/email. Sending: a reply goes
through aiosmtpd into the Dovecot mailbox and is read back over IMAP.
"""
from __future__ import annotations

import asyncio
import base64
import io
import time
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from channels.base import RetryLater, Unreachable
from channels.email import EmailChannel
from normalizer.messages import Outbound
from tests.servers.dovecot import DovecotServer, free_port
from tests.servers.smtp import SmtpServer

FIXTURES = Path(__file__).parent / "fixtures" / "email"
OUR = "phananh@ioc.example.vn"
CITIZEN = "nguyenvana@example.com"


@pytest.fixture(scope="module")
def dovecot():
    server = DovecotServer(user=OUR)  # fails loudly when dovecot is not installed
    server.start()
    yield server
    server.remove()


@pytest.fixture(scope="module")
def smtp(dovecot):
    server = SmtpServer(dovecot)
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def inbox(dovecot):
    await dovecot.clear()
    return dovecot


PHOTOS: dict[str, bytes] = {}


async def load_photo(file_id: str) -> bytes:
    return PHOTOS[file_id]


def make_channel(dovecot: DovecotServer, smtp_port: int = 0, **overrides: Any) -> EmailChannel:
    settings: dict[str, Any] = dict(imap_host=dovecot.host, imap_port=dovecot.port, imap_user=dovecot.user,
                    imap_password=dovecot.password, imap_ssl=False, smtp_host="127.0.0.1",
                    smtp_port=smtp_port or free_port(), smtp_user=None, smtp_password=None,
                    smtp_security="none", address=OUR, display_name="Trung tâm IOC Đà Nẵng",
                    media_loader=load_photo, poll_seconds=30.0, reconnect_min_seconds=0.1,
                    reconnect_max_seconds=1.0, imap_timeout=10.0, smtp_timeout=5.0)
    settings.update(overrides)
    return EmailChannel(**settings)


class RecordingSink:
    """Stores like the real sink: True the first time a message id is seen, False after."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict[str, Any], bool]] = []

    async def __call__(self, message_id: str, sender: str, payload: dict[str, Any]) -> bool:
        new = message_id not in {call[0] for call in self.calls}
        self.calls.append((message_id, sender, payload, new))
        return new

    def new_ids(self) -> list[str]:
        return [call[0] for call in self.calls if call[3]]


async def eventually(check, seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.1)


def jpeg(color: str = "red") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), color).save(out, "JPEG")
    return out.getvalue()


def citizen_mail(number: int, body: str = "Đèn đường hỏng", photo: bytes | None = None) -> bytes:
    mail = EmailMessage()
    mail["From"] = f"Nguyễn Văn A <{CITIZEN}>"
    mail["To"] = OUR
    mail["Subject"] = f"Phản ánh số {number}"
    mail["Message-ID"] = f"<report-{number}@example.com>"
    mail.set_content(f"{body}\nTên: Nguyễn Văn A, SĐT 0905123456, 12 Lê Lợi")
    if photo is not None:
        mail.add_attachment(photo, maintype="image", subtype="jpeg", filename="den.jpg")
    return mail.as_bytes()


def fixture_payload(name: str) -> dict[str, Any]:
    return {"raw": base64.b64encode((FIXTURES / name).read_bytes()).decode(), "uid": 1}


async def all_seen(dovecot: DovecotServer) -> bool:
    try:
        messages = await dovecot.messages()
    except (OSError, asyncio.TimeoutError):
        return False  # the server is being restarted by the test
    return bool(messages) and all("\\Seen" in flags for flags, _ in messages)


# ---- reading ---------------------------------------------------------------------------

async def test_report_with_photo_reaches_sink_once_then_seen(inbox):
    photo = jpeg()
    await inbox.append(citizen_mail(1, photo=photo))
    flags_at_sink: list[str] = []

    class CheckingSink(RecordingSink):
        async def __call__(self, message_id, sender, payload):
            flags_at_sink.extend(flags for flags, _ in await inbox.messages())
            return await super().__call__(message_id, sender, payload)

    sink, channel = CheckingSink(), make_channel(inbox, poll_seconds=1.0)
    await channel.start(sink)
    try:
        await eventually(lambda: all_seen(inbox))
        await asyncio.sleep(2.5)  # two more polls: nothing is handed over again
    finally:
        await channel.stop()
    assert [(c[0], c[1]) for c in sink.calls] == [("<report-1@example.com>", CITIZEN)]
    assert flags_at_sink and "\\Seen" not in flags_at_sink[0]
    inbound = channel.parse(*sink.calls[0][:3])
    assert inbound is not None and "Đèn đường hỏng" in inbound.text
    assert [m.filename for m in inbound.media] == ["den.jpg"]
    assert await channel.fetch_media(inbound.media[0]) == photo


async def test_idle_push_brings_new_mail_before_the_poll(inbox):
    sink, channel = RecordingSink(), make_channel(inbox, poll_seconds=60.0)
    await channel.start(sink)
    try:
        await asyncio.sleep(1.0)  # connected and idling
        await inbox.append(citizen_mail(2))
        await eventually(lambda: all_seen(inbox), seconds=10.0)
    finally:
        await channel.stop()
    assert sink.new_ids() == ["<report-2@example.com>"]


async def test_oversize_message_is_handed_over_with_its_text_and_without_the_photo(inbox):
    await inbox.append(citizen_mail(3, photo=jpeg() * 50))
    sink, channel = RecordingSink(), make_channel(inbox, max_message_bytes=10_000)
    await channel.start(sink)
    try:
        await eventually(lambda: all_seen(inbox))
    finally:
        await channel.stop()
    payload = sink.calls[0][2]
    assert payload["oversize"] > 10_000 and len(base64.b64decode(payload["raw"])) < 2_000
    inbound = channel.parse(sink.calls[0][0], CITIZEN, payload)
    assert inbound is not None and inbound.media == [] and "Đèn đường hỏng" in inbound.text
    assert inbound.context["oversize_message"] == str(payload["oversize"])
    assert inbound.context["refused_attachments"].startswith("den.jpg:")
    assert inbound.rejected_media == ["mail_too_large"]  # the citizen is told (templates/*/problem.txt)


async def test_sink_failure_leaves_mail_unseen_until_the_store_is_back(inbox):
    await inbox.append(citizen_mail(4))
    down = True

    class FlakySink(RecordingSink):
        async def __call__(self, message_id, sender, payload):
            if down:
                raise ConnectionError("database down")
            return await super().__call__(message_id, sender, payload)

    sink, channel = FlakySink(), make_channel(inbox, poll_seconds=1.0)
    await channel.start(sink)
    try:
        await asyncio.sleep(1.5)
        assert not await all_seen(inbox)
        down = False
        await eventually(lambda: all_seen(inbox))
    finally:
        await channel.stop()
    assert sink.new_ids() == ["<report-4@example.com>"]


async def test_server_restart_mid_read_loses_nothing_and_repeats_nothing(inbox):
    for number in range(10, 15):
        await inbox.append(citizen_mail(number))
    restarted: list[asyncio.Task] = []

    class RestartingSink(RecordingSink):
        async def __call__(self, message_id, sender, payload):
            new = await super().__call__(message_id, sender, payload)
            if message_id == "<report-12@example.com>" and not restarted:
                await asyncio.to_thread(inbox.stop)  # before the channel can set \Seen
                await asyncio.sleep(1.0)  # the master is gone; let it end the imap processes too
                restarted.append(asyncio.create_task(self.start_later()))
            return new

        async def start_later(self):
            await asyncio.sleep(1.5)
            await asyncio.to_thread(inbox.start)

    sink, channel = RestartingSink(), make_channel(inbox, poll_seconds=1.0)
    await channel.start(sink)
    try:
        await eventually(lambda: all_seen(inbox), seconds=30.0)
    finally:
        await channel.stop()
        await asyncio.gather(*restarted)
    expected = [f"<report-{n}@example.com>" for n in range(10, 15)]
    assert sorted(sink.new_ids()) == expected  # each once as new
    assert [c[0] for c in sink.calls].count("<report-12@example.com>") == 2  # re-read, not new
    assert len(await inbox.messages()) == 5


# ---- parsing ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def parser() -> EmailChannel:
    return EmailChannel(imap_host="unused", imap_port=0, imap_user="", imap_password="", imap_ssl=False,
                        smtp_host="unused", smtp_port=0, smtp_user=None, smtp_password=None,
                        address=OUR, display_name="IOC", media_loader=load_photo,
                        max_message_bytes=64_000_000)


def parse(parser: EmailChannel, name: str):
    return parser.parse("id-1", "x@example.com", fixture_payload(name))


def test_plain_text_with_vietnamese_subject(parser):
    inbound = parse(parser, "plain.eml")
    assert inbound.sender == CITIZEN and inbound.profile_name == "Nguyen Van A"
    assert inbound.chat_kind == "email" and inbound.channel == "email"
    assert inbound.text.startswith("Đèn đường hỏng\n\nĐèn đường trước số 12 Lê Lợi")
    assert inbound.context["message_id"] == "<plain-1@example.com>"


def test_html_only_mail_becomes_text_without_scripts_or_styles(parser):
    text = parse(parser, "html_only.eml").text
    assert "Rác thải đổ trộm ở đường Nguyễn Văn Linh." in text
    assert "Tên: Trần Thị B\nĐT: 0912345678" in text
    assert "alert" not in text and "color" not in text and "ignored title" not in text


def test_rfc2047_subject_and_sender_name(parser):
    inbound = parse(parser, "rfc2047.eml")
    assert inbound.profile_name == "Lê Thị Hồng Nhung"
    assert inbound.context["subject"] == "Cây xanh ngã đổ chắn đường Trần Phú"
    assert inbound.text == "Cây xanh ngã đổ chắn đường Trần Phú\n\nCây to ngã lúc 5 giờ sáng, chưa ai dọn."


def test_gmail_vietnamese_reply_keeps_only_new_words_and_thread(parser):
    inbound = parse(parser, "reply_gmail_vi.eml")
    assert inbound.text == "Vị trí ở ngay ngã tư Lê Lợi - Hùng Vương."  # "Re: PA-…" adds nothing
    assert inbound.context["in_reply_to"] == "<bot-1@ioc.example.vn>"
    assert inbound.context["thread_root"] == "<first-1@mail.gmail.com>"


@pytest.mark.parametrize("name, words", [
    # replies: the thread's subject is not repeated into the conversation
    ("reply_outlook_vi.eml", "Nước đã rút một phần nhưng vẫn ngập 30cm."),
    ("reply_outlook_en.eml", "The pothole is in front of the school."),
])
def test_outlook_quoted_blocks_are_cut(parser, name, words):
    assert parse(parser, name).text == words


def test_pdf_named_jpg_is_still_a_media_ref(parser):
    # The channel trusts the declared type; normalizer.media rejects it by content (not_an_image).
    inbound = parse(parser, "pdf_as_jpg.eml")
    (ref,) = inbound.media
    assert (ref.declared_type, ref.filename) == ("image/jpeg", "anh.jpg")


async def test_pdf_named_jpg_bytes_come_back_unchanged(parser):
    (ref,) = parse(parser, "pdf_as_jpg.eml").media
    assert (await parser.fetch_media(ref)).startswith(b"%PDF-1.4")


def test_30_mb_attachment_is_refused_with_a_note(parser):
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = CITIZEN, OUR, "Video"
    mail.set_content("Gửi video hiện trường")
    mail.add_attachment(b"\0" * 30_000_000, maintype="image", subtype="jpeg", filename="lon.jpg")
    mail.add_attachment(jpeg(), maintype="image", subtype="jpeg", filename="nho.jpg")
    payload = {"raw": base64.b64encode(mail.as_bytes()).decode(), "uid": 9}
    inbound = parser.parse("id-30mb", CITIZEN, payload)
    assert [m.filename for m in inbound.media] == ["nho.jpg"]
    assert inbound.context["refused_attachments"] == "lon.jpg:30000000"


@pytest.mark.parametrize("name, kind", [
    ("auto_reply.eml", "auto_reply"), ("out_of_office.eml", "auto_reply"),
    ("bounce_dsn.eml", "bounce"), ("list.eml", "list"), ("own.eml", "own"),
    ("malformed.eml", "malformed"), ("no_from.eml", "malformed"), ("plain.eml", "citizen"),
])
def test_classify_and_ignore(parser, name, kind):
    assert parser.classify_mail(fixture_payload(name)) == kind
    assert (parse(parser, name) is None) == (kind != "citizen")


def test_bounce_names_the_failed_recipient(parser):
    assert parser.undeliverable(fixture_payload("bounce_dsn.eml")) == "gone.user@example.com"
    assert parser.undeliverable(fixture_payload("plain.eml")) is None


def test_unreadable_payload_is_malformed_not_an_exception(parser):
    assert parser.classify_mail({"raw": "not base64 !!"}) == "malformed"
    assert parser.parse("id-x", "", {}) is None


def test_windows_1258_and_unknown_charsets_decode(parser):
    assert parse(parser, "windows1258.eml").text.endswith("Cống thoát nước bị tắc ở hẻm 45.")
    assert "broken" in parse(parser, "unknown_charset.eml").text


# ---- sending ---------------------------------------------------------------------------

async def test_reply_arrives_in_thread_with_photo(inbox, smtp):
    PHOTOS["photo-1"] = photo = jpeg("blue")
    channel = make_channel(inbox, smtp_port=smtp.port)
    reply = Outbound(text="Cảm ơn anh đã phản ánh. Mã: PA-2024-000123", photos=["photo-1"],
                     context={"subject": "Đèn đường hỏng", "in_reply_to": "<plain-1@example.com>",
                              "references": "<root@example.com>"})
    message_id = await channel.send(f"Nguyễn Văn A <{CITIZEN}>", reply)
    await eventually(lambda: _has_messages(inbox))
    ((_, raw),) = await inbox.messages()
    mail = message_from_bytes(raw, policy=policy.default)
    assert message_id is not None and mail["Message-ID"] == message_id and message_id.endswith("@ioc.example.vn>")
    assert mail["Subject"] == "Re: Đèn đường hỏng"
    assert mail["In-Reply-To"] == "<plain-1@example.com>"
    assert mail["References"] == "<root@example.com> <plain-1@example.com>"
    assert mail["Auto-Submitted"] == "auto-replied"
    assert mail["From"].addresses[0].display_name == "Trung tâm IOC Đà Nẵng"
    body = mail.get_body(("plain",))
    assert body is not None and "PA-2024-000123" in body.get_content()
    (attachment,) = mail.iter_attachments()
    assert attachment.get_content_type() == "image/jpeg" and attachment.get_content() == photo
    assert channel.classify_mail({"raw": base64.b64encode(raw).decode()}) == "own"


async def test_re_prefix_is_added_once(inbox, smtp):
    channel = make_channel(inbox, smtp_port=smtp.port)
    context = {"subject": "RE: Đèn đường hỏng", "in_reply_to": "<x@example.com>"}
    await channel.send(CITIZEN, Outbound(text="Đã nhận", context=context))
    await eventually(lambda: _has_messages(inbox))
    ((_, raw),) = await inbox.messages()
    assert message_from_bytes(raw, policy=policy.default)["Subject"] == "RE: Đèn đường hỏng"


async def test_smtp_down_is_retry_later(inbox):
    channel = make_channel(inbox)  # nothing listens on the SMTP port
    with pytest.raises(RetryLater):
        await channel.send(CITIZEN, Outbound(text="Xin chào"))


async def test_refused_recipient_is_unreachable(inbox, smtp):
    smtp.handler.refuse.add("gone.user@example.com")
    channel = make_channel(inbox, smtp_port=smtp.port)
    with pytest.raises(Unreachable):
        await channel.send("gone.user@example.com", Outbound(text="Xin chào"))


async def _has_messages(dovecot: DovecotServer) -> bool:
    return bool(await dovecot.messages())
