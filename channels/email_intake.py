"""Handing one IMAP message to the sink: whole, in part when oversize, or quarantined.

`EmailChannel._drain` (channels/email.py) calls `MailIntake.hand_over` for every unseen UID,
oldest first, and flags the message \\Seen only when it returns True. A store or server that
is away makes it raise: the reader reconnects and reads the same UID again later, so an outage
never loses mail. A mail over the limit is read in part (`channels/email_oversize.py`). A mail
the store refuses for good (the group write refuses each event alone: `store.inbound`), or
that fails MAX_FAILURES times in a row for a reason nobody knows, is recorded
through the sink as "quarantined" (its headers and the start of its text; the whole raw mail
in GridFS once the gateway bound the channel to its database), and the reader goes on with the
next UID. The pipeline then marks that event failed with its reason (`EmailChannel.skip_reason`).
Logs name UIDs, message ids, sizes and reasons only, never a mail's content.
"""
from __future__ import annotations

import base64
import logging
import re
from typing import Any

from channels.base import EventSink
from channels.email_envelope import envelope
from channels.email_oversize import Fetch, read_in_part
from channels.email_quarantine import MAX_FAILURES, imap_trouble, quarantine_payload
from store.errors import describe, verdict
from store.media import MediaStore

log = logging.getLogger(__name__)

STORABLE_RAW_BYTES = 12_000_000  # as base64 in one BSON document (16 MiB), with room for the rest
HEADER_EXCERPT_BYTES = 64 * 1024  # what a quarantine keeps of a mail it could not read at all


class MailIntake:
    """The reader's per-message step, with its memory of which UIDs failed how often."""

    def __init__(self, max_message_bytes: int, max_attachment_bytes: int,
                 max_failures: int = MAX_FAILURES) -> None:
        self.limit = min(max_message_bytes, STORABLE_RAW_BYTES)  # a larger mail is read in part
        self.max_attachment_bytes = max_attachment_bytes
        self.max_failures = max_failures
        self.media: MediaStore | None = None  # where quarantined raw mail is kept (EmailChannel.bind)
        self._failures: dict[str, int] = {}  # UID → failures in a row ("transient" ones not counted)
        self._skipped: set[str] = set()  # UIDs not even a quarantine record could be stored for

    async def hand_over(self, uid: str, fetch: Fetch, sink: EventSink) -> bool:
        """Store one message through the sink; True when it may be flagged \\Seen."""
        if uid in self._skipped:
            return False
        try:
            payload = await self.read(uid, fetch)
        except Exception as exc:  # noqa: BLE001 - the server's trouble, or a mail we cannot take apart
            if imap_trouble(exc) and self._count(uid, exc) < self.max_failures:
                raise
            return await self._quarantine(uid, fetch, sink, None, describe(exc))
        if payload is None:
            return False  # expunged meanwhile
        raw = base64.b64decode(payload["raw"])
        message_id, sender = envelope(raw)
        try:
            await sink(message_id, sender, payload)
        except Exception as exc:  # noqa: BLE001 - sorted out by `verdict`
            kind = verdict(exc)
            if kind == "transient":
                raise  # the store is away: leave the mail unseen, read it again later
            if kind == "unknown" and self._count(uid, exc) < self.max_failures:
                raise
            return await self._quarantine(uid, fetch, sink, raw, describe(exc), payload.get("oversize"))
        self._failures.pop(uid, None)
        return True

    async def read(self, uid: str, fetch: Fetch) -> dict[str, Any] | None:
        """The payload for one message: the whole mail when within the limit, else its text and
        the photos that fit, with "oversize" (its size) and "dropped" (what was left out)."""
        sized = await fetch("(RFC822.SIZE)")
        match = re.search(rb"RFC822\.SIZE (\d+)", b" ".join(x for x in sized if isinstance(x, bytes)))
        if match is None:
            return None
        size = int(match.group(1))
        payload: dict[str, Any] = {"uid": int(uid)}
        if size <= self.limit:
            fetched = await fetch("(BODY.PEEK[])")
            raw = next((bytes(x) for x in fetched if isinstance(x, bytearray)), None)
            if raw is None:
                return None
        else:
            raw, dropped, cut = await read_in_part(fetch, self.limit, self.max_attachment_bytes)
            payload.update(oversize=size, dropped=dropped)
            if cut:
                payload["text_cut"] = True
            log.info("e-mail uid %s: %d bytes, over the %d-byte limit: %d bytes kept, %d part(s) left out%s",
                     uid, size, self.limit, len(raw), len(dropped), ", text cut" if cut else "")
        payload["raw"] = base64.b64encode(raw).decode("ascii")
        return payload

    def _count(self, uid: str, exc: BaseException) -> int:
        failures = self._failures[uid] = self._failures.get(uid, 0) + 1
        log.warning("e-mail uid %s: %s (failure %d of %d before quarantine)",
                    uid, describe(exc), failures, self.max_failures)
        return failures

    async def _quarantine(self, uid: str, fetch: Fetch, sink: EventSink, raw: bytes | None, reason: str,
                          size: int | None = None) -> bool:
        """Record the mail as quarantined and let the reader go on; False (leave it unseen and
        skip it from now on) when even that record is refused; raise when the store is away."""
        whole = raw is not None
        if raw is None:
            try:
                raw = await self._header(fetch)
            except Exception as exc:  # noqa: BLE001 - the connection broke again: this mail or the link?
                if not imap_trouble(exc) or self._count(uid, exc) < 2 * self.max_failures:
                    raise
                raw = b""  # the server never gives even its headers: quarantine it by its UID
        message_id, sender = envelope(raw) if raw else (f"imap-uid:{uid}", "")
        size = size or len(raw)
        raw_file = await self._keep(raw, uid, message_id, reason) if whole else None
        payload = quarantine_payload(int(uid), raw, size, reason, raw_file)
        try:
            await sink(message_id, sender, payload)
        except Exception as exc:  # noqa: BLE001 - sorted out by `verdict`
            if verdict(exc) == "transient":
                raise
            log.error("e-mail uid %s (%s): even its quarantine record was refused (%s); left unread",
                      uid, message_id, describe(exc))
            self._skipped.add(uid)
            self._failures.pop(uid, None)
            return False
        log.warning("e-mail uid %s (%s, %d bytes) quarantined: %s%s", uid, message_id, size, reason,
                    f"; raw mail in GridFS {raw_file}" if raw_file else "")
        self._failures.pop(uid, None)
        return True

    async def _header(self, fetch: Fetch) -> bytes:
        """The start of the header block (for a mail that could not be read whole)."""
        lines = await fetch(f"(BODY.PEEK[HEADER]<0.{HEADER_EXCERPT_BYTES}>)")
        return next((bytes(x) for x in lines if isinstance(x, bytearray)), b"")

    async def _keep(self, raw: bytes, uid: str, message_id: str, reason: str) -> str | None:
        """The raw mail saved in GridFS (its id), or None without a bound database."""
        if self.media is None:
            return None
        metadata: dict[str, object] = {"uid": int(uid), "message_id": message_id, "reason": reason}
        try:
            return await self.media.save(raw, content_type="message/rfc822", filename=f"quarantine-{uid}.eml",
                                         metadata=metadata)
        except Exception as exc:  # noqa: BLE001 - sorted out by `verdict`
            if verdict(exc) == "transient":
                raise
            log.warning("e-mail uid %s (%s): raw mail not kept in GridFS: %s", uid, message_id, describe(exc))
            return None
