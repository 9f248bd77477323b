"""The finance page on the planted shop of tests/stats/test_finance.py (every figure worked out there): the
cards, the tables, the chart's data, who may see it, and a wrong breakdown refused by name."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime

import pytest

from app.kit.clock import FrozenClock
from tests.admin.conftest import AdminHarness
from tests.admin.test_dashboard import cards
from tests.stats.test_finance import NOW, plant
from tests.web import text_of

EN = {"accept-language": "en"}


@pytest.fixture(autouse=True)
def clock(freeze: Callable[[datetime], FrozenClock]) -> FrozenClock:
    return freeze(NOW)


def row(html: str, attribute: str, value: str) -> str:
    found = re.search(rf'<tr {attribute}="{re.escape(value)}">(.*?)</tr>', html, flags=re.S)
    assert found, f"no row {attribute}={value}"
    return text_of(found.group(1))


async def test_the_finance_page_shows_the_planted_figures(admin: AdminHarness) -> None:
    await plant(admin.db)
    owner = await admin.browser("owner")
    response = await owner.get("/admin/finance", headers=EN)
    assert response.status_code == 200
    shown = cards(response.text)
    assert shown["revenue"].startswith("Revenue (12 months) ₽4,915")
    assert shown["mrr"] == "MRR ₽1,555"
    assert shown["paying"] == "Paying customers 3"
    assert shown["arppu"] == "ARPPU ₽518.33"
    assert shown["churn"] == "Churn 50.0 % 2026-02"
    assert shown["ltv"].startswith("LTV ₽1,036.67")
    assert shown["success"] == "Payment success 77.8 % 7 of 9"
    assert shown["renewals"] == "Renewal success 66.7 % 2 of 3"
    html = response.text
    assert row(html, "data-month", "2026-02").startswith("2026-02 3 ₽1,055 1 ₽1,000 2 1 ₽1,000 50.0 %")
    assert row(html, "data-currency", "USD") == "USD 2026-01-01 90"
    cohort = html.split('id="cohorts"')[1]
    assert row(cohort, "data-month", "2026-01") == "2026-01 2 100.0 % 100.0 % 50.0 %"
    trials = html.split('id="trials"')[1]
    assert row(trials, "data-month", "2026-02") == "2026-02 2 1 50.0 %"
    assert row(html.split('id="by-currency"')[1], "data-key", "RUB") == "RUB 5 1 · ₽500 ₽4,000 ₽4,000"
    chart = json.loads(re.search(r'data-chart="([^"]*)"', html).group(1).replace("&#34;", '"').replace("&amp;", "&"))
    assert chart["series"][0]["values"][-3:] == [2000.0, 1915.0, 1000.0]
    assert "missing-rates" not in html
    # The cohort block alone, as the page shows it.
    block = await owner.get("/admin/finance/cohorts", headers=EN)
    assert block.status_code == 200 and "<html" not in block.text
    assert row(block.text, "data-month", "2026-02") == "2026-02 3 100.0 % 66.7 %"


async def test_by_day_and_a_wrong_breakdown(admin: AdminHarness) -> None:
    await plant(admin.db)
    marketing = await admin.browser("marketing")
    daily = await marketing.get("/admin/finance?by=day", headers=EN)
    assert daily.status_code == 200
    assert cards(daily.text)["revenue"].startswith("Revenue (30 days) ₽1,375")
    wrong = await marketing.get("/admin/finance?by=year", headers=EN)
    assert wrong.status_code == 422
    assert "Unknown breakdown: choose one of day, week, month." in text_of(wrong.text)


async def test_support_may_not_see_finance(admin: AdminHarness) -> None:
    support = await admin.browser("support")
    assert (await support.get("/admin/finance")).status_code == 403


async def test_the_stats_api(admin: AdminHarness) -> None:
    marketing = await admin.bearer("marketing")
    support = await admin.bearer("support")
    await plant(admin.db)
    revenue = await admin.client.get("/api/admin/stats/revenue?by=month", headers=marketing)
    assert revenue.status_code == 200, revenue.text
    body = revenue.json()
    # The figures of tests/stats/test_finance.py: 4915 RUB over 12 months, February 1915, MRR 1555 from 3 payers.
    assert body["total"] == {"currency": "RUB", "amount": "4915.00", "missing": []}
    assert body["buckets"][-2]["start"] == "2026-02-01" and body["buckets"][-2]["revenue"]["amount"] == "1915.00"
    assert (body["mrr"]["amount"], body["paying_customers"], body["arppu"], body["ltv"]) == (
        "1555.00", 3, "518.33", "1036.67",
    )  # fmt: skip
    rub = next(item for item in body["by_currency"] if item["currency"] == "RUB")
    assert (rub["gross_minor"], rub["refunded_minor"], rub["net_minor"]) == (4500_00, 500_00, 4000_00)
    bad = await admin.client.get("/api/admin/stats/revenue?by=year", headers=marketing)
    assert bad.status_code == 422 and bad.json()["error"]["fields"][0]["field"] == "by"
    assert (await admin.client.get("/api/admin/stats/revenue", headers=support)).status_code == 403

    overview = await admin.client.get("/api/admin/stats/overview", headers=support)
    assert overview.status_code == 200
    # Now (20 March, noon): A, C and G hold paid subscriptions; nobody was created today.
    assert overview.json() | {"day": None} == {
        "day": None, "new_customers": 0, "app_dau": 0, "vpn_dau": 0, "live_trial": 0, "live_paid": 3, "online_now": 0,
    }  # fmt: skip
    users = await admin.client.get("/api/admin/stats/users?days=30", headers=support)
    assert users.status_code == 200 and len(users.json()["days"]) == 30
    assert set(users.json()["values"]) == {"new_customers", "live_trial", "live_paid"}
    usage = await admin.client.get("/api/admin/stats/usage?days=7", headers=support)
    assert usage.status_code == 422
