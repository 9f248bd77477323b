"""Which saved payment methods renew a subscription (SPEC §4.3), for the reminders and the expiry job.

Two kinds: methods we charge ourselves on the end date (YooKassa cards and SBP: `supports_saved_methods`), and
provider-side subscriptions that renew on their own and reach us as webhooks (Telegram Stars, Razorpay:
`supports_recurring`). Only active methods of enabled providers count: a disabled provider can neither be
charged nor have its webhooks accepted.
"""

from __future__ import annotations

import enum

from sqlalchemy import ColumnElement, exists, false, literal_column, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import SavedPaymentMethod, Subscription, User
from app.payments.registry import PaymentRegistry
from app.users.preferences import current_paid_subscription


class Renewal(enum.StrEnum):
    CHARGE = "charge"  # we charge a saved method (app.payments.operations.charge_renewal)
    PROVIDER = "provider"  # the provider charges by itself; its webhook extends the subscription


def charged_providers(payments: PaymentRegistry) -> frozenset[str]:
    return frozenset(provider.name for provider in payments if provider.supports_saved_methods)


def self_renewing_providers(payments: PaymentRegistry) -> frozenset[str]:
    return frozenset(provider.name for provider in payments if provider.supports_recurring)


def renewal_by(*, self_renewing: bool, charged: bool) -> Renewal | None:
    """A provider-side subscription wins over a saved card: the provider charges anyway, so charging the card
    too would take the money twice."""
    if self_renewing:
        return Renewal.PROVIDER
    return Renewal.CHARGE if charged else None


async def keeps_auto_renewal(session: AsyncSession, user: User) -> bool:
    """Whether a new payment should set up renewal: on unless the customer turned it off on their paid
    subscription (a trial's flag is not their choice: they cannot change it, and paying turns it on)."""
    subscription = await current_paid_subscription(session, user)
    return subscription is None or subscription.auto_renew


async def renewal_of(session: AsyncSession, payments: PaymentRegistry, user_id: int) -> Renewal | None:
    """How the user's subscription will renew, if at all."""
    providers = set(
        (
            await session.scalars(
                select(SavedPaymentMethod.provider)
                .where(SavedPaymentMethod.user_id == user_id, SavedPaymentMethod.is_active)
                .distinct()
            )
        ).all()
    )
    return renewal_by(
        self_renewing=bool(providers & self_renewing_providers(payments)),
        charged=bool(providers & charged_providers(payments)),
    )


def has_method(providers: frozenset[str]) -> ColumnElement[bool]:
    """SQL: the subscription's user has an active method of one of `providers`. Correlated to the subscription
    row, so a batch of reminders asks it in the RETURNING of its own UPDATE."""
    if not providers:
        return false()
    return exists().where(
        # Spelled out: SQLAlchemy writes RETURNING columns unqualified on SQLite, and an unqualified user_id
        # inside this subquery would be the method's own, matching every row.
        SavedPaymentMethod.user_id == literal_column(f"{Subscription.__tablename__}.user_id"),
        SavedPaymentMethod.is_active,
        SavedPaymentMethod.provider.in_(sorted(providers)),
    )
