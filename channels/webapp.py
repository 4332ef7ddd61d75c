"""The one web application every webhook channel plugs into.

`bots/gateway.py` calls `build_app` with the routes the enabled channels offer (their
optional `routes()` hook) and a health probe, then `serve` to run it under uvicorn next to
the other workers. A channel does not write Starlette handlers: it describes its webhook
with a `WebhookRoute` (how to verify a request, how to split a payload into events, where
to store them) and this module turns it into an endpoint with one error policy:

- body larger than the limit → 413; body that is not JSON / not the expected shape → 400;
- failed signature → 401 (missing) or 403 (wrong), raised by `verify` as `WebhookRejected`;
- the database cannot store the event → 503, so the platform redelivers later;
- anything unexpected → a short JSON 500, logged here, never a traceback on the wire.

A web address that cannot be listened on (port taken, no permission, unknown host) ends
`serve` with `WebServerError`, a one-line reason `run_bots.py` prints instead of a traceback.
"""
from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import socket
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Mapping, Sequence

import bson
import uvicorn
from pymongo.errors import PyMongoError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from channels.base import EventSink
from store.safe import plain

log = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES = 1_000_000
KEEP_ALIVE_SECONDS = 75

Event = tuple[str, str, dict[str, Any]]  # (message_id, sender, payload) as the sink takes it


class WebhookRejected(Exception):
    """Raised by a `verify` function: the request is not from the platform."""

    def __init__(self, reason: str, status: int = 403) -> None:
        super().__init__(reason)
        self.status = status


class NotReady(Exception):
    """Raised by a sink whose channel has not been started yet: answered 503."""


class WebServerError(RuntimeError):
    """A one-line reason the web app could not start (raised by `serve`)."""


class _BodyTooLarge(Exception):
    pass


@dataclass(frozen=True)
class WebhookRoute:
    """A platform webhook as a channel describes it.

    `verify(headers, raw_body)` raises `WebhookRejected` or returns None;
    `events(json_payload)` lists the events in one delivery (KeyError/TypeError/ValueError/
    AttributeError mean a malformed payload → 400); `sink` stores each one before we answer 200.
    """

    path: str
    verify: Callable[[Mapping[str, str], bytes], None]
    events: Callable[[Any], list[Event]]
    sink: EventSink

    def route(self) -> Route:
        """Called by a channel's `routes()` hook to hand the endpoint to `build_app`."""
        return Route(self.path, self._endpoint, methods=["POST"])

    async def _endpoint(self, request: Request) -> JSONResponse:
        try:
            body = await _read_body(request, request.app.state.max_body_bytes)
        except _BodyTooLarge:
            return _error(413, "payload too large")
        try:
            self.verify(request.headers, body)
        except WebhookRejected as exc:
            log.warning("webhook %s rejected: %s", self.path, exc)
            return _error(exc.status, "forbidden" if exc.status == 403 else "unauthorized")
        try:
            events = _storable(self.events(json.loads(body)))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:  # e.g. a list where a dict was due
            log.warning("webhook %s: malformed payload (%s)", self.path, exc)
            return _error(400, "malformed payload")
        return await self._store(events)

    async def _store(self, events: list[Event]) -> JSONResponse:
        stored = 0
        try:
            for message_id, sender, payload in events:
                stored += bool(await self.sink(message_id, sender, payload))
        except (PyMongoError, NotReady) as exc:
            log.error("webhook %s: cannot store event, asking to retry: %r", self.path, exc)
            return _error(503, "temporarily unavailable")
        except Exception:
            log.exception("webhook %s: unexpected error while storing", self.path)
            return _error(500, "internal error")
        return JSONResponse({"ok": True, "received": len(events), "new": stored})


def _storable(events: list[Event]) -> list[Event]:
    """ValueError (→ 400) for an event the database cannot hold (an integer over 64 bits, an
    id with a NUL): refused before anything is stored, instead of failing every redelivery."""
    for event in events:
        reason = unstorable(event)
        if reason is not None:
            raise ValueError(reason)
    return events


