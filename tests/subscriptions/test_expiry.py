"""The end of a subscription without a charge (SPEC §4.3–4.4): nothing renews it, auto-renew is off, a trial ends,
a provider-side subscription is waited for; the account is disabled on the demo panel, kept, and re-enabled on the
same account when the customer pays again."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from app.models import (
    DemoAccountStatus,
    DemoPanelDevice,
    Server,
    Subscription,
    SubscriptionStatus,
    UsageDaily,
)
from app.provisioning.service import should_be_enabled
from app.subscriptions.trial import activate_trial
from tests.payments.shop import Shop, reload
from tests.subscriptions.steps import (
    GOOD_CARD,
    NOW,
    add_method,
    audit_actions,
    customer,
    drain,
    expire,
    messages,
    panel_account,
    pay_again,
    renewals,
    same_second,
    update,
)


async def test_a_subscription_nothing_renews_ends_and_its_account_is_disabled(shop: Shop, freeze) -> None:
    clock = freeze(NOW)
    user, subscription = await customer(shop, 1)
    await drain(shop)
    end = subscription.ends_at
    clock.current = end - timedelta(seconds=1)
    assert await expire(shop) == {}
    clock.current = end + timedelta(minutes=3)
    assert await expire(shop) == {"ended": 1}
    assert await expire(shop) == {}  # a second run at the same moment changes nothing

    ended = await reload(shop, Subscription, id=subscription.id)
    assert (ended.status, ended.ends_at, ended.next_renewal_attempt_at) == (SubscriptionStatus.EXPIRED, end, None)
    assert await messages(shop, "subscription_ended") == [
        {
            "user_id": user.id,
            "kind": "subscription_ended",
            "data": {"ends_at": end.isoformat(), "reason": "expired", "subscription_id": subscription.id},
            "dedupe_key": f"subscription_ended:{subscription.id}:{end.isoformat()}",
        }
    ]
    assert await audit_actions(shop, subscription.id) == [("system", "subscription.expired")]
    await drain(shop)
    account, on_panel = await panel_account(shop, subscription.id)
    assert on_panel is not None and on_panel.status == DemoAccountStatus.DISABLED
    assert account.panel_username == on_panel.username  # disabled, not deleted


async def test_auto_renew_off_ends_without_a_charge(shop: Shop, freeze) -> None:
    clock = freeze(NOW)
    _, subscription = await customer(shop, 2, card=GOOD_CARD)
    await update(shop, subscription.id, auto_renew=False)
    clock.current = subscription.ends_at + timedelta(minutes=1)
    assert await expire(shop) == {"ended": 1}
    assert await renewals(shop) == []
    assert [m["data"]["reason"] for m in await messages(shop, "subscription_ended")] == ["expired"]


async def test_a_card_of_a_provider_no_longer_enabled_is_not_charged(shop: Shop, freeze) -> None:
    clock = freeze(NOW)
    user, subscription = await customer(shop, 3)
    await add_method(shop, user, "yookassa", "pm-1")  # saved back when YooKassa was on; it is off now
    clock.current = subscription.ends_at + timedelta(minutes=1)
    assert await expire(shop) == {"ended": 1}
    assert await renewals(shop) == []
    assert (await reload(shop, Subscription, id=subscription.id)).renewal_failures == 0


async def test_a_trial_ends_with_its_own_reason(shop: Shop, freeze) -> None:
    clock = freeze(NOW)
    user = await shop.user(4)
    trial = await activate_trial(shop.db, user, trial_days=7)
    await shop.db.commit()
    await drain(shop)
    clock.current = trial.ends_at + timedelta(minutes=4)
    assert await expire(shop) == {"ended": 1}
    assert (await reload(shop, Subscription, id=trial.id)).status == SubscriptionStatus.EXPIRED
    assert [m["data"] for m in await messages(shop, "subscription_ended")] == [
        {"ends_at": trial.ends_at.isoformat(), "reason": "trial", "subscription_id": trial.id}
    ]
    await drain(shop)
    _, on_panel = await panel_account(shop, trial.id)
    assert on_panel is not None and on_panel.status == DemoAccountStatus.DISABLED


async def test_a_provider_side_subscription_is_waited_for_a_day_then_ended(shop: Shop, freeze) -> None:
    clock = freeze(NOW)
    user, subscription = await customer(shop, 5)
    await add_method(shop, user, "stars", "charge-1")
    end = subscription.ends_at
    clock.current = end + timedelta(minutes=2)
    assert await expire(shop) == {"waiting": 1}
    assert await expire(shop) == {}
    waiting = await reload(shop, Subscription, id=subscription.id)
    assert waiting.status == SubscriptionStatus.ACTIVE and waiting.next_renewal_attempt_at == end + timedelta(days=1)
    assert should_be_enabled(waiting)
    await drain(shop)
    _, on_panel = await panel_account(shop, subscription.id)
    # The panel holds the account open through the wait, not just until the end date.
    assert on_panel is not None and on_panel.status == DemoAccountStatus.ACTIVE
    assert same_second(on_panel.expire_at, end + timedelta(days=1))

    clock.current = end + timedelta(hours=23, minutes=59)
    assert await expire(shop) == {}
    clock.current = end + timedelta(days=1, minutes=1)
    assert await expire(shop) == {"ended": 1}
    assert await renewals(shop) == []  # we never charge what the provider renews
    assert [m["data"]["reason"] for m in await messages(shop, "subscription_ended")] == ["expired"]
    assert await audit_actions(shop, subscription.id) == [
        ("system", "subscription.renewal_awaited"),
        ("system", "subscription.expired"),
    ]
    await drain(shop)
    _, on_panel = await panel_account(shop, subscription.id)
    assert on_panel is not None and on_panel.status == DemoAccountStatus.DISABLED


async def test_a_provider_renewal_during_the_wait_keeps_the_subscription(shop: Shop, freeze) -> None:
    clock = freeze(NOW)
    user, subscription = await customer(shop, 6)
    await add_method(shop, user, "stars", "charge-1")
    clock.current = subscription.ends_at + timedelta(hours=1)
    assert await expire(shop) == {"waiting": 1}
    await pay_again(shop, user, "renewed")  # the provider's renewal arrives as a payment
    renewed = await reload(shop, Subscription, id=subscription.id)
    assert renewed.next_renewal_attempt_at is None and renewed.ends_at == clock.current + timedelta(days=30)
    clock.current = subscription.ends_at + timedelta(days=1, minutes=1)
    assert await expire(shop) == {}
    assert (await reload(shop, Subscription, id=subscription.id)).status == SubscriptionStatus.ACTIVE


async def test_paying_again_re_enables_the_same_account_with_its_devices_and_history(shop: Shop, freeze) -> None:
    clock = freeze(NOW)
    user, subscription = await customer(shop, 7)
    await drain(shop)
    account, on_panel = await panel_account(shop, subscription.id)
    assert on_panel is not None
    panel = shop.resources.panels.for_server(await reload(shop, Server, id=account.server_id))
    await panel.simulate_usage(account.panel_username, 5_000, 7_000)
    shop.db.add(DemoPanelDevice(account_id=on_panel.id, hwid="phone-1", platform="iOS"))
    shop.db.add(
        UsageDaily(vpn_account_id=account.id, user_id=user.id, day=NOW.date(), upload_bytes=5_000, download_bytes=7_000)
    )
    await shop.db.commit()

    clock.current = subscription.ends_at + timedelta(minutes=1)
    assert await expire(shop) == {"ended": 1}
    await drain(shop)
    assert (await panel_account(shop, subscription.id))[1].status == DemoAccountStatus.DISABLED

    clock.current += timedelta(days=3)
    await pay_again(shop, user, "back")
    await drain(shop)
    back = await reload(shop, Subscription, id=subscription.id)
    assert back.status == SubscriptionStatus.ACTIVE and back.ends_at == clock.current + timedelta(days=30)
    again, on_panel_again = await panel_account(shop, subscription.id)
    assert (again.id, again.panel_username, again.sub_token) == (account.id, account.panel_username, account.sub_token)
    assert on_panel_again is not None and on_panel_again.id == on_panel.id
    assert on_panel_again.status == DemoAccountStatus.ACTIVE
    assert same_second(on_panel_again.expire_at, back.ends_at)
    assert on_panel_again.vless_uuid == on_panel.vless_uuid
    assert on_panel_again.lifetime_traffic_bytes == 12_000
    async with shop.resources.sessionmaker() as session:
        devices = (await session.scalars(select(DemoPanelDevice.hwid))).all()
        usage = (await session.scalars(select(UsageDaily.download_bytes))).all()
        subscriptions = (await session.scalars(select(Subscription.id))).all()
    assert devices == ["phone-1"] and usage == [7_000] and subscriptions == [subscription.id]
