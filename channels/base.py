"""What every transport offers the gateway, and how it reports a failed send.

`run_bots.py` builds the enabled channels from the registry in `channels/__init__.py`;
the pipeline calls `parse` and `fetch_media` on stored raw events, the outbox worker
calls `send`. Platform quirks are optional hooks here with harmless defaults.
"""
from __future__ import annotations

from typing import Any, Awaitable, Callable, Protocol

from normalizer.messages import Inbound, MediaRef, Outbound


class RawEvent(dict):
    """A platform payload as received; stored verbatim before it is acknowledged."""


# The gateway gives each channel this callback; it stores the raw event (idempotently)
# and returns True if it was new. Channels call it before acknowledging the platform.
EventSink = Callable[[str, str, dict[str, Any]], Awaitable[bool]]  # (message_id, sender, payload)


class SendError(Exception):
    """Base of the send outcomes the outbox understands."""


class RetryLater(SendError):
    def __init__(self, reason: str, after: float | None = None) -> None:
        super().__init__(reason)
        self.after = after


class WindowClosed(SendError):
    """The platform no longer lets us message this person (Zalo/Facebook windows)."""


class Unreachable(SendError):
    """The person blocked the bot or the address does not exist: stop trying."""


class PermanentFailure(SendError):
    """The platform refused the message for good (bad request, too big…)."""


class Channel(Protocol):
    name: str

    async def start(self, sink: EventSink) -> None:
        """Begin receiving (polling loop, IMAP reader, or nothing for webhooks)."""

    async def stop(self) -> None: ...

    async def send(self, address: str, message: Outbound) -> str | None:
        """Deliver one message; return the platform's message id. Raise a SendError."""

    def parse(self, message_id: str, sender: str, payload: dict[str, Any]) -> Inbound | None:
        """Turn a stored raw event into an Inbound; None for events we ignore."""

    async def fetch_media(self, media: MediaRef) -> bytes:
        """Download an attachment referenced by `parse`."""


# Optional hooks a channel may define (the pipeline uses defaults otherwise):
#   skip_reason(payload) -> (status, reason)   why `parse` returned None ("ignored" by default)
#   undeliverable(payload) -> address | None    a bounce: this address cannot be reached
#   routes() -> list[Route]                     webhook endpoints for the shared web app
