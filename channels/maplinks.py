"""Coordinates out of a Google Maps or OpenStreetMap link a citizen pastes into a chat.

Messenger no longer shares locations, so the Facebook channel (and Zalo, for citizens who
paste links there too) call `point_from_links` on the message text in `parse`. Short links
(maps.app.goo.gl) carry no coordinates and would need a network call: they stay text,
for the normalizer's address extraction.
"""
from __future__ import annotations

import re
from urllib.parse import parse_qs, unquote, urlsplit

from normalizer.messages import GeoPoint

_URL = re.compile(r"https?://[^\s<>\"]+", re.IGNORECASE)
_NUM = r"(-?\d{1,3}(?:\.\d+)?)"
_PAIR = re.compile(rf"^\s*{_NUM}\s*,\s*{_NUM}\s*$")
_GOOGLE_PIN = re.compile(rf"!3d{_NUM}!4d{_NUM}")  # the place itself, in /data=…
_GOOGLE_VIEW = re.compile(rf"/@{_NUM},{_NUM}")  # the map's centre
_OSM_HASH = re.compile(rf"map=\d+(?:\.\d+)?/{_NUM}/{_NUM}")
_GOOGLE_QUERY_KEYS = ("q", "query", "ll", "destination", "center")


def point_from_links(text: str) -> GeoPoint | None:
    """The first map link's point in `text`, or None."""
    for url in _URL.findall(text or ""):
        point = _point(url.rstrip(".,;)"))
        if point is not None:
            return point
    return None


def _point(url: str) -> GeoPoint | None:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if "openstreetmap.org" in host or host == "osm.org":
        return _osm(parts.query, parts.fragment)
    if "google." in host and ("maps" in host or parts.path.startswith("/maps")):
        return _google(unquote(parts.path), parts.query)
    return None


def _google(path: str, query: str) -> GeoPoint | None:
    for found in (_GOOGLE_PIN.search(path), _GOOGLE_VIEW.search(path)):
        if found:
            return _geo(found.group(1), found.group(2))
    params = parse_qs(query)
    for key in _GOOGLE_QUERY_KEYS:
        for value in params.get(key, []):
            pair = _PAIR.match(value)
            if pair:
                return _geo(pair.group(1), pair.group(2))
    return None


def _osm(query: str, fragment: str) -> GeoPoint | None:
    params = parse_qs(query)
    if "mlat" in params and "mlon" in params:
        return _geo(params["mlat"][0], params["mlon"][0])
    found = _OSM_HASH.search(fragment) or _OSM_HASH.search(query)
    return _geo(found.group(1), found.group(2)) if found else None


def _geo(lat: str, lon: str) -> GeoPoint | None:
    try:
        return GeoPoint(lat=float(lat), lon=float(lon))
    except ValueError:  # pydantic's ValidationError is a ValueError: out-of-range numbers
        return None
