"""Reading a stored e-mail: who sent it, what kind of mail it is, the citizen's own words.

`channels/email.py` calls `envelope` while reading the inbox (to name the raw event) and
`parse_mail` when the pipeline parses a stored event; the pipeline calls `classify_mail` and
`bounced_recipient` to explain why a mail was ignored and to mark dead addresses. Nothing here
raises on bad input: broken MIME, unknown charsets and missing headers become "malformed".
"""
from __future__ import annotations

import base64
import binascii
import codecs
import hashlib
import re
import unicodedata
from html.parser import HTMLParser
from email import message_from_bytes, policy
from email.errors import (MultipartInvariantViolationDefect, NoBoundaryInMultipartDefect,
                          StartBoundaryNotFoundDefect)
from email.message import EmailMessage
from email.utils import getaddresses
from typing import Any, Literal

from normalizer.messages import Inbound, MediaRef

MailKind = Literal["citizen", "own", "auto_reply", "bounce", "list", "malformed"]

_BROKEN = (NoBoundaryInMultipartDefect, StartBoundaryNotFoundDefect, MultipartInvariantViolationDefect)
_AUTO_SUBJECT = re.compile(r"^(out of (the )?office|automatic reply|auto[- ]?reply|autoreply|"
                           r"vắng mặt|trả lời tự động)", re.IGNORECASE)
_REPLY_PREFIX = re.compile(r"^\s*((re|fw|fwd|tl|tr|trả lời|chuyển tiếp)\s*:\s*)+", re.IGNORECASE)
_IMAGE_EXT = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".heic", ".heif", ".bmp", ".tif", ".tiff")


def load(payload: dict[str, Any]) -> EmailMessage | None:
    """The stored payload's message (headers only when it was oversize), or None if unreadable."""
    try:
        raw = base64.b64decode(payload["raw"], validate=True)
    except (KeyError, TypeError, ValueError, binascii.Error):
        return None
    return message_from_bytes(raw, policy=policy.default)  # type: ignore[return-value]


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


def envelope(raw: bytes) -> tuple[str, str]:
    """(message id, sender) naming a raw event: the Message-ID header or a hash of the bytes."""
    msg = message_from_bytes(raw, policy=policy.default)
    message_id = header(msg, "Message-ID")  # type: ignore[arg-type]
    if not message_id:
        message_id = "sha256:" + hashlib.sha256(raw).hexdigest()
    return message_id, sender_of(msg)[1]  # type: ignore[arg-type]


def classify_mail(payload: dict[str, Any], own_address: str = "") -> MailKind:
    """What kind of mail a stored payload holds; only "citizen" mail reaches the bots."""
    msg = load(payload)
    if msg is None:
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
    if not address or ("oversize" not in payload and _broken(msg)):
        return "malformed"  # (an oversize payload holds headers only: no body to check)
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


def _broken(msg: EmailMessage) -> bool:
    return any(isinstance(defect, _BROKEN) for part in msg.walk() for defect in part.defects)


def _address_field(value: str) -> str | None:
    address = value.split(";", 1)[-1].strip().strip("<>").lower()
    return address if "@" in address else None


def _is_bounce(msg: EmailMessage, address: str) -> bool:
    report = msg.get_content_type() == "multipart/report"
    if report and msg.get_param("report-type", "").lower() == "delivery-status":
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
    if classify_mail(payload, own_address) != "citizen":
        return None
    msg = load(payload)
    assert msg is not None  # classify_mail said it loads
    name, address = sender_of(msg)
    subject = header(msg, "Subject")
    context = thread_context(msg, subject)
    media, refused = _media(msg, max_attachment_bytes)
    if refused:
        context["refused_attachments"] = "\n".join(refused)
    if "oversize" in payload:
        context["oversize_message"] = str(payload["oversize"])
    return Inbound(channel="email", sender=address, message_id=message_id, profile_name=name or None,
                   text=text_with_subject(subject, body_text(msg)), media=media,
                   chat_kind="email", context=context)


