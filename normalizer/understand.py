"""Everything the gateway reads out of one citizen message, in one JSON-ready value.

The intake bot calls `understand` on each message and merges the result into the draft
report (name, phone, place, content…), deciding what still has to be asked; `evaluate`
measures it on a labelled set (tests/fixtures/messages_vi.yaml).
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from normalizer.classify import classify
from normalizer.extract import extract_address, match_commune, name_span
from normalizer.phones import phone_spans
from normalizer.places import Commune
from normalizer.signals import abusive, emergency, language, out_of_scope
from normalizer.text import (
    clean,
    expand_abbreviations,
    fold_aligned,
    load_lexicon,
    phrase_alternation,
)

_GREETINGS = load_lexicon("greetings")
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")


class Understanding(BaseModel):
    """One message, understood. `agency` is added later by routing (cases/)."""

    name: str | None = None
    phone: str | None = None  # E.164
    email: str | None = None
    address: str | None = None
    commune: str | None = None  # official name, "Phường Tân Phú"
    commune_code: str | None = None
    field: str = "other"
    field_confidence: float = 0.0
    urgent: bool = False
    emergency_number: str | None = None  # "113" | "114" | "115"
    out_of_scope: bool = False
    abusive: bool = False
    language: str = "vi"
    content: str | None = None  # what is wrong and where, without contact details


def _phrase_re(key: str, anchored: bool) -> re.Pattern[str]:
    start = r"(?:^|(?<=[\n.!?,]))\s*" if anchored else r"(?<!\w)"
    return re.compile(rf"{start}(?:{phrase_alternation(_GREETINGS[key])})(?!\w)\s*[:,!.]?")


_NOISE = [_phrase_re("greetings", True), _phrase_re("labels", False), _phrase_re("closings", False)]


def _content(text: str, cut: list[tuple[int, int]]) -> str | None:
    """The message minus `cut` spans and greeting / label / sign-off words, tidied up."""
    chars = list(text)
    for start, end in cut:
        chars[start:end] = " " * (end - start)
    folded = fold_aligned("".join(chars))
    for pattern in _NOISE:
        for m in pattern.finditer(folded):
            chars[m.start():m.end()] = " " * (m.end() - m.start())
    content = re.sub(r"\s+", " ", "".join(chars))
    content = re.sub(r"\s+([,.;:!?])", r"\1", content)
    content = re.sub(r"([,;:.\-])(?:\s*[,;:\-])+", r"\1", content).strip(" ,;:.-")
    return content if re.search(r"[^\W\d_]{2}", content) else None


def understand(text: str, field_keywords: Mapping[str, Sequence[str]],
               communes: Sequence[Commune] = ()) -> Understanding:
    """Read a citizen message: contact details, place, field, and the signals to act on."""
    t = clean(expand_abbreviations(text))
    name = name_span(t)
    phones = phone_spans(t)
    email = _EMAIL.search(t)
    cut = [(s, e) for s, e, _ in phones] + ([name[:2]] if name else [])
    cut += [email.span()] if email else []
    field, confidence = classify(t, field_keywords)
    commune = match_commune(t, communes)
    number = emergency(t)
    return Understanding(
        name=name[2] if name else None, phone=phones[0][2] if phones else None,
        email=email.group() if email else None, address=extract_address(t),
        commune=commune.name if commune else None, commune_code=commune.code if commune else None,
        field=field, field_confidence=confidence, urgent=number is not None,
        emergency_number=number, out_of_scope=out_of_scope(t), abusive=abusive(t),
        language=language(t), content=_content(t, cut),
    )


def evaluate(cases: Iterable[Mapping[str, Any]], field_keywords: Mapping[str, Sequence[str]],
             communes: Sequence[Commune] = ()) -> dict[str, float]:
    """Per-attribute accuracy of `understand` on labelled cases `{"text": …, "expect": {…}}`.

    Only the attributes a case labels count for it; "cases" holds how many were read.
    """
    right: dict[str, int] = {}
    total: dict[str, int] = {}
    count = 0
    for case in cases:
        count += 1
        got = understand(case["text"], field_keywords, communes).model_dump()
        for key, want in case["expect"].items():
            total[key] = total.get(key, 0) + 1
            right[key] = right.get(key, 0) + (got[key] == want)
    return {"cases": float(count), **{k: round(right[k] / total[k], 3) for k in sorted(total)}}
