"""Vietnamese text tools shared by every part of the normalizer.

Citizens type with full diacritics, without any, or half-way ("duong Tran Phú"), in any
Unicode normal form. Everything here lets the extractors and the signal detectors compare
words without caring how they were typed, while keeping the original spans so that what the
gateway shows back to the citizen is their own text, not a folded copy.
"""
from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

LEXICON_DIR = Path(__file__).parent / "lexicon"
_WS = re.compile(r"\s+")


@lru_cache(maxsize=None)
def load_lexicon(name: str) -> Any:
    """Read `normalizer/lexicon/<name>.yaml` once; every detector keeps its words there."""
    with open(LEXICON_DIR / f"{name}.yaml", encoding="utf-8") as fh:
        return yaml.safe_load(fh)


@lru_cache(maxsize=8192)  # the same message and the same lexicon words are folded many times per turn
def clean(s: str) -> str:
    """NFC text without stray combining marks: the form every span in the normalizer indexes."""
    s = unicodedata.normalize("NFC", s)
    return "".join(c for c in s if not unicodedata.combining(c))


@lru_cache(maxsize=4096)
def _fold_char(c: str) -> str:
    if c in "đĐ":
        return "d"
    base = "".join(x for x in unicodedata.normalize("NFD", c) if not unicodedata.combining(x))
    if len(base) == 1 and len(base.lower()) == 1:
        return base.lower()
    return c.lower() if len(c.lower()) == 1 else c


@lru_cache(maxsize=256)
@lru_cache(maxsize=8192)
def fold_aligned(s: str) -> str:
    """Fold `clean(s)` character by character: same length, so spans map back to `clean(s)`.

    The extractors search this form and cut their results out of `clean(s)`.
    """
    return "".join(_fold_char(c) for c in clean(s))


@lru_cache(maxsize=8192)
def fold(s: str) -> str:
    """Lowercase, strip diacritics (đ→d), collapse whitespace: the key for comparing words."""
    return _WS.sub(" ", fold_aligned(s)).strip()


def has_diacritics(s: str) -> bool:
    """True when the citizen typed Vietnamese marks (used by language and accent-aware matching)."""
    return any(_fold_char(c) != c.lower() and _fold_char(c).isascii() for c in clean(s))


@lru_cache(maxsize=2048)
def _phrase_re(folded_phrase: str) -> re.Pattern[str]:
    parts = (re.escape(p) for p in folded_phrase.split())
    return re.compile(r"(?<!\w)" + r"\s+".join(parts) + r"(?!\w)")


def phrase_alternation(phrases: Iterable[str]) -> str:
    """Regex alternation of folded phrases, longest first, any whitespace between words."""
    folded = sorted({fold(p) for p in phrases}, key=len, reverse=True)
    return "|".join(re.escape(p).replace(r"\ ", r"\s+") for p in folded if p)


def contains_phrase(folded_text: str, folded_phrase: str) -> bool:
    """Whole-word phrase test on folded text ("ga" is not found in "gas")."""
    return bool(folded_phrase.strip()) and bool(_phrase_re(folded_phrase).search(folded_text))


def find_phrase(text: str, phrase: str, accented: bool = False) -> tuple[int, int] | None:
    """First span of `phrase` in `clean(text)`, accent-aware.

    Letters the citizen typed without marks match anything ("chay" matches "cháy"), but marks
    they did type must agree ("chảy" does not match "cháy"). With `accented`, every letter of the
    span must carry the phrase's exact marks — for words that are harmless when unaccented
    ("lon" is "lớn", not an insult). Used by the classifiers, the signal detectors and commands.
    """
    folded_phrase = fold(phrase)
    folded = fold_aligned(text)
    if not folded_phrase or not all(word in folded for word in folded_phrase.split()):
        return None  # the cheap test first: most phrases looked for are not in the message at all
    original, target = _lower_aligned(text), _target(phrase)
    for m in _phrase_re(folded_phrase).finditer(folded):
        span = _WS.sub(" ", original[m.start():m.end()])
        if len(span) == len(target) and _marks_agree(span, target, accented):
            return m.start(), m.end()
    return None


@lru_cache(maxsize=8192)
def _target(phrase: str) -> str:
    return _WS.sub(" ", clean(phrase).lower().strip())


@lru_cache(maxsize=256)
def _lower_aligned(text: str) -> str:
    return "".join(c.lower() if len(c.lower()) == 1 else c for c in clean(text))


def _marks_agree(span: str, target: str, accented: bool) -> bool:
    if accented:
        return span == target
    return all(a == b or _fold_char(a) == a for a, b in zip(span, target, strict=False))


def mentions(text: str, phrase: str, accented: bool = False) -> bool:
    """Boolean form of `find_phrase`."""
    return find_phrase(text, phrase, accented) is not None


def _abbrev_patterns() -> list[tuple[re.Pattern[str], str]]:
    lex = load_lexicon("abbreviations")
    pats = [(re.compile(rf"(?<!\w){re.escape(a)}\.\s*(?=\w)", re.I), f"{full} ")
            for a, full in lex["dotted"].items()]
    pats += [(re.compile(rf"(?<!\w){re.escape(a)}(?!\w)", re.I), full)
             for a, full in lex["words"].items()]
    pats += [(re.compile(rf"(?<!\w){re.escape(a)}(?=\s*[:.]?\s*\+?\d[\d .\-]{7,})", re.I), full)
             for a, full in lex["before_number"].items()]
    return pats


def expand_abbreviations(s: str) -> str:
    """Spell out chat shorthand ("sđt", "đc", "ko", "P.", "tp") before extraction and display.

    The regulations ask for reports without abbreviations (004 Đ5.2); `understand` calls this
    first so the content the bot echoes back is spelled out.
    """
    out = clean(s)
    for pattern, full in _ABBREVIATIONS:
        out = pattern.sub(full, out)
    return out


def title_case_name(name: str) -> str:
    """"nguyễn văn an" / "NGUYỄN VĂN AN" → "Nguyễn Văn An", for names read from chat."""
    return " ".join(w[:1].upper() + w[1:].lower() for w in clean(name).split())


_ABBREVIATIONS = _abbrev_patterns()
