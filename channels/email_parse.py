"""Reading a stored e-mail: who sent it, what kind of mail it is, the citizen's own words.

`channels/email.py` calls `parse_mail` when the pipeline parses a stored event; the pipeline
calls `classify_mail` and `bounced_recipient` (through the channel) to explain why a mail was
ignored and to mark dead addresses. Nothing here raises on bad input: broken MIME, unknown
charsets, missing or absurdly long headers become "malformed"; a mail the reader could not
store comes as "quarantined" (`channels/email_intake.py`). Naming a raw mail for the store and
the reasons of failed mail are in `channels/email_envelope.py`.
"""
from __future__ import annotations

import base64
import binascii
import codecs
import logging
import re
import unicodedata
from email import message_from_bytes, policy
from email.errors import MultipartInvariantViolationDefect, NoBoundaryInMultipartDefect, StartBoundaryNotFoundDefect
from email.message import EmailMessage, MIMEPart
from email.utils import getaddresses
from typing import Any, Literal

from channels.email_text import html_to_text, strip_quotes, subject_body
from normalizer.messages import Inbound, MediaRef

log = logging.getLogger(__name__)
MailKind = Literal["citizen", "own", "auto_reply", "bounce", "list", "malformed", "quarantined"]

MAX_HEADER_CHARS = 998  # RFC 5322's line limit: a longer Message-ID/From/In-Reply-To is malformed
_CHECKED_HEADERS = ("Message-ID", "From", "In-Reply-To")

_BROKEN = (NoBoundaryInMultipartDefect, StartBoundaryNotFoundDefect, MultipartInvariantViolationDefect)
_AUTO_SUBJECT = re.compile(r"^(out of (the )?office|automatic reply|auto[- ]?reply|autoreply|"
                           r"vắng mặt|trả lời tự động)", re.IGNORECASE)
_REPLY_PREFIX = re.compile(r"^\s*((re|fw|fwd|tl|tr|trả lời|chuyển tiếp)\s*:\s*)+", re.IGNORECASE)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".heic", ".heif", ".bmp", ".tif", ".tiff")


def load(payload: dict[str, Any]) -> EmailMessage | None:
    """The stored payload's message (in part when it was oversize), or None if unreadable."""
    try:
        raw = base64.b64decode(payload["raw"], validate=True)
    except (KeyError, TypeError, ValueError, binascii.Error):
        return None
    return message_from_bytes(raw, policy=policy.default)


def header(msg: EmailMessage, name: str) -> str:
    """A header decoded from RFC 2047 (NFC), or "" when missing or undecodable."""
    try:
        value = msg.get(name)
    except Exception:  # noqa: BLE001 - the email package raises many kinds on junk headers
        return ""
    return unicodedata.normalize("NFC", " ".join(str(value).split())) if value is not None else ""


def sender_of(msg: EmailMessage) -> tuple[str, str]:
    """(display name, lower-case address) from From; ("", "") when there is none."""
    pairs = [(n, a) for n, a in getaddresses([header(msg, "From")]) if "@" in a]
    if not pairs:
        return "", ""
    name, address = pairs[0]
    return name.strip(), address.strip().lower()


def classify_mail(payload: dict[str, Any], own_address: str = "") -> MailKind:
    """What kind of mail a stored payload holds; the pipeline asks when `parse` gave None."""
    msg = load(payload)
    kind = _kind(msg, payload, own_address)
    if kind == "citizen":
        try:
            _inbound("", msg, payload, 0)  # type: ignore[arg-type]
        except Exception:  # noqa: BLE001 - whatever parse_mail tripped over
            return "malformed"
    return kind


def overlong_header(msg: EmailMessage) -> str | None:
    """The first of Message-ID/From/In-Reply-To longer than any real mail has, or None."""
    for name in _CHECKED_HEADERS:
        try:
            values = msg.get_all(name) or []
        except Exception:  # noqa: BLE001 - junk headers: `header` reads them as ""
            values = []
        if any(len(str(value)) > MAX_HEADER_CHARS for value in values):
            return name
    return None


