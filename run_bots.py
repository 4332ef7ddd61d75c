"""Entry point: `python run_bots.py` runs the gateway; sub-commands serve operators.

    python run_bots.py                      run the gateway (embedded DB unless MONGODB_URI)
    python run_bots.py understand "TEXT"    print what the normalizer reads in TEXT (JSON)
    python run_bots.py replay FILE.jsonl    feed a transcript through the real pipeline
    python run_bots.py policy check FILE    validate a policy and show its next working week
    python run_bots.py staff --as ID [CMD]  IOC staff console: one command, or a shell without CMD
    python run_bots.py report --from D --to D --out DIR   case report as XLSX, CSV and PNG
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from settings import Settings

if TYPE_CHECKING:  # imported where used: the sub-commands load only what they need
    from bots.staff import StaffSetup
    from cases.policy import Policy

log = logging.getLogger("run_bots")


def _policy(path: Path) -> Policy:
    from cases.policy import PolicyError, load_policy
    try:
        return load_policy(path)
    except PolicyError as exc:
        raise SystemExit(f"error: {exc}") from None


def _staff(settings: Settings, policy: Policy) -> StaffSetup | None:
    """The staff console's set-up when STAFF_FILE is set; alerts go to the Telegram staff group."""
    if not settings.staff_file:
        return None
    from bots.staff import StaffSetup
    from cases.staff_roles import StaffFileError, load_roster
    try:
        roster = load_roster(settings.staff_file, policy)
    except StaffFileError as exc:
        raise SystemExit(f"error: {exc}") from None
    chat = settings.telegram_staff_chat_id if settings.telegram_bot_token else None
    return StaffSetup(roster, ("telegram", str(chat)) if chat else None)


async def _serve(settings: Settings, uri: str) -> None:
    from bots.gateway import Gateway
    from cases.sla import SlaSettings
    from channels.registry import build_channels
    from normalizer.media import MediaLimits
    from store.database import connect
    from store.media import MediaStore

    policy = _policy(settings.policy_file)
    database = await connect(uri, settings.mongodb_database,
                             settings.mongodb_timeout_ms)
    channels = build_channels(settings, MediaStore(database).load)
    limits = MediaLimits(settings.max_photo_bytes, settings.max_photo_pixels, settings.max_photos_per_report)
    secret = settings.agency_token_secret.get_secret_value() if settings.agency_token_secret else ""
    gateway = Gateway(database, policy, channels, limits=limits, agency_token_secret=secret,
                      ioc_email=settings.ioc_email,
                      web=(settings.web_host, settings.web_port), max_body_bytes=settings.max_body_bytes,
                      staff=_staff(settings, policy),
                      idle_seconds=settings.worker_poll_seconds, outbox_max_attempts=settings.outbox_max_attempts,
                      sla=SlaSettings(ioc_email=settings.ioc_email),
                      open311_api_key=settings.open311_api_key.get_secret_value() if settings.open311_api_key else None)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await gateway.start()
    except BaseException:  # e.g. the web port is taken: what did start is stopped, then the one-line error
        with contextlib.suppress(Exception):
            await gateway.stop()
        with contextlib.suppress(Exception):
            await database.close()
        raise
    log.info("gateway running: channels %s, policy %s", ", ".join(channels) or "none", policy.province)
    if "console" in channels:  # the terminal is the chat now: only warnings interrupt it
        logging.getLogger().setLevel(logging.WARNING)
        print(gateway.texts.render("console_ready", province=policy.province) + "\n> ", end="", flush=True)
    await stop.wait()
    log.info("stopping")
    await gateway.stop()
    await database.close()


def run(settings: Settings) -> int:
    """The gateway until SIGINT/SIGTERM; a start that cannot succeed (a port taken, a directory
    not writable, the database unreachable) is one line on stderr and exit code 1."""
    from channels.webapp import WebServerError
    from store.database import DatabaseUnavailable
    from store.embedded import EmbeddedServer, EmbeddedServerError

    server = None
    try:
        uri = settings.mongodb_uri
        if not uri:
            server = EmbeddedServer(settings.embedded_db_path, settings.embedded_db_port)
            server.start()
            uri = server.uri
        asyncio.run(_serve(settings, uri))
    except (EmbeddedServerError, DatabaseUnavailable, WebServerError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    finally:
        if server is not None:
            server.stop()
    return 0


def understand_command(settings: Settings, text: str) -> int:
    from cases.routing import route
    from normalizer.understand import understand

    policy = _policy(settings.policy_file)
    u = understand(text, policy.field_keywords(), policy.gazetteer.communes)
    decision = route(policy, u.field, u.commune_code, u.field_confidence)
    print(json.dumps({**u.model_dump(), "agency": decision.agency_id}, ensure_ascii=False))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="run_bots.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("run", help="run the gateway (the default)")
    p = sub.add_parser("understand", help="print what the normalizer reads in TEXT")
    p.add_argument("text")
    p = sub.add_parser("replay", help="feed a JSONL transcript through the real pipeline")
    p.add_argument("file")
    p = sub.add_parser("staff", help="IOC staff console (staff --as ID --help)", add_help=False,
                       prefix_chars="\x00")  # everything after `staff` goes to bots.staff_cli
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p = sub.add_parser("policy", help="policy tools")
    p.add_argument("action", choices=["check"])
    p.add_argument("file")
    p = sub.add_parser("report", help="write the case report for local days FROM..TO (XLSX, CSV, PNG)")
    p.add_argument("--from", dest="first", required=True, help="YYYY-MM-DD")
    p.add_argument("--to", dest="last", required=True, help="YYYY-MM-DD (included)")
    p.add_argument("--out", required=True, type=Path, help="output directory")
    args = parser.parse_args(argv)
    settings = Settings()
    logging.basicConfig(level=settings.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "understand":
        return understand_command(settings, args.text)
    if args.command == "replay":
        from bots.replay import main as replay
        return replay(args.file, _policy(settings.policy_file))
    if args.command == "report":
        from bots.report_cli import report_command
        return report_command(settings, args.first, args.last, args.out)
    if args.command == "staff":
        from bots.staff_cli import main as staff
        return staff(args.rest, settings)
    if args.command == "policy":
        from cases.policy_check import main as check
        return check(args.file)
    with contextlib.suppress(KeyboardInterrupt):
        return run(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
