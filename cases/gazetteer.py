"""Administrative units of a province (after the 2025 two-level reform: province → commune/ward).

Loaded from data files under `policies/gazetteer/`; the normalizer matches addresses in
free text against it, routing picks the agency that covers the matched commune.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Commune:
    code: str  # official code of the commune/ward
    name: str  # with its kind, as written officially: "Phường Tân Phú", "Xã Tân Lập"
    province: str  # "Tỉnh Đồng Nai"
    lat: float | None = None  # approximate centre
    lon: float | None = None
    aliases: tuple[str, ...] = field(default=())  # former names, pre-2025 district names…
