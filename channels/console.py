"""The terminal as a channel, so a newcomer can file a report without any platform.

Enabled by `run_bots.py` when no platform credentials are configured. Each line typed is
one message; `/photo PATH` attaches a picture, `/location LAT LON` shares a position,
`/contact PHONE [NAME]` shares a phone number as a platform would.
"""
from __future__ import annotations

import asyncio
import sys
import threading
import uuid
from pathlib import Path
from typing import Any, TextIO

from channels.base import Channel, EventSink
from normalizer.messages import Contact, GeoPoint, Inbound, MediaRef, Outbound
from normalizer.texts import Texts

SENDER = "console-user"


def parse_line(line: str) -> dict[str, Any]:
    """The payload the console stores for one typed line."""
    words = line.strip().split(maxsplit=2)
    if words[:1] == ["/photo"] and len(words) >= 2:
        return {"photo": line.strip()[len("/photo"):].strip()}
    if words[:1] == ["/location"] and len(words) == 3:
        return {"location": words[1:]}
    if words[:1] == ["/contact"] and len(words) >= 2:
        return {"contact": words[1], "name": words[2] if len(words) > 2 else None}
    return {"text": line.strip()}


class ConsoleChannel(Channel):
    name = "console"

    def __init__(self, stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout, *,
                 max_file_bytes: int = 20_000_000, texts: Texts | None = None) -> None:
        self._in, self._out = stdin, stdout
        self._texts = texts or Texts()
        self._max = max_file_bytes
        self._task: asyncio.Task[None] | None = None

    async def start(self, sink: EventSink) -> None:
        loop = asyncio.get_running_loop()
        lines: asyncio.Queue[str | None] = asyncio.Queue()
        # A daemon thread, not the loop's executor: a blocked readline must not hold up shutdown.
        threading.Thread(target=self._read_lines, args=(loop, lines), daemon=True,
                         name="console-stdin").start()
        self._task = asyncio.create_task(self._forward(lines, sink))

    def _read_lines(self, loop: asyncio.AbstractEventLoop, lines: asyncio.Queue[str | None]) -> None:
        for line in iter(self._in.readline, ""):
            loop.call_soon_threadsafe(lines.put_nowait, line)
        loop.call_soon_threadsafe(lines.put_nowait, None)

    async def _forward(self, lines: asyncio.Queue[str | None], sink: EventSink) -> None:
        while (line := await lines.get()) is not None:
            if line.strip():
                await sink(uuid.uuid4().hex, SENDER, parse_line(line))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def parse(self, message_id: str, sender: str, payload: dict[str, Any]) -> Inbound | None:
        inbound = Inbound(channel=self.name, sender=sender, message_id=message_id,
                          text=str(payload.get("text") or ""))
        if payload.get("photo"):
            inbound.media = [MediaRef(ref=str(payload["photo"]))]
        if payload.get("location"):
            try:
                lat, lon = (float(v) for v in payload["location"])
                inbound.location = GeoPoint(lat=lat, lon=lon)
            except ValueError:
                inbound.text = " ".join(map(str, payload["location"]))
        if payload.get("contact"):
            inbound.contact = Contact(phone=str(payload["contact"]), name=payload.get("name"))
        return inbound

    async def fetch_media(self, media: MediaRef) -> bytes:
        path = Path(media.ref).expanduser()
        if not path.is_file() or path.stat().st_size > self._max:
            return b""  # the normalizer refuses it as not an image
        return path.read_bytes()

    async def send(self, address: str, message: Outbound) -> str | None:
        lines = [f"\n🤖 {message.text}"]
        if message.buttons:
            lines.append("   [" + " | ".join(b.label for b in message.buttons) + "]")
        if message.ask_location:
            lines.append("   " + self._texts.render("labels", key="console_location"))
        if message.photos:
            lines.append("   " + self._texts.render("labels", key="console_photos", count=len(message.photos)))
        self._out.write("\n".join(lines) + "\n> ")
        self._out.flush()
        return None
