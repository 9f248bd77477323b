"""The payments list as one query object: filters (provider, status, currency, dates, a customer), a search box
for the ids staff paste, a whitelisted sort and keyset pagination. Its state is plain query parameters
(`PaymentFilters`), shared by the page, the CSV export and the JSON API, so all three list the same rows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import Select, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.admin.tables import ListState, Page, keyset_page
from app.admin.users.queries import between
from app.kit.errors import NotFound
from app.kit.money import CURRENCY_EXPONENTS
from app.models import AuditLog, Payment, PaymentEvent, PaymentRefund, PaymentStatus, Plan, User

PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
# Each sort has an index in its keyset order: (created_at, id) and (amount_minor, id).
SORTS = ("created", "amount")


class PaymentFilters(BaseModel):
    """The list's state. Unknown parameters are ignored; a wrong value is refused with the field's name."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    search: str | None = Field(None, max_length=128, description="Our payment id, the provider's id, or a Telegram id")
    provider: str | None = Field(None, max_length=32, pattern=r"^[a-z0-9_]+$")
    status: PaymentStatus | None = None
    currency: str | None = Field(None, max_length=8)
    user: int | None = Field(None, ge=1, description="Only this customer's payments (our user id)")
    created_from: date | None = None
    created_to: date | None = None
    sort: Literal["created", "amount"] = "created"
    dir: Literal["asc", "desc"] = "desc"

    @field_validator("*", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        # An HTML form sends every field; an empty one means "any".
        return None if value == "" else value

    @field_validator("currency")
    @classmethod
    def _known_currency(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if value.upper() not in CURRENCY_EXPONENTS:
            raise ValueError(f"expected one of {', '.join(sorted(CURRENCY_EXPONENTS))}")
        return value.upper()

    @model_validator(mode="after")
    def _dates_in_order(self) -> PaymentFilters:
        if self.created_from and self.created_to and self.created_from > self.created_to:
            raise ValueError("created_from is after created_to")
        return self

    def query_params(self) -> dict[str, str]:
        """The non-default state as URL parameters (the page's links and the export use it)."""
        return {
            name: str(value.value if isinstance(value, PaymentStatus) else value)
            for name, value in self.model_dump(exclude_defaults=True).items()
            if value is not None
        }


@dataclass(frozen=True, slots=True)
class PaymentRow:
    payment: Payment
    user: User


class PaymentQuery:
    """Builds the statement for a `PaymentFilters`; `page()` runs it, `rows_statement()` is what exports stream."""

    def __init__(self, filters: PaymentFilters) -> None:
        self.filters = filters

    def _search(self, text: str) -> Any:
        """Every branch is a condition on an indexed payments column (the customer's through user_id IN …), so
        PostgreSQL can combine index lookups instead of reading every payment."""
        customers = select(User.id)
        if text.startswith("@"):
            return Payment.user_id.in_(customers.where(func.lower(User.username) == text[1:].lower()))
        conditions = [Payment.public_id == text, Payment.external_id == text, Payment.idempotency_key == text]
        if text.isdigit() and len(text) <= 18:
            conditions += [Payment.id == int(text), Payment.user_id.in_(customers.where(User.telegram_id == int(text)))]
        return or_(*conditions)

    def conditions(self) -> list[Any]:
        f = self.filters
        where: list[Any] = []
        if f.search:
            where.append(self._search(f.search))
        if f.provider:
            where.append(Payment.provider == f.provider)
        if f.status:
            where.append(Payment.status == f.status)
        if f.currency:
            where.append(Payment.currency == f.currency)
        if f.user is not None:
            where.append(Payment.user_id == f.user)
        where += between(Payment.created_at, f.created_from, f.created_to)
        return where

    def _sort_column(self) -> Any:
        return Payment.amount_minor if self.filters.sort == "amount" else Payment.created_at

    def _joined(self, *columns: Any) -> Select[Any]:
        return select(*columns).select_from(Payment).join(User, User.id == Payment.user_id).where(*self.conditions())

    def list_state(self, path: str, *, cursor: str | None = None, limit: int = PAGE_SIZE) -> ListState:
        """The shared table state (app/admin/tables.py) of these filters: links, sort headers, next page."""
        params = {k: v for k, v in self.filters.query_params().items() if k not in ("sort", "dir")}
        return ListState(path, params, self.filters.sort, self.filters.dir == "desc", cursor, limit)

    async def page(
        self, session: AsyncSession, *, cursor: str | None = None, limit: int = PAGE_SIZE
    ) -> Page[PaymentRow]:
        """One page in the chosen order; `next_cursor` continues after its last row (None at the end)."""
        sort = self._sort_column()
        state = self.list_state("", cursor=cursor, limit=max(1, min(limit, MAX_PAGE_SIZE)))
        found = await keyset_page(
            session,
            self._joined(Payment, User, sort.label("sort_value")),
            state,
            sort_column=sort,
            id_column=Payment.id,
            cursor_of=lambda row: (row.sort_value, row[0].id),
        )
        return Page([PaymentRow(payment, user) for payment, user, _ in found.rows], found.next_cursor)

    def rows_statement(self) -> Select[Any]:
        """Every matching payment with its customer, newest first (what the CSV export streams)."""
        return self._joined(Payment, User).order_by(Payment.created_at.desc(), Payment.id.desc())


@dataclass(frozen=True, slots=True)
class PaymentDetail:
    payment: Payment
    user: User
    plan: Plan | None
    events: list[PaymentEvent]
    audit: list[AuditLog]
    refunds: list[PaymentRefund]

    @property
    def refund_events(self) -> list[PaymentEvent]:
        return [event for event in self.events if "refund" in event.kind]


def _lookup(key: str) -> Any:
    """A payment by our numeric id or by its public id (the one in receipts and support messages)."""
    return Payment.id == int(key) if key.isdigit() and len(key) <= 18 else Payment.public_id == key


async def payment_detail(session: AsyncSession, key: str) -> PaymentDetail:
    row = (
        await session.execute(select(Payment, User).join(User, User.id == Payment.user_id).where(_lookup(key)))
    ).first()
    if row is None:
        raise NotFound("There is no such payment.", code="payment_not_found")
    payment, user = row
    plan = await session.get(Plan, payment.plan_id) if payment.plan_id else None
    events = list(
        await session.scalars(
            select(PaymentEvent)
            .where(PaymentEvent.payment_id == payment.id)
            .order_by(PaymentEvent.received_at, PaymentEvent.id)
        )
    )
    audit = list(
        await session.scalars(
            select(AuditLog)
            .where(AuditLog.entity_type == "payment", AuditLog.entity_id == payment.public_id)
            .order_by(AuditLog.created_at, AuditLog.id)
        )
    )
    refunds = list(
        await session.scalars(
            select(PaymentRefund).where(PaymentRefund.payment_id == payment.id).order_by(PaymentRefund.id)
        )
    )
    return PaymentDetail(payment, user, plan, events, audit, refunds)
