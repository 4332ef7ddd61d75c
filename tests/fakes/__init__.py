"""Fake platform APIs served on loopback; the base every fake shares.

Each fake is a small Starlette app; `FakeServer` serves it on a free port with the gateway's
own `serve`, and also plays the platform's CDN (files the tests add, fetched by URL).
"""
from __future__ import annotations

from contextlib import asynccontextmanager
from typing import AsyncIterator, Protocol, Sequence, TypeVar

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from channels.webapp import WebServer, serve


class Startable(Protocol):
    """What `running` needs of a fake (FakeServer, or one that serves itself like FakeTelegramAPI)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


F = TypeVar("F", bound=Startable)


class FakeServer:
    def __init__(self, routes: Sequence[BaseRoute]) -> None:
        self.files: dict[str, bytes] = {}
        self._server: WebServer | None = None
        self.app = Starlette(routes=[*routes, Route("/cdn/{name}", self._cdn, methods=["GET"])])

    async def start(self) -> None:
        self._server = await serve(self.app, "127.0.0.1", 0)

    async def stop(self) -> None:
        if self._server:
            await self._server.stop()

    @property
    def url(self) -> str:
        assert self._server, "start() the fake first"
        return self._server.url

    def cdn_url(self, name: str) -> str:
        return f"{self.url}/cdn/{name}"

    def add_file(self, name: str, content: bytes) -> None:
        self.files[name] = content

    async def _cdn(self, request: Request) -> Response:
        content = self.files.get(request.path_params["name"])
        return Response(content, media_type="image/jpeg") if content is not None else Response(status_code=404)


@asynccontextmanager
async def running(fake: F) -> AsyncIterator[F]:
    """A started fake for the length of a test fixture."""
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()
