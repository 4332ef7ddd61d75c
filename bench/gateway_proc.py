"""The gateway in a process of its own, for the benchmark and the crash tests.

`bench.ingest` and `tests/test_faults.py` spawn it with `subprocess`: a real `Gateway` with
the Telegram channel in webhook mode (secret-token header) against a given database URI and
a (fake) Bot API base URL, serving webhooks on 127.0.0.1. It prints one line, `ready PORT`,
once it accepts requests, and stops cleanly on SIGTERM/SIGINT; SIGKILL is the crash.

    python -m bench.gateway_proc --mongodb-uri URI --database NAME --api-url URL --port 0
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from bots.gateway import Gateway
from cases.policy import load_policy
from channels.telegram import TelegramChannel
from store.database import connect
from store.media import MediaStore

ROOT = Path(__file__).resolve().parent.parent
WEBHOOK_URL = "https://ioc.example.vn/hooks/telegram"
WEBHOOK_PATH = "/hooks/telegram"
SECRET = "bench-secret-token"
TOKEN = "123456:TEST-token_for-fake"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mongodb-uri", required=True)
    p.add_argument("--database", required=True)
    p.add_argument("--api-url", required=True, help="Bot API root, e.g. http://127.0.0.1:8081")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--policy", default=str(ROOT / "policies" / "quang_nam.yaml"))
    p.add_argument("--idle-seconds", type=float, default=0.5, help="as WORKER_POLL_SECONDS (its default)")
    p.add_argument("--log-level", default="WARNING")
    return p.parse_args(argv)


async def run(args: argparse.Namespace) -> None:
    """Start the gateway, announce the port, and wait for a stop signal."""
    database = await connect(args.mongodb_uri, args.database, timeout_ms=5000)
    channel = TelegramChannel(TOKEN, media_loader=MediaStore(database).load,
                              base_url=f"{args.api_url}/bot", base_file_url=f"{args.api_url}/file/bot",
                              webhook_url=WEBHOOK_URL, secret_token=SECRET)
    gateway = Gateway(database, load_policy(Path(args.policy)), {"telegram": channel},
                      web=("127.0.0.1", args.port), idle_seconds=args.idle_seconds)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await gateway.start()
    assert gateway.web is not None
    print(f"ready {gateway.web.port}", flush=True)
    await stop.wait()
    await gateway.stop()
    await database.close()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