def thread_context(msg: EmailMessage, subject: str) -> dict[str, str]:
    """Subject and thread headers a reply needs; the root is the first of References."""
    message_id = header(msg, "Message-ID")
    references = header(msg, "References")
    in_reply_to = header(msg, "In-Reply-To")
    root = (references.split() or in_reply_to.split() or [message_id])[0]
    return {"subject": subject, "message_id": message_id, "references": references,
            "in_reply_to": in_reply_to, "thread_root": root}


def _media(msg: EmailMessage, limit: int) -> tuple[list[MediaRef], list[str]]:
    """Image parts as self-contained data: refs; any part over the limit as "name:size"."""
    media, refused = [], []
    for index, part in attachments(msg):
        data = part.get_payload(decode=True) or b""
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


def decode_text(part: EmailMessage) -> str:
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
    return part.get_content_maintype() == "image" or filename.endswith(_IMAGE_EXT)


def text_with_subject(subject: str, body: str) -> str:
    """Prepend the subject when it says something beyond reply prefixes and case codes."""
    topic = subject_body(_REPLY_PREFIX.sub("", subject))
    if not topic or body.startswith(topic):
        return body
    return f"{topic}\n\n{body}".strip()


_CASE_CODE = re.compile(r"\[?\b[A-Z]{2,4}-[0-9][\w-]*\]?")
_CUT = re.compile(
    r"^(-- ?|--|_{8,}|-{3,} ?(original message|thư gốc|forwarded message|tin nhắn được chuyển tiếp)"
    r" ?-{3,}|sent from my .*)$", re.IGNORECASE)
_WROTE = re.compile(r"^(on\b.*\bwrote|vào\b.*\bđã viết):$", re.IGNORECASE | re.DOTALL)
_HEAD_FROM = re.compile(r"^\*?(from|từ)\*?:", re.IGNORECASE)
_HEAD_NEXT = re.compile(r"^\*?(sent|date|đã gửi|ngày)\*?:", re.IGNORECASE)  # Outlook's date line


def subject_body(subject: str) -> str:
    """The subject without case codes like "PA-2024-0012"; "" if nothing with letters is left."""
    rest = _CASE_CODE.sub(" ", subject).strip(" :-–[]()")
    return rest if any(ch.isalpha() for ch in rest) else ""


def strip_quotes(text: str) -> str:
    """Cut quoted history and signatures (English, Gmail-vi, Outlook/Outlook-vi); drop "> " lines."""
    lines = [line.rstrip() for line in text.split("\n")]
    kept: list[str] = []
    for index, line in enumerate(lines):
        if _ends_message(lines, index):
            break
        if not line.lstrip().startswith(">"):
            kept.append(line)
    return re.sub(r"\n{3,}", "\n\n", "\n".join(kept)).strip()


def _ends_message(lines: list[str], index: int) -> bool:
    line = lines[index].strip()
    if _CUT.match(lines[index]) or _WROTE.match(line):
        return True
    if re.match(r"^(on|vào)\b", line, re.IGNORECASE) and index + 1 < len(lines):
        return bool(_WROTE.match(f"{line} {lines[index + 1].strip()}"))  # wrapped attribution
    if _HEAD_FROM.match(line):
        return any(_HEAD_NEXT.match(nxt.strip()) for nxt in lines[index + 1:index + 4])
    return False


class _HtmlText(HTMLParser):
    """Collects visible text; blocks become line breaks; scripts, styles, quotes are dropped."""

    SKIP = {"script", "style", "head", "title", "blockquote"}
    BLOCK = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "table", "hr"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in self.SKIP:
            self.skipping += 1
        elif tag in self.BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP:
            self.skipping = max(0, self.skipping - 1)
        elif tag in self.BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.parts.append(re.sub(r"\s+", " ", data))


def html_to_text(html: str) -> str:
    """Visible text of an HTML mail body (stdlib parser; tolerant of broken markup)."""
    parser = _HtmlText()
    parser.feed(html)
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.parts).split("\n"))
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
