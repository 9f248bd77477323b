"""Auto-renewal on the end date (SPEC §4.3): the saved card is charged through the demo provider; on failure one
retry 24 hours later with the account kept enabled meanwhile; after two failures the subscription ends and the
account is disabled; the customer hears at every step. Both databases, frozen clock."""

from __future__ import annotations

from datetime import timedelta

from app.db import transaction
from app.models import (
    DemoAccountStatus,
    DemoInvoice,
    PaymentStatus,
    SavedPaymentMethod,
    Subscription,
    SubscriptionStatus,
    User,
)
from app.payments.providers.base import SavedMethod
from app.provisioning.service import should_be_enabled
from app.subscriptions.trial import activate_trial
from app.users.preferences import set_auto_renew
from tests.payments.shop import Shop, apply, checkout, paid, reload
from tests.subscriptions.steps import (
    DECLINING_CARD,
    GOOD_CARD,
    NOW,
    audit_actions,
    customer,
    drain,
    expire,
    messages,
    panel_account,
    renewals,
    same_second,
    save_card,
)


async def test_the_saved_card_is_charged_on_the_end_date(shop: Shop, freeze) -> None:
    clock = freeze(NOW)
    user, subscription = await customer(shop, 1, card=GOOD_CARD)
    clock.current = subscription.ends_at - timedelta(minutes=1)
    assert await expire(shop) == {}
    assert await renewals(shop) == []
    clock.current = subscription.ends_at + timedelta(minutes=2)
    assert await expire(shop) == {"renewed": 1}
    assert await expire(shop) == {}

    renewed = await reload(shop, Subscription, id=subscription.id)
    assert renewed.status == SubscriptionStatus.ACTIVE
    assert renewed.ends_at == clock.current + timedelta(days=30)
    assert (renewed.renewal_failures, renewed.next_renewal_attempt_at) == (0, None)
    [payment] = await renewals(shop)
    assert (payment.status, payment.amount_minor, payment.subscription_id) == (
        PaymentStatus.SUCCEEDED,
        19900,
        subscription.id,
    )
    receipts = [m for m in await messages(shop, "payment_succeeded") if m["data"]["renewal"]]
    assert [(m["user_id"], m["data"]["payment"]) for m in receipts] == [(user.id, payment.public_id)]
    assert await messages(shop, "renewal_failed", "subscription_ended") == []
    await drain(shop)
    _, on_panel = await panel_account(shop, subscription.id)
    assert on_panel is not None and on_panel.status == DemoAccountStatus.ACTIVE
    assert same_second(on_panel.expire_at, renewed.ends_at)


async def test_a_declined_charge_is_retried_a_day_later_with_the_account_kept(shop: Shop, freeze) -> None:
    clock = freeze(NOW)
    user, subscription = await customer(shop, 2, card=DECLINING_CARD)
    end = subscription.ends_at
    clock.current = end + timedelta(minutes=1)
    assert await expire(shop) == {"retry_scheduled": 1}
    assert await expire(shop) == {}  # the same moment again: nothing more is counted or charged
    retry_at = clock.current + timedelta(days=1)
    waiting = await reload(shop, Subscription, id=subscription.id)
    assert (waiting.status, waiting.renewal_failures, waiting.next_renewal_attempt_at) == (
        SubscriptionStatus.ACTIVE,
        1,
        retry_at,
    )
    assert waiting.ends_at == end and should_be_enabled(waiting)
    assert await messages(shop, "renewal_failed") == [
        {
            "user_id": user.id,
            "kind": "renewal_failed",
            "data": {
                "attempt": 1,
                "retry_at": retry_at.isoformat(),
                "reason": "declined",
                "subscription_id": subscription.id,
            },
            "dedupe_key": f"renewal_failed:{subscription.id}:{end.isoformat()}:1",
        }
    ]
    await drain(shop)
    _, on_panel = await panel_account(shop, subscription.id)
    # The grace: the panel keeps the account working until the retry, although the end date has passed.
    assert on_panel is not None and on_panel.status == DemoAccountStatus.ACTIVE
    assert same_second(on_panel.expire_at, retry_at)

    clock.current = retry_at - timedelta(seconds=1)
    assert await expire(shop) == {}
    assert len(await renewals(shop)) == 1

    await save_card(shop, user, GOOD_CARD)  # the customer fixes their payment method
    clock.current = retry_at + timedelta(minutes=3)
    assert await expire(shop) == {"renewed": 1}
    renewed = await reload(shop, Subscription, id=subscription.id)
    assert (renewed.status, renewed.renewal_failures, renewed.next_renewal_attempt_at) == (
        SubscriptionStatus.ACTIVE,
        0,
        None,
    )
    assert renewed.ends_at == clock.current + timedelta(days=30)
    assert [p.status for p in await renewals(shop)] == [PaymentStatus.FAILED, PaymentStatus.SUCCEEDED]
    assert await messages(shop, "subscription_ended") == []


