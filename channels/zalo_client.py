"""A thin async client for the Zalo OA Open API, and the OA's rotating tokens.

Why not `zalo-sdk`: it is synchronous `requests` code, unverified webhooks, and compares a
local-time expiry with `utcnow().timestamp()` (7 hours off in Vietnam). So `ZaloChannel`
holds one `ZaloClient` on `httpx.AsyncClient` that speaks the documented HTTP API:
`POST /v3.0/oa/message/cs`, `POST /v2.0/oa/upload/image`, with the `access_token` header.

`ZaloTokens` keeps the access token (about 25 h) fresh. A refresh token (about 3 months)
works once, so refreshing happens under a lock, the new pair is stored in the database
(compare-and-swap, `store.tokens`) before it is used, and a pair that could not be stored
is kept in memory and stored first on the next call. A refused refresh calls `on_failure`
(the channel alerts staff) once per failure streak.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import httpx

from channels.base import RetryLater
from normalizer.messages import utcnow
from store.tokens import TokenPair, TokenStore

log = logging.getLogger(__name__)

TOKEN_ERRORS = {-216, -124}  # access token invalid / expired: refresh once, then retry
EARLY = timedelta(minutes=5)  # refresh a little before the announced expiry


class ZaloError(Exception):
    """The API answered with a non-zero `error` code (HTTP 200, as Zalo does)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"zalo error {code}: {message}")
        self.code = code


class TokenRefreshFailed(RetryLater):
    """No usable access token: the outbox retries later while staff fix the credentials."""


class ZaloTokens:
    """The OA's access/refresh pair; `bind` gives it the database before first use."""

    def __init__(self, http: httpx.AsyncClient, *, app_id: str, app_secret: str, oauth_url: str,
                 on_failure: Callable[[str], Awaitable[None]],
                 clock: Callable[[], datetime] = utcnow) -> None:
        self._http, self._app_id, self._secret = http, app_id, app_secret
        self._url = f"{oauth_url.rstrip('/')}/v4/oa/access_token"
        self._on_failure, self._clock = on_failure, clock
        self._store: TokenStore | None = None
        self._unsaved: tuple[str, TokenPair] | None = None  # (spent refresh token, new pair)
        self._lock = asyncio.Lock()
        self._failing = False

    def bind(self, store: TokenStore) -> None:
        """Called by `ZaloChannel.bind` when the gateway hands over the database."""
        self._store = store

    async def seed(self, refresh_token: str, access_token: str | None) -> None:
        """Called at channel start with the configured tokens (kept if already rotated)."""
        await self._need_store().seed(refresh_token, access_token)

    async def access_token(self) -> str:
        """Called before each API request: a token believed valid, refreshed if due."""
        async with self._lock:
            await self._save_unsaved()
            pair = await self._need_store().load()
        if pair is None:
            raise TokenRefreshFailed("no Zalo token stored: set ZALO_REFRESH_TOKEN")
        if pair.access_token and not self._due(pair):
            return pair.access_token
        return await self.refresh(pair.access_token)

    async def refresh(self, stale: str | None) -> str:
        """Called when `stale` was refused or is due: one refresh at a time, and none if
        another task or process has already replaced `stale`."""
        async with self._lock:
            store = self._need_store()
            await self._save_unsaved()
            pair = await store.load()
            if pair is None:
                raise TokenRefreshFailed("no Zalo token stored: set ZALO_REFRESH_TOKEN")
            if pair.access_token and pair.access_token != stale and not self._due(pair):
                return pair.access_token
            self._unsaved = (pair.refresh_token, await self._exchange(pair.refresh_token))
            await self._save_unsaved()  # stored before use; a concurrent winner's pair if it lost
            current = await store.load()
            if current is None or not current.access_token:
                raise TokenRefreshFailed("zalo token pair vanished from the database")
            return current.access_token

    async def _save_unsaved(self) -> None:
        if self._unsaved is None:
            return
        spent, pair = self._unsaved
        if not await self._need_store().swap(spent, pair):
            log.warning("zalo token pair was replaced concurrently; using the stored one")
        self._unsaved = None

    async def _exchange(self, refresh_token: str) -> TokenPair:
        data = {"refresh_token": refresh_token, "app_id": self._app_id, "grant_type": "refresh_token"}
        try:
            response = await self._http.post(self._url, data=data, headers={"secret_key": self._secret})
        except httpx.HTTPError as exc:
            raise RetryLater(f"zalo oauth unreachable: {type(exc).__name__}") from None
        if response.status_code >= 500 or response.status_code == 429:
            raise RetryLater(f"zalo oauth answered HTTP {response.status_code}")
        body = _json(response)
        if not body.get("access_token") or not body.get("refresh_token"):
            reason = f"zalo token refresh refused: {body.get('error')} {body.get('error_name', '')}".strip()
            await self._fail(reason)
            raise TokenRefreshFailed(reason)
        self._failing = False
        seconds = int(body.get("expires_in") or 0)
        now = self._clock()
        return TokenPair(access_token=body["access_token"], refresh_token=body["refresh_token"],
                         expires_at=now + timedelta(seconds=seconds) if seconds else None,
                         refreshed_at=now)

    async def _fail(self, reason: str) -> None:
        log.critical("%s; re-authorise the OA and set ZALO_REFRESH_TOKEN", reason)
        await self._need_store().record_failure(reason)
        if not self._failing:
            self._failing = True
            await self._on_failure(reason)

    def _due(self, pair: TokenPair) -> bool:
        return pair.expires_at is not None and pair.expires_at - EARLY <= self._clock()

    def _need_store(self) -> TokenStore:
        if self._store is None:
            raise RuntimeError("ZaloChannel.bind(database) must be called before use")
        return self._store


