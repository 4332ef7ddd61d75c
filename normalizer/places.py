"""The shape of an administrative unit (commune or ward), as the text tools and the domain share it.

`cases/gazetteer.py` loads them from the policy's gazetteer; `normalizer/extract.py` and
`normalizer/understand.py` match addresses in free text against them.
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
