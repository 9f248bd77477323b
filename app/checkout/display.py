"""How money and receipts read on the customer's pages: "199 ₽", "$2.99", "150 ⭐" instead of "199.00 RUB"."""

from __future__ import annotations

from datetime import tzinfo
from decimal import Decimal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from app.config import Settings
from app.kit.money import Money
from app.models import User

SYMBOLS = {"RUB": "₽", "USD": "$", "EUR": "€", "INR": "₹", "IDR": "Rp", "PHP": "₱", "XTR": "★"}
# English writes these symbols before the number ($2.99); everything else (and all of Russian) after it.
PREFIXED_IN_ENGLISH = frozenset({"USD", "EUR", "INR", "PHP"})
NBSP = "\u00a0"
NARROW_NBSP = "\u202f"


def _digits(amount: Decimal, language: str) -> str:
    # Whole amounts without ".00"; otherwise at least two decimals, more only where the currency has them
    # and they are not zeros (2.990000 USDT reads 2.99).
    normalized = amount.normalize()
    places = 0 if normalized == normalized.to_integral_value() else max(2, -normalized.as_tuple().exponent)  # type: ignore[operator]
    text = f"{amount:,.{places}f}"
    if language == "ru":
        return text.replace(",", NARROW_NBSP).replace(".", ",")
    return text


def money_text(money: Money, language: str) -> str:
    """A price as a customer reads it in their language."""
    digits = _digits(money.amount, language)
    symbol = SYMBOLS.get(money.currency, money.currency)
    if language != "ru" and money.currency in PREFIXED_IN_ENGLISH:
        return f"{symbol}{digits}"
    return f"{digits}{NBSP}{symbol}"


def user_zone(user: User, settings: Settings) -> tzinfo:
    """The customer's own time zone when we know it, else the shop's."""
    if user.timezone:
        try:
            return ZoneInfo(user.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    return settings.zone