def _kind(msg: EmailMessage | None, payload: dict[str, Any], own_address: str) -> MailKind:
    if "quarantined" in payload:  # an excerpt of a mail that could not be stored: no report
        return "quarantined"
    if msg is None or overlong_header(msg):
        return "malformed"
    address = sender_of(msg)[1]
    if own_address and address == own_address.lower():
        return "own"
    if _is_bounce(msg, address):
        return "bounce"
    if _is_auto_reply(msg):
        return "auto_reply"
    if header(msg, "List-Id") or header(msg, "List-Unsubscribe"):
        return "list"
    if not address or ("oversize" not in payload and broken_structure(msg)):
        return "malformed"  # (an oversize payload was rebuilt from parts, or is headers only)
    return "citizen"


def bounced_recipient(payload: dict[str, Any]) -> str | None:
    """The address a delivery-status report says failed, lower-case, or None."""
    msg = load(payload)
    if msg is None:
        return None
    for part in msg.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        for block in part.get_payload():
            if isinstance(block, EmailMessage) and block.get("Final-Recipient"):
                if "fail" in str(block.get("Action", "failed")).lower():
                    return _address_field(str(block["Final-Recipient"]))
    failed = header(msg, "X-Failed-Recipients")
    return _address_field(failed) if failed else None


def broken_structure(msg: EmailMessage) -> bool:
    return any(isinstance(defect, _BROKEN) for part in msg.walk() for defect in part.defects)


def _address_field(value: str) -> str | None:
    address = value.split(";", 1)[-1].strip().strip("<>").lower()
    return address if "@" in address else None


def _is_bounce(msg: EmailMessage, address: str) -> bool:
    report = msg.get_content_type() == "multipart/report"
    if report and str(msg.get_param("report-type", "")).lower() == "delivery-status":
        return True
    return address.split("@")[0] in ("mailer-daemon", "mailerdaemon")


def _is_auto_reply(msg: EmailMessage) -> bool:
    if header(msg, "Auto-Submitted").lower() not in ("", "no"):
        return True
    if header(msg, "X-Autoreply") or header(msg, "X-Autorespond"):
        return True
    if header(msg, "Precedence").lower() in ("bulk", "junk", "auto_reply"):
        return True
    subject = _REPLY_PREFIX.sub("", header(msg, "Subject"))
    return bool(_AUTO_SUBJECT.match(subject))


def parse_mail(message_id: str, payload: dict[str, Any], own_address: str,
               max_attachment_bytes: int) -> Inbound | None:
    """The Inbound for citizen mail (EmailChannel.parse delegates here); None for all else."""
    msg = load(payload)
    if msg is None or _kind(msg, payload, own_address) != "citizen":
        return None
    try:
        return _inbound(message_id, msg, payload, max_attachment_bytes)
    except Exception:  # noqa: BLE001 - never raise on a stored mail: classify_mail says why
        log.warning("unreadable e-mail %s", message_id, exc_info=True)
        return None


def _inbound(message_id: str, msg: EmailMessage, payload: dict[str, Any], limit: int) -> Inbound:
    name, address = sender_of(msg)
    subject = header(msg, "Subject")
    context = thread_context(msg, subject)
    media, refused = _media(msg, limit)
    rejected: list[str] = []
    if "oversize" in payload:  # read in part by channels/email_oversize.py: say what was left out
        context["oversize_message"] = str(payload["oversize"])
        dropped = [str(item) for item in payload.get("dropped", [])]
        refused += dropped
        if dropped or payload.get("text_cut") or "dropped" not in payload:
            rejected.append("mail_too_large")  # (older payloads held the headers only)
    if refused:
        context["refused_attachments"] = "\n".join(refused)
    body = body_text(msg)
    text = body if context["in_reply_to"] else text_with_subject(subject, body)
    return Inbound(channel="email", sender=address, message_id=message_id, profile_name=name or None,
                   text=text, media=media, rejected_media=rejected,
                   chat_kind="email", context=context)


