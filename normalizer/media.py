"""Turns the attachments a channel referenced into checked photos stored in GridFS.

Called by the pipeline for every inbound message before the bot sees it: the bot only
ever gets images that Pillow could open, within the size and pixel limits.
"""
from __future__ import annotations

import io
import logging
import warnings
from dataclasses import dataclass
from typing import Protocol

from PIL import Image, UnidentifiedImageError

from normalizer.messages import GeoPoint, Inbound, Photo

log = logging.getLogger(__name__)

_FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "GIF": "image/gif"}


@dataclass(frozen=True)
class MediaLimits:
    max_bytes: int = 10_000_000
    max_pixels: int = 40_000_000
    max_count: int = 5


class MediaRejected(ValueError):
    """The reason code goes to the bot, which explains it to the citizen."""


def inspect_image(data: bytes, limits: MediaLimits) -> tuple[str, int, int, GeoPoint | None]:
    """Return (content type, width, height, EXIF GPS) or raise MediaRejected."""
    if len(data) > limits.max_bytes:
        raise MediaRejected("too_large")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                fmt, (width, height) = img.format, img.size
                if width * height > limits.max_pixels:
                    raise MediaRejected("too_many_pixels")
                img.verify()
            with Image.open(io.BytesIO(data)) as img:
                gps = _exif_gps(img)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError,
            Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        if isinstance(exc, MediaRejected):
            raise
        raise MediaRejected("not_an_image") from None
    if fmt not in _FORMATS:
        raise MediaRejected("not_an_image")
    return _FORMATS[fmt], width, height, gps


def _exif_gps(img: Image.Image) -> GeoPoint | None:
    try:
        gps = img.getexif().get_ifd(0x8825)
        lat, lon = _dms(gps[2], gps[1]), _dms(gps[4], gps[3])
        return GeoPoint(lat=lat, lon=lon)
    except (KeyError, TypeError, ValueError, ZeroDivisionError, AttributeError):
        return None


def _dms(values: tuple[float, float, float], ref: str) -> float:
    deg = float(values[0]) + float(values[1]) / 60 + float(values[2]) / 3600
    return -deg if ref in ("S", "W") else deg


class MediaSaver(Protocol):
    """Where `resolve_media` keeps a photo (`store.media.MediaStore`); returns its file id."""

    async def save(self, data: bytes, *, content_type: str, filename: str,
                   metadata: dict[str, object] | None = None) -> str: ...


async def resolve_media(inbound: Inbound, fetch, store: MediaSaver, limits: MediaLimits,
                        already: int = 0) -> Inbound:
    """Fetch each `MediaRef` through the channel, keep the real images, note the rest;
    `already` photos are in the report being written (the pipeline counts them)."""
    photos, rejected = list(inbound.photos), list(inbound.rejected_media)
    for ref in inbound.media:
        if already + len(photos) >= limits.max_count:
            rejected.append("too_many")
            continue
        if ref.size is not None and ref.size > limits.max_bytes:
            rejected.append("too_large")
            continue
        try:
            data = await fetch(ref)
            ctype, width, height, gps = inspect_image(data, limits)
        except MediaRejected as exc:
            rejected.append(str(exc))
            continue
        file_id = await store.save(data, content_type=ctype, filename=f"{inbound.channel}-{inbound.message_id}",
                                   metadata={"channel": inbound.channel, "sender": inbound.sender})
        photos.append(Photo(file_id=file_id, content_type=ctype, size=len(data),
                            width=width, height=height, location=gps))
    return inbound.model_copy(update={"photos": photos, "rejected_media": rejected, "media": []})
