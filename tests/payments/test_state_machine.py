"""The payment state machine and activation (app/payments/service.py), on both databases, through the demo
provider for checkouts and with provider updates built as an adapter would report them."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from app.db import transaction
from app.kit.clock import utcnow
from app.kit.money import Money
from app.models import (
    AuditLog,
    OutboxMessage,
    Payment,
    PaymentEvent,
    PaymentStatus,
    PromoCode,
    PromoKind,
    PromoRedemption,
    RedemptionStatus,
    SavedPaymentMethod,
    Subscription,
    SubscriptionStatus,
    VpnAccount,
)
from app.notifications.service import STAFF_TOPIC, USER_TOPIC
from app.payments.providers.base import PaymentState, ProviderUpdate, SavedMethod
from app.payments.service import Outcome, UnknownPayment
from tests.payments.shop import Shop, apply, checkout, count, paid, reload


async def test_checkout_prices_on_the_server_and_waits_for_the_provider(shop: Shop) -> None:
    user = await shop.user(1)
    payment = await checkout(shop, user)
    assert payment.status == PaymentStatus.PENDING
    assert (payment.amount_minor, payment.currency, payment.days) == (19900, "RUB", 30)
    assert payment.external_id and payment.external_id.startswith("demo_")
    assert payment.pay_url == f"{shop.settings.public_base_url}/pay/demo/{payment.external_id}"
    assert await count(shop, Subscription) == 0


async def test_success_activates_in_the_same_transaction_with_outbox_rows(shop: Shop) -> None:
    user = await shop.user(2)
    payment = await checkout(shop, user)
    before = utcnow()
    assert await apply(shop, paid(payment)) == Outcome.APPLIED

    stored = await reload(shop, Payment, id=payment.id)
    assert stored.status == PaymentStatus.SUCCEEDED and stored.paid_at is not None
    subscription = await reload(shop, Subscription, user_id=user.id)
    assert subscription.status == SubscriptionStatus.ACTIVE and subscription.plan_id == shop.plans["month"].id
    assert timedelta(days=30) <= subscription.ends_at - before < timedelta(days=30, minutes=1)
    assert stored.subscription_id == subscription.id
    assert (stored.receipt["total_minor"], stored.receipt["currency"]) == (19900, "RUB")
    assert stored.receipt["ends_at"] == subscription.ends_at.isoformat()
    account = await reload(shop, VpnAccount, subscription_id=subscription.id)
    assert account.device_limit == 3
    topics = {m.topic for m in (await _outbox(shop))}
    assert {"panel.sync_account", USER_TOPIC} <= topics
    assert await count(shop, AuditLog, AuditLog.action == "payment.succeeded") == 1


async def _outbox(shop: Shop) -> list[OutboxMessage]:
    async with shop.resources.sessionmaker() as session:
        return list((await session.scalars(select(OutboxMessage))).all())


async def test_a_redelivered_event_and_a_second_event_credit_once(shop: Shop) -> None:
    user = await shop.user(3)
    payment = await checkout(shop, user)
    assert await apply(shop, paid(payment, event="same")) == Outcome.APPLIED
    first_end = (await reload(shop, Subscription, user_id=user.id)).ends_at
    assert await apply(shop, paid(payment, event="same")) == Outcome.DUPLICATE
    assert await apply(shop, paid(payment, event="fetch:succeeded")) == Outcome.UNCHANGED
    assert (await reload(shop, Subscription, user_id=user.id)).ends_at == first_end
    assert await count(shop, PaymentEvent) == 2
    notices = [m for m in await _outbox(shop) if m.topic == USER_TOPIC]
    assert len(notices) == 1


@pytest.mark.parametrize(
    "amount", [Money.of("199.01", "RUB"), Money.of("1.99", "USD"), None], ids=["amount", "currency", "missing"]
)
async def test_a_different_amount_is_a_mismatch_and_credits_nothing(shop: Shop, amount: Money | None) -> None:
    user = await shop.user(4)
    payment = await checkout(shop, user)
    update = paid(payment)
    update = ProviderUpdate(**{**{f: getattr(update, f) for f in update.__slots__}, "amount": amount})
    assert await apply(shop, update) == Outcome.MISMATCH
    assert (await reload(shop, Payment, id=payment.id)).status == PaymentStatus.MISMATCH
    assert await count(shop, Subscription) == 0
    alerts = [m for m in await _outbox(shop) if m.topic == STAFF_TOPIC]
    assert len(alerts) == 1 and alerts[0].payload["data"]["payment"] == payment.public_id
    # A later genuine success does not turn a mismatch into credit behind staff's back.
    assert await apply(shop, paid(payment, event="later")) == Outcome.UNCHANGED
    assert await count(shop, Subscription) == 0


async def test_an_unknown_payment_changes_nothing(shop: Shop) -> None:
    user = await shop.user(5)
    payment = await checkout(shop, user)
    ghost = ProviderUpdate(
        event_id="ghost",
        kind="t",
        state=PaymentState.SUCCEEDED,
        external_id="nope",
        order_id="nope",
        amount=Money.from_minor(payment.amount_minor, payment.currency),
    )
    with pytest.raises(UnknownPayment):
        await apply(shop, ghost)
    assert await count(shop, PaymentEvent) == 0
    assert (await reload(shop, Payment, id=payment.id)).status == PaymentStatus.PENDING


async def test_failure_releases_the_promo_hold_and_a_late_success_still_credits(shop: Shop) -> None:
    user = await shop.user(6)
    promo = await shop.promo("HALF", PromoKind.PERCENT, percent=Decimal(50), max_uses=1)
    payment = await checkout(shop, user, promo_code="half")
    assert payment.amount_minor == 9950
    assert (await reload(shop, PromoCode, id=promo.id)).used_count == 1
    assert await apply(shop, paid(payment, event="f", state=PaymentState.FAILED, failure_reason="declined")) == (
        Outcome.APPLIED
    )
    stored = await reload(shop, Payment, id=payment.id)
    assert (stored.status, stored.failure_reason) == (PaymentStatus.FAILED, "declined")
    assert (await reload(shop, PromoCode, id=promo.id)).used_count == 0
    assert (await reload(shop, PromoRedemption, payment_id=payment.id)).status == RedemptionStatus.RELEASED
    assert await apply(shop, paid(payment, event="late")) == Outcome.APPLIED
    assert (await reload(shop, Payment, id=payment.id)).status == PaymentStatus.SUCCEEDED
    assert await count(shop, Subscription) == 1


async def test_paying_while_active_stacks_and_after_expiry_restarts_on_the_same_account(shop: Shop) -> None:
    user = await shop.user(7)
    first = await checkout(shop, user)
    await apply(shop, paid(first, event="a"))
    subscription = await reload(shop, Subscription, user_id=user.id)
    account = await reload(shop, VpnAccount, subscription_id=subscription.id)

    second = await checkout(shop, user)
    await apply(shop, paid(second, event="b"))
    stacked = await reload(shop, Subscription, user_id=user.id)
    assert stacked.ends_at - subscription.ends_at == timedelta(days=30)

    async with transaction(shop.resources.sessionmaker) as session:
        row = await session.get(Subscription, subscription.id)
        row.starts_at = utcnow() - timedelta(days=90)
        row.status, row.ends_at = SubscriptionStatus.EXPIRED, utcnow() - timedelta(days=3)
    third = await checkout(shop, user)
    before = utcnow()
    await apply(shop, paid(third, event="c"))
    restarted = await reload(shop, Subscription, user_id=user.id)
    assert restarted.id == subscription.id and restarted.status == SubscriptionStatus.ACTIVE
    assert timedelta(days=30) <= restarted.ends_at - before < timedelta(days=30, minutes=1)
    assert (await reload(shop, VpnAccount, subscription_id=subscription.id)).id == account.id
    assert await count(shop, VpnAccount) == 1


async def test_a_trial_converts_and_keeps_its_remaining_days(shop: Shop) -> None:
    user = await shop.user(8)
    async with transaction(shop.resources.sessionmaker) as session:
        now = utcnow()
        session.add(
            Subscription(
                user_id=user.id,
                status=SubscriptionStatus.TRIAL,
                is_trial=True,
                starts_at=now,
                ends_at=now + timedelta(days=5),
            )
        )
    payment = await checkout(shop, user)
    await apply(shop, paid(payment))
    subscription = await reload(shop, Subscription, user_id=user.id)
    assert subscription.status == SubscriptionStatus.ACTIVE and not subscription.is_trial
    assert subscription.ends_at - utcnow() > timedelta(days=34)


async def test_refund_takes_the_days_back(shop: Shop) -> None:
    user = await shop.user(9)
    payment = await checkout(shop, user)
    await apply(shop, paid(payment, event="p"))
    refund = paid(payment, event="r", state=PaymentState.REFUNDED)
    assert await apply(shop, refund) == Outcome.APPLIED
    stored = await reload(shop, Payment, id=payment.id)
    assert stored.status == PaymentStatus.REFUNDED and stored.refunded_at is not None
    subscription = await reload(shop, Subscription, user_id=user.id)
    assert subscription.ends_at - utcnow() < timedelta(minutes=1)
    assert await apply(shop, paid(payment, event="r2", state=PaymentState.REFUNDED)) == Outcome.UNCHANGED


async def test_a_second_real_charge_of_one_order_is_its_own_payment(shop: Shop) -> None:
    """A Stars invoice paid again (new charge id, same payload) or a provider-side renewal is money received:
    it is recorded and credited as a new payment, not dropped as a duplicate."""
    user = await shop.user(10)
    payment = await checkout(shop, user)
    await apply(shop, paid(payment, event="c1", external_id="charge-1"))
    end = (await reload(shop, Subscription, user_id=user.id)).ends_at
    assert await apply(shop, paid(payment, event="c2", external_id="charge-2")) == Outcome.APPLIED
    renewal = paid(payment, event="c3", external_id="charge-3", is_renewal=True, subscription_ref="sub-1")
    assert await apply(shop, renewal) == Outcome.APPLIED
    assert await count(shop, Payment, Payment.status == PaymentStatus.SUCCEEDED) == 3
    assert await count(shop, Payment, Payment.is_renewal) == 1
    assert (await reload(shop, Subscription, user_id=user.id)).ends_at - end == timedelta(days=60)
    # The same charge reported again (by a status fetch, say) is recognised by its id.
    assert await apply(shop, paid(payment, event="fetch-c2", external_id="charge-2")) == Outcome.UNCHANGED


async def test_a_saved_method_is_stored_encrypted_and_revocation_deactivates_it(shop: Shop) -> None:
    user = await shop.user(11)
    payment = await checkout(shop, user)
    await apply(shop, paid(payment, saved_method=SavedMethod("bank_card", "Visa •••• 4444", "pm-secret-1")))
    method = await reload(shop, SavedPaymentMethod, user_id=user.id)
    assert method.is_active and method.title == "Visa •••• 4444"
    assert "pm-secret-1" not in method.secret_encrypted
    assert (await reload(shop, Payment, id=payment.id)).saved_method_id == method.id
    other = await checkout(shop, user)
    revoked = paid(
        other, event="x", state=PaymentState.CANCELLED, revoked_method_secret="pm-secret-1", failure_reason="r"
    )
    await apply(shop, revoked)
    method = await reload(shop, SavedPaymentMethod, user_id=user.id)
    assert not method.is_active and method.revoked_at is not None
