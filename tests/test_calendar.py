"""The working-hours clock: concrete cases from the regulations and property tests."""
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cases.calendar import WorkingCalendar
from cases.policy import Calendar, load_policy

POLICIES = Path(__file__).resolve().parent.parent / "policies"
VN = ZoneInfo("Asia/Ho_Chi_Minh")
QN = WorkingCalendar.from_policy(load_policy(POLICIES / "quang_nam.yaml"))  # 07–11, 13–17
BP = WorkingCalendar.from_policy(load_policy(POLICIES / "binh_phuoc_1022.yaml"))  # 07–11:30, 13:30–17


def vn(y: int, m: int, d: int, hh: int = 0, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=VN)


def test_friday_afternoon_rolls_to_monday_morning():
    assert QN.deadline(vn(2026, 11, 27, 16), 2) == vn(2026, 11, 30, 8)


def test_lunch_break_is_skipped():
    assert QN.deadline(vn(2026, 11, 30, 10, 30), 1) == vn(2026, 11, 30, 13, 30)
    assert BP.deadline(vn(2026, 11, 30, 11), 1) == vn(2026, 11, 30, 14)


def test_deadline_on_period_end_stays_there():
    assert QN.deadline(vn(2026, 11, 30, 10), 1) == vn(2026, 11, 30, 11)
    assert QN.deadline(vn(2026, 11, 30, 16), 1) == vn(2026, 11, 30, 17)


@pytest.mark.parametrize("start, expected", [
    (vn(2026, 11, 30, 5), vn(2026, 11, 30, 8)),     # before opening
    (vn(2026, 11, 30, 12), vn(2026, 11, 30, 14)),   # during lunch
    (vn(2026, 11, 30, 18), vn(2026, 12, 1, 8)),     # after closing
    (vn(2026, 11, 28, 10), vn(2026, 11, 30, 8)),    # Saturday
])
def test_start_outside_working_hours(start, expected):
    assert QN.deadline(start, 1) == expected


def test_one_working_day_is_eight_hours():
    assert BP.deadline(vn(2026, 11, 30, 9), 8) == vn(2026, 12, 1, 9)


def test_result_is_utc_and_input_may_be_any_zone():
    result = QN.deadline(datetime(2026, 11, 30, 1, 0, tzinfo=timezone.utc), 1)  # 08:00 local
    assert result.utcoffset() == timedelta(0)
    assert result == vn(2026, 11, 30, 9)


def test_naive_datetimes_are_rejected():
    with pytest.raises(ValueError, match="naive"):
        QN.deadline(datetime(2026, 11, 30, 9), 1)
    with pytest.raises(ValueError, match="naive"):
        QN.is_working_time(datetime(2026, 11, 30, 9))


def test_tet_2027():
    tet = date(2027, 2, 6)  # Tết Nguyên đán Đinh Mùi: Saturday 6 Feb 2027
    eve, days = tet - timedelta(days=1), [tet + timedelta(days=i) for i in range(4)]
    off = {eve, *days}
    assert [d for d in sorted(off) if d.weekday() >= 5] == [tet, tet + timedelta(days=1)]
    in_lieu = {date(2027, 2, 10), date(2027, 2, 11)}  # the next two working days (Wed, Thu)
    holidays = QN.holidays(2027)
    assert off | in_lieu <= set(holidays)
    assert holidays[tet] == "Tết Nguyên đán (Mùng 1)"
    assert QN.deadline(vn(2027, 2, 4, 16), 2) == vn(2027, 2, 12, 8)


def test_gio_to_2026_falls_on_sunday_and_is_taken_on_monday():
    holidays = QN.holidays(2026)
    assert holidays[date(2026, 4, 26)] == "Giỗ Tổ Hùng Vương"
    assert holidays[date(2026, 4, 27)] == "Nghỉ bù Giỗ Tổ Hùng Vương"
    assert QN.deadline(vn(2026, 4, 24, 16), 2) == vn(2026, 4, 28, 8)


