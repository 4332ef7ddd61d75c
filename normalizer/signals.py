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

from normalizer.extract import extract_report_codes
from normalizer.text import clean, find_phrase, fold, has_diacritics, load_lexicon, mentions

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
