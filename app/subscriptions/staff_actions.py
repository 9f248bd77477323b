"""What staff change about a subscription (SPEC §10.2): extend or shorten (by days or to a date), cancel, grant
bonus days, change the plan, reset the traffic and reissue the link. Each runs in the caller's transaction,
writes its audit row (before and after) there, and leaves the panel to follow through the outbox
(app/provisioning), like a payment does."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.service import Actor, record_by
from app.kit.clock import ensure_utc, utcnow
from app.kit.errors import Conflict, NotFound
from app.kit.field_errors import FieldInvalid
from app.models import LIVE_STATUSES, Plan, Subscription, SubscriptionStatus, User, VpnAccount
from app.notifications import service as notifications
from app.provisioning import service as provisioning
from app.subscriptions.activation import add_days, latest_subscription

# Ten years either way: a typo (3650 instead of 365) is caught, a generous gift is not.
MAX_DAYS = 3650
BONUS_KIND = "bonus_days"


async def get_subscription(session: AsyncSession, subscription_id: int) -> Subscription:
    subscription = await session.get(Subscription, subscription_id, with_for_update=True)
    if subscription is None:
        raise NotFound("No such subscription.")
    return subscription


async def current_subscription(session: AsyncSession, user: User, *, lock: bool = True) -> Subscription:
    """The subscription a customer's page acts on: the one ending last, locked unless only read."""
    subscription = await latest_subscription(session, user.id, lock=lock)
    if subscription is None:
        raise NotFound("This customer has no subscription.", code="no_subscription")
    return subscription


def iso(value: datetime | None) -> str | None:
    """Dates in audit snapshots and message data: ISO text (JSON holds no datetimes)."""
    return ensure_utc(value).isoformat() if value is not None else None


def snapshot(subscription: Subscription) -> dict[str, Any]:
    """The fields staff actions change, as an audit snapshot."""
    return {
        "status": subscription.status.value,
        "ends_at": iso(subscription.ends_at),
        "plan_id": subscription.plan_id,
        "auto_renew": subscription.auto_renew,
        "is_trial": subscription.is_trial,
    }


def valid_days(days: object) -> int:
    """A whole number of days, not zero, within ten years either way."""
    if not isinstance(days, int) or isinstance(days, bool) or days == 0 or abs(days) > MAX_DAYS:
        raise FieldInvalid("days", f"Give a whole number of days between 1 and {MAX_DAYS} (negative to shorten).")
    return days


async def _set_end(session: AsyncSession, subscription: Subscription, ends_at: datetime, now: datetime) -> None:
    """Move the end date; a subscription given time in the future is live again (a trial stays a trial)."""
    if ends_at < ensure_utc(subscription.starts_at):
        raise FieldInvalid("ends_at", "The end would come before the subscription's start.")
    subscription.ends_at = ends_at
    if ends_at > now and subscription.status not in LIVE_STATUSES:
        subscription.status = SubscriptionStatus.TRIAL if subscription.is_trial else SubscriptionStatus.ACTIVE
        subscription.cancelled_at = None
        subscription.renewal_failures = 0
        subscription.next_renewal_attempt_at = None
    await session.flush()
    await provisioning.sync_subscription(session, subscription)


async def extend(session: AsyncSession, actor: Actor, subscription: Subscription, days: object) -> Subscription:
    """Add days (from the end date, or from now when it has ended) or take them away (negative)."""
    count, now = valid_days(days), utcnow()
    ends_at = ensure_utc(subscription.ends_at)
    base = ends_at if count < 0 or ends_at > now else now
    before = snapshot(subscription)
    await _set_end(session, subscription, base + timedelta(days=count), now)
    action = "subscription.extend" if count > 0 else "subscription.shorten"
    _audit(session, actor, action, subscription, before)
    return subscription


async def set_end_date(
    session: AsyncSession, actor: Actor, subscription: Subscription, ends_at: object
) -> Subscription:
    """Set the end date itself (to the minute), within ten years from now."""
    if not isinstance(ends_at, datetime):
        raise FieldInvalid("ends_at", "Give a date and time.")
    target, now = ensure_utc(ends_at), utcnow()
    if target > now + timedelta(days=MAX_DAYS):
        raise FieldInvalid("ends_at", "That is more than ten years away.")
    before = snapshot(subscription)
    await _set_end(session, subscription, target, now)
    _audit(session, actor, "subscription.set_end", subscription, before)
    return subscription


