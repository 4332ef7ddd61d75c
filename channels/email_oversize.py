"""Reading a mail over the size limit in parts: its text and the photos that fit, by IMAP section.

`channels/email_intake.py` calls `read_in_part` for a message whose RFC822.SIZE is over the
limit, instead of fetching it whole: BODYSTRUCTURE says which parts there are and how big; the
text part(s) and as many image parts as fit in the limit (smallest first; each at most the
photo limit) are fetched by section in one UID FETCH, and a smaller multipart/mixed mail is
rebuilt from the original headers and those parts. The parts left out are listed as
"name:bytes" for the citizen's notice (`channels/email_parse.parse_mail`).
"""
from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from email.header import decode_header, make_header
from email.message import Message
from typing import Any, Awaitable, Callable, Sequence

from channels.email_parse import IMAGE_EXTENSIONS

Fetch = Callable[[str], Awaitable[Sequence[bytes | bytearray]]]  # UID FETCH items → response lines

MAX_HEADER_BYTES = 256 * 1024  # a header block larger than this is no mail we can read
PART_OVERHEAD = 2048  # the boundary and MIME headers of one kept part, at most
MIN_TEXT_BYTES = 512  # a text cut shorter than this is not worth keeping
_CONTENT_HEADERS = (b"content-type:", b"content-transfer-encoding:", b"content-disposition:", b"mime-version:")
_SECTION = re.compile(rb"BODY\[([0-9.]*(?:HEADER|TEXT|MIME)?)\](?:<\d+>)? \{\d+\}\s*$")
_LITERAL = re.compile(r"\{(\d+)\}\s*$")
_ATOM = re.compile(r"[^\s()\[\]\"]+(\[[^\]]*\])?[^\s()]*")
_UNSAFE_NAME = re.compile(r'[\x00-\x1f\x7f"\\]')
_UNSAFE_TOKEN = re.compile(r"[^\w.+-]")
_TOKEN = re.compile(r"[\w.*+-]+")
MAX_MIME_BYTES = 1900  # a part's own header block longer than this is replaced by a plain one


class UnreadableStructure(ValueError):
    """The server's BODYSTRUCTURE (or the header block) is not something we can read."""


