"""Paying for a plan in real Chromium against the real `vpnshop demo` process: in a plain browser as the demo
customer (home → plans → a plan → DEMO20 → the demo provider's page → Pay → the waiting page turns into the
success page → the receipt), and inside a simulated Telegram client, where the provider's page opens with
openLink and the waiting page updates itself when the payment lands. Screenshots: test-output/screenshots/."""

from __future__ import annotations

import json
import re
import time
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
from babel.dates import format_date as cldr_date
from playwright.sync_api import Browser, Page, expect

from app.auth.telegram import sign_init_data
from tests.e2e.conftest import BOT_TOKEN, Shop, browser_page, shot, telegram_page

pytestmark = pytest.mark.e2e

TIMEOUT = 15_000
MOSCOW = ZoneInfo("Europe/Moscow")  # the demo's TIMEZONE (the default)


def init_data(telegram_id: int, language: str = "en") -> str:
    user = {"id": telegram_id, "first_name": "Lev", "username": f"lev{telegram_id}", "language_code": language}
    fields = {"auth_date": str(int(time.time())), "user": json.dumps(user), "chat_type": "private"}
    return sign_init_data(fields, BOT_TOKEN)


def main_button(page: Page, text: str) -> None:
    """Telegram's MainButton follows the page once htmx has settled it (a moment after the content shows)."""
    page.wait_for_function("text => Telegram.WebApp.MainButton.text === text", arg=text)
    assert page.evaluate("Telegram.WebApp.MainButton.isVisible") is True


def expected_end_dates(days: int, language: str) -> set[str]:
    """The end date of a first purchase made about now (either side of a midnight passing mid-test), as CLDR's
    medium date writes it in the language."""
    now = datetime.now(MOSCOW)
    return {cldr_date(now + timedelta(days=days, minutes=shift), "medium", locale=language) for shift in (-2, 0, 2)}


def test_browser_customer_pays_with_a_promo_code(shop: Shop, browser: Browser) -> None:
    page, errors = browser_page(browser, locale="ru-RU")
    page.set_default_timeout(TIMEOUT)
    page.goto(shop.base_url + "/")
    page.get_by_test_id("demo-customer").click()
    expect(page).to_have_url(re.compile(r"/app$"))
    shot(page, "20-checkout-home")

    page.locator('#content a[href="/app/checkout"]').first.click()
    expect(page).to_have_url(re.compile(r"/app/checkout$"))
    expect(page.get_by_role("heading", name="Выберите тариф")).to_be_visible()
    expect(page.get_by_test_id("plan-month")).to_contain_text(re.compile(r"199\s₽"))
    shot(page, "21-checkout-plans")

    page.get_by_test_id("plan-month").click()
    expect(page).to_have_url(re.compile(r"/app/checkout/month$"))
    amount = page.get_by_test_id("amount")
    expect(amount).to_have_text(re.compile(r"^199\s₽$"))
    shot(page, "22-checkout-plan")

    page.get_by_label("Промокод").press_sequentially("demo20", delay=60)
    expect(amount).to_have_text(re.compile(r"^159,20\s₽$"))  # the price follows the code as it is typed
    expect(page.get_by_test_id("promo-ok")).to_contain_text("DEMO20")
    shot(page, "23-checkout-promo-applied")

    page.get_by_test_id("pay-demo").click()
    expect(page).to_have_url(re.compile(r"/pay/demo/demo_\w+$"))
    expect(page.get_by_text("DemoPay")).to_be_visible()
    expect(page.get_by_test_id("demo-amount")).to_have_text("159.20 RUB")  # the server's price, promo included
    shot(page, "24-demo-provider-pay-page")

    page.get_by_test_id("demo-pay").click()
    expect(page).to_have_url(re.compile(r"/app/payments/[0-9a-f-]{36}$"))
    shot(page, "25-checkout-waiting")
    status = page.get_by_test_id("payment-status")
    expect(status).to_have_attribute("data-status", "succeeded")  # the page polled until the webhook landed
    ends = page.get_by_test_id("ends-at").inner_text()
    assert any(date in ends for date in expected_end_dates(30, "ru")), ends
    expect(status).to_contain_text("Оплата получена")
    expect(page.get_by_test_id("paid-total")).to_have_text(re.compile(r"159,20\s₽"))
    shot(page, "26-checkout-success")

    page.get_by_role("link", name="Чек", exact=True).click()
    expect(page).to_have_url(re.compile(r"/receipt$"))
    receipt = page.get_by_test_id("receipt")
    expect(receipt).to_contain_text("Чек №")
    expect(receipt).to_contain_text(re.compile(r"Скидка\s*−39,80\s₽"))
    expect(page.get_by_role("button", name="Распечатать")).to_be_visible()  # shown where printing exists
    shot(page, "27-checkout-receipt")

    page.get_by_role("navigation").get_by_role("link", name="Главная").click()
    expect(page.get_by_test_id("days-left")).to_have_text("30 дней")
    assert errors == []


