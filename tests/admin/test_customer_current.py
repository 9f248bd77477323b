"""Each customer's row carries their current subscription (users.current_*), kept by database triggers: whatever
changes a subscription (a payment's activation, a refund taking days back, staff extending, shortening or
cancelling, the expiry job's status change, a pending checkout, hand-written SQL, a deletion), the row says
what the customers table always computed: the subscription ending last, pending checkouts aside."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.admin.users.queries import CustomerFilters, CustomerQuery
from app.audit.service import Actor
from app.kit.clock import ensure_utc, utcnow
from app.models import Subscription, SubscriptionStatus, User
from app.subscriptions import staff_actions
from app.subscriptions.activation import add_days, take_days
from tests.factories import add_server, add_subscriber

STAFF = Actor("staff", 1)


async def _stored(db: AsyncSession, user: User) -> tuple:
    row = (
        await db.execute(
            select(User.current_subscription_id, User.current_status, User.current_ends_at, User.current_is_trial)
            .where(User.id == user.id)
            .execution_options(populate_existing=True)
        )
    ).one()
    return row[0], row[1], ensure_utc(row[2]) if row[2] else None, row[3]


async def _expected(db: AsyncSession, user: User) -> tuple:
    """Computed from the subscriptions, as the table did before the user row carried it."""
    current = await db.scalar(
        select(Subscription)
        .where(Subscription.user_id == user.id, Subscription.status != SubscriptionStatus.PENDING)
        .order_by(Subscription.ends_at.desc(), Subscription.id.desc())
        .limit(1)
        .execution_options(populate_existing=True)
    )
    if current is None:
        return None, None, None, None
    return current.id, current.status.value, ensure_utc(current.ends_at), current.is_trial


async def _check(db: AsyncSession, user: User, status: str | None) -> None:
    await db.flush()
    stored = await _stored(db, user)
    assert stored == await _expected(db, user)
    assert stored[1] == status
    # And the table's status filter finds the customer under the status the page shows.
    shown = "none" if status is None else None
    for name in ("active", "trial", "expired", "cancelled", "none"):
        ids = await CustomerQuery(CustomerFilters(status=name)).ids(db, limit=1000)
        if user.id in ids:
            shown = name
    assert shown is not None


async def test_every_change_to_a_subscription_updates_the_customer_row(db: AsyncSession) -> None:
    await add_server(db)
    now = utcnow()
    user = User(telegram_id=9901, referral_code="cur9901")
    db.add(user)
    await _check(db, user, None)

    # A pending checkout is never current.
    db.add(
        Subscription(
            user_id=user.id, status=SubscriptionStatus.PENDING, starts_at=now, ends_at=now + timedelta(days=90)
        )
    )
    await _check(db, user, None)

    # A trial, then a payment's activation (insert, then update of status, end and trial flag).
    trial = Subscription(
        user_id=user.id,
        status=SubscriptionStatus.TRIAL,
        is_trial=True,
        starts_at=now - timedelta(days=10),
        ends_at=now + timedelta(days=3),
    )
    db.add(trial)
    await _check(db, user, "trial")
    subscription = await add_days(db, user.id, 30, plan=None, now=now)
    assert subscription.id == trial.id
    await _check(db, user, "active")
    assert (await _stored(db, user))[3] is False

    # A refund takes the days back; staff extend, shorten, set the end, cancel.
    await take_days(db, subscription, 10, now=now)
    await _check(db, user, "active")
    await staff_actions.extend(db, STAFF, subscription, 5)
    await _check(db, user, "active")
    await staff_actions.set_end_date(db, STAFF, subscription, now + timedelta(days=1))
    await _check(db, user, "active")
    await staff_actions.cancel(db, STAFF, subscription)
    await _check(db, user, "cancelled")
    await staff_actions.extend(db, STAFF, subscription, 7)  # an extension revives it
    await _check(db, user, "active")

    # The expiry job's change of status, and an end date moved by hand-written SQL.
    subscription.status = SubscriptionStatus.EXPIRED
    await _check(db, user, "expired")
    await db.execute(text("UPDATE subscriptions SET status = 'active' WHERE id = :id"), {"id": subscription.id})
    await db.execute(
        update(Subscription)
        .where(Subscription.id == subscription.id)
        .values(ends_at=now - timedelta(days=1))
        .execution_options(synchronize_session=False)
    )
    await _check(db, user, "active")  # the stored status; the filter calls it expired, as the page does
    assert user.id in await CustomerQuery(CustomerFilters(status="expired")).ids(db, limit=1000)

    # A second subscription ending later becomes current; deleting it gives the first one back.
    later = Subscription(
        user_id=user.id, status=SubscriptionStatus.ACTIVE, starts_at=now, ends_at=now + timedelta(days=60)
    )
    db.add(later)
    await _check(db, user, "active")
    assert (await _stored(db, user))[0] == later.id
    await db.execute(delete(Subscription).where(Subscription.id == later.id))
    await _check(db, user, "active")
    assert (await _stored(db, user))[0] == subscription.id

    # A subscription moved to another customer leaves this one's row and joins the other's.
    other, _ = await add_subscriber(db, 9902, ends_in=timedelta(days=-5))  # ended before the moved one
    await db.execute(update(Subscription).where(Subscription.id == subscription.id).values(user_id=other.id))
    await _check(db, user, None)
    assert (await _stored(db, other))[0] == subscription.id
    assert await _stored(db, other) == await _expected(db, other)
