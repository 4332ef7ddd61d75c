"""The one table of transports: name → factory building the channel from the settings.

`bots/gateway.py` walks this table; a factory returns None when its channel is not
configured. Adding a transport means one module in `channels/` and one row here.
"""
from __future__ import annotations

from typing import Awaitable, Callable

from channels.base import Channel
from normalizer.texts import Texts
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


def _zalo(settings: Settings, media: MediaLoader) -> Channel | None:
    if not settings.zalo_app_id:
        return None
    from channels.zalo import ZaloChannel
    secrets = _required(settings, "zalo_app_secret", "zalo_oa_secret_key", "zalo_refresh_token")
    access = settings.zalo_access_token
    staff = settings.telegram_staff_chat_id if settings.telegram_bot_token else None
    return ZaloChannel(
        app_id=settings.zalo_app_id, app_secret=secrets[0], oa_secret_key=secrets[1],
        refresh_token=secrets[2], access_token=access.get_secret_value() if access else None,
        api_url=settings.zalo_api_url, oauth_url=settings.zalo_oauth_url,
        webhook_path=settings.zalo_webhook_path, media_loader=media,
        max_file_bytes=settings.max_photo_bytes, redelivery_seconds=settings.zalo_redelivery_seconds,
        staff_alert=("telegram", str(staff)) if staff is not None else None)


def _facebook(settings: Settings, media: MediaLoader) -> Channel | None:
    if settings.facebook_page_token is None:
        return None
    from channels.facebook import FacebookChannel
    secret, verify = _required(settings, "facebook_app_secret", "facebook_verify_token")
    tags = dict(p.split("=", 1) for p in settings.facebook_message_tags.replace(" ", "").split(",") if "=" in p)
    return FacebookChannel(
        page_token=settings.facebook_page_token.get_secret_value(), app_secret=secret,
        verify_token=verify, graph_url=settings.facebook_graph_url,
        api_version=settings.facebook_api_version, webhook_path=settings.facebook_webhook_path,
        message_tags=tags, media_loader=media, max_file_bytes=settings.max_photo_bytes)


def _required(settings: Settings, *names: str) -> list[str]:
    """The secrets a half-configured channel still lacks end the start with their names."""
    missing = [n.upper() for n in names if getattr(settings, n) is None]
    if missing:
        raise ValueError(f"missing settings: {', '.join(missing)}")
    return [getattr(settings, n).get_secret_value() for n in names]


CHANNELS: dict[str, Factory] = {
    "console": _console,
    "telegram": _telegram,
    "email": _email,
    "zalo": _zalo,
    "facebook": _facebook,
}


def build_channels(settings: Settings, media: MediaLoader) -> dict[str, Channel]:
    built = {name: factory(settings, media) for name, factory in CHANNELS.items()}
    return {name: channel for name, channel in built.items() if channel is not None}
