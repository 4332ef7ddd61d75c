"""The agency loop as the gateway runs it: agency mail in, forwarding out, closed windows.

The gateway builds one `AgencyLoop`, registers `claims`/`bot` with its dispatcher (agency
mail shares the IOC inbox with citizens' mail), calls `tick` from its scheduler and hands
`on_window_closed` to the outbox worker. `AgencyBot` checks who wrote and about what before
anything changes: only a valid token from the case's own agency address, on an open case in
the right step, is applied; everything else is kept on the case and reported to the IOC.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime

from cases.lifecycle import LEADER, OFFICER, SYSTEM, Actor, note
from cases.policy import Policy
from channels import email_parse
from channels.base import Channel
from normalizer.messages import Delivery, Inbound, Outbound, reply
from normalizer.texts import Texts
from replies import approval
from replies.deliver import fall_back
from replies.forward import forward_pending
from replies.ingest import RECIPIENT_HEADERS, Match, Reply, match_case, read_reply
from replies.loop import EMAIL, make_loop, notify_ioc
from replies.tokens import APPROVAL
from store.database import Database
from store.media import MediaStore
from store.models import OutboxItem, Reflection
from store.repos import Store, unit_of_work

log = logging.getLogger(__name__)
OFFICER_STATES = ("forwarded", "in_progress")


class AgencyLoop:
    def __init__(self, database: Database, policy: Policy, texts: Texts, channels: Mapping[str, Channel],
                 clock: Callable[[], datetime], secret: str = "", ioc_email: str | None = None) -> None:
        self.database, self.channels, self.clock = database, channels, clock
        self.mailbox: str | None = getattr(channels.get(EMAIL), "address", None)
        self.loop = make_loop(policy, texts, secret, self.mailbox, ioc_email)
        self.bot = AgencyBot(self)
        self.agency_addresses = {a for ag in policy.agencies for a in (ag.focal_email.lower(), ag.head_email.lower())}

    def claims(self, inbound: Inbound) -> bool:
        """Agency mail: to one of our plus-addresses, or from a known agency address."""
        if self.mailbox is None or inbound.chat_kind != "email":
            return False
        local, domain = self.mailbox.split("@", 1)
        recipients = " ".join(inbound.context.get(h, "") for h in RECIPIENT_HEADERS).lower()
        return f"{local}+" in recipients and f"@{domain}" in recipients or inbound.sender in self.agency_addresses

    async def tick(self) -> int:
        """Scheduler pass: forward the cases ready for their agencies (needs the e-mail channel)."""
        if self.mailbox is None:
            return 0
        async with unit_of_work(self.database) as store:
            return await forward_pending(store, self.loop, self.clock())

    async def on_window_closed(self, item: OutboxItem) -> None:
        """Outbox hook: a result the platform would not deliver takes the fallback route."""
        async with unit_of_work(self.database) as store:
            await fall_back(store, self.loop, item, email_enabled=EMAIL in self.channels)


class AgencyBot:
    """Agency e-mail → the case it answers → result, return, more time, or a leader's decision."""

    def __init__(self, owner: AgencyLoop) -> None:
        self.owner, self.loop = owner, owner.loop

    async def handle(self, inbound: Inbound, store: Store) -> list[Delivery]:
        match = await match_case(store, self.loop.tokens, inbound)
        case = await store.reflections.get(match.code) if match.code else None
        problem = self._problem(inbound, match, case)
        if problem is not None:
            await self._flag(store, inbound, case, problem)
            return []
        assert case is not None and match.token is not None
        body = _own_words(inbound)
        now = self.owner.clock()
        if match.token.purpose == APPROVAL:
            return await self._decide(store, inbound, case, read_reply(body, "leader"), now)
        return await self._answer(store, inbound, case, read_reply(body, "officer"), now)

    def _problem(self, inbound: Inbound, match: Match, case: Reflection | None) -> str | None:
        """Why this mail may not change its case, or None when it may."""
        agency = self.loop.agency(case) if case is not None else None
        if case is None or agency is None:
            return "no_case"
        if match.token is None:
            return "no_token"
        allowed = {agency.head_email.lower()} if match.token.purpose == APPROVAL else \
            {agency.focal_email.lower(), agency.head_email.lower()}
        if inbound.sender not in allowed:
            return "unknown_sender"
        step = ("result_submitted",) if match.token.purpose == APPROVAL else OFFICER_STATES
        if case.status not in step:
            return "closed_case" if case.status in ("published", "closed", "rejected") else "wrong_step"
        return None

    async def _answer(self, store: Store, inbound: Inbound, case: Reflection, said: Reply,
                      now: datetime) -> list[Delivery]:
        actor = Actor(f"agency:{inbound.sender}", OFFICER)
        if said.kind == "not_ours":
            await approval.return_to_ioc(store, self.loop, case, said.text, actor, now)
        elif said.kind == "more_time":
            await approval.more_time(store, self.loop, case, said.until, said.text, actor, now)
        else:
            attachments = [p.file_id for p in inbound.photos] + await _documents(store, inbound)
            if not said.text and not attachments:
                await self._flag(store, inbound, case, "empty")
                return []
            await approval.submit_result(store, self.loop, case, said.text, attachments, actor, now)
        return [self._ack(inbound, case, said.kind)]

    async def _decide(self, store: Store, inbound: Inbound, case: Reflection, said: Reply,
                      now: datetime) -> list[Delivery]:
        actor = Actor(f"agency:{inbound.sender}", LEADER)
        if said.kind == "approve" or (said.kind == "edit" and said.text):
            await approval.approve(store, self.loop, case.code, actor, now,
                                   edited=said.text if said.kind == "edit" else None)
        elif said.kind == "send_back":
            await approval.send_back(store, self.loop, case.code, actor, said.text, now)
        return [self._ack(inbound, case, said.kind if said.kind != "edit" or said.text else "unclear")]

    def _ack(self, inbound: Inbound, case: Reflection, kind: str) -> Delivery:
        text = self.loop.render("agency_ack", kind=kind, code=case.code)
        return reply(inbound, Outbound(text=text, kind="notice"))

    async def _flag(self, store: Store, inbound: Inbound, case: Reflection | None, problem: str) -> None:
        """Keep the mail on the case's record and tell the IOC; never apply it."""
        log.warning("agency mail %s flagged: %s", inbound.message_id, problem)
        if case is not None:
            await note(store, case, Actor("system:agency_mail", SYSTEM), "agency_mail_flagged",
                       f"{problem}: {inbound.sender}: {inbound.text[:2000]}")
        await notify_ioc(store, self.loop, f"ioc:flag:{inbound.message_id}", case, "flagged",
                         problem=problem, sender=inbound.sender, subject=inbound.context.get("subject", ""),
                         text=inbound.text[:2000])


def _own_words(inbound: Inbound) -> str:
    """The reply's text without a subject line the channel may have put first."""
    topic = email_parse.text_with_subject(inbound.context.get("subject", ""), "")
    text = inbound.text
    return text[len(topic):].strip() if topic and text.startswith(topic) else text.strip()


async def _documents(store: Store, inbound: Inbound) -> list[str]:
    """Non-image attachments (the agency's official letters), kept from the stored raw mail."""
    record = await store.inbound.get(inbound.channel, inbound.message_id)
    msg = email_parse.load(record.payload) if record else None
    if msg is None:
        return []
    media, kept = MediaStore(store.database), []
    for _, part in email_parse.attachments(msg):
        data = part.get_payload(decode=True)  # bytes, or None for a multipart part
        if isinstance(data, bytes) and data and not email_parse.is_image(part):
            kept.append(await media.save(data, content_type=part.get_content_type(),
                                         filename=part.get_filename() or "van-ban",
                                         metadata={"agency_mail": inbound.message_id}))
    return kept
