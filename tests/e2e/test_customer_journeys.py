"""The customer's journeys in real Chromium against the real demo process: inside a simulated Telegram client
(really signed initData) from the trial to every page, and in a plain browser signing in by login link and by
OpenID Connect. Each page is saved as a screenshot under test-output/screenshots/."""

from __future__ import annotations

import json
import re
import time

import pytest
from playwright.sync_api import Browser, Page, expect

from app.auth.telegram import sign_init_data
from tests.e2e.conftest import BOT_TOKEN, Shop, browser_page, shot, telegram_page

pytestmark = pytest.mark.e2e

TIMEOUT = 15_000


def init_data(telegram_id: int, language: str = "en") -> str:
    user = {"id": telegram_id, "first_name": "Mia", "username": f"mia{telegram_id}", "language_code": language}
    fields = {"auth_date": str(int(time.time())), "user": json.dumps(user), "chat_type": "private"}
    return sign_init_data(fields, BOT_TOKEN)


def tab(page: Page, name: str) -> None:
    """Switch pages with the tab bar, and wait until htmx has settled the new page (it pushes the address
    last): a test typing faster than that would race htmx, which a person never does."""
    link = page.get_by_role("navigation").get_by_role("link", name=name)
    path = link.get_attribute("href") or ""
    link.click()
    expect(page).to_have_url(re.compile(re.escape(path) + "$"))


def tg_calls(page: Page, name: str) -> list:
    return [value for call, value in page.evaluate("window.__tg") if call == name]


def test_mini_app_from_trial_to_every_page(shop: Shop, browser: Browser) -> None:
    page, errors = telegram_page(browser, init_data(5550001))
    page.set_default_timeout(TIMEOUT)
    page.goto(f"{shop.base_url}/app")
    expect(page.get_by_role("heading", name="Hello, Mia!")).to_be_visible()
    # Telegram's script loads alongside the page (nothing waits for it); its controls follow once it is there.
    page.wait_for_function("() => Telegram.WebApp.MainButton.text === 'Start free trial'")
    assert tg_calls(page, "ready") == [None] and "BackButton.hide" in [c for c, _ in page.evaluate("window.__tg")]
    expect(page.get_by_role("button", name="Start free trial")).to_be_visible()
    shot(page, "01-miniapp-home-trial-offer")

    page.get_by_role("button", name="Start free trial").click()
    expect(page.get_by_text("Setting up your VPN")).to_be_visible()
    shot(page, "02-miniapp-trial-provisioning")
    expect(page.get_by_role("heading", name="Free trial")).to_be_visible()
    expect(page.get_by_role("link", name="Connect a device").first).to_be_visible()  # the page updated itself
    expect(page.get_by_test_id("days-left")).to_have_text("7 days")
    assert "success" in tg_calls(page, "haptic")
    shot(page, "03-miniapp-home-trial-active")

    tab(page, "Connect")
    expect(page).to_have_url(re.compile(r"/app/connect$"))
    # This phone's one-tap import comes first; the link and QR for another device are a tap away.
    expect(page.get_by_test_id("one-tap-import")).to_be_visible()
    expect(page.get_by_test_id("qr")).to_be_hidden()
    page.get_by_test_id("link-and-qr").locator("summary").click()
    link = page.get_by_test_id("sub-link").inner_text()
    assert link.startswith(f"{shop.base_url}/sub/")
    expect(page.get_by_test_id("qr").locator("svg")).to_be_visible()
    expect(page.locator("#devices")).to_contain_text("My devices")
    assert page.evaluate("Telegram.WebApp.BackButton.isVisible") is True
    shot(page, "04-miniapp-config-qr")

    page.get_by_test_id("reissue").click()
    expect(page.get_by_text("here is your new link")).to_be_visible()
    page.get_by_test_id("link-and-qr").locator("summary").click()
    new_link = page.get_by_test_id("sub-link").inner_text()
    assert new_link != link and tg_calls(page, "showConfirm")
    shot(page, "05-miniapp-config-reissued")

    tab(page, "Friends")
    expect(page).to_have_url(re.compile(r"/app/referrals"))
    expect(page.locator("#content")).to_contain_text("ref_")
    shot(page, "06-miniapp-referrals")

    tab(page, "Help")
    search = page.get_by_role("searchbox")
    search.press_sequentially("link", delay=60)  # typed, as a person does
    results = page.locator("#faq_results")
    expect(results).to_contain_text("How do I add the link to my app?")
    expect(results).not_to_contain_text("How do I pay?")  # narrowed as the customer types
    shot(page, "07-miniapp-help-search")
    page.get_by_role("button", name=re.compile("diagnostics", re.I)).click()
    expect(page.locator("#diagnostics")).to_contain_text(re.compile("subscription", re.I))
    shot(page, "08-miniapp-diagnostics")

    tab(page, "Settings")
    page.get_by_role("button", name="Русский").click()
    expect(page.get_by_role("heading", name="Настройки")).to_be_visible()
    expect(page.get_by_role("navigation").get_by_role("link", name="Главная")).to_be_visible()
    shot(page, "09-miniapp-settings-russian")
    page.get_by_role("navigation").get_by_role("link", name="Главная").click()
    expect(page.get_by_role("heading", name="Привет, Mia!")).to_be_visible()
    assert page.evaluate("Telegram.WebApp.BackButton.isVisible") is False
    assert errors == []


