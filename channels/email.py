"""The e-mail transport: an IMAP reader for the citizens' inbox and an SMTP sender.

`bots/gateway.py` builds one `EmailChannel` (through `channels/registry.py`), binds it to the
database (`bind`: where quarantined mail is kept) and calls `start(sink)`: every unseen INBOX
message is handed to the sink as {"raw": base64 RFC 822, "uid": n} (its text and the photos that
fit, plus "oversize" and "dropped", when too big) and flagged \\Seen only after the sink returned,
so a crash never loses mail; a mail that can never be stored is quarantined and the reader goes
on (`channels/email_intake.py`). The pipeline calls `parse`/`fetch_media`/`skip_reason` on the
stored payload, the outbox worker calls `send`. MIME reading lives in `channels/email_parse.py`.
"""
from __future__ import annotations

import asyncio
import io
import logging
import re
import ssl
from email.message import EmailMessage
from email.utils import formataddr, formatdate, make_msgid, parseaddr
from typing import Any, Awaitable, Callable, Literal

import aiosmtplib
from aioimaplib import aioimaplib
from PIL import Image, UnidentifiedImageError

from channels import email_parse
from channels.base import Channel, EventSink, PermanentFailure, RetryLater, Unreachable
from channels.email_envelope import failure_reason
from channels.email_intake import MailIntake
from channels.email_oversize import Fetch
from normalizer.messages import Inbound, MediaRef, Outbound
from normalizer.texts import Texts
from store.database import Database
from store.errors import describe
from store.media import MediaStore

log = logging.getLogger(__name__)

MediaLoader = Callable[[str], Awaitable[bytes]]
_IMAGE_TYPES = {"JPEG": ("jpeg", "jpg"), "PNG": ("png", "png"), "WEBP": ("webp", "webp"), "GIF": ("gif", "gif")}
_REPLIED = re.compile(r"^\s*(re|tl|trả lời)\s*:", re.IGNORECASE)
_GONE = {550, 551, 553}  # mailbox unavailable / not local / name not allowed


class ConnectionLost(ConnectionError):
    """The IMAP server closed the connection while a command was waiting."""


