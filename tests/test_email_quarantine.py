"""Mail that used to stop the inbox for everyone, through the real gateway, Dovecot, aiosmtpd
and embedded database.

A Message-ID or From over 10,000 characters, a mail too large to store as one document and a
mail the store refuses each end stored as failed with a reason (the refused one quarantined,
its raw mail kept in GridFS) while the mail behind it is answered; an iPhone mail over
EMAIL_MAX_MESSAGE_BYTES keeps its text and the photos that fit, and its author is told which
photo was not kept. The mail is shaped as Apple Mail and Gmail write it
(tests/fixtures/email/iphone_three_photos.eml, gmail_photo.eml); the photos are made here.
"""
from __future__ import annotations

import asyncio
import base64
import io
import logging
import random
import uuid
from contextlib import asynccontextmanager
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import formataddr
from typing import Any, AsyncIterator, Callable

import pytest
from PIL import Image
from pymongo import AsyncMongoClient
from pymongo.errors import DocumentTooLarge, ServerSelectionTimeoutError

from bots.gateway import Gateway
from store.database import Database, connect
from store.media import MediaStore
from store.repos import Store
from tests.chat import quang_nam
from tests.servers.dovecot import DovecotServer
from tests.test_email import (  # noqa: F401
    CITIZEN,
    FIXTURES,
    OUR,
    RecordingSink,
    all_seen,
    citizen_mail,
    dovecot,
    eventually,
    inbox,
    jpeg,
    make_channel,
    smtp,
)

AN = "nguyenvana@example.com"  # the iPhone user
BINH = "tranthib@example.com"  # the Gmail user
LONG = "x" * 10_050


def photo(seed: int, quality: int) -> bytes:
    """A full-size iPhone photo (4032×3024 JPEG); its size in MB grows with `quality`."""
    pixels = random.Random(seed).randbytes(4032 * 3024 * 3)
    out = io.BytesIO()
    Image.frombytes("RGB", (4032, 3024), pixels).save(out, "JPEG", quality=quality)
    return out.getvalue()


def shaped(name: str, **fill: str | bytes) -> bytes:
    """A fixture mail with CRLF line ends; {{KEY}} holds a header value or (bytes) a file in
    base64 lines of 76 characters, as mail programs write attachments."""
    text = (FIXTURES / name).read_text(encoding="ascii").replace("\r\n", "\n")
    for key, value in fill.items():
        if isinstance(value, bytes):
            value = base64.encodebytes(value).decode("ascii").rstrip("\n")
        text = text.replace("{{" + key + "}}", value)
    return text.replace("\n", "\r\n").encode("ascii")


def gmail(message_id: str, sender: str = formataddr(("Trần Thị Bình", BINH)),
          attachment: bytes | None = None) -> bytes:
    return shaped("gmail_photo.eml", MESSAGE_ID=message_id, FROM=sender,
                  **{"IMG_20261124_090512.jpg": attachment if attachment is not None else jpeg("green")})


@asynccontextmanager
async def running(database: Database, server: DovecotServer, smtp_port: int, **channel: Any
                  ) -> AsyncIterator[Gateway]:
    gateway = Gateway(database, quang_nam(), {"email": make_channel(server, smtp_port=smtp_port, poll_seconds=1.0,
                                                                     **channel)}, idle_seconds=0.1)
    await gateway.start()
    try:
        yield gateway
    finally:
        await gateway.stop()


async def replies_to(server: DovecotServer, address: str) -> list[EmailMessage]:
    found = []
    for _flags, raw in await server.messages():
        msg = message_from_bytes(raw, policy=policy.default)
        if address in str(msg["To"]) and OUR in str(msg["From"]):
            found.append(msg)
    return found


async def first_reply(server: DovecotServer, address: str) -> EmailMessage:
    async def arrived() -> bool:
        return bool(await replies_to(server, address))
    await eventually(arrived, seconds=60)
    return (await replies_to(server, address))[0]


async def failed_events(database: Database, count: int = 1) -> list[dict[str, Any]]:
    async def stored() -> bool:
        return await Store(database).inbound.count(status="failed") >= count
    await eventually(stored, seconds=30)
    return await database.db.inbound.find({"status": "failed"}).to_list(None)


async def citizen_events(database: Database) -> list[dict[str, Any]]:
    """Every stored mail but our own replies (which land in the same mailbox)."""
    return await database.db.inbound.find({"sender": {"$ne": OUR}}, {"payload.raw": 0}).to_list(None)


