"""A `cases.reports.Report` as files: a formatted XLSX workbook, CSV files and PNG charts.

`run_bots.py report` calls `export_report` to write everything into a directory; the
scheduler's summary mail (`cases.report_mail`) attaches nothing but reuses `load_labels`.
Sheet names, headers and chart titles come from `templates/vi/report_labels.yaml`.
"""
from __future__ import annotations

import asyncio
import csv
from datetime import date
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no screen: render to files only
import matplotlib.pyplot as plt  # noqa: E402
import yaml  # noqa: E402
from openpyxl import Workbook  # noqa: E402
from openpyxl.styles import Alignment, Font, PatternFill  # noqa: E402
from openpyxl.utils import get_column_letter  # noqa: E402

from cases.calendar import WorkingCalendar  # noqa: E402
from cases.policy import Policy, load_policy  # noqa: E402
from cases.reports import Period, Report, build_report, local_range, policy_names  # noqa: E402
from settings import Settings  # noqa: E402
from store.database import connect  # noqa: E402
from store.reports import BREAKDOWNS, COUNTS, Row  # noqa: E402

LABELS_FILE = Path(__file__).resolve().parent.parent / "templates" / "vi" / "report_labels.yaml"
COLUMNS = ("key", "name", *COUNTS, "on_time_rate", "median_hours", "p90_hours")
SHEETS = ("total", *BREAKDOWNS)
_HEADER_FILL = PatternFill("solid", fgColor="1F4E79")


def load_labels(path: Path = LABELS_FILE) -> dict[str, Any]:
    """The report wording (sheet names, headers, chart titles)."""
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def export_report(report: Report, out_dir: Path, labels: dict[str, Any] | None = None) -> list[Path]:
    """Write report.xlsx, one CSV per sheet and two PNG charts into `out_dir`; return the paths."""
    labels = labels or load_labels()
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [write_xlsx(report, out_dir / "report.xlsx", labels)]
    for sheet in SHEETS:
        paths.append(write_csv(_rows(report, sheet), out_dir / f"{sheet}.csv", labels))
    paths.append(chart_weekly_by_field(report, out_dir / "weekly_by_field.png", labels))
    paths.append(chart_on_time_by_agency(report, out_dir / "on_time_by_agency.png", labels))
    return paths


def _rows(report: Report, sheet: str) -> list[Row]:
    return [report.total] if sheet == "total" else report.by.get(sheet, [])


def _values(row: Row, labels: dict[str, Any]) -> list[Any]:
    rate = row.on_time_rate
    name = labels["channels"].get(row.name, row.name) if row.name else labels["blank"]
    return [row.key, name, *(getattr(row, c) for c in COUNTS),
            None if rate is None else round(rate, 4), row.median_hours, row.p90_hours]


def write_xlsx(report: Report, path: Path, labels: dict[str, Any]) -> Path:
    """One sheet per breakdown, a title line, bold coloured headers, frozen panes, % format."""
    book = Workbook()
    assert book.active is not None  # a new workbook has one default sheet
    book.remove(book.active)
    title = labels["title"].format(period=report.period.label)
    for sheet in SHEETS:
        ws = book.create_sheet(labels["sheets"][sheet])
        ws.append([title])
        ws["A1"].font = Font(bold=True, size=13)
        ws.append([labels["columns"][c] for c in COLUMNS])
        for cell in ws[2]:
            cell.font = Font(bold=True, color="FFFFFF")
            cell.fill = _HEADER_FILL
            cell.alignment = Alignment(wrap_text=True, vertical="center")
        for row in _rows(report, sheet):
            ws.append(_values(row, labels))
        rate_col = get_column_letter(COLUMNS.index("on_time_rate") + 1)
        for cell in ws[rate_col][2:]:
            cell.number_format = "0.0%"
        for i, _ in enumerate(COLUMNS, start=1):
            ws.column_dimensions[get_column_letter(i)].width = 28 if i == 2 else 14
        ws.freeze_panes = "C3"
    book.save(path)
    return path


def write_csv(rows: list[Row], path: Path, labels: dict[str, Any]) -> Path:
    """UTF-8 with BOM so that Excel shows the Vietnamese headers correctly."""
    with path.open("w", encoding="utf-8-sig", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([labels["columns"][c] for c in COLUMNS])
        for row in rows:
            writer.writerow(["" if v is None else v for v in _values(row, labels)])
    return path


def chart_weekly_by_field(report: Report, path: Path, labels: dict[str, Any]) -> Path:
    """Stacked bars: cases received per week, one colour per field."""
    weeks = sorted({w for w, _, _ in report.weekly_by_field})
    fields = sorted({f for _, f, _ in report.weekly_by_field})
    names = {r.key: r.name for r in report.by.get("field", [])}
    counts = {(w, f): n for w, f, n in report.weekly_by_field}
    fig, ax = plt.subplots(figsize=(9, 4.5))
    bottom = [0] * len(weeks)
    x = [w.strftime("%d/%m") for w in weeks]
    for f in fields:
        heights = [counts.get((w, f), 0) for w in weeks]
        ax.bar(x, heights, bottom=bottom, label=names.get(f, f))
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    charts = labels["charts"]
    ax.set(title=charts["weekly_by_field"], xlabel=charts["week"], ylabel=charts["cases"])
    if fields:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1, 1))
    return _save(fig, path)


def chart_on_time_by_agency(report: Report, path: Path, labels: dict[str, Any]) -> Path:
    """Horizontal bars: share of handled cases answered on time, per agency."""
    rows = [r for r in report.by.get("agency", []) if r.handled]
    fig, ax = plt.subplots(figsize=(9, max(2.5, 0.45 * len(rows) + 1.5)))
    ax.barh([r.name or labels["blank"] for r in rows], [100 * (r.on_time_rate or 0) for r in rows],
            color="#2e7d32")
    charts = labels["charts"]
    ax.set(title=charts["on_time_by_agency"], xlabel=charts["rate"], xlim=(0, 100))
    return _save(fig, path)


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def report_command(settings: Settings, first: str, last: str, out_dir: Path) -> int:
    """`run_bots.py report --from D --to D --out DIR`: dates are local days, both included.

    Uses MONGODB_URI, else the running gateway's embedded server, else starts one on its data.
    """
    from store.embedded import EmbeddedServer, _port_taken

    period = local_range(date.fromisoformat(first), date.fromisoformat(last))
    policy = load_policy(settings.policy_file)
    server = None
    uri = settings.mongodb_uri
    if not uri:
        server = EmbeddedServer(settings.embedded_db_path, settings.embedded_db_port)
        if _port_taken(settings.embedded_db_port):
            uri, server = server.uri, None
        else:
            server.start()
            uri = server.uri
    try:
        paths = asyncio.run(_report(uri, settings, policy, period, out_dir))
    finally:
        if server is not None:
            server.stop()
    print("\n".join(str(p) for p in paths))
    return 0


async def _report(uri: str, settings: Settings, policy: Policy, period: Period, out_dir: Path) -> list[Path]:
    database = await connect(uri, settings.mongodb_database, settings.mongodb_timeout_ms)
    try:
        report = await build_report(database, period, WorkingCalendar.from_policy(policy),
                                    policy_names(policy))
    finally:
        await database.close()
    return export_report(report, out_dir)
