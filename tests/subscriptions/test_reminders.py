"""Expiry reminders (SPEC §4.2, §9): 3, 2 and 1 days before the end, each once per end date, only the current
stage after a pause, trials only on the last day, on both databases with a frozen clock."""

from __future__ import annotations

from datetime import timedelta

from app.models import Subscription, SubscriptionStatus
from app.subscriptions.reminders import send_reminders
from app.subscriptions.trial import activate_trial
from tests.factories import add_subscriber
from tests.payments.shop import Shop, reload
from tests.subscriptions.steps import (
    GOOD_CARD,
    NOW,
    add_method,
    customer,
    messages,
    pay_again,
    remind,
    update,
)

NOTHING = {"days_3": 0, "days_2": 0, "days_1": 0}


def _queued(**stages: int) -> dict[str, int]:
    return NOTHING | stages


async def test_each_stage_is_sent_once_when_its_day_comes(shop: Shop, freeze) -> None:
    clock = freeze(NOW)
    user, subscription = await customer(shop, 1)
    end = subscription.ends_at
    steps = [
        (timedelta(days=3, seconds=1), NOTHING),  # more than three days left
        (timedelta(days=3), _queued(days_3=1)),  # exactly three
        (timedelta(days=2, hours=1), NOTHING),  # still the third-to-last day
        (timedelta(days=2), _queued(days_2=1)),
        (timedelta(hours=23, minutes=59), _queued(days_1=1)),
        (timedelta(minutes=1), NOTHING),
        (timedelta(0), NOTHING),  # ended: the expiry job speaks from here
    ]
    for before_end, expected in steps:
        clock.current = end - before_end
        assert await remind(shop) == expected, before_end
        assert await remind(shop) == NOTHING  # a second run at the same moment
    sent = await messages(shop, "expiry_reminder")
    assert [message["data"]["days"] for message in sent] == [3, 2, 1]
    assert sent[0] == {
        "user_id": user.id,
        "kind": "expiry_reminder",
        "data": {"days": 3, "ends_at": end.isoformat(), "auto_renew": False, "subscription_id": subscription.id},
        "dedupe_key": f"expiry_reminder:{subscription.id}:{end.isoformat()}:3",
    }
    stored = await reload(shop, Subscription, id=subscription.id)
    assert (stored.last_reminder_days, stored.last_reminder_for) == (1, end)


async def test_a_renewal_starts_the_reminders_over(shop: Shop, freeze) -> None:
    clock = freeze(NOW)
    user, subscription = await customer(shop, 2)
    first_end = subscription.ends_at
    clock.current = first_end - timedelta(hours=12)
    assert await remind(shop) == _queued(days_1=1)
    await pay_again(shop, user, "second")
    new_end = (await reload(shop, Subscription, id=subscription.id)).ends_at
    assert new_end == first_end + timedelta(days=30)
    assert await remind(shop) == NOTHING
    clock.current = new_end - timedelta(days=2, hours=12)
    assert await remind(shop) == _queued(days_3=1)
    keys = [message["dedupe_key"] for message in await messages(shop, "expiry_reminder")]
    assert keys == [
        f"expiry_reminder:{subscription.id}:{first_end.isoformat()}:1",
        f"expiry_reminder:{subscription.id}:{new_end.isoformat()}:3",
    ]


async def test_after_a_pause_only_the_current_stage_is_sent(shop: Shop, freeze) -> None:
    clock = freeze(NOW)
    _, first = await customer(shop, 3)
    _, second = await customer(shop, 4)
    end = first.ends_at
    clock.current = end - timedelta(days=2, hours=20)
    assert await remind(shop) == _queued(days_3=2)
    # The job was down for two days: the 2-day reminders were never sent, and are not sent late.
    clock.current = end - timedelta(hours=5)
    assert await remind(shop) == _queued(days_1=2)
    sent = [
        (message["data"]["subscription_id"], message["data"]["days"])
        for message in await messages(shop, "expiry_reminder")
    ]
    assert sorted(sent) == [(first.id, 1), (first.id, 3), (second.id, 1), (second.id, 3)]


async def test_a_first_reminder_late_in_the_last_day_is_the_last_one(shop: Shop, freeze) -> None:
    clock = freeze(NOW)
    _, subscription = await customer(shop, 5)
    clock.current = subscription.ends_at - timedelta(hours=2)
    assert await remind(shop) == _queued(days_1=1)
    clock.current += timedelta(hours=1)
    assert await remind(shop) == NOTHING
    assert [message["data"]["days"] for message in await messages(shop, "expiry_reminder")] == [1]


async def test_a_trial_hears_only_that_it_is_ending(shop: Shop, freeze) -> None:
    clock = freeze(NOW)
    user = await shop.user(6)
    trial = await activate_trial(shop.db, user, trial_days=7)
    await shop.db.commit()
    end = trial.ends_at
    for before_end in (timedelta(days=3), timedelta(days=2)):
        clock.current = end - before_end
        assert await remind(shop) == NOTHING
    clock.current = end - timedelta(hours=20)
    assert await remind(shop) == _queued(days_1=1)
    assert await remind(shop) == NOTHING
    assert await messages(shop) == [
        {
            "user_id": user.id,
            "kind": "trial_ending",
            "data": {"ends_at": end.isoformat(), "subscription_id": trial.id},
            "dedupe_key": f"trial_ending:{trial.id}:{end.isoformat()}",
        }
    ]


