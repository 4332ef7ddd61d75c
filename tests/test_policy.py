"""Policy files: the shipped ones load, bad ones fail with a message naming file and key."""
import shutil
from datetime import date
from pathlib import Path

import pytest
import yaml

from cases.gazetteer import Gazetteer
from cases.policy import FIELD_CODES, PolicyError, load_policy
from cases.policy_check import main

POLICIES = Path(__file__).resolve().parent.parent / "policies"
SHIPPED = sorted(POLICIES.glob("*.yaml"))


def test_three_policies_are_shipped():
    assert {p.name for p in SHIPPED} == {"quang_nam.yaml", "binh_phuoc_1022.yaml", "dien_bien.yaml"}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_policy_loads(path):
    policy = load_policy(path)
    assert tuple(policy.fields) == FIELD_CODES
    for code, words in policy.field_keywords().items():
        if code != "other":
            assert 10 <= len(words) <= 60 and len(set(words)) == len(words), code
    for agency in policy.agencies:
        assert agency.focal_email.endswith("@example.gov.vn")
        assert agency.head_email.endswith("@example.gov.vn")
    assert policy.duplicate.radius_m == 50
    assert len(policy.gazetteer.communes) > 40


def test_deadlines_follow_the_regulations():
    qn = load_policy(POLICIES / "quang_nam.yaml")
    assert [qn.deadline_hours(s) for s in ("classify", "forward", "handle", "approve", "publish")] == [2, 2, 48, 8, 4]
    bp = load_policy(POLICIES / "binh_phuoc_1022.yaml")
    assert (bp.deadline_hours("focal_answer"), bp.deadline_hours("head_answer")) == (8, 48)
    assert [e.recipient for e in bp.escalation] == ["focal", "head"]
    db = load_policy(POLICIES / "dien_bien.yaml")
    assert (db.deadline_hours("handle"), db.deadline_hours("co_handling")) == (48, 16)
    assert db.deadline_hours("progress_notice") == 48


def test_agency_lookup():
    qn = load_policy(POLICIES / "quang_nam.yaml")
    assert qn.agency("so_yte").name == "Sở Y tế"
    with pytest.raises(KeyError):
        qn.agency("nope")


# --- invalid files ----------------------------------------------------------------------------
@pytest.fixture
def write_policy(tmp_path):
    """Copy Quảng Nam to tmp_path after `mutate(raw)`; returns the new file's path."""
    shutil.copytree(POLICIES / "gazetteer", tmp_path / "gazetteer")

    def write(mutate) -> Path:
        raw = yaml.safe_load((POLICIES / "quang_nam.yaml").read_text(encoding="utf-8"))
        mutate(raw)
        path = tmp_path / "bad.yaml"
        path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
        return path
    return write


def error_of(path: Path) -> str:
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    message = str(info.value)
    assert message.startswith(str(path)) and "\n" not in message
    return message


def test_copy_of_shipped_policy_is_valid(write_policy):
    assert load_policy(write_policy(lambda raw: None)).province == "Quảng Nam"


def test_unknown_field_code_in_agency(write_policy):
    path = write_policy(lambda raw: raw["agencies"][0]["fields"].append("roads"))
    assert "agencies.0.fields: unknown field code 'roads'" in error_of(path)


def test_overlapping_working_periods(write_policy):
    def mutate(raw):
        raw["calendar"]["working_periods"][1]["start"] = "10:30"
    assert "calendar: working periods overlap: 07:00–11:00 and 10:30–17:00" in error_of(write_policy(mutate))


@pytest.mark.parametrize("value", ["7h00", 420, "25:00"])
def test_bad_time_format(write_policy, value):
    def mutate(raw):
        raw["calendar"]["working_periods"][0]["start"] = value
    message = error_of(write_policy(mutate))
    assert "calendar.working_periods.0.start: bad time format" in message


