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

from app.audit.service import Actor, record_by
from app.kit.field_errors import FieldInvalid
from app.kit.money import CURRENCY_EXPONENTS, Money, exponent
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


MAX_RATE = Decimal(10) ** 9
RATE_PLACES = 10
# Rates are entered for days that have come or are about to: a year ahead is a typo.
MAX_DAYS_AHEAD = 366


def parse_rate(currency: str, quote: str, valid_from: date, rate: Decimal, today: date) -> None:
    """Refuse a rate staff cannot mean; FieldInvalid names the field."""
    if currency not in CURRENCY_EXPONENTS:
        raise FieldInvalid("currency", f"Expected one of {', '.join(sorted(CURRENCY_EXPONENTS))}.")
    if currency == quote:
        raise FieldInvalid("currency", f"{currency} is the reporting currency itself: its rate is always 1.")
    if not rate.is_finite() or rate <= 0 or rate >= MAX_RATE:
        raise FieldInvalid("rate", "The rate must be a positive number below 1 000 000 000.")
    exponent_ = rate.as_tuple().exponent
    if isinstance(exponent_, int) and -exponent_ > RATE_PLACES:
        raise FieldInvalid("rate", f"At most {RATE_PLACES} decimal places.")
    if (valid_from - today).days > MAX_DAYS_AHEAD:
        raise FieldInvalid("valid_from", "The date is more than a year ahead.")


async def staff_set_rate(
    session: AsyncSession, actor: Actor, *, currency: str, quote: str, valid_from: date, rate: Decimal, today: date
) -> ExchangeRate:
    """A rate entered in /admin/settings: validated (nothing written when refused), then set_rate, audited."""
    currency, quote = currency.upper(), quote.upper()
    parse_rate(currency, quote, valid_from, rate, today)
    old = await session.scalar(
        select(ExchangeRate.rate).where(
            ExchangeRate.currency == currency,
            ExchangeRate.quote_currency == quote,
            ExchangeRate.valid_from == valid_from,
        )
    )
    row = await set_rate(session, currency, quote, valid_from, rate)
    record_by(
        session,
        actor,
        action="exchange_rate.set",
        entity_type="exchange_rate",
        entity_id=f"{currency}/{quote}/{valid_from.isoformat()}",
        before={"rate": str(old)} if old is not None else None,
        after={"rate": str(rate)},
    )
    return row


async def recent_rates(session: AsyncSession, quote: str, limit: int = 30) -> list[ExchangeRate]:
    statement = (
        select(ExchangeRate)
        .where(ExchangeRate.quote_currency == quote)
        .order_by(ExchangeRate.valid_from.desc(), ExchangeRate.currency)
        .limit(limit)
    )
    return list((await session.scalars(statement)).all())
