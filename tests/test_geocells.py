"""Cases near a point through the grid cells (`store.geocells`): the duplicate check's lookup."""
from __future__ import annotations

import math
from typing import Any

import pytest

from store.database import ensure_indexes
from store.geocells import CELL_DEGREES, METRES_PER_DEGREE, cell_of, cells_around, distance_m
from store.models import Place, Reflection
from store.repos import Store

EDGE = 16 * 1000 * CELL_DEGREES  # a cell border: 16.000° N
LON = 108.2205


def case(code: str, lat: float, lon: float, **fields: Any) -> Reflection:
    return Reflection(code=code, channel="telegram", sender="1", content="ổ gà", field="transport",
                      location=Place(lat=lat, lon=lon), **fields)


@pytest.mark.parametrize("metres", [-49.0, -1.0, 0.0, 1.0, 49.0])
async def test_a_case_across_a_cell_border_is_found(database, metres):
    """The border runs between the two points: the neighbouring cell is searched too."""
    store = Store(database)
    await store.reflections.insert(case("PA-2026-000001", EDGE + metres / METRES_PER_DEGREE, LON))
    found = await store.reflections.near(LON, EDGE - 0.5 / METRES_PER_DEGREE, 50, {})
    assert [r.code for r in found] == ["PA-2026-000001"]


async def test_east_west_neighbours_count_with_the_narrower_degree(database):
    """At 23° N a degree of longitude is 102 km, not 111: 49 m east is still within 50 m."""
    store = Store(database)
    lat = 23.3
    metres_per_lon_degree = METRES_PER_DEGREE * math.cos(math.radians(lat))
    await store.reflections.insert(case("PA-2026-000002", lat, 105.0 + 49 / metres_per_lon_degree))
    await store.reflections.insert(case("PA-2026-000003", lat, 105.0 + 52 / metres_per_lon_degree))
    found = await store.reflections.near(105.0, lat, 50, {})
    assert [r.code for r in found] == ["PA-2026-000002"]


async def test_nearest_first_within_a_radius_wider_than_a_cell(database):
    store = Store(database)
    for n, metres in enumerate([450, 90, 260, 520]):
        await store.reflections.insert(case(f"PA-2026-00010{n}", 16.05 + metres / METRES_PER_DEGREE, LON))
    found = await store.reflections.near(LON, 16.05, 500, {})
    assert [r.code for r in found] == ["PA-2026-000101", "PA-2026-000102", "PA-2026-000100"]


async def test_the_query_still_filters_and_cannot_be_injected(database):
    store = Store(database)
    await store.reflections.insert(case("PA-2026-000201", 16.05, LON, status="closed"))
    assert await store.reflections.near(LON, 16.05, 50, {"status": "received"}) == []
    with pytest.raises(TypeError):  # a coordinate must be a number: no operator reaches the query
        await store.reflections.near({"$gt": ""}, 16.05, 50, {})  # type: ignore[arg-type]


async def test_cases_filed_before_the_grid_get_their_cell_at_start(database):
    await database.db.reflections.insert_one({"code": "PA-2025-000001", "geo": {
        "type": "Point", "coordinates": [LON, 16.05]}})
    await ensure_indexes(database.db)
    doc = await database.db.reflections.find_one({"code": "PA-2025-000001"})
    assert doc["geo_cell"] == cell_of(16.05, LON)


def test_cells_around_cover_the_circle_and_distance_is_haversine():
    assert len(cells_around(16.05, LON, 50)) == 9
    assert cell_of(16.05, LON) in cells_around(16.05, LON, 50)
    assert len(cells_around(16.05, LON, 500)) == 11 * 11
    assert distance_m(16.0, 108.0, 16.0, 108.0) == 0.0
    assert distance_m(16.0, 108.0, 17.0, 108.0) == pytest.approx(111_195, rel=1e-3)  # one degree of latitude
