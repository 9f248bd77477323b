"""Staff actions on customers and subscriptions (app/users/staff_actions.py, app/subscriptions/staff_actions.py):
each changes what it says, writes one audit row with before and after in the same transaction, and refuses bad
input with a named field, changing nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.service import Actor
from app.kit.errors import AppError, Conflict
from app.kit.field_errors import FieldInvalid
from app.models import (
    AuditLog,
    OutboxMessage,
    Plan,
    SavedPaymentMethod,
    Staff,
    StaffRole,
    Subscription,
    SubscriptionStatus,
    User,
)
from app.notifications.texts import render
from app.payments.topics import CANCEL_RECURRING_TOPIC
from app.provisioning.service import RESET_TRAFFIC_TOPIC, REVOKE_TOPIC, SYNC_TOPIC
from app.subscriptions import staff_actions as subs
from app.users import staff_actions as users
from tests.conftest import make_settings
from tests.factories import add_account, add_server, add_subscriber

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
async def actor(db: AsyncSession, freeze) -> Actor:
    freeze(NOW)
    staff = Staff(username="sam", password_hash="x", role=StaffRole.ADMIN)
    db.add(staff)
    await db.flush()
    return Actor("staff", staff.id, ip="10.0.0.1", user_agent="pytest")


async def audit_rows(db: AsyncSession, action: str | None = None) -> list[AuditLog]:
    query = select(AuditLog).order_by(AuditLog.id)
    if action:
        query = query.where(AuditLog.action == action)
    return list((await db.scalars(query)).all())


async def topics(db: AsyncSession) -> list[str]:
    return list((await db.scalars(select(OutboxMessage.topic).order_by(OutboxMessage.id))).all())


async def test_block_and_unblock_need_a_reason_and_are_audited(db: AsyncSession, actor: Actor) -> None:
    user, _ = await add_subscriber(db, 501)
    for bad in ("", "   ", None, "x" * 501):
        with pytest.raises(FieldInvalid) as caught:
            await users.block(db, actor, user, bad)
        assert caught.value.field == "reason"
    assert not user.is_blocked and await audit_rows(db) == []

    await users.block(db, actor, user, " chargeback fraud ")
    assert (user.is_blocked, user.block_reason) == (True, "chargeback fraud")
    with pytest.raises(Conflict):
        await users.block(db, actor, user, "again")
    await users.unblock(db, actor, user, "appeal accepted")
    assert (user.is_blocked, user.block_reason) == (False, None)

    block, unblock = await audit_rows(db)
    assert (block.action, block.actor_type, block.actor_id) == ("user.block", "staff", str(actor.id))
    assert (block.ip, block.user_agent) == ("10.0.0.1", "pytest")
    assert block.before == {"is_blocked": False, "block_reason": None}
    assert block.after == {"is_blocked": True, "block_reason": "chargeback fraud"}
    assert unblock.before == block.after
    assert unblock.after == {"is_blocked": False, "block_reason": None, "reason": "appeal accepted"}


async def test_a_block_revokes_the_saved_payment_methods_and_stops_provider_renewals(
    db: AsyncSession, actor: Actor
) -> None:
    """A Star or Razorpay subscription renews at the provider by itself: a blocked customer would go on paying for
    a VPN that is off. Blocking revokes every active method and queues the provider's cancel, audited."""
    user, _ = await add_subscriber(db, 503)
    other, _ = await add_subscriber(db, 504)

    def method(owner: User, provider: str, n: int, *, active: bool = True) -> SavedPaymentMethod:
        return SavedPaymentMethod(
            user_id=owner.id,
            provider=provider,
            method_type="subscription",
            title=f"method {n}",
            secret_encrypted="-",
            fingerprint=f"f{n}",
            is_active=active,
        )

    stars, card, old, others = (
        method(user, "stars", 1),
        method(user, "demo", 2),
        method(user, "razorpay", 3, active=False),
        method(other, "stars", 4),
    )
    db.add_all([stars, card, old, others])
    await db.flush()

    with pytest.raises(FieldInvalid):  # refused: nothing revoked
        await users.block(db, actor, user, "")
    assert stars.is_active and card.is_active and await topics(db) == []

    await users.block(db, actor, user, "chargeback fraud")
    assert (stars.is_active, card.is_active, others.is_active) == (False, False, True)
    assert stars.revoked_at == NOW and old.revoked_at is None
    cancels = (await db.scalars(select(OutboxMessage).where(OutboxMessage.topic == CANCEL_RECURRING_TOPIC))).all()
    assert sorted(message.payload["method_id"] for message in cancels) == [stars.id, card.id]
    revoked = await audit_rows(db, "payment_method.revoked")
    assert sorted(row.entity_id for row in revoked) == sorted([str(stars.id), str(card.id)])
    assert {(row.actor_type, row.actor_id) for row in revoked} == {("staff", str(actor.id))}
    assert revoked[0].before == {"active": True} and revoked[0].after == {"active": False, "why": "user.block"}

    await users.unblock(db, actor, user)
    assert not stars.is_active and not card.is_active  # they pay anew: nothing staff took away comes back


