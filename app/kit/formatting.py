"""How figures read to people, in one place for the pages, notifications, the bot and the admin: money ("199 ₽",
"$2.99", "150 ★" instead of "199.00 RUB"), dates in a time zone, byte sizes — per language."""

from __future__ import annotations

from datetime import date, datetime, tzinfo
from decimal import Decimal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from app.kit.money import Money

_MONTHS_EN = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
SYMBOLS = {"RUB": "₽", "USD": "$", "EUR": "€", "INR": "₹", "IDR": "Rp", "PHP": "₱", "XTR": "★"}
# English writes these symbols before the number ($2.99); everything else (and all of Russian) after it.
PREFIXED_IN_ENGLISH = frozenset({"USD", "EUR", "INR", "PHP"})
NBSP = "\u00a0"
NARROW_NBSP = "\u202f"
_UNITS = {"ru": ("Б", "КБ", "МБ", "ГБ", "ТБ"), "en": ("B", "KB", "MB", "GB", "TB")}


def format_date(value: datetime | None, zone: tzinfo, language: str, *, with_time: bool = False) -> str:
    if value is None:
        return "—"
    local = value.astimezone(zone)
    if language == "ru":
        text = local.strftime("%d.%m.%Y")
    else:
        text = f"{_MONTHS_EN[local.month - 1]} {local.day}, {local.year}"
    return f"{text} {local:%H:%M}" if with_time else text


def format_bytes(value: int | None, language: str) -> str:
    units = _UNITS.get(language, _UNITS["en"])
    amount = float(value or 0)
    for unit in units:
        if amount < 1024 or unit == units[-1]:
            # One decimal only where it carries information (2.5 GB), none on round or large figures.
            text = f"{amount:.1f}".removesuffix(".0") if amount < 10 and unit != units[0] else f"{amount:.0f}"
            if language == "ru":
                text = text.replace(".", ",")
            return f"{text} {unit}"
        amount /= 1024
    raise AssertionError("unreachable")


def format_date_only(value: date, language: str) -> str:
    """A calendar day (already local), short: the chart's labels."""
    return f"{value:%d.%m}" if language == "ru" else f"{_MONTHS_EN[value.month - 1]} {value.day}"


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
    """A price as a person reads it in their language."""
    digits = _digits(money.amount, language)
    symbol = SYMBOLS.get(money.currency, money.currency)
    if language != "ru" and money.currency in PREFIXED_IN_ENGLISH:
        return f"{symbol}{digits}"
    return f"{digits}{NBSP}{symbol}"


def zone_of(name: str | None, default: tzinfo) -> tzinfo:
    """A person's own time zone when we know a valid one (users.timezone), else the default (the shop's)."""
    if name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    return default
