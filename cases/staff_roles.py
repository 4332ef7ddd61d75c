"""Who the IOC staff are and what each role may see: the membership file (`STAFF_FILE`).

`run_bots.py` and the staff CLI call `load_roster` once at start-up; the staff bot looks a
Telegram author up by user id, the CLI by `--as` (member id or e-mail). Membership is
configured, never inferred from a display name. `bots.staff_commands` asks `can_open` and
`sees_personal_data` before it shows or changes a case.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cases.lifecycle import LEADER, OFFICER, OPERATOR, SUPERVISOR, Actor
from cases.policy import Policy
from store.models import Reflection

VIEWER = "viewer"
ROLES = (OPERATOR, SUPERVISOR, OFFICER, LEADER, VIEWER)
AGENCY_ROLES = (OFFICER, LEADER)
Role = Literal["ioc_operator", "ioc_supervisor", "agency_officer", "agency_leader", "viewer"]


class StaffFileError(ValueError):
    """An unreadable or invalid membership file; the message names the file and the entry."""


class Member(BaseModel):
    """One staff member; agency roles belong to exactly one agency of the policy."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9_.-]{1,64}$")
    name: str = Field(min_length=1)
    role: Role
    agency: str | None = None
    telegram_ids: list[int] = []
    emails: list[str] = []

    @model_validator(mode="after")
    def _agency_matches_role(self) -> Member:
        if (self.role in AGENCY_ROLES) != (self.agency is not None):
            raise ValueError("agency roles need an agency; other roles must not have one")
        return self

    @property
    def actor(self) -> Actor:
        """The identity written into every audit entry this member causes."""
        return Actor(f"staff:{self.id}", self.role)


class Roster:
    """The loaded membership: lookups by member id, Telegram user id and e-mail address."""

    def __init__(self, members: list[Member]) -> None:
        self.members = members
        self._by_id = {m.id: m for m in members}
        self._by_telegram = {t: m for m in members for t in m.telegram_ids}
        self._by_email = {e.lower(): m for m in members for e in m.emails}

    def by_telegram(self, user_id: str | None) -> Member | None:
        """The member writing from this Telegram user id (a string from the Inbound context)."""
        if not user_id or not user_id.lstrip("-").isdigit():
            return None
        return self._by_telegram.get(int(user_id))

    def find(self, who: str) -> Member | None:
        """A member by id or by one of their e-mail addresses (the CLI's `--as`)."""
        if not isinstance(who, str):
            return None
        return self._by_id.get(who) or self._by_email.get(who.lower())


def load_roster(path: str | Path, policy: Policy | None = None) -> Roster:
    """Read and check the membership file; agencies must exist in `policy` when given."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise StaffFileError(f"{path}: cannot read: {' '.join(str(exc).split())}") from exc
    entries = raw.get("members") if isinstance(raw, dict) else None
    if not isinstance(entries, list):
        raise StaffFileError(f"{path}: expected a top-level 'members:' list")
    members = [_member(path, i, e) for i, e in enumerate(entries)]
    _check_unique(path, members, policy)
    return Roster(members)


def _member(path: Path, index: int, entry: object) -> Member:
    try:
        return Member.model_validate(entry)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        raise StaffFileError(f"{path}: members.{index}{'.' + where if where else ''}: {msg}") from None


def _check_unique(path: Path, members: list[Member], policy: Policy | None) -> None:
    seen: dict[object, str] = {}
    for m in members:
        for key in [("id", m.id), *(("telegram", t) for t in m.telegram_ids),
                    *(("email", e.lower()) for e in m.emails)]:
            if key in seen:
                raise StaffFileError(f"{path}: {key[0]} {key[1]} belongs to both {seen[key]} and {m.id}")
            seen[key] = m.id
        if policy is not None and m.agency is not None and m.agency not in {a.id for a in policy.agencies}:
            raise StaffFileError(f"{path}: member {m.id}: unknown agency {m.agency!r}")


def can_open(member: Member, reflection: Reflection) -> bool:
    """Agency roles see only their own agency's cases; IOC roles and viewers see all."""
    return member.role not in AGENCY_ROLES or reflection.agency == member.agency


def sees_personal_data(member: Member, reflection: Reflection) -> bool:
    """The reporter's name, phone, e-mail: IOC staff only (000 Đ14.5: the IOC hands them to an
    agency when needed); a confidential report's only to IOC supervisors (001 Đ5.4, 004 Đ5.5)."""
    if reflection.confidential:
        return member.role == SUPERVISOR
    return member.role in (OPERATOR, SUPERVISOR)