async def test_profile_update_validates_every_field_and_audits_only_changes(db: AsyncSession, actor: Actor) -> None:
    user, _ = await add_subscriber(db, 502)
    for changes, field in (
        ({"language": "xx"}, "language"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"marketing_opt_out": "yes"}, "marketing_opt_out"),
        ({"telegram_id": 1}, "telegram_id"),
    ):
        with pytest.raises(FieldInvalid) as caught:
            await users.update_profile(db, actor, user, changes)
        assert caught.value.field == field
    assert (user.language, user.timezone) == ("ru", None)

    await users.update_profile(db, actor, user, {"language": "ru", "timezone": "Europe/Berlin"})
    (row,) = await audit_rows(db)
    assert (row.before, row.after) == ({"timezone": None}, {"timezone": "Europe/Berlin"})


async def test_message_goes_through_the_notifications_outbox(db: AsyncSession, actor: Actor) -> None:
    user, _ = await add_subscriber(db, 503)
    with pytest.raises(FieldInvalid):
        await users.message(db, actor, user, "  ")
    assert await topics(db) == []
    key = await users.message(db, actor, user, "Your refund is on its way")
    message = await db.scalar(select(OutboxMessage))
    assert message is not None and message.topic == "notify.user"
    assert message.payload == {
        "user_id": user.id,
        "kind": "staff_message",
        "data": {"text": "Your refund is on its way"},
        "dedupe_key": key,
    }
    (row,) = await audit_rows(db, "user.message")
    assert row.after == {"text": "Your refund is on its way", "dedupe_key": key}


async def test_extend_shorten_and_set_end_move_the_date_and_sync_the_panel(db: AsyncSession, actor: Actor) -> None:
    server = await add_server(db)
    _, sub = await add_subscriber(db, 504, ends_in=timedelta(days=10))
    await add_account(db, server, sub)
    ends = sub.ends_at

    for bad in (0, 3651, -3651, "7", 1.5, True, None):
        with pytest.raises(FieldInvalid):
            await subs.extend(db, actor, sub, bad)
    with pytest.raises(FieldInvalid):  # before the start
        await subs.extend(db, actor, sub, -60)
    assert sub.ends_at == ends and await audit_rows(db) == [] and await topics(db) == []

    await subs.extend(db, actor, sub, 7)
    assert sub.ends_at == ends + timedelta(days=7)
    await subs.extend(db, actor, sub, -3)
    assert sub.ends_at == ends + timedelta(days=4)
    target = NOW + timedelta(days=100)
    await subs.set_end_date(db, actor, sub, target)
    assert sub.ends_at == target
    with pytest.raises(FieldInvalid):
        await subs.set_end_date(db, actor, sub, NOW + timedelta(days=3700))
    with pytest.raises(FieldInvalid):
        await subs.set_end_date(db, actor, sub, "tomorrow")

    extend, shorten, set_end = await audit_rows(db)
    assert extend.action == "subscription.extend" and shorten.action == "subscription.shorten"
    assert extend.before["ends_at"] == ends.isoformat()
    assert extend.after["ends_at"] == (ends + timedelta(days=7)).isoformat()
    assert shorten.before["ends_at"] == extend.after["ends_at"]
    assert set_end.after["ends_at"] == target.isoformat()
    assert await topics(db) == [SYNC_TOPIC] * 3


async def test_extending_an_ended_subscription_counts_from_now_and_revives_it(db: AsyncSession, actor: Actor) -> None:
    await add_server(db)
    _, sub = await add_subscriber(db, 505, ends_in=timedelta(days=-5), status=SubscriptionStatus.EXPIRED)
    await subs.extend(db, actor, sub, 7)
    assert sub.status == SubscriptionStatus.ACTIVE
    assert sub.ends_at == NOW + timedelta(days=7)


