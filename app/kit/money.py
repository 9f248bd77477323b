"""Money as Decimal amounts with a currency; stored as integer minor units. Never a float."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

# Digits after the point per currency. Telegram Stars (XTR) are whole units.
CURRENCY_EXPONENTS: dict[str, int] = {
    "RUB": 2,
    "USD": 2,
    "EUR": 2,
    "INR": 2,
    "IDR": 2,
    "PHP": 2,
    "XTR": 0,
    "USDT": 6,
    "TON": 9,
    "BTC": 8,
}


class MoneyError(ValueError):
    """An amount or currency that cannot be money."""


def exponent(currency: str) -> int:
    try:
        return CURRENCY_EXPONENTS[currency]
    except KeyError:
        raise MoneyError(f"unsupported currency {currency!r}") from None


@dataclass(frozen=True, slots=True)
class Money:
    amount: Decimal
    currency: str

    def __post_init__(self) -> None:
        if isinstance(self.amount, float):
            raise MoneyError("money must not be a float")
        places = exponent(self.currency)
        quantum = Decimal(1).scaleb(-places)
        try:
            normalized = Decimal(self.amount).quantize(quantum, rounding=ROUND_HALF_UP)
        except InvalidOperation:
            raise MoneyError(f"invalid amount {self.amount!r}") from None
        if normalized != Decimal(self.amount):
            raise MoneyError(f"{self.amount} has more than {places} decimal places for {self.currency}")
        object.__setattr__(self, "amount", normalized)

    @classmethod
    def of(cls, amount: str | int | Decimal, currency: str) -> Money:
        """Parse a decimal string or integer; rejects floats and extra precision."""
        if isinstance(amount, float):
            raise MoneyError("money must not be a float")
        try:
            return cls(Decimal(str(amount)), currency.upper())
        except InvalidOperation:
            raise MoneyError(f"invalid amount {amount!r}") from None

    @classmethod
    def from_minor(cls, minor: int, currency: str) -> Money:
        return cls(Decimal(minor).scaleb(-exponent(currency)), currency)

    @property
    def minor(self) -> int:
        """Integer minor units (kopecks, cents, whole Stars)."""
        return int(self.amount.scaleb(exponent(self.currency)))

    def percent_off(self, percent: Decimal | int) -> Money:
        """This amount reduced by `percent`, rounded half-up to the currency's precision."""
        factor = (Decimal(100) - Decimal(percent)) / Decimal(100)
        places = exponent(self.currency)
        value = (self.amount * factor).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
        return Money(max(value, Decimal(0)), self.currency)

    def __add__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(self.amount - other.amount, self.currency)

    def _same_currency(self, other: Money) -> None:
        if other.currency != self.currency:
            raise MoneyError(f"cannot mix {self.currency} and {other.currency}")

    def __str__(self) -> str:
        return f"{self.amount} {self.currency}"
