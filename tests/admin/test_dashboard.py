"""The dashboard on the planted shop of tests/stats/planted.py (every figure worked out there): the cards, what
each role sees, the self-refreshing block, the growth charts and the alerts."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db import create_sessionmaker
from app.kit.clock import FrozenClock
from app.stats.rollup import roll_up
from tests.admin.conftest import AdminHarness
from tests.stats.planted import NOW, plant_shop
from tests.web import text_of

EN = {"accept-language": "en"}


@pytest.fixture(autouse=True)
def clock(freeze: Callable[[datetime], FrozenClock]) -> FrozenClock:
    return freeze(NOW)


def cards(html: str) -> dict[str, str]:
    """data-card key → the card's visible text."""
    found = re.findall(r'<div data-card="([a-z_]+)">(.*?)</article>', html, flags=re.S)
    return {key: text_of(body) for key, body in found}


async def test_the_owner_sees_every_figure_of_the_day(admin: AdminHarness, engine: AsyncEngine) -> None:
    await plant_shop(admin.db, usd_rate_from_march_1=True)
    await roll_up(create_sessionmaker(engine), NOW)
    owner = await admin.browser("owner")
    response = await owner.get("/admin", headers=EN)
    assert response.status_code == 200
    shown = cards(response.text)
    # Worked out in tests/stats/test_figures.py: app DAU 2 (yesterday 2), VPN DAU 2 (yesterday 1, +100 %), MAU 4 and
    # 3, new customers 2, live 1 paid + 1 trial, 1 online; revenue today 125.00 RUB (yesterday 299.00: -58.2 %) and
    # 700.58 RUB this month.
    assert shown["app_dau"].startswith("Active today (app) 2 ■ 0%")
    assert shown["vpn_dau"].startswith("Active today (VPN) 2 ▲ +100%")
    # noon UTC in Moscow, on CLDR's English clock
    assert shown["app_mau"] == "Active in 30 days (app) 4 as of 3:00 PM"
    assert shown["vpn_mau"].startswith("Active in 30 days (VPN) 3")
    assert shown["new_customers"].startswith("New customers today 2")
    assert shown["live_subscriptions"] == "Live subscriptions 2 paid 1 · trial 1"
    assert shown["online_now"].startswith("Online now 1")
    assert shown["revenue_today"] == "Revenue today ₽125 ▼ -58.2% vs yesterday -₽100 · 150 ★"  # CLDR: en writes ₽ first
    assert shown["revenue_month"] == "Revenue this month ₽700.58 ₽199 · $2.99 · 150 ★"
    # The latest payments, the mismatch alert and its link.
    assert 'href="/admin/payments?status=mismatch"' in response.text
    assert "1 payment whose amount did not match its order" in text_of(response.text)
    assert response.text.count('href="/admin/payments/') >= 6
    # The planted server carries five accounts of its 1000.
    assert 'data-server="demo"' in response.text and "5 / 1000 (0%)" in text_of(response.text)


async def test_each_role_sees_only_what_its_permissions_cover(admin: AdminHarness, engine: AsyncEngine) -> None:
    await plant_shop(admin.db)
    await roll_up(create_sessionmaker(engine), NOW)
    support = cards((await (await admin.browser("support")).get("/admin", headers=EN)).text)
    assert "revenue_today" not in support and "revenue_month" not in support and "app_dau" in support
    support_page = (await (await admin.browser("support")).get("/admin", headers=EN)).text
    assert "Latest payments" in support_page and "chart-revenue" not in support_page
    marketing_page = (await (await admin.browser("marketing")).get("/admin", headers=EN)).text
    assert "revenue_today" in cards(marketing_page) and "Latest payments" not in marketing_page
    assert "chart-revenue" in marketing_page
    assert (await admin.client.get("/admin/dashboard/live", headers={"hx-request": "true"})).status_code == 401


async def test_the_live_block_refreshes_alone_and_says_when_the_rollup_has_not_run(admin: AdminHarness) -> None:
    await plant_shop(admin.db)
    owner = await admin.browser("owner")
    page = await owner.get("/admin", headers=EN)
    assert 'hx-get="/admin/dashboard/live" hx-trigger="every 10s"' in page.text
    live = await owner.get("/admin/dashboard/live", headers={"hx-request": "true", "hx-target": "live"} | EN)
    assert live.status_code == 200
    assert live.text.lstrip().startswith('<div id="live"') and "<html" not in live.text
    # No rollup yet: the 30-day figures say so instead of showing a zero.
    assert cards(live.text)["app_mau"] == "Active in 30 days (app) — the daily rollup has not run yet"


async def test_growth_charts_for_each_period_and_a_wrong_period_refused(
    admin: AdminHarness, engine: AsyncEngine
) -> None:
    await plant_shop(admin.db, usd_rate_from_march_1=True)
    await roll_up(create_sessionmaker(engine), NOW)
    owner = await admin.browser("owner")
    for days in (30, 90, 365):
        response = await owner.get(f"/admin/dashboard/growth?days={days}", headers={"hx-request": "true"} | EN)
        assert response.status_code == 200
        charts = dict(re.findall(r'id="chart-([a-z]+)"[^>]*data-chart="([^"]+)"', response.text))
        assert set(charts) == {"customers", "active", "subscriptions", "revenue"}
        revenue = json.loads(charts["revenue"].replace("&#34;", '"').replace("&quot;", '"'))
        assert len(revenue["x"]) == days
        # The last point is today's 125.00 RUB; 2 March had 2.99 USD × 92.50.
        assert revenue["series"][0]["values"][-1] == 125.0
        assert revenue["series"][0]["values"][-14] == 276.58
    wrong = await owner.get("/admin?days=7", headers=EN)
    assert wrong.status_code == 422
    assert "The period must be one of 30, 90, 365 days; showing 30." in text_of(wrong.text)
    assert (await owner.get("/admin/dashboard/growth?days=abc", headers=EN)).status_code == 422


async def test_russian_dashboard(admin: AdminHarness, engine: AsyncEngine) -> None:
    await plant_shop(admin.db)
    await roll_up(create_sessionmaker(engine), NOW)
    page = await (await admin.browser("owner")).get("/admin", headers={"accept-language": "ru"})
    text = text_of(page.text)
    assert "Активны сегодня (приложение) 2" in text and "Действующие подписки 2 платные 1 · пробные 1" in text
    assert "1 платёж с суммой, не совпавшей с заказом" in text