async def cancel(session: AsyncSession, actor: Actor, subscription: Subscription) -> Subscription:
    """End access now: cancelled, no renewal, and the panel account disabled (kept, so an extension revives it)."""
    if subscription.status == SubscriptionStatus.CANCELLED:
        raise Conflict("This subscription is already cancelled.", code="already_cancelled")
    before = snapshot(subscription)
    subscription.status = SubscriptionStatus.CANCELLED
    subscription.cancelled_at = utcnow()
    subscription.auto_renew = False
    subscription.next_renewal_attempt_at = None
    await session.flush()
    await provisioning.sync_subscription(session, subscription)
    _audit(session, actor, "subscription.cancel", subscription, before)
    return subscription


async def grant_bonus_days(session: AsyncSession, actor: Actor, user: User, days: object) -> Subscription:
    """A gift of days to the customer's subscription (one is made if they never had any); they are told."""
    count, now = valid_days(days), utcnow()
    if count < 0:
        raise FieldInvalid("days", "Bonus days are a gift: give a positive number.")
    subscription = await latest_subscription(session, user.id, lock=True)
    before = snapshot(subscription) if subscription else None
    if subscription is None:
        subscription = await add_days(session, user.id, count, plan=None, now=now)
    else:
        ends_at = ensure_utc(subscription.ends_at)
        await _set_end(session, subscription, (ends_at if ends_at > now else now) + timedelta(days=count), now)
    after = snapshot(subscription) | {"bonus_days": count}
    entry = record_by(
        session,
        actor,
        action="subscription.bonus_days",
        entity_type="subscription",
        entity_id=subscription.id,
        before=before,
        after=after,
    )
    await session.flush()
    await notifications.notify_user(
        session,
        user.id,
        BONUS_KIND,
        {"days": count, "ends_at": iso(subscription.ends_at)},
        dedupe_key=f"{BONUS_KIND}:{entry.id}",
    )
    return subscription


async def change_plan(session: AsyncSession, actor: Actor, subscription: Subscription, plan_id: object) -> Subscription:
    """Move to another plan: its device and traffic limits apply now; the end date stays."""
    plan = await session.get(Plan, plan_id) if isinstance(plan_id, int) and not isinstance(plan_id, bool) else None
    if plan is None:
        raise FieldInvalid("plan_id", "No such plan.")
    if plan.id == subscription.plan_id:
        raise FieldInvalid("plan_id", "The subscription is already on this plan.")
    before = snapshot(subscription)
    subscription.plan_id = plan.id
    account = await provisioning.account_for(session, subscription)
    if account is not None:
        await provisioning.set_limits(
            session, account, device_limit=plan.device_limit, traffic_limit_bytes=plan.traffic_limit_bytes
        )
    _audit(session, actor, "subscription.change_plan", subscription, before)
    return subscription


async def set_auto_renew(
    session: AsyncSession, actor: Actor, subscription: Subscription, enabled: object
) -> Subscription:
    if not isinstance(enabled, bool):
        raise FieldInvalid("auto_renew", "Expected true or false.")
    if subscription.auto_renew != enabled:
        before = snapshot(subscription)
        subscription.auto_renew = enabled
        subscription.renewal_failures = 0
        _audit(session, actor, "subscription.auto_renew", subscription, before)
    return subscription


async def _account(session: AsyncSession, subscription: Subscription) -> VpnAccount:
    account = await provisioning.account_for(session, subscription)
    if account is None:
        raise Conflict("This subscription has no VPN account yet.", code="no_account")
    return account


async def reset_traffic(session: AsyncSession, actor: Actor, subscription: Subscription) -> VpnAccount:
    """Zero the used traffic on the panel (through the outbox); the next sync brings the new figure back."""
    account = await _account(session, subscription)
    await provisioning.reset_traffic(session, account)
    record_by(
        session,
        actor,
        action="vpn_account.reset_traffic",
        entity_type="vpn_account",
        entity_id=account.id,
        before={"used_traffic_bytes": account.used_traffic_bytes},
        after={"used_traffic_bytes": 0},
    )
    return account


async def reissue_link(session: AsyncSession, actor: Actor, subscription: Subscription) -> VpnAccount:
    """Kill the old subscription link (our mirror now, the panel's through the outbox) and issue a new one."""
    account = await _account(session, subscription)
    old = account.sub_token
    await provisioning.revoke_and_reissue(session, account)
    record_by(
        session,
        actor,
        action="vpn_account.reissued",
        entity_type="vpn_account",
        entity_id=account.id,
        before={"token_tail": old[-4:]},
        after={"token_tail": account.sub_token[-4:]},
    )
    return account


def _audit(
    session: AsyncSession, actor: Actor, action: str, subscription: Subscription, before: dict[str, Any]
) -> None:
    """The staff change's audit row: the subscription before and after, in the change's transaction."""
    record_by(
        session,
        actor,
        action=action,
        entity_type="subscription",
        entity_id=subscription.id,
        before=before,
        after=snapshot(subscription),
    )
