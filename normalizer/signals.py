"""Yes/no signals and commands the bots act on before anything else.

The intake bot asks these on every message: is it an emergency to redirect to 113/114/115
right away (000 Đ6.2), a complaint or denunciation to refuse (004 Đ2.1), abusive text to hide
(004 Đ9), which language to answer in, and is it a command (cancel, confirm, edit, rating…)
rather than report content. Word lists are in `normalizer/lexicon/*.yaml`.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from normalizer.extract import REPORT_CODE, extract_report_codes
from normalizer.text import (
    clean,
    find_phrase,
    fold,
    fold_aligned,
    has_diacritics,
    load_lexicon,
    mentions,
    phrase_alternation,
)

_EMERGENCY = load_lexicon("emergency")
_SCOPE = load_lexicon("scope")
_ABUSE = load_lexicon("abuse")
_ENGLISH = load_lexicon("english")
_COMMANDS = load_lexicon("commands")
_OBFUSCATION = re.compile(r"(?<!\w)(\w)[.*_\-](?=\w(?!\w))|(\w)\1{2,}")


def _hits(text: str, phrases: Iterable[str], accented: bool = False) -> list[tuple[int, int, str]]:
    """Spans of every phrase of the list found in `text`; accented ones only in accented text."""
    if accented and not has_diacritics(text):
        return []
    spans = ((find_phrase(text, p, accented), p) for p in phrases)
    return [(span[0], span[1], p) for span, p in spans if span]


def _happening(text: str, start: int) -> bool:
    """False when the words just before a hit make it a risk or a denial ("dễ gây tai nạn")."""
    before = " ".join(clean(text)[:start].split()[-3:])
    return not any(mentions(before, p) for p in _EMERGENCY["not_happening"])


def emergency(text: str) -> str | None:
    """"113" (crime), "114" (fire, rescue, disaster) or "115" (injured people), or None.

    Each number scores the words of its phrases found in the text, ignoring risks ("nguy cơ
    cháy"), denials ("không ai bị thương") and false alarms ("bóng đèn bị cháy"); the highest
    score wins and ties go by the lexicon's `priority` (fire/rescue, then life, then police).
    """
    alarms = _hits(text, _EMERGENCY["false_alarms"])
    scores: dict[str, int] = {}
    for number, words in _EMERGENCY["numbers"].items():
        hits = _hits(text, words["any"]) + _hits(text, words["accented"], accented=True)
        real = [p for s, e, p in hits if _happening(text, s)
                and not any(a <= s and e <= b for a, b, _ in alarms)]
        if real:
            scores[number] = sum(len(p.split()) for p in real)
    if not scores:
        return None
    return min(scores, key=lambda n: (-scores[n], _EMERGENCY["priority"].index(n)))


def out_of_scope(text: str) -> bool:
    """True for complaints, denunciations and legal advice requests, which the IOC refuses.

    Choice: "tố cáo hàng xóm đổ rác" is out of scope — the word asks for the denunciation
    procedure (Luật Tố cáo), which the IOC may not run — unless the citizen also calls it a
    "phản ánh", in which case it is handled as a report about the rubbish.
    """
    return bool(_hits(text, _SCOPE["out_of_scope"])) and not _hits(text, _SCOPE["in_scope_markers"])


def _deobfuscate(text: str) -> str:
    """"đ.m" → "đm", "v*c*l" → "vcl", "nguuuu" → "ngu"."""
    previous = None
    while previous != text:
        previous, text = text, _OBFUSCATION.sub(lambda m: m.group(1) or m.group(2), text)
    return text


def abusive(text: str) -> bool:
    """True for insults or profanity (002 Đ17.2, 004 Đ5.6); tuned for precision, not recall."""
    for variant in {clean(text), _deobfuscate(clean(text))}:
        if _hits(variant, _ABUSE["any"]) or _hits(variant, _ABUSE["accented"], accented=True):
            return True
    return False


def language(text: str) -> str:
    """"en" when an unaccented message is clearly English, else "vi" (002 Đ6.1 allows English)."""
    if has_diacritics(text):
        return "vi"
    words = re.findall(r"[a-z']+", fold(text))
    english = sum(w in _ENGLISH["english"] for w in words)
    vietnamese = sum(w in _ENGLISH["vietnamese"] for w in words)
    return "en" if len(words) >= 3 and english >= 2 and english > vietnamese else "vi"


@dataclass(frozen=True)
class Command:
    """What the citizen asked the bot to do; `field`/`value` for edits and ratings."""

    kind: str  # restart | cancel | help | confirm | status | edit | rating | confidential
    field: str | None = None  # edit: phone | name | address | content | email
    value: str | None = None  # edit: the new value as typed; rating: satisfied | acceptable | not_satisfied
    code: str | None = None  # status: the report code, "PA-2026-000123"


def _tokens(folded: str) -> list[str]:
    return re.findall(r"/?[\w']+", folded)


def _strip_fillers(tokens: list[str]) -> list[str]:
    fillers = [_tokens(fold(f)) for f in _COMMANDS["fillers"]]
    changed = True
    while changed and tokens:
        changed = False
        for f in fillers:
            if tokens[:len(f)] == f or tokens[-len(f):] == f:
                tokens = tokens[len(f):] if tokens[:len(f)] == f else tokens[:-len(f)]
                changed = True
    return tokens


def _covered(tokens: list[str], phrases: Iterable[str]) -> bool:
    """True when the tokens are one or more of the phrases end to end ("ok gửi đi")."""
    options = sorted((_tokens(fold(p)) for p in phrases), key=len, reverse=True)
    i = 0
    while i < len(tokens):
        step = next((len(o) for o in options if o and tokens[i:i + len(o)] == o), 0)
        if not step:
            return False
        i += step
    return bool(tokens)


def _edit_re() -> re.Pattern[str]:
    lex, alt = _COMMANDS["edit"], phrase_alternation
    fields = [w for words in lex["fields"].values() for w in words]
    return re.compile(
        rf"^\W*(?:(?:{alt(_COMMANDS['fillers'])})\s+)*(?:{alt(lex['verbs'])})\s+"
        rf"(?:(?:{alt(lex['articles'])})\s+)*(?P<field>{alt(fields)})(?!\w)\s*"
        rf"(?:(?:{alt(lex['separators'])})(?!\w)|:|=|-)?\s*(?P<value>.*)$", re.S)


_EDIT = _edit_re()
_EDIT_FIELDS = {fold(w): key for key, words in _COMMANDS["edit"]["fields"].items() for w in words}


def _edit(text: str) -> Command | None:
    """"sửa số điện thoại: 0987…", "change my phone to …" → Command("edit", "phone", "0987…")."""
    m = _EDIT.match(fold_aligned(text))
    if not m:
        return None
    value = clean(text)[m.start("value"):].strip(" :=-.\n") or None
    return Command("edit", field=_EDIT_FIELDS[" ".join(m.group("field").split())], value=value)


def _status(text: str) -> Command | None:
    """"tra cứu PA-2026-000123", or a report code on its own."""
    codes = extract_report_codes(text)
    tokens = _strip_fillers(_tokens(REPORT_CODE.sub(" ", fold(text))))
    starts = any(tokens[:len(p)] == p for p in (_tokens(fold(s)) for s in _COMMANDS["status"]))
    if (starts and (codes or len(tokens) <= 3)) or (codes and not tokens):
        return Command("status", code=codes[0] if codes else None)
    return None


def _whole_message(text: str) -> Command | None:
    tokens = _strip_fillers(_tokens(fold(text)))
    for kind in ("restart", "cancel", "help", "confirm"):
        if _covered(tokens, _COMMANDS[kind]):
            return Command(kind)
    return None


def _rating(text: str) -> Command | None:
    """The longest rating phrase of a short message, so "không hài lòng" beats "hài lòng"."""
    if len(_tokens(fold(text))) > _COMMANDS["rating_max_words"]:
        return None
    hits = [(e - s, value) for value, phrases in _COMMANDS["rating"].items()
            for s, e, _ in _hits(text, phrases)]
    return Command("rating", value=max(hits)[1]) if hits else None


def parse_command(text: str) -> Command | None:
    """The command in a message, or None when it is report content.

    Edits and status look-ups are read from the start of the message, restart / cancel / help /
    confirm only when they are the whole message (minus polite filler), ratings in short
    messages, and a confidentiality request anywhere (001 Đ5.4).
    """
    if not clean(text).strip():
        return None
    return (_edit(text) or _status(text) or _whole_message(text) or _rating(text)
            or (Command("confidential") if _hits(text, _COMMANDS["confidential"]) else None))


def command(text: str) -> str | None:
    """Short form of `parse_command`: "cancel", "edit:phone", "rating:not_satisfied"…"""
    cmd = parse_command(text)
    if cmd is None:
        return None
    detail = cmd.field if cmd.kind == "edit" else cmd.value if cmd.kind == "rating" else None
    return f"{cmd.kind}:{detail}" if detail else cmd.kind
