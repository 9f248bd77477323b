"""The finance page in real Chromium against the real demo process and its year of history, on a desktop and on
a 360 px phone: the cards hold figures, uPlot draws the revenue chart, the tables have rows, the breakdown switch
works, and nothing is wider than the phone. Screenshots go to test-output/screenshots/ (admin-finance.png is the
desktop page with the demo's history)."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Browser, expect

from tests.e2e.conftest import Shop, shot
from tests.e2e.test_admin_dashboard import TIMEOUT, _sign_in

pytestmark = pytest.mark.e2e


def test_the_finance_page_shows_the_demos_year(shop: Shop, browser: Browser) -> None:
    page, errors = _sign_in(shop, browser, {"width": 1280, "height": 900})
    page.goto(f"{shop.base_url}/admin/finance")
    expect(page.locator('[data-card="mrr"] .metric-value')).to_have_text(re.compile(r"\d"), timeout=TIMEOUT)
    expect(page.locator('[data-card="churn"] .metric-value')).to_have_text(re.compile(r"%"))
    expect(page.locator(".uplot-chart canvas")).to_have_count(1)
    # Several currencies, months of movements, a filled cohort triangle, every demo currency with its rate.
    assert page.locator("#by-currency tbody tr").count() >= 4
    assert page.locator("#months tbody tr").count() == 12
    assert page.locator("#cohorts tbody td[style]").count() > 20
    expect(page.locator('[data-testid="missing-rates"]')).to_have_count(0)
    shot(page, "admin-finance")

    page.get_by_role("link", name="Weeks").click()
    expect(page).to_have_url(re.compile(r"/admin/finance\?by=week$"))
    expect(page.locator(".uplot-chart canvas")).to_have_count(1)
    assert errors == []


def test_the_finance_page_fits_a_phone(shop: Shop, browser: Browser) -> None:
    page, errors = _sign_in(shop, browser, {"width": 360, "height": 780})
    page.goto(f"{shop.base_url}/admin/finance")
    expect(page.locator(".uplot-chart canvas")).to_have_count(1, timeout=TIMEOUT)
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    shot(page, "admin-finance-phone")
    page.goto(f"{shop.base_url}/admin/promo")
    expect(page.locator('tr[data-code="DEMO20"]')).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    page.goto(f"{shop.base_url}/admin/referrals")
    expect(page.locator('[data-card="invited"]')).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    shot(page, "admin-referrals-phone")
    assert errors == []
