"""Autodiagnostics on the real adapters and emulators (Marzban 0.7/0.8, Remnawave 2.x/3.x): a healthy account is
diagnosed clean (Marzban signs a new subscription URL into every answer, so comparing URLs cried wolf), and a
link that no longer serves the account fails."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app.diagnostics import diagnose
from app.diagnostics.service import skip_probe
from app.models import User
from app.panels.base import AccountRef
from tests.provisioning.conftest import (  # noqa: F401 - the shop and panel fixtures, shared with provisioning
    EnvFactory,
    PanelEnv,
    Shop,
    clock,
    fresh_breakers,
    open_env,
    outcome,
    shop,
)

GENERATIONS = [("marzban", "0.7"), ("marzban", "0.8"), ("remnawave", "2"), ("remnawave", "3")]


@pytest.fixture(params=GENERATIONS, ids=lambda pair: f"{pair[0]}-{pair[1]}")
def env(request: pytest.FixtureRequest, open_env: EnvFactory) -> PanelEnv:  # noqa: F811
    name, version = request.param
    return open_env(name, version)


async def provisioned_customer(shop: Shop, env: PanelEnv) -> tuple[int, int, str]:  # noqa: F811
    """(user id, account id, panel username) of a customer whose app is connected."""
    server = await shop.add_server(env, "nl-1")
    if env.kind == "marzban":
        env.add_node("Node-1", online=True)
    subscription = await shop.add_subscription(1001)
    account = await shop.ensure(subscription.id)
    assert await shop.dispatch() == outcome(done=1)
    assert await shop.check_health(server.id)
    env.record_usage(account.panel_username, 10_000)  # the app is connected
    await shop.reconcile(server.id)
    shop.travel(seconds=5)  # later answers carry other signed URLs (Marzban)
    return subscription.user_id, account.id, account.panel_username


async def run(shop: Shop, user_id: int):  # noqa: F811
    async with shop.sessionmaker() as session:
        user = await session.scalar(select(User).where(User.id == user_id))
        assert user is not None
        return await diagnose(session, user, shop.panels, probe=skip_probe)


async def test_a_healthy_account_of_every_panel_kind_is_diagnosed_clean(shop: Shop, env: PanelEnv) -> None:  # noqa: F811
    user_id, _, _ = await provisioned_customer(shop, env)

    report = await run(shop, user_id)

    assert [(check.code, check.outcome) for check in report.checks] == [
        ("subscription", "ok"),
        ("account", "ok"),
        ("link", "ok"),
        ("server", "ok"),
        ("client", "ok"),
    ]


async def test_a_link_revoked_on_the_panel_fails(shop: Shop, env: PanelEnv) -> None:  # noqa: F811
    user_id, account_id, username = await provisioned_customer(shop, env)
    account = await shop.account(account_id)
    server = await shop.server(account.server_id)
    # Someone revoked it on the panel by hand: the link we relay is dead, though the account is fine.
    await shop.panels.for_server(server).revoke_subscription(AccountRef(username, account.panel_id))
    shop.travel(seconds=5)

    link = (await run(shop, user_id)).check("link")

    assert (link.outcome, link.message_key) == ("fail", "diag.link.stale")
