"""Money: Decimal with currency precision, minor units, no floats."""

from __future__ import annotations

from decimal import Decimal

import pytest

from app.kit.money import Money, MoneyError


def test_minor_units_per_currency() -> None:
    assert Money.of("199.00", "RUB").minor == 19900
    assert Money.of(150, "XTR").minor == 150
    assert Money.of("2.99", "usdt").minor == 2_990_000
    assert Money.from_minor(19900, "RUB") == Money.of("199", "RUB")


def test_floats_and_extra_precision_are_rejected() -> None:
    with pytest.raises(MoneyError, match="float"):
        Money.of(1.5, "RUB")
    with pytest.raises(MoneyError, match="decimal places"):
        Money.of("1.5", "XTR")
    with pytest.raises(MoneyError, match="unsupported currency"):
        Money.of("1", "ABC")
    with pytest.raises(MoneyError, match="invalid amount"):
        Money.of("one", "RUB")


def test_percent_off_rounds_half_up_and_never_goes_negative() -> None:
    assert Money.of("199.00", "RUB").percent_off(15) == Money.of("169.15", "RUB")
    assert Money.of("0.05", "USD").percent_off(50) == Money.of("0.03", "USD")
    assert Money.of("150", "XTR").percent_off(Decimal("33.3")) == Money.of("100", "XTR")
    assert Money.of("10", "RUB").percent_off(100).amount == 0


def test_arithmetic_refuses_to_mix_currencies() -> None:
    assert Money.of("1.10", "RUB") + Money.of("2.20", "RUB") == Money.of("3.30", "RUB")
    with pytest.raises(MoneyError, match="cannot mix"):
        Money.of("1", "RUB") + Money.of("1", "USD")
