"""The read-only staff commands (queue, show, stats) and the alerts pushed to the staff chat.

Registered into `bots.staff_commands` (which imports this module), so both front ends reach them
through `execute`. Views hand plain values to the `staff_*` templates; what a role may see
(other agencies' cases, the reporter's personal data) is decided here, not in the templates.
`staff_alerts` is called by the gateway's scheduler pass.
"""
from __future__ import annotations

import math
import re
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from bots.staff_commands import Context, Refusal, Request, Result, command, load_case
from cases.lifecycle import OPEN_STATES, STATES, SYSTEM, Actor, note
from cases.policy import Policy
from cases.staff_roles import AGENCY_ROLES, ROLES, sees_personal_data
from normalizer.messages import Delivery, Outbound
from normalizer.texts import Texts
from store.models import DuplicateCandidate, Reflection
from store.outbox_keys import Kind, OutboxKey, outbox_key
from store.repos import Store

VN = ZoneInfo("Asia/Ho_Chi_Minh")
PER_PAGE = 10
FLAGS = {"overdue": "late", "urgent": "urgent"}  # filter name → case flag
_CHANNEL = re.compile(r"^[a-z]{2,20}$")


def local(at: datetime | None) -> str:
    return at.astimezone(VN).strftime("%H:%M %d/%m/%Y") if at else ""


def _agency_name(policy: Policy, agency_id: str | None) -> str | None:
    try:
        return policy.agency(agency_id).name if agency_id else None
    except KeyError:
        return agency_id


def summary(policy: Policy, r: Reflection) -> dict[str, Any]:
    """One line of a list: no personal data, whoever reads it."""
    return {"code": r.code, "status": r.status, "field": policy.fields[r.field].vi if r.field in policy.fields
            else r.field, "agency": _agency_name(policy, r.agency), "urgent": r.urgent, "late": r.late,
            "hidden": r.hidden, "duplicate_of": r.duplicate_of, "created": local(r.created_at),
            "commune": r.location.commune, "snippet": r.content[:80]}


# ---- /queue ---------------------------------------------------------------------------
@command("queue", ROLES)
async def queue(ctx: Context, req: Request) -> Result:
    filters = _filters(ctx, req.filters)
    items, total = await ctx.store.reflections.query(filters, req.page, PER_PAGE, OPEN_STATES)
    pages = max(1, math.ceil(total / PER_PAGE))
    if req.page > pages:
        raise Refusal("no_page", pages=pages)
    shown = " ".join(f"{k}={v}" for k, v in req.filters.items())
    more = f"/queue {shown} page={req.page + 1}".replace("  ", " ") if req.page < pages else None
    return Result(True, "queue", {"items": [summary(ctx.policy, r) for r in items], "page": req.page,
                                  "pages": pages, "total": total, "filters": shown, "next": more})


def _filters(ctx: Context, given: dict[str, str]) -> dict[str, str | bool]:
    """Check each filter against the policy; agency roles are held to their own agency."""
    agencies = [a.id for a in ctx.policy.agencies]
    checks = {"state": (STATES, "status"), "field": (sorted(ctx.policy.fields), "field"),
              "agency": (agencies, "agency")}
    out: dict[str, str | bool] = {}
    for key, value in given.items():
        if not isinstance(value, str):
            raise Refusal("bad_filter", key=key, value="?", choices=[])
        if key in checks:
            choices, name = checks[key]
            if value not in choices:
                raise Refusal("bad_filter", key=key, value=value, choices=list(choices)[:30])
            out[name] = value
        elif key == "channel" and _CHANNEL.match(value):
            out["channel"] = value
        elif key in FLAGS and value in ("yes", "no"):
            out[FLAGS[key]] = value == "yes"
        else:
            raise Refusal("bad_filter", key=key, value=value, choices=[])
    if ctx.member.role in AGENCY_ROLES:
        if out.get("agency", ctx.member.agency) != ctx.member.agency:
            raise Refusal("other_agency", logged=True)
        out["agency"] = ctx.member.agency or ""
    return out


# ---- /show ----------------------------------------------------------------------------
@command("show", ROLES)
async def show(ctx: Context, req: Request) -> Result:
    r = await load_case(ctx, req.code)
    personal = sees_personal_data(ctx.member, r)
    values = {**summary(ctx.policy, r), "content": r.content, "channel": r.channel,
              "confidential": r.confidential, "hidden_reason": r.hidden_reason,
              "address": r.location.address, "lat": r.location.lat, "lon": r.location.lon,
              "emergency": r.emergency_number, "result": r.result, "info_requested": r.info_requested,
              "routing_reason": r.routing_reason, "photos": len(r.photos),
              "deadlines": {step: local(at) for step, at in r.deadlines.items()},
              "personal": r.citizen.model_dump() if personal and ctx.private else None,
              "personal_why": None if personal and ctx.private else
              "group" if personal else "confidential" if r.confidential else "role",
              "candidates": [_candidate(c) for c in r.duplicate_candidates],
              "history": [_entry(e, personal) for e in r.history]}
    return Result(True, "case", values, photos=tuple(r.photos))


