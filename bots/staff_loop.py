"""The staff commands of the agency loop: results, approval, publication, return, duplicates.

Registered into `bots.staff_commands` (which imports this module), so both front ends reach them
through `execute`. They do what the e-mail path does, through the same functions:
`replies.approval` (a result goes to the leader for approval, or straight to the citizen where
the policy needs none; an approved, or edited and approved, result reaches every subscriber in
the Phụ lục 2 form; a result sent back is e-mailed to the focal officer again; a returned case
goes back to the IOC, which is told by e-mail), `replies.deliver.publish`, and
`cases.duplicates` for the IOC's decision on a report linked to a case as a duplicate candidate.
"""
from __future__ import annotations

from bots.staff_commands import Context, Refusal, Request, Result, command, done, load_case, step
from cases.duplicates import DuplicateError, confirm_duplicate, split_duplicate
from cases.filing import CaseDesk
from cases.lifecycle import IOC, LEADER, OFFICER, SUPERVISOR
from replies import approval
from replies.deliver import publish
from store.models import DuplicateCandidate, Reflection
from store.outbox_keys import Kind, outbox_key

APPROVERS = (LEADER, SUPERVISOR)


@command("result", (OFFICER,))
async def submit_result(ctx: Context, req: Request) -> Result:
    r = await load_case(ctx, req.code)
    r = await step(ctx, r, "result_submitted", lambda: approval.submit_result(
        ctx.store, ctx.loop, r, req.text, [], ctx.member.actor, ctx.now))
    return done(req, r, told=len(r.subscribers))


@command("return", (OFFICER, *IOC))
async def return_to_ioc(ctx: Context, req: Request) -> Result:
    r = await load_case(ctx, req.code)
    return done(req, await step(ctx, r, "returned", lambda: approval.return_to_ioc(
        ctx.store, ctx.loop, r, req.text, ctx.member.actor, ctx.now)), reason=req.text)


@command("approve", APPROVERS)
async def approve(ctx: Context, req: Request) -> Result:
    return await _approve(ctx, req, None)


@command("edit", APPROVERS)
async def edit_and_approve(ctx: Context, req: Request) -> Result:
    return await _approve(ctx, req, req.text)


async def _approve(ctx: Context, req: Request, edited: str | None) -> Result:
    r = await load_case(ctx, req.code)
    if r.status == "result_submitted" and not (edited or r.result):
        raise Refusal("no_result")
    r = await step(ctx, r, "approved", lambda: approval.approve(
        ctx.store, ctx.loop, r.code, ctx.member.actor, ctx.now, edited=edited))
    return done(req, r, told=len(r.subscribers))


@command("sendback", APPROVERS)
async def send_back(ctx: Context, req: Request) -> Result:
    r = await load_case(ctx, req.code)
    r = await step(ctx, r, "in_progress", lambda: approval.send_back(
        ctx.store, ctx.loop, r.code, ctx.member.actor, req.text, ctx.now))
    agency = ctx.loop.agency(r)
    return done(req, r, officer=agency.focal_email if agency else None)


@command("publish", IOC)
async def publish_result(ctx: Context, req: Request) -> Result:
    r = await load_case(ctx, req.code)
    r = await step(ctx, r, "published", lambda: publish(ctx.store, ctx.loop, r, ctx.now, actor=ctx.member.actor))
    return done(req, r, told=len(r.subscribers))


# ---- duplicate candidates linked by the intake (cases.duplicates) -------------------------
@command("dupok", IOC)
async def confirm(ctx: Context, req: Request) -> Result:
    r = await load_case(ctx, req.code)
    candidate = _undecided(r, req.candidate)
    try:
        await confirm_duplicate(ctx.store, r, candidate.id, ctx.member.actor, ctx.now)
    except DuplicateError:  # decided by someone else since it was read
        raise Refusal("conflict") from None
    return done(req, r, candidate=candidate.id)


@command("dupsplit", IOC)
async def split(ctx: Context, req: Request) -> Result:
    """File the candidate as its own case and tell its author the new code.

    A candidate decided by someone else between the check and the write raises
    `DuplicateError`, which undoes the whole command (the new case included)."""
    r = await load_case(ctx, req.code)
    candidate = _undecided(r, req.candidate)
    new, told = await split_duplicate(ctx.store, CaseDesk(ctx.policy), ctx.texts, r, candidate.id,
                                      ctx.member.actor, ctx.now)
    await ctx.store.outbox.enqueue(outbox_key(Kind.STAFF, r.code, "split", candidate.id),
                                   told.channel, told.address, told.message)
    return done(req, r, candidate=candidate.id, new_code=new.code)


def _undecided(r: Reflection, candidate_id: str | None) -> DuplicateCandidate:
    found = next((c for c in r.duplicate_candidates if c.id == candidate_id), None)
    if found is None:
        raise Refusal("no_candidate", candidate=candidate_id)
    if found.status != "candidate":
        raise Refusal("candidate_decided", candidate=found.id, decision=found.status, new_code=found.split_code)
    return found
