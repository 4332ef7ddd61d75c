"""`python run_bots.py staff --as MEMBER COMMAND …`: the staff console on the server.

`run_bots.py staff` calls `main`; with a command it runs that one command, without one it
opens an interactive shell (one command per line, `exit` or Ctrl-D to leave). The identity
comes from `--as` (a member id or e-mail of the membership file), checked like a Telegram
author; the text printed is the same the Telegram bot sends. Each command runs in its own
transaction, so its change, audit entry and citizen message commit together.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import sys
from datetime import datetime
from typing import AsyncIterator, Callable, TextIO

from bots.staff import StaffConsole, render
from cases.policy import Policy, PolicyError, load_policy
from cases.staff_roles import Roster, StaffFileError, load_roster
from normalizer.messages import utcnow
from normalizer.texts import Texts
from replies.loop import Loop, make_loop
from settings import Settings
from store.database import Database, DatabaseUnavailable, connect
from store.embedded import EmbeddedServer, EmbeddedServerError
from store.repos import unit_of_work

EXIT_WORDS = ("exit", "quit", "thoat")


def main(argv: list[str], settings: Settings | None = None) -> int:
    """Exit status: 0 done, 1 refused (not authorised, wrong state…), 2 usage or set-up error."""
    parser = argparse.ArgumentParser(prog="run_bots.py staff", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--as", dest="who", required=True, help="member id or e-mail from STAFF_FILE")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="e.g. queue state=received")
    args = parser.parse_args(argv)
    settings = settings or Settings()
    if not settings.staff_file:
        print("error: STAFF_FILE is not set (see policies/staff/staff.example.yaml)", file=sys.stderr)
        return 2
    try:
        policy = load_policy(settings.policy_file)
        roster = load_roster(settings.staff_file, policy)
    except (PolicyError, StaffFileError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_session(settings, policy, roster, args.who, args.command))
    except (EmbeddedServerError, DatabaseUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


async def _session(settings: Settings, policy: Policy, roster: Roster, who: str, words: list[str]) -> int:
    secret = settings.agency_token_secret.get_secret_value() if settings.agency_token_secret else ""
    mailbox = settings.email_address if settings.email_imap_host else None  # as channels.registry
    loop = make_loop(policy, Texts(), secret, mailbox, settings.ioc_email)
    async with _database(settings) as database:
        return await run_cli(database, policy, roster, loop, who, words, sys.stdin, sys.stdout)


async def run_cli(database: Database, policy: Policy, roster: Roster, loop: Loop, who: str, words: list[str],
                  stdin: TextIO, stdout: TextIO, clock: Callable[[], datetime] = utcnow) -> int:
    """One command from `words`, or the interactive shell on `stdin`; called by `main` and tests.

    `loop` signs the reply addresses of the e-mails a command sends (approval requests, results
    sent back), with the gateway's `AGENCY_TOKEN_SECRET` so the gateway accepts the answers."""
    console, texts = StaffConsole(Texts(), policy, roster, loop), Texts()
    if words:
        return await _one(database, console, texts, who, " ".join(words), stdout, clock)
    status = 0
    prompt = texts.render("staff_labels", "vi", key="prompt") + " "
    while True:
        stdout.write(prompt)
        stdout.flush()
        line = stdin.readline()
        if not line or line.strip().lower() in EXIT_WORDS:
            return status
        if line.strip():
            status = await _one(database, console, texts, who, line.strip(), stdout, clock)


async def _one(database: Database, console: StaffConsole, texts: Texts, who: str, text: str,
               stdout: TextIO, clock: Callable[[], datetime]) -> int:
    text = text if text.startswith("/") else f"/{text}"
    async with unit_of_work(database) as store:
        result = await console.run(store, console.roster.find(who), f"cli:{getpass.getuser()}:{who}", text,
                                   clock(), private=True)
    print(render(texts, result), file=stdout)
    return 0 if result.ok else 2 if result.view == "help" else 1


@contextlib.asynccontextmanager
async def _database(settings: Settings) -> AsyncIterator[Database]:
    """The configured MongoDB; else the running gateway's embedded server; else start one."""
    name, timeout, server = settings.mongodb_database, settings.mongodb_timeout_ms, None
    if settings.mongodb_uri:
        database = await connect(settings.mongodb_uri, name, timeout)
    else:
        embedded = EmbeddedServer(settings.embedded_db_path, settings.embedded_db_port)
        try:
            database = await connect(embedded.uri, name, timeout_ms=1000)
        except DatabaseUnavailable:
            server = embedded
            server.start()
            database = await connect(server.uri, name, timeout)
    try:
        yield database
    finally:
        await database.close()
        if server is not None:
            server.stop()
