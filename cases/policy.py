"""A deployment's policy (one province's rules) as data: `policies/*.yaml`.

`load_policy` is called once at start-up by `run_bots.py` (and by `policy check`); the
calendar, routing, intake and SLA code read everything province-specific from the result.
"""
from __future__ import annotations

import re
from datetime import date, time
from itertools import pairwise
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from cases.gazetteer import Gazetteer

FIELD_CODES = ("telecom", "agriculture", "science", "health", "tourism", "transport",
               "electricity", "water_resources", "environment", "urban_order", "other")
REQUIRED_STEPS = ("classify", "forward", "return_wrong_jurisdiction", "handle", "approve", "publish")
REQUIRED_REJECTIONS = ("incomplete", "out_of_scope", "abusive", "duplicate")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


class PolicyError(ValueError):
    """An invalid policy file; the message names the file, the key path and the problem."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _parse_hhmm(value: Any) -> time:
    if isinstance(value, time):
        return value
    if not isinstance(value, str) or not _HHMM.match(value):
        raise ValueError(f"bad time format {value!r}: write \"HH:MM\" in quotes, e.g. \"07:00\"")
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


class Period(_Model):
    start: time
    end: time

    _times = field_validator("start", "end", mode="before")(_parse_hhmm)

    @model_validator(mode="after")
    def _ordered(self) -> Period:
        if self.end <= self.start:
            raise ValueError(f"period end {self.end:%H:%M} is not after start {self.start:%H:%M}")
        return self


class FixedHoliday(_Model):
    month: int = Field(ge=1, le=12)
    day: int = Field(ge=1, le=31)
    name: str

    @model_validator(mode="after")
    def _real_day(self) -> FixedHoliday:
        try:
            date(2024, self.month, self.day)  # a leap year: 29/2 is allowed
        except ValueError:
            raise ValueError(f"no such day: {self.day}/{self.month}") from None
        return self


class LunarHoliday(_Model):
    """A lunar-calendar day; `day: last` is the last day of lunar month 12 (Tết eve)."""
    month: int = Field(ge=1, le=12)
    day: int | Literal["last"]
    name: str


class DatedDay(_Model):
    date: date
    name: str


class Calendar(_Model):
    working_weekdays: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = Field(min_length=1)
    working_periods: list[Period] = Field(min_length=1)
    hours_per_working_day: float = Field(gt=0, le=24)
    compensate_weekend_holidays: bool = True
    fixed_holidays: list[FixedHoliday] = []
    lunar_holidays: list[LunarHoliday] = []
    days_off: list[DatedDay] = []
    extra_working_days: list[DatedDay] = []

    @model_validator(mode="after")
    def _no_overlap(self) -> Calendar:
        periods = sorted(self.working_periods, key=lambda p: p.start)
        for a, b in pairwise(periods):
            if b.start < a.end:
                raise ValueError(f"working periods overlap: {a.start:%H:%M}–{a.end:%H:%M} "
                                 f"and {b.start:%H:%M}–{b.end:%H:%M}")
        return self


class FieldDef(_Model):
    vi: str
    en: str
    keywords: list[str] = []


class Agency(_Model):
    id: str = Field(pattern=r"^[a-z0-9_]+$")
    name: str
    focal_email: str = Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    head_email: str = Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    fields: list[str] = Field(min_length=1)
    communes: list[str] = []  # empty: the whole province
    send_method: Literal["email"] = "email"
    requires_leader_approval: bool = True


class CommuneAuthorities(_Model):
    """Template expanded into one agency per gazetteer commune (its People's Committee).

    `{code}` in the templates is replaced by the commune code, `{name}` by its name.
    """
    id: str = "ubnd_{code}"
    name: str = "UBND {name}"
    focal_email: str
    head_email: str
    fields: list[str] = Field(min_length=1)
    requires_leader_approval: bool = True


class Deadline(_Model):
    hours: float | None = Field(default=None, ge=0)
    days: float | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _one_unit(self) -> Deadline:
        if (self.hours is None) == (self.days is None):
            raise ValueError("give exactly one of 'hours' or 'days'")
        return self


class EscalationLevel(_Model):
    step: str
    recipient: Literal["focal", "head", "ioc"]


class Rejection(_Model):
    text: str
    guidance: str


class Duplicate(_Model):
    radius_m: float = Field(gt=0)
    window_hours: float = Field(gt=0)


class Policy(_Model):
    """The whole policy file; `load_policy` builds it and attaches the gazetteer."""
    province: str
    timezone: Literal["Asia/Ho_Chi_Minh"]
    gazetteer_file: str  # relative to the policy file
    calendar: Calendar
    fields: dict[str, FieldDef]
    agencies: list[Agency] = []
    commune_authorities: CommuneAuthorities | None = None
    deadlines: dict[str, Deadline]
    escalation: list[EscalationLevel] = []
    rejection_reasons: dict[str, Rejection]
    processing_time_text: str
    duplicate: Duplicate
    # field: department by field, commune authority where one is set for the field (001);
    # location: always the authority of the reported commune (004 Đ6)
    routing_by: Literal["field", "location"] = "field"
    routing_min_confidence: float = Field(ge=0, le=1)
    conversation_expiry_hours: float = Field(gt=0)
    # A confidential reporter's name and phone reach the agency only when this is true
    # (000 Đ14.5, 004 Đ5.5: the IOC may hand them over, with consent); others always do.
    share_contact_with_agency: bool = False
    _gazetteer: Gazetteer | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _consistent(self) -> Policy:
        _check_keys("fields", set(self.fields), set(FIELD_CODES), exact=True)
        _check_keys("deadlines", set(self.deadlines), set(REQUIRED_STEPS))
        _check_keys("rejection_reasons", set(self.rejection_reasons), set(REQUIRED_REJECTIONS))
        owners = [(f"agencies.{i}.fields", a.fields) for i, a in enumerate(self.agencies)]
        if self.commune_authorities:
            owners.append(("commune_authorities.fields", self.commune_authorities.fields))
        for where, codes in owners:
            unknown = [c for c in codes if c not in self.fields]
            if unknown:
                raise ValueError(f"{where}: unknown field code {unknown[0]!r}")
        ids = [a.id for a in self.agencies]
        if len(ids) != len(set(ids)):
            raise ValueError(f"agencies: duplicate id {next(i for i in ids if ids.count(i) > 1)!r}")
        for i, level in enumerate(self.escalation):
            if level.step not in self.deadlines:
                raise ValueError(f"escalation.{i}.step: no deadline named {level.step!r}")
        return self

    @property
    def gazetteer(self) -> Gazetteer:
        """The communes of this deployment (loaded with the policy)."""
        if self._gazetteer is None:
            raise PolicyError("policy was built without load_policy(): no gazetteer attached")
        return self._gazetteer

    def field_keywords(self) -> dict[str, list[str]]:
        """Field code → keywords; the classifier folds accents itself."""
        return {code: list(f.keywords) for code, f in self.fields.items()}

    def agency(self, agency_id: str) -> Agency:
        """The agency with this id (KeyError if unknown); used by routing and replies."""
        for a in self.agencies:
            if a.id == agency_id:
                return a
        raise KeyError(agency_id)

    def deadline_hours(self, step: str) -> float:
        """Working hours allowed for a named step (days converted with hours_per_working_day)."""
        d = self.deadlines[step]
        if d.hours is not None:
            return d.hours
        assert d.days is not None  # Deadline's validator: exactly one of hours and days
        return d.days * self.calendar.hours_per_working_day


def _check_keys(where: str, got: set[str], want: set[str], exact: bool = False) -> None:
    missing = sorted(want - got)
    if missing:
        raise ValueError(f"{where}: missing {', '.join(missing)}")
    extra = sorted(got - want)
    if exact and extra:
        raise ValueError(f"{where}: unknown code {extra[0]!r} (allowed: {', '.join(sorted(want))})")


def load_policy(path: str | Path) -> Policy:
    """Read, validate and complete a policy file; raises PolicyError with a one-line message."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise PolicyError(f"{path}: cannot read: {' '.join(str(exc).split())}") from exc
    if not isinstance(raw, dict):
        raise PolicyError(f"{path}: expected a mapping at the top level")
    try:
        policy = Policy.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        raise PolicyError(f"{path}: {where}: {msg}") from None
    gazetteer_path = path.parent / policy.gazetteer_file
    try:
        gaz = Gazetteer.load(gazetteer_path)
    except (OSError, ValueError, KeyError) as exc:
        raise PolicyError(f"{path}: gazetteer_file: cannot load {gazetteer_path}: {exc}") from exc
    policy = _with_commune_authorities(policy, gaz, path)
    policy._gazetteer = gaz
    return policy


def _with_commune_authorities(policy: Policy, gaz: Gazetteer, path: Path) -> Policy:
    """Expand the commune-authority template and check every agency commune exists."""
    agencies = list(policy.agencies)
    t = policy.commune_authorities
    if t is not None:
        for c in gaz.communes:
            fill = {"code": c.code, "name": c.name}
            agencies.append(Agency(
                id=t.id.format(**fill), name=t.name.format(**fill),
                focal_email=t.focal_email.format(**fill), head_email=t.head_email.format(**fill),
                fields=t.fields, communes=[c.code], requires_leader_approval=t.requires_leader_approval))
    for i, a in enumerate(agencies):
        unknown = [code for code in a.communes if gaz.by_code(code) is None]
        if unknown:
            raise PolicyError(f"{path}: agencies.{i}.communes: commune {unknown[0]!r} "
                              f"is not in {policy.gazetteer_file}")
    ids = [a.id for a in agencies]
    if len(ids) != len(set(ids)):
        raise PolicyError(f"{path}: agencies: duplicate id after expanding commune_authorities")
    return policy.model_copy(update={"agencies": agencies})
