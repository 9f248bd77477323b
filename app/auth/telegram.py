"""Telegram Mini App initData: verified exactly as Telegram specifies (HMAC-SHA256 keyed by
HMAC("WebAppData", bot token) over the sorted, decoded key=value lines), strictly: duplicate keys, a missing
hash or auth_date, a future or stale auth_date are all rejected."""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

from app.kit.errors import NotAuthenticated

# A clock a little ahead of ours must not lock users out; more than this is not a clock difference.
MAX_CLOCK_SKEW_SECONDS = 60
# The users table's limits (BIGINT id, VARCHAR names): signed data past them is refused here, as a 401, rather
# than failing in the database as a 500. Telegram's own limits are far lower (ids under 2^52, 64-char names).
MAX_TELEGRAM_ID = 2**63 - 1
MAX_NAME_LENGTH = 255
MAX_USERNAME_LENGTH = 64


class InitDataInvalid(NotAuthenticated):
    """The Telegram sign-in data is missing, forged or malformed; reopen the app from Telegram."""

    code = "init_data_invalid"


class InitDataExpired(NotAuthenticated):
    """The Telegram sign-in data is too old; reopen the app from Telegram."""

    code = "init_data_expired"
    # The language of the (genuine, only old) data's user: the page asking them to reopen the app speaks it.
    language_code: str | None = None


@dataclass(frozen=True)
class TelegramUser:
    id: int
    first_name: str
    last_name: str | None
    username: str | None
    language_code: str | None
    is_premium: bool


def telegram_user(
    user_id: object,
    first_name: object,
    last_name: object = None,
    username: object = None,
    language_code: object = None,
    is_premium: object = False,
) -> TelegramUser:
    """A TelegramUser from signed but untyped fields (initData JSON, widget query), or ValueError when a field is
    of the wrong type, out of range or carries a NUL (PostgreSQL refuses it in text)."""
    if isinstance(user_id, bool) or not isinstance(user_id, int | str):
        raise ValueError("user id is not an integer")
    number = int(user_id)
    if not 0 < number <= MAX_TELEGRAM_ID:
        raise ValueError("user id is out of range")
    return TelegramUser(
        id=number,
        first_name=_text(first_name, MAX_NAME_LENGTH) or "",
        last_name=_text(last_name, MAX_NAME_LENGTH),
        username=_text(username, MAX_USERNAME_LENGTH),
        language_code=_text(language_code, 35),
        is_premium=bool(is_premium),
    )


def _text(value: object, max_length: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError("expected a string")
    if len(value) > max_length:
        raise ValueError(f"longer than {max_length} characters")
    if "\x00" in value:
        raise ValueError("NUL character")
    return value


@dataclass(frozen=True)
class InitData:
    user: TelegramUser
    auth_date: datetime
    start_param: str | None
    query_id: str | None
    fields: dict[str, str]


def _secret(bot_token: str) -> bytes:
    return hmac.new(b"WebAppData", bot_token.encode(), hashlib.sha256).digest()


def _data_check_string(fields: dict[str, str]) -> str:
    return "\n".join(f"{key}={value}" for key, value in sorted(fields.items()))


def verify_init_data(raw: str, bot_token: str, *, max_age_seconds: int, now: datetime) -> InitData:
    """Check the signature and freshness of a raw initData string and return its parsed content."""
    if not raw or not bot_token:
        raise InitDataInvalid()
    try:
        pairs = parse_qsl(raw, strict_parsing=True, keep_blank_values=True)
    except ValueError:
        raise InitDataInvalid() from None
    fields = dict(pairs)
    if len(fields) != len(pairs) or "hash" not in fields or "auth_date" not in fields:
        raise InitDataInvalid()
    received = fields.pop("hash")
    expected = hmac.new(_secret(bot_token), _data_check_string(fields).encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, received):
        raise InitDataInvalid()
    try:
        auth_date = datetime.fromtimestamp(int(fields["auth_date"]), UTC)
    except (ValueError, OverflowError, OSError):
        raise InitDataInvalid() from None
    age = (now - auth_date).total_seconds()
    if age > max_age_seconds or age < -MAX_CLOCK_SKEW_SECONDS:
        expired = InitDataExpired()
        expired.language_code = _parse_user(fields.get("user")).language_code if fields.get("user") else None
        raise expired
    return InitData(
        user=_parse_user(fields.get("user")),
        auth_date=auth_date,
        start_param=fields.get("start_param") or None,
        query_id=fields.get("query_id") or None,
        fields=fields,
    )


def _parse_user(raw_user: str | None) -> TelegramUser:
    # Only parsed after the signature matched; still checked, since a leaked bot token signs anything.
    try:
        data: dict[str, Any] = json.loads(raw_user or "")
        return telegram_user(
            data["id"],
            data.get("first_name", ""),
            data.get("last_name"),
            data.get("username"),
            data.get("language_code"),
            data.get("is_premium", False),
        )
    except (ValueError, KeyError, TypeError):
        raise InitDataInvalid() from None


def sign_init_data(fields: dict[str, str], bot_token: str) -> str:
    """Build a signed initData string, as Telegram does (for the demo's simulated WebApp and for tests)."""
    signed = dict(fields)
    signed["hash"] = hmac.new(_secret(bot_token), _data_check_string(fields).encode(), hashlib.sha256).hexdigest()
    return urlencode(signed)
