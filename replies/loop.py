"""What every part of the agency loop shares: policy, texts, reply tokens, the IOC's address.

The gateway builds one `Loop` (see `replies.agency_bot.AgencyLoop`); staff commands get it
from there to call `replies.approval` and `replies.deliver`. `queue_mail` is how the loop
sends any e-mail: through the outbox, with a deterministic key, so a retried turn never
sends twice.
"""
from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from pathlib import Path
from zoneinfo import ZoneInfo

import yaml

from cases.calendar import WorkingCalendar
from cases.policy import Agency, Policy
from normalizer.messages import Outbound
from normalizer.texts import Texts
from replies.tokens import Tokens
from store.models import Reflection
from store.repos import Store

log = logging.getLogger(__name__)
VN = ZoneInfo("Asia/Ho_Chi_Minh")
EMAIL = "email"
KEYWORDS: dict[str, dict[str, list[str]]] = yaml.safe_load(
    (Path(__file__).parent / "keywords.yaml").read_text(encoding="utf-8"))


@dataclass
class Loop:
    policy: Policy
    texts: Texts
    tokens: Tokens
    ioc_email: str | None = None  # where flagged agency mail and returned cases are reported

    @cached_property
    def calendar(self) -> WorkingCalendar:
        return WorkingCalendar.from_policy(self.policy)

    def agency(self, case: Reflection) -> Agency | None:
        """The agency handling `case`, or None when it has none (or an unknown id)."""
        try:
            return self.policy.agency(case.agency) if case.agency else None
        except KeyError:
            return None

    def render(self, template: str, language: str = "vi", /, **context: object) -> str:
        return self.texts.render(template, language, province=self.policy.province,
                                 keywords=KEYWORDS, **context)

    def subject(self, kind: str, case: Reflection) -> str:
        return self.render("agency_subject", kind=kind, code=case.code, content=" ".join(case.content.split())[:60])


def make_loop(policy: Policy, texts: Texts, secret: str, mailbox: str | None, ioc_email: str | None) -> Loop:
    """The loop of one process: `AgencyLoop` (gateway) and the staff CLI build theirs here, so
    reply addresses signed by either are valid for the gateway that reads the answers."""
    if not secret:
        log.warning("AGENCY_TOKEN_SECRET is not set: agency replies work until the next restart only")
        secret = secrets.token_hex(32)
    return Loop(policy, texts, Tokens(secret, mailbox or "ioc@invalid.invalid"), ioc_email or None)


def local_time(at: datetime) -> str:
    """"14:05 24/11/2026" in Vietnam time, the way officers read dates."""
    return at.astimezone(VN).strftime("%H:%M %d/%m/%Y")


async def queue_mail(store: Store, key: str, to: str, subject: str, text: str, *,
                     reply_to: str | None = None, photos: list[str] | None = None,
                     kind: str = "notice") -> bool:
    """Queue one e-mail from the IOC inbox (False if `key` was queued before)."""
    context = {"subject": subject, **({"reply_to": reply_to} if reply_to else {})}
    message = Outbound(text=text, photos=photos or [], context=context, kind=kind)
    return await store.outbox.enqueue(key, EMAIL, to, message)


async def notify_ioc(store: Store, loop: Loop, key: str, case: Reflection | None, kind: str,
                     **context: object) -> None:
    """Tell the IOC's address about a returned case or flagged mail (nothing if none is set)."""
    if not loop.ioc_email:
        return
    code = case.code if case else ""
    subject = loop.render("agency_subject", kind=kind, code=code, content="")
    await queue_mail(store, key, loop.ioc_email, subject, loop.render("ioc_notice", kind=kind, code=code, **context))
