"""Zalo Official Account transport: signed webhooks in, customer-service messages out.

The gateway builds one `ZaloChannel` from settings, calls `bind(database)` (token pair and
reply windows live in the database), then `start(sink)`; `routes()` gives `channels.webapp`
the webhook endpoint. Each request's `X-ZEvent-Signature: mac=<hex>` must equal
SHA-256(app id + raw body + the body's `timestamp` + OA secret key). Zalo redelivers a
failed delivery (+30 s, +5.5, +20.5, +50.5, +110 min) with its original timestamp, so a
signed timestamp is accepted for `redelivery_seconds` (ZALO_REDELIVERY_SECONDS, 3 h) and
no further ahead than a small clock skew; a replay inside that window is harmless, the
event id being unique in the inbound store (kept for good). Citizen events are stored
through the sink and their time noted as the citizen's reply window; the pipeline calls
`parse` and `fetch_media`, the outbox calls `send`.

Zalo lets an OA answer (CS messages) only after a citizen's recent message: none after
7 days, a quota before; `send` raises `WindowClosed` then, for the agency loop's fallback.
Buttons are "hidden query" buttons: the press comes back as a `user_send_text` whose text
is `ACTION_PREFIX + action`, which `parse` turns into `Inbound.action`.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from starlette.routing import Route

from channels.base import Channel, EventSink, PermanentFailure, RetryLater, WindowClosed
from channels.http_media import download_capped
from channels.maplinks import point_from_links
from channels.text_split import split_text
from channels.webapp import NotReady, WebhookRejected, WebhookRoute
from channels.zalo_client import ZaloClient, ZaloError, ZaloTokens
from normalizer.messages import GeoPoint, Inbound, MediaRef, Outbound, utcnow
from normalizer.texts import Texts
from store.database import Database
from store.repos import Store
from store.tokens import TokenStore
from store.windows import ReplyWindows

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "x-zevent-signature"
ACTION_PREFIX = "#ioc:"
MAX_TEXT = 2000  # characters in one CS text message
MAX_BUTTONS = 5
WINDOW = timedelta(days=7)  # no CS message at all after this long a silence
RATE_LIMITED = -32
WINDOW_ERRORS = {-230, -305}  # no interaction within 7 days / out of the CS quota
CITIZEN_EVENTS = ("user_send_", "follow")
REDELIVERY_SECONDS = 3 * 3600.0  # Zalo's last retry comes ~110 min after the first attempt
MAX_SKEW_SECONDS = 300.0  # how far ahead of our clock a timestamp may be
MediaLoader = Callable[[str], Awaitable[bytes]]


class ZaloChannel(Channel):
    """One OA; citizens only (IOC staff work in the Telegram group)."""

    name = "zalo"

    def __init__(self, *, app_id: str, app_secret: str, oa_secret_key: str, refresh_token: str,
                 media_loader: MediaLoader, access_token: str | None = None,
                 api_url: str = "https://openapi.zalo.me",
                 oauth_url: str = "https://oauth.zaloapp.com", webhook_path: str = "/zalo/webhook",
                 max_file_bytes: int = 10_000_000, redelivery_seconds: float = REDELIVERY_SECONDS,
                 max_skew_seconds: float = MAX_SKEW_SECONDS,
                 staff_alert: tuple[str, str] | None = None,
                 clock: Callable[[], datetime] = utcnow, timeout: float = 30.0) -> None:
        """Called by the registry with settings (tests: with the fake API's URLs).

        `staff_alert` = (channel, address) of the IOC staff chat told when the token
        refresh fails; without it the failure is logged (critical) and kept on the token
        document only. A signed delivery is accepted from `redelivery_seconds` ago up to
        `max_skew_seconds` ahead of our clock."""
        self._app_id, self._oa_secret = app_id, oa_secret_key
        self._seed = (refresh_token, access_token)
        self._media_loader, self._max_file_bytes = media_loader, max_file_bytes
        self._path, self._skew, self._max_age = webhook_path, max_skew_seconds, redelivery_seconds
        self._staff_alert, self._clock = staff_alert, clock
        self._http = httpx.AsyncClient(timeout=timeout)
        self._tokens = ZaloTokens(self._http, app_id=app_id, app_secret=app_secret,
                                  oauth_url=oauth_url, on_failure=self._alert, clock=clock)
        self._client = ZaloClient(self._http, self._tokens, api_url)
        self._database: Database | None = None
        self._windows: ReplyWindows | None = None
        self._sink: EventSink | None = None

    def bind(self, database: Database) -> None:
        """Called by the gateway before `start`: where tokens and reply windows are kept."""
        self._database = database
        self._windows = ReplyWindows(database)
        self._tokens.bind(TokenStore(database, f"zalo:{self._app_id}"))

    async def start(self, sink: EventSink) -> None:
        """Called once by the gateway: store the configured tokens unless already rotated."""
        await self._tokens.seed(*self._seed)
        self._sink = sink

    async def stop(self) -> None:
        await self._http.aclose()

    def routes(self) -> list[Route]:
        """Called by the gateway when building the web app."""
        return [WebhookRoute(self._path, self._verify, self._events, self._receive).route()]

    # ---- receiving ---------------------------------------------------------------------
    def _verify(self, headers: Mapping[str, str], body: bytes) -> None:
        given = headers.get(SIGNATURE_HEADER, "").strip()
        if not given:
            raise WebhookRejected("missing X-ZEvent-Signature", status=401)
        mac = given.removeprefix("mac=").strip().lower()
        try:
            stamp = str(json.loads(body)["timestamp"])
            sent_at = _time(stamp)
        except (ValueError, KeyError, TypeError, OverflowError):
            raise WebhookRejected("no usable timestamp to check the signature") from None
        signed = self._app_id.encode() + body + stamp.encode() + self._oa_secret.encode()
        if not hmac.compare_digest(mac.encode(), hashlib.sha256(signed).hexdigest().encode()):
            raise WebhookRejected("wrong X-ZEvent-Signature")
        age = (self._clock() - sent_at).total_seconds()
        if age > self._max_age:
            raise WebhookRejected(f"webhook timestamp {age:.0f} s old, past Zalo's redeliveries (replay?)")
        if age < -self._skew:
            raise WebhookRejected(f"webhook timestamp {-age:.0f} s in the future")

    def _events(self, payload: Any) -> list[tuple[str, str, dict[str, Any]]]:
        """One event per delivery; OA echoes and seen/received receipts are not stored."""
        if not isinstance(payload, dict) or not isinstance(payload.get("event_name"), str):
            raise ValueError("not a Zalo OA event")
        name = payload["event_name"]
        if name.startswith("user_send_"):
            event = (str(payload["message"]["msg_id"]), str(payload["sender"]["id"]), payload)
            self.parse(*event)  # a shape parse cannot read is a 400 now, not a failure later
            return [event]
        if name in ("follow", "unfollow"):
            follower = str(payload["follower"]["id"])
            return [(f"{name}:{follower}:{payload['timestamp']}", follower, payload)]
        return []

    async def _receive(self, message_id: str, sender: str, payload: dict[str, Any]) -> bool:
        """Store the event, then note the citizen's interaction: it opens the reply window."""
        if self._sink is None or self._windows is None:
            raise NotReady("zalo channel not started")
        new = await self._sink(message_id, sender, payload)
        if payload["event_name"].startswith(CITIZEN_EVENTS):
            await self._windows.touch(self.name, sender, _time(payload["timestamp"]))
        return new

    # ---- parsing -----------------------------------------------------------------------
    def parse(self, message_id: str, sender: str, payload: dict[str, Any]) -> Inbound | None:
        """Called by the pipeline on a stored event; follow/unfollow and stickers give None."""
        if not payload.get("event_name", "").startswith("user_send_"):
            return None
        message = payload.get("message") or {}
        text = str(message.get("text") or "")
        action = text[len(ACTION_PREFIX):] if text.startswith(ACTION_PREFIX) else None
        attachments = [a for a in message.get("attachments") or [] if isinstance(a, dict)]
        inbound = Inbound(
            channel=self.name, sender=sender, message_id=message_id,
            received_at=_time(payload["timestamp"]), text="" if action else text,
            media=_media(attachments), action=action,
            location=_location(message, attachments) or point_from_links(text))
        empty = not (inbound.text or inbound.media or inbound.location or inbound.action)
        return None if empty else inbound

    async def fetch_media(self, media: MediaRef) -> bytes:
        """Called by the normalizer: download from Zalo's CDN, capped."""
        return await download_capped(self._http, media.ref, self._max_file_bytes)

    # ---- sending -----------------------------------------------------------------------
    async def send(self, address: str, message: Outbound) -> str | None:
        """Called by the outbox: photos first, then the text, buttons on the last part."""
        await self._check_window(address)
        parts = [await self._photo(p) for p in message.photos] + _texts(message)
        last = None
        try:
            for part in parts:
                last = await self._client.send_cs(address, part)
        except ZaloError as exc:
            raise _send_error(exc) from exc
        return last

    async def _check_window(self, address: str) -> None:
        assert self._windows is not None, "bind(database) first"
        last = await self._windows.last(self.name, address)
        if last is not None and self._clock() - last > WINDOW:
            raise WindowClosed(f"zalo: no message from the citizen since {last:%Y-%m-%d}")

    async def _photo(self, photo: str) -> dict[str, Any]:
        if photo.startswith("https://"):
            element = {"media_type": "image", "url": photo}
        else:
            try:
                content = await self._media_loader(photo)
            except KeyError as exc:
                raise PermanentFailure(f"photo {photo} is not in the media store") from exc
            try:
                element = {"media_type": "image", "attachment_id": await self._client.upload_image(content)}
            except ZaloError as exc:
                raise _send_error(exc) from exc
        return {"attachment": {"type": "template",
                               "payload": {"template_type": "media", "elements": [element]}}}

    async def _alert(self, reason: str) -> None:
        """Called by the token keeper when Zalo refuses the refresh token: tell staff once."""
        if self._staff_alert is None or self._database is None:
            return
        channel, address = self._staff_alert
        text = Texts().render("staff_zalo_token", reason=reason)
        key = f"alert:zalo-token:{self._clock():%Y%m%d%H}"
        await Store(self._database).outbox.enqueue(key, channel, address, Outbound(text=text, kind="notice"))


def _texts(message: Outbound) -> list[dict[str, Any]]:
    chunks = split_text(message.text, MAX_TEXT)
    parts: list[dict[str, Any]] = [{"text": c} for c in chunks]
    if message.buttons and parts:
        buttons = [{"title": b.label[:100], "type": "oa.query.hide",
                    "payload": f"{ACTION_PREFIX}{b.action}"} for b in message.buttons[:MAX_BUTTONS]]
        parts[-1]["attachment"] = {"type": "template", "payload": {"buttons": buttons}}
    return parts


def _send_error(exc: ZaloError) -> Exception:
    if exc.code == RATE_LIMITED:
        return RetryLater(str(exc))
    if exc.code in WINDOW_ERRORS:
        return WindowClosed(str(exc))
    return PermanentFailure(str(exc))


def _time(stamp: str | int) -> datetime:
    """Zalo timestamps are milliseconds since the epoch, as a string."""
    return datetime.fromtimestamp(int(stamp) / 1000, tz=UTC)


def _media(attachments: list[dict[str, Any]]) -> list[MediaRef]:
    refs = []
    for a in attachments:
        payload = a.get("payload") or {}
        if a.get("type") in ("image", "file") and payload.get("url"):
            size = str(payload.get("size") or "")
            refs.append(MediaRef(ref=payload["url"], filename=payload.get("name"),
                                 declared_type="image/jpeg" if a["type"] == "image" else None,
                                 size=int(size) if size.isdigit() else None))
    return refs


def _location(message: dict[str, Any], attachments: list[dict[str, Any]]) -> GeoPoint | None:
    """A shared location: in an attachment's `payload.coordinates`, or in `message.location`."""
    places = [a.get("payload", {}).get("coordinates") for a in attachments if a.get("type") == "location"]
    for place in [*places, message.get("location")]:
        if isinstance(place, dict):
            lat = place.get("latitude", place.get("lat"))
            lon = place.get("longitude", place.get("long", place.get("lon")))
            if lat is None or lon is None:
                continue
            try:
                return GeoPoint(lat=float(lat), lon=float(lon))
            except (TypeError, ValueError):
                continue
    return None
