"""The checkout pages over HTTP, inside Telegram (initData) and in the browser cabinet (session cookie + CSRF):
plans → live promo quote → payment method → the demo provider's pay page → the waiting page that turns into
the success page with the receipt, and every way a checkout can be refused without leaving anything behind."""

from __future__ import annotations

import re
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from app.kit.clock import utcnow
from app.models import (
    Payment,
    PaymentStatus,
    PromoKind,
    PromoRedemption,
    RedemptionStatus,
    Subscription,
    User,
)
from tests.checkout.conftest import BASE, Shop, ShopFactory
from tests.emulators.harness import serve as serve_emulator
from tests.emulators.telegram import TelegramBotApiEmulator
from tests.web import BOT_TOKEN, browser_session, drain_outbox, htmx, text_of, tma


def price_of(html: str) -> str:
    found = re.search(r'data-testid="amount">([^<]+)<', html)
    assert found, html
    return found.group(1).replace("\u00a0", " ").replace("\u202f", " ")


def fieldset(html: str) -> str:
    return html.split("<fieldset")[1].split("</fieldset>")[0]


def options_of(html: str) -> list[str]:
    return re.findall(r'name="option" value="([^"]+)"', html)


async def pay_on_demo_page(shop: Shop, payment: Payment, outcome: str = "succeed", **fields: str) -> None:
    """The customer's choice on the demo provider's page, then its notification delivered to the shop."""
    page = await shop.client.get(f"/pay/demo/{payment.external_id}")
    assert page.status_code == 200 and 'value="succeed"' in page.text
    done = await shop.client.post(f"/pay/demo/{payment.external_id}", data={"outcome": outcome, **fields})
    assert done.status_code == 303 and done.headers["location"] == f"{BASE}/payments/{payment.public_id}"
    await drain_outbox(shop.app)


async def start_in_telegram(shop: Shop, plan: str = "month", **data: str) -> Payment:
    response = await shop.client.post(f"/app/checkout/{plan}", headers=tma() | htmx(), data={"option": "demo", **data})
    assert response.status_code == 200, response.text
    payments = await shop.payments()
    assert len(payments) == 1
    assert response.headers["hx-push-url"] == f"/app/payments/{payments[0].public_id}"
    return payments[0]


# --- step 1: the plans ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("language", "first", "currencies"),
    [("ru", "199 ₽", ["RUB", "USD", "XTR"]), ("en", "$2.99", ["USD", "RUB", "XTR"])],
)
async def test_the_plan_list_shows_active_plans_in_the_customers_currency(
    shop: Shop, language: str, first: str, currencies: list[str]
) -> None:
    response = await shop.client.get("/app/checkout", headers=tma(language=language) | htmx())
    assert response.status_code == 200 and "<html" not in response.text
    page = text_of(response.text)
    assert "Retired" not in page and "Старый" not in page
    assert re.findall(r'href="/app/checkout/(\w+)"', response.text) == ["month", "year", "dollar"]
    month = text_of(response.text.split('data-testid="plan-month"')[1].split("</a>")[0])
    assert first in month and not {"₽", "$", "★"} - {first[0], first[-1]} & set(month)  # one currency, not five
    year = text_of(response.text.split('data-testid="plan-year"')[1].split("</a>")[0])
    assert "−25%" in year and "−25%" not in month
    assert ("365 days" if language == "en" else "365 дней") in year
    assert re.findall(r'data-testid="currency-(\w+)"', response.text) == currencies


@pytest.mark.parametrize(
    ("language", "title", "month", "year"),
    [("hi", "प्लान चुनें", "₽199", "365 दिन"), ("id", "Pilih paket", "₽199", "365 hari")],
)
async def test_the_plan_list_in_hindi_and_indonesian(
    shop: Shop, language: str, title: str, month: str, year: str
) -> None:
    # Their language's currency (INR, IDR) is not sold in this shop; they choose roubles.
    chosen = await shop.client.post("/app/checkout/currency", data={"currency": "RUB"}, headers=tma(language=language))
    assert chosen.status_code in (200, 303), chosen.text
    response = await shop.client.get("/app/checkout", headers=tma(language=language))
    assert response.status_code == 200 and f'<html lang="{language}"' in response.text
    page = text_of(response.text)
    assert title in page and year in page
    prices = [text_of(found) for found in re.findall(r'data-testid="price">([^<]+)<', response.text)]
    # CLDR: both write the symbol first; Indonesian groups with dots ("₽1.790"), Hindi with commas.
    assert prices[0] == month and prices[1] == ("₽1,790" if language == "hi" else "₽1.790")


