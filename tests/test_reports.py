"""Reports: numbers checked against a hand-computed fixture, the exports and the CLI.

The fixture (Quảng Nam calendar: Mon–Fri 07–11 and 13–17) is the week of Monday 2 March 2026:
  A telegram transport ag_a  Mon 08:00 → published Tue 08:00 = 8 h, satisfied
  B telegram transport ag_a  Mon 14:00 → published Wed 10:00 = 14 h, late, closed, not satisfied
  C email    environment ag_b Tue 09:00 → published Tue 10:30 = 1.5 h, acceptable
  D email    environment ag_b Wed 09:00, in progress, late, hidden
  E zalo     other (no agency) Thu 16:00, rejected
  F telegram environment ag_b Fri 10:00 → published Mon 9/3 09:00 = 7 h, confidential, satisfied
  G telegram transport        Mon 9/3 08:00 (next week: only in the monthly report)
"""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from openpyxl import load_workbook

from bots.report_cli import export_report
from cases.calendar import WorkingCalendar
from cases.policy import load_policy
from cases.report_mail import send_due_summaries
from cases.reports import (
    Report,
    build_report,
    last_complete,
    local_range,
    period_containing,
    policy_names,
    stamp_handling_hours,
)
from normalizer.texts import Texts
from store.models import Place, Reflection
from store.reports import Row
from store.repos import Store

VN = ZoneInfo("Asia/Ho_Chi_Minh")
ROOT = Path(__file__).resolve().parent.parent
POLICY = load_policy(ROOT / "policies" / "quang_nam.yaml")
CAL = WorkingCalendar.from_policy(POLICY)
WEEK = period_containing("week", date(2026, 3, 4))


def vn(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=VN)


def case(code: str, channel: str, field: str, agency: str | None, created: datetime, status: str, *,
         published: datetime | None = None, commune: str | None = "20194", **extra: Any) -> Reflection:
    entered = {"received": created, **({"published": published} if published else {})}
    place = Place(lat=16.05, lon=108.2, address="Đường Hùng Vương", commune_code=commune,
                  commune="Phường Hải Vân" if commune == "20194" else "Phường Hòa Khánh" if commune else None)
    return Reflection(code=code, channel=channel, sender="s", content="Ổ gà", field=field, agency=agency,
                      status=status, created_at=created, entered_at=entered, location=place, **extra)


FIXTURE = [
    case("A", "telegram", "transport", "ag_a", vn(2, 8), "published", published=vn(3, 8), rating="satisfied"),
    case("B", "telegram", "transport", "ag_a", vn(2, 14), "closed", published=vn(4, 10), late=True,
         rating="not_satisfied"),
    case("C", "email", "environment", "ag_b", vn(3, 9), "published", published=vn(3, 10, 30),
         rating="acceptable", commune="20200"),
    case("D", "email", "environment", "ag_b", vn(4, 9), "in_progress", late=True, hidden=True, commune="20200"),
    case("E", "zalo", "other", None, vn(5, 16), "rejected", commune=None),
    case("F", "telegram", "environment", "ag_b", vn(6, 10), "published", published=vn(9, 9),
         confidential=True, rating="satisfied", commune="20200"),
    case("G", "telegram", "transport", None, vn(9, 8), "received"),
]


async def load_fixture(database) -> None:
    for r in FIXTURE:
        await Store(database).reflections.insert(r)


def by_key(report: Report, breakdown: str) -> dict[str, Row]:
    return {r.key: r for r in report.by[breakdown]}


async def test_weekly_totals_match_the_hand_computed_fixture(database) -> None:
    await load_fixture(database)
    report = await build_report(database, WEEK, CAL, policy_names(POLICY))
    t = report.total
    assert (t.received, t.handled, t.on_time, t.late, t.in_progress, t.rejected, t.hidden) == (6, 4, 3, 2, 1, 1, 1)
    assert (t.satisfied, t.acceptable, t.not_satisfied) == (2, 1, 1)
    assert (t.median_hours, t.p90_hours) == (7, 14)  # sorted 1.5, 7, 8, 14: ranks 2 and 4


async def test_breakdowns_per_channel_agency_field_and_commune(database) -> None:
    await load_fixture(database)
    report = await build_report(database, WEEK, CAL, policy_names(POLICY))
    ch = by_key(report, "channel")
    telegram, email = ch["telegram"], ch["email"]
    assert (telegram.received, telegram.handled, telegram.on_time, telegram.late) == (3, 3, 2, 1)
    assert (telegram.median_hours, telegram.p90_hours) == (8, 14)
    assert (email.handled, email.in_progress, email.hidden, email.median_hours) == (1, 1, 1, 1.5)
    assert (ch["zalo"].rejected, ch["zalo"].median_hours) == (1, None)
    ag = by_key(report, "agency")
    assert (ag["ag_a"].handled, ag["ag_a"].on_time, ag["ag_a"].median_hours, ag["ag_a"].p90_hours) == (2, 1, 8, 14)
    assert (ag["ag_b"].received, ag["ag_b"].on_time, ag["ag_b"].median_hours, ag["ag_b"].p90_hours) == (3, 2, 1.5, 7)
    assert ag["ag_b"].on_time_rate == 1.0 and ag["ag_a"].on_time_rate == 0.5
    assert ag[""].rejected == 1
    fields = by_key(report, "field")
    assert {k: r.received for k, r in fields.items()} == {"transport": 2, "environment": 3, "other": 1}
    assert fields["transport"].name == POLICY.fields["transport"].vi
    communes = by_key(report, "commune")
    assert {k: r.received for k, r in communes.items()} == {"20194": 2, "20200": 3, "": 1}
    assert communes["20194"].name == "Phường Hải Vân"
    assert report.weekly_by_field == [(date(2026, 3, 2), "environment", 3), (date(2026, 3, 2), "other", 1),
                                      (date(2026, 3, 2), "transport", 2)]


