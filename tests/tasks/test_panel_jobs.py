"""Daily deletion of accounts past the grace period: only those, through the outbox."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.db import create_sessionmaker
from app.models import OutboxMessage, Server, SubscriptionStatus, VpnAccount
from app.provisioning.service import DELETE_TOPIC
from tasks.panels import delete_lapsed_accounts
from tests.conftest import make_settings
from tests.factories import add_account, add_server, add_subscriber


async def _lapsed_account(db: AsyncSession, server: Server, n: int, ended_days_ago: int) -> VpnAccount:
    _, subscription = await add_subscriber(
        db, 5000 + n, ends_in=-timedelta(days=ended_days_ago), status=SubscriptionStatus.EXPIRED
    )
    return await add_account(db, server, subscription, status="disabled")


async def test_only_accounts_past_the_grace_period_are_deleted(
    db: AsyncSession, engine: AsyncEngine, database_url: str
) -> None:
    server = await add_server(db)
    old = await _lapsed_account(db, server, 1, ended_days_ago=31)
    recent = await _lapsed_account(db, server, 2, ended_days_ago=29)
    await db.commit()

    settings = make_settings(database_url, expiry_grace_days=30)
    ctx = {"resources": SimpleNamespace(sessionmaker=create_sessionmaker(engine), settings=settings)}
    assert await delete_lapsed_accounts(ctx) == 1

    remaining = (await db.scalars(select(VpnAccount.panel_username))).all()
    assert remaining == [recent.panel_username]
    queued = (await db.scalars(select(OutboxMessage).where(OutboxMessage.topic == DELETE_TOPIC))).all()
    assert [m.payload["username"] for m in queued] == [old.panel_username]