@dataclass
class Part:
    """One leaf of the BODYSTRUCTURE: its IMAP section ("2.1"; "" for a one-part message)."""

    section: str
    maintype: str
    subtype: str
    encoding: str
    size: int  # encoded octets, as the server counts them
    filename: str
    attachment: bool

    @property
    def decoded_size(self) -> int:
        if self.encoding == "base64":
            return (self.size - 2 * (self.size // 78)) * 3 // 4  # 76-character lines and CRLF
        return self.size

    @property
    def is_text(self) -> bool:
        return self.maintype == "text" and not self.attachment and not self.filename

    @property
    def is_image(self) -> bool:
        return self.maintype == "image" or self.filename.lower().endswith(IMAGE_EXTENSIONS)

    def mime_header(self) -> bytes:
        """A plain header block for this part (when its own is absurdly long)."""
        name = _UNSAFE_NAME.sub("", self.filename)
        kind, sub, encoding = (_UNSAFE_TOKEN.sub("", x) or "x" for x in (self.maintype, self.subtype, self.encoding))
        disposition = f'Content-Disposition: attachment; filename="{name}"\r\n' if name else ""
        return (f"Content-Type: {kind}/{sub}\r\nContent-Transfer-Encoding: {encoding}\r\n"
                f"{disposition}\r\n").encode("utf-8", "replace")

    def label(self) -> str:
        name = _UNSAFE_NAME.sub("", self.filename).replace(":", " ") or f"part-{self.section or 1}"
        return f"{name}:{self.decoded_size}"


async def read_in_part(fetch: Fetch, limit: int, max_attachment_bytes: int) -> tuple[bytes, list[str], bool]:
    """(the rebuilt mail, the parts left out as "name:bytes", whether the text was cut)."""
    structure = find_structure(parse_response(await fetch("(BODYSTRUCTURE)")))
    parts = leaves(structure)
    header = _literals(await fetch(f"(BODY.PEEK[HEADER]<0.{MAX_HEADER_BYTES}>)")).get("HEADER", b"")
    if not header or len(header) >= MAX_HEADER_BYTES:
        raise UnreadableStructure(f"header block missing or over {MAX_HEADER_BYTES} bytes")
    text, cut_at, images, dropped = choose(parts, limit - len(header), max_attachment_bytes)
    if len(parts) == 1 and not parts[0].section:  # a one-part message: its body is TEXT
        return await _one_part(fetch, header, text, cut_at, dropped)
    items = [f"BODY.PEEK[{p.section}.MIME] BODY.PEEK[{p.section}]" for p in sorted(text + images, key=_order)]
    if cut_at is not None:
        items.append(f"BODY.PEEK[{cut_at[0].section}.MIME] BODY.PEEK[{cut_at[0].section}]<0.{cut_at[1]}>")
    got = _literals(await fetch(f"({' '.join(items)})")) if items else {}
    pieces = []
    for part in sorted([*text, *images, *([cut_at[0]] if cut_at else [])], key=_order):
        body = got.get(part.section, b"")
        if cut_at is not None and part is cut_at[0]:
            body = body[:body.rfind(b"\n") + 1]  # whole lines: base64 and quoted-printable stay decodable
        mime = got.get(f"{part.section}.MIME", b"")
        pieces.append((mime if len(mime) <= MAX_MIME_BYTES else part.mime_header(), body))
    return rebuild(header, pieces), dropped, cut_at is not None


async def _one_part(fetch: Fetch, header: bytes, text: list[Part], cut_at: tuple[Part, int] | None,
                    dropped: list[str]) -> tuple[bytes, list[str], bool]:
    if cut_at is None and not text:  # an image or file alone, over the limit: headers and a note
        return strip_content_headers(header) + b"Content-Type: text/plain; charset=utf-8\r\n\r\n", dropped, False
    span = "" if cut_at is None else f"<0.{cut_at[1]}>"
    body = _literals(await fetch(f"(BODY.PEEK[TEXT]{span})")).get("TEXT", b"")
    if cut_at is not None:
        body = body[:body.rfind(b"\n") + 1]
    return header + body, dropped, cut_at is not None


def choose(parts: list[Part], budget: int, max_attachment_bytes: int
           ) -> tuple[list[Part], tuple[Part, int] | None, list[Part], list[str]]:
    """(texts kept whole, (text, bytes) cut, images kept, labels of what is left out). Text
    first (plain, else HTML), then images smallest first; other attachments are only listed
    when over the photo limit, as a mail read whole would say."""
    texts = [p for p in parts if p.is_text and p.subtype == "plain"] or \
        [p for p in parts if p.is_text and p.subtype == "html"]
    whole: list[Part] = []
    cut: tuple[Part, int] | None = None
    for number, part in enumerate(texts):
        if part.size + PART_OVERHEAD <= budget:
            whole.append(part)
            budget -= part.size + PART_OVERHEAD
        elif number == 0 and budget - PART_OVERHEAD >= MIN_TEXT_BYTES:
            cut = (part, budget - PART_OVERHEAD)
            budget = 0
    images, dropped = [], []
    for part in sorted((p for p in parts if p.is_image and not p.is_text), key=lambda p: p.size):
        if part.decoded_size <= max_attachment_bytes and part.size + PART_OVERHEAD <= budget:
            images.append(part)
            budget -= part.size + PART_OVERHEAD
        else:
            dropped.append(part)
    dropped += [p for p in parts if not (p.is_text or p.is_image) and p.decoded_size > max_attachment_bytes]
    return whole, cut, images, [p.label() for p in sorted(dropped, key=_order)]


def _order(part: Part) -> list[int]:
    return [int(n) for n in part.section.split(".") if n.isdigit()]


def rebuild(header: bytes, pieces: list[tuple[bytes, bytes]]) -> bytes:
    """The original headers over a new multipart/mixed of the kept (MIME header, body) pairs."""
    boundary = f"=_ioc_kept_{uuid.uuid4().hex}".encode("ascii")
    out = [strip_content_headers(header), b"MIME-Version: 1.0\r\n",
           b'Content-Type: multipart/mixed; boundary="' + boundary + b'"\r\n\r\n']
    for mime, body in pieces:
        mime = mime.rstrip(b"\r\n") + b"\r\n\r\n" if mime.strip() else b"Content-Type: text/plain\r\n\r\n"
        out += [b"--", boundary, b"\r\n", mime, body, b"" if body.endswith(b"\n") else b"\r\n"]
    out += [b"--", boundary, b"--\r\n"]
    return b"".join(out)


def strip_content_headers(header: bytes) -> bytes:
    """The header block without its MIME headers (folded lines included), blank line removed."""
    kept: list[bytes] = []
    skipping = False
    for line in header.splitlines(keepends=True):
        if not line.strip():
            continue
        if line[:1] in (b" ", b"\t"):
            if not skipping:
                kept.append(line)
            continue
        skipping = line.lower().startswith(_CONTENT_HEADERS)
        if not skipping:
            kept.append(line if line.endswith(b"\n") else line + b"\r\n")
    return b"".join(kept)


# ---- IMAP responses ----------------------------------------------------------------------

def parse_response(lines: Sequence[bytes | bytearray]) -> list[Any]:
    """A FETCH response as nested lists: atoms and strings as str, NIL as None; a literal
    (aioimaplib hands it over as the bytearray after a line ending in {n}) as one string."""
    stack: list[list[Any]] = [[]]
    for line in lines:
        if isinstance(line, bytearray):
            stack[-1].append(bytes(line).decode("utf-8", "replace"))
            continue
        text = line.decode("utf-8", "replace")
        literal = _LITERAL.search(text)
        if literal is not None:
            text = text[:literal.start()]
        _tokens(text, stack)
    return stack[0]


def _tokens(text: str, stack: list[list[Any]]) -> None:
    i = 0
    while i < len(text):
        char = text[i]
        if char in " \r\n":
            i += 1
        elif char == "(":
            stack[-1].append([])
            stack.append(stack[-1][-1])
            i += 1
        elif char == ")":
            if len(stack) > 1:
                stack.pop()
            i += 1
        elif char == '"':
            j, value = i + 1, []
            while j < len(text) and text[j] != '"':
                if text[j] == "\\":
                    j += 1
                value.append(text[j:j + 1])
                j += 1
            stack[-1].append("".join(value))
            i = j + 1
        else:
            match = _ATOM.match(text, i)
            atom = match.group(0) if match else char
            stack[-1].append(None if atom.upper() == "NIL" else atom)
            i += len(atom)


def find_structure(tree: list[Any]) -> list[Any]:
    """The list after BODYSTRUCTURE anywhere in a parsed FETCH response."""
    for index, item in enumerate(tree):
        if isinstance(item, list):
            found = find_structure(item)
            if found:
                return found
        elif isinstance(item, str) and item.upper() == "BODYSTRUCTURE" and index + 1 < len(tree) \
                and isinstance(tree[index + 1], list):
            return tree[index + 1]
    return []


def leaves(body: list[Any], section: str = "") -> list[Part]:
    """Every single part of a BODYSTRUCTURE, numbered as IMAP sections."""
    if not body:
        raise UnreadableStructure("no BODYSTRUCTURE in the server's answer")
    if isinstance(body[0], list):  # multipart: its children first, then its subtype
        found: list[Part] = []
        for number, child in enumerate(_children(body), start=1):
            found += leaves(child, f"{section}.{number}" if section else str(number))
        return found
    if len(body) < 7:
        raise UnreadableStructure("a body part with fewer than 7 fields")
    maintype, subtype = str(body[0] or "").lower(), str(body[1] or "").lower()
    params = _pairs(body[2])
    # extension data follows the basic fields: text has its line count first, message/rfc822
    # its envelope, body and line count; then MD5, then the disposition
    at = 9 if maintype == "text" else 11 if (maintype, subtype) == ("message", "rfc822") else 8
    disposition = body[at] if len(body) > at and isinstance(body[at], list) else []
    kind = str(disposition[0]).lower() if disposition and disposition[0] else ""
    names = _pairs(disposition[1]) if len(disposition) > 1 else {}
    filename = _filename(names, params)
    size = int(body[6]) if str(body[6] or "").isdigit() else 0
    return [Part(section, maintype, subtype, str(body[5] or "7bit").lower(), size, filename, kind == "attachment")]


def _children(body: list[Any]) -> list[list[Any]]:
    children = []
    for item in body:
        if not isinstance(item, list):
            break  # the subtype, then extension data
        children.append(item)
    return children


def _pairs(value: Any) -> dict[str, str]:
    if not isinstance(value, list):
        return {}
    items = [str(x) if x is not None else "" for x in value]
    return {items[i].lower(): items[i + 1] for i in range(0, len(items) - 1, 2)}


def _filename(disposition: dict[str, str], content_type: dict[str, str]) -> str:
    """The file name the parameters give, decoded as the email package would: RFC 2231
    (filename*=utf-8''…, continuations filename*0*…) and RFC 2047 (=?utf-8?…?=) included."""
    def params(values: dict[str, str]) -> str:
        return "".join(f'; {key}="' + _UNSAFE_NAME.sub(" ", value).replace('"', '\\"') + '"'
                       for key, value in values.items() if _TOKEN.fullmatch(key))
    try:
        headers = Message()
        headers["Content-Disposition"] = "attachment" + params(disposition)
        headers["Content-Type"] = "application/octet-stream" + params(content_type)
        name = headers.get_filename() or ""
        return str(make_header(decode_header(name))).strip() if "=?" in name else name.strip()
    except Exception:  # noqa: BLE001 - a junk name is no name
        return ""


def _literals(lines: Sequence[bytes | bytearray]) -> dict[str, bytes]:
    """Section → bytes of a FETCH of BODY.PEEK[...] items (each arrives as a literal)."""
    found: dict[str, bytes] = {}
    for index, line in enumerate(lines[:-1]):
        if isinstance(line, bytes) and isinstance(lines[index + 1], bytearray):
            match = _SECTION.search(line)
            if match is not None:
                found[match.group(1).decode("ascii")] = bytes(lines[index + 1])
    return found
