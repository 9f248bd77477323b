"""Refunds, renewal charges of a saved method and reconciliation (app/payments/operations.py), through the demo
provider, on both databases."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import select

from app.audit.service import Actor
from app.db import transaction
from app.experiments import service as experiments
from app.kit.clock import utcnow
from app.kit.errors import Conflict
from app.kit.field_errors import FieldInvalid
from app.models import (
    AuditLog,
    DemoInvoice,
    DemoInvoiceStatus,
    ExperimentAssignment,
    OutboxMessage,
    Payment,
    PaymentRefund,
    PaymentStatus,
    RefundStatus,
    SavedPaymentMethod,
    Subscription,
)
from app.outbox.service import dispatch
from app.payments.operations import (
    REFUND_TOPIC,
    RenewalResult,
    charge_renewal,
    reconcile_pending,
    renewal_key,
    request_refund,
    run_refund,
)
from app.payments.providers.base import SavedMethod
from app.payments.providers.demo import DECLINING_CARD
from tests.payments.shop import Shop, apply, checkout, count, paid, reload

TODAY = date(2026, 11, 21)


async def _subscriber_with_card(shop: Shop, telegram_id: int, card: str) -> tuple:
    user = await shop.user(telegram_id)
    payment = await checkout(shop, user)
    await apply(shop, paid(payment, event=f"first-{telegram_id}", saved_method=SavedMethod("demo_card", "Demo", card)))
    return user, await reload(shop, Subscription, user_id=user.id)


async def test_a_renewal_charges_the_saved_card_once_per_day(shop: Shop) -> None:
    user, subscription = await _subscriber_with_card(shop, 60, "demo_card_ok")
    assert await charge_renewal(shop.resources, subscription.id, attempt=TODAY) == RenewalResult.SUCCEEDED
    renewed = await reload(shop, Subscription, id=subscription.id)
    assert renewed.ends_at - subscription.ends_at == timedelta(days=30)
    renewal = await reload(shop, Payment, is_renewal=True)
    card = await reload(shop, SavedPaymentMethod, user_id=user.id)
    assert (renewal.status, renewal.amount_minor, renewal.saved_method_id) == (PaymentStatus.SUCCEEDED, 19900, card.id)
    # The job retried the same day: no second charge, no second extension.
    assert await charge_renewal(shop.resources, subscription.id, attempt=TODAY) == RenewalResult.SUCCEEDED
    assert await count(shop, Payment, Payment.is_renewal) == 1
    assert (await reload(shop, Subscription, id=subscription.id)).ends_at == renewed.ends_at
    assert await count(shop, DemoInvoice, DemoInvoice.card_token == "demo_card_ok") == 1


async def test_a_renewal_charges_the_price_experiment_variant_the_customer_was_shown(shop: Shop) -> None:
    """Anna bought the month at the experiment's cheap price (she is in its "cheap" variant): her renewal charges
    that price while the experiment runs, and the list price once it stops. Boris never saw the experiment: he
    is charged the list price, and the renewal does not put him in it."""
    anna, anna_sub = await _subscriber_with_card(shop, 63, "demo_card_anna")
    boris, boris_sub = await _subscriber_with_card(shop, 64, "demo_card_boris")
    cheap = experiments.VariantDraft("cheap", 50, prices={"RUB": 14900})
    draft = experiments.ExperimentDraft(
        key="month-cheap", name="Cheaper month", kind="price", target="month",
        variants=[experiments.VariantDraft("control", 50), cheap],
    )  # fmt: skip
    async with transaction(shop.resources.sessionmaker) as session:
        experiment = await experiments.create(session, draft, Actor("system", None))
        await experiments.start(session, experiment.id, Actor("system", None))
        session.add(ExperimentAssignment(experiment_id=experiment.id, user_id=anna.id, variant="cheap"))
        experiment_id = experiment.id

    async def renewal_amount(subscription: Subscription, attempt: date) -> int:
        assert await charge_renewal(shop.resources, subscription.id, attempt=attempt) == RenewalResult.SUCCEEDED
        key = renewal_key(subscription.id, attempt)
        return (await reload(shop, Payment, idempotency_key=key)).amount_minor

    assert await renewal_amount(anna_sub, TODAY) == 14900
    assert await renewal_amount(boris_sub, TODAY) == 19900
    assert await count(shop, ExperimentAssignment, ExperimentAssignment.user_id == boris.id) == 0
    async with transaction(shop.resources.sessionmaker) as session:
        await experiments.stop(session, experiment_id, Actor("system", None))
    assert await renewal_amount(anna_sub, TODAY + timedelta(days=30)) == 19900


async def test_a_method_already_saved_by_another_customer_is_never_reactivated_for_a_new_payer(shop: Shop) -> None:
    """Anna saved a card and removed it; Boris then pays with a method of the same fingerprint (the demo derives
    it from the card token; a real provider's would be one customer's). Anna's row stays removed and hers, so
    nothing charges her again; Boris gets no saved method and no renewal."""
    anna, anna_sub = await _subscriber_with_card(shop, 65, "demo_card_shared")
    async with transaction(shop.resources.sessionmaker) as session:
        card = await session.scalar(select(SavedPaymentMethod).where(SavedPaymentMethod.user_id == anna.id))
        card.is_active, card.revoked_at = False, utcnow()
    boris, boris_sub = await _subscriber_with_card(shop, 66, "demo_card_shared")
    card = await reload(shop, SavedPaymentMethod, user_id=anna.id)
    assert (card.is_active, await count(shop, SavedPaymentMethod)) == (False, 1)
    assert (await reload(shop, Payment, user_id=boris.id)).saved_method_id is None
    assert await charge_renewal(shop.resources, anna_sub.id, attempt=TODAY) == RenewalResult.NO_METHOD
    assert await charge_renewal(shop.resources, boris_sub.id, attempt=TODAY) == RenewalResult.NO_METHOD
    assert await count(shop, AuditLog, AuditLog.action == "payment_method.foreign") == 1


async def test_a_declined_renewal_fails_and_changes_no_dates(shop: Shop) -> None:
    _, subscription = await _subscriber_with_card(shop, 61, DECLINING_CARD + "x")
    assert await charge_renewal(shop.resources, subscription.id, attempt=TODAY) == RenewalResult.FAILED
    assert (await reload(shop, Subscription, id=subscription.id)).ends_at == subscription.ends_at
    assert (await reload(shop, Payment, is_renewal=True)).status == PaymentStatus.FAILED


async def test_without_a_saved_method_nothing_is_charged(shop: Shop) -> None:
    user = await shop.user(62)
    payment = await checkout(shop, user)
    await apply(shop, paid(payment))
    subscription = await reload(shop, Subscription, user_id=user.id)
    assert await charge_renewal(shop.resources, subscription.id, attempt=TODAY) == RenewalResult.NO_METHOD
    async with transaction(shop.resources.sessionmaker) as session:
        session.add(
            SavedPaymentMethod(
                user_id=user.id,
                provider="demo",
                method_type="demo_card",
                title="t",
                secret_encrypted="x",
                fingerprint="f",
                is_active=False,
            )
        )
    assert await charge_renewal(shop.resources, subscription.id, attempt=TODAY) == RenewalResult.NO_METHOD
    assert await count(shop, Payment, Payment.is_renewal) == 0


async def test_a_refund_runs_through_the_outbox_and_takes_the_days_back(shop: Shop) -> None:
    user = await shop.user(63)
    payment = await checkout(shop, user)
    async with transaction(shop.resources.sessionmaker) as session:
        invoice = await session.scalar(select(DemoInvoice).where(DemoInvoice.external_id == payment.external_id))
        invoice.status = DemoInvoiceStatus.PAID
    await apply(shop, paid(payment))
    async with transaction(shop.resources.sessionmaker) as session:
        stored = await session.get_one(Payment, payment.id)
        await request_refund(session, shop.resources, stored, actor_type="staff", actor_id=1)
    await dispatch({"resources": shop.resources})
    refunded = await reload(shop, Payment, id=payment.id)
    assert refunded.status == PaymentStatus.REFUNDED
    assert (await reload(shop, DemoInvoice, external_id=payment.external_id)).status == DemoInvoiceStatus.REFUNDED
    assert (await reload(shop, Subscription, user_id=user.id)).ends_at - utcnow() < timedelta(minutes=1)


async def test_a_refund_of_an_unpaid_payment_is_refused(shop: Shop) -> None:
    user = await shop.user(64)
    payment = await checkout(shop, user)
    async with transaction(shop.resources.sessionmaker) as session:
        stored = await session.get_one(Payment, payment.id)
        with pytest.raises(Conflict, match="pending"):
            await request_refund(session, shop.resources, stored, actor_type="staff", actor_id=1)
    assert await count(shop, OutboxMessage, OutboxMessage.topic == REFUND_TOPIC) == 0


async def test_reconciliation_credits_a_payment_whose_webhook_was_lost(shop: Shop) -> None:
    user = await shop.user(65)
    payment = await checkout(shop, user)
    async with transaction(shop.resources.sessionmaker) as session:
        invoice = await session.scalar(select(DemoInvoice).where(DemoInvoice.external_id == payment.external_id))
        invoice.status, invoice.paid_at = DemoInvoiceStatus.PAID, utcnow()
        (await session.get_one(Payment, payment.id)).created_at = utcnow() - timedelta(minutes=10)
    counts = await reconcile_pending(shop.resources)
    assert counts["applied"] == 1
    assert (await reload(shop, Payment, id=payment.id)).status == PaymentStatus.SUCCEEDED
    assert await count(shop, Subscription) == 1
    # Nothing left to reconcile; a fresh checkout is left alone.
    await checkout(shop, user)
    assert await reconcile_pending(shop.resources) == {"applied": 0, "expired": 0, "unchanged": 0, "unavailable": 0}


async def _paid_demo(shop: Shop, telegram_id: int) -> Payment:
    user = await shop.user(telegram_id)
    payment = await checkout(shop, user)
    async with transaction(shop.resources.sessionmaker) as session:
        invoice = await session.scalar(select(DemoInvoice).where(DemoInvoice.external_id == payment.external_id))
        invoice.status = DemoInvoiceStatus.PAID
    await apply(shop, paid(payment))
    return payment


async def test_a_provider_that_refunds_whole_payments_refuses_a_part_and_nothing_changes(shop: Shop) -> None:
    payment = await _paid_demo(shop, 65)
    async with transaction(shop.resources.sessionmaker) as session:
        stored = await session.get_one(Payment, payment.id, with_for_update=True)
        with pytest.raises(FieldInvalid, match="demo refunds whole payments only") as refused:
            await request_refund(session, shop.resources, stored, amount_minor=50_00, actor_type="staff", actor_id=1)
        assert refused.value.field == "amount"
    assert await count(shop, OutboxMessage, OutboxMessage.topic == REFUND_TOPIC) == 0
    assert await count(shop, PaymentRefund, PaymentRefund.payment_id == payment.id) == 0
    assert (await reload(shop, Payment, id=payment.id)).refunded_minor == 0


async def test_a_retried_refund_job_refunds_once(shop: Shop) -> None:
    payment = await _paid_demo(shop, 66)
    async with transaction(shop.resources.sessionmaker) as session:
        stored = await session.get_one(Payment, payment.id, with_for_update=True)
        refund = await request_refund(
            session, shop.resources, stored, amount_minor=stored.amount_minor, actor_type="staff", actor_id=1
        )
    ctx = {"resources": shop.resources}
    await run_refund(ctx, {"payment_id": payment.id, "refund_id": refund.id})
    await run_refund(ctx, {"payment_id": payment.id, "refund_id": refund.id})  # the job ran again
    done = await reload(shop, Payment, id=payment.id)
    assert (done.status, done.refunded_minor) == (PaymentStatus.REFUNDED, done.amount_minor)
    (row,) = await _refunds_of(shop, payment)
    assert (row.status, row.amount_minor) == (RefundStatus.SUCCEEDED, done.amount_minor)
    assert await count(shop, AuditLog, AuditLog.action == "payment.refunded") == 1


async def _refunds_of(shop: Shop, payment: Payment) -> list[PaymentRefund]:
    async with transaction(shop.resources.sessionmaker) as session:
        return list(await session.scalars(select(PaymentRefund).where(PaymentRefund.payment_id == payment.id)))
