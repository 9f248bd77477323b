"""VPN-problem notices: a server down for three minutes tells its live users once; its recovery tells exactly
those users. Driven by the real health check: the demo panel's nodes switched off through the minute job, and a
Marzban emulator that stops answering."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.config import Settings
from app.db import create_sessionmaker
from app.kit.clock import FrozenClock
from app.kit.http import CircuitBreaker, HttpClient, RetryPolicy
from app.models import OutboxMessage, PanelKind, Server, Subscription, SubscriptionStatus, User, VpnAccount
from app.notifications.service import USER_TOPIC
from app.panels.demo import DEMO_NODES, DemoPanel
from app.panels.marzban import MarzbanPanel
from app.panels.outages import review_outage
from app.panels.registry import PanelRegistry
from app.panels.sync import check_server_health
from tasks.panels import check_panels
from tests.emulators.marzban import MarzbanEmulator
from tests.factories import add_account, add_server, add_subscriber
from tests.panels.marzban_fixture import loopback_transport, serve_emulator

START = datetime(2026, 5, 4, 10, 0, 0, tzinfo=UTC)
Freeze = Callable[[datetime], FrozenClock]


@pytest.fixture
def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return create_sessionmaker(engine)


@pytest.fixture
async def ctx(settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[dict[str, Any]]:
    panels = PanelRegistry(sessionmaker, settings)
    yield {"resources": SimpleNamespace(settings=settings, sessionmaker=sessionmaker, panels=panels)}
    await panels.aclose()


async def _customer(db: AsyncSession, server: Server, telegram_id: int, **options: Any) -> int:
    """A user with a subscription whose account is on `server`; returns the user's id."""
    user, subscription = await add_subscriber(db, telegram_id, **options)
    await add_account(db, server, subscription)
    return user.id


async def _notices(db: AsyncSession, kind: str) -> list[dict[str, Any]]:
    rows = (await db.scalars(select(OutboxMessage).where(OutboxMessage.topic == USER_TOPIC))).all()
    await db.commit()  # end the read, so the next one sees what the jobs commit meanwhile
    return [row.payload for row in rows if row.payload["kind"] == kind]


def _recipients(notices: list[dict[str, Any]]) -> list[int]:
    return sorted(notice["user_id"] for notice in notices)


async def _switch_nodes(sessionmaker: async_sessionmaker[AsyncSession], server: Server, online: bool) -> None:
    panel = DemoPanel(sessionmaker, public_base_url="http://t", server_name=server.name)
    for node in DEMO_NODES:
        await panel.set_node_online(node.name, online)


async def test_an_outage_of_three_minutes_tells_each_live_user_on_the_server_once_and_recovery_tells_them_again(
    db: AsyncSession, sessionmaker: async_sessionmaker[AsyncSession], ctx: dict[str, Any], freeze: Freeze
) -> None:
    clock = freeze(START)
    down = await add_server(db, name="nl-1", location="Нидерланды")
    other = await add_server(db, name="de-1", location="Германия")
    first = await _customer(db, down, 101)
    trial = await _customer(db, down, 102, status=SubscriptionStatus.TRIAL)
    await _customer(db, down, 103, ends_in=-timedelta(days=1), status=SubscriptionStatus.EXPIRED)
    await _customer(db, down, 104, ends_in=-timedelta(minutes=1))  # still "active" but its time is up
    await _customer(db, other, 105)
    # One person with two subscriptions on the failing server hears once.
    twice = await _customer(db, down, 106)
    db.add(
        more := Subscription(
            user_id=twice, status=SubscriptionStatus.ACTIVE, starts_at=START, ends_at=START + timedelta(days=9)
        )
    )
    await db.flush()
    await add_account(db, down, more)
    await db.commit()

    assert await check_panels(ctx) == {"nl-1": True, "de-1": True}
    await _switch_nodes(sessionmaker, down, online=False)
    await check_panels(ctx)  # the outage starts now
    since = START.isoformat()
    clock.advance(minutes=2, seconds=59)
    await check_panels(ctx)
    assert await _notices(db, "vpn_problem") == []

    clock.advance(seconds=1)
    await check_panels(ctx)
    problems = await _notices(db, "vpn_problem")
    assert _recipients(problems) == sorted([first, trial, twice])
    assert all(notice["data"] == {"server": "Нидерланды", "since": since} for notice in problems)
    assert {notice["dedupe_key"] for notice in problems} == {
        f"vpn_problem:{down.id}:{since}:{user_id}" for user_id in (first, trial, twice)
    }

    clock.advance(minutes=5)
    await check_panels(ctx)  # still down: nothing new
    late = await _customer(db, down, 108)  # joined during the outage, after the notices went out
    await db.commit()
    await check_panels(ctx)
    assert len(await _notices(db, "vpn_problem")) == 3
    assert await _notices(db, "vpn_restored") == []

    await _switch_nodes(sessionmaker, down, online=True)
    clock.advance(minutes=1)
    await check_panels(ctx)
    restored = await _notices(db, "vpn_restored")
    assert _recipients(restored) == sorted([first, trial, twice])
    assert late not in _recipients(restored)
    restored_at = (START + timedelta(minutes=9)).isoformat()
    assert all(
        notice["data"] == {"server": "Нидерланды", "since": since, "restored_at": restored_at} for notice in restored
    )
    assert {notice["dedupe_key"] for notice in restored} == {
        f"vpn_restored:{down.id}:{since}:{user_id}" for user_id in (first, trial, twice)
    }

    clock.advance(minutes=1)
    await check_panels(ctx)
    assert (len(await _notices(db, "vpn_problem")), len(await _notices(db, "vpn_restored"))) == (3, 3)
    assert "outage" not in await db.scalar(select(Server.settings).where(Server.id == down.id))