async def test_month_includes_the_next_week_and_handling_hours_are_stored(database) -> None:
    await load_fixture(database)
    report = await build_report(database, period_containing("month", date(2026, 3, 20)), CAL)
    assert report.total.received == 7 and report.total.in_progress == 2
    doc = await database.db.reflections.find_one({"code": "B"})
    assert doc["handling_working_hours"] == 14
    # Reopened and published again a working day later: the stored time follows.
    await database.db.reflections.update_one({"code": "B"}, {"$set": {"entered_at.published": vn(5, 10)}})
    assert await stamp_handling_hours(database, CAL) == 1
    assert (await database.db.reflections.find_one({"code": "B"}))["handling_working_hours"] == 22


def test_periods_are_local_calendar_periods() -> None:
    q = period_containing("quarter", date(2026, 5, 17))
    assert (q.start, q.end) == (datetime(2026, 4, 1, tzinfo=VN), datetime(2026, 7, 1, tzinfo=VN))
    assert period_containing("year", date(2026, 5, 17)).end == datetime(2027, 1, 1, tzinfo=VN)
    assert last_complete("week", vn(4, 12)).start == datetime(2026, 2, 23, tzinfo=VN)
    assert last_complete("month", vn(4, 12)).label == "01/02/2026–28/02/2026"
    assert local_range(date(2026, 3, 2), date(2026, 3, 8)) == WEEK.__class__("range", WEEK.start, WEEK.end)


async def test_exports_open_as_workbook_csv_and_charts(database, tmp_path: Path) -> None:
    await load_fixture(database)
    report = await build_report(database, WEEK, CAL, policy_names(POLICY))
    paths = export_report(report, tmp_path)
    book = load_workbook(tmp_path / "report.xlsx")
    assert book.sheetnames == ["Tổng hợp", "Theo kênh", "Theo lĩnh vực", "Theo cơ quan", "Theo xã phường"]
    sheet = book["Theo cơ quan"]
    headers = [c.value for c in sheet[2]]
    assert headers[:4] == ["Mã", "Tên", "Tiếp nhận", "Đã xử lý"] and "Hài lòng" in headers
    rows = {r[0]: r for r in sheet.iter_rows(min_row=3, values_only=True)}
    assert rows["ag_b"][headers.index("Đúng hạn")] == 2 and rows["ag_a"][headers.index("Tỷ lệ đúng hạn")] == 0.5
    with (tmp_path / "channel.csv").open(encoding="utf-8-sig") as f:
        lines = list(csv.DictReader(f))
    assert {line["Mã"]: line["Tiếp nhận"] for line in lines} == {"telegram": "3", "email": "2", "zalo": "1"}
    for png in ("weekly_by_field.png", "on_time_by_agency.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and tmp_path / png in paths


async def test_cli_writes_the_report_for_a_date_range(database, db_server, tmp_path: Path) -> None:
    await load_fixture(database)
    env = {**os.environ, "MONGODB_URI": db_server.uri, "MONGODB_DATABASE": database.db.name,
           "POLICY_FILE": str(ROOT / "policies" / "quang_nam.yaml")}
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "run_bots.py", "report", "--from", "2026-03-02", "--to", "2026-03-08",
                           "--out", str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert str(out / "report.xlsx") in done.stdout
    total = load_workbook(out / "report.xlsx")["Tổng hợp"]
    assert [c.value for c in total[3]][2] == 6  # received in that week


async def test_periodic_summary_mailed_once_to_agency_heads_and_the_ioc(database) -> None:
    await load_fixture(database)
    head = POLICY.agencies[0]
    await database.db.reflections.update_many({"agency": "ag_a"}, {"$set": {"agency": head.id}})
    now = vn(10, 9)  # Tuesday after the fixture's week; February, Q4 and 2025 had no cases
    keys = await send_due_summaries(database, POLICY, CAL, Texts(), now, "ioc@example.gov.vn")
    assert sorted(keys) == sorted([f"report:week:20260302:{head.head_email}",
                                   "report:week:20260302:ioc@example.gov.vn"])
    assert await send_due_summaries(database, POLICY, CAL, Texts(), vn(10, 10), "ioc@example.gov.vn") == []
    mails = {m.address: m.message for m in await Store(database).outbox.all(channel="email")}
    agency_mail, ioc_mail = mails[head.head_email], mails["ioc@example.gov.vn"]
    assert agency_mail.context["subject"].startswith("[Báo cáo tuần]") and head.name in agency_mail.context["subject"]
    assert f"{head.name}: tiếp nhận 2, đã xử lý 2 (đúng hạn 1), trễ hạn 1" in agency_mail.text
    assert "Toàn tỉnh: tiếp nhận 6, đã xử lý 4 (đúng hạn 3), trễ hạn 2" in ioc_mail.text
    assert "trung vị 7 giờ, 90% trong 14 giờ hành chính" in ioc_mail.text
    assert "ag_b: tiếp nhận 3, đã xử lý 2 (đúng hạn 2)" in ioc_mail.text and "trung vị 1,5 giờ" in ioc_mail.text
