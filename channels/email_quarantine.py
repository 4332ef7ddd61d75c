"""What the inbox reader does with an error, and the small record of a mail it gives up on.

`channels/email_intake.py` asks `verdict` about every error raised while one mail is fetched
or handed to the sink: "transient" (the store or the IMAP server is away: read it again later,
leave it unseen), "permanent" (this mail can never be stored: quarantine it now) or "unknown"
(count it; the same UID failing MAX_FAILURES times in a row is quarantined). It builds the
quarantined event with `quarantine_payload`. `verdict` and `describe` (the error's kind and
code, never the mail or the document the store refused) are `store.errors`'.
"""
from __future__ import annotations

import asyncio
import base64
import re
from email import message_from_bytes, policy
from email.message import Message
from typing import Any

from aioimaplib.aioimaplib import AioImapException

from channels.email_parse import body_text

MAX_FAILURES = 3  # failures in a row of one UID (not counting "transient") before quarantine
EXCERPT_HEADERS = ("From", "To", "Cc", "Subject", "Date", "Message-ID", "In-Reply-To")
HEADER_CHARS = 300  # each kept header value at most
TEXT_CHARS = 4_000  # the first characters of the mail's text kept with the quarantined event
_SPACES = re.compile(r"\s+")


def imap_trouble(exc: BaseException) -> bool:
    """An error of the IMAP connection (as opposed to one of our reading of the mail)."""
    return isinstance(exc, (AioImapException, OSError, asyncio.TimeoutError))


def quarantine_payload(uid: int, raw: bytes, size: int, reason: str, raw_file: str | None) -> dict[str, Any]:
    """The event of a quarantined mail: `excerpt(raw)`, the reason, the size and the GridFS id
    of the whole raw mail when it could be kept there. A few KB whatever the mail was."""
    payload: dict[str, Any] = {"raw": base64.b64encode(excerpt(raw)).decode("ascii"), "uid": uid,
                               "quarantined": reason, "size": size}
    if raw_file is not None:
        payload["raw_file"] = raw_file
    return payload


def excerpt(raw: bytes) -> bytes:
    """A small readable mail from a raw one: its main headers (each cut to HEADER_CHARS) and the
    first TEXT_CHARS of its text; just those headers when the body cannot be read."""
    head, _, _ = raw.partition(b"\r\n\r\n") if b"\r\n\r\n" in raw else raw.partition(b"\n\n")
    try:
        msg = message_from_bytes(head + b"\r\n\r\n", policy=policy.compat32)
    except Exception:  # noqa: BLE001 - nothing readable: an excerpt without headers
        msg = Message()
    lines = []
    for name in EXCERPT_HEADERS:
        value = msg.get(name)
        if value is not None:
            lines.append(f"{name}: {_cut(_SPACES.sub(' ', str(value)).strip())}")
    lines += ["MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8",
              "Content-Transfer-Encoding: 8bit", "", _text_of(raw)]
    return "\r\n".join(lines).encode("utf-8", "replace")


def _cut(value: str) -> str:
    value = "".join(ch for ch in value if ch >= " " and ch != "\x7f")
    return value if len(value) <= HEADER_CHARS else value[:HEADER_CHARS - 1] + "…"


def _text_of(raw: bytes) -> str:
    try:
        text = body_text(message_from_bytes(raw, policy=policy.default))
    except Exception:  # noqa: BLE001 - whatever made the mail fail may be here too
        return ""
    return text[:TEXT_CHARS]
