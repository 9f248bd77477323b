"""Figures as CLDR writes them (through Babel) in Russian, English, Hindi and Indonesian: money with each
language's grouping and symbol placement, dates and times in a zone, numbers, percentages and byte sizes."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from app.kit.formatting import (
    format_bytes,
    format_clock,
    format_date,
    format_date_only,
    format_number,
    format_percentage,
    money_text,
)
from app.kit.money import Money

NBSP = "\u00a0"
NNBSP = "\u202f"  # CLDR's narrow no-break space (before "г." and "PM")
MOSCOW = ZoneInfo("Europe/Moscow")
KOLKATA = ZoneInfo("Asia/Kolkata")
JAKARTA = ZoneInfo("Asia/Jakarta")
MOMENT = datetime(2026, 12, 7, 11, 5, tzinfo=UTC)


def money(amount: str, currency: str) -> Money:
    return Money(Decimal(amount), currency)


@pytest.mark.parametrize(
    ("amount", "currency", "language", "expected"),
    [
        ("100000", "INR", "hi", "₹1,00,000"),  # Indian grouping: lakhs
        ("1234567.50", "INR", "hi", "₹12,34,567.50"),
        ("100000", "INR", "en", "₹100,000"),
        ("45000", "IDR", "id", f"Rp{NBSP}45.000"),  # CLDR's currency spacing after a letter symbol
        ("45000", "IDR", "en", f"Rp{NBSP}45,000"),
        ("199", "RUB", "ru", f"199{NBSP}₽"),
        ("1990", "RUB", "ru", f"1{NBSP}990{NBSP}₽"),
        ("99.5", "RUB", "ru", f"99,50{NBSP}₽"),
        ("2.99", "USD", "en", "$2.99"),
        ("2.99", "USD", "id", "$2,99"),
        ("2.99", "USD", "ru", f"2,99{NBSP}$"),
        ("-0.60", "USD", "en", "-$0.60"),
        ("2.990000", "USDT", "en", f"USDT{NBSP}2.99"),
        ("150", "XTR", "en", f"150{NBSP}★"),
        ("1500", "XTR", "hi", f"1,500{NBSP}★"),
    ],
)
def test_money(amount: str, currency: str, language: str, expected: str) -> None:
    assert money_text(money(amount, currency), language) == expected


def test_dates_in_each_language() -> None:
    assert format_date(MOMENT, MOSCOW, "ru") == f"7 дек. 2026{NNBSP}г."
    assert format_date(MOMENT, MOSCOW, "en") == "Dec 7, 2026"
    assert format_date(MOMENT, KOLKATA, "hi") == "7 दिस॰ 2026"
    assert format_date(MOMENT, JAKARTA, "id") == "7 Des 2026"
    assert format_date(None, MOSCOW, "en") == "—"


def test_date_and_time_in_the_zone() -> None:
    assert format_date(MOMENT, MOSCOW, "ru", with_time=True) == f"7 дек. 2026{NNBSP}г., 14:05"
    assert format_date(MOMENT, MOSCOW, "en", with_time=True) == f"Dec 7, 2026, 2:05{NNBSP}PM"
    assert format_date(MOMENT, KOLKATA, "hi", with_time=True) == "7 दिस॰ 2026, 4:35 pm"
    assert format_date(MOMENT, JAKARTA, "id", with_time=True) == "7 Des 2026 18.05"
    assert format_clock(MOMENT, MOSCOW, "ru") == "14:05"


def test_calendar_days_numbers_and_percentages() -> None:
    day = date(2026, 12, 7)
    assert [format_date_only(day, lang) for lang in ("ru", "en", "hi", "id")] == ["7 дек.", "Dec 7", "7 दिस॰", "7 Des"]
    assert [format_number(100000, lang) for lang in ("ru", "en", "hi", "id")] == [
        f"100{NBSP}000",
        "100,000",
        "1,00,000",
        "100.000",
    ]
    assert format_percentage(-58.2, "en", signed=True) == "-58.2%"
    assert format_percentage(12, "id", signed=True) == "+12%"
    assert format_percentage(12.5, "ru") == f"12,5{NBSP}%"


def test_byte_sizes_use_the_language_decimal_mark_and_units() -> None:
    gib = 1024**3
    assert format_bytes(int(2.5 * gib), "ru") == "2,5 ГБ"
    assert format_bytes(int(2.5 * gib), "en") == "2.5 GB"
    assert format_bytes(int(2.5 * gib), "id") == "2,5 GB"
    assert format_bytes(3 * gib, "hi") == "3 GB"
    assert format_bytes(None, "en") == "0 byte"
