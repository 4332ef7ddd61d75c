"""When each citizen last wrote to us, per channel: the platforms' messaging windows.

Zalo lets an OA answer only for a while after the citizen's last message (none after
7 days), Messenger for 24 hours (longer only with a message tag). The Zalo and Facebook
channels call `touch` when a citizen's event arrives and `last` before sending, to choose
between a normal reply, a tagged message, or `WindowClosed` for the agency loop's fallback.
"""
from __future__ import annotations

from datetime import datetime

from store.database import Database
from store.safe import plain


class ReplyWindows:
    """The `reply_windows` collection: one document per (channel, address)."""

    def __init__(self, database: Database) -> None:
        self._windows = database.db.reply_windows

    async def touch(self, channel: str, address: str, at: datetime) -> None:
        """Called on every citizen event; `$max` keeps the latest even if events arrive late."""
        await self._windows.update_one(
            {"_id": f"{plain(channel)}:{plain(address)}"},
            {"$max": {"last_inbound_at": at}}, upsert=True)

    async def last(self, channel: str, address: str) -> datetime | None:
        """The citizen's last message time, or None if we never heard from them."""
        doc = await self._windows.find_one({"_id": f"{plain(channel)}:{plain(address)}"})
        return doc["last_inbound_at"] if doc else None
