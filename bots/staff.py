"""IOC staff commands: one parser and one console for both front ends, and the Telegram bot.

`parse` turns `/reject PA-2026-000001 incomplete` into a `bots.staff_commands.Request`;
`StaffConsole.run` checks the author is a configured member (else 'not authorised', logged),
runs the command and returns its `Result`; `render` turns it into text. The gateway routes
Telegram messages from the staff group and from members' private chats to `StaffBot` (given
the agency loop's `Loop`, through which results and approvals travel), which answers in the
same chat (a case's photos as photos); `bots.staff_cli` uses the same console on the server's
command line.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Callable

from bots.staff_commands import Context, Request, Result, execute, stranger
from bots.staff_views import staff_alerts
from cases.policy import Policy
from cases.staff_roles import Member, Roster
from normalizer.messages import Button, Delivery, Inbound, Outbound, reply, utcnow
from normalizer.text import fold
from normalizer.texts import Texts
from replies.loop import Loop
from store.repos import Store

ALIASES = {
    "queue": ("ds", "danhsach", "hangdoi", "list"), "show": ("xem",), "route": ("phanloai", "classify"),
    "forward": ("chuyen",), "reject": ("tuchoi",), "hide": ("an",), "unhide": ("boan", "hien"),
    "dup": ("trung",), "undup": ("botrung",), "ask": ("bosung",), "note": ("ghichu",),
    "result": ("ketqua",), "approve": ("duyet",), "sendback": ("tralai",), "edit": ("sua",),
    "publish": ("congkhai",), "reopen": ("molai",), "close": ("dong",), "stats": ("thongke",),
    "return": ("trave", "khongthuoc"), "dupok": ("xacnhantrung",), "dupsplit": ("tachtrung",),
    "help": ("huongdan", "trogiup", "start"),
}
NAMES = {alias: name for name, aliases in ALIASES.items() for alias in (name, *aliases)}
CODE_ONLY = ("show", "forward", "undup", "approve", "publish")
TEXT_REQUIRED = ("hide", "unhide", "ask", "note", "result", "sendback", "edit", "return")
TEXT_OPTIONAL = ("reopen", "close")
QUEUE_KEYS = ("state", "field", "agency", "channel", "overdue", "urgent")
PERIODS = {"": "today", "today": "today", "homnay": "today", "week": "week", "tuan": "week", "tuannay": "week"}
_CODE = re.compile(r"^PA-\d{4}-\d{6}$", re.IGNORECASE)
_COMMAND = re.compile(r"^/(\S+)\s*(.*)$", re.DOTALL)
_ID = re.compile(r"^[a-z0-9_]{1,64}$")
CALLBACK_LIMIT = 64  # bytes of Telegram callback data


class UsageError(Exception):
    """Malformed arguments (`command` set) or an unknown command (`unknown` set)."""

    def __init__(self, command: str | None = None, unknown: str | None = None) -> None:
        super().__init__(command or unknown)
        self.command, self.unknown = command, unknown


def is_command(text: str) -> bool:
    return text.lstrip().startswith("/")


def parse(text: str) -> Request:
    """`/name args…` (Telegram's `/name@bot` too, Vietnamese aliases, accents ignored)."""
    match = _COMMAND.match(text.strip())
    if match is None:
        raise UsageError(unknown=text.strip()[:40])
    word, rest = match[1], match[2].strip()
    name = NAMES.get(fold(word.split("@", 1)[0]).lower())
    if name is None:
        raise UsageError(unknown=word[:40])
    try:
        return _arguments(name, rest)
    except (ValueError, IndexError):
        raise UsageError(name) from None


def _arguments(name: str, rest: str) -> Request:
    if name == "queue":
        return _queue(rest)
    if name == "stats":
        period = PERIODS.get(fold(rest).replace(" ", "").lower())
        return Request(name, period=period) if period else _fail()
    if name == "help":
        return Request(name, text=NAMES.get(fold(rest.lstrip("/")).lower(), "") if rest else "")
    words = rest.split(None, 1)
    code, tail = _code(words[0]), (words[1] if len(words) > 1 else "")
    if name in CODE_ONLY and not tail:
        return Request(name, code=code)
    if name in TEXT_REQUIRED and tail:
        return Request(name, code=code, text=tail)
    if name in TEXT_OPTIONAL:
        return Request(name, code=code, text=tail)
    return _with_words(name, code, tail)


def _with_words(name: str, code: str, tail: str) -> Request:
    words = tail.split()
    if name == "route" and 1 <= len(words) <= 2 and all(_ID.match(w) for w in words):
        return Request(name, code=code, field=words[0], agency=words[1] if len(words) > 1 else None)
    if name == "reject" and words and _ID.match(words[0]):
        return Request(name, code=code, reason=words[0], text=tail.split(None, 1)[1] if len(words) > 1 else "")
    if name == "dup" and len(words) == 1:
        return Request(name, code=code, target=_code(words[0]))
    if name in ("dupok", "dupsplit") and len(words) == 1 and _ID.match(words[0]):
        return Request(name, code=code, candidate=words[0])
    return _fail()


def _queue(rest: str) -> Request:
    filters: dict[str, str] = {}
    page = 1
    for token in rest.split():
        key, sep, value = token.partition("=")
        if not sep and key in ("overdue", "urgent"):
            value = "yes"
        if key == "page" and value.isdigit() and 0 < int(value) <= 10_000:
            page = int(value)
        elif key in QUEUE_KEYS and value and key not in filters:
            filters[key] = value
        else:
            return _fail()
    return Request("queue", filters=filters, page=page)


def _code(word: str) -> str:
    if not _CODE.match(word):
        raise ValueError(word)
    return word.upper()


def _fail() -> Request:
    raise ValueError("malformed")


def usage(error: UsageError) -> Result:
    return Result(False, "help", {"only": error.command, "unknown": error.unknown, "error": True})


def render(texts: Texts, result: Result) -> str:
    """The text both front ends show for a result (Vietnamese)."""
    return texts.render(f"staff_{result.view}", "vi", **{"only": None, "unknown": None, "error": False,
                                                          **result.values})


class StaffConsole:
    """Parse, authorise and run one staff command; shared by `StaffBot` and the CLI."""

    def __init__(self, texts: Texts, policy: Policy, roster: Roster, loop: Loop) -> None:
        self.texts, self.policy, self.roster, self.loop = texts, policy, roster, loop

    async def run(self, store: Store, member: Member | None, who: str, text: str, now: datetime,
                  private: bool) -> Result:
        """`who` names the author in the audit log when they are not a member."""
        if member is None:
            return await stranger(store, who, text, now)
        try:
            request = parse(text)
        except UsageError as error:
            return usage(error)
        return await execute(Context(store, self.policy, self.texts, member, now, self.loop, private), request)


@dataclass(frozen=True)
class StaffSetup:
    """What `run_bots.py` configures: the members, and where alerts go (channel, address)."""

    roster: Roster
    alert_chat: tuple[str, str] | None = None


class StaffBot:
    """The Bot for staff messages on Telegram (the staff group and members' private chats)."""

    def __init__(self, texts: Texts, policy: Policy, setup: StaffSetup, loop: Loop,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.texts, self.policy, self.setup, self.clock = texts, policy, setup, clock
        self.console = StaffConsole(texts, policy, setup.roster, loop)

    def member(self, inbound: Inbound) -> Member | None:
        if inbound.channel != "telegram":
            return None
        return self.setup.roster.by_telegram(inbound.context.get("user_id"))

    def claims(self, inbound: Inbound) -> bool:
        """Called by the gateway: the staff group, and private chats of configured members."""
        return inbound.chat_kind == "group" or self.member(inbound) is not None

    async def handle(self, inbound: Inbound, store: Store) -> list[Delivery]:
        text = inbound.action or inbound.text
        if not is_command(text):  # staff chatting among themselves; a member's stray message
            hint = self.texts.render("staff_labels", "vi", key="not_private")
            return [] if inbound.chat_kind == "group" else [reply(inbound, Outbound(text=hint))]
        who = f"telegram:{inbound.context.get('user_id', '?')}"
        result = await self.console.run(store, self.member(inbound), who, text, self.clock(),
                                        private=inbound.chat_kind == "private")
        return [reply(inbound, self.message(result))]

    def message(self, result: Result) -> Outbound:
        """The answer as a chat message: a case's photos as photos, a next-page button."""
        nxt = result.values.get("next")
        buttons = [Button(label=self.texts.render("staff_labels", "vi", key="next_page"), action=nxt)] \
            if nxt and len(nxt.encode()) <= CALLBACK_LIMIT else []
        return Outbound(text=render(self.texts, result), photos=list(result.photos), buttons=buttons)

    async def alerts(self, store: Store) -> list[Delivery]:
        """Called by the gateway's scheduler: push new urgent and late cases to the staff chat."""
        if self.setup.alert_chat is None:
            return []
        return await staff_alerts(store, self.policy, self.clock(), texts=self.texts, chat=self.setup.alert_chat)

