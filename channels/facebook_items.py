"""What one Messenger webhook item says: its id, its sender, its time, and the `Inbound` it
makes. Pure functions on the JSON, used by `channels.facebook` (no I/O here).

A batch holds several people's items, so each is judged alone: `problem` says why an item
cannot be used (a chat-plugin sender with only a `user_ref` has no PSID to answer; a
message that is not an object; no readable timestamp), and `read` gives the `Inbound` or
the reason there is none. Timestamps come as numbers or strings, in milliseconds
(`1458692752478`) or, in Meta's newer examples, seconds (`"1527459824"`).
"""
from __future__ import annotations

import hashlib
import json
import math
from datetime import UTC, datetime
from typing import Any

from channels.maplinks import point_from_links
from normalizer.messages import GeoPoint, Inbound, MediaRef

MILLISECONDS_FROM = 1e11  # a timestamp this large is in ms (1973 on), below it in seconds (to 5138)
READ_ERRORS = (KeyError, TypeError, ValueError, AttributeError, OverflowError, OSError)


def event_id(item: dict[str, Any]) -> str | None:
    """The id to deduplicate on; None for what we never store (echoes, receipts). An item
    without a usable id gets one from its content, so a redelivered batch repeats it."""
    kind = "message" if "message" in item else "postback" if "postback" in item else None
    body = item.get(kind) if kind else None
    if kind is None or (isinstance(body, dict) and body.get("is_echo")):
        return None
    mid = body.get("mid") if isinstance(body, dict) else None
    if isinstance(mid, str) and mid:
        return mid
    if kind == "postback" and psid(item) and isinstance(item.get("timestamp"), (int, str)):
        return f"postback:{psid(item)}:{item['timestamp']}"
    content = json.dumps(item, sort_keys=True, ensure_ascii=False, default=repr).encode()
    return f"unusable:{hashlib.sha256(content).hexdigest()[:32]}"


def psid(item: dict[str, Any]) -> str | None:
    """The citizen's page-scoped id, the only address the Send API answers."""
    sender = item.get("sender")
    value = sender.get("id") if isinstance(sender, dict) else None
    if isinstance(value, bool) or not isinstance(value, (str, int)) or value == "":
        return None
    return str(value)


def stand_in(item: dict[str, Any]) -> str:
    """The sender noted for an item without a PSID: its `user_ref`, else "unknown"."""
    sender = item.get("sender")
    ref = sender.get("user_ref") if isinstance(sender, dict) else None
    return f"user_ref:{ref}" if isinstance(ref, str) and 0 < len(ref) <= 200 else "unknown"


def problem(item: dict[str, Any]) -> str | None:
    """Why this message or postback cannot be used, or None."""
    if psid(item) is None:
        sender = item.get("sender")
        if isinstance(sender, dict) and "user_ref" in sender:
            return "sender has only a user_ref (chat plugin): no PSID to answer"
        return "no sender id"
    kind = "message" if "message" in item else "postback"
    if not isinstance(item.get(kind), dict):
        return f"{kind} is not an object"
    try:
        item_time(item)
    except READ_ERRORS:
        return "timestamp missing or unreadable"
    return None


def item_time(item: dict[str, Any]) -> datetime:
    """The item's `timestamp`, a number or a string of digits, in milliseconds or seconds."""
    value = item["timestamp"]
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise TypeError("timestamp is not a number")
    number = float(value)
    if not math.isfinite(number) or number <= 0:
        raise ValueError("timestamp out of range")
    return datetime.fromtimestamp(number / 1000 if number >= MILLISECONDS_FROM else number, tz=UTC)


def read(channel: str, message_id: str, sender: str, item: dict[str, Any]) -> tuple[Inbound | None, str | None]:
    """The item as an `Inbound`, or None and the reason (None too for a postback whose
    button carries no payload, or a message with nothing we read, such as a sticker)."""
    reason = problem(item)
    if reason is not None:
        return None, reason
    try:
        inbound = _inbound(channel, message_id, sender, item)
    except READ_ERRORS as exc:
        return None, f"unreadable {'postback' if 'postback' in item else 'message'} ({type(exc).__name__})"
    return inbound, None if inbound else "nothing to read (no text, photo, link or action)"


def _inbound(channel: str, message_id: str, sender: str, item: dict[str, Any]) -> Inbound | None:
    base: dict[str, Any] = {"channel": channel, "sender": sender, "message_id": message_id,
                            "received_at": item_time(item)}
    if "postback" in item:
        action = item["postback"].get("payload")
        return Inbound(**base, action=action) if action else None
    message = item["message"]
    attachments = [a for a in message.get("attachments") or [] if isinstance(a, dict)]
    text = str(message.get("text") or "")
    links = " ".join([text, *[str((a.get("payload") or {}).get("url") or a.get("url") or "")
                               for a in attachments if a.get("type") == "fallback"]])
    inbound = Inbound(**base, text=text, action=(message.get("quick_reply") or {}).get("payload"),
                      media=[MediaRef(ref=a["payload"]["url"], declared_type="image/jpeg")
                             for a in attachments
                             if a.get("type") == "image" and (a.get("payload") or {}).get("url")],
                      location=_shared_location(attachments) or point_from_links(links))
    empty = not (inbound.text or inbound.media or inbound.location or inbound.action)
    return None if empty else inbound


def _shared_location(attachments: list[dict[str, Any]]) -> GeoPoint | None:
    """Older Messenger clients still send `location` attachments with coordinates."""
    for a in attachments:
        coordinates = (a.get("payload") or {}).get("coordinates") or {}
        if a.get("type") == "location" and "lat" in coordinates:
            try:
                return GeoPoint(lat=float(coordinates["lat"]), lon=float(coordinates["long"]))
            except (KeyError, TypeError, ValueError):
                return None
    return None
