"""What this machine's HTTP stacks alone allow: the benchmark's own ceiling, without a database.

    python -m bench.ceiling --citizens 200 --duration 30

The same simulated citizens as `bench.ingest` (same fake Bot API, same webhook deliveries
with the secret-token header) against a gateway process that keeps only the transport:
the real `TelegramChannel` behind the real web app verifies and parses each delivery, and
its sink, instead of storing it and running the intake, answers it at once with one
`channel.send` through the Bot API (as the real gateway answers every message). No database,
no dialog: the messages per second it reaches bound what `bench.ingest` can reach on the same
machine, and so the ratio that machine can show. Only 127.0.0.1; bounded by `--duration`.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import signal
from typing import Any

from bench.citizens import BenchTelegramAPI, crowd
from bench.gateway_proc import SECRET, TOKEN, WEBHOOK_URL
from bench.ingest import percentile, spawn
from channels.telegram import TelegramChannel
from channels.webapp import build_app, serve
from normalizer.messages import Outbound


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--citizens", type=int, default=200)
    p.add_argument("--duration", type=float, default=30.0)
    p.add_argument("--serve", metavar="API_URL", help="(internal) be the transport-only gateway")
    return p.parse_args(argv)


async def transport_only(api_url: str) -> None:
    """The child process: webhook in, one Bot API send out per delivery, nothing stored."""
    async def no_media(_: str) -> bytes:
        raise KeyError("no media store here")
    channel = TelegramChannel(TOKEN, media_loader=no_media, base_url=f"{api_url}/bot",
                              base_file_url=f"{api_url}/file/bot", webhook_url=WEBHOOK_URL, secret_token=SECRET)
    sending: set[asyncio.Task[Any]] = set()

    async def answer_at_once(_message_id: str, sender: str, _payload: dict[str, Any]) -> bool:
        task = asyncio.create_task(channel.send(sender, Outbound(text="Đã nhận.")))
        sending.add(task)
        task.add_done_callback(sending.discard)
        return True

    async def health() -> dict[str, Any]:
        return {"database": "ok"}

    await channel.start(answer_at_once)
    web = await serve(build_app(channel.routes(), health), "127.0.0.1", 0)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    print(f"ready {web.port}", flush=True)
    await stop.wait()
    await web.stop()
    await channel.stop()


async def drive(args: argparse.Namespace) -> dict[str, Any]:
    api = BenchTelegramAPI()
    await api.start()
    try:
        proc, port = await asyncio.to_thread(spawn, "bench.ceiling", "--serve", api.base_url.removesuffix("/bot"))
        try:
            tally = await crowd(f"http://127.0.0.1:{port}", api, args.citizens, args.duration)
        finally:
            proc.terminate()
            proc.wait(30)
    finally:
        await api.stop()
    elapsed = max(tally.last_reply - (tally.first_send or tally.last_reply), 1e-9)
    ms = [x * 1000 for x in tally.latencies]
    return {"messages": tally.statuses.get(200, 0), "seconds": round(elapsed, 2),
            "messages_per_s": round(tally.statuses.get(200, 0) / elapsed, 1),
            "ack_ms_p50": round(percentile(ms, 0.5), 1), "ack_ms_p99": round(percentile(ms, 0.99), 1),
            "replies_received": sum(api.replies.values()), "missing_replies": tally.missing_replies}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.serve:
        asyncio.run(transport_only(args.serve))
        return
    f = asyncio.run(drive(args))
    print(f"transport only (no database, no dialog), citizens {args.citizens}")
    print(f"messages/s          {f['messages_per_s']}  ({f['messages']} in {f['seconds']} s)")
    print(f"ack latency ms      p50 {f['ack_ms_p50']}  p99 {f['ack_ms_p99']}")
    print(f"replies received    {f['replies_received']} (missing {f['missing_replies']})")
    print(json.dumps(f))


if __name__ == "__main__":
    main()
