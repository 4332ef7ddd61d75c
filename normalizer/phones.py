"""Vietnamese phone numbers in chat text, as E.164.

The intake bot calls `find_phones` on every message (a phone is mandatory, 000 Đ4.1) and
`parse_phone` / `phone_problem` when the citizen answers "what is your phone number?", so it
can re-ask with the reason ("not_vietnamese", "too_short", …) instead of a generic error.
"""
from __future__ import annotations

import re

import phonenumbers

from normalizer.text import clean

_GROUPS = re.compile(r"(?<![\w+])\+?\d+(?:[ .\-]\d+)*(?!\w)")
_DIGITS = re.compile(r"\d+")
_ALLOWED = re.compile(r"^[\d\s+().\-]+$")
# Not phones: report codes (PA-2026-000123), dates (12/05/2026), times, amounts, "số 12/3".
_NOT_PHONES = re.compile(
    r"[A-Za-z]{1,5}[-_]\d+(?:[-_]\d+)*|\bpa\s?20\d\d\s?\d{1,6}\b|\d+(?:[/:]\d+)+"
    r"|\d+(?:[.,]\d{3})+\s*(?:đ|d|vnd|k)\b",
    re.I,
)


def _mask(text: str) -> str:
    """Blank out digit strings that are not phones, keeping every other offset in place."""
    text = clean(text).replace("(", " ").replace(")", " ")
    return _NOT_PHONES.sub(lambda m: " " * len(m.group()), text)


def _candidate(s: str) -> str:
    """Digits with an international "+" restored for "84912345678"-style input."""
    digits = "".join(_DIGITS.findall(s))
    if s.strip().startswith("+") or (digits.startswith("84") and len(digits) in (11, 12)):
        return "+" + digits
    return digits


def _parse(s: str) -> phonenumbers.PhoneNumber | None:
    try:
        return phonenumbers.parse(_candidate(s), "VN")
    except phonenumbers.NumberParseException:
        return None


def phone_problem(s: str) -> str | None:
    """Why `s` is not a usable Vietnamese phone number, or None when it is.

    Reasons: "empty", "not_a_number", "too_short", "too_long", "not_vietnamese", "invalid".
    """
    s = s.strip()
    if not s:
        return "empty"
    if not _ALLOWED.match(s):
        return "not_a_number"
    digits = _candidate(s).lstrip("+")
    national = digits[2:] if _candidate(s).startswith("+84") else digits.removeprefix("0")
    if len(national) < 9:
        return "too_short"
    n = _parse(s)
    if n is not None and n.country_code != 84:
        return "not_vietnamese" if phonenumbers.is_valid_number(n) else "invalid"
    if len(digits) > 12:
        return "too_long"
    if n is None:
        return "invalid"
    return None if phonenumbers.is_valid_number_for_region(n, "VN") else "invalid"


def parse_phone(s: str) -> str | None:
    """The E.164 form ("+84912345678") of one typed phone number, or None if unusable."""
    if phone_problem(s) is not None:
        return None
    n = _parse(s)
    return phonenumbers.format_number(n, phonenumbers.PhoneNumberFormat.E164) if n else None


def phone_spans(text: str) -> list[tuple[int, int, str]]:
    """(start, end, E.164) of every phone number in `clean(text)`; `understand` cuts them out."""
    masked = _mask(text)
    found: list[tuple[int, int, str]] = []
    for run in _GROUPS.finditer(masked):
        found += _phones_in_run(run.group(), run.start())
    return found


def _phones_in_run(run: str, offset: int) -> list[tuple[int, int, str]]:
    """Split a run of digit groups ("0912 345 678 12") into the longest valid numbers."""
    groups = [(m.start(), m.end()) for m in re.finditer(r"\+?\d+", run)]
    found, i = [], 0
    while i < len(groups):
        for j in range(len(groups) - 1, i - 1, -1):
            piece = run[groups[i][0]:groups[j][1]]
            e164 = parse_phone(piece) if 8 <= len(_candidate(piece)) <= 13 else None
            if e164:
                found.append((offset + groups[i][0], offset + groups[j][1], e164))
                i = j
                break
        i += 1
    return found


def find_phones(text: str) -> list[str]:
    """Every distinct Vietnamese phone number in a message, in order, as E.164."""
    seen: list[str] = []
    for _, _, e164 in phone_spans(text):
        if e164 not in seen:
            seen.append(e164)
    return seen
