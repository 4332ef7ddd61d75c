"""Every sentence a citizen or officer reads, rendered from `templates/<language>/`.

Bots and the agency loop call `Texts.render`; wording never lives in Python strings.
"""
from __future__ import annotations

from pathlib import Path

import phonenumbers
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"
LANGUAGES = ("vi", "en")


def display_phone(e164: str) -> str:
    """"+84912345678" → "0912 345 678", the way Vietnamese people write their number."""
    try:
        number = phonenumbers.parse(e164, "VN")
    except phonenumbers.NumberParseException:
        return e164
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)


class Texts:
    def __init__(self, directory: Path = TEMPLATES_DIR) -> None:
        self._env = Environment(
            loader=FileSystemLoader(str(directory)), undefined=StrictUndefined,
            autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
            trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False)
        self._env.filters["phone"] = display_phone

    def render(self, template: str, language: str = "vi", **context: object) -> str:
        lang = language if language in LANGUAGES else "vi"
        return self._env.get_template(f"{lang}/{template}.txt").render(**context).strip()
