"""The dashboard and the payments list in real Chromium against the real demo process, on a desktop and on a
360 px phone: the demo admin lands on the dashboard, its cards and uPlot charts are drawn, the period switch swaps
only the charts, the live block refreshes itself, and the payments list answers a contradictory date filter with
an inline error. Screenshots go to test-output/screenshots/."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Browser, expect

from tests.e2e.conftest import Shop, browser_page, shot

pytestmark = pytest.mark.e2e

TIMEOUT = 15_000


def _sign_in(shop: Shop, browser: Browser, viewport: dict[str, int]):  # type: ignore[no-untyped-def]
    page, errors = browser_page(browser)
    page.set_viewport_size(viewport)
    page.set_default_timeout(TIMEOUT)
    page.goto(f"{shop.base_url}/admin/login")
    page.get_by_test_id("demo-admin").click()
    expect(page).to_have_url(re.compile(r"/admin/?$"))
    return page, errors


def test_dashboard_draws_its_cards_and_charts_and_switches_period(shop: Shop, browser: Browser) -> None:
    page, errors = _sign_in(shop, browser, {"width": 1280, "height": 900})
    expect(page.locator('[data-card="app_dau"] .metric-value')).to_have_text(re.compile(r"^\d+$"))
    expect(page.locator('[data-card="revenue_month"]')).to_be_visible()
    # uPlot drew every chart (customers, active, subscriptions, revenue) on a canvas.
    expect(page.locator("#growth .uplot-chart canvas")).to_have_count(4)
    shot(page, "admin-dashboard-desktop")

    page.get_by_role("link", name="90 days").click()
    expect(page).to_have_url(re.compile(r"/admin\?days=90$"))
    expect(page.locator('#growth a[aria-current="true"]')).to_have_text("90 days")
    expect(page.locator("#growth .uplot-chart canvas")).to_have_count(4)
    # The live block re-fetches itself (every 10 s) without reloading the page.
    with page.expect_response(re.compile(r"/admin/dashboard/live$"), timeout=30_000) as refresh:
        pass
    assert refresh.value.status == 200
    expect(page.locator('[data-card="online_now"]')).to_be_visible()
    assert errors == []


def test_dashboard_fits_a_phone_and_payments_show_an_inline_filter_error(shop: Shop, browser: Browser) -> None:
    page, errors = _sign_in(shop, browser, {"width": 360, "height": 780})
    expect(page.locator("#growth .uplot-chart canvas")).to_have_count(4)
    shot(page, "admin-dashboard-phone")
    # Nothing wider than the phone: tables scroll inside their own box, charts take the width they have.
    wide = page.evaluate(
        "[...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > 361)"
        ".slice(0, 5).map(e => e.tagName + '.' + e.className + '#' + e.id)"
    )
    assert page.evaluate("document.documentElement.scrollWidth") <= 360, wide

    page.goto(f"{shop.base_url}/admin/payments")
    page.locator("#f-created_from").fill("2026-03-20")
    page.locator("#f-created_to").fill("2026-03-01")
    expect(page.locator("#list .form-error")).to_contain_text("created_from is after created_to")
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    shot(page, "admin-payments-phone-error")
    assert errors == []