async def test_the_plan_list_switches_currency_and_refuses_an_unknown_one(shop: Shop) -> None:
    stars = await shop.client.post(
        "/app/checkout/currency", data={"currency": "xtr"}, headers=tma(language="en") | htmx()
    )
    prices = [text_of(found) for found in re.findall(r'data-testid="price">([^<]+)<', stars.text)]
    assert prices == ["150 ★", "$26.99", "$5"]  # plans without a Stars price keep the customer's usual one
    assert 'data-testid="currency-XTR" aria-current="true"' in stars.text

    refused = await shop.client.post(
        "/app/checkout/currency", data={"currency": "EUR"}, headers=tma(language="en") | htmx()
    )
    assert refused.status_code == 422 and "Prices are shown in XTR, USD, RUB only." in text_of(refused.text)


async def test_a_plain_browser_load_gets_the_whole_page(shop: Shop) -> None:
    user = User(telegram_id=901, referral_code="b901", language="en")
    shop.db.add(user)
    await shop.db.commit()
    await browser_session(shop.client, shop.db, user, shop.settings)
    response = await shop.client.get("/app/checkout")
    assert response.status_code == 200 and "<html" in response.text and "Choose a plan" in response.text


# --- step 2: methods and the live promo quote -----------------------------------------------------------------


async def test_step_two_offers_only_the_providers_that_take_the_customers_currency(open_shop: ShopFactory) -> None:
    extra = {"yookassa_shop_id": "1", "yookassa_secret_key": "k", "stars_enabled": True}
    async with open_shop(**extra) as shop:
        month = await shop.client.get("/app/checkout/month", headers=tma(language="ru") | htmx())
        year = await shop.client.get("/app/checkout/year", headers=tma(language="ru") | htmx())
        dollar = await shop.client.get("/app/checkout/dollar", headers=tma(language="ru") | htmx())
    # Roubles for a Russian customer: YooKassa once per sub-method and the demo provider (any currency), not
    # Stars (tests/checkout/test_currency.py switches to Stars); a plan priced in dollars only is sold in dollars.
    assert options_of(month.text) == ["yookassa/bank_card", "yookassa/sbp", "demo"]
    assert options_of(year.text) == ["yookassa/bank_card", "yookassa/sbp", "demo"]
    assert options_of(dollar.text) == ["demo"]
    assert price_of(month.text) == "199 ₽" and price_of(dollar.text) == "5 $"
    # Telegram's MainButton pays only when there is a single method to pay with.
    assert "data-main-button" in fieldset(dollar.text) and "data-main-button" not in fieldset(month.text)


async def test_step_two_without_any_provider_says_so(open_shop: ShopFactory) -> None:
    async with open_shop(demo_payments_enabled=False) as shop:
        response = await shop.client.get("/app/checkout/month", headers=tma() | htmx())
    assert response.status_code == 200
    assert 'data-testid="no-methods"' in response.text and "<form" not in response.text
    assert "Payment is not available yet" in text_of(response.text)


async def test_an_unknown_or_retired_plan_is_not_found(shop: Shop) -> None:
    for code in ("nope", "old"):
        response = await shop.client.get(f"/app/checkout/{code}", headers=tma() | htmx())
        assert response.status_code == 404 and "plan_not_found" in response.text


async def test_a_valid_code_quotes_the_new_price_and_stores_nothing(shop: Shop) -> None:
    promo = await shop.promo("SAVE20", percent=20, max_uses=5)
    response = await shop.client.post(
        "/app/checkout/month/quote", headers=tma(language="ru") | htmx("promo_code"), data={"promo_code": " save20 "}
    )
    assert response.status_code == 200
    assert response.text.lstrip().startswith('<div id="price_block"') and "<form" not in response.text
    assert price_of(response.text) == "159,20 ₽"
    page = text_of(response.text)
    assert "199 ₽" in page and "Промокод SAVE20 применён" in page and "экономия 39,80 ₽" in page
    assert "за 30 дней" in page
    assert await shop.count(PromoRedemption) == 0 and await shop.count(Payment) == 0
    await shop.db.refresh(promo)
    assert promo.used_count == 0


