"""What half-finished conversations cost the gateway process in resident memory.

    python -m bench.memory --conversations 10000

Starts the embedded database, the fake Bot API and the gateway (`bench.gateway_proc`, its
own process), warms it up with a few whole reports, reads its resident set size (VmRSS),
then N citizens each send the first message of a report and stop (the conversation waits
for a location). Once every message is handled, it reads VmRSS again and prints the
difference: state lives in the database, so it should not grow with N. Only 127.0.0.1;
the loop is bounded by N and `--timeout`.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from bench.citizens import BenchTelegramAPI, Pacer, Tally, chat_id, citizen, post, report_updates
from bench.ingest import spawn_gateway, store_counts
from store.embedded import EmbeddedServer, free_port


def rss_mb(pid: int) -> float:
    """Resident set size of `pid` in MB, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


async def first_messages(url: str, api: BenchTelegramAPI, n: int, tally: Tally, concurrency: int = 40) -> None:
    """Citizens 1000… each send their report's first message (text), wait for the question
    that follows, and stop there, `concurrency` of them at a time, like people would."""
    queue = iter(range(1000, 1000 + n))
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        async def sender() -> None:
            for k in queue:
                if await post(client, report_updates(k)[0], tally) == 200:
                    tally.missing_replies += not await api.wait_replies(chat_id(k), 1, 120)
        await asyncio.gather(*(sender() for _ in range(concurrency)))


async def measure(conversations: int, timeout: float) -> dict[str, float | int]:
    server = EmbeddedServer(Path(tempfile.mkdtemp(prefix="bench-mem-")), free_port())
    server.start()
    api = BenchTelegramAPI()
    await api.start()
    database = f"mem_{uuid.uuid4().hex[:8]}"
    proc, port = await asyncio.to_thread(spawn_gateway, server.uri, database, api.base_url.removesuffix("/bot"))
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:  # warm-up: 5 whole reports
            warm = Tally()
            await asyncio.gather(*(citizen(n, client, api, warm, Pacer(0), time.perf_counter() + 120)
                                   for n in range(5)))
        before = rss_mb(proc.pid)
        tally, started = Tally(), time.perf_counter()
        await first_messages(url, api, conversations, tally)
        counts = await store_counts(server.uri, database, settle=timeout)
        after = rss_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(30)
        await api.stop()
        server.stop()
    return {"conversations_open": counts["conversations_open"], "acked": tally.statuses.get(200, 0),
            "missing_replies": tally.missing_replies,
            "rss_before_mb": round(before, 1), "rss_after_mb": round(after, 1),
            "extra_mb": round(after - before, 1), "seconds": round(time.perf_counter() - started, 1)}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--conversations", type=int, default=10_000)
    p.add_argument("--timeout", type=float, default=1800.0, help="max seconds to wait for processing")
    args = p.parse_args(argv)
    figures = asyncio.run(measure(args.conversations, args.timeout))
    print(f"half-finished conversations open: {figures['conversations_open']} ({figures['acked']} acked)")
    print(f"gateway RSS: {figures['rss_before_mb']} MB before, {figures['rss_after_mb']} MB after "
          f"→ {figures['extra_mb']} MB extra ({figures['seconds']} s)")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