async def test_cancel_ends_access_and_refuses_twice(db: AsyncSession, actor: Actor) -> None:
    server = await add_server(db)
    _, sub = await add_subscriber(db, 506)
    await add_account(db, server, sub)
    await subs.cancel(db, actor, sub)
    assert (sub.status, sub.auto_renew, sub.cancelled_at) == (SubscriptionStatus.CANCELLED, False, NOW)
    with pytest.raises(Conflict):
        await subs.cancel(db, actor, sub)
    (row,) = await audit_rows(db)
    assert (row.before["status"], row.after["status"]) == ("active", "cancelled")
    assert await topics(db) == [SYNC_TOPIC]


async def test_bonus_days_extend_or_create_and_tell_the_customer(db: AsyncSession, actor: Actor) -> None:
    await add_server(db)
    user, sub = await add_subscriber(db, 507, ends_in=timedelta(days=2))
    ends = sub.ends_at
    with pytest.raises(FieldInvalid):
        await subs.grant_bonus_days(db, actor, user, -3)
    await subs.grant_bonus_days(db, actor, user, 5)
    assert sub.ends_at == ends + timedelta(days=5)

    newcomer = User(telegram_id=508, referral_code="r508")
    db.add(newcomer)
    await db.flush()
    created = await subs.grant_bonus_days(db, actor, newcomer, 3)
    assert created.ends_at == NOW + timedelta(days=3) and created.status == SubscriptionStatus.ACTIVE

    first, second = await audit_rows(db, "subscription.bonus_days")
    assert first.after["bonus_days"] == 5 and second.before is None
    kinds = (await db.scalars(select(OutboxMessage.payload).where(OutboxMessage.topic == "notify.user"))).all()
    told = [(p["user_id"], p["kind"], p["data"]["days"]) for p in kinds]
    assert told == [(user.id, "bonus_days", 5), (newcomer.id, "bonus_days", 3)]


async def test_change_plan_applies_its_limits(db: AsyncSession, actor: Actor) -> None:
    server = await add_server(db)
    _, sub = await add_subscriber(db, 509)
    account = await add_account(db, server, sub)
    plan = Plan(code="pro", name={"en": "Pro"}, duration_days=30, device_limit=5, traffic_limit_bytes=10**11)
    db.add(plan)
    await db.flush()
    for bad in (None, "1", 999_999):
        with pytest.raises(FieldInvalid):
            await subs.change_plan(db, actor, sub, bad)
    assert sub.plan_id is None
    await subs.change_plan(db, actor, sub, plan.id)
    assert (sub.plan_id, account.device_limit, account.traffic_limit_bytes) == (plan.id, 5, 10**11)
    with pytest.raises(FieldInvalid):
        await subs.change_plan(db, actor, sub, plan.id)
    (row,) = await audit_rows(db)
    assert (row.before["plan_id"], row.after["plan_id"]) == (None, plan.id)


async def test_reset_traffic_and_reissue_need_an_account(db: AsyncSession, actor: Actor) -> None:
    server = await add_server(db)
    _, bare = await add_subscriber(db, 510)
    for action in (subs.reset_traffic, subs.reissue_link):
        with pytest.raises(AppError):
            await action(db, actor, bare)
    _, sub = await add_subscriber(db, 511)
    account = await add_account(db, server, sub, used_traffic_bytes=12345)
    old_token = account.sub_token
    await subs.reset_traffic(db, actor, sub)
    await subs.reissue_link(db, actor, sub)
    assert account.sub_token != old_token
    reset, reissue = await audit_rows(db)
    assert (reset.before, reset.after) == ({"used_traffic_bytes": 12345}, {"used_traffic_bytes": 0})
    assert reissue.before == {"token_tail": old_token[-4:]}
    assert await topics(db) == [RESET_TRAFFIC_TOPIC, REVOKE_TOPIC]
    assert await db.scalar(select(func.count()).select_from(Subscription)) == 2


async def test_staff_message_and_bonus_days_read_well_in_each_language(db: AsyncSession, actor: Actor) -> None:
    """The texts the customer receives: a staff message is shown as typed (HTML escaped for Telegram), bonus
    days with the right plural and the new end date."""
    settings = make_settings("sqlite+aiosqlite://")
    user, _ = await add_subscriber(db, 520)
    user.language = "en"
    message = await render(db, user, "staff_message", {"text": "Use <b>this</b> & that"}, settings)
    assert "Use &lt;b&gt;this&lt;/b&gt; &amp; that" in message.text and message.text.startswith("💬")
    bonus = await render(db, user, "bonus_days", {"days": 1, "ends_at": NOW.isoformat()}, settings)
    assert "+1 bonus day</b>" in bonus.text and "2026" in bonus.text
    user.language = "ru"
    bonus_ru = await render(db, user, "bonus_days", {"days": 5, "ends_at": NOW.isoformat()}, settings)
    assert "+5 бонусных дней" in bonus_ru.text