async def test_two_declined_charges_end_the_subscription_and_disable_the_account(shop: Shop, freeze) -> None:
    clock = freeze(NOW)
    user, subscription = await customer(shop, 3, card=DECLINING_CARD)
    await drain(shop)
    end = subscription.ends_at
    clock.current = end + timedelta(minutes=1)
    assert await expire(shop) == {"retry_scheduled": 1}
    clock.current += timedelta(days=1, minutes=4)
    assert await expire(shop) == {"ended": 1}
    assert await expire(shop) == {}

    ended = await reload(shop, Subscription, id=subscription.id)
    assert (ended.status, ended.renewal_failures, ended.next_renewal_attempt_at, ended.ends_at) == (
        SubscriptionStatus.EXPIRED,
        2,
        None,
        end,
    )
    assert [p.status for p in await renewals(shop)] == [PaymentStatus.FAILED, PaymentStatus.FAILED]
    told = [(m["kind"], m["data"]) for m in await messages(shop, "renewal_failed", "subscription_ended")]
    assert [kind for kind, _ in told] == ["renewal_failed", "renewal_failed", "subscription_ended"]
    assert told[1][1] == {"attempt": 2, "retry_at": None, "reason": "declined", "subscription_id": subscription.id}
    assert told[2][1] == {"ends_at": end.isoformat(), "reason": "renewal_failed", "subscription_id": subscription.id}
    assert all(m["user_id"] == user.id for m in await messages(shop))
    assert await audit_actions(shop, subscription.id) == [
        ("system", "subscription.renewal_failed"),
        ("system", "subscription.renewal_failed"),
        ("system", "subscription.expired"),
    ]
    await drain(shop)
    _, on_panel = await panel_account(shop, subscription.id)
    assert on_panel is not None and on_panel.status == DemoAccountStatus.DISABLED


async def test_a_subscription_without_a_plan_is_not_charged(shop: Shop, freeze) -> None:
    clock = freeze(NOW)
    _, subscription = await customer(shop, 4, card=GOOD_CARD)
    async with shop.resources.sessionmaker() as session:
        stored = await session.get_one(Subscription, subscription.id)
        stored.plan_id = None  # e.g. time granted by staff: there is no price to charge
        await session.commit()
    clock.current = subscription.ends_at + timedelta(minutes=1)
    assert await expire(shop) == {"ended": 1}
    assert await renewals(shop) == []
    assert (await reload(shop, Subscription, id=subscription.id)).renewal_failures == 0


async def test_a_blocked_customer_is_not_charged_and_the_subscription_ends(shop: Shop, freeze) -> None:
    clock = freeze(NOW)
    user, subscription = await customer(shop, 5, card=GOOD_CARD)
    async with shop.resources.sessionmaker() as session:
        (await session.get_one(User, user.id)).is_blocked = True
        await session.commit()
    clock.current = subscription.ends_at + timedelta(minutes=1)
    assert await expire(shop) == {"ended": 1}
    assert await renewals(shop) == []
    assert (await reload(shop, Subscription, id=subscription.id)).status == SubscriptionStatus.EXPIRED


async def test_a_subscription_that_cannot_be_handled_does_not_stop_the_others(shop: Shop, freeze) -> None:
    clock = freeze(NOW)
    broken_user, broken = await customer(shop, 5)
    async with transaction(shop.resources.sessionmaker) as session:
        # A saved card sealed with a key the shop no longer has: charging it raises.
        session.add(
            SavedPaymentMethod(
                user_id=broken_user.id,
                provider="demo",
                method_type="demo_card",
                title="Demo card",
                secret_encrypted="sealed-with-a-lost-key",
                fingerprint="lost",
            )
        )
    _, fine = await customer(shop, 6, card=GOOD_CARD)
    clock.current = fine.ends_at + timedelta(minutes=1)
    assert await expire(shop) == {"error": 1, "renewed": 1}
    still_due = await reload(shop, Subscription, id=broken.id)
    assert (still_due.status, still_due.renewal_failures) == (SubscriptionStatus.ACTIVE, 0)
    assert (await reload(shop, Subscription, id=fine.id)).ends_at == clock.current + timedelta(days=30)


async def test_a_trial_then_a_purchase_with_a_card_renews_at_the_end(shop: Shop, freeze) -> None:
    """The usual path (SPEC §4.3): the trial first, then a payment with a method that can renew. Auto-renewal
    ends up on and the card is charged at the end of the paid period."""
    clock = freeze(NOW)
    user = await shop.user(21)
    async with transaction(shop.resources.sessionmaker) as session:
        trial = await activate_trial(session, await session.get_one(User, user.id), trial_days=7)
    assert (trial.is_trial, trial.auto_renew) == (True, False)  # nothing to renew with yet

    payment = await checkout(shop, user)
    assert (await reload(shop, DemoInvoice, order_id=payment.public_id)).save_card  # the card is kept
    card = SavedMethod("demo_card", "Demo card", f"{GOOD_CARD}-21")
    await apply(shop, paid(payment, event="after-trial", saved_method=card))

    bought = await reload(shop, Subscription, user_id=user.id)
    assert (bought.id, bought.is_trial, bought.auto_renew) == (trial.id, False, True)
    clock.current = bought.ends_at + timedelta(minutes=2)
    assert await expire(shop) == {"renewed": 1}
    [renewal] = await renewals(shop)
    assert (renewal.status, renewal.subscription_id) == (PaymentStatus.SUCCEEDED, trial.id)


async def test_a_customer_who_turned_auto_renewal_off_is_not_signed_up_again(shop: Shop, freeze) -> None:
    clock = freeze(NOW)
    user, subscription = await customer(shop, 22)
    async with transaction(shop.resources.sessionmaker) as session:
        await set_auto_renew(session, await session.get_one(User, user.id), enabled=False)

    payment = await checkout(shop, user)
    assert not (await reload(shop, DemoInvoice, order_id=payment.public_id)).save_card
    await apply(shop, paid(payment, event="second"))

    extended = await reload(shop, Subscription, id=subscription.id)
    assert extended.auto_renew is False
    clock.current = extended.ends_at + timedelta(minutes=2)
    assert await expire(shop) != {"renewed": 1}
    assert await renewals(shop) == []