def unstorable(event: Event) -> str | None:
    """Why the database could not hold this event, or None. Channels whose deliveries batch
    several people's events (Messenger) call it per event, to set aside only the bad one."""
    message_id, sender, payload = event
    try:
        plain(message_id), plain(sender)
        bson.encode(payload)
    except ValueError as exc:  # UnsafeValue
        return f"id or sender cannot be stored: {exc}"
    except (bson.errors.InvalidDocument, OverflowError) as exc:
        return f"payload cannot be stored: {exc}"
    return None


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _BodyTooLarge
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"ok": False, "error": message}, status_code=status)


def build_app(
    webhooks: Sequence[WebhookRoute | BaseRoute],
    health: Callable[[], Awaitable[dict[str, Any]]],
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    extra_routes: Sequence[BaseRoute] = (),
) -> Starlette:
    """Called by the gateway once the channels exist; `extra_routes` is room for the portal.

    `health()` returns e.g. {"database": "ok", "channels": ["telegram"]}; /healthz answers it
    with 200, or 503 when it says the database is not "ok" or raises a database error.
    """

    async def healthz(_: Request) -> JSONResponse:
        try:
            report = await health()
        except PyMongoError as exc:
            log.error("health check: database unreachable: %r", exc)
            return JSONResponse({"database": "unreachable"}, status_code=503)
        return JSONResponse(report, status_code=200 if report.get("database") == "ok" else 503)

    routes: list[BaseRoute] = [Route("/healthz", healthz, methods=["GET"])]
    routes += [w.route() if isinstance(w, WebhookRoute) else w for w in webhooks]
    routes += list(extra_routes)
    app = Starlette(routes=routes, exception_handlers={Exception: _internal_error})
    app.state.max_body_bytes = max_body_bytes
    return app


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return _error(500, "internal error")


class _EmbeddedServer(uvicorn.Server):
    """uvicorn inside our event loop: the gateway, not uvicorn, owns SIGINT/SIGTERM."""

    def capture_signals(self) -> contextlib.nullcontext[None]:  # type: ignore[override]
        return contextlib.nullcontext()


@dataclass
class WebServer:
    """A running web app; `port` is the real one when 0 was asked for."""

    server: uvicorn.Server
    task: asyncio.Task[None]
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def stop(self) -> None:
        """Called by the gateway on shutdown: finishes in-flight requests, then returns."""
        self.server.should_exit = True
        await self.task


async def serve(app: Starlette, host: str, port: int, *, log_level: str = "warning") -> WebServer:
    """Called by the gateway (and tests) to serve `app`; returns once it accepts connections."""
    # IPPROTO_TCP spelled out: asyncio turns Nagle's algorithm off (TCP_NODELAY) only on sockets
    # that say so, and accepted sockets inherit the listener's protocol number. With 0 here every
    # answer waited ~40 ms for the client's delayed ACK before its body left (45 ms per webhook).
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise WebServerError(_bind_error(host, port, exc)) from None
    except OverflowError:  # a port outside 0-65535
        sock.close()
        raise WebServerError(f"web port {port} is out of range (set WEB_PORT)") from None
    # Platforms keep webhook connections open between deliveries; uvicorn's 5 s default closed
    # them under a sender's feet (a delivery raced the close and failed in the benchmark).
    config = uvicorn.Config(app, log_level=log_level, lifespan="off", access_log=False,
                            timeout_keep_alive=KEEP_ALIVE_SECONDS)
    server = _EmbeddedServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name=f"web:{host}:{port}")
    while not server.started:
        if task.done():
            sock.close()
            await task  # re-raises the start-up failure
            raise RuntimeError("web server stopped during start-up")
        await asyncio.sleep(0.01)
    return WebServer(server, task, host, sock.getsockname()[1])


def _bind_error(host: str, port: int, exc: OSError) -> str:
    """One line naming the address, the cause and the setting to change."""
    if exc.errno == errno.EADDRINUSE:
        return f"web port {port} on {host} is already in use (set WEB_PORT)"
    if exc.errno == errno.EACCES:
        return f"no permission to listen on web port {port} (set WEB_PORT to 1024 or above)"
    if isinstance(exc, socket.gaierror) or exc.errno == errno.EADDRNOTAVAIL:
        return f"cannot listen on web host {host!r}: {exc.strerror} (set WEB_HOST)"
    return f"cannot listen on {host}:{port}: {exc.strerror or exc} (set WEB_HOST / WEB_PORT)"