async def test_an_extra_days_code_quotes_the_days(shop: Shop) -> None:
    await shop.promo("WEEK", PromoKind.DAYS, extra_days=7)
    response = await shop.client.post("/app/checkout/month/quote", headers=tma() | htmx(), data={"promo_code": "week"})
    page = text_of(response.text)
    assert price_of(response.text) == "$2.99" and "for 37 days" in page and "+7 days free" in page


async def test_the_quote_is_in_the_currency_the_form_carries(open_shop: ShopFactory) -> None:
    async with open_shop(yookassa_shop_id="1", yookassa_secret_key="k", stars_enabled=True) as shop:
        await shop.promo("HALF", percent=50)
        stars = await shop.client.post(
            "/app/checkout/month/quote",
            headers=tma(language="ru") | htmx(),
            data={"promo_code": "HALF", "currency": "XTR"},
        )
        rubles = await shop.client.post(
            "/app/checkout/month/quote", headers=tma(language="ru") | htmx(), data={"promo_code": "HALF"}
        )
    assert price_of(stars.text) == "75 ★" and price_of(rubles.text) == "99,50 ₽"


INVALID = {
    "not_found": ({}, "There is no such promo code"),
    "inactive": ({"is_active": False}, "no longer active"),
    "not_started": ({"valid_from": timedelta(days=1)}, "not valid yet"),
    "expired": ({"valid_until": timedelta(days=-1)}, "has expired"),
    "exhausted": ({"max_uses": 1, "used_count": 1}, "has been used up"),
    "not_for_plan": ({"plans": "year"}, "does not apply to this plan"),
    "no_currency": ({"kind": PromoKind.FIXED, "amounts": {"RUB": 5000}}, "does not apply to payments in this currency"),
    "covers_price": ({"percent": 100}, "cannot be used for this plan"),
}


@pytest.mark.parametrize("reason", sorted(INVALID))
async def test_each_invalid_code_gets_its_own_message(shop: Shop, reason: str) -> None:
    fields, message = INVALID[reason]
    fields = dict(fields)
    for key in ("valid_from", "valid_until"):
        if key in fields:
            fields[key] = utcnow() + fields[key]
    if fields.get("plans"):
        fields["plans"] = [shop.plans[fields["plans"]]]
    if reason != "not_found":
        await shop.promo("CODE1", **fields)
    response = await shop.client.post("/app/checkout/month/quote", headers=tma() | htmx(), data={"promo_code": "CODE1"})
    assert response.status_code == 200
    error = re.search(r'data-testid="promo-error">([^<]+)<', response.text)
    assert error and message in error.group(1)
    assert price_of(response.text) == "$2.99"  # the plain price stays
    assert await shop.count(Payment) == 0 and await shop.count(PromoRedemption) == 0


async def test_a_code_already_used_by_this_customer_is_refused(shop: Shop) -> None:
    await shop.promo("ONCE", percent=10)
    payment = await start_in_telegram(shop, promo_code="ONCE")
    await pay_on_demo_page(shop, payment)
    response = await shop.client.post("/app/checkout/year/quote", headers=tma() | htmx(), data={"promo_code": "once"})
    assert "You have already used this promo code." in text_of(response.text)


async def test_a_plain_form_quote_renders_the_whole_step_with_the_code_kept(shop: Shop) -> None:
    await shop.promo("SAVE20", percent=20)
    response = await shop.client.post("/app/checkout/month/quote", headers=tma(), data={"promo_code": "SAVE20"})
    assert response.status_code == 200 and "<html" in response.text
    assert 'value="SAVE20"' in response.text and price_of(response.text) == "$2.39"


# --- starting the payment ----------------------------------------------------------------------------------


async def test_paying_creates_one_pending_payment_at_the_servers_price(shop: Shop) -> None:
    promo = await shop.promo("SAVE20", percent=20)
    payment = await start_in_telegram(shop, promo_code="save20", amount="0.01", amount_minor="1")
    # The price comes from the plan, the customer's currency (USD in English) and the code; a client-sent
    # amount is never read.
    assert payment.status == PaymentStatus.PENDING and payment.provider == "demo"
    assert (payment.amount_minor, payment.currency, payment.days) == (239, "USD", 30)
    assert payment.promo_code_id == promo.id and payment.pay_url == f"{BASE}/pay/demo/{payment.external_id}"
    redemption = await shop.db.scalar(select(PromoRedemption))
    assert redemption is not None and redemption.status == RedemptionStatus.HELD
    assert redemption.payment_id == payment.id
    await shop.db.refresh(promo)
    assert promo.used_count == 1


