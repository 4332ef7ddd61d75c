"""Telegram transport: python-telegram-bot v22 as HTTP client and update parser.

The gateway builds one `TelegramChannel` from settings and calls `start(sink)`:
- without a webhook URL it long-polls (`getUpdates`) in its own task, hands each update
  to the sink and moves the offset past an update only once the sink has stored it;
- with a webhook URL it registers it (`setWebhook` with a secret token) and `routes()`
  gives `channels.webapp` the endpoint that checks `X-Telegram-Bot-Api-Secret-Token`.
The pipeline calls `parse` and `fetch_media` on stored updates, the outbox calls `send`.

Callback queries (button presses) are answered right after the sink stored them, in the
receive path: the spinner on the citizen's button stops at once, whatever the pipeline's
latency, and `parse` stays a pure function of the stored payload.
"""
from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
import warnings
from datetime import timedelta
from typing import Any, Awaitable, Callable, Literal, Mapping
from urllib.parse import urlsplit

from starlette.routing import Route
from telegram import (
    Bot,
    CallbackQuery,
    Chat,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    Message,
    ReplyKeyboardMarkup,
    Update,
    User,
)
from telegram import Contact as TgContact
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Conflict,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
)

from channels.base import Channel, EventSink, PermanentFailure, RetryLater, Unreachable
from channels.telegram_http import AiohttpRequest
from channels.text_split import split_text
from channels.webapp import NotReady, WebhookRejected, WebhookRoute
from normalizer.media import MediaRejected
from normalizer.messages import Contact, GeoPoint, Inbound, MediaRef, Outbound, utcnow

log = logging.getLogger(__name__)

SECRET_HEADER = "x-telegram-bot-api-secret-token"
ALLOWED_UPDATES = ["message", "callback_query"]
_SECRET_RE = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
_BACKOFF_MAX = 60.0
MAX_TEXT = 4096  # Bot API limit, counted in UTF-16 code units
CONNECTIONS = 32  # to the Bot API at once: the outbox sends at most 16 in a batch, media downloads share it