class EmailChannel(Channel):
    """One mailbox: citizens write to `address`; replies go out from it, in their thread."""

    name = "email"

    def __init__(self, *, imap_host: str, imap_port: int, imap_user: str, imap_password: str,
                 imap_ssl: bool, smtp_host: str, smtp_port: int, smtp_user: str | None,
                 smtp_password: str | None,
                 smtp_security: Literal["starttls", "ssl", "none"] = "starttls",
                 address: str, display_name: str, media_loader: MediaLoader,
                 max_attachment_bytes: int = 10_000_000, max_message_bytes: int = 11_000_000,
                 poll_seconds: float = 60.0, default_subject: str | None = None,
                 imap_timeout: float = 60.0, smtp_timeout: float = 60.0,
                 reconnect_min_seconds: float = 1.0, reconnect_max_seconds: float = 300.0,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        if smtp_security not in ("starttls", "ssl", "none"):
            raise ValueError(f"smtp_security must be starttls, ssl or none, not {smtp_security!r}")
        self.imap = dict(host=imap_host, port=imap_port, user=imap_user, password=imap_password)
        self.imap_ssl, self.imap_timeout = imap_ssl, imap_timeout
        self.smtp: dict[str, Any] = dict(hostname=smtp_host, port=smtp_port, username=smtp_user or None,
                         password=smtp_password or None, timeout=smtp_timeout,
                         use_tls=smtp_security == "ssl", start_tls=smtp_security == "starttls")
        self.address, self.display_name = address.lower(), display_name
        self.media_loader = media_loader
        self.default_subject = default_subject or Texts().render("email_subject")
        self.max_attachment_bytes, self.max_message_bytes = max_attachment_bytes, max_message_bytes
        self._intake = MailIntake(max_message_bytes, max_attachment_bytes)
        self.poll_seconds = poll_seconds
        self.reconnect = (reconnect_min_seconds, reconnect_max_seconds)
        self.ssl_context = ssl_context
        self._delay = reconnect_min_seconds
        self._reader: asyncio.Task | None = None

    # ---- receiving -------------------------------------------------------------------

    def bind(self, database: Database) -> None:
        """Called by the gateway before `start`: quarantined raw mail is kept in its GridFS."""
        self._intake.media = MediaStore(database)

    async def start(self, sink: EventSink) -> None:
        """Start the inbox reader task (IDLE where offered, else polling); returns at once."""
        self._reader = asyncio.create_task(self._read_forever(sink), name="email-imap-reader")

    async def stop(self) -> None:
        """Stop reading; a message being handed to the sink stays unseen and is read again."""
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
            self._reader = None

    async def _read_forever(self, sink: EventSink) -> None:
        while True:
            try:
                await self._session(sink)
            except Exception as exc:  # noqa: BLE001 - the reader must outlive any failure
                log.warning("e-mail reader: %s; reconnecting in %.1fs", describe(exc), self._delay)
            await asyncio.sleep(self._delay)
            self._delay = min(self._delay * 2, self.reconnect[1])

    async def _session(self, sink: EventSink) -> None:
        """One IMAP connection: log in, drain unseen mail, then wait (IDLE or sleep), repeat."""
        lost = asyncio.Event()
        context = (self.ssl_context or ssl.create_default_context()) if self.imap_ssl else None
        imap = aioimaplib.IMAP4(host=self.imap["host"], port=self.imap["port"], timeout=self.imap_timeout,
                                conn_lost_cb=lambda exc: lost.set(), ssl_context=context)
        guard = _Guard(lost)
        try:
            await guard(imap.wait_hello_from_server())
            _ok(await guard(imap.login(self.imap["user"], self.imap["password"])), "LOGIN")
            await guard(imap.protocol.capability())  # servers may offer IDLE only after login
            _ok(await guard(imap.select("INBOX")), "SELECT")
            while True:
                await self._drain(imap, sink, guard)
                self._delay = self.reconnect[0]  # only a full drain proves server and sink work
                await self._wait_for_mail(imap, guard)
        finally:
            for task in [*imap.tasks, *imap.protocol.tasks]:
                task.cancel()  # an IDLE left waiting on a dead connection never ends by itself
            if imap.protocol.transport is not None:
                imap.protocol.transport.close()

    async def _drain(self, imap: aioimaplib.IMAP4, sink: EventSink, guard: _Guard) -> None:
        response = _ok(await guard(imap.uid_search("UNSEEN", charset=None)), "SEARCH")
        uids = [tok for line in response.lines[:1] for tok in line.decode().split() if tok.isdigit()]
        for uid in uids:  # a mail that cannot be stored is quarantined by the intake, never retried forever
            if await self._intake.hand_over(uid, _fetcher(imap, guard, uid), sink):
                _ok(await guard(imap.uid("store", uid, "+FLAGS.SILENT", r"(\Seen)")), "STORE")

    async def _wait_for_mail(self, imap: aioimaplib.IMAP4, guard: _Guard) -> None:
        """Until the server pushes news (IDLE) or `poll_seconds` pass, whichever comes first."""
        if not imap.has_capability("IDLE"):
            await guard(asyncio.sleep(self.poll_seconds))
            return
        idle = await guard(imap.idle_start(timeout=self.poll_seconds))
        await guard(imap.wait_server_push(timeout=self.poll_seconds + self.imap_timeout))
        imap.idle_done()
        await guard(asyncio.wait_for(idle, self.imap_timeout))

    # ---- the stored payload ----------------------------------------------------------

    def parse(self, message_id: str, sender: str, payload: dict[str, Any]) -> Inbound | None:
        """Citizen mail as an Inbound (see email_parse.parse_mail); None for everything else."""
        return email_parse.parse_mail(message_id, payload, self.address, self.max_attachment_bytes)

    def classify_mail(self, payload: dict[str, Any]) -> email_parse.MailKind:
        """Why `parse` returned None: own / auto_reply / bounce / list / malformed (or citizen)."""
        return email_parse.classify_mail(payload, self.address)

    def skip_reason(self, payload: dict[str, Any]) -> tuple[str, str]:
        """Pipeline hook for a mail `parse` dropped: malformed and quarantined ones fail with
        their reason (e.g. "malformed: Message-ID header over 998 characters"), the rest are
        ignored."""
        kind = self.classify_mail(payload)
        if kind in ("malformed", "quarantined"):
            return "failed", failure_reason(payload)
        return "ignored", kind

    def undeliverable(self, payload: dict[str, Any]) -> str | None:
        """Pipeline hook: for a bounce, the address that could not be delivered."""
        return email_parse.bounced_recipient(payload)

    async def fetch_media(self, media: MediaRef) -> bytes:
        """The attachment bytes: `parse` put them in the ref itself (a data: URL)."""
        return email_parse.media_bytes(media.ref)

    # ---- sending ---------------------------------------------------------------------

    async def send(self, address: str, message: Outbound) -> str | None:
        """Send one reply by SMTP in the citizen's thread; return our Message-ID."""
        mail = await self.compose(address, message)
        try:
            await aiosmtplib.send(mail, **self.smtp)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            raise _refused(exc.recipients[0].code, exc.recipients[0].message) from exc
        except aiosmtplib.SMTPRecipientRefused as exc:
            raise _refused(exc.code, exc.message) from exc
        except aiosmtplib.SMTPAuthenticationError as exc:
            raise RetryLater(f"SMTP login refused: {exc.code} {exc.message}", after=300) from exc
        except aiosmtplib.SMTPResponseException as exc:
            kind = PermanentFailure if exc.code >= 500 else RetryLater
            raise kind(f"SMTP {exc.code} {exc.message}") from exc
        except (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError) as exc:
            raise RetryLater(f"SMTP unavailable: {type(exc).__name__}: {exc}") from exc
        return mail["Message-ID"]

    async def compose(self, address: str, message: Outbound) -> EmailMessage:
        """The MIME message for `send`: threading headers, UTF-8 text, photos attached."""
        to = parseaddr(address)[1]
        if "@" not in to or any(c in address for c in "\r\n"):
            raise Unreachable(f"not an e-mail address: {address!r}")
        ctx = message.context
        # The context is the citizen's message being answered (Inbound.context) or explicit headers.
        in_reply_to = ctx.get("message_id") or ctx.get("in_reply_to", "")
        references = ctx.get("references", "").split()
        if in_reply_to and in_reply_to not in references:
            references.append(in_reply_to)
        subject = ctx.get("subject") or self.default_subject
        if in_reply_to and not _REPLIED.match(subject):
            subject = f"Re: {subject}"
        mail = EmailMessage()
        mail["From"] = formataddr((self.display_name, self.address))
        mail["To"] = to
        mail["Subject"] = subject
        mail["Date"] = formatdate(localtime=False)
        mail["Message-ID"] = make_msgid(domain=self.address.rsplit("@", 1)[-1])
        if in_reply_to:
            mail["In-Reply-To"] = in_reply_to
        if references:
            mail["References"] = " ".join(references)
        if ctx.get("reply_to"):  # agency mail: the signed plus-address of replies/tokens.py
            mail["Reply-To"] = ctx["reply_to"]
        mail["Auto-Submitted"] = "auto-replied" if in_reply_to else "auto-generated"
        mail.set_content(_render_text(message), charset="utf-8")
        for number, file_id in enumerate(message.photos, start=1):
            await self._attach(mail, number, file_id)
        return mail

    async def _attach(self, mail: EmailMessage, number: int, file_id: str) -> None:
        try:
            data = await self.media_loader(file_id)
        except LookupError as exc:
            raise PermanentFailure(f"photo {file_id} not found") from exc
        except Exception as exc:  # noqa: BLE001 - the media store is down: try again later
            raise RetryLater(f"photo {file_id} unavailable: {exc}") from exc
        maintype, subtype, extension = _image_type(data)
        mail.add_attachment(data, maintype=maintype, subtype=subtype, filename=f"anh-{number}.{extension}")


class _Guard:
    """Awaits an IMAP step but gives up at once when the connection drops (aioimaplib waits)."""

    def __init__(self, lost: asyncio.Event) -> None:
        self.lost = lost

    async def __call__(self, step: Awaitable[Any]) -> Any:
        task, lost = asyncio.ensure_future(step), asyncio.ensure_future(self.lost.wait())
        try:
            await asyncio.wait({task, lost}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            lost.cancel()
            if not task.done():
                task.cancel()
        if not task.done() or task.cancelled():
            raise ConnectionLost("IMAP connection lost")
        return task.result()


def _fetcher(imap: aioimaplib.IMAP4, guard: _Guard, uid: str) -> Fetch:
    async def fetch(items: str) -> list[bytes | bytearray]:
        return _ok(await guard(imap.uid("fetch", uid, items)), "FETCH").lines
    return fetch


def _ok(response: aioimaplib.Response, command: str) -> aioimaplib.Response:
    if response.result != "OK":
        raise aioimaplib.Error(f"{command} failed: {response.result} {response.lines[-1:]!r}")
    return response


def _refused(code: int, text: str) -> Exception:
    if code < 500:
        return RetryLater(f"recipient deferred: {code} {text}")
    kind = Unreachable if code in _GONE else PermanentFailure
    return kind(f"recipient refused: {code} {text}")


def _render_text(message: Outbound) -> str:
    """E-mail has no buttons: their labels become lines the citizen can answer with."""
    lines = [message.text] + [f"• {button.label}" for button in message.buttons]
    return "\n".join(lines).strip() + "\n"


def _image_type(data: bytes) -> tuple[str, str, str]:
    """(maintype, subtype, file extension) of a stored photo, sniffed by Pillow."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            subtype, extension = _IMAGE_TYPES[img.format or ""]
            return "image", subtype, extension
    except (UnidentifiedImageError, OSError, KeyError):
        return "application", "octet-stream", "bin"
