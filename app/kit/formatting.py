"""How figures read to people, in one place for the pages, notifications, the bot and the admin: money ("199 ₽",
"$2.99", "₹1,00,000", "Rp 45.000"), dates and times in a time zone, numbers, percentages and byte sizes — per
language, from CLDR through Babel, so a new language brings no hand-written rules."""

from __future__ import annotations

import copy
from datetime import date, datetime, tzinfo
from decimal import Decimal
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale
from babel.dates import format_date as cldr_date
from babel.dates import format_skeleton, format_time, get_datetime_format
from babel.numbers import format_decimal, parse_pattern
from babel.units import format_unit

from app.kit.money import Money

# Narrow symbols as people write them at home. Babel carries only CLDR's standard symbols, which spell most
# foreign currencies as codes ("RUB199.00" in English, "US$2,99" in Indonesian); Telegram Stars have no ISO code.
SYMBOLS = {"RUB": "₽", "USD": "$", "EUR": "€", "INR": "₹", "IDR": "Rp", "PHP": "₱", "XTR": "★"}
NBSP = "\u00a0"
_BYTE_UNITS = ("digital-byte", "digital-kilobyte", "digital-megabyte", "digital-gigabyte", "digital-terabyte")


@lru_cache(maxsize=32)
def locale_of(language: str) -> Locale:
    """Babel's locale for one of our language codes; an unknown code reads as English rather than failing."""
    try:
        return Locale.parse(language)
    except (ValueError, LookupError):
        return Locale.parse("en")


def format_date(value: datetime | None, zone: tzinfo, language: str, *, with_time: bool = False) -> str:
    """CLDR's medium date ("Dec 7, 2026", "7 дек. 2026 г.", "7 दिस॰ 2026"), with its short time when asked."""
    if value is None:
        return "—"
    locale = locale_of(language)
    local = value.astimezone(zone)
    text = cldr_date(local, "medium", locale=locale)
    if not with_time:
        return text
    time = format_time(local, "short", tzinfo=zone, locale=locale)
    return str(get_datetime_format("medium", locale=locale)).replace("{1}", text).replace("{0}", time)


def format_clock(value: datetime, zone: tzinfo, language: str) -> str:
    """A time of day alone ("14:05", "2:05 PM", "14.05")."""
    return format_time(value.astimezone(zone), "short", tzinfo=zone, locale=locale_of(language))


def format_date_only(value: date, language: str) -> str:
    """A calendar day (already local), short: the chart's labels ("Dec 7", "7 дек.")."""
    return format_skeleton("MMMd", value, locale=locale_of(language))


def format_number(value: int | float | Decimal, language: str) -> str:
    """A count with the language's grouping ("1,00,000" in Hindi, "100.000" in Indonesian)."""
    return format_decimal(value, locale=locale_of(language))


def format_percentage(value: float | Decimal, language: str, *, signed: bool = False) -> str:
    """A percentage given in percent (12.5 → "12.5%", "12,5 %" in Russian), one decimal at most."""
    locale = locale_of(language)
    pattern = copy.copy(parse_pattern(locale.percent_formats[None].pattern))
    pattern.frac_prec = (0, 1)
    text = pattern.apply(Decimal(str(value)) / 100, locale)
    plus = locale.number_symbols["latn"]["plusSign"]
    return f"{plus}{text}" if signed and value > 0 else text


def format_bytes(value: int | None, language: str) -> str:
    amount = float(value or 0)
    for index, unit in enumerate(_BYTE_UNITS):
        if amount < 1024 or unit == _BYTE_UNITS[-1]:
            # One decimal only where it carries information (2.5 GB), none on round or large figures.
            shown = round(amount, 1) if amount < 10 and index else round(amount)
            if shown == int(shown):
                shown = int(shown)
            return format_unit(shown, unit, length="short", locale=locale_of(language))
        amount /= 1024
    raise AssertionError("unreachable")


def _fraction_digits(amount: Decimal) -> int:
    # Whole amounts without ".00"; otherwise at least two decimals, more only where the currency has them
    # and they are not zeros (2.990000 USDT reads 2.99).
    normalized = amount.normalize()
    if normalized == normalized.to_integral_value():
        return 0
    return max(2, -int(normalized.as_tuple().exponent))


def _spaced(text: str, symbol: str) -> str:
    """Puts the symbol in place of the pattern's ¤ with CLDR's currencySpacing, which Babel does not apply: a
    symbol whose edge next to the digits is a letter is kept off them by a no-break space ("Rp 45.000", not
    "Rp45.000"), while "$2.99" and "₹500" stay joined."""
    before, _, after = text.partition("¤")
    if before == "" and after[:1].isdigit() and symbol[-1:].isalpha():
        symbol += NBSP
    elif after == "" and before[-1:].isdigit() and symbol[:1].isalpha():
        symbol = NBSP + symbol
    return before + symbol + after


def money_text(money: Money, language: str) -> str:
    """A price as a person reads it in their language (CLDR's currency pattern, grouping and minus sign)."""
    if money.currency == "XTR":
        # Telegram Stars are no CLDR currency; Telegram writes them after the number in every language.
        return f"{format_number(money.amount, language)}{NBSP}{SYMBOLS['XTR']}"
    locale = locale_of(language)
    pattern = copy.copy(parse_pattern(locale.currency_formats["standard"].pattern))
    places = _fraction_digits(money.amount)
    pattern.frac_prec = (places, places)
    # No currency given to Babel: it would write its standard symbol; ours goes in by _spaced.
    text = pattern.apply(money.amount, locale, currency_digits=False)
    return _spaced(text, SYMBOLS.get(money.currency, money.currency))


def minor_text(minor: int, currency: str, language: str) -> str:
    """`money_text` of an amount stored in minor units (what the tables hold)."""
    return money_text(Money.from_minor(minor, currency), language)


def zone_of(name: str | None, default: tzinfo) -> tzinfo:
    """A person's own time zone when we know a valid one (users.timezone), else the default (the shop's)."""
    if name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    return default
