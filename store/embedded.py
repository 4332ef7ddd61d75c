"""The embedded MongoDB-wire server (SecantusDB) run as a child process.

`run_bots.py` starts one when `MONGODB_URI` is unset; the test suite starts its own on a
free port. SecantusDB is GPL-2.0-only, so it is only ever spawned, never imported.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from pymongo import MongoClient
from pymongo.errors import PyMongoError

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1


class EmbeddedServerError(RuntimeError):
    """A one-line reason the embedded database could not start."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_taken(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _check_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EmbeddedServerError(f"cannot create database directory {path}: {exc.strerror}") from None
    if not os.access(path, os.W_OK):
        raise EmbeddedServerError(f"database directory {path} is not writable")


def _die_with_parent() -> None:
    """Runs in the child before exec: ask Linux to send SIGTERM when the gateway dies."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass  # not Linux: the server outlives a killed gateway and is stopped by hand


class EmbeddedServer:
    """Owns the child process; `start` waits for `ping`, `stop` shuts it down cleanly."""

    def __init__(self, data_dir: Path, port: int, *, test_commands: bool = False) -> None:
        self.data_dir = Path(data_dir)
        self.port = port
        self.test_commands = test_commands
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        """No retryable writes: the embedded server remembers each one for 30 minutes (up to
        10,000) and walks the whole list on every write, so its insert rate fell from 330 to 176
        a second within 12 s of writing (400/s steady without). On one node over loopback
        there is no failover for a driver retry to ride out; our callers already treat a failed
        write as not done (503 to the platform, the batch redone, the mark retried)."""
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true&retryWrites=false"

    @property
    def pid(self) -> int:
        """The server process (the benchmark reads its CPU time)."""
        assert self._proc is not None, "not started"
        return self._proc.pid

    def start(self, timeout: float = 30.0) -> None:
        _check_dir(self.data_dir)
        if _port_taken(self.port):
            raise EmbeddedServerError(f"port {self.port} is already in use (set EMBEDDED_DB_PORT)")
        cmd = [sys.executable, "-m", "secantus", "--storage-path", str(self.data_dir),
               "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "WARNING"]
        if self.test_commands:
            cmd.append("--enable-test-commands")
        log_file = open(self.data_dir / "server.log", "ab")
        # Own session: Ctrl-C reaches only the gateway, which then stops the server cleanly;
        # the parent-death signal stops it too if the gateway itself is killed.
        self._proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, start_new_session=True,
                                      preexec_fn=_die_with_parent)
        log_file.close()
        self._wait_ready(timeout)
        log.info("embedded database listening on 127.0.0.1:%s (data in %s)", self.port, self.data_dir)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        client: MongoClient[dict[str, Any]] = MongoClient(self.uri, serverSelectionTimeoutMS=500)
        try:
            while time.monotonic() < deadline:
                if self._proc is not None and self._proc.poll() is not None:
                    raise EmbeddedServerError(f"embedded database exited at start: {self._last_log_line()}")
                try:
                    client.admin.command("ping")
                    return
                except PyMongoError:
                    time.sleep(0.2)
        finally:
            client.close()
        self.stop()
        raise EmbeddedServerError(f"embedded database did not answer ping within {timeout:.0f} s")

    def _last_log_line(self) -> str:
        try:
            lines = (self.data_dir / "server.log").read_text(errors="replace").strip().splitlines()
        except OSError:
            return "no log"
        return lines[-1] if lines else "no output"

    def stop(self, timeout: float = 15.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("embedded database did not stop in %.0f s; killing it", timeout)
            proc.kill()
            proc.wait()

    def kill(self) -> None:
        """Tests use this to simulate a crash of the database server."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None
