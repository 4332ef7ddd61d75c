"""Shared fixtures: a real embedded database over TCP, and a guard against the internet."""
from __future__ import annotations

import ipaddress
import socket
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, AsyncIterator, Iterator

import pytest

from store.database import Database, connect
from store.embedded import EmbeddedServer, free_port

if TYPE_CHECKING:
    import _socket  # the C base class that declares socket.socket's connect methods

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_getaddrinfo = socket.getaddrinfo


def _loopback(host: object) -> bool:
    if host in ("localhost", "", None):
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


def _guard_address(address: object) -> None:
    if isinstance(address, tuple) and not _loopback(address[0]):
        raise RuntimeError(f"test tried to reach the network: {address!r}")


def _guarded_connect(self: _socket.socket, address: Any) -> None:  # Any: whatever connect() takes
    _guard_address(address)
    return _real_connect(self, address)


def _guarded_connect_ex(self: _socket.socket, address: Any) -> int:
    _guard_address(address)
    return _real_connect_ex(self, address)


def _guarded_getaddrinfo(host, *args, **kwargs):
    if not _loopback(host):
        raise RuntimeError(f"test tried to resolve a non-local host: {host!r}")
    return _real_getaddrinfo(host, *args, **kwargs)


@pytest.fixture(autouse=True, scope="session")
def no_internet() -> Iterator[None]:
    """Every test runs with sockets limited to loopback: nothing may reach the internet."""
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]
    socket.getaddrinfo = _guarded_getaddrinfo
    yield
    socket.socket.connect = _real_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _real_connect_ex  # type: ignore[method-assign]
    socket.getaddrinfo = _real_getaddrinfo


@pytest.fixture(scope="session")
def db_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    server = EmbeddedServer(tmp_path_factory.mktemp("db"), free_port(), test_commands=True)
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def database(db_server: EmbeddedServer) -> AsyncIterator[Database]:
    """A fresh, empty database on the shared embedded server."""
    db = await connect(db_server.uri, f"t_{uuid.uuid4().hex[:12]}", timeout_ms=5000)
    yield db
    await db.client.drop_database(db.db.name)
    await db.close()


FIXTURES = Path(__file__).parent / "fixtures"
