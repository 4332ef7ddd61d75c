"""`python run_bots.py replay FILE.jsonl`: a transcript through the real pipeline.

Operators tuning rules and the conversation tests use it: it starts a throw-away embedded
database, feeds each line to a `ReplayChannel` of the line's channel, lets the gateway
process and send, and prints JSON lines of what was sent and what was stored.
"""
from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterable, TextIO

from bots.gateway import Gateway
from cases.policy import Policy
from channels.replay import ReplayChannel
from store.database import connect
from store.embedded import EmbeddedServer, free_port
from store.models import Reflection
from store.repos import Store


def reflection_line(r: Reflection) -> dict[str, Any]:
    loc = r.location
    return {"type": "reflection", "code": r.code, "channel": r.channel,
            "citizen": {"name": r.citizen.name, "phone": r.citizen.phone, "email": r.citizen.email},
            "content": r.content,
            "location": {"lat": loc.lat, "lon": loc.lon, "address": loc.address, "commune": loc.commune},
            "photos": len(r.photos), "field": r.field, "agency": r.agency, "status": r.status,
            "confidential": r.confidential, "urgent": r.urgent}


async def replay_lines(gateway: Gateway, lines: Iterable[dict[str, Any]], out: TextIO) -> None:
    for line in lines:
        channel = gateway.channels[line["channel"]]
        assert isinstance(channel, ReplayChannel)
        before = len(channel.sent)
        await channel.feed(line)
        await gateway.drain()
        for address, message in channel.sent[before:]:
            out.write(json.dumps({"type": "outbound", "channel": channel.name, "to": address,
                                  "text": message.text}, ensure_ascii=False) + "\n")
    for reflection in await Store(gateway.database).reflections.all():
        out.write(json.dumps(reflection_line(reflection), ensure_ascii=False) + "\n")


def main(path: str, policy: Policy, out: TextIO = sys.stdout) -> int:
    file = Path(path)
    lines = [json.loads(x) for x in file.read_text(encoding="utf-8").splitlines() if x.strip()]
    with tempfile.TemporaryDirectory(prefix="replay-") as tmp:
        server = EmbeddedServer(Path(tmp) / "db", free_port())
        server.start()
        try:
            asyncio.run(_run(server.uri, policy, lines, file.parent, out))
        finally:
            server.stop()
    return 0


async def _run(uri: str, policy: Policy, lines: list[dict[str, Any]], base: Path, out: TextIO) -> None:
    database = await connect(uri, "replay")
    names = sorted({line["channel"] for line in lines})
    gateway = Gateway(database, policy, {n: ReplayChannel(n, base) for n in names})
    await gateway.start(workers=False)
    try:
        await replay_lines(gateway, lines, out)
    finally:
        await gateway.stop()
        await database.close()