def sign_in_link_from_mini_app(shop: Shop, browser: Browser, telegram_id: int) -> str:
    page, errors = telegram_page(browser, init_data(telegram_id))
    page.set_default_timeout(TIMEOUT)
    page.goto(f"{shop.base_url}/app/settings")
    page.get_by_role("button", name="Open in browser").click()
    login = page.get_by_test_id("login-link")
    expect(login).to_be_visible()
    expect(page.get_by_test_id("login-code")).to_have_text(re.compile(r"^[A-Z0-9]{4}-[A-Z0-9]{4}$"))
    shot(page, "10-miniapp-browser-login-issued")
    login.click()  # inside Telegram this goes to the system browser
    href = login.get_attribute("href") or ""
    assert href in tg_calls(page, "openLink")
    assert errors == []
    page.context.close()
    return href


def test_browser_signs_in_by_login_link_and_then_by_oidc(shop: Shop, browser: Browser) -> None:
    link = sign_in_link_from_mini_app(shop, browser, 5550002)

    page, errors = browser_page(browser)
    page.set_default_timeout(TIMEOUT)
    page.goto(f"{shop.base_url}/app")
    expect(page).to_have_url(re.compile(r"/login\?next=/app"))  # no Telegram, no session: sign in first
    shot(page, "11-browser-login-page")
    page.goto(link)
    expect(page.get_by_role("heading", name="Hello, Mia!")).to_be_visible()
    shot(page, "12-browser-home")

    page.get_by_role("navigation").get_by_role("link", name="Settings").click()
    page.get_by_role("link", name="Link Google").click()
    expect(page.get_by_role("heading", name="Settings")).to_be_visible()
    expect(page.locator("#content")).to_contain_text("olga@example.com")
    shot(page, "13-browser-settings-linked")
    page.context.close()

    again, errors_again = browser_page(browser)
    again.set_default_timeout(TIMEOUT)
    again.goto(f"{shop.base_url}/app")
    again.get_by_role("link", name="Sign in with Google").click()
    expect(again.get_by_role("heading", name="Hello, Mia!")).to_be_visible()
    shot(again, "14-browser-home-after-oidc")
    again.goto(link)  # the one-time link has been used
    expect(again.get_by_test_id("login-error")).to_be_visible()
    assert errors == [] and errors_again == []


def test_demo_landing_signs_in_the_demo_customer_with_one_click(shop: Shop, browser: Browser) -> None:
    page, errors = browser_page(browser, locale="ru-RU")
    page.set_default_timeout(TIMEOUT)
    page.goto(shop.base_url + "/")
    shot(page, "15-demo-landing")
    page.get_by_test_id("demo-customer").click()
    expect(page).to_have_url(re.compile(r"/app$"))
    expect(page.locator("#content h1")).to_contain_text("Привет")
    shot(page, "16-demo-customer-home")
    page.goto(shop.base_url + "/app/usage")
    expect(page.locator("#content h1")).to_have_text("Статистика")
    shot(page, "17-demo-usage")
    assert errors == []
