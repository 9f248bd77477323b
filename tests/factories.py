"""Rows most tests need: a panel server and a customer with a subscription and (optionally) a VPN account."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.kit.clock import utcnow
from app.models import PanelKind, Server, Subscription, SubscriptionStatus, User, VpnAccount
from app.panels.registry import seal_credentials


async def add_server(db: AsyncSession, name: str = "demo", kind: PanelKind = PanelKind.DEMO, **fields: Any) -> Server:
    values: dict[str, Any] = {"api_url": f"internal://{name}", "location": "nl"} | fields
    server = Server(name=name, panel_kind=kind, credentials_encrypted=seal_credentials({}), **values)
    db.add(server)
    await db.flush()
    return server


async def add_subscriber(
    db: AsyncSession,
    telegram_id: int,
    *,
    ends_in: timedelta = timedelta(days=30),
    status: SubscriptionStatus = SubscriptionStatus.ACTIVE,
) -> tuple[User, Subscription]:
    """A user with one subscription ending `ends_in` from now (negative: ended that long ago)."""
    user = User(telegram_id=telegram_id, referral_code=f"ref{telegram_id}")
    db.add(user)
    await db.flush()
    ends = utcnow() + ends_in
    subscription = Subscription(
        user_id=user.id, status=status, starts_at=min(ends, utcnow()) - timedelta(days=30), ends_at=ends
    )
    db.add(subscription)
    await db.flush()
    return user, subscription


async def add_account(db: AsyncSession, server: Server, subscription: Subscription, **fields: Any) -> VpnAccount:
    values: dict[str, Any] = {
        "panel_username": f"vs{subscription.id:06d}",
        "status": "active",
        "sub_token": f"tok{subscription.id}",
    } | fields
    account = VpnAccount(user_id=subscription.user_id, subscription_id=subscription.id, server_id=server.id, **values)
    db.add(account)
    await db.flush()
    return account
