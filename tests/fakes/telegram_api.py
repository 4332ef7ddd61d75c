"""A fake Telegram Bot API server for the tests, served by uvicorn on 127.0.0.1.

Tests point python-telegram-bot at it with `Bot(token, base_url=fake.base_url,
base_file_url=fake.base_file_url)`: the library really speaks HTTP, so the form
encoding, multipart uploads, error bodies and long-polling are all exercised for real.

The test pushes updates (`push`), registers downloadable files (`add_file`) and scripted
failures (`fail`), then asserts on `calls` (every request, with decoded parameters).
"""
from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from channels.webapp import WebServer, serve

TOKEN = "123456:TEST-token_for-fake"
BOT_USER = {"id": 123456, "is_bot": True, "first_name": "IOC Bot", "username": "ioc_test_bot"}
# Parameters that Telegram takes as strings; everything else is JSON-decoded.
STRING_PARAMS = {"text", "caption", "callback_query_id", "secret_token", "url", "file_id", "data"}


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    files: dict[str, bytes] = field(default_factory=dict)


@dataclass
class _Failure:
    method: str
    status: int
    description: str
    retry_after: int | None
    times: int


class FakeTelegramAPI:
    """The Bot API methods the gateway uses, with in-memory state."""

    def __init__(self, token: str = TOKEN) -> None:
        self.token = token
        self.calls: list[Call] = []
        self.updates: list[dict[str, Any]] = []  # not yet confirmed by an offset
        self.files: dict[str, tuple[str, bytes]] = {}  # file_id → (file_path, content)
        self.webhook: dict[str, Any] | None = None
        self._failures: list[_Failure] = []
        self._arrived = asyncio.Event()
        self._next_message_id = 1000
        self._server: WebServer | None = None
        self._closing = False
        self.app = Starlette(routes=[
            Route("/bot{token}/{method}", self._method, methods=["GET", "POST"]),
            Route("/file/bot{token}/{path:path}", self._download, methods=["GET"]),
        ])

    # ---- test controls -------------------------------------------------------------
    async def start(self) -> None:
        self._server = await serve(self.app, "127.0.0.1", 0)

    async def stop(self) -> None:
        self._closing = True
        self._arrived.set()  # release any long-poll still waiting
        if self._server:
            self._server.server.force_exit = True
            await self._server.stop()

    @property
    def base_url(self) -> str:
        assert self._server, "start() the fake first"
        return f"{self._server.url}/bot"

    @property
    def base_file_url(self) -> str:
        assert self._server, "start() the fake first"
        return f"{self._server.url}/file/bot"

    def push(self, update: dict[str, Any]) -> None:
        """Queue an update as Telegram would (again, if its id was already delivered)."""
        self.updates.append(update)
        self._arrived.set()

    def add_file(self, file_id: str, content: bytes, file_path: str = "") -> None:
        self.files[file_id] = (file_path or f"photos/{file_id}.jpg", content)

    def fail(self, method: str, status: int, description: str, *,
             retry_after: int | None = None, times: int = 1) -> None:
        """Make the next `times` calls of `method` fail with this Bot API error."""
        self._failures.append(_Failure(method, status, description, retry_after, times))

    def calls_to(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    # ---- HTTP ----------------------------------------------------------------------
    async def _method(self, request: Request) -> Response:
        if request.path_params["token"] != self.token:
            return _api_error(401, "Unauthorized")
        method = request.path_params["method"]
        call = await _decode(method, request)
        self.calls.append(call)
        failure = self._take_failure(method)
        if failure:
            return _api_error(failure.status, failure.description, failure.retry_after)
        handler = getattr(self, f"_api_{method}", None)
        if handler is None:
            return _api_error(404, "Not Found")
        return await handler(call)

    async def _download(self, request: Request) -> Response:
        if request.path_params["token"] != self.token:
            return _api_error(401, "Unauthorized")
        wanted = request.path_params["path"]
        for path, content in self.files.values():
            if path == wanted:
                return Response(content, media_type="application/octet-stream")
        return _api_error(404, "Not Found")

    def _take_failure(self, method: str) -> _Failure | None:
        for failure in self._failures:
            if failure.method == method and failure.times > 0:
                failure.times -= 1
                return failure
        return None

    # ---- Bot API methods -----------------------------------------------------------
    async def _api_getMe(self, call: Call) -> Response:
        return _ok(BOT_USER)

    async def _api_getUpdates(self, call: Call) -> Response:
        if self.webhook:
            return _api_error(409, "Conflict: can't use getUpdates method while webhook is active;"
                                   " use deleteWebhook to delete the webhook first")
        offset = call.params.get("offset")
        if offset is not None:
            self.updates = [u for u in self.updates if u["update_id"] >= offset]
        deadline = time.monotonic() + float(call.params.get("timeout") or 0)
        while not self.updates and not self._closing and time.monotonic() < deadline:
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), deadline - time.monotonic())
            except TimeoutError:
                break
        limit = int(call.params.get("limit") or 100)
        return _ok(sorted(self.updates, key=lambda u: u["update_id"])[:limit])

    async def _api_setWebhook(self, call: Call) -> Response:
        self.webhook = dict(call.params)
        return _ok(True)

    async def _api_deleteWebhook(self, call: Call) -> Response:
        self.webhook = None
        return _ok(True)

    async def _api_sendMessage(self, call: Call) -> Response:
        return _ok(self._message(call.params["chat_id"], text=call.params["text"]))

    async def _api_sendPhoto(self, call: Call) -> Response:
        size = len(call.files.get("photo", b""))
        photo = [{"file_id": f"sent-{self._next_message_id}", "file_unique_id": "u",
                  "width": 800, "height": 600, "file_size": size}]
        return _ok(self._message(call.params["chat_id"], photo=photo))

    async def _api_getFile(self, call: Call) -> Response:
        file_id = call.params.get("file_id", "")
        if file_id not in self.files:
            return _api_error(400, "Bad Request: invalid file_id")
        path, content = self.files[file_id]
        return _ok({"file_id": file_id, "file_unique_id": f"u-{file_id}",
                    "file_size": len(content), "file_path": path})

    async def _api_answerCallbackQuery(self, call: Call) -> Response:
        return _ok(True)

    def _message(self, chat_id: int, **content: Any) -> dict[str, Any]:
        self._next_message_id += 1
        chat = {"id": chat_id, "type": "private" if chat_id > 0 else "supergroup"}
        return {"message_id": self._next_message_id, "from": BOT_USER, "chat": chat,
                "date": int(time.time()), **content}


async def _decode(method: str, request: Request) -> Call:
    form = await request.form() if request.method == "POST" else request.query_params
    params: dict[str, Any] = {}
    files: dict[str, bytes] = {}
    for key, value in form.multi_items():
        if isinstance(value, UploadFile):
            files[key] = await value.read()
        elif key in STRING_PARAMS:
            params[key] = value
        else:
            params[key] = _json_or_str(value)
    return Call(method, params, files)


def _json_or_str(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value


def _ok(result: Any) -> JSONResponse:
    return JSONResponse({"ok": True, "result": result})


def _api_error(status: int, description: str, retry_after: int | None = None) -> JSONResponse:
    body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
    if retry_after is not None:
        body["parameters"] = {"retry_after": retry_after}
    return JSONResponse(body, status_code=status)
