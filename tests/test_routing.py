"""Routing per shipped policy: by field (Quảng Nam, Bình Phước) and by location (Điện Biên)."""
from pathlib import Path

import pytest

from cases.policy import load_policy
from cases.routing import route

POLICIES = Path(__file__).resolve().parent.parent / "policies"
QN = load_policy(POLICIES / "quang_nam.yaml")
BP = load_policy(POLICIES / "binh_phuoc_1022.yaml")
DB = load_policy(POLICIES / "dien_bien.yaml")
HAI_VAN = "20194"  # Phường Hải Vân, Đà Nẵng
DONG_XOAI = "25210"  # Phường Đồng Xoài, Đồng Nai
DIEN_BIEN_PHU = "03127"  # Phường Điện Biên Phủ


@pytest.mark.parametrize("field, agency", [
    ("telecom", "so_khcn"), ("science", "so_khcn"), ("agriculture", "so_nnmt"),
    ("water_resources", "so_nnmt"), ("health", "so_yte"), ("tourism", "so_vhttdl"),
    ("transport", "so_xay_dung"), ("electricity", "so_cong_thuong"),
])
def test_quang_nam_routes_by_field_per_phu_luc_1(field, agency):
    decision = route(QN, field, None, 0.9)
    assert (decision.agency_id, decision.field, decision.needs_staff) == (agency, field, False)
    assert route(QN, field, HAI_VAN, 0.9).agency_id == agency  # the commune does not matter


@pytest.mark.parametrize("field", ["environment", "urban_order"])
def test_quang_nam_environment_goes_to_the_commune(field):
    decision = route(QN, field, HAI_VAN, 0.9)
    assert decision.agency_id == f"ubnd_{HAI_VAN}" and not decision.needs_staff
    assert "UBND Phường Hải Vân" in decision.reason
    assert QN.agency(decision.agency_id).focal_email == f"ubnd-{HAI_VAN}@example.gov.vn"


def test_commune_level_field_without_commune_waits_for_staff():
    decision = route(QN, "environment", None, 0.9)
    assert decision.needs_staff and decision.agency_id is None
    assert "xã/phường" in decision.reason


def test_other_field_has_no_agency_in_quang_nam():
    assert route(QN, "other", HAI_VAN, 0.9).needs_staff


@pytest.mark.parametrize("field", [None, "roads"])
def test_unknown_field_waits_for_staff(field):
    decision = route(QN, field, HAI_VAN, 0.9)
    assert decision.needs_staff and decision.agency_id is None


def test_low_confidence_waits_for_staff():
    threshold = QN.routing_min_confidence
    assert route(QN, "health", None, threshold - 0.01).needs_staff
    assert not route(QN, "health", None, threshold).needs_staff


def test_binh_phuoc():
    assert route(BP, "electricity", None, 0.9).agency_id == "so_cong_thuong"
    assert route(BP, "urban_order", DONG_XOAI, 0.9).agency_id == f"ubnd_{DONG_XOAI}"


@pytest.mark.parametrize("field", ["transport", "health", "environment", "other"])
def test_dien_bien_routes_by_location(field):
    decision = route(DB, field, DIEN_BIEN_PHU, 0.9)
    assert decision.agency_id == f"ubnd_{DIEN_BIEN_PHU}" and not decision.needs_staff


def test_dien_bien_without_commune_never_falls_back_to_a_department():
    decision = route(DB, "transport", None, 0.9)
    assert decision.needs_staff and decision.agency_id is None


def test_dien_bien_commune_from_a_location_pin():
    commune = DB.gazetteer.nearest(21.385, 103.02)  # near the centre of Điện Biên Phủ
    assert commune is not None
    decision = route(DB, "environment", commune.code, 0.9)
    assert decision.agency_id == f"ubnd_{commune.code}"


def test_commune_outside_the_gazetteer_waits_for_staff():
    assert route(DB, "health", "00000", 0.9).needs_staff
