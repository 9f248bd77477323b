"""A year of plausible shop history for the demo, so every chart and table of the admin shows something real:
customers signing up, trials that convert or lapse, payments in several currencies through several providers,
automatic renewals (some failing first), churn, refunds, promo codes and referrals with their bonus days.

Deterministic: one seeded random generator, and times relative to `now`, so two demos started the same day
show the same shop. Written only into a freshly seeded database (seed_demo), with bulk inserts so `vpnshop demo`
still starts in seconds."""

from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import (
    Payment,
    PaymentRefund,
    PaymentStatus,
    Plan,
    PlanPrice,
    PromoCode,
    PromoRedemption,
    RedemptionStatus,
    ReferralReward,
    ReferralRewardKind,
    RefundStatus,
    Subscription,
    SubscriptionStatus,
    User,
    UserActivityDay,
)

SEED = 14
CUSTOMERS = 240
DAYS = 365
# Telegram ids of the demo's invented customers (far from real ones and from the demo customer's).
FIRST_TELEGRAM_ID = 900_000_000
NAMES = ("anna", "ivan", "maria", "petr", "olga", "john", "rahul", "siti", "dmitry", "elena", "budi", "priya")
# (provider, method, currency, weight): how customers pay.
WAYS = (
    ("yookassa", "bank_card", "RUB", 45),
    ("yookassa", "sbp", "RUB", 15),
    ("stars", None, "XTR", 20),
    ("cryptopay", None, "USDT", 8),
    ("razorpay", "upi", "INR", 7),
    ("xendit", "ewallet", "IDR", 5),
)
TRIAL_DAYS = 3


