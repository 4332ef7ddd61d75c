"""The citizen conversation: gather a complete report over as many turns as needed, then file it.

The pipeline calls `IntakeBot.handle` for every citizen message of every channel; the bot
reads and writes only through the transaction-bound `Store`, so its state survives a
restart and a redelivered message changes nothing twice.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Callable

from bots.draft import Problem, absorb, missing
from cases.duplicates import handle_possible_duplicate
from cases.filing import CaseDesk
from cases.info_answer import attach_answer
from cases.policy import Policy
from normalizer.messages import Button, Delivery, Inbound, Outbound, reply, utcnow
from normalizer.phones import parse_phone
from normalizer.signals import Command, parse_command
from normalizer.text import fold, has_diacritics
from normalizer.texts import Texts, display_phone
from normalizer.understand import Understanding, understand
from replies.feedback import citizen_feedback
from store.conversations import conversation_id
from store.models import Conversation, Draft, Place
from store.repos import Store

EDITABLE = ("name", "phone", "email", "address", "content")


class IntakeBot:
    def __init__(self, texts: Texts, policy: Policy, desk: CaseDesk,
                 clock: Callable[[], datetime] = utcnow, max_photo_mb: int = 10, max_photos: int = 5) -> None:
        self.texts = texts
        self.policy = policy
        self.desk = desk
        self.clock = clock
        self.limits = {"limit_mb": max_photo_mb, "max_photos": max_photos}

    async def handle(self, inbound: Inbound, store: Store) -> list[Delivery]:
        conv, is_new = await self._conversation(inbound, store)
        u = self._understand(inbound.text) if inbound.text.strip() else None
        if u is not None:
            conv.language = _language(conv.language, u.language, inbound.text, is_new)
        turn = _Turn(self, inbound, store, conv)
        await turn.run(u, is_new)
        return turn.out

    def _understand(self, text: str) -> Understanding:
        return understand(text, self.policy.field_keywords(), self.policy.gazetteer.communes)

    async def _conversation(self, inbound: Inbound, store: Store) -> tuple[Conversation, bool]:
        conv = await store.conversations.get(inbound.channel, inbound.sender)
        if conv is not None:
            return conv, False
        draft = Draft()
        known = await store.citizens.by_identity(inbound.channel, inbound.sender)
        if known is not None:
            draft.name_offered, draft.phone_offered = known.name, known.phone
        elif inbound.profile_name:
            draft.name_offered = inbound.profile_name
        conv = Conversation(_id=conversation_id(inbound.channel, inbound.sender), channel=inbound.channel,
                            sender=inbound.sender, draft=draft)
        return conv, True

    def say(self, template: str, lang: str, **ctx: object) -> str:
        return self.texts.render(template, lang, province=self.policy.province, **self.limits, **ctx)

    def expiry(self) -> timedelta:
        return timedelta(hours=self.policy.conversation_expiry_hours)

    async def expire(self, store: Store) -> list[Delivery]:
        """Called by the scheduler: drop stale drafts and tell their authors once."""
        out = []
        for conv in await store.conversations.expired(self.clock()):
            await store.conversations.delete(conv.id)
            text = self.say("expired", conv.language)
            out.append(Delivery(conv.channel, conv.sender, Outbound(text=text, context=conv.context, kind="notice")))
        return out


def _language(current: str, detected: str, text: str, is_new: bool) -> str:
    """Switch only on clear evidence: a phone number or a name says nothing about language."""
    if is_new:
        return detected
    if detected == "en" and len(text.split()) >= 3:
        return "en"
    return "vi" if has_diacritics(text) else current


class _Turn:
    """One incoming message: what it changes and what the bot answers."""

    def __init__(self, bot: IntakeBot, inbound: Inbound, store: Store, conv: Conversation) -> None:
        self.bot, self.inbound, self.store, self.conv = bot, inbound, store, conv
        self.out: list[Delivery] = []
        if inbound.context:
            conv.context = dict(inbound.context)

    @property
    def lang(self) -> str:
        return self.conv.language

    def send(self, text: str, **extra: Any) -> None:
        self.out.append(reply(self.inbound, Outbound(text=text, **extra)))

    async def run(self, u: Understanding | None, is_new: bool) -> None:
        command = parse_command(self.inbound.action or self.inbound.text)
        if self.conv.rating_for:  # agency loop: a rating or follow-up on a result (replies/deliver.py)
            answer = await citizen_feedback(self.store, self.bot.texts, self.conv, self.inbound, command)
            if answer is not None:
                self.send(answer)
                return
        if self.conv.info_for and command is None and not (self.conv.draft.content or self.conv.draft.photos):
            added = await attach_answer(self.store, self.bot.texts, self.conv, self.inbound)  # answers /ask
            if added is not None:
                self.send(added)
                return
        if command is not None and await self._command(command):
            return
        if u is not None and (u.abusive or (u.out_of_scope and not self.conv.draft.content)):
            self._refuse(u)
            return
        if u is not None and u.emergency_number:
            self.send(self.bot.say("emergency", self.lang, number=u.emergency_number), kind="notice")
            self.conv.draft.urgent, self.conv.draft.emergency_number = True, u.emergency_number
        absorbed = absorb(self.conv.draft, self.inbound, u, self.conv.asking, self.bot.policy.gazetteer)
        if is_new and not absorbed.changed and not absorbed.problems:
            self.send(self.bot.say("greeting", self.lang, name=self.conv.draft.name_offered))
        await self._next(absorbed.problems)

    def _refuse(self, u: Understanding) -> None:
        if u.abusive:
            self.send(self.bot.say("abusive", self.lang))
        else:
            reasons = self.bot.policy.rejection_reasons
            reason = reasons.get("complaint") or reasons["out_of_scope"]
            self.send(self.bot.say("out_of_scope", self.lang, guidance=reason.guidance))

    async def _next(self, problems: list[Problem]) -> None:
        notes = [self.bot.say("problem", self.lang, problem=p.code, value=p.value) for p in problems]
        notes = [n for n in notes if n]
        gaps = missing(self.conv.draft)
        if gaps:
            self.conv.stage, self.conv.asking = "collecting", gaps[0]
            self.send("\n".join([*notes, self._question(gaps[0])]), **self._hints(gaps[0]))
        else:
            self.conv.stage, self.conv.asking = "confirming", None
            self.send("\n".join([*notes, self._summary()]), buttons=self._buttons("confirm", "cancel"))
        await self._save()

    def _question(self, field: str) -> str:
        offered = {"name": self.conv.draft.name_offered, "phone": self.conv.draft.phone_offered}.get(field)
        if field == "phone" and offered:
            offered = display_phone(offered)
        return self.bot.say("ask", self.lang, field=field, offered=offered)

    def _hints(self, field: str) -> dict[str, object]:
        offered = {"name": self.conv.draft.name_offered, "phone": self.conv.draft.phone_offered}.get(field)
        return {"ask_location": field == "location", "ask_contact": field == "phone" and not offered,
                "buttons": self._buttons("yes") if offered else []}

    def _buttons(self, *keys: str) -> list[Button]:
        return [Button(label=self.bot.texts.render("labels", self.lang, key=k), action=k) for k in keys]

    def _summary(self) -> str:
        d = self.conv.draft
        loc = d.location or Place()
        parts = [loc.address, loc.commune if loc.commune and fold(loc.commune) not in fold(loc.address or "") else None]
        if loc.lat is not None and not loc.address:
            parts.append(f"{loc.lat:.5f}, {loc.lon:.5f}")
        place = ", ".join(p for p in parts if p) or self.bot.texts.render("labels", self.lang, key="no_location")
        return self.bot.say("summary", self.lang, d=d, phone=display_phone(d.phone or ""), place=place)

    async def _save(self) -> None:
        self.conv.expires_at = self.bot.clock() + self.bot.expiry()
        self.conv.expiry_notified = False
        await self.store.conversations.save(self.conv)

    async def _command(self, cmd: Command) -> bool:
        """Handle a command; False lets the message be read as report content too."""
        kind = cmd.kind
        if kind == "cancel":
            await self.store.conversations.delete(self.conv.id)
            self.send(self.bot.say("cancelled", self.lang))
        elif kind == "restart":
            self.conv.draft = Draft(name_offered=self.conv.draft.name or self.conv.draft.name_offered,
                                    phone_offered=self.conv.draft.phone or self.conv.draft.phone_offered)
            self.send(self.bot.say("restarted", self.lang))
            await self._next([])
        elif kind == "help":
            self.send(self.bot.say("help", self.lang))
        elif kind == "status":
            await self._status(cmd.code)
        elif kind == "confirm":
            await self._confirm()
        elif kind == "edit" and cmd.field in EDITABLE:
            await self._next(self._edit(cmd.field, cmd.value or ""))
        elif kind == "confidential":  # may come inside a full report: read the rest too
            self.conv.draft.confidential = True
            self.send(self.bot.say("confidential", self.lang))
            return False
        else:
            return False
        return True

    async def _confirm(self) -> None:
        d = self.conv.draft
        if self.conv.stage == "confirming" and not missing(d):
            await self._file()
            return
        if self.conv.asking == "name" and d.name_offered:
            d.name, d.name_offered = d.name_offered, None
        elif self.conv.asking == "phone" and d.phone_offered:
            d.phone, d.phone_offered = d.phone_offered, None
        await self._next([])

    def _edit(self, field: str, value: str) -> list[Problem]:
        d, value = self.conv.draft, value.strip()
        if field == "phone":
            phone = parse_phone(value)
            if phone is None:
                return [Problem("phone_invalid", value[:40])]
            d.phone = phone
        elif field == "address":
            u = self.bot._understand(value)
            place = d.location or Place()
            place.address, place.commune, place.commune_code = value, u.commune, u.commune_code
            d.location = place
        elif value:
            setattr(d, field, value)
        return []

    async def _status(self, code: str | None) -> None:
        citizen = await self.store.citizens.by_identity(self.inbound.channel, self.inbound.sender)
        found = await self.store.reflections.get(code) if code else None
        mine = found is not None and (
            (found.channel, found.sender) == (self.inbound.channel, self.inbound.sender)
            or (citizen is not None and found.citizen_id == citizen.id))
        agency = self.bot.desk.agency_name(found.agency) if mine and found and found.agency else None
        self.send(self.bot.say("status", self.lang, code=code or "", found=mine,
                               status=found.status if mine and found else None, agency=agency,
                               created=found.created_at.strftime("%d/%m/%Y") if mine and found else ""))

    async def _file(self) -> None:
        diverted = await handle_possible_duplicate(self.store, self.bot.policy, self.bot.texts,
                                                   self.conv, self.inbound.received_at)
        if diverted is not None:  # linked to the open case; the citizen gets its result
            await self.store.conversations.delete(self.conv.id)
            self.out.append(reply(self.inbound, diverted.message))
            return
        reflection = await self.bot.desk.file(self.store, self.conv, self.inbound.received_at)
        await self.store.conversations.delete(self.conv.id)
        self.send(self.bot.say("filed", self.lang, code=reflection.code, urgent=reflection.urgent,
                               processing_time=self.bot.policy.processing_time_text,
                               days=self.bot.desk.handling_days()), kind="reply")
