"""The HTTP transport under python-telegram-bot: its `BaseRequest`, on an aiohttp session.

`TelegramChannel` gives this to PTB's `Bot` instead of PTB's default `HTTPXRequest`. PTB
builds every Bot API call and parses every answer itself; this class only moves the bytes.
Why not httpx: measured with PTB against the fake Bot API on this project's machine
(docs/performance.md), `HTTPXRequest` cost 3.0-4.6 ms of CPU per call
(httpcore walks every pooled connection, asking each socket whether it is readable, for
every request it queues and every response it closes), this class 1.0-1.2 ms; at the
gateway's load that was a third of its CPU. Timeouts (but for writes, which aiohttp does not
time) and errors keep PTB's contract: `TimedOut` for a timeout (pool included),
`NetworkError` for any other transport failure.
"""
from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from telegram._utils.defaultvalue import DefaultValue
from telegram._utils.types import ODVInput
from telegram.error import NetworkError, TimedOut
from telegram.request import BaseRequest, RequestData


class AiohttpRequest(BaseRequest):
    """One connection pool of `connections` to the Bot API; PTB's timeouts (seconds) by default."""

    def __init__(self, connections: int = 16, *, read_timeout: float = 5.0, connect_timeout: float = 5.0,
                 pool_timeout: float = 10.0) -> None:
        self._connections = connections
        self._read, self._connect, self._pool = read_timeout, connect_timeout, pool_timeout
        self._session: aiohttp.ClientSession | None = None

    @property
    def read_timeout(self) -> float:
        return self._read

    async def initialize(self) -> None:
        """Called by PTB's `Bot.initialize`; the first call without it opens the pool too."""
        self._open()

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:  # in the running loop, which aiohttp binds
            connector = aiohttp.TCPConnector(limit=self._connections, keepalive_timeout=60)
            self._session = aiohttp.ClientSession(connector=connector, skip_auto_headers=("User-Agent",))
        return self._session

    async def shutdown(self) -> None:
        """Called by PTB's `Bot.shutdown` when the channel stops."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def do_request(self, url: str, method: str, request_data: RequestData | None = None,
                         read_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
                         write_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
                         connect_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
                         pool_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE) -> tuple[int, bytes]:
        """Called by PTB for every Bot API call and file download: (HTTP status, body)."""
        session = self._open()
        files = request_data.multipart_data if request_data and request_data.contains_files else None
        # aiohttp's `connect` covers waiting for a pooled connection and opening a new one;
        # it has no write timeout (an upload is bounded by the read timeout of its answer).
        connect = _given(pool_timeout, self._pool) + _given(connect_timeout, self._connect)
        timeout = aiohttp.ClientTimeout(connect=connect, sock_read=_given(read_timeout, self._read))
        try:
            async with session.request(method, url, data=_body(request_data, files), timeout=timeout,
                                       headers={"User-Agent": self.USER_AGENT}) as response:
                return response.status, await response.read()
        except asyncio.TimeoutError as exc:
            raise TimedOut from exc
        except aiohttp.ClientError as exc:
            raise NetworkError(f"aiohttp.{type(exc).__name__}: {exc}") from exc


def _given(value: ODVInput[float], default: float) -> float:
    """A timeout PTB passed for this call, else ours (None: PTB asks for no limit)."""
    if isinstance(value, DefaultValue):
        return default
    return value if value is not None else 3600.0


def _body(request_data: RequestData | None, files: dict[str, Any] | None) -> aiohttp.FormData | dict[str, str] | None:
    """Form fields as PTB encodes them; multipart when a file goes up (sendPhoto)."""
    fields = request_data.json_parameters if request_data else {}
    if not files:
        return fields or None
    form = aiohttp.FormData(quote_fields=False)
    for name, value in fields.items():
        form.add_field(name, value)
    for name, part in files.items():
        filename, content, *mime = part if isinstance(part, tuple) else (name, part)
        form.add_field(name, content, filename=filename, content_type=mime[0] if mime else "application/octet-stream")
    return form