def test_across_new_year():
    # Thu 31/12/2026 16:00; Fri 1/1/2027 is Tết Dương lịch, then the weekend.
    assert QN.deadline(vn(2026, 12, 31, 16), 2) == vn(2027, 1, 4, 8)
    assert QN.working_time_between(vn(2026, 12, 31, 16), vn(2027, 1, 4, 8)) == timedelta(hours=2)


def test_fixed_holidays_2026():
    holidays = QN.holidays(2026)
    for d in (date(2026, 1, 1), date(2026, 4, 30), date(2026, 5, 1), date(2026, 9, 1), date(2026, 9, 2)):
        assert d in holidays
    assert not QN.is_working_time(vn(2026, 9, 2, 9))


def test_dated_days_off_and_extra_working_days():
    cal = Calendar.model_validate({  # as a policy file gives it
        "working_weekdays": ["mon", "tue", "wed", "thu", "fri"],
        "working_periods": [{"start": "08:00", "end": "12:00"}],
        "hours_per_working_day": 4,
        "days_off": [{"date": "2026-12-01", "name": "Nghỉ bù"}],
        "extra_working_days": [{"date": "2026-12-05", "name": "Làm bù"}],
    })
    clock = WorkingCalendar(cal)
    assert clock.day_label(date(2026, 12, 1)) == "Nghỉ bù"
    assert clock.is_working_time(vn(2026, 12, 5, 9))  # a Saturday worked
    assert clock.deadline(vn(2026, 11, 30, 11), 2) == vn(2026, 12, 2, 9)
    assert clock.next_working_days(date(2026, 12, 4), 3) == [date(2026, 12, 4), date(2026, 12, 5), date(2026, 12, 7)]


def test_working_time_between_is_antisymmetric():
    a, b = vn(2026, 11, 27, 10), vn(2026, 11, 30, 10)
    assert QN.working_time_between(a, b) == timedelta(hours=8)
    assert QN.working_time_between(b, a) == -timedelta(hours=8)


def test_fast_enough_for_every_case():
    import time as clock
    started = clock.perf_counter()
    start = vn(2026, 1, 1)
    for i in range(2000):
        QN.deadline(start + timedelta(hours=7 * i), 48)
    assert clock.perf_counter() - started < 2.0


# --- properties -----------------------------------------------------------------------------
starts = st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2028, 12, 31),
                      timezones=st.just(timezone.utc)).map(lambda d: d.replace(second=0, microsecond=0))
hours = st.integers(min_value=0, max_value=400).map(lambda q: q / 4)  # exact quarters of an hour


@settings(max_examples=150, deadline=None)
@given(starts, hours, hours)
def test_monotonic_in_hours(s, h1, h2):
    lo, hi = sorted((h1, h2))
    assert QN.deadline(s, lo) <= QN.deadline(s, hi)


@settings(max_examples=150, deadline=None)
@given(starts, starts, hours)
def test_monotonic_in_start(s1, s2, h):
    lo, hi = sorted((s1, s2))
    assert QN.deadline(lo, h) <= QN.deadline(hi, h)


@settings(max_examples=150, deadline=None)
@given(starts, hours, hours)
def test_additive(s, a, b):
    assert QN.deadline(QN.deadline(s, a), b) == QN.deadline(s, a + b)


@settings(max_examples=150, deadline=None)
@given(starts, hours)
def test_between_inverts_deadline(s, h):
    assert QN.working_time_between(s, QN.deadline(s, h)) == timedelta(hours=h)


@settings(max_examples=150, deadline=None)
@given(starts, hours.filter(lambda h: h > 0))
def test_result_is_inside_working_time_or_at_a_period_end(s, h):
    result = QN.deadline(s, h)
    local = result.astimezone(VN)
    at_period_end = QN.is_working_day(local.date()) and local.time() in {e for _, e in QN.periods}
    assert QN.is_working_time(result) or at_period_end
    assert result > s
