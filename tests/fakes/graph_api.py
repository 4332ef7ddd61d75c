"""A fake Graph API Send endpoint (and CDN) for the Messenger tests, on 127.0.0.1.

Tests point `FacebookChannel(graph_url=fake.url, api_version=VERSION)` at it. It accepts
`POST /{VERSION}/me/messages` with the page token as a Bearer header, JSON or multipart
(image upload); `fail(status, code, subcode)` scripts Graph errors; `calls` records
every send; `add_file` serves an image at `cdn_url(name)` like Facebook's CDN.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes import FakeServer

VERSION = "v24.0"
PAGE_TOKEN = "fake-page-token"
APP_SECRET = "fake-meta-app-secret"
VERIFY_TOKEN = "ioc-verify-me"
PAGE_ID = "104598372194856"


@dataclass
class Call:
    body: dict[str, Any]
    files: dict[str, bytes] = field(default_factory=dict)


@dataclass
class _Failure:
    status: int
    code: int | None
    subcode: int | None
    times: int
    retry_after: int | None


class FakeGraphAPI(FakeServer):
    def __init__(self) -> None:
        super().__init__([
            Route(f"/{VERSION}/me/messages", self._messages, methods=["POST"]),
        ])
        self.calls: list[Call] = []
        self._failures: list[_Failure] = []

    def fail(self, status: int, code: int | None = None, subcode: int | None = None, *,
             times: int = 1, retry_after: int | None = None) -> None:
        self._failures.append(_Failure(status, code, subcode, times, retry_after))

    def texts(self) -> list[str]:
        return [c.body["message"]["text"] for c in self.calls if "text" in c.body.get("message", {})]

    async def _messages(self, request: Request) -> Response:
        if request.headers.get("authorization") != f"Bearer {PAGE_TOKEN}":
            return _error(400, 190, None, "Invalid OAuth access token.")
        if request.headers.get("content-type", "").startswith("multipart/"):
            form = await request.form()
            files = {k: await v.read() for k, v in form.multi_items() if isinstance(v, UploadFile)}
            body = {k: _json(v) for k, v in form.multi_items() if not isinstance(v, UploadFile)}
        else:
            body, files = await request.json(), {}
        self.calls.append(Call(body, files))
        for f in self._failures:
            if f.times > 0:
                f.times -= 1
                return _error(f.status, f.code, f.subcode, "scripted failure", f.retry_after)
        return JSONResponse({"recipient_id": body["recipient"]["id"], "message_id": f"m_{len(self.calls)}"})


def _json(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value


def _error(status: int, code: int | None, subcode: int | None, message: str,
           retry_after: int | None = None) -> JSONResponse:
    error = {"message": message, "type": "OAuthException", "code": code, "fbtrace_id": "AbCdEf"}
    if subcode is not None:
        error["error_subcode"] = subcode
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return JSONResponse({"error": error}, status_code=status, headers=headers)