async def test_telegram_gets_the_waiting_page_with_a_pay_button(shop: Shop) -> None:
    response = await shop.client.post("/app/checkout/month", headers=tma() | htmx(), data={"option": "demo"})
    payment = (await shop.payments())[0]
    assert 'id="payment_status"' in response.text and 'data-status="pending"' in response.text
    assert f'href="{payment.pay_url}" data-open-link' in response.text
    assert f'hx-get="/app/payments/{payment.public_id}/status?known=pending"' in response.text
    assert 'hx-trigger="every 2s, refresh"' in response.text


async def test_a_browser_goes_straight_to_the_providers_page(shop: Shop) -> None:
    user = User(telegram_id=902, referral_code="b902", language="ru")
    shop.db.add(user)
    await shop.db.commit()
    token = await browser_session(shop.client, shop.db, user, shop.settings)
    plain = await shop.client.post("/app/checkout/month", data={"option": "demo", "csrf_token": token})
    first = (await shop.payments())[-1]
    assert plain.status_code == 303 and plain.headers["location"] == first.pay_url
    assert first.currency == "RUB" and first.amount_minor == 19900

    with_htmx = await shop.client.post(
        "/app/checkout/month", headers=htmx() | {"x-csrf-token": token}, data={"option": "demo"}
    )
    second = (await shop.payments())[-1]
    assert second.id != first.id
    assert with_htmx.status_code == 200 and with_htmx.headers["hx-redirect"] == second.pay_url


async def test_a_post_without_the_csrf_token_is_refused_and_creates_nothing(shop: Shop) -> None:
    user = User(telegram_id=903, referral_code="b903", language="en")
    shop.db.add(user)
    await shop.db.commit()
    await browser_session(shop.client, shop.db, user, shop.settings)
    response = await shop.client.post("/app/checkout/month", data={"option": "demo"})
    assert response.status_code == 403 and "csrf_failed" in response.text
    forged = await shop.client.post("/app/checkout/month", data={"option": "demo", "csrf_token": "x" * 40})
    assert forged.status_code == 403
    assert await shop.count(Payment) == 0


@pytest.mark.parametrize(
    ("plan", "data", "status", "code"),
    [
        ("nope", {"option": "demo"}, 404, "plan_not_found"),
        ("old", {"option": "demo"}, 404, "plan_not_found"),
        ("month", {"option": "yookassa"}, 404, None),
        ("month", {"option": "demo/sbp"}, 422, None),
        ("month", {}, 422, None),
    ],
)
async def test_an_unknown_plan_or_method_creates_nothing(
    shop: Shop, plan: str, data: dict[str, str], status: int, code: str | None
) -> None:
    await shop.promo("SAVE20", percent=20)
    response = await shop.client.post(
        f"/app/checkout/{plan}", headers=tma() | htmx(), data={"promo_code": "SAVE20", **data}
    )
    assert response.status_code == status
    if code:
        assert code in response.text
    else:  # the step is shown again with the message, and the typed code is kept
        assert 'data-testid="checkout-error"' in response.text and 'value="SAVE20"' in response.text
        assert "not available" in response.text or "Choose a payment method" in response.text
    assert await shop.count(Payment) == 0 and await shop.count(PromoRedemption) == 0


async def test_a_code_refused_at_payment_time_shows_the_step_again_and_creates_nothing(shop: Shop) -> None:
    await shop.promo("LAST", percent=10, max_uses=1, used_count=1)
    response = await shop.client.post(
        "/app/checkout/month", headers=tma() | htmx(), data={"option": "demo", "promo_code": "LAST"}
    )
    assert response.status_code == 422
    assert 'value="LAST"' in response.text and "has been used up" in text_of(response.text)
    assert await shop.count(Payment) == 0


async def test_an_unreachable_provider_is_a_503_with_the_step_shown_again(open_shop: ShopFactory) -> None:
    async with open_shop(stars_enabled=True, telegram_api_url="http://127.0.0.1:9") as shop:
        promo = await shop.promo("SAVE20", percent=20)
        response = await shop.client.post(
            "/app/checkout/month", headers=tma() | htmx(), data={"option": "stars", "promo_code": "SAVE20"}
        )
        assert response.status_code == 503
        assert "not answering right now" in text_of(response.text) and 'value="SAVE20"' in response.text
        [payment] = await shop.payments()
        # The service records the attempt as failed and gives the promo use back.
        assert payment.status == PaymentStatus.FAILED
        await shop.db.refresh(promo)
        assert promo.used_count == 0


