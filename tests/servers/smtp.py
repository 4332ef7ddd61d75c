"""A real SMTP server (aiosmtpd) on loopback that delivers into the Dovecot test mailbox.

`tests/test_email.py` points the gateway's `EmailChannel.send` at it, then reads the reply
back over IMAP: the whole way a reply travels, with no mock in between. Recipients listed in
`refuse` get a permanent "550 no such user", as a real server would answer.
"""
from __future__ import annotations

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.servers.dovecot import DovecotServer, free_port


class MaildirHandler:
    """aiosmtpd handler: each accepted message is dropped into the Dovecot user's Maildir."""

    def __init__(self, dovecot: DovecotServer) -> None:
        self.dovecot = dovecot
        self.refuse: set[str] = set()

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        if address.lower() in self.refuse:
            return "550 5.1.1 <%s>: mailbox unavailable" % address
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content
        assert raw is not None  # handle_DATA runs once the message has arrived
        self.dovecot.deliver(raw if isinstance(raw, bytes) else raw.encode())
        return "250 Message accepted for delivery"


class SmtpServer:
    """Start/stop wrapper: `host`, `port` for the channel, `handler.refuse` to reject addresses."""

    def __init__(self, dovecot: DovecotServer) -> None:
        self.host, self.port = "127.0.0.1", free_port()
        self.handler = MaildirHandler(dovecot)
        self.controller = Controller(self.handler, hostname=self.host, port=self.port)

    def start(self) -> None:
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()
