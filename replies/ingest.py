"""Reading an agency's reply: which case it answers, and what it says.

`replies.agency_bot.AgencyBot` calls `match_case` (signed token first, then the thread
headers of our own e-mails, then a case code in the subject) and `read_reply` on the reply's
own words (the e-mail channel already cut quoted history and signatures). A keyword on the
first line (`replies/keywords.yaml`) says "not our jurisdiction", "need more time until DATE",
or, for a leader, approve / send back / edit; any other officer text is the result.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from normalizer.extract import extract_report_codes
from normalizer.messages import Inbound
from normalizer.text import fold
from replies.loop import KEYWORDS
from replies.tokens import Token, Tokens
from store.outbox_keys import Kind, OutboxKey
from store.repos import Store

RECIPIENT_HEADERS = ("to", "delivered_to", "cc")
_DATE = re.compile(r"\b(\d{1,2})[/.-](\d{1,2})[/.-](\d{4})\b|\b(\d{4})-(\d{1,2})-(\d{1,2})\b")


@dataclass(frozen=True)
class Reply:
    kind: str  # officer: result | not_ours | more_time; leader: approve | send_back | edit | unclear
    text: str  # the result, the reason, the comment or the edited result
    until: date | None = None  # more_time: the date asked for


@dataclass(frozen=True)
class Match:
    code: str | None
    token: Token | None  # only a valid token lets the reply change the case
    via: str  # token | thread | subject | none


def read_reply(body: str, role: str) -> Reply:
    """What an officer's ("officer") or leader's ("leader") reply says."""
    text = body.strip()
    first, _, rest = text.partition("\n")
    folded = fold(first)
    hits = [(len(fold(k)), kind, k) for kind, words in KEYWORDS[role].items() for k in words
            if re.match(rf"{re.escape(fold(k))}(?!\w)", folded)]
    if not hits:
        return Reply("result" if role == "officer" else "unclear", text)
    _, kind, keyword = max(hits)
    argument = _after_keyword(first, len(fold(keyword)))
    argument = "\n".join(p for p in (argument, rest.strip()) if p).strip()
    until = _date(argument) if kind == "more_time" else None
    return Reply(kind, argument, until)


def _after_keyword(line: str, folded_length: int) -> str:
    """The rest of the first line after the keyword, without the separator."""
    for cut in range(len(line) + 1):
        if len(fold(line[:cut])) >= folded_length:
            return line[cut:].strip().lstrip(":-–—.,").strip()
    return ""


def _date(text: str) -> date | None:
    found = _DATE.search(text)
    if found is None:
        return None
    d, m, y, y2, m2, d2 = found.groups()
    try:
        return date(int(y), int(m), int(d)) if y else date(int(y2), int(m2), int(d2))
    except ValueError:
        return None


async def match_case(store: Store, tokens: Tokens, inbound: Inbound) -> Match:
    """The case an agency e-mail answers, and whether it carried a valid token."""
    token = tokens.find(inbound.context.get(h, "") for h in RECIPIENT_HEADERS)
    if token is not None:
        return Match(token.code, token, "token")
    thread = (inbound.context.get("in_reply_to", "") + " " + inbound.context.get("references", "")).split()
    for message_id in reversed(thread):
        for item in await store.outbox.all(platform_message_id=message_id):
            key = OutboxKey.parse(item.id)
            if key is not None and key.kind in (Kind.FORWARD, Kind.APPROVAL, Kind.SEND_BACK):
                return Match(key.case_code, None, "thread")
    codes = extract_report_codes(inbound.context.get("subject", ""))
    return Match(codes[0], None, "subject") if codes else Match(None, None, "none")
