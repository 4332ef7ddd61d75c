"""The words of an e-mail: quoted history and signatures cut, HTML made text, subjects read.

`channels/email_parse.py` calls these on the body it picked; they work on plain strings so
that the rules for Gmail, Outlook and their Vietnamese versions can be read in one place.
"""
from __future__ import annotations

import re
from html.parser import HTMLParser

_CASE_CODE = re.compile(r"\[?\b[A-Z]{2,4}-[0-9][\w-]*\]?")
_CUT = re.compile(
    r"^(-- ?|--|_{8,}|-{3,} ?(original message|thư gốc|forwarded message|tin nhắn được chuyển tiếp)"
    r" ?-{3,}|sent from my .*)$", re.IGNORECASE)
_WROTE = re.compile(r"^(on\b.*\bwrote|vào\b.*\bđã viết):$", re.IGNORECASE | re.DOTALL)
_HEAD_FROM = re.compile(r"^\*?(from|từ)\*?:", re.IGNORECASE)
_HEAD_NEXT = re.compile(r"^\*?(sent|date|đã gửi|ngày)\*?:", re.IGNORECASE)  # Outlook's date line


def subject_body(subject: str) -> str:
    """The subject without case codes like "PA-2024-0012"; "" if nothing with letters is left."""
    rest = _CASE_CODE.sub(" ", subject).strip(" :-–[]()")
    return rest if any(ch.isalpha() for ch in rest) else ""


def strip_quotes(text: str) -> str:
    """Cut quoted history and signatures (English, Gmail-vi, Outlook/Outlook-vi); drop "> " lines."""
    lines = [line.rstrip() for line in text.split("\n")]
    kept: list[str] = []
    for index, line in enumerate(lines):
        if _ends_message(lines, index):
            break
        if not line.lstrip().startswith(">"):
            kept.append(line)
    return re.sub(r"\n{3,}", "\n\n", "\n".join(kept)).strip()


def _ends_message(lines: list[str], index: int) -> bool:
    line = lines[index].strip()
    if _CUT.match(lines[index]) or _WROTE.match(line):
        return True
    if re.match(r"^(on|vào)\b", line, re.IGNORECASE) and index + 1 < len(lines):
        return bool(_WROTE.match(f"{line} {lines[index + 1].strip()}"))  # wrapped attribution
    if _HEAD_FROM.match(line):
        return any(_HEAD_NEXT.match(nxt.strip()) for nxt in lines[index + 1:index + 4])
    return False


class _HtmlText(HTMLParser):
    """Collects visible text; blocks become line breaks; scripts, styles, quotes are dropped."""

    SKIP = {"script", "style", "head", "title", "blockquote"}
    BLOCK = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "table", "hr"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in self.SKIP:
            self.skipping += 1
        elif tag in self.BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP:
            self.skipping = max(0, self.skipping - 1)
        elif tag in self.BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.parts.append(re.sub(r"\s+", " ", data))


def html_to_text(html: str) -> str:
    """Visible text of an HTML mail body (stdlib parser; tolerant of broken markup)."""
    parser = _HtmlText()
    parser.feed(html)
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.parts).split("\n"))
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