def test_mini_app_pays_through_the_providers_page_opened_outside(shop: Shop, browser: Browser) -> None:
    page, errors = telegram_page(browser, init_data(5550101))
    page.set_default_timeout(TIMEOUT)
    page.goto(f"{shop.base_url}/app/checkout")
    expect(page.get_by_role("heading", name="Choose a plan")).to_be_visible()
    expect(page.get_by_test_id("plan-month")).to_contain_text("$2.99")
    shot(page, "28-miniapp-checkout-plans")

    page.get_by_test_id("plan-month").click()
    expect(page.get_by_test_id("amount")).to_have_text("$2.99")
    assert page.evaluate("Telegram.WebApp.BackButton.isVisible") is True
    main_button(page, "Pay $2.99")  # the amount, not the method
    code = page.get_by_label("Promo code")
    code.press_sequentially("welcome7", delay=60)
    code.press("Enter")  # applies the code; it must not pay
    expect(page.get_by_test_id("promo-ok")).to_contain_text("+7 days free")
    expect(page.get_by_test_id("price-block")).to_contain_text("for 37 days")
    expect(page).to_have_url(re.compile(r"/app/checkout/month$"))
    shot(page, "29-miniapp-checkout-plan")

    page.evaluate("Telegram.WebApp.MainButton.click()")  # the native button pays with the only method
    expect(page).to_have_url(re.compile(r"/app/payments/[0-9a-f-]{36}$"))
    status = page.get_by_test_id("payment-status")
    expect(status).to_have_attribute("data-status", "pending")
    pay = page.get_by_test_id("pay-link")
    expect(pay).to_have_text("Pay $2.99")
    main_button(page, "Pay $2.99")
    shot(page, "30-miniapp-waiting")

    pay.click()  # inside Telegram the provider's page opens in the system browser; the Mini App stays
    href = pay.get_attribute("href") or ""
    opened = [value for call, value in page.evaluate("window.__tg") if call == "openLink"]
    assert opened == [href] and re.search(r"/pay/demo/demo_\w+$", href)
    expect(page).to_have_url(re.compile(r"/app/payments/"))

    # The customer pays in that other browser; the Mini App's waiting page notices by itself.
    successes = [value for call, value in page.evaluate("window.__tg") if call == "haptic"].count("success")
    paid = httpx.post(href, data={"outcome": "succeed"}, follow_redirects=False, timeout=10)
    assert paid.status_code == 303
    expect(status).to_have_attribute("data-status", "succeeded")
    ends = page.get_by_test_id("ends-at").inner_text()
    assert any(date in ends for date in expected_end_dates(37, "en")), ends
    expect(status).to_contain_text("Added: 37 days.")
    haptics = [value for call, value in page.evaluate("window.__tg") if call == "haptic"]
    assert haptics.count("success") == successes + 1  # the status block's HX-Trigger, once
    main_button(page, "Get config")
    shot(page, "31-miniapp-success")
    assert errors == []

    # The provider sent that other browser back to a public page: the outcome and the way back to Telegram.
    returned, returned_errors = browser_page(browser)
    returned.set_default_timeout(TIMEOUT)
    returned.goto(paid.headers["location"])
    result = returned.get_by_test_id("payment-result")
    expect(result).to_have_attribute("data-status", "succeeded")
    expect(result).to_contain_text("Payment received")
    expect(returned.get_by_role("link", name="Back to Telegram")).to_have_attribute(
        "href", "https://t.me/vpnshop_demo_bot"
    )
    expect(result).not_to_contain_text("2.99")  # nothing private: the address is all it takes to see it
    shot(returned, "32-browser-payment-result")
    assert returned_errors == []
    returned.context.close()


def test_mini_app_customer_switches_currency_and_pays_in_it(shop: Shop, browser: Browser) -> None:
    """Issue 20 item 8: the currency chosen on the plan list reaches the plan page, Telegram's MainButton, the
    provider's page and the waiting page, and the next visit opens in it."""
    page, errors = telegram_page(browser, init_data(5550102), width=360)
    page.set_default_timeout(TIMEOUT)
    page.goto(f"{shop.base_url}/app/checkout")
    expect(page.get_by_test_id("currency-USD")).to_have_attribute("aria-current", "true")
    page.get_by_test_id("currency-INR").click()
    expect(page.get_by_test_id("currency-INR")).to_have_attribute("aria-current", "true")
    expect(page.get_by_test_id("plan-month")).to_contain_text("₹249")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")  # the switch wraps at 360 px
    shot(page, "33-miniapp-checkout-currency-inr")

    page.get_by_test_id("plan-month").click()
    expect(page.get_by_test_id("amount")).to_have_text("₹249")
    expect(page.get_by_test_id("plan-currency")).to_contain_text("INR")
    main_button(page, "Pay ₹249")
    shot(page, "34-miniapp-checkout-plan-inr")

    page.evaluate("Telegram.WebApp.MainButton.click()")
    expect(page).to_have_url(re.compile(r"/app/payments/[0-9a-f-]{36}$"))
    pay = page.get_by_test_id("pay-link")
    expect(pay).to_have_text("Pay ₹249")
    href = pay.get_attribute("href") or ""
    provider_page = httpx.get(href, timeout=10)
    assert 'data-testid="demo-amount">249.00 INR<' in provider_page.text  # what the server asks the provider for

    # The next visit opens in rupees.
    page.goto(f"{shop.base_url}/app/checkout")
    expect(page.get_by_test_id("currency-INR")).to_have_attribute("aria-current", "true")
    assert errors == []