def _candidate(c: DuplicateCandidate) -> dict[str, Any]:
    """A later report linked to the case as a duplicate (no personal data: /dupok, /dupsplit)."""
    return {"id": c.id, "status": c.status, "similarity": c.similarity, "channel": c.channel, "at": local(c.at),
            "snippet": (c.draft.content or "")[:80], "new_code": c.split_code, "photos": len(c.draft.photos)}


def _entry(e: Any, personal: bool) -> dict[str, Any]:
    actor = e.actor if personal or not e.actor.startswith("citizen:") else None  # "a citizen"
    return {"at": local(e.at), "actor": actor, "action": e.action, "from": e.from_status,
            "to": e.to_status, "reason": e.reason}


# ---- /stats ---------------------------------------------------------------------------
@command("stats", ROLES)
async def stats(ctx: Context, req: Request) -> Result:
    start = _period_start(ctx.now, req.period)
    agency = ctx.member.agency if ctx.member.role in AGENCY_ROLES else None
    cases = await ctx.store.reflections.touched_since(start, agency)
    filed = [r for r in cases if r.created_at >= start]

    def entered(state: str) -> int:
        return sum(1 for r in cases if r.entered_at.get(state) and r.entered_at[state] >= start)

    late = [r for r in await ctx.store.reflections.late_open(OPEN_STATES) if agency in (None, r.agency)]
    per_agency: dict[str, int] = {}
    for r in filed:
        name = _agency_name(ctx.policy, r.agency) or "—"
        per_agency[name] = per_agency.get(name, 0) + 1
    return Result(True, "stats", {
        "period": req.period, "since": local(start), "received": len(filed),
        "urgent": sum(r.urgent for r in filed), "forwarded": entered("forwarded"),
        "rejected": entered("rejected"), "published": entered("published"), "closed": entered("closed"),
        "late_open": len(late), "per_agency": sorted(per_agency.items())})


def _period_start(now: datetime, period: str) -> datetime:
    today = now.astimezone(VN).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=today.weekday()) if period == "week" else today


# ---- alerts pushed to the staff chat ---------------------------------------------------
async def staff_alerts(store: Store, policy: Policy, now: datetime, *, texts: Texts,
                       chat: tuple[str, str]) -> list[Delivery]:
    """New urgent and newly late open cases, messages the outbox gave up on, and incoming
    events the pipeline gave up on, each pushed once to the staff `chat`.

    Called by the gateway's scheduler inside a unit of work: each alert is a history entry on
    the case (so it is never pushed twice) and an outbox item under `staff-alert:<code>:<kind>`.
    Returns what was queued."""
    actor, out = Actor("system:staff_alerts", SYSTEM), []
    for flag in ("urgent", "late"):
        for r in await store.reflections.needing_alert(flag, OPEN_STATES):
            text = texts.render("staff_alert", "vi", kind=flag, **summary(policy, r))
            message = Outbound(text=text, kind="notice")
            await note(store, r, actor, f"staff_alert_{flag}", f"{chat[0]}:{chat[1]}")
            await store.outbox.enqueue(outbox_key(Kind.STAFF_ALERT, r.code, flag), chat[0], chat[1], message)
            out.append(Delivery(chat[0], chat[1], message))
    for item in await store.outbox.take_undelivered():
        if (key := OutboxKey.parse(item.id)) is not None and key.to_staff:
            continue  # a staff notice that failed must not raise another one (no loop)
        text = texts.render("staff_undelivered", "vi", channel=item.channel, address=item.address,
                            error=item.last_error, snippet=item.message.text[:200])
        message = Outbound(text=text, kind="notice")
        await store.outbox.enqueue(outbox_key(Kind.STAFF_UNDELIVERED, item.id), chat[0], chat[1], message)
        out.append(Delivery(chat[0], chat[1], message))
    for record in await store.inbound.take_failed():
        text = texts.render("staff_event_failed", "vi", channel=record.channel, sender=record.sender,
                            message_id=record.message_id[:80], attempts=max(record.attempts, 1),
                            reason=record.reason)
        message = Outbound(text=text, kind="notice")
        await store.outbox.enqueue(outbox_key(Kind.STAFF_FAILED, record.id), chat[0], chat[1], message)
        out.append(Delivery(chat[0], chat[1], message))
    return out
