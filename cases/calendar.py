"""The working-hours clock of a deployment, built from its policy's `calendar` section.

The SLA scheduler and case transitions call `deadline` to stamp due times and
`working_time_between` to report how long a step took; `policy check` and staff views use
`holidays` and `next_working_days`. Inputs and outputs are timezone-aware datetimes (stored in
UTC); the arithmetic runs in Asia/Ho_Chi_Minh, stepping by working periods, never by minutes.
"""
from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo

from lunardate import LunarDate

from cases.policy import WEEKDAYS, Calendar, Policy

MAX_SCAN_DAYS = 3700  # a deadline further than ~10 years away means a broken calendar


class WorkingCalendar:
    """Working days, periods and holidays of one policy."""

    def __init__(self, calendar: Calendar, tz: str = "Asia/Ho_Chi_Minh") -> None:
        self.cal = calendar
        self.tz = ZoneInfo(tz)
        self.weekdays = {WEEKDAYS.index(d) for d in calendar.working_weekdays}
        self.periods = sorted(((p.start, p.end) for p in calendar.working_periods))
        self.extra_working = {d.date: d.name for d in calendar.extra_working_days}
        self._holidays = lru_cache(maxsize=64)(self._compute_holidays)

    @classmethod
    def from_policy(cls, policy: Policy) -> WorkingCalendar:
        """The clock for a loaded policy; built once at start-up."""
        return cls(policy.calendar, policy.timezone)

    # --- days -----------------------------------------------------------------------------
    def holidays(self, year: int) -> dict[date, str]:
        """Days off in `year` (fixed, lunar, compensatory, dated) → Vietnamese name."""
        return dict(self._holidays(year))

    def _compute_holidays(self, year: int) -> dict[date, str]:
        days: dict[date, str] = {}
        for h in self.cal.fixed_holidays:
            days[date(year, h.month, h.day)] = h.name
        for lh in self.cal.lunar_holidays:
            for lunar_year in (year - 1, year):  # lunar month 12 spills into the next year
                days[_lunar_to_solar(lunar_year, lh.month, lh.day)] = lh.name
        if self.cal.compensate_weekend_holidays:
            self._add_compensation(days)
        for d in self.cal.days_off:
            if d.date.year == year:
                days[d.date] = d.name
        return {d: n for d, n in sorted(days.items()) if d.year == year and d not in self.extra_working}

    def _add_compensation(self, days: dict[date, str]) -> None:
        """Labour Code art. 111(3): a holiday on a weekly rest day is taken on the next working day."""
        for day, name in sorted(days.items()):
            if day.weekday() in self.weekdays:
                continue
            comp = day + timedelta(days=1)
            while comp.weekday() not in self.weekdays or comp in days:
                comp += timedelta(days=1)
            days[comp] = f"Nghỉ bù {name}"

    def is_working_day(self, day: date) -> bool:
        """True when `day` has working periods (extra working days count, holidays don't)."""
        if day in self.extra_working:
            return True
        return day.weekday() in self.weekdays and day not in self._holidays(day.year)

    def day_label(self, day: date) -> str | None:
        """Why `day` is not worked: the holiday name, "Nghỉ cuối tuần", or None if worked."""
        if self.is_working_day(day):
            return None
        return self._holidays(day.year).get(day, "Nghỉ cuối tuần")

    def next_working_days(self, start: date, n: int) -> list[date]:
        """The first `n` working days on or after `start`, for display."""
        out: list[date] = []
        day = start
        while len(out) < n:
            if self.is_working_day(day):
                out.append(day)
            day += timedelta(days=1)
        return out

    # --- time -----------------------------------------------------------------------------
    def is_working_time(self, dt: datetime) -> bool:
        """True if `dt` falls inside a working period (start inclusive, end exclusive)."""
        local = self._local(dt)
        if not self.is_working_day(local.date()):
            return False
        return any(s <= local.time() < e for s, e in self.periods)

    def deadline(self, start: datetime, working_hours: float | timedelta) -> datetime:
        """The instant (UTC) when `working_hours` of working time have passed since `start`.

        A deadline that lands exactly on a period end stays there (e.g. 17:00), it is not
        pushed to the next morning.
        """
        remaining = working_hours if isinstance(working_hours, timedelta) else timedelta(hours=working_hours)
        if remaining < timedelta(0):
            raise ValueError("working_hours must not be negative")
        if not remaining:
            return self._local(start).astimezone(timezone.utc)
        cursor = self._local(start)
        for seg_start, seg_end in self._segments(cursor):
            available = seg_end - seg_start
            if remaining <= available:
                return (seg_start + remaining).astimezone(timezone.utc)
            remaining -= available
        raise ValueError("no working time within ten years: check the calendar")

    def working_time_between(self, a: datetime, b: datetime) -> timedelta:
        """Working time from `a` to `b` (negative if `b` is before `a`)."""
        a_local, b_local = self._local(a), self._local(b)
        if b_local < a_local:
            return -self.working_time_between(b, a)
        total = timedelta(0)
        for seg_start, seg_end in self._segments(a_local):
            if seg_start >= b_local:
                break
            total += min(seg_end, b_local) - seg_start
        return total

    def _segments(self, cursor: datetime) -> Iterator[tuple[datetime, datetime]]:
        """Working intervals from `cursor` on, clipped so none starts before it."""
        day = cursor.date()
        for _ in range(MAX_SCAN_DAYS):
            if self.is_working_day(day):
                for s, e in self.periods:
                    seg_start = max(cursor, datetime.combine(day, s, self.tz))
                    seg_end = datetime.combine(day, e, self.tz)
                    if seg_start < seg_end:
                        yield seg_start, seg_end
            day += timedelta(days=1)

    def _local(self, dt: datetime) -> datetime:
        if dt.tzinfo is None or dt.utcoffset() is None:
            raise ValueError("naive datetime: pass a timezone-aware datetime (UTC in storage)")
        return dt.astimezone(self.tz)


def _lunar_to_solar(year: int, month: int, day: int | str) -> date:
    """Solar date of a lunar day in lunar year `year`; day "last" is that month's last day.

    `lunardate` follows the Chinese (UTC+8) calendar; in the rare years where Vietnam's
    (UTC+7) calendar differs, correct it with dated `days_off` / `extra_working_days`.
    """
    if day == "last":
        first_of_next = (year + 1, 1) if month == 12 else (year, month + 1)
        return LunarDate(*first_of_next, 1).to_solar_date() - timedelta(days=1)
    return LunarDate(year, month, int(day)).to_solar_date()