class TelegramChannel(Channel):
    """One bot token; citizens in private chats, IOC staff in the configured group."""

    name = "telegram"

    def __init__(
        self,
        token: str,
        *,
        media_loader: Callable[[str], Awaitable[bytes]],
        base_url: str = "https://api.telegram.org/bot",
        base_file_url: str = "https://api.telegram.org/file/bot",
        webhook_url: str | None = None,
        secret_token: str | None = None,
        staff_chat_id: int | None = None,
        max_file_bytes: int = 10_000_000,
        poll_timeout: int = 30,
        location_label: str = "📍",
        contact_label: str = "📞",
    ) -> None:
        """Called by the gateway with settings; labels come from templates (wording)."""
        if webhook_url and not (secret_token and _SECRET_RE.match(secret_token)):
            raise ValueError("a webhook needs a secret_token of 1-256 chars [A-Za-z0-9_-]")
        # PTB over aiohttp (`channels.telegram_http`): a third of httpx's CPU per Bot API call.
        self._requests = (AiohttpRequest(CONNECTIONS), AiohttpRequest(1))
        self._bot = Bot(token, base_url=base_url, base_file_url=base_file_url,
                        request=self._requests[0], get_updates_request=self._requests[1])
        self._media_loader = media_loader
        self._webhook_url = webhook_url
        self._secret = secret_token or ""
        self._staff_chat_id = staff_chat_id
        self._max_file_bytes = max_file_bytes
        self._poll_timeout = poll_timeout
        self._labels = (location_label, contact_label)
        self._sink: EventSink | None = None
        self._task: asyncio.Task[None] | None = None
        self._ready = False  # getMe and setWebhook/deleteWebhook done
        self._offset: int | None = None
        self._answering: set[asyncio.Task[None]] = set()  # button answers in flight

    # ---- receiving ---------------------------------------------------------------------
    async def start(self, sink: EventSink) -> None:
        """Called once by the gateway: register the webhook, or start long polling.

        A rejected token fails here, loudly; an unreachable Telegram does not stop the
        gateway: the set-up is retried in the background."""
        self._sink = sink
        try:
            await self._setup()
        except InvalidToken:
            raise
        except TelegramError as exc:
            log.warning("telegram unreachable at start (%s); retrying in the background", exc)
        if not (self._ready and self._webhook_url):
            self._task = asyncio.create_task(self._run(), name="telegram")

    async def _setup(self) -> None:
        await self._bot.initialize()
        if self._webhook_url:
            await self._bot.set_webhook(self._webhook_url, secret_token=self._secret,
                                        allowed_updates=ALLOWED_UPDATES)
        else:
            await self._bot.delete_webhook(drop_pending_updates=False)
        self._ready = True

    async def stop(self) -> None:
        """Called by the gateway on shutdown; confirms the last stored offset to Telegram."""
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._offset is not None:
            await self._confirm_offset()
        await asyncio.gather(*self._answering, return_exceptions=True)
        await self._bot.shutdown()
        for request in self._requests:  # PTB skips them when the bot was never initialised
            await request.shutdown()

    def routes(self) -> list[Route]:
        """Called by the gateway when building the web app; empty in polling mode."""
        if not self._webhook_url:
            return []
        path = urlsplit(self._webhook_url).path or "/telegram/webhook"
        return [WebhookRoute(path, self._verify, self._events, self._receive).route()]

    def _verify(self, headers: Mapping[str, str], _body: bytes) -> None:
        given = headers.get(SECRET_HEADER)
        if given is None:
            raise WebhookRejected("missing secret token header", status=401)
        if not hmac.compare_digest(given.encode(), self._secret.encode()):
            raise WebhookRejected("wrong secret token", status=403)

    def _events(self, payload: Any) -> list[tuple[str, str, dict[str, Any]]]:
        """Called by the web app per delivery; ValueError (→ 400) unless it is an Update."""
        if not isinstance(payload, dict) or not isinstance(payload.get("update_id"), int):
            raise ValueError("not a Telegram update")
        try:
            update = Update.de_json(payload, self._bot)
        except (AttributeError, TypeError, KeyError) as exc:
            raise ValueError(f"malformed Telegram update: {exc!r}") from exc
        return [(str(update.update_id), _sender_of(update), payload)]

    async def _receive(self, message_id: str, sender: str, payload: dict[str, Any]) -> bool:
        """Both receive paths end here: store, then answer a button press if it is new."""
        if self._sink is None:
            raise NotReady("telegram channel not started")
        new = await self._sink(message_id, sender, payload)
        query_id = (payload.get("callback_query") or {}).get("id")
        if new and query_id:  # after the 200, not before: the platform is not kept waiting
            task = asyncio.create_task(self._answer_button(query_id))
            self._answering.add(task)
            task.add_done_callback(self._answering.discard)
        return new

    async def _answer_button(self, query_id: str) -> None:
        try:
            await self._bot.answer_callback_query(query_id)
        except TelegramError as exc:  # cosmetic: the spinner stops by itself later
            log.warning("answerCallbackQuery failed: %s", exc)

    async def _run(self) -> None:
        """Background task: finish the set-up if start() could not, then long-poll."""
        delay = 1.0
        while True:
            try:
                if not self._ready:
                    await self._setup()
                if self._webhook_url:
                    return
                await self._poll_once()
                delay = 1.0
            except InvalidToken:
                log.critical("telegram token rejected; channel stopped")
                return
            except RetryAfter as exc:
                await asyncio.sleep(_seconds(exc))
            except Exception as exc:  # network, Conflict, database down: retry the same offset
                log.warning("telegram: %r; retrying in %.0fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _BACKOFF_MAX)

    async def _poll_once(self) -> None:
        updates = await self._bot.get_updates(offset=self._offset, timeout=self._poll_timeout,
                                              allowed_updates=ALLOWED_UPDATES)
        for update in updates:
            payload = json.loads(update.to_json())
            await self._receive(str(update.update_id), _sender_of(update), payload)
            self._offset = update.update_id + 1

    async def _confirm_offset(self) -> None:
        try:
            await self._bot.get_updates(offset=self._offset, timeout=0, limit=1)
        except TelegramError as exc:  # redelivery after restart is harmless: the sink dedups
            log.info("could not confirm telegram offset on stop: %s", exc)

    # ---- parsing -----------------------------------------------------------------------
    def parse(self, message_id: str, sender: str, payload: dict[str, Any]) -> Inbound | None:
        """Called by the pipeline on a stored update; None for what we do not handle."""
        update = Update.de_json(payload, self._bot)
        if update.callback_query:
            return self._parse_callback(message_id, update.callback_query)
        if update.message:
            return self._parse_message(message_id, update.message)
        return None

    def _chat_kind(self, chat: Chat) -> Literal["private", "group"] | None:
        if chat.type == Chat.PRIVATE:
            return "private"
        if self._staff_chat_id is not None and chat.id == self._staff_chat_id:
            return "group"
        return None

    def _parse_message(self, message_id: str, msg: Message) -> Inbound | None:
        kind = self._chat_kind(msg.chat)
        if kind is None:
            return None
        user = msg.from_user
        return Inbound(
            channel=self.name, sender=str(msg.chat.id), message_id=message_id,
            received_at=msg.date or utcnow(), text=msg.text or msg.caption or "", media=_media(msg),
            location=GeoPoint(lat=msg.location.latitude, lon=msg.location.longitude)
            if msg.location else None,
            contact=_own_contact(msg.contact, user), profile_name=_name(user),
            chat_kind=kind, context=_context(user),
        )

    def _parse_callback(self, message_id: str, query: CallbackQuery) -> Inbound | None:
        kind = self._chat_kind(query.message.chat) if query.message else None
        if kind is None or query.message is None or not query.data:
            return None
        return Inbound(
            channel=self.name, sender=str(query.message.chat.id), message_id=message_id,
            action=query.data, profile_name=_name(query.from_user), chat_kind=kind,
            context=_context(query.from_user),
        )

    # ---- media -------------------------------------------------------------------------
    async def fetch_media(self, media: MediaRef) -> bytes:
        """Called by the normalizer: getFile, then download; MediaRejected("too_large")
        when the declared, announced or downloaded size is over the cap."""
        cap = self._max_file_bytes
        if media.size and media.size > cap:
            raise MediaRejected("too_large")
        try:
            file = await self._bot.get_file(media.ref)
        except BadRequest as exc:  # the Bot API serves at most 20 MB: "file is too big"
            if "too big" in str(exc).lower():
                raise MediaRejected("too_large") from exc
            raise
        if file.file_size and file.file_size > cap:
            raise MediaRejected("too_large")
        data = bytes(await file.download_as_bytearray())
        if len(data) > cap:
            raise MediaRejected("too_large")
        return data

    # ---- sending -----------------------------------------------------------------------
    async def send(self, address: str, message: Outbound) -> str | None:
        """Called by the outbox worker; raises the SendError the outbox should act on.

        Photos go first, then the text in ≤4,096-character parts; the keyboard rides on
        the last message so it stays under the reader's thumb.
        """
        chat_id = int(address)
        chunks = split_text(message.text, MAX_TEXT)
        markup = self._markup(message, private=chat_id > 0)
        try:
            await self._bot.initialize()
            last: Message | None = None
            for i, file_id in enumerate(message.photos):
                is_last = i == len(message.photos) - 1 and not chunks
                last = await self._bot.send_photo(chat_id, await self._photo(file_id),
                                                  reply_markup=markup if is_last else None)
            for i, chunk in enumerate(chunks):
                last = await self._bot.send_message(
                    chat_id, chunk, reply_markup=markup if i == len(chunks) - 1 else None)
        except TelegramError as exc:
            raise _send_error(exc) from exc
        return str(last.message_id) if last else None

    async def _photo(self, file_id: str) -> bytes:
        try:
            return await self._media_loader(file_id)
        except KeyError as exc:  # MediaStore.load: no such file; it will not appear later
            raise PermanentFailure(f"photo {file_id} is not in the media store") from exc

    def _markup(self, message: Outbound,
                private: bool) -> InlineKeyboardMarkup | ReplyKeyboardMarkup | None:
        if message.buttons:  # a message has one markup: buttons win over share requests
            return InlineKeyboardMarkup(
                [[InlineKeyboardButton(b.label, callback_data=b.action)] for b in message.buttons])
        asks = []
        if private and message.ask_location:
            asks.append(KeyboardButton(self._labels[0], request_location=True))
        if private and message.ask_contact:
            asks.append(KeyboardButton(self._labels[1], request_contact=True))
        if not asks:
            return None
        return ReplyKeyboardMarkup([asks], resize_keyboard=True, one_time_keyboard=True)


def _send_error(exc: TelegramError) -> Exception:
    """Map a Bot API error to the outbox's vocabulary (BadRequest is a NetworkError: order!)."""
    text = str(exc)
    if isinstance(exc, RetryAfter):
        return RetryLater(text, after=_seconds(exc))
    if isinstance(exc, Forbidden):
        return Unreachable(text)
    if isinstance(exc, BadRequest):
        return Unreachable(text) if "chat not found" in text.lower() else PermanentFailure(text)
    if isinstance(exc, ChatMigrated):
        return PermanentFailure(f"{text}: update TELEGRAM_STAFF_CHAT_ID")
    if isinstance(exc, (NetworkError, Conflict, InvalidToken)):  # 5xx, timeouts, bad config
        return RetryLater(text)
    return PermanentFailure(text)


def _seconds(exc: RetryAfter) -> float:
    with warnings.catch_warnings():  # PTB warns that retry_after will become a timedelta
        warnings.simplefilter("ignore")
        value = exc.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def _sender_of(update: Update) -> str:
    chat = update.effective_chat
    user = update.effective_user
    return str(chat.id if chat else user.id if user else "")


def _media(msg: Message) -> list[MediaRef]:
    """Largest size of a photo; any document (the normalizer refuses non-images by content)."""
    if msg.photo:
        best = max(msg.photo, key=lambda p: p.width * p.height)
        return [MediaRef(ref=best.file_id, declared_type="image/jpeg", size=best.file_size)]
    if msg.document:
        doc = msg.document
        return [MediaRef(ref=doc.file_id, declared_type=doc.mime_type,
                         filename=doc.file_name, size=doc.file_size)]
    return []


def _own_contact(contact: TgContact | None, user: User | None) -> Contact | None:
    """Only a contact the sender shared of themself is a verified phone number."""
    if contact is None or user is None or contact.user_id != user.id:
        return None
    name = " ".join(filter(None, [contact.first_name, contact.last_name])) or None
    return Contact(phone=contact.phone_number, name=name)


def _name(user: User | None) -> str | None:
    return user.full_name if user else None


def _context(user: User | None) -> dict[str, str]:
    """Who wrote it: the chat is the address, but in the staff group people differ."""
    return {"user_id": str(user.id)} if user else {}
