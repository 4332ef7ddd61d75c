"""Facebook Messenger transport: a Page's webhook in, the Send API out (Graph API on httpx).

Why not `facebook-sdk`: its 3.1.0 (2018) knows only Graph API 2.8–3.1, long retired, and
has no Messenger support; the Send API is one JSON `POST`, so this module speaks it.

The gateway builds one `FacebookChannel` from settings, calls `bind(database)` (reply
windows) and `start(sink)`; `routes()` gives `channels.webapp` the webhook: a `GET` that
answers Meta's subscription challenge, and a `POST` whose `X-Hub-Signature-256` must be
the HMAC-SHA256 of the raw body under the app secret. Each `entry[].messaging[]` item is
stored as one event (echoes, delivery and read receipts are dropped); the pipeline calls
`parse` and `fetch_media`, the outbox calls `send`. A batch holds several people's items,
so each is judged alone (`channels.facebook_items`): one we cannot use (a chat-plugin sender
with only a `user_ref`, no PSID to answer; an unreadable shape or timestamp) is stored all
the same and marked ignored with its reason (`skip_reason`), and the others are handled.

Messenger allows a free reply for 24 hours after the citizen's last message; later only
a message tag the Page may use (configured per `Outbound.kind`), else `WindowClosed`.
Messenger has no location sharing any more: a Google Maps / OpenStreetMap link in the
text gives `Inbound.location`, an address stays text for the normalizer.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from channels.base import (
    Channel,
    EventSink,
    PermanentFailure,
    RetryLater,
    Unreachable,
    WindowClosed,
)
from channels.facebook_items import event_id, item_time, problem, psid, read, stand_in
from channels.http_media import download_capped
from channels.text_split import split_text
from channels.webapp import NotReady, WebhookRejected, WebhookRoute, unstorable
from normalizer.messages import Inbound, MediaRef, Outbound, utcnow
from store.database import Database
from store.windows import ReplyWindows

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "x-hub-signature-256"
MAX_TEXT = 2000
MAX_QUICK_REPLIES, MAX_TITLE = 13, 20
STANDARD_WINDOW = timedelta(hours=24)
TAG_WINDOWS = {"HUMAN_AGENT": timedelta(days=7)}  # tags with their own, longer limit
RATE_LIMIT_CODES = {4, 17, 32, 613, 80006}
TRANSIENT_CODES = {1, 2}
OUTSIDE_WINDOW = 2018278  # error_subcode: "sent outside of allowed window"
MediaLoader = Callable[[str], Awaitable[bytes]]


class FacebookChannel(Channel):
    """One Facebook Page; citizens write to it in Messenger."""

    name = "facebook"

    def __init__(self, *, page_token: str, app_secret: str, verify_token: str,
                 media_loader: MediaLoader, graph_url: str = "https://graph.facebook.com",
                 api_version: str = "v24.0", webhook_path: str = "/facebook/webhook",
                 message_tags: Mapping[str, str] | None = None, max_file_bytes: int = 10_000_000,
                 clock: Callable[[], datetime] = utcnow, timeout: float = 30.0) -> None:
        """Called by the registry with settings (tests: with the fake Graph API's URL).

        `message_tags` maps `Outbound.kind` (result, reminder, notice…) to the message tag
        used after the 24-hour window, e.g. {"result": "HUMAN_AGENT"}; kinds without one
        raise `WindowClosed` there."""
        self._token, self._secret, self._verify_token = page_token, app_secret, verify_token
        self._messages_url = f"{graph_url.rstrip('/')}/{api_version}/me/messages"
        self._media_loader, self._max_file_bytes = media_loader, max_file_bytes
        self._path, self._tags, self._clock = webhook_path, dict(message_tags or {}), clock
        self._http = httpx.AsyncClient(timeout=timeout)
        self._windows: ReplyWindows | None = None
        self._sink: EventSink | None = None

    def bind(self, database: Database) -> None:
        """Called by the gateway before `start`: where reply windows are kept."""
        self._windows = ReplyWindows(database)

    async def start(self, sink: EventSink) -> None:
        self._sink = sink

    async def stop(self) -> None:
        await self._http.aclose()

    def routes(self) -> list[Route]:
        """Called by the gateway: the subscription check (GET) and the events (POST)."""
        return [Route(self._path, self._challenge, methods=["GET"]),
                WebhookRoute(self._path, self._verify, self._events, self._receive).route()]

    # ---- receiving ---------------------------------------------------------------------
    async def _challenge(self, request: Request) -> PlainTextResponse:
        """Meta's one-time check when the webhook URL is saved in the app dashboard."""
        query = request.query_params
        token = query.get("hub.verify_token", "")
        if query.get("hub.mode") == "subscribe" and hmac.compare_digest(
                token.encode(), self._verify_token.encode()):
            return PlainTextResponse(query.get("hub.challenge", ""))
        return PlainTextResponse("forbidden", status_code=403)

    def _verify(self, headers: Mapping[str, str], body: bytes) -> None:
        given = headers.get(SIGNATURE_HEADER, "").strip()
        if not given:
            raise WebhookRejected("missing X-Hub-Signature-256", status=401)
        expected = "sha256=" + hmac.new(self._secret.encode(), body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(given.lower().encode(), expected.encode()):
            raise WebhookRejected("wrong X-Hub-Signature-256")

    def _events(self, payload: Any) -> list[tuple[str, str, dict[str, Any]]]:
        """Called by the web app: one event per citizen message or postback in the batch, each
        judged alone (only a body that is not a Page webhook at all is a 400)."""
        if not isinstance(payload, dict) or payload.get("object") != "page":
            raise ValueError("not a Page webhook")
        events = []
        for n, entry in enumerate(payload["entry"]):
            items = entry.get("messaging") if isinstance(entry, dict) else None
            if not isinstance(items, list):
                if items is not None or not isinstance(entry, dict):
                    log.warning("messenger: entry %d skipped: no messaging list", n)
                continue
            events += [e for m, item in enumerate(items) if (e := self._event(item, f"{n}.{m}"))]
        return events

    def _event(self, item: Any, where: str) -> tuple[str, str, dict[str, Any]] | None:
        """One stored event per message or postback, usable or not; None for echoes and
        receipts, or (logged by position, id and reason, never the body) for what the
        database could not even hold."""
        if not isinstance(item, dict):
            log.warning("messenger: item %s skipped: not an object", where)
            return None
        key = event_id(item)
        if key is None:
            return None
        event = (key, psid(item) or stand_in(item), item)
        reason = unstorable(event)
        if reason is not None:
            log.warning("messenger: item %s (id %.80r) skipped: %s", where, key, reason)
            return None
        return event

    async def _receive(self, message_id: str, sender: str, payload: dict[str, Any]) -> bool:
        """Store the event, then note the citizen's message: it opens the 24-hour window."""
        if self._sink is None or self._windows is None:
            raise NotReady("facebook channel not started")
        new = await self._sink(message_id, sender, payload)
        if problem(payload) is None:  # a citizen we can answer
            await self._windows.touch(self.name, sender, item_time(payload))
        return new

    # ---- parsing -----------------------------------------------------------------------
    def parse(self, message_id: str, sender: str, payload: dict[str, Any]) -> Inbound | None:
        """Called by the pipeline on one stored `messaging` item; None for what `skip_reason` explains."""
        return read(self.name, message_id, sender, payload)[0]

    def skip_reason(self, payload: dict[str, Any]) -> tuple[str, str | None]:
        """Called by the pipeline when `parse` gave None: the item is ignored, and why."""
        return "ignored", read(self.name, "?", psid(payload) or "?", payload)[1]

    async def fetch_media(self, media: MediaRef) -> bytes:
        """Called by the normalizer: download from Facebook's CDN, capped."""
        return await download_capped(self._http, media.ref, self._max_file_bytes)

    # ---- sending -----------------------------------------------------------------------
    async def send(self, address: str, message: Outbound) -> str | None:
        """Called by the outbox: photos, then text parts, quick replies on the last one."""
        route = await self._messaging(address, message.kind)
        last = None
        for photo in message.photos:
            last = await self._send_photo(address, route, photo)
        chunks = split_text(message.text, MAX_TEXT)
        for i, chunk in enumerate(chunks):
            body: dict[str, Any] = {"text": chunk}
            if message.buttons and i == len(chunks) - 1:
                body["quick_replies"] = [
                    {"content_type": "text", "title": b.label[:MAX_TITLE], "payload": b.action}
                    for b in message.buttons[:MAX_QUICK_REPLIES]]
            last = await self._post(json={"recipient": {"id": address}, **route, "message": body})
        return last

    async def _messaging(self, address: str, kind: str) -> dict[str, str]:
        """`RESPONSE` inside the 24-hour window, else the kind's tag, else WindowClosed."""
        assert self._windows is not None, "bind(database) first"
        last = await self._windows.last(self.name, address)
        age = self._clock() - last if last is not None else None
        if age is not None and age <= STANDARD_WINDOW:
            return {"messaging_type": "RESPONSE"}
        tag = self._tags.get(kind)
        if tag and age is not None and age <= TAG_WINDOWS.get(tag, timedelta.max):
            return {"messaging_type": "MESSAGE_TAG", "tag": tag}
        raise WindowClosed(f"messenger: outside the 24-hour window, no usable tag for {kind!r}")

    async def _send_photo(self, address: str, route: dict[str, str], photo: str) -> str | None:
        if photo.startswith("https://"):
            attachment = {"type": "image", "payload": {"url": photo, "is_reusable": True}}
            return await self._post(json={"recipient": {"id": address}, **route,
                                          "message": {"attachment": attachment}})
        try:
            content = await self._media_loader(photo)
        except KeyError as exc:
            raise PermanentFailure(f"photo {photo} is not in the media store") from exc
        attachment = {"type": "image", "payload": {"is_reusable": False}}
        form = {"recipient": json.dumps({"id": address}), **route,
                "message": json.dumps({"attachment": attachment})}
        return await self._post(data=form, files={"filedata": ("photo.jpg", content, "image/jpeg")})

    async def _post(self, **request: Any) -> str | None:
        headers = {"Authorization": f"Bearer {self._token}"}
        try:
            response = await self._http.post(self._messages_url, headers=headers, **request)
        except httpx.HTTPError as exc:
            raise RetryLater(f"graph api unreachable: {type(exc).__name__}") from None
        if response.status_code == 200:
            return response.json().get("message_id")
        raise _send_error(response, tagged="tag" in (request.get("json") or request.get("data") or {}))


def _send_error(response: httpx.Response, tagged: bool) -> Exception:
    """Map a Graph API error to the outbox's vocabulary."""
    try:
        error = response.json().get("error") or {}
    except ValueError:
        error = {}
    code, sub = error.get("code"), error.get("error_subcode")
    text = f"graph api {response.status_code} code {code}/{sub}: {error.get('message', '')}"[:300]
    if response.status_code == 429 or code in RATE_LIMIT_CODES:
        after = response.headers.get("retry-after", "")
        return RetryLater(text, after=float(after) if after.isdigit() else None)
    if response.status_code >= 500 or code in TRANSIENT_CODES or error.get("is_transient"):
        return RetryLater(text)
    if sub == OUTSIDE_WINDOW or (tagged and code in (10, 200)):
        return WindowClosed(text)
    if code == 551 or (code == 100 and sub == 2018001):  # person unavailable / no such user
        return Unreachable(text)
    if code == 190:  # the page token was revoked or expired: keep the message for a new one
        return RetryLater(f"{text} (check FACEBOOK_PAGE_TOKEN)")
    return PermanentFailure(text)
