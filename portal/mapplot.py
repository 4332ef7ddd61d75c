"""The portal's map: published cases as points on a plain SVG plot (no tiles, no script).

`portal.web` calls `plot` with the cases of the current page; the template draws the points
as links to the cases in the list. Works offline and on any screen.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from portal.public import PublicCase

WIDTH, HEIGHT, PAD = 600, 400, 24
MIN_SPAN = 0.01  # degrees: a single case still gets a readable frame


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    code: str


def plot(cases: Sequence[PublicCase]) -> list[Point]:
    """Points in a WIDTH×HEIGHT box, north up, same scale on both axes (equirectangular)."""
    located = [(c.lat, c.lon, c.code) for c in cases if c.lat is not None and c.lon is not None]
    if not located:
        return []
    lats = [lat for lat, _, _ in located]
    lons = [lon for _, lon, _ in located]
    k = math.cos(math.radians(sum(lats) / len(lats)))  # shrink longitudes at this latitude
    span_x = max((max(lons) - min(lons)) * k, MIN_SPAN)
    span_y = max(max(lats) - min(lats), MIN_SPAN)
    scale = min((WIDTH - 2 * PAD) / span_x, (HEIGHT - 2 * PAD) / span_y)
    mid_x, mid_y = (max(lons) + min(lons)) / 2 * k, (max(lats) + min(lats)) / 2
    return [Point(round(WIDTH / 2 + (lon * k - mid_x) * scale, 1),
                  round(HEIGHT / 2 - (lat - mid_y) * scale, 1), code) for lat, lon, code in located]