async def test_stars_get_the_waiting_page_with_a_telegram_invoice(open_shop: ShopFactory) -> None:
    emulator = TelegramBotApiEmulator(token=BOT_TOKEN)
    with serve_emulator(emulator.app) as url:
        async with open_shop(**emulator.settings(url)) as shop:
            response = await shop.client.post("/app/checkout/month", headers=tma() | htmx(), data={"option": "stars"})
            [payment] = await shop.payments()
    assert response.status_code == 200, response.text
    assert (payment.currency, payment.amount_minor) == ("XTR", 150)
    link = payment.details["invoice_link"]
    assert link.startswith("https://t.me/$") and f'href="{link}" data-open-invoice' in response.text
    assert "data-open-link" not in response.text.split('id="payment_status"')[1]


# --- the waiting page, success, failure and the receipt ------------------------------------------------------


async def test_the_waiting_page_polls_until_the_payment_succeeds(shop: Shop) -> None:
    await shop.promo("SAVE20", percent=20)
    payment = await start_in_telegram(shop, promo_code="SAVE20")
    status_url = f"/app/payments/{payment.public_id}/status"

    still = await shop.client.get(status_url + "?known=pending", headers=tma() | htmx("payment_status"))
    assert still.status_code == 204 and still.text == ""
    block = await shop.client.get(status_url, headers=tma() | htmx("payment_status"))
    assert block.text.lstrip().startswith('<section id="payment_status"') and 'data-status="pending"' in block.text
    full = await shop.client.get(f"/app/payments/{payment.public_id}", headers=tma())
    assert "<html" in full.text and block.text.strip() in full.text  # the same markup either way

    await pay_on_demo_page(shop, payment, save_card="true")
    done = await shop.client.get(status_url + "?known=pending", headers=tma() | htmx("payment_status"))
    assert done.status_code == 200 and done.headers["hx-trigger"] == "payment-succeeded"
    assert 'data-status="succeeded"' in done.text and "hx-trigger" not in done.text  # polling stops
    subscription = await shop.db.scalar(select(Subscription))
    assert subscription is not None
    ends = subscription.ends_at.astimezone(shop.settings.zone)
    page = text_of(done.text)
    assert f"Your VPN is active until {ends:%b} {ends.day}, {ends.year}." in page
    assert "Added: 30 days." in page and "Total paid $2.39" in page and "Demo payment · demo card" in page
    assert f'href="/app/payments/{payment.public_id}/receipt"' in done.text and 'href="/app/connect"' in done.text
    redemption = await shop.db.scalar(select(PromoRedemption))
    assert redemption is not None and redemption.status == RedemptionStatus.REDEEMED

    receipt = await shop.client.get(f"/app/payments/{payment.public_id}/receipt", headers=tma())
    assert receipt.status_code == 200
    text = text_of(receipt.text)
    number = payment.public_id.split("-")[0].upper()
    assert f"Receipt No. {number}" in text and "Price $2.99" in text and "Discount −$0.60" in text
    assert "Total paid $2.39" in text and "Plan 1 month" in text


async def test_the_success_page_uses_the_customers_time_zone(shop: Shop) -> None:
    payment = await start_in_telegram(shop)
    user = await shop.user()
    user.timezone = "Pacific/Kiritimati"  # UTC+14: the date differs from Moscow's for part of every day
    await shop.db.commit()
    await pay_on_demo_page(shop, payment)
    done = await shop.client.get(f"/app/payments/{payment.public_id}/status", headers=tma() | htmx("payment_status"))
    subscription = await shop.db.scalar(select(Subscription))
    assert subscription is not None
    ends = subscription.ends_at.astimezone(ZoneInfo("Pacific/Kiritimati"))
    assert f"until {ends:%b} {ends.day}, {ends.year}." in text_of(done.text)


