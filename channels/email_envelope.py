"""Naming a raw e-mail for the store, and saying why a stored mail failed.

`channels/email_intake.py` calls `envelope` for every mail it hands to the sink: the
(message id, sender) pair always fits the store's unique index and `store.safe.plain`, so one
absurd header can never make the store refuse the mail again and again. `EmailChannel.skip_reason`
(the pipeline's hook for a mail `parse` dropped) calls `failure_reason` to record why a
malformed or quarantined mail failed: header names, sizes and error codes, never its text.
"""
from __future__ import annotations

import hashlib
import re
from email import message_from_bytes, policy
from typing import Any

from channels.email_parse import MAX_HEADER_CHARS, broken_structure, header, load, overlong_header, sender_of

MAX_ID_BYTES = 500  # a longer (or control-character) Message-ID is stored as a hash of itself
MAX_ADDRESS_CHARS = 254  # RFC 5321's longest path: a longer sender is stored as none
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def envelope(raw: bytes) -> tuple[str, str]:
    """(message id, sender) naming a raw event: the Message-ID header or a hash of the bytes.

    A Message-ID over MAX_ID_BYTES, with control characters or not valid UTF-8 becomes
    "sha256:" + the hash of itself (stable: a re-read finds the same event); a sender that is
    no sane address becomes "" (the pipeline then fails the mail as malformed)."""
    try:
        msg = message_from_bytes(raw, policy=policy.default)
        message_id, sender = header(msg, "Message-ID"), sender_of(msg)[1]
    except Exception:  # noqa: BLE001 - a mail too broken to name still gets stored
        message_id, sender = "", ""
    if not message_id:
        return "sha256:" + hashlib.sha256(raw).hexdigest(), storable_sender(sender)
    return storable_id(message_id), storable_sender(sender)


def storable_id(message_id: str) -> str:
    """The id itself when the unique index takes it, else a stable hash of it."""
    encoded = message_id.encode("utf-8", "surrogatepass")
    if len(encoded) > MAX_ID_BYTES or _CONTROL.search(message_id) or not _utf8(message_id):
        return "sha256:" + hashlib.sha256(encoded).hexdigest()
    return message_id


def storable_sender(address: str) -> str:
    """The address itself when it is a sane one, else ""."""
    if len(address) > MAX_ADDRESS_CHARS or _CONTROL.search(address) or not _utf8(address):
        return ""
    return address


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: BSON refuses them
        return False
    return True


def failure_reason(payload: dict[str, Any]) -> str:
    """Why a quarantined or malformed mail failed, for its stored event (no text of the mail)."""
    if "quarantined" in payload:
        return f"quarantined: {payload['quarantined']}"[:300]
    msg = load(payload)
    if msg is None:
        return "malformed: unreadable payload"
    name = overlong_header(msg)
    if name:
        return f"malformed: {name} header over {MAX_HEADER_CHARS} characters"
    if not sender_of(msg)[1]:
        return "malformed: no sender address"
    if "oversize" not in payload and broken_structure(msg):
        return "malformed: broken MIME structure"
    return "malformed: unreadable content"
