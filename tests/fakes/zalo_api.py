"""A fake Zalo OA Open API (and its OAuth server and CDN), served by uvicorn on 127.0.0.1.

Tests point `ZaloChannel(api_url=fake.url, oauth_url=fake.url)` at it. It keeps one valid
access token and one valid (single-use) refresh token, like Zalo: a refresh rotates both,
and the spent refresh token is refused afterwards. `expire()` makes the current access
token answer -216; `fail(path, error)` scripts API errors or HTTP statuses; `calls`
records every request; `add_file` serves an image at `cdn_url(name)`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes import FakeServer

APP_ID = "3608465249409039670"
APP_SECRET = "fake-app-secret"
OA_SECRET_KEY = "fake-oa-secret-key"
FIRST_ACCESS = "access-0"
FIRST_REFRESH = "refresh-0"


@dataclass
class Call:
    path: str
    headers: dict[str, str]
    json: Any = None
    form: dict[str, str | UploadFile] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    accepted: bool = False


@dataclass
class _Failure:
    path: str
    error: int | None
    status: int
    times: int


class FakeZaloAPI(FakeServer):
    def __init__(self) -> None:
        super().__init__([
            Route("/v4/oa/access_token", self._oauth, methods=["POST"]),
            Route("/v3.0/oa/message/cs", self._send, methods=["POST"]),
            Route("/v2.0/oa/upload/image", self._upload, methods=["POST"]),
        ])
        self.access_token, self.refresh_token = FIRST_ACCESS, FIRST_REFRESH
        self.refreshes = 0
        self.calls: list[Call] = []
        self._failures: list[_Failure] = []

    def expire(self) -> None:
        """The current access token now answers 'expired' (Zalo: -216)."""
        self.access_token = "expired-" + self.access_token

    def fail(self, path: str, error: int | None = None, *, status: int = 200, times: int = 1) -> None:
        self._failures.append(_Failure(path, error, status, times))

    def sent(self) -> list[dict[str, Any]]:
        """The CS messages accepted so far (the `message` objects)."""
        return [c.json["message"] for c in self.calls if c.path.endswith("/message/cs") and c.accepted]

    # ---- HTTP ------------------------------------------------------------------------
    async def _oauth(self, request: Request) -> Response:
        form = dict(await request.form())
        self.calls.append(Call(request.url.path, dict(request.headers), form=form))
        if request.headers.get("secret_key") != APP_SECRET or form.get("app_id") != APP_ID:
            return JSONResponse({"error": -14002, "error_name": "Invalid app"})
        if form.get("grant_type") != "refresh_token" or form.get("refresh_token") != self.refresh_token:
            return JSONResponse({"error": -14014, "error_name": "Invalid refresh token",
                                 "error_description": "Refresh token is invalid or has been used"})
        self.refreshes += 1
        self.access_token = f"access-{self.refreshes}"
        self.refresh_token = f"refresh-{self.refreshes}"
        return JSONResponse({"access_token": self.access_token, "refresh_token": self.refresh_token,
                             "expires_in": "90000"})

    async def _send(self, request: Request) -> Response:
        body = await request.json()
        call = Call(request.url.path, dict(request.headers), json=body)
        self.calls.append(call)
        refused = self._refusal(request)
        if refused is not None:
            return refused
        call.accepted = True
        return _ok({"message_id": f"msg-{len(self.calls)}", "user_id": body["recipient"]["user_id"]})

    async def _upload(self, request: Request) -> Response:
        form = await request.form()
        files = {k: await v.read() for k, v in form.multi_items() if isinstance(v, UploadFile)}
        self.calls.append(Call(request.url.path, dict(request.headers), files=files))
        refused = self._refusal(request)
        return refused or _ok({"attachment_id": f"att-{len(self.calls)}"})

    def _refusal(self, request: Request) -> Response | None:
        if request.headers.get("access_token") != self.access_token:
            return JSONResponse({"error": -216, "message": "Access token is invalid or expired"})
        for failure in self._failures:
            if failure.path == request.url.path and failure.times > 0:
                failure.times -= 1
                if failure.status != 200:
                    return JSONResponse({"message": "server error"}, status_code=failure.status)
                return JSONResponse({"error": failure.error, "message": f"scripted error {failure.error}"})
        return None


def _ok(data: dict[str, Any]) -> JSONResponse:
    return JSONResponse({"data": data, "error": 0, "message": "Success"})
