"""Provisioning: what VPN account a subscription should have, recorded in our database and converged onto the
panel through the outbox. Nothing here calls a panel; every function runs inside the caller's transaction.

Account usernames are the installation's prefix and the subscription id, stored before the create, so a create
retried after a crash finds the account it made instead of making a second one; the ownership mark written with
it (app.panels.ownership) tells it apart from a same-name account of someone else.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.kit.clock import utcnow
from app.models import LIVE_STATUSES, PanelKind, Plan, Server, Subscription, SubscriptionStatus, VpnAccount
from app.models.plans import TrafficStrategy
from app.outbox import service as outbox
from app.panels.base import AccountSpec
from app.panels.ownership import installation_prefix, with_mark
from app.panels.placement import choose_server

SYNC_TOPIC = "panel.sync_account"
REVOKE_TOPIC = "panel.revoke"
RESET_TRAFFIC_TOPIC = "panel.reset_traffic"
DELETE_TOPIC = "panel.delete"


# Panels that enforce a device limit; on the others (Marzban) a limit would be a promise nobody keeps.
DEVICE_LIMIT_PANELS = frozenset({PanelKind.REMNAWAVE, PanelKind.DEMO})
# Account statuses that mean our record is not on the panel on purpose (staff deleted it there by hand).
DELETED_ON_PANEL = "deleted"


def panel_username(prefix: str, subscription_id: int) -> str:
    """Valid on every panel (Marzban: 3–32 word characters, Remnawave: 3–36 of [A-Za-z0-9_-])."""
    return f"{prefix}{subscription_id:06d}"


def enforced_device_limit(server: Server, device_limit: int | None) -> int | None:
    """The device limit an account on `server` really has: none where the panel cannot enforce one."""
    return device_limit if server.panel_kind in DEVICE_LIMIT_PANELS else None


def new_sub_token() -> str:
    return secrets.token_urlsafe(24)


def access_ends_at(subscription: Subscription) -> datetime:
    """When VPN access ends: the end date, or later while a live subscription awaits a renewal (a retry after
    a failed charge, or a provider's own renewal): that grace keeps the account working until the answer."""
    grace = subscription.next_renewal_attempt_at
    if subscription.status in LIVE_STATUSES and grace is not None and grace > subscription.ends_at:
        return grace
    return subscription.ends_at


def should_be_enabled(subscription: Subscription, now: datetime | None = None) -> bool:
    return subscription.status in LIVE_STATUSES and access_ends_at(subscription) > (now or utcnow())


def desired_spec(
    account: VpnAccount,
    subscription: Subscription,
    telegram_id: int | None = None,
    plan: Plan | None = None,
    *,
    blocked: bool = False,
) -> AccountSpec:
    """What the panel account must look like for this subscription right now (off while staff block its owner)."""
    return AccountSpec(
        username=account.panel_username,
        expire_at=access_ends_at(subscription),
        traffic_limit_bytes=account.traffic_limit_bytes,
        device_limit=account.device_limit,
        enabled=should_be_enabled(subscription) and not blocked,
        note=with_mark(f"vpnshop user {account.user_id} subscription {subscription.id}", account.owner_key),
        telegram_id=telegram_id,
        traffic_strategy=TrafficStrategy(account.traffic_strategy).value,
        squads=list(plan.panel_squads) if plan is not None and plan.panel_squads else None,
    )


def _account_key(account: VpnAccount) -> str:
    return f"account:{account.id}"


def _panel_account_key(server_id: int, username: str) -> str:
    """Orders the operations on one server's copy of an account that outlive the account's move off it."""
    return f"server:{server_id}:{username}"


async def request_sync(session: AsyncSession, account: VpnAccount) -> None:
    """Queue a convergence of the panel account onto our stored state (idempotent, ordered per account)."""
    await outbox.add(session, SYNC_TOPIC, {"account_id": account.id}, ordering_key=_account_key(account))


async def sync_user_accounts(session: AsyncSession, user_id: int) -> None:
    """Queue a convergence of every VPN account of the customer (after a block or an unblock)."""
    for account in await session.scalars(select(VpnAccount).where(VpnAccount.user_id == user_id)):
        await request_sync(session, account)


async def device_limits_enforced(session: AsyncSession, user_id: int) -> bool:
    """Whether a device limit sold to this user would hold: on the panel of their latest account, or, before they
    have one, on every server a new account may be placed on (Marzban cannot limit devices)."""
    kind = await session.scalar(
        select(Server.panel_kind)
        .join(VpnAccount, VpnAccount.server_id == Server.id)
        .where(VpnAccount.user_id == user_id)
        .order_by(VpnAccount.id.desc())
        .limit(1)
    )
    if kind is not None:
        return kind in DEVICE_LIMIT_PANELS
    kinds = set(
        (await session.scalars(select(Server.panel_kind).where(Server.is_enabled, Server.accepts_new_accounts))).all()
    )
    return bool(kinds) and kinds <= DEVICE_LIMIT_PANELS


async def account_for(session: AsyncSession, subscription: Subscription) -> VpnAccount | None:
    return await session.scalar(select(VpnAccount).where(VpnAccount.subscription_id == subscription.id))


async def ensure_account(
    session: AsyncSession,
    subscription: Subscription,
    *,
    location: str | None = None,
    device_limit: int | None = None,
    traffic_limit_bytes: int | None = None,
    traffic_strategy: TrafficStrategy = TrafficStrategy.NO_RESET,
) -> VpnAccount:
    """The subscription's VPN account, created (placed on a server and queued for the panel) if missing."""
    account = await account_for(session, subscription)
    if account is not None:
        return account
    server = await choose_server(session, location)
    account = VpnAccount(
        user_id=subscription.user_id,
        subscription_id=subscription.id,
        server_id=server.id,
        panel_username=panel_username(await installation_prefix(session), subscription.id),
        status="pending",
        sub_token=new_sub_token(),
        device_limit=enforced_device_limit(server, device_limit),
        traffic_limit_bytes=traffic_limit_bytes,
        traffic_strategy=traffic_strategy,
    )
    session.add(account)
    await session.flush()
    await request_sync(session, account)
    return account


async def sync_subscription(session: AsyncSession, subscription: Subscription) -> VpnAccount:
    """After any change of a subscription's dates or status: make the panel follow."""
    account = await ensure_account(session, subscription)
    await request_sync(session, account)
    return account


async def extend_to(session: AsyncSession, subscription: Subscription, ends_at: datetime) -> VpnAccount:
    """Set the subscription's end date and converge the panel account (created if missing)."""
    subscription.ends_at = ends_at
    if subscription.status not in LIVE_STATUSES:
        subscription.status = SubscriptionStatus.ACTIVE
    await session.flush()
    return await sync_subscription(session, subscription)


async def set_limits(
    session: AsyncSession, account: VpnAccount, *, device_limit: int | None, traffic_limit_bytes: int | None
) -> None:
    account.device_limit = enforced_device_limit(await session.get_one(Server, account.server_id), device_limit)
    account.traffic_limit_bytes = traffic_limit_bytes
    await request_sync(session, account)


async def start_paid_period(session: AsyncSession, account: VpnAccount, plan: Plan | None) -> None:
    """A paid period always restores service: the plan's limits, expiry and status converge, then the used
    traffic starts over (a customer who used up a limited plan is `limited` on the panel until then). Both go
    through the outbox, in this order on the account's key. An account staff deleted on the panel comes back."""
    if plan is not None:
        server = await session.get_one(Server, account.server_id)
        account.device_limit = enforced_device_limit(server, plan.device_limit)
        account.traffic_limit_bytes = plan.traffic_limit_bytes
        account.traffic_strategy = plan.traffic_strategy
    if account.status == DELETED_ON_PANEL:
        account.status, account.panel_id = "pending", None
    await request_sync(session, account)
    await reset_traffic(session, account)


async def restore_deleted(session: AsyncSession, account: VpnAccount) -> None:
    """Staff bring back an account that was deleted on the panel by hand (see app.panels.events): it is created
    again, empty, under its name, and the customer's /sub link keeps working."""
    if account.status == DELETED_ON_PANEL:
        account.status, account.panel_id = "pending", None
    await request_sync(session, account)


async def revoke_and_reissue(session: AsyncSession, account: VpnAccount) -> None:
    """Kill the old subscription link everywhere: our mirror token now, the panel's link via the outbox."""
    account.sub_token = new_sub_token()
    await outbox.add(session, REVOKE_TOPIC, {"account_id": account.id}, ordering_key=_account_key(account))


async def reset_traffic(session: AsyncSession, account: VpnAccount) -> None:
    await outbox.add(session, RESET_TRAFFIC_TOPIC, {"account_id": account.id}, ordering_key=_account_key(account))


def _delete_payload(account: VpnAccount) -> dict[str, Any]:
    """What the delete handler needs to find the panel account and prove it is ours before deleting it."""
    return {
        "server_id": account.server_id,
        "username": account.panel_username,
        "panel_id": account.panel_id,
        "owner_key": account.owner_key,
        "user_id": account.user_id,
    }


async def delete_account(session: AsyncSession, account: VpnAccount) -> None:
    """Remove the panel account and our record of it (after the grace period, or on staff request)."""
    payload = _delete_payload(account)
    await outbox.add(session, DELETE_TOPIC, payload, ordering_key=_account_key(account))
    await session.delete(account)


async def move_account(session: AsyncSession, account: VpnAccount, target: Server) -> None:
    """Move to another server: the account is created there and deleted from the old one; the user's
    /sub/{token} mirror link stays the same, so clients keep working.

    The old copy's delete is ordered on its own key: moving users off a dead server is the usual case, and
    that delete must not hold the account's later changes (a renewal) until the dead server returns. The delete
    handler itself waits until the account exists on its new server, and spares the copy if the account has
    been moved back meanwhile."""
    if target.id == account.server_id:
        return
    old = _delete_payload(account)
    account.server_id = target.id
    account.panel_id = None
    account.status = "pending"
    account.device_limit = enforced_device_limit(target, account.device_limit)
    await request_sync(session, account)
    key = _panel_account_key(old["server_id"], account.panel_username)
    await outbox.add(session, DELETE_TOPIC, old, ordering_key=key)
