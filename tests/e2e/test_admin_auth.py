"""Staff sign-in in real Chromium against the real demo process: the demo owner links a Telegram account on the
staff page; inside a simulated Telegram client that account's signed initData opens the admin (phone layout,
sidebar included) while a Telegram user who is not staff is refused; password + TOTP enrolment and sign-in;
lockout after repeated failures; the API docs page under the site's CSP. Screenshots in test-output/."""

from __future__ import annotations

import json
import re
import time

import pyotp
import pytest
from playwright.sync_api import Browser, Page, expect

from app.admin.auth.service import MAX_FAILURES
from app.auth.telegram import sign_init_data
from app.demo.seed import DEMO_STAFF_PASSWORD, DEMO_STAFF_USERNAME
from tests.e2e.conftest import BOT_TOKEN, Shop, browser_page, shot, telegram_page

pytestmark = pytest.mark.e2e

TIMEOUT = 15_000
STAFF_TELEGRAM_ID = 5570001
STRANGER_TELEGRAM_ID = 5570099


def init_data(telegram_id: int) -> str:
    user = {"id": telegram_id, "first_name": "Olga", "username": f"olga{telegram_id}", "language_code": "en"}
    fields = {"auth_date": str(int(time.time())), "user": json.dumps(user), "chat_type": "private"}
    return sign_init_data(fields, BOT_TOKEN)


def demo_admin(browser: Browser, shop: Shop) -> tuple[Page, list[str]]:
    page, errors = browser_page(browser)
    page.set_default_timeout(TIMEOUT)
    page.goto(f"{shop.base_url}/")
    page.get_by_test_id("demo-admin").click()
    expect(page).to_have_url(re.compile(r"/admin/?$"))
    return page, errors


def test_a_linked_staff_member_is_signed_in_by_init_data_inside_telegram(shop: Shop, browser: Browser) -> None:
    page, errors = demo_admin(browser, shop)
    page.get_by_role("navigation").get_by_role("link", name="Staff").click()
    expect(page).to_have_url(re.compile(r"/admin/staff$"))
    page.locator("#content").get_by_role("link", name=DEMO_STAFF_USERNAME).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(DEMO_STAFF_USERNAME)
    page.get_by_label("Telegram id").fill(str(STAFF_TELEGRAM_ID))
    page.get_by_label("Telegram id").press("Enter")
    expect(page.locator(".toast-success")).to_contain_text("Telegram link saved")
    # The answer replaced the content of the page, not the page's frame.
    expect(page.locator(".admin-layout > main#content h1")).to_contain_text(DEMO_STAFF_USERNAME)
    shot(page, "admin-auth-01-staff-linked")
    assert errors == []

    phone, phone_errors = telegram_page(browser, init_data(STAFF_TELEGRAM_ID))
    phone.set_default_timeout(TIMEOUT)
    phone.goto(f"{shop.base_url}/admin/account")
    expect(phone.get_by_role("heading", name="My account")).to_be_visible()
    expect(phone.locator(".admin-nav")).to_contain_text("Staff")  # the layout came with the page
    expect(phone.locator(".admin-me")).to_contain_text(DEMO_STAFF_USERNAME)
    width = phone.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page scrolls sideways on a phone ({width} px)"
    shot(phone, "admin-auth-02-telegram-signed-in")
    phone.get_by_role("navigation").get_by_role("link", name="Audit log").click()
    expect(phone).to_have_url(re.compile(r"/admin/audit"))
    expect(phone.locator("#list")).to_contain_text("staff.telegram_linked")
    shot(phone, "admin-auth-03-telegram-audit")
    assert phone_errors == []

    stranger, _ = telegram_page(browser, init_data(STRANGER_TELEGRAM_ID))
    stranger.set_default_timeout(TIMEOUT)
    stranger.goto(f"{shop.base_url}/admin")
    expect(stranger.get_by_text("not linked to an active staff account")).to_be_visible()
    expect(stranger.locator(".admin-nav")).to_have_count(0)
    shot(stranger, "admin-auth-04-telegram-not-staff")


def test_password_and_totp_then_lockout(shop: Shop, browser: Browser) -> None:
    page, errors = demo_admin(browser, shop)
    page.goto(f"{shop.base_url}/admin/account")
    page.get_by_role("button", name="Turn on two-factor sign-in").click()
    secret = page.get_by_test_id("totp-secret").inner_text().strip()
    shot(page, "admin-auth-05-totp-enrol")
    page.get_by_label("Code from the authenticator app").fill("000000" if pyotp.TOTP(secret).now() != "000000" else "1")
    page.get_by_role("button", name="Confirm").click()
    expect(page.locator(".field-error")).to_contain_text("does not match")
    page.get_by_label("Code from the authenticator app").fill(pyotp.TOTP(secret).now())
    page.get_by_role("button", name="Confirm").click()
    expect(page.locator(".toast-success")).to_contain_text("Two-factor sign-in is on")

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/admin/login$"))
    page.get_by_label("Username").fill(DEMO_STAFF_USERNAME)
    page.get_by_label("Password").fill(DEMO_STAFF_PASSWORD)
    page.get_by_test_id("admin-sign-in").click()
    expect(page.locator(".field-error")).to_contain_text("6-digit code")
    page.get_by_label("Password").fill(DEMO_STAFF_PASSWORD)
    # The enrolment used the current code, and a code is never accepted twice: the next step's code is (a
    # phone 30 s ahead is within the accepted window).
    page.get_by_label("Code from the authenticator app").fill(pyotp.TOTP(secret).at(time.time() + 30))
    page.get_by_test_id("admin-sign-in").click()
    expect(page).to_have_url(re.compile(r"/admin/?$"))
    shot(page, "admin-auth-06-signed-in-with-totp")

    page.get_by_role("button", name="Sign out").click()
    for _ in range(MAX_FAILURES):
        page.get_by_label("Username").fill(DEMO_STAFF_USERNAME)
        page.get_by_label("Password").fill("not-the-password")
        page.get_by_test_id("admin-sign-in").click()
        expect(page.locator(".form-error")).to_be_visible()
    page.get_by_label("Username").fill(DEMO_STAFF_USERNAME)
    page.get_by_label("Password").fill(DEMO_STAFF_PASSWORD)
    page.get_by_label("Code from the authenticator app").fill(pyotp.TOTP(secret).now())
    page.get_by_test_id("admin-sign-in").click()
    expect(page.locator(".form-error")).to_contain_text("locked")
    shot(page, "admin-auth-07-locked")
    assert errors == []


def test_the_api_docs_page_works_under_the_csp(shop: Shop, browser: Browser) -> None:
    page, errors = browser_page(browser)
    page.set_default_timeout(TIMEOUT)
    page.goto(f"{shop.base_url}/api/docs")
    # Swagger UI builds the page from the schema in the browser: slow on a busy machine.
    expect(page.get_by_role("button", name=re.compile("Authorize"))).to_be_visible(timeout=60_000)
    expect(page.get_by_text("/api/auth/login").first).to_be_visible()
    shot(page, "admin-auth-08-api-docs")
    assert errors == []