async def mailbox_flags(server: DovecotServer) -> dict[str, str]:
    """Message-ID (cut to 60 characters) → FLAGS of every mail in INBOX."""
    flags = {}
    for line, raw in await server.messages():
        head = raw.split(b"\r\n\r\n", 1)[0].decode("ascii", "replace")
        message_id = next((h.split(":", 1)[1].strip() for h in head.split("\r\n")
                           if h.lower().startswith("message-id:")), "")
        flags[message_id[:60]] = line
    return flags


def text_of(msg: EmailMessage) -> str:
    return msg.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]


def logged(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(record.getMessage() for record in caplog.records)


# ---- one bad mail no longer stops the inbox ------------------------------------------------

@pytest.mark.parametrize("poison", ["Message-ID", "From"])
async def test_poison_header_over_10000_characters_fails_alone_and_the_next_mail_is_answered(
        database, inbox, smtp, poison, caplog):  # noqa: F811
    caplog.set_level(logging.INFO)
    if poison == "Message-ID":
        bad = gmail(f"<{LONG}@mail.gmail.com>", sender=formataddr(("Nguyễn Văn An", AN)))
    else:
        bad = gmail("<CA+poison-from@mail.gmail.com>", sender=f"{LONG}@example.com")
    await inbox.append(bad)
    await inbox.append(gmail("<CA+good-1@mail.gmail.com>"))
    async with running(database, inbox, smtp.port) as gateway:
        reply = await first_reply(inbox, BINH)
        [failed] = await failed_events(database)
        await asyncio.sleep(2.5)  # two more polls: nothing is read again
        events = await citizen_events(database)
        flags = await mailbox_flags(inbox)
        to_an = await replies_to(inbox, AN)
    assert reply["In-Reply-To"] == "<CA+good-1@mail.gmail.com>"
    assert "0905 123 456" in text_of(reply) and "Trần Phú" in text_of(reply)
    assert failed["reason"] == f"malformed: {poison} header over 998 characters"
    assert len(failed["message_id"]) <= 500 and len(failed["sender"]) <= 254
    assert len(events) == 2  # each mail stored once: the reader did not loop on the bad one
    assert to_an == [] and all("\\Seen" in line for line in flags.values())
    assert LONG not in logged(caplog) and gateway is not None


async def test_poison_mail_too_large_for_one_document_keeps_its_text_and_the_reader_goes_on(
        database, inbox, smtp, caplog):  # noqa: F811
    # 9.6 MB photo (under MAX_PHOTO_BYTES): a 13 MB mail, stored whole it would be a 17.5 MB document
    caplog.set_level(logging.INFO)
    big = photo(seed=7, quality=86)
    assert 9_000_000 < len(big) < 10_000_000
    raw = gmail("<CA+big@mail.gmail.com>", attachment=big)
    assert len(raw) > 13_000_000
    await inbox.append(raw)
    await inbox.append(gmail("<CA+after-big@mail.gmail.com>", sender=formataddr(("Nguyễn Văn An", AN))))
    async with running(database, inbox, smtp.port, max_message_bytes=30_000_000) as gateway:
        told = await first_reply(inbox, BINH)
        answered = await first_reply(inbox, AN)
        events = await citizen_events(database)
        [stored] = [e for e in events if e["message_id"] == "<CA+big@mail.gmail.com>"]
        document = await database.db.inbound.find_one({"_id": stored["_id"]})
        flags = await mailbox_flags(inbox)
    text = text_of(told)
    assert told["In-Reply-To"] == "<CA+big@mail.gmail.com>"
    assert gateway.intake.say("problem", "vi", problem="mail_too_large", value="") in text
    assert gateway.intake.say("problem", "vi", problem="attachment_refused", value="IMG_20261124_090512.jpg") in text
    assert "hình ảnh" in text.lower()  # the bot asks for a photo again
    assert answered["In-Reply-To"] == "<CA+after-big@mail.gmail.com>"
    assert len(document["payload"]["raw"]) < 16_000_000 and document["payload"]["oversize"] == len(raw)
    assert len(events) == 2 and all("\\Seen" in line for line in flags.values())
    log = logged(caplog)
    assert base64.b64encode(big[5000:5600]).decode() not in log and "Trần Phú" not in log
    assert max(len(record.getMessage()) for record in caplog.records) < 2_000


async def test_quarantine_mail_the_store_refuses_keeps_it_in_gridfs_and_reads_on(
        db_server, inbox, smtp, caplog):  # noqa: F811
    caplog.set_level(logging.INFO)
    app = f"quarantine-{uuid.uuid4().hex[:8]}"  # the fail point hits this client only
    database = await connect(f"{db_server.uri}&appName={app}", f"t_{uuid.uuid4().hex[:12]}")
    admin: AsyncMongoClient = AsyncMongoClient(db_server.uri)
    refused = gmail("<CA+refused@mail.gmail.com>", sender=formataddr(("Nguyễn Văn An", AN)),
                    attachment=jpeg("blue"))
    try:
        async with running(database, inbox, smtp.port):
            await asyncio.sleep(1.0)  # connected and idling; the scheduler's first pass is over
            # the store refuses the next write ("object to insert too large"): the reader
            # quarantines the mail at once and goes on
            await admin.admin.command({"configureFailPoint": "failCommand", "mode": {"times": 1}, "data": {
                "failCommands": ["insert"], "appName": app, "errorCode": 10334}})
            await inbox.append(refused)
            await inbox.append(gmail("<CA+after-refused@mail.gmail.com>"))
            reply = await first_reply(inbox, BINH)
            [failed] = await failed_events(database)
            await asyncio.sleep(2.5)  # two more polls: nothing is read again
            events = await citizen_events(database)
            flags = await mailbox_flags(inbox)
            to_an = await replies_to(inbox, AN)
            kept = await MediaStore(database).load(failed["payload"]["raw_file"])
            in_mailbox = [raw for _, raw in await inbox.messages() if b"<CA+refused@" in raw]
    finally:
        await admin.admin.command({"configureFailPoint": "failCommand", "mode": "off"})
        await admin.close()
        await database.client.drop_database(database.db.name)
        await database.close()
    assert reply["In-Reply-To"] == "<CA+after-refused@mail.gmail.com>"
    assert failed["message_id"] == "<CA+refused@mail.gmail.com>" and failed["sender"] == AN
    assert failed["reason"].startswith("quarantined: ") and "code 10334" in failed["reason"]
    assert kept == in_mailbox[0]  # the whole raw mail, for the staff to look at
    excerpt = message_from_bytes(base64.b64decode(failed["payload"]["raw"]), policy=policy.default)
    assert str(excerpt["Subject"]) == "Cây xanh ngã đổ chắn đường Trần Phú"
    assert excerpt.get_content().startswith("Kính gửi IOC,\nTôi là Trần Thị Bình")
    assert len(events) == 2 and to_an == [] and all("\\Seen" in line for line in flags.values())
    assert "Trần Phú" not in logged(caplog)


# ---- a mail over EMAIL_MAX_MESSAGE_BYTES ---------------------------------------------------

async def test_oversize_iphone_mail_keeps_text_and_the_photos_that_fit_and_tells_the_citizen(
        database, inbox, smtp):  # noqa: F811
    photos = {"IMG_0001.jpeg": photo(1, 34), "IMG_0002.jpeg": photo(2, 40), "IMG_0003.jpeg": photo(3, 32)}
    assert all(3_500_000 < len(p) < 4_500_000 for p in photos.values())
    raw = shaped("iphone_three_photos.eml", **photos)
    assert len(raw) > 15_000_000  # over the 11 MB default; any two photos fit in it, three do not
    await inbox.append(raw)
    async with running(database, inbox, smtp.port) as gateway:  # EMAIL_MAX_MESSAGE_BYTES' default
        reply = await first_reply(inbox, AN)
        files = await database.db["media.files"].find({"filename": {"$regex": "^email-<6C1F3C2E"}}).to_list(None)
        kept = {await MediaStore(database).load(str(f["_id"])) for f in files}
    text = text_of(reply)
    assert reply["In-Reply-To"] == "<6C1F3C2E-2B5A-4A8E-9E1D-0F3B7A9C4D21@example.com>"
    assert gateway.intake.say("problem", "vi", problem="mail_too_large", value="") in text
    assert gateway.intake.say("problem", "vi", problem="attachment_refused", value="IMG_0002.jpeg") in text
    assert "IMG_0001" not in text and "IMG_0003" not in text
    assert "Hình ảnh: 2 ảnh" in text and "0912 345 678" in text and "Hùng Vương" in text
    assert kept == {photos["IMG_0001.jpeg"], photos["IMG_0003.jpeg"]}


# ---- the reader alone, with a sink that fails as the store would ---------------------------

class RefusingSink(RecordingSink):
    """Records every call; raises what `refuse` returns for a call (None: stores it)."""

    def __init__(self, refuse: Callable[[str, dict[str, Any], int], BaseException | None]) -> None:
        super().__init__()
        self.refuse = refuse
        self.attempts: list[tuple[str, bool]] = []  # (message id, quarantined?) of every call

    async def __call__(self, message_id: str, sender: str, payload: dict[str, Any]) -> bool:
        self.attempts.append((message_id, "quarantined" in payload))
        error = self.refuse(message_id, payload, len(self.attempts))
        if error is not None:
            raise error
        return await super().__call__(message_id, sender, payload)


def refusing_until_quarantined(message_id: str, error: BaseException) -> RefusingSink:
    """A sink that refuses `message_id` with `error` until it comes as a quarantined event."""
    return RefusingSink(lambda mid, payload, n: error if mid == message_id and "quarantined" not in payload
                        else None)


async def read_all(server: DovecotServer, sink: RecordingSink, **channel: Any) -> None:
    reader = make_channel(server, poll_seconds=1.0, **channel)
    await reader.start(sink)
    try:
        await eventually(lambda: all_seen(server), seconds=30)
    finally:
        await reader.stop()


async def test_quarantine_never_for_a_store_that_is_down(inbox):  # noqa: F811
    await inbox.append(citizen_mail(30))
    sink = RefusingSink(lambda mid, payload, n: ServerSelectionTimeoutError("no server") if n <= 5 else None)
    await read_all(inbox, sink)
    assert len(sink.attempts) == 6  # more than MAX_FAILURES: a store that is away counts for nothing
    assert sink.new_ids() == ["<report-30@example.com>"] and not any(q for _, q in sink.attempts)


async def test_quarantine_after_three_unexplained_failures_then_the_next_mail(inbox):  # noqa: F811
    await inbox.append(citizen_mail(31))
    await inbox.append(citizen_mail(32))
    sink = refusing_until_quarantined("<report-31@example.com>", RuntimeError("the store said no"))
    await read_all(inbox, sink)
    assert sink.attempts == [("<report-31@example.com>", False)] * 3 + [
        ("<report-31@example.com>", True), ("<report-32@example.com>", False)]
    quarantined = sink.calls[0][2]
    assert quarantined["quarantined"] == "RuntimeError: the store said no" and "raw_file" not in quarantined
    assert len(quarantined["raw"]) < 10_000 and sink.new_ids() == ["<report-31@example.com>", "<report-32@example.com>"]


async def test_quarantine_at_once_for_a_document_the_store_can_never_take(inbox):  # noqa: F811
    await inbox.append(citizen_mail(33, photo=jpeg()))
    await inbox.append(citizen_mail(34))
    sink = refusing_until_quarantined("<report-33@example.com>",
                                      DocumentTooLarge("BSON document too large (17365662 bytes)"))
    await read_all(inbox, sink)
    # refused for good (a group write refuses each event alone): quarantined at once
    assert sink.attempts == [("<report-33@example.com>", False)] + [
        ("<report-33@example.com>", True), ("<report-34@example.com>", False)]
    assert sink.calls[0][2]["quarantined"] == "DocumentTooLarge: BSON document too large (17365662 bytes)"


async def test_oversize_mail_names_the_photo_it_left_out_in_its_own_script(inbox):  # noqa: F811
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = f"Nguyễn Văn A <{CITIZEN}>", OUR, "Ngập nước"
    mail["Message-ID"] = "<report-35@example.com>"
    mail.set_content("Đường Lê Lợi ngập sâu 40cm.\nTên: Nguyễn Văn A, SĐT 0905123456")
    mail.add_attachment(jpeg("gray") * 40, maintype="image", subtype="jpeg", filename="Ảnh hiện trường.jpg")
    mail.add_attachment(jpeg("blue"), maintype="image", subtype="jpeg", filename="nhỏ.jpg")
    await inbox.append(mail.as_bytes())
    sink = RecordingSink()
    await read_all(inbox, sink, max_message_bytes=20_000)
    [(message_id, sender, payload, _)] = sink.calls
    [(name, size)] = [item.rsplit(":", 1) for item in payload["dropped"]]
    assert name == "Ảnh hiện trường.jpg" and abs(int(size) - len(jpeg("gray") * 40)) < 100  # from the encoded size
    inbound = make_channel(inbox).parse(message_id, sender, payload)
    assert inbound is not None and "Đường Lê Lợi ngập sâu 40cm." in inbound.text
    assert [m.filename for m in inbound.media] == ["nhỏ.jpg"] and inbound.rejected_media == ["mail_too_large"]
    assert inbound.context["refused_attachments"] == payload["dropped"][0]