async def test_a_blip_shorter_than_three_minutes_tells_nobody(
    db: AsyncSession, sessionmaker: async_sessionmaker[AsyncSession], ctx: dict[str, Any], freeze: Freeze
) -> None:
    clock = freeze(START)
    server = await add_server(db, name="nl-1")
    await _customer(db, server, 201)
    await db.commit()

    await _switch_nodes(sessionmaker, server, online=False)
    await check_panels(ctx)
    clock.advance(minutes=2, seconds=30)
    await check_panels(ctx)
    await _switch_nodes(sessionmaker, server, online=True)
    clock.advance(seconds=30)
    await check_panels(ctx)
    clock.advance(minutes=10)
    await check_panels(ctx)

    assert await _notices(db, "vpn_problem") == []
    assert await _notices(db, "vpn_restored") == []


async def test_one_node_of_several_down_is_not_an_outage(
    db: AsyncSession, sessionmaker: async_sessionmaker[AsyncSession], ctx: dict[str, Any], freeze: Freeze
) -> None:
    clock = freeze(START)
    server = await add_server(db, name="nl-1")
    await _customer(db, server, 301)
    await db.commit()

    await DemoPanel(sessionmaker, public_base_url="http://t", server_name="nl-1").set_node_online("nl-1", False)
    for _ in range(5):
        await check_panels(ctx)
        clock.advance(minutes=2)

    assert await _notices(db, "vpn_problem") == []


async def test_an_unreachable_marzban_panel_is_an_outage_and_its_return_a_recovery(
    db: AsyncSession, sessionmaker: async_sessionmaker[AsyncSession], freeze: Freeze
) -> None:
    clock = freeze(START)
    emulator = MarzbanEmulator("0.7")
    emulator.state.add_node("Node-A")
    with serve_emulator(emulator) as base_url:
        http = HttpClient(
            base_url,
            service="marzban",
            retry=RetryPolicy(attempts=1),
            breaker=CircuitBreaker(threshold=1000),  # every check reaches the panel
            transport=loopback_transport(),
        )
        panel = MarzbanPanel(base_url, "admin", "admin", http=http)
        server = await add_server(db, name="mz-1", kind=PanelKind.MARZBAN, api_url=base_url, location="Финляндия")
        users = [await _customer(db, server, 400 + n) for n in range(3)]
        await db.commit()

        async def check() -> None:
            await check_server_health(sessionmaker, server, panel)
            await review_outage(sessionmaker, server.id)

        try:
            await check()
            emulator.state.down()
            await check()
            clock.advance(minutes=3)
            await check()
            await check()
            emulator.state.up()
            clock.advance(minutes=1)
            await check()
        finally:
            await panel.aclose()

    since = START.isoformat()
    problems = await _notices(db, "vpn_problem")
    restored = await _notices(db, "vpn_restored")
    assert _recipients(problems) == _recipients(restored) == sorted(users)
    assert problems[0]["data"] == {"server": "Финляндия", "since": since}
    assert restored[0]["data"]["restored_at"] == (START + timedelta(minutes=4)).isoformat()


async def test_a_large_server_is_told_in_batches_with_one_notice_each(
    db: AsyncSession, sessionmaker: async_sessionmaker[AsyncSession], ctx: dict[str, Any], freeze: Freeze
) -> None:
    clock = freeze(START)
    server = await add_server(db, name="nl-1")
    count = 2500  # more than two batches
    await _bulk_customers(db, server, count)
    await db.commit()
    ids = (await db.scalars(select(User.id))).all()

    await _switch_nodes(sessionmaker, server, online=False)
    await check_panels(ctx)
    clock.advance(minutes=3)
    await check_panels(ctx)

    assert _recipients(await _notices(db, "vpn_problem")) == sorted(ids)
    assert len(ids) == count


async def _bulk_customers(db: AsyncSession, server: Server, count: int) -> None:
    """`count` live customers on `server`, inserted in three statements (the factories take a round trip each)."""
    ends = START + timedelta(days=30)
    await db.execute(insert(User), [{"telegram_id": 10_000 + n, "referral_code": f"bulk{n}"} for n in range(count)])
    user_ids = (await db.scalars(select(User.id).order_by(User.id))).all()
    await db.execute(
        insert(Subscription),
        [
            {"user_id": uid, "status": SubscriptionStatus.ACTIVE, "starts_at": START, "ends_at": ends}
            for uid in user_ids
        ],
    )
    subscriptions = (await db.execute(select(Subscription.id, Subscription.user_id))).all()
    await db.execute(
        insert(VpnAccount),
        [
            {
                "user_id": uid,
                "subscription_id": sid,
                "server_id": server.id,
                "panel_username": f"vs{sid:06d}",
                "sub_token": f"bulk{sid}",
            }
            for sid, uid in subscriptions
        ],
    )
