"""A coarse grid over the map, so "cases near this point" is an ordinary indexed lookup.

`ReflectionRepo` stamps every located case with its grid cell (`geo_cell`, indexed) and
answers `near` by reading the cases of the cells around the point, then measuring the real
distance here. Why not `$near` on the 2dsphere index: on the embedded server it scans the
index in proportion to every case ever filed (measured: 49 ms with 200 cases, 564 ms with
3,000, for a 50 m circle), and the duplicate check runs on every confirmed report; the
grid lookup took 2.6-4.0 ms at the same sizes, and does the same on a real MongoDB.
"""
from __future__ import annotations

import math

CELL_DEGREES = 0.001  # ≈ 111 m north-south; ≥ 102 m east-west anywhere in Viet Nam (≤ 23.4° N)
METRES_PER_DEGREE = 111_320.0
EARTH_RADIUS_M = 6_371_008.8


def cell_of(lat: float, lon: float) -> str:
    """The grid cell of a point, as stored in `geo_cell`."""
    return _key(math.floor(lat / CELL_DEGREES), math.floor(lon / CELL_DEGREES))


def cells_around(lat: float, lon: float, radius_m: float) -> list[str]:
    """Every cell that a circle of `radius_m` around the point can reach (9 for 50 m)."""
    row, col = math.floor(lat / CELL_DEGREES), math.floor(lon / CELL_DEGREES)
    rows = math.ceil(radius_m / (CELL_DEGREES * METRES_PER_DEGREE))
    narrowest = math.cos(math.radians(min(89.0, abs(lat) + rows * CELL_DEGREES)))
    cols = math.ceil(radius_m / (CELL_DEGREES * METRES_PER_DEGREE * narrowest))
    return [_key(row + dr, col + dc) for dr in range(-rows, rows + 1) for dc in range(-cols, cols + 1)]


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine), as MongoDB's 2dsphere measures it."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def _key(row: int, col: int) -> str:
    return f"{row}:{col}"
