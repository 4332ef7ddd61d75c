"""The IOC staff command layer: one function per command, shared by Telegram and the CLI.

`bots.staff` (Telegram) and `bots.staff_cli` parse text into a `Request` and call `execute`;
both render the returned `Result` with the same templates, so neither front end holds
business rules. Every change of a case goes through `cases.lifecycle` (transition, note,
set_hidden), a version-checked `ReflectionRepo.amend`, or the functions the e-mail path
uses (`bots.staff_loop`: results, approval, publication, return, duplicates), so the staff
member's identity lands in the case's history and two staff acting at once cannot both win.
Messages to the citizen (refusal with guidance, request for information) are queued in the
outbox under keys derived from the case, so a retried command never sends them twice.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Awaitable, Callable

from cases.info_answer import await_answer
from cases.lifecycle import IOC, LEADER, OFFICER, OPEN_STATES, TransitionError, allowed, note, set_hidden, transition
from cases.policy import Policy
from cases.routing import route
from cases.staff_roles import ROLES, Member, can_open
from normalizer.messages import Outbound
from normalizer.texts import Texts
from replies.forward import forward_case
from replies.loop import Loop
from store.models import AuditEntry, HistoryEntry, Reflection
from store.outbox_keys import Kind, outbox_key
from store.repos import Store

CASE_ROLES = (*IOC, OFFICER, LEADER)


@dataclass(frozen=True)
class Request:
    """A parsed command; only the fields the command takes are set."""

    name: str
    code: str | None = None
    target: str | None = None  # the other case of /dup
    candidate: str | None = None  # a duplicate candidate's id (/dupok, /dupsplit)
    field: str | None = None
    agency: str | None = None
    reason: str | None = None  # a rejection reason key of the policy
    text: str = ""
    filters: dict[str, str] = dataclasses.field(default_factory=dict)
    page: int = 1
    period: str = "today"


@dataclass(frozen=True)
class Result:
    """What a command answers: a view (template `staff_<view>`) and its values."""

    ok: bool
    view: str
    values: dict[str, Any]
    photos: tuple[str, ...] = ()


@dataclass(frozen=True)
class Context:
    """Who runs the command, where, and with what; built by the front end for each command."""

    store: Store
    policy: Policy
    texts: Texts
    member: Member
    now: datetime
    loop: Loop  # the agency loop's: results, approvals and publication go through replies.approval
    private: bool = True  # False in the staff group: personal data is never posted there


class Refusal(Exception):
    """A command that cannot be done; `logged` ones are written to the audit log."""

    def __init__(self, error: str, logged: bool = False, **values: Any) -> None:
        super().__init__(error)
        self.error, self.logged, self.values = error, logged, values


Handler = Callable[[Context, Request], Awaitable[Result]]
HANDLERS: dict[str, Handler] = {}
ROLES_FOR: dict[str, tuple[str, ...]] = {}


def command(name: str, roles: tuple[str, ...]) -> Callable[[Handler], Handler]:
    """Register a command and the roles that may run it at all (the lifecycle checks states)."""
    def register(handler: Handler) -> Handler:
        HANDLERS[name], ROLES_FOR[name] = handler, roles
        return handler
    return register


async def execute(ctx: Context, req: Request) -> Result:
    """Run one command for `ctx.member`; never raises for anything a user can cause."""
    try:
        if ctx.member.role not in ROLES_FOR[req.name]:
            raise Refusal("not_authorised", logged=True)
        return await HANDLERS[req.name](ctx, req)
    except Refusal as refusal:
        if refusal.logged:
            await log_refusal(ctx.store, ctx.member.actor.id, req.code, f"{req.name}: {refusal.error}", ctx.now)
        return Result(False, "error", {"error": refusal.error, "command": req.name, "code": req.code,
                                       **refusal.values})


async def stranger(store: Store, who: str, attempt: str, now: datetime) -> Result:
    """Someone not in the membership file tried a staff command: log it, say 'not authorised'."""
    await log_refusal(store, who, None, attempt[:200], now)
    return Result(False, "error", {"error": "not_authorised", "command": None, "code": None})


async def log_refusal(store: Store, who: str, code: str | None, what: str, now: datetime) -> None:
    await store.audit.add(AuditEntry(reflection_code=code or "", actor=who, action="refused", reason=what, at=now))


def done(req: Request, reflection: Reflection, **values: Any) -> Result:
    return Result(True, "done", {"action": req.name, "code": reflection.code, "status": reflection.status, **values})


async def load_case(ctx: Context, code: str | None) -> Reflection:
    """The case `code`, if it exists and the member may open it (agency roles: own agency)."""
    reflection = await ctx.store.reflections.get(code or "")
    if reflection is None:
        raise Refusal("not_found")
    if not can_open(ctx.member, reflection):
        raise Refusal("other_agency", logged=True)
    return reflection


async def step(ctx: Context, reflection: Reflection, to: str, run: Callable[[], Awaitable[Reflection]]) -> Reflection:
    """Run `run`, which moves the case to `to`, as this member, with the refusals a user understands."""
    if not allowed(reflection.status, to, ctx.member.role):
        raise Refusal("wrong_state", status=reflection.status)
    try:
        return await run()
    except TransitionError:
        raise Refusal("conflict") from None


async def move(ctx: Context, reflection: Reflection, to: str, reason: str | None = None,
               changes: dict[str, Any] | None = None) -> Reflection:
    """A lifecycle transition as this member."""
    return await step(ctx, reflection, to, lambda: transition(ctx.store, reflection, to, ctx.member.actor,
                                                              reason=reason, changes=changes, at=ctx.now))


async def amend(ctx: Context, reflection: Reflection, action: str, reason: str, **sets: Any) -> Reflection:
    entry = HistoryEntry(actor=ctx.member.actor.id, role=ctx.member.role, action=action,
                         from_status=reflection.status, to_status=reflection.status, reason=reason, at=ctx.now)
    changed = await ctx.store.reflections.amend(reflection, sets, entry)
    if changed is None:
        raise Refusal("conflict")
    return changed


async def tell_citizen(ctx: Context, reflection: Reflection, key: str, template: str, **values: Any) -> int:
    """Queue a templated message to every subscriber of the case; returns how many."""
    for n, sub in enumerate(reflection.subscribers):
        text = ctx.texts.render(template, sub.language, code=reflection.code, **values)
        await ctx.store.outbox.enqueue(outbox_key(Kind.STAFF, reflection.code, key, n), sub.channel, sub.address,
                                       Outbound(text=text, context=sub.context, kind="notice"))
    return len(reflection.subscribers)


# ---- routing and intake decisions (IOC) --------------------------------------------------
@command("route", IOC)
async def route_case(ctx: Context, req: Request) -> Result:
    r = await load_case(ctx, req.code)
    if req.field not in ctx.policy.fields:
        raise Refusal("unknown_field", choices=sorted(ctx.policy.fields))
    agency = req.agency or route(ctx.policy, req.field, r.location.commune_code, 1.0).agency_id
    if agency is None or agency not in {a.id for a in ctx.policy.agencies}:
        raise Refusal("unknown_agency", choices=[a.id for a in ctx.policy.agencies if req.field in a.fields])
    r = await move(ctx, r, "classified", reason=f"{req.field} → {agency}", changes={
        "field": req.field, "agency": agency, "routing_reason": f"{ctx.member.actor.id}: {req.field} → {agency}"})
    return done(req, r, field=req.field, agency=ctx.policy.agency(agency).name)


@command("forward", IOC)
async def forward(ctx: Context, req: Request) -> Result:
    r = await load_case(ctx, req.code)
    agency = ctx.loop.agency(r)
    if agency is None:
        raise Refusal("no_agency")
    r = await step(ctx, r, "forwarded", lambda: forward_case(ctx.store, ctx.loop, r, agency, ctx.now,
                                                             ctx.member.actor))
    return done(req, r, agency=agency.name)


@command("reject", IOC)
async def reject(ctx: Context, req: Request) -> Result:
    r = await load_case(ctx, req.code)
    rejection = ctx.policy.rejection_reasons.get(req.reason or "")
    if rejection is None:
        raise Refusal("bad_reason", choices=sorted(ctx.policy.rejection_reasons))
    r = await move(ctx, r, "rejected", reason=" ".join(filter(None, [req.reason, req.text])))
    told = await tell_citizen(ctx, r, f"v{r.version}:rejected", "staff_refusal",
                              reason=rejection.text, guidance=rejection.guidance, note=req.text)
    return done(req, r, told=told)


@command("hide", IOC)
async def hide(ctx: Context, req: Request) -> Result:
    return await _set_hidden(ctx, req, True)


@command("unhide", IOC)
async def unhide(ctx: Context, req: Request) -> Result:
    return await _set_hidden(ctx, req, False)


async def _set_hidden(ctx: Context, req: Request, hidden: bool) -> Result:
    r = await load_case(ctx, req.code)
    if r.hidden == hidden:
        raise Refusal("already_hidden" if hidden else "not_hidden")
    try:
        r = await set_hidden(ctx.store, r, hidden, ctx.member.actor, req.text)
    except TransitionError:
        raise Refusal("conflict") from None
    return done(req, r, reason=req.text)


@command("dup", IOC)
async def mark_duplicate(ctx: Context, req: Request) -> Result:
    r = await load_case(ctx, req.code)
    original = await ctx.store.reflections.get(req.target or "")
    if original is None or original.code == r.code:
        raise Refusal("bad_target", target=req.target)
    if original.duplicate_of == r.code or r.duplicate_of == original.code:
        raise Refusal("already_linked", target=original.code)
    r = await amend(ctx, r, "duplicate_marked", original.code, duplicate_of=original.code)
    return done(req, r, target=original.code)


@command("undup", IOC)
async def unmark_duplicate(ctx: Context, req: Request) -> Result:
    r = await load_case(ctx, req.code)
    if r.duplicate_of is None:
        raise Refusal("not_duplicate")
    return done(req, await amend(ctx, r, "duplicate_unmarked", r.duplicate_of, duplicate_of=None))


@command("ask", IOC)
async def request_info(ctx: Context, req: Request) -> Result:
    """Ask the citizen to complete the report: once per case (Bình Phước 1022 Đ15.4, Đ18.2)."""
    r = await load_case(ctx, req.code)
    if r.info_requested:
        raise Refusal("already_asked")
    if r.status not in OPEN_STATES:
        raise Refusal("wrong_state", status=r.status)
    r = await amend(ctx, r, "info_requested", req.text, info_requested=True)
    told = await tell_citizen(ctx, r, "ask", "staff_info_request", request=req.text)
    await await_answer(ctx.store, r)  # the citizen's next message is added to this case
    return done(req, r, told=told)


@command("note", CASE_ROLES)
async def add_note(ctx: Context, req: Request) -> Result:
    r = await load_case(ctx, req.code)
    await note(ctx.store, r, ctx.member.actor, "note", req.text)
    return done(req, r)


# ---- reopening and closing (IOC) ----------------------------------------------------------
@command("reopen", IOC)
async def reopen(ctx: Context, req: Request) -> Result:
    return done(req, await move(ctx, await load_case(ctx, req.code), "reopened", reason=req.text or None))


@command("close", IOC)
async def close(ctx: Context, req: Request) -> Result:
    return done(req, await move(ctx, await load_case(ctx, req.code), "closed", reason=req.text or None))


@command("help", ROLES)
async def show_help(ctx: Context, req: Request) -> Result:
    commands = [name for name, roles in ROLES_FOR.items() if ctx.member.role in roles]
    return Result(True, "help", {"role": ctx.member.role, "member_name": ctx.member.name, "commands": commands,
                                 "only": req.text if req.text in commands else None})


from bots import staff_loop, staff_views  # noqa: E402,F401 - register the agency-loop and read-only commands