async def test_a_declined_payment_offers_to_try_again_and_releases_the_code(shop: Shop) -> None:
    promo = await shop.promo("SAVE20", percent=20)
    payment = await start_in_telegram(shop, promo_code="SAVE20")
    await pay_on_demo_page(shop, payment, outcome="fail")
    block = await shop.client.get(f"/app/payments/{payment.public_id}/status", headers=tma() | htmx("payment_status"))
    assert 'data-status="failed"' in block.text and "hx-trigger" not in block.text
    assert "The payment did not go through" in text_of(block.text)
    assert 'href="/app/checkout/month"' in block.text and "Try again" in block.text
    await shop.db.refresh(promo)
    assert promo.used_count == 0 and await shop.count(Subscription) == 0
    receipt = await shop.client.get(f"/app/payments/{payment.public_id}/receipt", headers=tma())
    assert receipt.status_code == 404


async def test_a_cancelled_payment_says_so(shop: Shop) -> None:
    payment = await start_in_telegram(shop)
    await pay_on_demo_page(shop, payment, outcome="cancel")
    block = await shop.client.get(f"/app/payments/{payment.public_id}", headers=tma() | htmx())
    assert 'data-status="cancelled"' in block.text and "The payment was cancelled" in text_of(block.text)


async def test_a_mismatched_amount_points_to_support(shop: Shop) -> None:
    payment = await start_in_telegram(shop)
    await shop.db.execute(
        Payment.__table__.update()
        .where(Payment.id == payment.id)
        .values(status=PaymentStatus.MISMATCH, failure_reason="paid 1.00 USD, expected 2.99 USD")
    )
    await shop.db.commit()
    block = await shop.client.get(f"/app/payments/{payment.public_id}/status", headers=tma() | htmx("payment_status"))
    assert "The amount received differs from the order" in text_of(block.text)
    assert "Support has been alerted" in text_of(block.text) and 'href="https://t.me/support"' in block.text


async def test_another_customers_payment_and_receipt_are_not_found(shop: Shop) -> None:
    payment = await start_in_telegram(shop)
    await pay_on_demo_page(shop, payment)
    stranger = tma(user_id=778)
    for path in ("", "/status", "/receipt"):
        response = await shop.client.get(f"/app/payments/{payment.public_id}{path}", headers=stranger | htmx())
        assert response.status_code == 404, path
    own = await shop.client.get(f"/app/payments/{payment.public_id}/receipt", headers=tma() | htmx())
    assert own.status_code == 200


async def test_the_demo_pay_page_shows_a_closed_invoice(shop: Shop) -> None:
    payment = await start_in_telegram(shop)
    await pay_on_demo_page(shop, payment)
    page = await shop.client.get(f"/pay/demo/{payment.external_id}", headers={"accept-language": "en-GB,en"})
    assert page.status_code == 200 and "DemoPay" in page.text and "not a real payment" in page.text
    assert "This invoice has been paid" in text_of(page.text) and 'name="outcome"' not in page.text
    assert f'href="{BASE}/payments/{payment.public_id}"' in page.text


async def test_paying_twice_credits_once(shop: Shop) -> None:
    payment = await start_in_telegram(shop)
    await pay_on_demo_page(shop, payment, outcome="twice")
    subscription = await shop.db.scalar(select(Subscription))
    assert subscription is not None
    assert round((subscription.ends_at - utcnow()) / timedelta(days=1)) == 30
    assert (await shop.payments())[0].status == PaymentStatus.SUCCEEDED


async def test_a_qris_payment_shows_its_qr_code_on_the_waiting_page(shop: Shop) -> None:
    await shop.client.get("/app/checkout", headers=tma())  # the customer's first visit creates them
    user = await shop.user()
    payment = Payment(
        public_id="5f0c3a52-0000-4000-8000-000000000001",
        user_id=user.id,
        plan_id=shop.plans["dollar"].id,
        provider="xendit",
        method="qris",
        amount_minor=7500000,
        currency="IDR",
        status=PaymentStatus.PENDING,
        idempotency_key="qris-test",
        days=7,
        details={"qr_string": "00020101021226660014ID.CO.QRIS.WWW", "kind": "qris", "invoice_link": None},
    )
    shop.db.add(payment)
    await shop.db.commit()
    response = await shop.client.get(f"/app/payments/{payment.public_id}", headers=tma() | htmx())
    assert response.status_code == 200
    qr = response.text.split('data-testid="payment-qr"')[1].split("</div>")[0]
    assert "<svg" in qr and 'aria-label="QR code for payment"' in qr
    assert "Rp 75,000" in text_of(response.text) and 'data-testid="pay-link"' not in response.text
