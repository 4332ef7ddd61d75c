"""Administrative units of a province (after the 2025 two-level reform: province → commune/ward).

Loaded from data files under `policies/gazetteer/`; the normalizer matches addresses in
free text against it, routing picks the agency that covers the matched commune.

The CSVs are exported once from the MIT-licensed `vietnamadminunits` dataset (see
`policies/gazetteer/README.md`); that package is not a runtime dependency. Export with
`python -m cases.gazetteer DATA_DIR "Tỉnh Điện Biên" policies/gazetteer/dien_bien.csv`.
"""
from __future__ import annotations

import csv
import io
import json
import math
import sqlite3
import sys
from pathlib import Path

from normalizer.places import Commune

CSV_COLUMNS = ("code", "name", "province", "lat", "lon", "aliases")
EARTH_RADIUS_KM = 6371.0088


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in km; used by `Gazetteer.nearest` and duplicate detection."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(a))


class Gazetteer:
    """The communes of one deployment; loaded by `load_policy` from the policy's CSV."""

    def __init__(self, communes: list[Commune]) -> None:
        self.communes = communes
        self._by_code = {c.code: c for c in communes}

    @classmethod
    def load(cls, path: str | Path) -> Gazetteer:
        """Read a gazetteer CSV (lines starting with '#' are comments)."""
        text = Path(path).read_text(encoding="utf-8")
        rows = csv.DictReader(line for line in io.StringIO(text) if not line.startswith("#"))
        if tuple(rows.fieldnames or ()) != CSV_COLUMNS:
            raise ValueError(f"{path}: expected columns {','.join(CSV_COLUMNS)}")
        return cls([_commune_from_row(row) for row in rows])

    def by_code(self, code: str) -> Commune | None:
        """The commune with this official code, or None."""
        return self._by_code.get(code)

    def nearest(self, lat: float, lon: float, max_km: float = 20.0) -> Commune | None:
        """Commune whose centre is closest to the point, if within `max_km`.

        Called when a citizen shares a location pin; centres are approximate, so this is a
        best guess that staff can correct.
        """
        best, best_km = None, max_km
        for c in self.communes:
            if c.lat is None or c.lon is None:
                continue
            km = haversine_km(lat, lon, c.lat, c.lon)
            if km <= best_km:
                best, best_km = c, km
        return best


def _commune_from_row(row: dict[str, str]) -> Commune:
    aliases = tuple(a for a in row["aliases"].split("|") if a)
    lat = float(row["lat"]) if row["lat"] else None
    lon = float(row["lon"]) if row["lon"] else None
    return Commune(row["code"], row["name"], row["province"], lat, lon, aliases)


def export_province(data_dir: Path, province: str, out: Path) -> int:
    """Write one province's communes from the vietnamadminunits data folder to a CSV.

    Called by hand (CLI below) when the dataset is updated; returns the number of communes.
    """
    con = sqlite3.connect(data_dir / "dataset.db")
    rows = con.execute(
        "SELECT wardCode, ward, province, wardLat, wardLon, provinceKey, wardKey "
        "FROM admin_units WHERE province = ? ORDER BY wardCode", (province,)).fetchall()
    if not rows:
        raise ValueError(f"no communes for province {province!r}")
    aliases = _legacy_aliases(con, data_dir / "converter_2025.json", rows[0][5])
    buf = io.StringIO()
    buf.write("# Source: vietnamadminunits 1.0.4 dataset (MIT License, (c) 2025 Tran Ngoc Minh Hieu)."
              " Coordinates are approximate centres.\n")
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for code, name, prov, lat, lon, _, key in rows:
        old = [a for a in aliases.get(key, []) if a != name]
        writer.writerow([code, name, prov, lat, lon, "|".join(old)])
    out.write_text(buf.getvalue(), encoding="utf-8")
    return len(rows)


def _legacy_aliases(con: sqlite3.Connection, converter: Path, province_key: str) -> dict[str, list[str]]:
    """New ward key → pre-2025 ward and district names that were merged into it."""
    legacy = {f"{p}_{d}_{w}": (ward, district) for p, d, w, ward, district in con.execute(
        "SELECT provinceKey, districtKey, wardKey, ward, district FROM admin_units_legacy")}
    data = json.loads(converter.read_text(encoding="utf-8"))
    merged: dict[str, list[str]] = {
        k: list(v) for k, v in data["DICT_PROVINCE_WARD_NO_DIVIDED"][province_key].items()}
    for old_key, parts in data["DICT_PROVINCE_WARD_DIVIDED"].get(province_key, {}).items():
        for part in parts:
            merged.setdefault(part["newWardKey"], []).append(old_key)
    result: dict[str, list[str]] = {}
    for new_key, old_keys in merged.items():
        names: list[str] = []
        for ward, district in (legacy[k] for k in old_keys if k in legacy):
            names.extend(n for n in (ward, district) if n and n not in names)
        result[new_key] = names
    return result


if __name__ == "__main__":
    count = export_province(Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]))
    print(f"{count} communes written to {sys.argv[3]}")
