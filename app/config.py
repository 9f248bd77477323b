"""The one Settings object. Every environment variable the product reads is declared here and in .env.example."""

from __future__ import annotations

import ipaddress
import json
from functools import lru_cache
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cryptography.fernet import Fernet
from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.kit.money import CURRENCY_EXPONENTS

DEMO_DATABASE_URL = "sqlite+aiosqlite:///./var/vpnshop.sqlite3"


class ConfigError(Exception):
    """A setting is missing or wrong; the message is one line naming the variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    # --- runtime ---
    demo_mode: bool = False
    debug: bool = False
    public_base_url: str = "http://127.0.0.1:8000"
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    serve_workers: int = Field(1, ge=1, le=64)
    # Reverse proxies (addresses or CIDRs) whose X-Forwarded-For/-Proto `vpnshop serve` believes; from anyone
    # else the headers are ignored, so a client cannot pick its own address (rate limits, allow-lists, audit).
    forwarded_allow_ips: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["127.0.0.1", "::1"])
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool = True
    # One JSON line per request (method, path with secrets masked, status, duration, request id).
    access_log: bool = False
    timezone: str = "Europe/Moscow"
    # The admin's revenue figures are also shown in this currency, through the dated exchange rates staff keep.
    reporting_currency: str = "RUB"
    # The currency a customer sees first when they never chose one and their language has none of its own
    # (ru → RUB, hi → INR, id → IDR: app/payments/pricing.py), if some plan is priced in it.
    default_currency: str = "USD"
    default_language: Literal["ru", "en"] = "ru"
    sentry_dsn: str = ""
    # Where `vpnshop worker` and `vpnshop bot` serve /metrics and /healthz (the web app serves them itself); 0: off.
    metrics_host: str = "127.0.0.1"
    worker_metrics_port: int = Field(9101, ge=0, le=65535)
    bot_metrics_port: int = Field(9102, ge=0, le=65535)

    # --- security ---
    secret_key: str = ""
    jwt_secret_key: str = ""
    # Comma-separated Fernet keys: the first encrypts, all decrypt (append the old key when rotating).
    encryption_key: Annotated[list[str], NoDecode] = Field(default_factory=list)
    session_ttl_days: int = Field(30, ge=1, le=365)
    init_data_max_age_seconds: int = Field(86400, ge=60)
    # Requests a minute before 429 (SPEC §13.2): per client address on every route but health and webhooks,
    # and per signed-in customer. A page view makes a handful; the address limit allows for shared NATs.
    rate_limit_per_ip_per_minute: int = Field(600, ge=1, le=100_000)
    rate_limit_per_user_per_minute: int = Field(120, ge=1, le=100_000)
    # Unpaid checkouts one customer may hold at once (each one is a call to a provider).
    max_open_checkouts: int = Field(5, ge=1, le=100)

    # --- storage ---
    database_url: str = DEMO_DATABASE_URL
    # Connections a process keeps open (opened as needed), and how many more it may open for a burst and closes
    # again at return. Closing and reopening cost PostgreSQL a process each: under a steady load above the pool,
    # an overflow of 10 opened 1,000 connections in 20 s and doubled the database's CPU per page (bench/README.md).
    db_pool_size: int = Field(20, ge=1, le=200)
    db_max_overflow: int = Field(0, ge=0, le=200)
    db_echo: bool = False
    redis_url: str = ""

    # --- Telegram ---
    bot_token: str = ""
    bot_username: str = ""
    telegram_api_url: str = "https://api.telegram.org"
    bot_webhook_url: str = ""
    bot_webhook_secret: str = ""
    # Where `vpnshop bot` listens in webhook mode (BOT_WEBHOOK_URL is the public address Telegram posts to).
    bot_webhook_host: str = "0.0.0.0"
    bot_webhook_port: int = Field(8081, ge=1, le=65535)
    # Commands and button presses a user may send the bot per minute before it asks them to slow down.
    bot_throttle_per_minute: int = Field(10, ge=1, le=600)
    support_username: str = "@support"
    # Telegram's limits for everything the bot sends: about 30 messages a second overall (and 1 a second to
    # one chat, fixed); a paid broadcast (0.1 Star a message) may go up to 1000 a second.
    telegram_rate_per_second: int = Field(30, ge=1, le=1000)
    telegram_paid_rate_per_second: int = Field(1000, ge=1, le=1000)
    # A broadcast's sender renews a lease this long; another worker resumes the broadcast once it lapses.
    broadcast_lease_seconds: int = Field(60, ge=2, le=3600)

    # --- panels (a server can also be added in the admin) ---
    marzban_api_url: str = ""
    marzban_admin_username: str = ""
    marzban_admin_password: str = ""
    marzban_api_token: str = ""
    remnawave_api_url: str = ""
    remnawave_api_token: str = ""
    remnawave_api_version: Literal["auto", "2", "3"] = "auto"
    # Starts every panel username this installation makes (else one is generated once and stored).
    panel_username_prefix: str = Field("", pattern=r"^([a-z][a-z0-9_]{0,15})?$")

    # --- payment providers (each is enabled by its credentials) ---
    demo_payments_enabled: bool = False
    # An unpaid checkout expires after this long; its promo-code hold is then released.
    checkout_ttl_minutes: int = Field(60, ge=15, le=1440)
    yookassa_shop_id: str = ""
    yookassa_secret_key: str = ""
    yookassa_api_url: str = "https://api.yookassa.ru/v3"
    # Proxies in front of us whose X-Forwarded-For is believed when checking YooKassa's IP allow-list
    # (addresses or CIDRs). Every notification is re-fetched from the API before money moves regardless.
    yookassa_trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    yookassa_receipts_enabled: bool = False
    # Autopayments (saving a card or SBP method for renewals): YooKassa's manager enables them per shop on
    # request, and asking to save on a shop without them refuses the payment; leave off until they are on.
    yookassa_recurring_enabled: bool = False
    # 54-FZ receipt fields: VAT code (1 = без НДС … 11 = 22 %), tax system (1–6, empty = shop default),
    # and the e-mail used when the customer gave none.
    yookassa_vat_code: int = Field(1, ge=1, le=12)
    yookassa_tax_system_code: int | None = Field(None, ge=1, le=6)
    yookassa_receipt_email: str = ""
    wata_api_key: str = ""
    wata_api_url: str = "https://api.wata.pro/api/h2h"
    stars_enabled: bool = False
    # Offer Stars as a 30-day Star subscription (renews by itself) for 30-day plans.
    stars_subscriptions_enabled: bool = True
    cryptopay_api_token: str = ""
    cryptopay_api_url: str = "https://pay.crypt.bot/api"
    # Assets a fiat-priced Crypto Pay invoice accepts.
    cryptopay_assets: str = "USDT,TON"
    razorpay_key_id: str = ""
    razorpay_key_secret: str = ""
    razorpay_webhook_secret: str = ""
    # After rotating the webhook secret, Razorpay signs retries of old events with the old one.
    razorpay_previous_webhook_secret: str = ""
    razorpay_api_url: str = "https://api.razorpay.com/v1"
    xendit_secret_key: str = ""
    xendit_callback_token: str = ""
    xendit_api_url: str = "https://api.xendit.co"

    # --- business rules ---
    trial_days: int = Field(7, ge=0, le=365)
    referral_bonus_days_referrer: int = Field(7, ge=0, le=365)
    referral_bonus_days_referred: int = Field(3, ge=0, le=365)
    # Extra days for the referrer when their paying referrals reach a count: "count:days" pairs.
    referral_milestones: Annotated[dict[int, int], NoDecode] = Field(default_factory=lambda: {3: 30, 10: 90, 25: 180})
    expiry_grace_days: int = Field(30, ge=0, le=3650)
    # Location label of servers created from MARZBAN_*/REMNAWAVE_* variables.
    default_location: str = "default"

    # --- browser sign-in ---
    # JSON list of {"name", "title", "client_id", "client_secret", "server_metadata_url"} with optional "scope"
    # (default "openid email profile") and "telegram_id_claim" (e.g. "id" for Log in with Telegram).
    oidc_providers: Annotated[list[dict[str, Any]], NoDecode] = Field(default_factory=list)

    # --- the admin (issue 12) ---
    # Owners and admins must confirm a TOTP code at every password sign-in (and enrol at the first).
    admin_require_2fa: bool = False
    # An admin browser session ends after this long without a request (and after 12 hours regardless).
    admin_idle_timeout_minutes: int = Field(30, ge=5, le=1440)

    # --- backups ---
    backup_enabled: bool = True
    # The backup job runs nightly and makes a backup when the newest one is at least this many days old.
    backup_interval_days: int = Field(7, ge=1, le=90)
    backup_dir: str = "./var/backups"
    backup_retention_days: int = Field(30, ge=1, le=3650)
    backup_copy_dir: str = ""

    # --- housekeeping ---
    # Webhook receipts (/admin/system: what each provider and panel sent, and our verdict) are deleted after this
    # many days by the nightly prune job; a delivery problem is looked into long before that.
    webhook_receipt_retention_days: int = Field(30, ge=1, le=3650)

    @field_validator("encryption_key", "yookassa_trusted_proxies", "forwarded_allow_ips", mode="before")
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("encryption_key")
    @classmethod
    def _fernet_keys(cls, keys: list[str]) -> list[str]:
        for key in keys:
            try:
                Fernet(key.encode())
            except (ValueError, TypeError) as exc:
                raise ValueError("expected comma-separated Fernet keys (32 url-safe base64 bytes each)") from exc
        return keys

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _networks(cls, entries: list[str]) -> list[str]:
        for entry in entries:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError as exc:
                raise ValueError(f"{entry!r} is not an IP address or CIDR (empty: trust no proxy)") from exc
        return entries

    @field_validator("yookassa_tax_system_code", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("referral_milestones", mode="before")
    @classmethod
    def _milestones(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        milestones: dict[int, int] = {}
        for pair in filter(None, (part.strip() for part in value.split(","))):
            count, sep, days = pair.partition(":")
            if not sep or not count.strip().isdigit() or not days.strip().isdigit() or int(count) < 1:
                raise ValueError('expected "count:days" pairs such as 3:30,10:90')
            milestones[int(count)] = int(days)
        return milestones

    @field_validator("oidc_providers", mode="before")
    @classmethod
    def _oidc_json(cls, value: Any) -> Any:
        if isinstance(value, str):
            if not value.strip():
                return []
            try:
                return json.loads(value)
            except json.JSONDecodeError as exc:
                raise ValueError("expected a JSON list of provider objects") from exc
        return value

    @field_validator("reporting_currency", "default_currency")
    @classmethod
    def _known_currency(cls, value: str) -> str:
        if value.upper() not in CURRENCY_EXPONENTS:
            raise ValueError(f"expected one of {', '.join(sorted(CURRENCY_EXPONENTS))}")
        return value.upper()

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError("expected an IANA time zone such as Europe/Moscow") from exc
        return value

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        if value.startswith(("postgresql://", "postgres://")):
            return "postgresql+asyncpg://" + value.split("://", 1)[1]
        if value.startswith(("postgresql+asyncpg://", "sqlite+aiosqlite://")):
            return value
        if value.startswith("sqlite://"):
            return "sqlite+aiosqlite://" + value.split("://", 1)[1]
        raise ValueError("expected postgresql://… or sqlite+aiosqlite:///path")

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        if value and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("expected redis://host:port/db or empty for in-process jobs")
        return value

    @field_validator(
        "public_base_url",
        "telegram_api_url",
        "yookassa_api_url",
        "wata_api_url",
        "cryptopay_api_url",
        "razorpay_api_url",
        "xendit_api_url",
        "marzban_api_url",
        "remnawave_api_url",
    )
    @classmethod
    def _http_url(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("expected an http:// or https:// URL")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _production_secrets(self) -> Settings:
        if self.demo_mode:
            return self
        if len(self.secret_key) < 32:
            raise ValueError("SECRET_KEY: expected at least 32 random characters (production mode)")
        if not self.encryption_key:
            raise ValueError("ENCRYPTION_KEY: expected a Fernet key (production mode)")
        return self

    # --- derived ---
    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


def format_validation_error(exc: ValidationError) -> str:
    """One line naming the first bad variable and what is expected."""
    first = exc.errors()[0]
    field = ".".join(str(part) for part in first.get("loc", ()))
    message = first.get("msg", "invalid value").removeprefix("Value error, ")
    if not field and ":" in message:
        return f"config error: {message}"
    return f"config error: {field.upper() or 'settings'}: {message}"


def load_settings(**overrides: Any) -> Settings:
    """Read the environment (and .env), raising ConfigError with one readable line on any problem."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
