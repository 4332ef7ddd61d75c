"""A transcript as a channel: `run_bots.py replay FILE.jsonl` and the conversation tests.

Each transcript line is one citizen message on a named channel (zalo, telegram…); what the
gateway sends back is recorded instead of leaving the machine. The rest of the path —
pipeline, normalizer, intake, cases, store, outbox — is the production one.
"""
from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from channels.base import Channel, EventSink
from normalizer.messages import Contact, GeoPoint, Inbound, MediaRef, Outbound


class ReplayChannel(Channel):
    def __init__(self, name: str, base_dir: Path = Path(".")) -> None:
        self.name = name
        self.base_dir = base_dir
        self.sent: list[tuple[str, Outbound]] = []
        self.sink: EventSink | None = None
        self._ids = itertools.count(1)

    async def start(self, sink: EventSink) -> None:
        self.sink = sink

    async def stop(self) -> None:
        self.sink = None

    async def feed(self, line: dict[str, Any], message_id: str | None = None) -> bool:
        """Store one transcript line as if the platform had delivered it."""
        assert self.sink is not None, "channel not started"
        mid = message_id or str(line.get("message_id") or f"{self.name}-{next(self._ids)}")
        return await self.sink(mid, str(line["sender"]), line)

    def parse(self, message_id: str, sender: str, payload: dict[str, Any]) -> Inbound | None:
        inbound = Inbound(channel=self.name, sender=sender, message_id=message_id,
                          text=str(payload.get("text") or ""), action=payload.get("action"),
                          profile_name=payload.get("profile_name"))
        if payload.get("photo"):
            inbound.media = [MediaRef(ref=str(payload["photo"]))]
        if isinstance(payload.get("location"), dict):
            inbound.location = GeoPoint(lat=payload["location"]["lat"], lon=payload["location"]["lon"])
        if isinstance(payload.get("contact"), dict):
            inbound.contact = Contact(phone=str(payload["contact"]["phone"]),
                                      name=payload["contact"].get("name"))
        return inbound

    async def fetch_media(self, media: MediaRef) -> bytes:
        path = (self.base_dir / media.ref).resolve()  # a transcript's name never leaves base_dir
        inside = path.is_relative_to(self.base_dir.resolve())
        return path.read_bytes() if inside and path.is_file() else b""

    async def send(self, address: str, message: Outbound) -> str | None:
        self.sent.append((address, message))
        return f"{self.name}-out-{len(self.sent)}"
