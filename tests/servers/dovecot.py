"""A real Dovecot IMAP server on loopback for the e-mail tests.

`tests/test_email.py` starts one per test session, appends citizen mail into it, restarts it
in the middle of a read and reads back what the gateway sent (through `tests/servers/smtp.py`,
which delivers into the same Maildir). The facts that make Dovecot run as root in a temporary
directory are in shared/docs/test-servers.md; a missing `dovecot` binary is an error, never a skip.
"""
from __future__ import annotations

import contextlib
import grp
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from aioimaplib import aioimaplib

from store.embedded import free_port  # noqa: F401 - re-exported for the test modules

CONFIG = """\
protocols = imap
listen = 127.0.0.1
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_login_user = dovenull
default_internal_user = dovecot
default_internal_group = dovecot
first_valid_uid = 100
mail_location = maildir:{root}/mail/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {root}/passwd
}}
userdb {{
  driver = static
  args = uid=dovecot gid=dovecot home={root}/mail/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
"""


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class DovecotServer:
    """One Dovecot instance with one mailbox user, in its own temporary directory."""

    def __init__(self, user: str = "phananh@ioc.example.vn", password: str = "mat-khau") -> None:
        binary = shutil.which("dovecot")
        if binary is None:
            raise RuntimeError("dovecot is not installed: run `bash scripts/install-test-deps.sh`")
        self.binary = binary
        self.user, self.password = user, password
        self.host, self.port = "127.0.0.1", free_port()
        self.root = Path(tempfile.mkdtemp(prefix="dovecot-"))
        self.root.chmod(0o755)  # the dovecot and dovenull users must traverse it
        self.config = self.root / "dovecot.conf"
        self.uid = pwd.getpwnam("dovecot").pw_uid
        self.gid = grp.getgrnam("dovecot").gr_gid

    @property
    def maildir(self) -> Path:
        return self.root / "mail" / self.user

    def start(self) -> None:
        """Write the configuration (first time) and start; return once the port answers."""
        if not self.config.exists():
            self._write_files()
        subprocess.run([self.binary, "-c", str(self.config)], check=True)
        self._wait(lambda: port_open(self.port), "start")

    def stop(self) -> None:
        """Stop the server, its client sessions included, as a real restart does.

        `dovecot stop` ends the master, but running `imap` processes stay with their clients
        (seen with 2.3.19), so the children of this master are ended by pid afterwards.
        """
        children = self._children()
        subprocess.run([self.binary, "-c", str(self.config), "stop"], check=False)
        self._wait(lambda: not port_open(self.port), "stop")
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        self._wait(lambda: not any(Path(f"/proc/{pid}").exists() for pid in children), "end its children")

    def _children(self) -> list[int]:
        """Pids whose parent is this instance's master (from /proc; Linux only)."""
        try:
            master = int((self.root / "run" / "master.pid").read_text().strip())
        except (OSError, ValueError):
            return []
        pids = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, IndexError, ValueError):
                if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == master:
                    pids.append(int(stat.parent.name))
        return pids

    def restart(self) -> None:
        self.stop()
        self.start()

    def remove(self) -> None:
        """Stop (if running) and delete the temporary directory."""
        if port_open(self.port) or self._children():
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def deliver(self, raw: bytes) -> None:
        """Drop a message into the Maildir's new/ as the dovecot user would (used by SMTP)."""
        name = f"{time.time():.6f}.{uuid.uuid4().hex}.ioc-test"
        tmp_file = self.maildir / "tmp" / name
        tmp_file.write_bytes(raw)
        os.chown(tmp_file, self.uid, self.gid)
        tmp_file.rename(self.maildir / "new" / name)

    async def client(self) -> aioimaplib.IMAP4:
        """A logged-in IMAP client with INBOX selected; the caller logs out."""
        imap = aioimaplib.IMAP4(host=self.host, port=self.port, timeout=10)
        await imap.wait_hello_from_server()
        await imap.login(self.user, self.password)
        await imap.select("INBOX")
        return imap

    async def append(self, raw: bytes, flags: str | None = None) -> None:
        """Put one raw RFC 822 message into INBOX over IMAP (unseen unless flags say so)."""
        imap = await self.client()
        try:
            response = await imap.append(raw, mailbox="INBOX", flags=flags)
            assert response.result == "OK", response
        finally:
            await imap.logout()

    async def clear(self) -> None:
        """Delete every INBOX message, so each test starts from an empty mailbox."""
        imap = await self.client()
        try:
            await imap.store("1:*", "+FLAGS.SILENT", r"(\Deleted)")
            await imap.expunge()
        finally:
            await imap.logout()

    async def messages(self) -> list[tuple[str, bytes]]:
        """Every INBOX message as (FLAGS line, raw bytes), read without setting \\Seen."""
        imap = await self.client()
        try:
            response = await imap.fetch("1:*", "(FLAGS BODY.PEEK[])")
        finally:
            await imap.logout()
        found, lines = [], response.lines
        for index, line in enumerate(lines[:-1]):
            if isinstance(line, bytes) and b"FETCH" in line and isinstance(lines[index + 1], bytearray):
                found.append((line.decode(errors="replace"), bytes(lines[index + 1])))
        return found

    def _write_files(self) -> None:
        self.config.write_text(CONFIG.format(root=self.root, port=self.port))
        (self.root / "passwd").write_text(f"{self.user}:{{PLAIN}}{self.password}\n")
        for sub in ("cur", "new", "tmp"):
            (self.maildir / sub).mkdir(parents=True, exist_ok=True)
        for path in [self.root / "mail", self.maildir, *self.maildir.iterdir()]:
            os.chown(path, self.uid, self.gid)

    def _wait(self, ready, what: str, seconds: float = 15.0) -> None:
        deadline = time.monotonic() + seconds
        while not ready():
            if time.monotonic() > deadline:
                log = (self.root / "dovecot.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"dovecot did not {what} on port {self.port}:\n{log}")
            time.sleep(0.05)
