"""Provider-managed recurring payments and Telegram's pre-checkout query, against the emulators: Star
subscriptions and Razorpay subscriptions renew by themselves and each renewal is recorded as a new payment."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from app.audit.service import Actor
from app.db import transaction
from app.models import Payment, PaymentStatus, SavedPaymentMethod, Staff, StaffRole, Subscription, User
from app.subscriptions.trial import activate_trial
from app.users import staff_actions
from app.users.preferences import remove_payment_method
from tests.payments.test_webhooks import CASE_BY_PROVIDER, Harness, running
from tests.web import drain_outbox


@pytest.fixture
async def stars(database_url: str, db):
    async with running(CASE_BY_PROVIDER["stars"], database_url, db) as harness:
        yield harness


@pytest.fixture
async def razorpay(database_url: str, db):
    async with running(CASE_BY_PROVIDER["razorpay"], database_url, db) as harness:
        yield harness


async def _succeeded(harness: Harness) -> list[Payment]:
    async with harness.app.state.resources.sessionmaker() as session:
        query = select(Payment).where(Payment.status == PaymentStatus.SUCCEEDED).order_by(Payment.id)
        return list((await session.scalars(query)).all())


async def _ends(harness: Harness):
    async with harness.app.state.resources.sessionmaker() as session:
        return await session.scalar(select(func.max(Subscription.ends_at)))


async def test_the_pre_checkout_query_is_answered_from_our_order(stars: Harness) -> None:
    payment = await stars.checkout()
    assert payment.details["invoice_link"].startswith("https://t.me/")
    good = stars.emulator.pre_checkout(payment.public_id, 4242)
    assert (await stars.post(good)).status_code == 200
    wrong = stars.emulator.pre_checkout(payment.public_id, 4242, amount=1)
    assert (await stars.post(wrong)).status_code == 200
    queries = list(stars.emulator.queries.values())
    assert [(query.ok, query.late) for query in queries] == [(True, False), (False, False)]
    assert "price" in (queries[1].error_message or "")


async def test_a_star_subscription_renewal_is_a_new_payment(stars: Harness) -> None:
    payment = await stars.checkout()
    first = stars.emulator.pay(payment.public_id)
    assert (await stars.post(first)).status_code == 200
    end = await _ends(stars)
    charge_id = (await _succeeded(stars))[0].external_id
    async with stars.app.state.resources.sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(SavedPaymentMethod)) == 1
    renewal = stars.emulator.renew(charge_id)
    assert (await stars.post(renewal)).status_code == 200
    assert (await stars.post(renewal)).status_code == 200  # redelivered
    payments = await _succeeded(stars)
    assert len(payments) == 2 and payments[1].is_renewal and payments[1].external_id != charge_id
    assert await _ends(stars) - end == timedelta(days=30)


async def test_a_trial_then_a_star_subscription_keeps_auto_renewal_on(stars: Harness) -> None:
    # The probe's case: trial first, then Stars; auto-renewal showed "off" and the renewal was never expected.
    async with transaction(stars.app.state.resources.sessionmaker) as session:
        await activate_trial(session, await session.get_one(User, stars.user.id), trial_days=7)
    payment = await stars.checkout()
    assert (await stars.post(stars.emulator.pay(payment.public_id))).status_code == 200

    async with stars.app.state.resources.sessionmaker() as session:
        subscription = await session.scalar(select(Subscription))
    assert subscription is not None and (subscription.is_trial, subscription.auto_renew) == (False, True)


async def test_a_razorpay_subscription_charges_each_cycle_once(razorpay: Harness) -> None:
    payment = await razorpay.checkout()
    assert payment.external_id.startswith("sub_")
    for cycle in range(3):
        delivery = razorpay.emulator.charge_subscription(payment.external_id)
        assert (await razorpay.post(delivery)).status_code == 200
        assert (await razorpay.post(delivery)).status_code == 200
        assert len(await _succeeded(razorpay)) == cycle + 1
    payments = await _succeeded(razorpay)
    assert [p.is_renewal for p in payments] == [False, True, True]


async def test_a_razorpay_customer_may_pay_once_instead_of_an_e_mandate(razorpay: Harness) -> None:
    subscription = await razorpay.checkout()
    assert subscription.external_id.startswith("sub_")
    # A subscription needs a recurring mandate: a customer paying from a wallet cannot take it.
    with pytest.raises(ValueError, match="mandate"):
        razorpay.emulator.charge_subscription(subscription.external_id, method="wallet")

    once = await razorpay.checkout(one_off=True)
    assert once.external_id.startswith("plink_")
    assert (await razorpay.post(razorpay.emulator.pay_link(once.external_id, method="wallet"))).status_code == 200
    [paid] = await _succeeded(razorpay)
    assert paid.id == once.id and not paid.is_renewal
    async with razorpay.app.state.resources.sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(SavedPaymentMethod)) == 0  # nothing renews


async def test_removing_a_star_subscription_method_cancels_it_at_telegram(stars: Harness) -> None:
    payment = await stars.checkout()
    paid = stars.emulator.pay(payment.public_id, user_id=stars.user.telegram_id)
    assert (await stars.post(paid)).status_code == 200
    resources = stars.app.state.resources
    async with resources.sessionmaker() as session:
        method = await session.scalar(select(SavedPaymentMethod))
        user = await session.get_one(type(stars.user), stars.user.id)
        await remove_payment_method(session, user, method.id)
        await session.commit()
    await drain_outbox(stars.app)
    calls = stars.emulator.calls("editUserStarSubscription")
    assert len(calls) == 1 and calls[0]["is_canceled"] in (True, "true")
    assert calls[0]["telegram_payment_charge_id"] == (await _succeeded(stars))[0].external_id


async def test_blocking_a_customer_cancels_their_star_subscription_at_telegram(stars: Harness) -> None:
    """Telegram renews a Star subscription without asking us (no pre-checkout query): only a cancel at Telegram
    stops a blocked customer's monthly charge."""
    payment = await stars.checkout()
    paid = stars.emulator.pay(payment.public_id, user_id=stars.user.telegram_id)
    assert (await stars.post(paid)).status_code == 200
    resources = stars.app.state.resources
    async with resources.sessionmaker() as session:
        staff = Staff(username="blocker", password_hash="x", role=StaffRole.ADMIN)
        session.add(staff)
        await session.flush()
        user = await session.get_one(User, stars.user.id)
        await staff_actions.block(session, Actor("staff", staff.id), user, "chargeback fraud")
        await session.commit()
    await drain_outbox(stars.app)
    calls = stars.emulator.calls("editUserStarSubscription")
    assert len(calls) == 1 and calls[0]["is_canceled"] in (True, "true")
    assert calls[0]["telegram_payment_charge_id"] == (await _succeeded(stars))[0].external_id
