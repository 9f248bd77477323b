"""Plans in the admin, in real Chromium against the real demo process: the demo owner creates a plan in the
editor, sees the customers' card previewed, and the demo customer finds it, priced as set, in the cabinet's
checkout. The plan is archived afterwards by the same signed-in owner, so the shared demo shop sells what it sold
(not through /api/auth/login: the sign-in tests lock the demo owner's password in this shared process)."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Browser, expect

from tests.e2e.conftest import Shop, browser_page, shot

pytestmark = pytest.mark.e2e

TIMEOUT = 15_000
CODE = "e2e-week"


def test_owner_creates_a_plan_and_the_customer_sees_it_in_checkout(shop: Shop, browser: Browser) -> None:
    page, errors = browser_page(browser)
    page.set_default_timeout(TIMEOUT)
    page.goto(f"{shop.base_url}/admin/login")
    page.get_by_test_id("demo-admin").click()
    expect(page).to_have_url(re.compile(r"/admin/?$"))

    page.goto(f"{shop.base_url}/admin/plans")
    page.get_by_test_id("new-plan").click()
    expect(page).to_have_url(re.compile(r"/admin/plans/new$"))
    page.locator("#f-code").fill(CODE)
    page.locator("#f-name_en").fill("E2E week")
    page.locator("#f-name_ru").fill("Неделя e2e")
    page.locator("#f-duration_days").fill("7")
    page.locator("#f-price_RUB").fill("49.50")
    page.locator("#f-price_XTR").fill("abc")  # refused first, with the message beside the field
    page.locator("#f-features_en").fill("Made in e2e")
    page.get_by_test_id("save-plan").click()
    expect(page.locator("#price_XTR-error")).to_be_visible()
    page.locator("#f-price_XTR").fill("25")
    page.get_by_test_id("save-plan").click()
    expect(page).to_have_url(re.compile(r"/admin/plans/\d+$"))
    plan_path = page.url.removeprefix(shop.base_url)
    preview = page.locator("#preview")
    expect(preview).to_contain_text("E2E week")
    expect(preview).to_contain_text("Made in e2e")
    shot(page, "admin-plans-01-editor")

    customer, customer_errors = browser_page(browser, locale="ru-RU", width=360)
    customer.set_default_timeout(TIMEOUT)
    customer.goto(shop.base_url + "/")
    customer.get_by_test_id("demo-customer").click()
    expect(customer).to_have_url(re.compile(r"/app$"))
    customer.goto(shop.base_url + "/app/checkout?currency=RUB")
    card = customer.get_by_test_id(f"plan-{CODE}")
    expect(card).to_contain_text("Неделя e2e")
    expect(card).to_contain_text("49,50")
    expect(card).to_contain_text("Made in e2e")
    shot(customer, "admin-plans-02-cabinet")
    assert errors == [] and customer_errors == []

    # Archived again by the owner's own session (the page's CSRF token, as HTMX sends it).
    archived = page.evaluate(
        """path => fetch(path + "/archive", {method: "POST", headers: {
             "X-CSRF-Token": document.querySelector('meta[name="csrf-token"]').content, "HX-Request": "true"}})
           .then(response => response.status)""",
        plan_path,
    )
    assert archived == 200
