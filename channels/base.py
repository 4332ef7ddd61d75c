"""What every transport offers the gateway, and how it reports a failed send.

`bots/gateway.py` gets the enabled channels from the registry (`channels/registry.py`);
the pipeline calls `parse` and `fetch_media` on stored raw events, the outbox worker
calls `send`. Platform quirks are hooks declared on `Channel` with harmless defaults.
"""
from __future__ import annotations

from typing import Any, Awaitable, Callable

from starlette.routing import Route

from normalizer.messages import Inbound, MediaRef, Outbound
from store.database import Database


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


class Channel:
    """The base of every transport: what the gateway, the pipeline and the outbox call.

    A channel defines `name`, `send` and `parse`; every other operation is a hook with a
    harmless default here, overridden only where the platform needs it. The registry
    (`channels/registry.py`) builds each from its settings; one row per channel.
    """

    name: str = ""

    def bind(self, database: Database) -> None:
        """Called once by the gateway before `start`: keep what the channel stores itself
        (tokens, raw mail); nothing by default."""

    async def start(self, sink: EventSink) -> None:
        """Begin receiving (polling loop, IMAP reader); webhooks need nothing here (`routes`)."""

    async def stop(self) -> None:
        """Stop receiving and close connections."""

    def routes(self) -> list[Route]:
        """Webhook endpoints for the shared web app; none by default."""
        return []

    async def send(self, address: str, message: Outbound) -> str | None:
        """Deliver one message; return the platform's message id. Raise a SendError."""
        raise NotImplementedError

    def parse(self, message_id: str, sender: str, payload: dict[str, Any]) -> Inbound | None:
        """Turn a stored raw event into an Inbound; None for events no bot is to see."""
        raise NotImplementedError

    async def fetch_media(self, media: MediaRef) -> bytes:
        """Download an attachment referenced by `parse`."""
        raise PermanentFailure(f"{self.name or type(self).__name__} has no media to fetch")

    def skip_reason(self, payload: dict[str, Any]) -> tuple[str, str | None]:
        """Why `parse` returned None: the event's final status and reason ("ignored" by default)."""
        return "ignored", None

    def undeliverable(self, payload: dict[str, Any]) -> str | None:
        """For a bounce or an unsubscription: the address that can no longer be reached."""
        return None
