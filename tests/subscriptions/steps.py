"""The steps the subscription tests take: customers who paid (with or without a saved card), running the two
jobs, and reading back what they queued and what the demo panel holds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from app.db import transaction
from app.kit.crypto import cipher
from app.models import (
    AuditLog,
    DemoPanelAccount,
    OutboxMessage,
    OutboxStatus,
    Payment,
    SavedPaymentMethod,
    Subscription,
    User,
    VpnAccount,
)
from app.notifications.service import USER_TOPIC
from app.outbox.service import MESSAGE_TOPIC_PREFIX, dispatch
from app.payments.providers.base import SavedMethod
from tasks.subscriptions import expire_subscriptions, send_expiry_reminders
from tests.payments.shop import Shop, apply, checkout, paid, reload

NOW = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
GOOD_CARD = "demo_card_good"
DECLINING_CARD = "demo_declined_card"


def ctx(shop: Shop) -> dict[str, Any]:
    return {"resources": shop.resources, "settings": shop.settings}


async def remind(shop: Shop) -> dict[str, int]:
    """Run the reminder job; returns how many it queued per stage ({"days_3": n, ...})."""
    return await send_expiry_reminders(ctx(shop))


async def expire(shop: Shop) -> dict[str, int]:
    """Run the expiry job; returns its outcomes."""
    return await expire_subscriptions(ctx(shop))


async def customer(
    shop: Shop, telegram_id: int, *, card: str | None = None, plan: str = "month"
) -> tuple[User, Subscription]:
    """A customer who paid for `plan` through the demo provider, saving a card for renewals if `card` (a token
    prefix: GOOD_CARD or DECLINING_CARD) is given."""
    user = await shop.user(telegram_id)
    payment = await checkout(shop, user, plan)
    # Each customer's own card: a card is saved once per provider, so a shared token would be the first one's.
    saved = SavedMethod("demo_card", "Demo card", f"{card}-{telegram_id}") if card else None
    await apply(shop, paid(payment, event=f"first-{telegram_id}", saved_method=saved))
    return user, await reload(shop, Subscription, user_id=user.id)


async def pay_again(shop: Shop, user: User, event: str) -> Payment:
    """The customer pays for another month through checkout, as they would from the cabinet."""
    payment = await checkout(shop, user)
    await apply(shop, paid(payment, event=event))
    return payment


async def save_card(shop: Shop, user: User, card: str) -> None:
    """The customer saves another card (the newest active one is charged)."""
    async with transaction(shop.resources.sessionmaker) as session:
        session.add(
            SavedPaymentMethod(
                user_id=user.id,
                provider="demo",
                method_type="demo_card",
                title="Demo card",
                secret_encrypted=cipher().encrypt(card),
                fingerprint=cipher().fingerprint(card),
            )
        )


async def add_method(shop: Shop, user: User, provider: str, secret: str, *, active: bool = True) -> None:
    """A saved method of any provider, as the payment path would have stored it."""
    async with transaction(shop.resources.sessionmaker) as session:
        session.add(
            SavedPaymentMethod(
                user_id=user.id,
                provider=provider,
                method_type=f"{provider}_method",
                title=provider,
                secret_encrypted=cipher().encrypt(secret),
                fingerprint=cipher().fingerprint(f"{provider}:{secret}"),
                is_active=active,
            )
        )


async def update(shop: Shop, subscription_id: int, **values: Any) -> None:
    async with transaction(shop.resources.sessionmaker) as session:
        subscription = await session.get_one(Subscription, subscription_id)
        for name, value in values.items():
            setattr(subscription, name, value)


async def messages(shop: Shop, *kinds: str) -> list[dict[str, Any]]:
    """User messages queued in the outbox (payload: user_id, kind, data, dedupe_key), oldest first."""
    async with shop.resources.sessionmaker() as session:
        rows = await session.scalars(
            select(OutboxMessage).where(OutboxMessage.topic == USER_TOPIC).order_by(OutboxMessage.id)
        )
        return [row.payload for row in rows if not kinds or row.payload["kind"] in kinds]


async def audit_actions(shop: Shop, subscription_id: int) -> list[tuple[str, str]]:
    async with shop.resources.sessionmaker() as session:
        rows = await session.execute(
            select(AuditLog.actor_type, AuditLog.action)
            .where(AuditLog.entity_type == "subscription", AuditLog.entity_id == str(subscription_id))
            .order_by(AuditLog.id)
        )
        return [(actor, action) for actor, action in rows]


async def renewals(shop: Shop) -> list[Payment]:
    async with shop.resources.sessionmaker() as session:
        return list((await session.scalars(select(Payment).where(Payment.is_renewal).order_by(Payment.id))).all())


async def drain(shop: Shop) -> None:
    """Run the outbox's side effects (the panel's convergence) until none is due. Messages to people stay
    queued: the tests read them there."""
    for _ in range(20):
        await dispatch(ctx(shop), lane="effects")
        async with shop.resources.sessionmaker() as session:
            left = await session.scalar(
                select(OutboxMessage.id)
                .where(
                    OutboxMessage.status == OutboxStatus.PENDING,
                    ~OutboxMessage.topic.startswith(MESSAGE_TOPIC_PREFIX, autoescape=True),
                )
                .limit(1)
            )
        if left is None:
            return
    raise AssertionError("the outbox did not drain")


async def panel_account(shop: Shop, subscription_id: int) -> tuple[VpnAccount, DemoPanelAccount | None]:
    """Our record of the subscription's VPN account and the demo panel's own record of it."""
    async with shop.resources.sessionmaker() as session:
        account = await session.scalar(select(VpnAccount).where(VpnAccount.subscription_id == subscription_id))
        assert account is not None
        on_panel = await session.scalar(
            select(DemoPanelAccount).where(DemoPanelAccount.username == account.panel_username)
        )
        return account, on_panel


def same_second(a: datetime | None, b: datetime | None) -> bool:
    return a is not None and b is not None and abs(a - b) < timedelta(seconds=1)
