"""Pick the handling agency of a reflection from its field and commune, per the policy.

Called by the case service after classification (and again when staff change the field or
the location). A decision with `needs_staff=True` leaves the case in `received` for IOC staff.
"""
from __future__ import annotations

from dataclasses import dataclass

from cases.policy import Agency, Policy


@dataclass(frozen=True)
class RoutingDecision:
    agency_id: str | None
    field: str | None
    reason: str  # for the audit log and the staff view
    needs_staff: bool


def route(policy: Policy, field: str | None, commune_code: str | None, confidence: float) -> RoutingDecision:
    """Agency for `field` at `commune_code`: a commune's own authority wins over a province-wide
    one; a location-routed policy never falls back to a province-wide agency."""
    if field is None or field not in policy.fields:
        return _staff(field, f"lĩnh vực chưa xác định ({field or 'không có'})")
    if confidence < policy.routing_min_confidence:
        return _staff(field, f"độ tin cậy phân loại {confidence:.2f} thấp hơn ngưỡng "
                             f"{policy.routing_min_confidence:.2f}")
    handlers = [a for a in policy.agencies if field in a.fields]
    if not handlers:
        return _staff(field, f"không có cơ quan nào được giao lĩnh vực {field}")
    local = [a for a in handlers if a.communes]
    if commune_code is not None:
        covering = [a for a in local if commune_code in a.communes]
        if covering:
            return _decide(covering[0], field, f"theo địa bàn: {commune_code}")
    province_wide = [a for a in handlers if not a.communes]
    if province_wide and policy.routing_by == "field":
        return _decide(province_wide[0], field, f"theo lĩnh vực: {field}")
    if commune_code is None:
        return _staff(field, "chưa xác định được xã/phường của vị trí phản ánh")
    return _staff(field, f"không có cơ quan phụ trách xã/phường {commune_code}")


def _decide(agency: Agency, field: str, reason: str) -> RoutingDecision:
    return RoutingDecision(agency.id, field, f"{reason} → {agency.name}", needs_staff=False)


def _staff(field: str | None, reason: str) -> RoutingDecision:
    return RoutingDecision(None, field, f"cần cán bộ IOC phân công: {reason}", needs_staff=True)
