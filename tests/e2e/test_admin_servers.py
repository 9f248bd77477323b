"""The servers section in real Chromium against the real demo process on a 360 px phone: the list shows the
demo panel's server with its health and load, its page draws without sideways scrolling (the orphans block
loads after it), and the new-server form answers a bad address inline. Screenshots go to
test-output/screenshots/."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Browser, expect

from tests.e2e.conftest import Shop, browser_page, shot

pytestmark = pytest.mark.e2e

TIMEOUT = 15_000
PHONE = {"width": 360, "height": 780}
WIDTH = "document.documentElement.scrollWidth"


def test_servers_fit_a_phone_and_the_form_refuses_a_bad_address(shop: Shop, browser: Browser) -> None:
    page, errors = browser_page(browser)
    page.set_viewport_size(PHONE)
    page.set_default_timeout(TIMEOUT)
    page.goto(f"{shop.base_url}/admin/login")
    page.get_by_test_id("demo-admin").click()
    expect(page).to_have_url(re.compile(r"/admin/?$"))

    page.goto(f"{shop.base_url}/admin/servers")
    row = page.locator("tr[data-server]").first
    expect(row).to_be_visible()
    assert page.evaluate(WIDTH) <= 360
    shot(page, "admin-servers-phone")

    row.locator("a").first.click()
    expect(page).to_have_url(re.compile(r"/admin/servers/\d+$"))
    expect(page.locator("#drain")).to_be_visible()
    page.locator("#orphans").scroll_into_view_if_needed()
    expect(page.locator("#orphans")).not_to_contain_text("…", timeout=30_000)
    assert page.evaluate(WIDTH) <= 360
    shot(page, "admin-server-phone")

    page.goto(f"{shop.base_url}/admin/servers/new")
    page.locator("#f-name").fill("e2e")
    page.locator("#f-api_url").fill("ftp://panel")
    page.locator("#f-location").fill("nl")
    page.locator("#f-token").fill("secret-token")
    page.locator("#f-api_url").evaluate("e => e.type = 'text'")  # let the server, not the browser, refuse it
    page.locator("#server-form button[type=submit]").click()
    expect(page.locator("#api_url-error")).to_contain_text("http(s)://")
    assert page.evaluate(WIDTH) <= 360
    shot(page, "admin-server-form-error")
    assert errors == []
