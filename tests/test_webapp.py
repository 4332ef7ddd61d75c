"""The shared web app: one error policy for every webhook, and the health probe."""
from __future__ import annotations

import json
import socket
from typing import Any, Mapping

import httpx
import pytest
from pymongo.errors import ServerSelectionTimeoutError
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from channels.webapp import WebhookRejected, WebhookRoute, WebServerError, build_app, serve

SECRET = "s3cret"


def verify(headers: Mapping[str, str], body: bytes) -> None:
    if "x-secret" not in headers:
        raise WebhookRejected("missing", status=401)
    if headers["x-secret"] != SECRET:
        raise WebhookRejected("wrong", status=403)


def events(payload: Any) -> list[tuple[str, str, dict[str, Any]]]:
    return [(str(e["id"]), e["from"], e) for e in payload["entries"]]


class Sink:
    """Stores events idempotently like the real one; can be told the database is down."""

    def __init__(self) -> None:
        self.stored: dict[str, dict[str, Any]] = {}
        self.down = False

    async def __call__(self, message_id: str, sender: str, payload: dict[str, Any]) -> bool:
        if self.down:
            raise ServerSelectionTimeoutError("localhost:27017: [Errno 111] Connection refused")
        if message_id in self.stored:
            return False
        self.stored[message_id] = payload
        return True


class Health:
    def __init__(self) -> None:
        self.down = False

    async def __call__(self) -> dict[str, Any]:
        if self.down:
            raise ServerSelectionTimeoutError("no servers found")
        return {"database": "ok", "channels": ["test"]}


@pytest.fixture
def sink() -> Sink:
    return Sink()


@pytest.fixture
def health() -> Health:
    return Health()


@pytest.fixture
def client(sink: Sink, health: Health) -> httpx.AsyncClient:
    hook = WebhookRoute("/hooks/test", verify, events, sink)
    app = build_app([hook], health, max_body_bytes=2_000)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://gateway.test")


def body(*ids: int) -> bytes:
    return json.dumps({"entries": [{"id": i, "from": "u1", "text": "xin chào"} for i in ids]}).encode()


async def post(client: httpx.AsyncClient, content: bytes, secret: str | None = SECRET) -> httpx.Response:
    headers = {"content-type": "application/json"}
    if secret is not None:
        headers["x-secret"] = secret
    return await client.post("/hooks/test", content=content, headers=headers)


async def test_stores_each_event_and_answers_200(client: httpx.AsyncClient, sink: Sink) -> None:
    response = await post(client, body(1, 2))
    assert response.status_code == 200
    assert response.json() == {"ok": True, "received": 2, "new": 2}
    assert set(sink.stored) == {"1", "2"}


async def test_redelivery_is_acknowledged_but_not_new(client: httpx.AsyncClient, sink: Sink) -> None:
    await post(client, body(1))
    response = await post(client, body(1))
    assert response.status_code == 200 and response.json()["new"] == 0
    assert list(sink.stored) == ["1"]


async def test_body_over_the_limit_is_413(client: httpx.AsyncClient, sink: Sink) -> None:
    response = await post(client, body(*range(200)))
    assert response.status_code == 413
    assert sink.stored == {}


async def test_body_over_the_limit_without_content_length_is_413(client: httpx.AsyncClient) -> None:
    async def chunks():
        for _ in range(10):
            yield b" " * 500

    response = await client.post("/hooks/test", content=chunks(), headers={"x-secret": SECRET})
    assert response.status_code == 413


@pytest.mark.parametrize("content", [b"{not json", b'{"entries": [{"no_id": 1}]}', b"[1, 2]"])
async def test_malformed_payload_is_400(client: httpx.AsyncClient, content: bytes) -> None:
    response = await post(client, content)
    assert response.status_code == 400
    assert response.json() == {"ok": False, "error": "malformed payload"}


async def test_missing_signature_is_401_and_wrong_one_403(client: httpx.AsyncClient, sink: Sink) -> None:
    assert (await post(client, body(1), secret=None)).status_code == 401
    assert (await post(client, body(1), secret="guess")).status_code == 403
    assert sink.stored == {}


async def test_database_down_is_503_without_traceback(client: httpx.AsyncClient, sink: Sink) -> None:
    sink.down = True
    response = await post(client, body(1))
    assert response.status_code == 503
    assert response.json() == {"ok": False, "error": "temporarily unavailable"}
    assert "Traceback" not in response.text and "27017" not in response.text


async def test_unexpected_error_is_a_short_json_500() -> None:
    async def broken_sink(message_id: str, sender: str, payload: dict[str, Any]) -> bool:
        raise RuntimeError("bug with secret detail")

    async def broken_route(_request: Any) -> PlainTextResponse:
        raise RuntimeError("portal bug with secret detail")

    app = build_app([WebhookRoute("/h", verify, events, broken_sink)], Health(),
                    extra_routes=[Route("/portal", broken_route)])
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as client:
        hook = await client.post("/h", content=body(1), headers={"x-secret": SECRET})
        portal = await client.get("/portal")
    for response in (hook, portal):
        assert response.status_code == 500
        assert response.json() == {"ok": False, "error": "internal error"}
        assert "secret detail" not in response.text


async def test_healthz_ok_and_503_when_database_unreachable(
        client: httpx.AsyncClient, health: Health) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"database": "ok", "channels": ["test"]}
    health.down = True
    response = await client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"database": "unreachable"}


async def test_serve_on_a_free_loopback_port(sink: Sink, health: Health) -> None:
    app = build_app([WebhookRoute("/hooks/test", verify, events, sink)], health)
    server = await serve(app, "127.0.0.1", 0)
    try:
        async with httpx.AsyncClient(base_url=server.url) as client:
            assert (await client.get("/healthz")).status_code == 200
            response = await post(client, body(7))
        assert response.status_code == 200 and "7" in sink.stored
    finally:
        await server.stop()
    assert server.task.done()


async def test_answers_leave_without_waiting_for_the_clients_ack(sink: Sink, health: Health) -> None:
    """Nagle's algorithm is off on the connections the web app accepts: with it on, every
    answer on a kept-alive connection waited ~40 ms for the platform's delayed ACK."""
    server = await serve(build_app([WebhookRoute("/hooks/test", verify, events, sink)], health), "127.0.0.1", 0)
    try:
        async with httpx.AsyncClient(base_url=server.url) as client:
            assert (await post(client, body(8))).status_code == 200
            sockets = [c.transport.get_extra_info("socket") for c in server.server.server_state.connections]
            assert sockets and all(s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) for s in sockets)
    finally:
        await server.stop()


async def test_serve_on_a_taken_port_is_a_one_line_error(sink: Sink, health: Health) -> None:
    app = build_app([WebhookRoute("/hooks/test", verify, events, sink)], health)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(WebServerError) as raised:
            await serve(app, "127.0.0.1", port)
    assert str(raised.value) == f"web port {port} on 127.0.0.1 is already in use (set WEB_PORT)"
    with pytest.raises(WebServerError, match="out of range"):
        await serve(app, "127.0.0.1", 70_000)
