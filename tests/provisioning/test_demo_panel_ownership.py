"""Issue 11 on the demo panel (our own database): a same-name account that is not ours is left alone, and a
limited account is restored by a payment."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from sqlalchemy import select

from app.models import PanelKind, VpnAccount
from app.panels.base import AccountRef, AccountSpec, PanelAccount
from app.panels.demo import DemoPanel
from app.panels.ownership import owner_mark
from tests.provisioning.conftest import Shop, outcome
from tests.provisioning.test_ownership import GIB, add_plan, pay, settle, staff_alerts

DEMO = SimpleNamespace(kind=PanelKind.DEMO, base_url="internal://demo", credentials={})


def looks(account: PanelAccount) -> tuple[Any, ...]:
    return account.expire_at, account.traffic_limit_bytes, account.status, account.note, account.panel_id


async def demo_panel(shop: Shop) -> tuple[int, DemoPanel]:
    server = await shop.add_server(DEMO, "demo")  # type: ignore[arg-type]
    panel = shop.panels.for_server(await shop.server(server.id))
    assert isinstance(panel, DemoPanel)
    return server.id, panel


async def test_a_foreign_same_name_demo_account_is_left_alone(shop: Shop) -> None:
    _, panel = await demo_panel(shop)
    subscription = await shop.add_subscription(1001)
    account = await shop.ensure(subscription.id)
    name = account.panel_username
    theirs = await panel.create_account(AccountSpec(name, expire_at=subscription.ends_at, note="made by hand"))

    assert await settle(shop) == outcome(done=2)  # the account and the staff alert

    assert looks(await panel.get_account(AccountRef(name))) == looks(theirs)
    stored = await shop.account(account.id)
    ours = await panel.get_account(AccountRef(stored.panel_username))
    assert stored.panel_username.startswith(f"{name}_") and owner_mark(stored.owner_key) in (ours.note or "")
    assert [alert["name"] for alert in await staff_alerts(shop, "panel_name_clash")] == [name]


async def test_a_limited_demo_account_is_restored_by_a_payment(shop: Shop) -> None:
    _, panel = await demo_panel(shop)
    plan = await add_plan(shop, traffic=1 * GIB)
    subscription = await shop.add_subscription(1001)
    await pay(shop, subscription.user_id, plan.id)
    assert await shop.dispatch() == outcome(done=1)
    async with shop.sessionmaker() as session:
        account = await session.scalar(select(VpnAccount).where(VpnAccount.subscription_id == subscription.id))
    assert account is not None
    await panel.simulate_usage(account.panel_username, upload=GIB, download=GIB)
    assert (await panel.get_account(AccountRef(account.panel_username))).status == "limited"

    paid = await pay(shop, subscription.user_id, plan.id)
    assert await shop.dispatch() == outcome(done=2)

    found = await panel.get_account(AccountRef(account.panel_username))
    assert (found.status, found.used_traffic_bytes, found.expire_at) == ("active", 0, paid.ends_at)