def thread_context(msg: EmailMessage, subject: str) -> dict[str, str]:
    """Subject and thread headers a reply needs; the root is the first of References."""
    message_id = header(msg, "Message-ID")
    # no id in a real thread is longer than a header line: such junk never reaches a query
    references = " ".join(ref for ref in header(msg, "References").split() if len(ref) <= MAX_HEADER_CHARS)
    in_reply_to = header(msg, "In-Reply-To")
    root = (references.split() or in_reply_to.split() or [message_id])[0]
    return {"subject": subject, "message_id": message_id, "references": references,
            "in_reply_to": in_reply_to, "thread_root": root,
            # recipients: the agency loop reads its signed plus-address back (replies/tokens.py)
            "to": header(msg, "To"), "cc": header(msg, "Cc"), "delivered_to": header(msg, "Delivered-To")}


def _media(msg: EmailMessage, limit: int) -> tuple[list[MediaRef], list[str]]:
    """Image parts as self-contained data: refs; any part over the limit as "name:size"."""
    media, refused = [], []
    for index, part in attachments(msg):
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        filename = part.get_filename() or f"part-{index}"
        if len(data) > limit:
            refused.append(f"{filename}:{len(data)}")
        elif is_image(part) and data:
            ctype = part.get_content_type()
            ref = f"data:{ctype};base64," + base64.b64encode(data).decode("ascii")
            media.append(MediaRef(ref=ref, declared_type=ctype, filename=filename, size=len(data)))
    return media, refused


def media_bytes(ref: str) -> bytes:
    """Decode a data: ref made by `parse_mail` (EmailChannel.fetch_media delegates here)."""
    if not ref.startswith("data:") or ";base64," not in ref:
        raise ValueError(f"not an e-mail data ref: {ref[:40]!r}")
    return base64.b64decode(ref.split(";base64,", 1)[1])


def body_text(msg: EmailMessage) -> str:
    """The citizen's words: text/plain (else HTML as text), without quotes and signature."""
    try:
        part = msg.get_body(preferencelist=("plain", "html"))
    except Exception:  # noqa: BLE001 - broken structure: no body to read
        part = None
    if part is None:
        return ""
    text = decode_text(part)
    if part.get_content_type() == "text/html":
        text = html_to_text(text)
    return strip_quotes(text)


def decode_text(part: MIMEPart) -> str:
    """A text part's content in its declared charset; unknown charsets and bad bytes replaced."""
    data = part.get_payload(decode=True) or b""
    charset = part.get_content_charset() or "utf-8"
    try:
        codecs.lookup(charset)
    except LookupError:
        charset = "utf-8"
    text = data.decode(charset, errors="replace") if isinstance(data, bytes) else str(data)
    return unicodedata.normalize("NFC", text.replace("\r\n", "\n"))


def attachments(msg: EmailMessage) -> list[tuple[int, EmailMessage]]:
    """(walk index, part) of every leaf part that is not the message body."""
    try:
        body = msg.get_body(preferencelist=("plain", "html"))
    except Exception:  # noqa: BLE001
        body = None
    found = []
    for index, part in enumerate(msg.walk()):
        if part.is_multipart() or part is body:
            continue
        if part.get_content_maintype() == "text" and part.get_filename() is None:
            continue  # the other alternative of the body
        found.append((index, part))
    return found


def is_image(part: EmailMessage) -> bool:
    """Declared as an image by type or name; the normalizer checks the bytes themselves."""
    filename = (part.get_filename() or "").lower()
    return part.get_content_maintype() == "image" or filename.endswith(IMAGE_EXTENSIONS)


def text_with_subject(subject: str, body: str) -> str:
    """Prepend the subject of a new mail when it says something beyond case codes; a reply's
    subject only repeats the thread's topic, which the conversation already has."""
    if _REPLY_PREFIX.match(subject):
        return body
    topic = subject_body(subject)
    if not topic or body.startswith(topic):
        return body
    return f"{topic}\n\n{body}".strip()

