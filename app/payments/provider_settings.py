"""Payment providers set up in the admin (SPEC §10.6): on or off, credentials and options per provider, stored
in `payment_provider_configs` (credentials encrypted with ENCRYPTION_KEY). What the admin has not set comes
from the environment, which stays the fallback. The registry (app/payments/registry.py) builds its providers
from `effective_settings`, so a provider switched off here disappears from checkout in every process.

Secrets never leave this module in clear: `describe` gives "set, ends …1234" and where the value comes from."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.service import Actor, record_by
from app.config import Settings
from app.kit.crypto import cipher
from app.kit.errors import NotFound
from app.kit.field_errors import FieldInvalid
from app.models import PaymentEvent, PaymentProviderConfig

Kind = Literal["secret", "text", "bool", "assets", "email"]
MAX_TEXT = 500
CRYPTO_ASSETS = ("USDT", "TON")


@dataclass(frozen=True, slots=True)
class Field:
    key: str  # the name in the admin's form and API
    setting: str  # the Settings attribute it overrides
    kind: Kind


PROVIDER_FIELDS: dict[str, tuple[Field, ...]] = {
    "yookassa": (
        Field("shop_id", "yookassa_shop_id", "text"),
        Field("secret_key", "yookassa_secret_key", "secret"),
        Field("recurring_enabled", "yookassa_recurring_enabled", "bool"),
        Field("receipts_enabled", "yookassa_receipts_enabled", "bool"),
        Field("receipt_email", "yookassa_receipt_email", "email"),
    ),
    "wata": (Field("api_key", "wata_api_key", "secret"),),
    "stars": (Field("subscriptions_enabled", "stars_subscriptions_enabled", "bool"),),
    "cryptopay": (
        Field("api_token", "cryptopay_api_token", "secret"),
        Field("assets", "cryptopay_assets", "assets"),
    ),
    "razorpay": (
        Field("key_id", "razorpay_key_id", "text"),
        Field("key_secret", "razorpay_key_secret", "secret"),
        Field("webhook_secret", "razorpay_webhook_secret", "secret"),
    ),
    "xendit": (
        Field("secret_key", "xendit_secret_key", "secret"),
        Field("callback_token", "xendit_callback_token", "secret"),
    ),
    "demo": (),
}
# Providers switched on by a flag rather than by complete credentials: switching them on sets the flag.
ENABLE_FLAGS = {"stars": "stars_enabled", "demo": "demo_payments_enabled"}
# Providers whose webhooks arrive elsewhere: Stars payments come as the bot's own updates; demo has none.
NO_WEBHOOK = frozenset({"stars", "demo"})


# --- reading --------------------------------------------------------------------------------------------------


def _secrets(config: PaymentProviderConfig | None) -> dict[str, str]:
    if config is None or not config.secrets_encrypted:
        return {}
    return dict(json.loads(cipher().decrypt(config.secrets_encrypted)))


async def configs(session: AsyncSession) -> dict[str, PaymentProviderConfig]:
    rows = await session.scalars(select(PaymentProviderConfig))
    return {row.name: row for row in rows}


async def signature(session: AsyncSession) -> tuple[int, int]:
    """Changes whenever any provider's configuration changes (the registry's cheap check)."""
    rows = (await session.execute(select(PaymentProviderConfig.id, PaymentProviderConfig.revision))).all()
    return (len(rows), sum(row.id * 1_000_003 + row.revision for row in rows))


def effective_settings(settings: Settings, stored: dict[str, PaymentProviderConfig]) -> Settings:
    """The environment's settings with the admin's values laid over them."""
    update: dict[str, Any] = {}
    for name, config in stored.items():
        fields = {field.key: field for field in PROVIDER_FIELDS.get(name, ())}
        values = {**(config.options or {}), **_secrets(config)}
        for key, value in values.items():
            if key in fields:
                update[fields[key].setting] = value
        if name in ENABLE_FLAGS and config.is_enabled is not None:
            update[ENABLE_FLAGS[name]] = config.is_enabled
    return settings.model_copy(update=update)


def switched_off(stored: dict[str, PaymentProviderConfig]) -> set[str]:
    return {name for name, config in stored.items() if config.is_enabled is False}


def _tail(secret: str) -> str | None:
    # The last four characters only of a long secret: a short one would give away too much of itself.
    return secret[-4:] if len(secret) >= 12 else None


def describe_field(field: Field, settings: Settings, config: PaymentProviderConfig | None) -> dict[str, Any]:
    """What the admin may see of one field: a secret as set/unset and its last characters, never its value."""
    stored = {**((config.options or {}) if config else {}), **_secrets(config)}
    from_admin = field.key in stored
    value = stored[field.key] if from_admin else getattr(settings, field.setting)
    source = "admin" if from_admin else ("environment" if value not in ("", None) else "unset")
    shown: dict[str, Any] = {"key": field.key, "kind": field.kind, "source": source}
    if field.kind == "secret":
        shown |= {"is_set": bool(value), "ends_with": _tail(str(value)) if value else None}
    else:
        shown["value"] = value
    return shown


def webhook_url(settings: Settings, name: str) -> str | None:
    if name in NO_WEBHOOK:
        return None
    return f"{settings.public_base_url.rstrip('/')}/api/payments/webhook/{name}"


async def last_webhook(session: AsyncSession, name: str) -> PaymentEvent | None:
    """The last event from this provider that we verified and recorded (refused webhooks are not stored)."""
    return await session.scalar(
        select(PaymentEvent).where(PaymentEvent.provider == name).order_by(PaymentEvent.id.desc()).limit(1)
    )


def known(name: str) -> tuple[Field, ...]:
    if name not in PROVIDER_FIELDS:
        raise NotFound(f"No payment provider {name!r}.", code="provider_not_found")
    return PROVIDER_FIELDS[name]


# --- changing -------------------------------------------------------------------------------------------------


def _clean_text(key: str, value: object, *, secret: bool) -> str:
    if not isinstance(value, str):
        raise FieldInvalid(key, "Expected text.")
    text = value.strip()
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise FieldInvalid(key, "Holds a character that cannot be stored.") from None
    if any(ord(char) < 32 for char in text):
        raise FieldInvalid(key, "Holds a control character (a pasted line break?).")
    if len(text) > MAX_TEXT:
        raise FieldInvalid(key, f"Longer than {MAX_TEXT} characters.")
    if secret and not text:
        raise FieldInvalid(key, "Empty: to fall back to the environment's value, use reset instead.")
    return text


def clean(field: Field, value: object) -> Any:
    if field.kind == "bool":
        if not isinstance(value, bool):
            raise FieldInvalid(field.key, "Expected true or false.")
        return value
    text = _clean_text(field.key, value, secret=field.kind == "secret")
    if field.kind == "assets":
        assets = [asset.strip().upper() for asset in text.split(",") if asset.strip()]
        unknown = [asset for asset in assets if asset not in CRYPTO_ASSETS]
        if not assets or unknown:
            raise FieldInvalid(field.key, f"Give assets from {', '.join(CRYPTO_ASSETS)}, separated by commas.")
        return ",".join(dict.fromkeys(assets))
    if field.kind == "email" and text and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", text):
        raise FieldInvalid(field.key, "Not an e-mail address.")
    return text


async def update(
    session: AsyncSession,
    actor: Actor,
    settings: Settings,
    name: str,
    *,
    enabled: bool | Literal["keep"] | None = "keep",
    values: dict[str, Any] | None = None,
    reset: list[str] | None = None,
) -> PaymentProviderConfig:
    """Switch a provider on/off (None: as the environment decides), set some of its fields, or `reset` fields
    back to the environment. Everything is checked before anything changes; the audit row records which
    secrets changed, never their values."""
    fields = {field.key: field for field in known(name)}
    values, reset = values or {}, reset or []
    for key in [*values, *reset]:
        if key not in fields:
            raise FieldInvalid(key, f"Not a setting of {name}; expected {', '.join(fields) or 'none'}.")
    cleaned = {key: clean(fields[key], value) for key, value in values.items()}
    if enabled is True and name == "demo" and not settings.demo_payments_enabled:
        raise FieldInvalid("enabled", "The demo provider takes no real money: it is switched on by demo mode only.")
    if enabled not in ("keep", True, False, None):
        raise FieldInvalid("enabled", "Expected true, false or null (as the environment decides).")

    config = await session.scalar(
        select(PaymentProviderConfig).where(PaymentProviderConfig.name == name).with_for_update()
    )
    if config is None:
        config = PaymentProviderConfig(name=name, options={}, revision=0)
        session.add(config)
    secrets, options = _secrets(config), dict(config.options or {})
    before = _audit_state(config, secrets, options)
    for key, value in cleaned.items():
        (secrets if fields[key].kind == "secret" else options)[key] = value
    for key in reset:
        secrets.pop(key, None)
        options.pop(key, None)
    if enabled != "keep":
        config.is_enabled = enabled  # type: ignore[assignment]
    config.options = options
    config.secrets_encrypted = cipher().encrypt(json.dumps(secrets)) if secrets else None
    after = _audit_state(config, secrets, options)
    if after != before:
        config.revision = (config.revision or 0) + 1
        record_by(
            session,
            actor,
            action="provider.update",
            entity_type="payment_provider",
            entity_id=name,
            before=before,
            after=after,
        )
    await session.flush()
    return config


def _audit_state(config: PaymentProviderConfig, secrets: dict[str, str], options: dict[str, Any]) -> dict[str, Any]:
    # A secret is recorded by a keyed fingerprint: the trail shows that it changed, and nothing of the value.
    return {
        "enabled": config.is_enabled,
        "options": dict(options),
        "secrets": {key: cipher().fingerprint(value)[:12] for key, value in sorted(secrets.items())},
    }


# --- test connection ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConnectionResult:
    verdict: Literal["ok", "refused", "unreachable", "not_configured", "not_available"]
    message: str
