"""`python run_bots.py policy check FILE`: validate a policy file and show what it means.

Operators run it after editing a policy; it prints the province, fields, agencies and the
working calendar of the next working week, and returns the process exit code.
"""
from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

from cases.calendar import WorkingCalendar
from cases.policy import PolicyError, load_policy

EXIT_OK, EXIT_INVALID = 0, 2
WEEKDAY_NAMES = ("Thứ Hai", "Thứ Ba", "Thứ Tư", "Thứ Năm", "Thứ Sáu", "Thứ Bảy", "Chủ Nhật")


def main(path: str | Path, today: date | None = None) -> int:
    """Validate `path`; print a summary (exit 0) or the one-line error (exit 2)."""
    try:
        policy = load_policy(path)
    except PolicyError as exc:
        print(f"INVALID {exc}")
        return EXIT_INVALID
    clock = WorkingCalendar.from_policy(policy)
    print(f"OK {path}: {policy.province} ({len(policy.gazetteer.communes)} xã/phường)")
    print("Lĩnh vực: " + ", ".join(f"{code} ({f.vi})" for code, f in policy.fields.items()))
    department_level = [a for a in policy.agencies if not a.communes]
    print(f"Cơ quan: {len(policy.agencies)} ({len(department_level)} cấp tỉnh)")
    for a in department_level:
        print(f"  {a.id}: {a.name} — {', '.join(a.fields)}")
    print("Lịch làm việc tuần tới:")
    for line in week_lines(clock, today or datetime.now(clock.tz).date()):
        print("  " + line)
    return EXIT_OK


def week_lines(clock: WorkingCalendar, today: date) -> list[str]:
    """One line per day from the next Monday to Sunday: working periods or why it is off."""
    monday = today + timedelta(days=7 - today.weekday())
    lines = []
    for offset in range(7):
        day = monday + timedelta(days=offset)
        label = clock.day_label(day)
        if label is None:
            label = ", ".join(f"{s:%H:%M}–{e:%H:%M}" for s, e in clock.periods)
        lines.append(f"{WEEKDAY_NAMES[day.weekday()]} {day:%d/%m/%Y}: {label}")
    return lines
