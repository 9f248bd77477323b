"""The dated exchange rates staff keep, and conversion into the reporting currency. A rate holds from its
`valid_from` day until the pair's next row. An amount on a day without a rate is never guessed: it is left out
of the converted total and its currency named, so a figure is incomplete in plain sight rather than wrong."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.kit.money import Money, exponent
from app.models import ExchangeRate


@dataclass(frozen=True, slots=True)
class RateBook:
    """Every rate into one quote currency, by currency, oldest first: loaded once, looked up per day."""

    quote: str
    rates: dict[str, list[tuple[date, Decimal]]]

    def rate(self, currency: str, day: date) -> Decimal | None:
        if currency == self.quote:
            return Decimal(1)
        found = None
        for valid_from, rate in self.rates.get(currency, ()):
            if valid_from > day:
                break
            found = rate
        return found


async def load_rates(session: AsyncSession, quote: str, currencies: Iterable[str] | None = None) -> RateBook:
    statement = select(ExchangeRate.currency, ExchangeRate.valid_from, ExchangeRate.rate).where(
        ExchangeRate.quote_currency == quote
    )
    if currencies is not None:
        statement = statement.where(ExchangeRate.currency.in_(set(currencies)))
    rates: dict[str, list[tuple[date, Decimal]]] = {}
    for currency, valid_from, rate in await session.execute(statement.order_by(ExchangeRate.valid_from)):
        rates.setdefault(currency, []).append((valid_from, rate))
    return RateBook(quote, rates)


@dataclass(slots=True)
class Converted:
    """A sum in the reporting currency and the currencies that could not be converted (no rate for a day)."""

    currency: str
    amount: Decimal = Decimal(0)
    missing: set[str] = field(default_factory=set)

    @property
    def money(self) -> Money:
        places = Decimal(1).scaleb(-exponent(self.currency))
        return Money(self.amount.quantize(places, rounding=ROUND_HALF_UP), self.currency)

    @property
    def complete(self) -> bool:
        return not self.missing


def convert(book: RateBook, amounts: Iterable[tuple[date, str, int]]) -> Converted:
    """Sum (day, currency, minor units) amounts in the book's quote currency, each at its own day's rate; the
    result is rounded once, at the end, so many small amounts do not accumulate rounding."""
    total = Converted(book.quote)
    for day, currency, minor in amounts:
        rate = book.rate(currency, day)
        if rate is None:
            total.missing.add(currency)
            continue
        total.amount += Decimal(minor).scaleb(-exponent(currency)) * rate
    return total


async def set_rate(session: AsyncSession, currency: str, quote: str, valid_from: date, rate: Decimal) -> ExchangeRate:
    """Record a rate (the admin's editing page is part 2; this is for the CLI, the demo and tests)."""
    if rate <= 0:
        raise ValueError("an exchange rate must be positive")
    exponent(currency), exponent(quote)  # unknown currencies raise MoneyError
    row = await session.scalar(
        select(ExchangeRate).where(
            ExchangeRate.currency == currency,
            ExchangeRate.quote_currency == quote,
            ExchangeRate.valid_from == valid_from,
        )
    )
    if row is None:
        row = ExchangeRate(currency=currency, quote_currency=quote, valid_from=valid_from, rate=rate)
        session.add(row)
    else:
        row.rate = rate
    await session.flush()
    return row
