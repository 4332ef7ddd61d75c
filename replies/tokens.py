"""Signed reply addresses: the case and the purpose travel in the agency's reply itself.

The forwarding and approval e-mails carry `Reply-To: <local>+<code>.<purpose>.<mac>@<domain>`
(the IOC inbox with a plus-address). `replies.ingest` reads the token back from the reply's
To / Delivered-To / Cc headers; only a token whose HMAC-SHA256 (secret `AGENCY_TOKEN_SECRET`)
checks out lets a reply change a case. Purposes: "r" an officer's result, "a" a leader's decision.
"""
from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass

RESULT, APPROVAL = "r", "a"
_MAC_CHARS = 16  # 64 bits of HMAC: plenty against guessing, short enough for an address
_TOKEN = re.compile(r"\+([a-z]{2,4}-\d{4}-\d{3,9})\.([ra])\.([0-9a-f]{16})@", re.IGNORECASE)


@dataclass(frozen=True)
class Token:
    code: str  # "PA-2026-000123"
    purpose: str  # RESULT | APPROVAL


class Tokens:
    """Signs and checks reply tokens for one IOC mailbox; built once by the gateway."""

    def __init__(self, secret: str, mailbox: str) -> None:
        if "@" not in mailbox:
            raise ValueError(f"not an e-mail address: {mailbox!r}")
        self._key = secret.encode("utf-8")
        self.mailbox = mailbox.lower()

    def _mac(self, code: str, purpose: str) -> str:
        digest = hmac.new(self._key, f"{code.upper()}:{purpose}".encode(), hashlib.sha256)
        return digest.hexdigest()[:_MAC_CHARS]

    def address(self, code: str, purpose: str) -> str:
        """The Reply-To address for `code` ("phananh+PA-2026-000123.r.<mac>@ioc.example.vn")."""
        local, domain = self.mailbox.split("@", 1)
        return f"{local}+{code.upper()}.{purpose}.{self._mac(code, purpose)}@{domain}"

    def find(self, headers: Iterable[str]) -> Token | None:
        """The first valid token in recipient headers; forged or foreign tokens are skipped."""
        local, domain = self.mailbox.split("@", 1)
        for value in headers:
            for match in _TOKEN.finditer(value or ""):
                start, end = match.start(), match.end()
                if not value[:start].lower().endswith(local) or not value[end:].lower().startswith(domain):
                    continue
                code, purpose, mac = match.group(1).upper(), match.group(2).lower(), match.group(3).lower()
                if hmac.compare_digest(mac, self._mac(code, purpose)):
                    return Token(code, purpose)
        return None
