"""The gateway's configuration: read once from the environment and `.env`, then passed down.

`run_bots.py` builds one `Settings` and hands the pieces each part needs to it; no other
module reads `os.environ`. Every variable is documented in `.env.example`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    # Database: a real MongoDB when MONGODB_URI is set, else the embedded server.
    mongodb_uri: str | None = None
    mongodb_database: str = "ioc_gateway"
    mongodb_timeout_ms: int = 5000
    embedded_db_path: Path = Path("data/db")
    embedded_db_port: int = 27817

    # Province policy (working calendar, fields, agencies, deadlines).
    policy_file: Path = Path("policies/quang_nam.yaml")
    # IOC staff membership (roles, Telegram ids, e-mails); unset: no staff console.
    staff_file: str | None = None  # a path; empty means none

    # Web app for webhooks, health and the portal.
    web_host: str = "127.0.0.1"
    web_port: int = 8080
    max_body_bytes: int = 1_000_000
    # Open311 GeoReport v2: the key partner apps send to file reports (unset: filing is off).
    open311_api_key: SecretStr | None = None

    # Console channel: on when no platform credentials are set, or when forced.
    console: bool | None = None

    # Telegram.
    telegram_bot_token: SecretStr | None = None
    telegram_webhook_url: str | None = None
    telegram_secret_token: SecretStr | None = None
    telegram_staff_chat_id: int | None = None
    telegram_base_url: str = "https://api.telegram.org/bot"
    telegram_base_file_url: str = "https://api.telegram.org/file/bot"

    # Zalo Official Account (all four secrets needed to enable the channel).
    zalo_app_id: str | None = None
    zalo_app_secret: SecretStr | None = None
    zalo_oa_secret_key: SecretStr | None = None
    zalo_refresh_token: SecretStr | None = None
    zalo_access_token: SecretStr | None = None
    zalo_webhook_path: str = "/zalo/webhook"
    zalo_api_url: str = "https://openapi.zalo.me"
    zalo_oauth_url: str = "https://oauth.zaloapp.com"
    # How old a correctly signed delivery may be: Zalo redelivers with the original timestamp
    # for about 2 hours (+30 s … +110 min); an older one is refused as a replay.
    zalo_redelivery_seconds: float = 10_800.0

    # Facebook Messenger (a Page and a Meta app).
    facebook_page_token: SecretStr | None = None
    facebook_app_secret: SecretStr | None = None
    facebook_verify_token: SecretStr | None = None
    facebook_graph_url: str = "https://graph.facebook.com"
    facebook_api_version: str = "v24.0"
    facebook_webhook_path: str = "/facebook/webhook"
    facebook_message_tags: str = ""  # e.g. "result=HUMAN_AGENT,reminder=HUMAN_AGENT"

    # E-mail inbox (citizens and agencies).
    email_address: str | None = None
    email_display_name: str = "Trung tâm IOC"
    email_imap_host: str | None = None
    email_imap_port: int = 993
    email_imap_ssl: bool = True
    email_imap_user: str | None = None
    email_imap_password: SecretStr | None = None
    email_smtp_host: str | None = None
    email_smtp_port: int = 587
    email_smtp_security: Literal["starttls", "ssl", "none"] = "starttls"
    email_smtp_user: str | None = None
    email_smtp_password: SecretStr | None = None
    email_poll_seconds: float = 60.0
    email_max_message_bytes: int = 11_000_000  # larger mail: its text and the photos that fit

    # The IOC's own mailbox: late cases, unroutable cases and flagged agency replies go here.
    ioc_email: str | None = None

    # Agency loop: secret signing the reply addresses of agency e-mails (replies/tokens.py).
    agency_token_secret: SecretStr | None = None

    # Limits and timings.
    max_photo_bytes: int = 10_000_000
    max_photo_pixels: int = 40_000_000
    max_photos_per_report: int = 5
    outbox_max_attempts: int = 8
    worker_poll_seconds: float = 0.5

    log_level: str = Field(default="INFO")

    @property
    def has_platform_credentials(self) -> bool:
        return bool(self.telegram_bot_token or self.email_imap_host or self.zalo_app_id
                    or self.facebook_page_token)

    @property
    def console_enabled(self) -> bool:
        return self.console if self.console is not None else not self.has_platform_credentials
