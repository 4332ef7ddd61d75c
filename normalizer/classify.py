"""Which field (lĩnh vực) a report belongs to, from the province's keyword lists.

The IOC classifies every report by field before forwarding it (001 Đ6, Phụ lục 1); routing
then picks the agency for that field. The keywords live in the province policy file
(`{code: [keywords]}`, written with diacritics); this module only scores them.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from normalizer.text import expand_abbreviations, fold, mentions

OTHER = "other"


def field_scores(text: str, field_keywords: Mapping[str, Sequence[str]]) -> dict[str, int]:
    """Per field, the summed length in words of its keywords found in the text.

    Longer phrases weigh more: "đèn đường hỏng" (3) says more than "đèn" (1). Matching is
    accent-aware (see `normalizer.text.find_phrase`), so "nước chảy" is not "cháy".
    """
    text = expand_abbreviations(text)
    scores: dict[str, int] = {}
    for code, keywords in field_keywords.items():
        score = sum(len(fold(k).split()) for k in keywords if mentions(text, k))
        if score:
            scores[code] = score
    return scores


def classify(text: str, field_keywords: Mapping[str, Sequence[str]]) -> tuple[str, float]:
    """(field code, confidence in [0, 1]); ("other", 0.0) when no keyword matches.

    Confidence grows with the winner's score (1 word → 0.5, 3 words → 0.75) and shrinks with
    competition (its share of all scores), so the IOC clerk knows which ones to check.
    """
    scores = field_scores(text, field_keywords)
    if not scores:
        return OTHER, 0.0
    best = max(scores, key=lambda code: scores[code])
    share = scores[best] / sum(scores.values())
    strength = scores[best] / (scores[best] + 1)
    return best, round(share * strength, 2)