def test_unquoted_time_in_yaml_is_explained(write_policy):
    path = write_policy(lambda raw: None)  # copies the gazetteer next to it
    text = (POLICIES / "quang_nam.yaml").read_text(encoding="utf-8")
    path.write_text(text.replace('{start: "07:00"', "{start: 7:00"), encoding="utf-8")  # YAML reads 7:00 as 420
    assert 'bad time format 420: write "HH:MM" in quotes' in error_of(path)


def test_impossible_fixed_holiday(write_policy):
    path = write_policy(lambda raw: raw["calendar"]["fixed_holidays"].append({"month": 2, "day": 30, "name": "x"}))
    assert "calendar.fixed_holidays.5: no such day: 30/2" in error_of(path)


def test_missing_deadline_step(write_policy):
    path = write_policy(lambda raw: raw["deadlines"].pop("handle"))
    assert "deadlines: missing handle" in error_of(path)


def test_deadline_needs_one_unit(write_policy):
    path = write_policy(lambda raw: raw["deadlines"].update(handle={"hours": 1, "days": 1}))
    assert "deadlines.handle: give exactly one of 'hours' or 'days'" in error_of(path)


def test_unknown_field_code_in_fields(write_policy):
    path = write_policy(lambda raw: raw["fields"].update(roads=raw["fields"]["transport"]))
    assert "fields: unknown code 'roads'" in error_of(path)


def test_unknown_commune(write_policy):
    path = write_policy(lambda raw: raw["agencies"][0].update(communes=["99999"]))
    assert "agencies.0.communes: commune '99999' is not in gazetteer/da_nang.csv" in error_of(path)


def test_escalation_step_must_exist(write_policy):
    path = write_policy(lambda raw: raw["escalation"].append({"step": "nap", "recipient": "head"}))
    assert "escalation.2.step: no deadline named 'nap'" in error_of(path)


def test_unknown_top_level_key(write_policy):
    assert "deadline: Extra inputs are not permitted" in error_of(write_policy(lambda raw: raw.update(deadline=1)))


def test_missing_gazetteer(write_policy):
    path = write_policy(lambda raw: raw.update(gazetteer_file="gazetteer/none.csv"))
    assert "gazetteer_file: cannot load" in error_of(path)


def test_not_yaml(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("province: [unclosed\n", encoding="utf-8")
    assert "cannot read" in error_of(path)


# --- gazetteer --------------------------------------------------------------------------------
def test_gazetteer_lookup():
    gaz = Gazetteer.load(POLICIES / "gazetteer" / "dien_bien.csv")
    commune = gaz.by_code("03127")
    assert commune is not None and commune.lat is not None and commune.lon is not None
    assert commune.name == "Phường Điện Biên Phủ" and "Phường Him Lam" in commune.aliases
    assert gaz.nearest(commune.lat + 0.001, commune.lon) == commune
    assert gaz.nearest(10.77, 106.70) is None  # Hồ Chí Minh City is far away
    assert gaz.by_code("nope") is None


def test_merged_provinces_keep_old_names_as_aliases():
    da_nang = Gazetteer.load(POLICIES / "gazetteer" / "da_nang.csv")
    assert any("Thành phố Tam Kỳ" in c.aliases for c in da_nang.communes)
    dong_nai = Gazetteer.load(POLICIES / "gazetteer" / "dong_nai.csv")
    assert any("Thành phố Đồng Xoài" in c.aliases for c in dong_nai.communes)


# --- policy check -----------------------------------------------------------------------------
def test_policy_check_ok(capsys):
    assert main(POLICIES / "quang_nam.yaml", today=date(2026, 4, 22)) == 0
    out = capsys.readouterr().out
    assert "Quảng Nam" in out and "so_yte: Sở Y tế" in out
    assert "Thứ Hai 27/04/2026: Nghỉ bù Giỗ Tổ Hùng Vương" in out
    assert "Thứ Ba 28/04/2026: 07:00–11:00, 13:00–17:00" in out
    assert "Thứ Năm 30/04/2026: Ngày Chiến thắng" in out


def test_policy_check_invalid(write_policy, capsys):
    path = write_policy(lambda raw: raw["deadlines"].pop("publish"))
    assert main(path) == 2
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "deadlines: missing publish" in out[0]
