"""The Telegram Login Widget (browser fallback where telegram.org is reachable). Its hash is keyed by
SHA256(bot token), not by HMAC("WebAppData", token) as initData is: the two must never be mixed."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime

from app.auth.telegram import MAX_CLOCK_SKEW_SECONDS, TelegramUser, telegram_user
from app.kit.errors import NotAuthenticated

WIDGET_FIELDS = frozenset({"id", "first_name", "last_name", "username", "photo_url", "auth_date", "hash"})


class WidgetLoginInvalid(NotAuthenticated):
    """The Telegram login could not be verified; try again."""

    code = "telegram_login_invalid"


def _digest(fields: Mapping[str, str], bot_token: str) -> str:
    check = "\n".join(f"{key}={value}" for key, value in sorted(fields.items()))
    return hmac.new(hashlib.sha256(bot_token.encode()).digest(), check.encode(), hashlib.sha256).hexdigest()


def verify_widget_login(
    params: Mapping[str, str], bot_token: str, *, max_age_seconds: int, now: datetime
) -> TelegramUser:
    """Check a widget redirect's query (every field it sent, except hash, is signed) and its freshness."""
    fields = {key: value for key, value in params.items() if key in WIDGET_FIELDS}
    received = fields.pop("hash", "")
    if not bot_token or not received or "id" not in fields or "auth_date" not in fields:
        raise WidgetLoginInvalid()
    if not hmac.compare_digest(_digest(fields, bot_token), received):
        raise WidgetLoginInvalid()
    try:
        auth_date = datetime.fromtimestamp(int(fields["auth_date"]), UTC)
        user = telegram_user(
            fields["id"], fields.get("first_name", ""), fields.get("last_name"), fields.get("username")
        )
    except (ValueError, OverflowError, OSError):
        raise WidgetLoginInvalid() from None
    age = (now - auth_date).total_seconds()
    if age > max_age_seconds or age < -MAX_CLOCK_SKEW_SECONDS:
        raise WidgetLoginInvalid("The Telegram login is too old; sign in again.")
    return user


def sign_widget_login(fields: Mapping[str, str], bot_token: str) -> dict[str, str]:
    """A widget redirect's query as Telegram would sign it (tests and the demo)."""
    return {**fields, "hash": _digest(fields, bot_token)}
