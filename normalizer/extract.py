"""Who reported, where, and which report they mean — read out of free chat text.

The intake bot calls these on every message to fill the mandatory fields (name, phone,
location, content — 000 Đ4.1, 004 Đ5) in any order; `understand` combines them. Each finder
has a `*_span` form returning offsets into `clean(text)` so `understand` can cut the contact
details out of the content while keeping the citizen's own wording.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from itertools import pairwise

from normalizer.places import Commune
from normalizer.text import (
    clean,
    expand_abbreviations,
    fold,
    fold_aligned,
    load_lexicon,
    mentions,
    phrase_alternation,
    title_case_name,
)

_NAMES = load_lexicon("names")
_PLACES = load_lexicon("address")
_SURNAMES = {fold(s) for s in _NAMES["surnames"]}
_NAME_STOP = {fold(w) for w in _NAMES["stop_words"]}
_NOT_NAMES = {fold(w) for w in _NAMES["not_names"]}
_PLACE_STOP = {fold(w) for w in _PLACES["stop_words"]}
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")
_NAME_END = re.compile(r"[,.;:\n!?()\[\]{}/|+@\d]|\s-\s")
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
REPORT_CODE = re.compile(r"(?<![a-z0-9])pa[\s\-_.#:]*(20\d\d)[\s\-_.]*(\d{1,6})(?!\d)")
_NUMBER = r"\d+[a-z]?(?:[/\-]\d+[a-z]?)*"


def _trigger_re() -> re.Pattern[str]:
    plain = [t for t in _NAMES["triggers"] if not t.endswith(":")]
    colon = [t[:-1] for t in _NAMES["triggers"] if t.endswith(":")]
    return re.compile(rf"(?<!\w)(?:(?:{phrase_alternation(plain)})(?!\w)\s*[:\-]?|"
                      rf"(?:{phrase_alternation(colon)})\s*:)\s*")


_TRIGGER = _trigger_re()
_SIGNOFF = re.compile(rf"^\s*(?:{phrase_alternation(_NAMES['signoffs'])})(?!\w)")


def _is_surname(word: str) -> bool:
    return any(fold(s) == fold(word) and mentions(word, s) for s in _NAMES["surnames"])


def _name_words(segment: str) -> list[re.Match[str]] | None:
    """The words of a name at the start of `segment`, or None when it does not look like one."""
    cut = _NAME_END.search(segment)
    words = list(_WORD.finditer(segment[:cut.start()] if cut else segment))
    if not words:
        return None
    if words[0].group()[0].isupper():
        if fold(words[0].group()) in _NOT_NAMES:
            return None
        run = [words[0]]
        for w in words[1:]:
            shouting = w.group().isupper() and len(w.group()) > 1
            if not w.group()[0].isupper() or (shouting and fold(w.group()) in _NAME_STOP):
                break
            run.append(w)
    elif _is_surname(words[0].group()):
        run = [words[0]]
        for w in words[1:]:
            if fold(w.group()) in _NAME_STOP:
                break
            run.append(w)
    else:
        return None
    return run if 2 <= len(run) <= 5 else None


def name_span(text: str) -> tuple[int, int, str] | None:
    """(start, end, name): the introduction "tôi là …" or the signature it was read from."""
    t = clean(text)
    for m in _TRIGGER.finditer(fold_aligned(t)):
        words = _name_words(t[m.end():])
        if words:
            return m.start(), m.end() + words[-1].end(), _name_of(t[m.end():], words)
    return _signature(t) or _leading_name(t)


def _name_of(segment: str, words: list[re.Match[str]]) -> str:
    return title_case_name(" ".join(w.group() for w in words))


def _signature(t: str) -> tuple[int, int, str] | None:
    """"Trân trọng,\\nNguyễn Văn An" at the end of an e-mail-like message."""
    lines = [(m.start(), m.group()) for m in re.finditer(r"[^\n]+", t) if m.group().strip()]
    for (start, line), (nstart, nline) in pairwise(lines):
        if _SIGNOFF.match(fold(line)):
            words = _name_words(nline.strip())
            if words and len(words) == len(_WORD.findall(nline)):
                return start, nstart + len(nline), _name_of(nline.strip(), words)
    return None


def _leading_name(t: str) -> tuple[int, int, str] | None:
    """A bare surname-led name before a comma, dash or phone: "Nguyễn Văn An, 0912…".

    At the start of the message two words do; at the start of a later sentence ("… hỏng.
    Lê Thị Thu Hà - 0914…") three are needed, since a street name can open a sentence too.
    """
    for m in re.finditer(r"(?:^|[.!?\n])\s*", t):
        words = _name_words(t[m.end():])
        if not words or not _is_surname(words[0].group()) or (m.start() and len(words) < 3):
            continue
        end = m.end() + words[-1].end()
        if re.match(r"\s*(?:[,\n\-:]|\+?\d|$)", t[end:]):
            return m.end(), end, _name_of(t[m.end():], words)
    return None


def extract_name(text: str) -> str | None:
    """The citizen's full name, title-cased ("toi la nguyen van an" → "Nguyen Van An")."""
    found = name_span(text)
    return found[2] if found else None


def extract_email(text: str) -> str | None:
    """The first e-mail address in the message (optional contact, 000 Đ4.1)."""
    m = _EMAIL.search(clean(text))
    return m.group() if m else None


def extract_report_codes(text: str) -> list[str]:
    """Report codes cited by the citizen ("pa 2026 123" → "PA-2026-000123"), for status look-ups."""
    codes = [f"PA-{y}-{int(n):06d}" for y, n in REPORT_CODE.findall(fold(text))]
    return list(dict.fromkeys(codes))


def _leads(key: str) -> re.Pattern[str]:
    return re.compile(rf"(?<!\w)(?:{phrase_alternation(_PLACES[key])})(?!\w)")


_NUMBER_LEADS, _NAME_LEADS, _WEAK_LEADS = (_leads(k) for k in
                                           ("number_leads", "name_leads", "weak_leads"))
_BARE_NUMBER = re.compile(rf"(?<![\w/]){_NUMBER}(?=\s+[A-ZĐ])")
_JOINERS = phrase_alternation(_PLACES["joiners"])
_JOIN = re.compile(rf"^[\s,;\-–]*(?:(?:{_JOINERS})(?!\w))?[\s,;\-–]*$")


def _accent_ok(t: str, m: re.Match[str], key: str) -> bool:
    return any(fold(p) == fold(m.group()) and mentions(t[m.start():m.end()], p)
               for p in _PLACES[key])


def _name_end(t: str, pos: int, casual: bool) -> int | None:
    """End of the proper name (or number) starting at `pos`: "Hùng Vương", "3", "tran phu"."""
    end, lowercase = None, 0
    for m in re.finditer(r"\s*([^\W_]+)", t[pos:]):
        if m.start() != (end - pos if end else 0) or (end and "\n" in m.group()):
            break
        word = m.group(1)
        if not (word[0].isupper() or word.isdigit()):
            if not casual or fold(word) in _PLACE_STOP or lowercase == 3:
                break
            lowercase += 1
        end = pos + m.end()
    return end


def _components(t: str) -> list[tuple[int, int]]:
    f, parts = fold_aligned(t), []
    casual = not any(w[0].isupper() for w in _WORD.findall(t)[1:])
    for m in _NUMBER_LEADS.finditer(f):
        num = re.match(rf"\s*:?\s*{_NUMBER}(?!\w)", f[m.end():])
        if num and _accent_ok(t, m, "number_leads"):
            end = m.end() + num.end()
            parts.append((m.start(), _name_end(t, end, casual) or end))
    for pattern, key, lenient in ((_NAME_LEADS, "name_leads", casual), (_WEAK_LEADS, "weak_leads", False)):
        for m in pattern.finditer(f):
            name_end = _name_end(t, m.end(), lenient)
            if name_end and _accent_ok(t, m, key):
                parts.append((m.start(), name_end))
    parts += [(m.start(), _name_end(t, m.end(), False) or m.end()) for m in _BARE_NUMBER.finditer(t)]
    return sorted(parts)


def address_span(text: str) -> tuple[int, int] | None:
    """Offsets in `clean(text)` of the longest chain of address parts ("số 12 …, phường …")."""
    t = clean(text)
    chains: list[list[int]] = []
    for start, end in _components(t):
        if chains and (start <= chains[-1][1] or _JOIN.match(fold(t[chains[-1][1]:start]))):
            chains[-1][1], chains[-1][2] = max(end, chains[-1][1]), chains[-1][2] + 1
        else:
            chains.append([start, end, 1])
    if not chains:
        return None
    start, end, _ = max(chains, key=lambda c: (c[2], c[1] - c[0]))
    return start, end


def extract_address(text: str) -> str | None:
    """The scene's address as the citizen wrote it: "số 12 Hùng Vương, phường Tân Phú".

    Abbreviations are spelled out first ("P. Tân Phú" → "phường Tân Phú") for the agency.
    """
    text = expand_abbreviations(text)
    span = address_span(text)
    return text[span[0]:span[1]].strip(" ,;-") if span else None


@lru_cache(maxsize=4096)
def _variants(commune: Commune) -> tuple[str, ...]:
    return _name_variants(commune.name, tuple(commune.aliases))


@lru_cache(maxsize=4096)
def _name_variants(name: str, aliases: tuple[str, ...]) -> tuple[str, ...]:
    kinds = re.compile(rf"^(?:{phrase_alternation(_PLACES['commune_kinds'])})\s+")
    names = [clean(n).strip() for n in (name, *aliases)]
    bare = [n[m.end():] for n in names if (m := kinds.match(fold_aligned(n)))]
    return (*names, *(b for b in bare if b and not b.isdigit()))


def match_commune(text: str, communes: Sequence[Commune]) -> Commune | None:
    """The commune the message names ("P. Tân Phú", "tan phu", a former name), longest match wins.

    Routing uses it to pick the commune authority (004 Đ6); None sends the case to the district.
    Only the names whose first word is in the message are tried (`_commune_index`).
    """
    t = expand_abbreviations(text)
    by_word, always = _commune_index(tuple(communes))
    words = set(_WORD.findall(fold_aligned(t)))
    candidates = sorted([*always, *(e for w in words for e in by_word.get(w, ()))])
    best, best_len = None, 0
    for _, commune, variant, length in candidates:
        if length > best_len and mentions(t, variant):
            best, best_len = commune, length
    return best


_WORD = re.compile(r"\w+")
_Entry = tuple[int, Commune, str, int]  # (order in the gazetteer, commune, name variant, folded length)


@lru_cache(maxsize=8)
def _commune_index(communes: tuple[Commune, ...]) -> tuple[dict[str, list[_Entry]], list[_Entry]]:
    """The gazetteer's name variants by their first folded word (a name can only be in a
    message that has that word), and those whose first word is not a plain word."""
    by_word: dict[str, list[_Entry]] = {}
    always: list[_Entry] = []
    entries = [(commune, variant, fold(variant)) for commune in communes for variant in _variants(commune)]
    for order, (commune, variant, folded) in enumerate(entries):
        if not folded:
            continue
        first, entry = folded.split()[0], (order, commune, variant, len(folded))
        if _WORD.fullmatch(first):
            by_word.setdefault(first, []).append(entry)
        else:
            always.append(entry)
    return by_word, always