async def seed_history(session: AsyncSession, now: datetime) -> None:
    rng = random.Random(SEED)
    plans = (await session.scalars(select(Plan).order_by(Plan.sort_order))).all()
    prices = {(p.plan_id, p.currency): p.amount_minor for p in await session.scalars(select(PlanPrice))}
    promo = await session.scalar(select(PromoCode).where(PromoCode.code == "DEMO20"))
    start = now - timedelta(days=DAYS)

    users: list[User] = []
    for index in range(CUSTOMERS):
        # More sign-ups lately: the shop is growing.
        offset = DAYS * (1 - rng.random() ** 0.7)
        name = NAMES[index % len(NAMES)]
        users.append(
            User(
                telegram_id=FIRST_TELEGRAM_ID + index,
                username=f"{name}_{index}" if rng.random() < 0.7 else None,
                first_name=name.title(),
                language="en" if rng.random() < 0.3 else "ru",
                referral_code=f"demo{index}",
                created_at=start + timedelta(days=offset, minutes=rng.randrange(1440)),
            )
        )
    users.sort(key=lambda u: u.created_at)
    session.add_all(users)
    await session.flush()
    for position, user in enumerate(users):
        if position > 10 and rng.random() < 0.25:
            user.referrer_id = users[rng.randrange(position // 3)].id  # early customers invite most

    subscriptions: list[tuple[User, Subscription, list[Payment]]] = []
    activity: set[tuple[int, datetime]] = set()
    redemptions: list[tuple[User, Payment]] = []
    counter = 0

    def payment(user: User, plan: Plan, way: tuple, when: datetime, **fields) -> Payment:
        nonlocal counter
        counter += 1
        provider, method, currency, _weight = way
        price = prices[(plan.id, currency)]
        return Payment(
            public_id=f"demo-{counter:06d}",
            user_id=user.id,
            plan_id=plan.id,
            provider=provider,
            method=method,
            amount_minor=fields.pop("amount_minor", price),
            currency=currency,
            idempotency_key=f"demo-history-{counter}",
            external_id=f"demo-{counter}",
            days=plan.duration_days,
            created_at=when,
            updated_at=when,
            details={"price_minor": price, "promo_code": fields.pop("promo_code", None)},
            **fields,
        )

    for user in users:
        joined = user.created_at
        paid_at: datetime | None = None
        if rng.random() < 0.6:  # took the trial
            ends = joined + timedelta(days=TRIAL_DAYS)
            session.add(
                Subscription(
                    user_id=user.id,
                    status=SubscriptionStatus.EXPIRED if ends <= now else SubscriptionStatus.TRIAL,
                    is_trial=True,
                    starts_at=joined,
                    ends_at=ends,
                    created_at=joined,
                )
            )
            if rng.random() < 0.35:
                paid_at = joined + timedelta(hours=rng.randrange(6, 24 * (TRIAL_DAYS + 4)))
        elif rng.random() < 0.3:
            paid_at = joined + timedelta(minutes=rng.randrange(5, 2 * 1440))
        if paid_at is None or paid_at >= now:
            continue
        way = rng.choices(WAYS, weights=[w[3] for w in WAYS])[0]
        plan = rng.choices(plans, weights=[70, 20, 10][: len(plans)])[0]
        made: list[Payment] = []
        if promo is not None and rng.random() < 0.12:
            price = prices[(plan.id, way[2])]
            first = payment(
                user,
                plan,
                way,
                paid_at,
                status=PaymentStatus.SUCCEEDED,
                paid_at=paid_at,
                amount_minor=max(1, price * 80 // 100),
                promo_code="DEMO20",
                promo_code_id=promo.id,
            )
            redemptions.append((user, first))
        else:
            first = payment(user, plan, way, paid_at, status=PaymentStatus.SUCCEEDED, paid_at=paid_at)
        made.append(first)
        subscription = Subscription(
            user_id=user.id,
            plan_id=plan.id,
            status=SubscriptionStatus.ACTIVE,
            starts_at=paid_at,
            ends_at=paid_at + timedelta(days=plan.duration_days),
            created_at=paid_at,
        )
        if rng.random() < 0.06:  # changed their mind: refunded within days, access cut
            refunded_at = paid_at + timedelta(hours=rng.randrange(2, 72))
            if refunded_at < now:
                first.status, first.refunded_at = PaymentStatus.REFUNDED, refunded_at
                subscription.status, subscription.cancelled_at = SubscriptionStatus.CANCELLED, refunded_at
        # Renewals while they keep paying; a card renewal sometimes fails once first.
        while subscription.status == SubscriptionStatus.ACTIVE and subscription.ends_at < now:
            if rng.random() > 0.8:
                break
            due = subscription.ends_at
            if rng.random() < 0.1:
                made.append(
                    payment(
                        user,
                        plan,
                        way,
                        due,
                        status=PaymentStatus.FAILED,
                        is_renewal=True,
                        failure_reason="insufficient funds",
                    )
                )
                due += timedelta(hours=20)
            made.append(payment(user, plan, way, due, status=PaymentStatus.SUCCEEDED, paid_at=due, is_renewal=True))
            subscription.ends_at += timedelta(days=plan.duration_days)
        if subscription.status == SubscriptionStatus.ACTIVE and subscription.ends_at <= now:
            subscription.status = SubscriptionStatus.EXPIRED
        if rng.random() < 0.15:  # an abandoned checkout
            made.append(payment(user, plan, way, paid_at - timedelta(minutes=3), status=PaymentStatus.CANCELLED))
        subscriptions.append((user, subscription, made))
        last_day = min(subscription.cancelled_at or subscription.ends_at, now)
        day = paid_at
        while day < last_day:
            activity.add((user.id, day.date()))
            day += timedelta(days=rng.choice((1, 1, 2, 3, 5)))

    session.add_all(subscription for _user, subscription, _made in subscriptions)
    await session.flush()
    for _user, subscription, made in subscriptions:
        for row in made:
            row.subscription_id = subscription.id
        session.add_all(made)
    await session.flush()
    # Refunds are whole here; each is also its refund row, which revenue over time counts (app/payments/refunds).
    for _user, _subscription, made in subscriptions:
        for row in made:
            if row.status == PaymentStatus.REFUNDED:
                row.refunded_minor = row.amount_minor
                session.add(
                    PaymentRefund(
                        public_id=str(uuid.UUID(int=rng.getrandbits(128))),
                        payment_id=row.id,
                        amount_minor=row.amount_minor,
                        currency=row.currency,
                        status=RefundStatus.SUCCEEDED,
                        requested_by="demo",
                        succeeded_at=row.refunded_at,
                        created_at=row.refunded_at,
                    )
                )

    for user, first in redemptions:
        session.add(
            PromoRedemption(
                promo_code_id=promo.id,
                user_id=user.id,
                payment_id=first.id,
                status=RedemptionStatus.REDEEMED,
                created_at=first.created_at,
            )
        )
    if promo is not None:
        promo.used_count += len(redemptions)
    by_id = {user.id: user for user in users}
    for user, _subscription, made in subscriptions:
        if user.referrer_id is None or made[0].status != PaymentStatus.SUCCEEDED:
            continue
        referrer = by_id[user.referrer_id]
        session.add_all(
            [
                ReferralReward(
                    beneficiary_id=referrer.id,
                    source_user_id=user.id,
                    payment_id=made[0].id,
                    kind=ReferralRewardKind.FIRST_PAYMENT_REFERRER,
                    days=7,
                    dedupe_key=f"demo:referrer:{user.id}",
                    applied_at=made[0].paid_at,
                    created_at=made[0].paid_at,
                ),
                ReferralReward(
                    beneficiary_id=user.id,
                    source_user_id=referrer.id,
                    payment_id=made[0].id,
                    kind=ReferralRewardKind.FIRST_PAYMENT_REFERRED,
                    days=3,
                    dedupe_key=f"demo:referred:{user.id}",
                    applied_at=made[0].paid_at,
                    created_at=made[0].paid_at,
                ),
            ]
        )
    if activity:
        await session.execute(
            insert(UserActivityDay), [{"user_id": user_id, "day": day} for user_id, day in sorted(activity)]
        )
    await session.flush()
