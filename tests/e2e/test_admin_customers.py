"""The admin's customers section in real Chromium against the real demo process: the demo admin signs in with
one click, opens the dashboard, finds a customer by the smart search, extends their subscription by 7 days, sees
the change with its before and after in the audit trail, and exports the customers as CSV (BOM, header row, and
a customer named `=cmd` neutralised). Screenshots go to test-output/screenshots/."""

from __future__ import annotations

import csv
import io
import json
import re
import time
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, expect

from app.auth.telegram import sign_init_data
from tests.e2e.conftest import BOT_TOKEN, Shop, browser_page, shot

pytestmark = pytest.mark.e2e

TIMEOUT = 15_000
CUSTOMER_ID = 5560001


def _customer_with_trial(shop: Shop) -> None:
    """A customer named `=cmd` (a name a spreadsheet would run as a formula) who took the free trial in the
    Mini App: a real signed initData, the customers' own API."""
    user = {"id": CUSTOMER_ID, "first_name": "=cmd", "username": "cmd_e2e", "language_code": "en"}
    fields = {"auth_date": str(int(time.time())), "user": json.dumps(user), "chat_type": "private"}
    headers = {"authorization": f"tma {sign_init_data(fields, BOT_TOKEN)}"}
    response = httpx.post(f"{shop.base_url}/api/trial", headers=headers, timeout=15)
    assert response.status_code in (201, 409), response.text


def test_demo_admin_finds_a_customer_extends_by_7_days_sees_the_audit_and_exports_csv(
    shop: Shop, browser: Browser, tmp_path: Path
) -> None:
    _customer_with_trial(shop)
    page, errors = browser_page(browser)
    page.set_default_timeout(TIMEOUT)

    page.goto(f"{shop.base_url}/admin/login")
    page.get_by_test_id("demo-admin").click()
    expect(page).to_have_url(re.compile(r"/admin/?$"))
    shot(page, "admin-01-dashboard")

    page.get_by_role("navigation").get_by_role("link", name="Customers").click()
    expect(page).to_have_url(re.compile(r"/admin/users"))
    page.get_by_role("searchbox").fill(str(CUSTOMER_ID))
    expect(page).to_have_url(re.compile(rf"search={CUSTOMER_ID}"))
    row = page.locator("#list tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("=cmd")
    shot(page, "admin-02-customers-search")

    row.locator("a.customer-name").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("=cmd")
    before = page.locator("#ends-at").inner_text()
    extend = page.locator('form[data-form="extend"]')
    extend.get_by_role("spinbutton").fill("7")
    with page.expect_response(re.compile(r"/extend$")) as answer:
        extend.get_by_role("button", name="Extend").click()
    assert answer.value.status == 200, answer.value.text()[:2000]
    expect(page.locator(".toast-success")).to_be_visible()
    expect(page.locator("#ends-at")).not_to_have_text(before)
    entry = page.locator('#audit tr[data-action="subscription.extend"]')
    expect(entry).to_have_count(1)
    before_iso = entry.locator(".audit-before").inner_text()
    after_iso = entry.locator(".audit-after").inner_text()
    old = datetime.fromisoformat(re.search(r"ends_at: (\S+)", before_iso).group(1))
    new = datetime.fromisoformat(re.search(r"ends_at: (\S+)", after_iso).group(1))
    assert new - old == timedelta(days=7)
    shot(page, "admin-03-customer-extended")

    page.get_by_role("link", name="← Customers").click()
    page.get_by_role("searchbox").fill(str(CUSTOMER_ID))
    expect(page).to_have_url(re.compile(rf"search={CUSTOMER_ID}"))
    with page.expect_download() as info:
        page.get_by_role("link", name="Export CSV").click()
    raw = Path(info.value.path()).read_bytes()
    assert raw.startswith("\ufeff".encode())
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8").removeprefix("\ufeff"))))
    assert rows[0][:4] == ["id", "telegram_id", "username", "first_name"]
    (customer,) = rows[1:]
    assert customer[1] == str(CUSTOMER_ID) and customer[3] == "'=cmd"
    assert errors == []


def test_the_customers_table_fits_a_phone(shop: Shop, browser: Browser) -> None:
    """Inside Telegram on a 390 px phone the table scrolls sideways instead of widening the page."""
    _customer_with_trial(shop)
    context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2, locale="en-US")
    context.route("https://telegram.org/**", lambda route: route.abort())
    page = context.new_page()
    page.set_default_timeout(TIMEOUT)
    page.goto(f"{shop.base_url}/admin/login")
    page.get_by_test_id("demo-admin").click()
    page.goto(f"{shop.base_url}/admin/users")
    expect(page.locator("#list tbody tr").first).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390 + 1
    shot(page, "admin-04-customers-phone")
    context.close()
