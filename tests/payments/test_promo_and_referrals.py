"""Promo codes (SPEC §8) and referral rewards (SPEC §7) as checkouts and payments apply them, on both databases."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from app.db import transaction
from app.kit.clock import utcnow
from app.kit.errors import ValidationFailed
from app.models import (
    Payment,
    PaymentStatus,
    PromoCode,
    PromoKind,
    ReferralReward,
    ReferralRewardKind,
    Subscription,
    SubscriptionStatus,
    promo_code_plans,
)
from app.payments.operations import reconcile_pending
from app.promo.service import PromoInvalid
from tests.payments.shop import Shop, apply, checkout, count, paid, reload


async def test_percent_fixed_and_days_codes_price_the_checkout(shop: Shop) -> None:
    user = await shop.user(20)
    await shop.promo("TEN", PromoKind.PERCENT, percent=Decimal("10"), once_per_user=False)
    await shop.promo("FIFTY", PromoKind.FIXED, amounts={"RUB": 5000}, once_per_user=False)
    await shop.promo("WEEK", PromoKind.DAYS, extra_days=7, once_per_user=False)
    assert (await checkout(shop, user, promo_code=" ten ")).amount_minor == 17910
    assert (await checkout(shop, user, promo_code="FIFTY")).amount_minor == 14900
    week = await checkout(shop, user, promo_code="week")
    assert (week.amount_minor, week.days) == (19900, 37)


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"is_active": False}, "inactive"),
        ({"valid_from": "future"}, "not_started"),
        ({"valid_until": "past"}, "expired"),
        ({"max_uses": 1, "used_count": 1}, "exhausted"),
        ({"kind": PromoKind.FIXED, "amounts": {"USD": 100}}, "no_currency"),
        ({"kind": PromoKind.FIXED, "amounts": {"RUB": 19900}}, "covers_price"),
        ({"plan": "year"}, "not_for_plan"),
    ],
)
async def test_each_invalid_code_is_refused_with_its_reason_and_nothing_is_created(
    shop: Shop, fields: dict, reason: str
) -> None:
    user = await shop.user(21)
    now = utcnow()
    values = {"kind": PromoKind.PERCENT, "percent": Decimal(10)} | fields
    values["valid_from"] = now + timedelta(days=1) if values.get("valid_from") == "future" else None
    values["valid_until"] = now - timedelta(days=1) if values.get("valid_until") == "past" else None
    plan = values.pop("plan", None)
    kind = values.pop("kind")
    promo = await shop.promo("CODE", kind, **values)
    if plan:
        await shop.db.execute(promo_code_plans.insert().values(promo_code_id=promo.id, plan_id=shop.plans[plan].id))
        await shop.db.commit()
    with pytest.raises(PromoInvalid) as error:
        await checkout(shop, user, promo_code="CODE")
    assert error.value.code == f"promo_{reason}"
    assert await count(shop, Payment) == 0


async def test_an_unknown_code_is_refused(shop: Shop) -> None:
    user = await shop.user(22)
    with pytest.raises(ValidationFailed, match="no such promo code"):
        await checkout(shop, user, promo_code="NOPE")


async def test_once_per_user_holds_across_checkouts_until_released(shop: Shop) -> None:
    user = await shop.user(23)
    await shop.promo("ONCE", PromoKind.PERCENT, percent=Decimal(10))
    first = await checkout(shop, user, promo_code="ONCE")
    with pytest.raises(PromoInvalid) as error:
        await checkout(shop, user, promo_code="ONCE")
    assert error.value.reason == "already_used"
    # The first checkout expires unpaid: the hold is released and the code can be used again.
    async with transaction(shop.resources.sessionmaker) as session:
        row = await session.get(Payment, first.id)
        row.expires_at = row.created_at = utcnow() - timedelta(hours=2)
    counts = await reconcile_pending(shop.resources)
    assert counts["expired"] == 1
    assert (await reload(shop, Payment, id=first.id)).status == PaymentStatus.CANCELLED
    assert (await checkout(shop, user, promo_code="ONCE")).amount_minor == 17910


async def test_max_uses_counts_every_user(shop: Shop) -> None:
    await shop.promo("TWO", PromoKind.PERCENT, percent=Decimal(10), max_uses=2)
    for telegram_id in (24, 25):
        await checkout(shop, await shop.user(telegram_id), promo_code="TWO")
    with pytest.raises(PromoInvalid, match="used up"):
        await checkout(shop, await shop.user(26), promo_code="TWO")
    assert (await reload(shop, PromoCode, code="TWO")).used_count == 2


# --- referrals ------------------------------------------------------------------------------------------------


async def _paid_checkout(shop: Shop, user, event: str) -> Payment:
    payment = await checkout(shop, user)
    await apply(shop, paid(payment, event=event))
    return payment


async def _ends(shop: Shop, user_id: int):
    async with shop.resources.sessionmaker() as session:
        return await session.scalar(select(func.max(Subscription.ends_at)).where(Subscription.user_id == user_id))


async def test_first_payment_rewards_both_sides_once(shop: Shop) -> None:
    referrer = await shop.user(30)
    await _paid_checkout(shop, referrer, "r0")
    referrer_end = await _ends(shop, referrer.id)
    friend = await shop.user(31, referrer_id=referrer.id)
    payment = await _paid_checkout(shop, friend, "f1")
    stored = await reload(shop, Payment, id=payment.id)
    assert stored.bonus_days == shop.settings.referral_bonus_days_referred == 3
    assert (await _ends(shop, friend.id)) - utcnow() > timedelta(days=32, hours=23)
    assert (await _ends(shop, referrer.id)) - referrer_end == timedelta(days=shop.settings.referral_bonus_days_referrer)
    await _paid_checkout(shop, friend, "f2")
    assert await count(shop, ReferralReward) == 2
    assert await count(shop, ReferralReward, ReferralReward.applied_at.is_(None)) == 0


async def test_a_referrer_without_a_live_subscription_gets_the_days_on_their_next_payment(shop: Shop) -> None:
    referrer = await shop.user(32)
    friend = await shop.user(33, referrer_id=referrer.id)
    await _paid_checkout(shop, friend, "f")
    pending = await reload(shop, ReferralReward, kind=ReferralRewardKind.FIRST_PAYMENT_REFERRER)
    assert pending.beneficiary_id == referrer.id and pending.applied_at is None
    payment = await _paid_checkout(shop, referrer, "r")
    assert (await reload(shop, Payment, id=payment.id)).bonus_days == 7
    assert (await reload(shop, ReferralReward, id=pending.id)).applied_at is not None


async def test_milestones_are_granted_once_when_reached(shop: Shop) -> None:
    referrer = await shop.user(40)
    await _paid_checkout(shop, referrer, "r")
    for index in range(4):
        friend = await shop.user(41 + index, referrer_id=referrer.id)
        await _paid_checkout(shop, friend, f"f{index}")
    milestones = await count(shop, ReferralReward, ReferralReward.kind == ReferralRewardKind.MILESTONE)
    assert milestones == 1
    milestone = await reload(shop, ReferralReward, kind=ReferralRewardKind.MILESTONE)
    assert (milestone.milestone, milestone.days) == (3, 30)


async def test_a_referral_cycle_earns_nothing(shop: Shop) -> None:
    first = await shop.user(50)
    second = await shop.user(51, referrer_id=first.id)
    async with transaction(shop.resources.sessionmaker) as session:
        (await session.get(type(first), first.id)).referrer_id = second.id
    await _paid_checkout(shop, second, "s")
    assert await count(shop, ReferralReward) == 0
    subscription = await reload(shop, Subscription, user_id=second.id)
    assert subscription.status == SubscriptionStatus.ACTIVE