async def test_auto_renew_is_promised_only_where_a_method_will_renew(shop: Shop, freeze) -> None:
    clock = freeze(NOW)
    _, card = await customer(shop, 10, card=GOOD_CARD)
    _, card_but_off = await customer(shop, 11, card=GOOD_CARD)
    await update(shop, card_but_off.id, auto_renew=False)
    _, card_no_plan = await customer(shop, 12, card=GOOD_CARD)
    await update(shop, card_no_plan.id, plan_id=None)  # nothing to price a charge with
    stars_user, stars = await customer(shop, 13)
    await add_method(shop, stars_user, "stars", "charge-1")  # a Star subscription renews by itself
    removed_user, removed = await customer(shop, 14)
    await add_method(shop, removed_user, "demo", "demo_card_removed", active=False)
    disabled_user, disabled = await customer(shop, 15)
    await add_method(shop, disabled_user, "yookassa", "pm-1")  # YooKassa is not enabled in this shop
    _, nothing = await customer(shop, 16)
    clock.current = card.ends_at - timedelta(days=1)
    assert await remind(shop) == _queued(days_1=7)
    promised = {
        message["data"]["subscription_id"]: message["data"]["auto_renew"]
        for message in await messages(shop, "expiry_reminder")
    }
    assert promised == {
        card.id: True,
        card_but_off.id: False,
        card_no_plan.id: False,
        stars.id: True,
        removed.id: False,
        disabled.id: False,
        nothing.id: False,
    }


async def test_only_live_subscriptions_still_running_are_reminded(shop: Shop, freeze) -> None:
    freeze(NOW)
    in_two_days = timedelta(days=1, hours=12)
    live, _ = await add_subscriber(shop.db, 20, ends_in=in_two_days)
    for telegram_id, status in enumerate(
        (SubscriptionStatus.EXPIRED, SubscriptionStatus.CANCELLED, SubscriptionStatus.PENDING), start=21
    ):
        await add_subscriber(shop.db, telegram_id, ends_in=in_two_days, status=status)
    await add_subscriber(shop.db, 24, ends_in=-timedelta(minutes=5))  # past its end (in a renewal's grace)
    await add_subscriber(shop.db, 25, ends_in=timedelta(days=3, minutes=1))
    await shop.db.commit()
    assert await remind(shop) == _queued(days_2=1)
    assert [message["user_id"] for message in await messages(shop)] == [live.id]


async def test_a_run_goes_through_every_batch_and_queues_each_once(shop: Shop, freeze) -> None:
    freeze(NOW)
    expected = {3: 0, 2: 0, 1: 0}
    for n in range(130):
        trial = n % 3 == 0
        hours_left = 1 + n % 71  # 1 to 71 hours: every stage
        status = SubscriptionStatus.TRIAL if trial else SubscriptionStatus.ACTIVE
        await add_subscriber(shop.db, 100 + n, ends_in=timedelta(hours=hours_left), status=status)
        stage = -(-hours_left // 24)
        if stage == 1 or not trial:
            expected[stage] += 1
    await shop.db.commit()
    assert all(expected.values())
    assert await send_reminders(shop.resources, batch=20) == expected
    assert await send_reminders(shop.resources, batch=20) == {3: 0, 2: 0, 1: 0}
    sent = await messages(shop)
    assert len(sent) == len({message["dedupe_key"] for message in sent}) == sum(expected.values())
    trials_told = [message for message in sent if message["kind"] == "trial_ending"]
    assert all("days" not in message["data"] for message in trials_told)


async def test_batches_split_between_equal_end_dates_lose_and_repeat_nothing(shop: Shop, freeze) -> None:
    freeze(NOW)
    for n in range(45):  # one end date for all: every batch boundary falls between equal end dates
        await add_subscriber(shop.db, 300 + n, ends_in=timedelta(hours=30))
    await shop.db.commit()
    assert await send_reminders(shop.resources, batch=10) == {3: 0, 2: 45, 1: 0}
    sent = await messages(shop, "expiry_reminder")
    assert len({message["data"]["subscription_id"] for message in sent}) == len(sent) == 45


async def test_a_reminder_whose_mark_was_lost_is_not_queued_twice(shop: Shop, freeze) -> None:
    clock = freeze(NOW)
    _, subscription = await customer(shop, 7)
    clock.current = subscription.ends_at - timedelta(days=2)
    assert await remind(shop) == _queued(days_2=1)
    await update(shop, subscription.id, last_reminder_days=None, last_reminder_for=None)  # e.g. restored from a backup
    assert await remind(shop) == _queued(days_2=1)  # taken again, but its message is already queued
    assert len(await messages(shop, "expiry_reminder")) == 1