class ZaloClient:
    """`POST`s to the OA API with a fresh token; retries once after a token error."""

    def __init__(self, http: httpx.AsyncClient, tokens: ZaloTokens, api_url: str) -> None:
        self._http, self._tokens, self._api = http, tokens, api_url.rstrip("/")

    async def send_cs(self, user_id: str, message: dict[str, Any]) -> str | None:
        """Called by `ZaloChannel.send`: one customer-service message; its message id."""
        data = await self._call("/v3.0/oa/message/cs",
                                json={"recipient": {"user_id": user_id}, "message": message})
        return data.get("message_id")

    async def upload_image(self, content: bytes, filename: str = "photo.jpg") -> str:
        """Called by `ZaloChannel.send` for photos from GridFS: the attachment id."""
        data = await self._call("/v2.0/oa/upload/image",
                                files={"file": (filename, content, "image/jpeg")})
        return str(data["attachment_id"])

    async def _call(self, path: str, **request: Any) -> dict[str, Any]:
        token = await self._tokens.access_token()
        body = await self._post(path, token, request)
        if body.get("error") in TOKEN_ERRORS:
            log.info("zalo access token refused (%s); refreshing", body.get("error"))
            body = await self._post(path, await self._tokens.refresh(token), request)
        if body.get("error", 0) != 0:
            raise ZaloError(int(body["error"]), str(body.get("message", "")))
        return body.get("data") or {}

    async def _post(self, path: str, token: str, request: dict[str, Any]) -> dict[str, Any]:
        try:
            response = await self._http.post(self._api + path, headers={"access_token": token}, **request)
        except httpx.HTTPError as exc:
            raise RetryLater(f"zalo unreachable: {type(exc).__name__}") from None
        if response.status_code == 429 or response.status_code >= 500:
            after = response.headers.get("retry-after", "")
            raise RetryLater(f"zalo answered HTTP {response.status_code}",
                             after=float(after) if after.isdigit() else None)
        return _json(response)


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        raise RetryLater(f"zalo answered HTTP {response.status_code} without JSON") from None
    return body if isinstance(body, dict) else {}
