"""Cutting a long reply into the parts a chat platform accepts, shared by every chat channel.

`channels/telegram.py`, `channels/zalo.py` and `channels/facebook.py` call `split_text` in
their `send` with their own limit; the limit is counted in UTF-16 code units, as the
platforms count it (an emoji is two).
"""
from __future__ import annotations


def split_text(text: str, limit: int) -> list[str]:
    """Cut `text` into parts of at most `limit`: at a blank line, else a line end, else a
    space, else (one huge word) mid-word. Called by `send`; empty text gives no part."""
    parts: list[str] = []
    rest = text.strip()
    while _utf16_len(rest) > limit:
        window = _utf16_prefix(rest, limit)
        cut = next((i for i in (window.rfind(s) for s in ("\n\n", "\n", " ")) if i > 0),
                   len(window))
        parts.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    return parts + [rest] if rest else parts


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _utf16_prefix(text: str, limit: int) -> str:
    """The longest prefix of `text` that is at most `limit` UTF-16 code units."""
    units = 0
    for i, char in enumerate(text):
        units += 2 if ord(char) > 0xFFFF else 1
        if units > limit:
            return text[:i]
    return text
