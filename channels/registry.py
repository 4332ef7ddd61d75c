"""The one table of transports: name → factory building the channel from the settings.

`bots/gateway.py` walks this table; a factory returns None when its channel is not
configured. Adding a transport means one module in `channels/` and one row here.
"""
from __future__ import annotations

from typing import Awaitable, Callable

from bots.texts import Texts
from channels.base import Channel
from settings import Settings

MediaLoader = Callable[[str], Awaitable[bytes]]
Factory = Callable[[Settings, MediaLoader], Channel | None]


def _console(settings: Settings, media: MediaLoader) -> Channel | None:
    from channels.console import ConsoleChannel
    return ConsoleChannel() if settings.console_enabled else None


def _telegram(settings: Settings, media: MediaLoader) -> Channel | None:
    if settings.telegram_bot_token is None:
        return None
    from channels.telegram import TelegramChannel
    secret = settings.telegram_secret_token
    return TelegramChannel(
        token=settings.telegram_bot_token.get_secret_value(),
        base_url=settings.telegram_base_url, base_file_url=settings.telegram_base_file_url,
        webhook_url=settings.telegram_webhook_url,
        secret_token=secret.get_secret_value() if secret else None,
        staff_chat_id=settings.telegram_staff_chat_id, media_loader=media,
        max_file_bytes=settings.max_photo_bytes,
        location_label=Texts().render("labels", "vi", key="share_location"),
        contact_label=Texts().render("labels", "vi", key="share_contact"))


def _email(settings: Settings, media: MediaLoader) -> Channel | None:
    if not (settings.email_imap_host and settings.email_address):
        return None
    from channels.email import EmailChannel
    imap_pw, smtp_pw = settings.email_imap_password, settings.email_smtp_password
    return EmailChannel(
        imap_host=settings.email_imap_host, imap_port=settings.email_imap_port,
        imap_user=settings.email_imap_user or settings.email_address,
        imap_password=imap_pw.get_secret_value() if imap_pw else "",
        imap_ssl=settings.email_imap_ssl,
        smtp_host=settings.email_smtp_host or settings.email_imap_host,
        smtp_port=settings.email_smtp_port, smtp_user=settings.email_smtp_user,
        smtp_password=smtp_pw.get_secret_value() if smtp_pw else None,
        smtp_security=settings.email_smtp_security, address=settings.email_address,
        display_name=settings.email_display_name, media_loader=media,
        max_attachment_bytes=settings.max_photo_bytes, max_message_bytes=settings.email_max_message_bytes,
        poll_seconds=settings.email_poll_seconds)


CHANNELS: dict[str, Factory] = {
    "console": _console,
    "telegram": _telegram,
    "email": _email,
}


def build_channels(settings: Settings, media: MediaLoader) -> dict[str, Channel]:
    built = {name: factory(settings, media) for name, factory in CHANNELS.items()}
    return {name: channel for name, channel in built.items() if channel is not None}
