"""The customer's currency (issue 20 item 8, issue 19 item 4): chosen on the plan list, remembered on their
account, and carried through the plan page (its price and only the providers that take that currency), the
payment the server prices itself (the demo provider and Razorpay's emulator), and the payment pages; an unknown
currency is refused with nothing changed; a customer who never chose one starts in their language's currency
where the shop sells it (hi → INR, id → IDR, ru → RUB, else the shop's default)."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from app.models import AuditLog, Payment, PlanPrice, User
from tests.checkout.conftest import Shop, ShopFactory
from tests.emulators.harness import Plug
from tests.emulators.harness import serve as serve_emulator
from tests.emulators.razorpay import RazorpayEmulator
from tests.factories import add_subscriber
from tests.web import browser_session, htmx, text_of, tma


def options_of(html: str) -> list[str]:
    return re.findall(r'name="option" value="([^"]+)"', html)


def shown_currency(html: str) -> str | None:
    found = re.search(r'data-testid="currency-(\w+)" aria-current="true"', html)
    return found.group(1) if found else None


def prices_of(html: str) -> list[str]:
    return [text_of(found) for found in re.findall(r'data-testid="price">([^<]+)<', html)]


def amount_of(html: str) -> str:
    found = re.search(r'data-testid="amount">([^<]+)<', html)
    assert found, html
    return found.group(1).replace("\u00a0", " ").replace("\u202f", " ")


async def currency_audits(shop: Shop) -> list[AuditLog]:
    await shop.db.rollback()
    return list((await shop.db.scalars(select(AuditLog).where(AuditLog.action == "user.currency"))).all())


async def add_prices(shop: Shop, plan: str, **prices: int) -> None:
    shop.db.add_all(PlanPrice(plan_id=shop.plans[plan].id, currency=c, amount_minor=a) for c, a in prices.items())
    await shop.db.commit()


async def test_the_chosen_currency_is_remembered_and_reaches_the_plan_page_and_the_payment(shop: Shop) -> None:
    before = await shop.client.get("/app/checkout", headers=tma(language="en") | htmx())
    assert shown_currency(before.text) == "USD" and prices_of(before.text) == ["$2.99", "$26.99", "$5"]

    switched = await shop.client.post(
        "/app/checkout/currency", headers=tma(language="en") | htmx(), data={"currency": "xtr"}
    )
    assert switched.status_code == 200 and shown_currency(switched.text) == "XTR"
    # Plans without a Stars price show the price their own page will charge (the next best currency).
    assert prices_of(switched.text) == ["150 ★", "$26.99", "$5"]
    user = await shop.user()
    assert user.currency == "XTR"
    [audit] = await currency_audits(shop)
    assert (audit.before, audit.after) == ({"currency": None}, {"currency": "XTR"})

    # The next visit opens in it, and API clients see it.
    again = await shop.client.get("/app/checkout", headers=tma(language="en") | htmx())
    assert shown_currency(again.text) == "XTR"
    me = await shop.client.get("/api/me", headers=tma(language="en"))
    assert me.json()["currency"] == "XTR"
    plans = await shop.client.get("/api/plans", headers=tma(language="en"))
    assert [price["currency"] for price in plans.json()[0]["prices"]] == ["XTR", "USD", "RUB"]

    plan = await shop.client.get("/app/checkout/month", headers=tma(language="en") | htmx())
    assert amount_of(plan.text) == "150 ★"
    assert '<input type="hidden" name="currency" value="XTR">' in plan.text
    assert "Prices in ★ Stars." in text_of(plan.text)
    assert options_of(plan.text) == ["demo"]  # Stars itself is off in this shop; the demo takes any currency

    paid = await shop.client.post(
        "/app/checkout/month",
        headers=tma(language="en") | htmx(),
        data={"option": "demo", "currency": "XTR", "amount": "1", "amount_minor": "1"},
    )
    assert paid.status_code == 200, paid.text
    [payment] = await shop.payments()
    assert (payment.currency, payment.amount_minor, payment.provider) == ("XTR", 150, "demo")
    waiting = await shop.client.get(f"/app/payments/{payment.public_id}", headers=tma(language="en") | htmx())
    assert "150 ★" in text_of(waiting.text).replace("\u00a0", " ")
    demo_page = await shop.client.get(f"/pay/demo/{payment.external_id}")
    # The provider's page is asked for exactly that amount.
    assert re.search(r'data-testid="demo-amount">150 XTR<', demo_page.text), demo_page.text


async def test_only_the_providers_that_take_the_chosen_currency_are_offered(open_shop: ShopFactory) -> None:
    extra = {"yookassa_shop_id": "1", "yookassa_secret_key": "k", "stars_enabled": True}
    async with open_shop(**extra) as shop:
        rubles = await shop.client.get("/app/checkout/month", headers=tma(language="ru") | htmx())
        # YooKassa takes roubles (once per sub-method), Stars does not; the demo takes anything.
        assert options_of(rubles.text) == ["yookassa/bank_card", "yookassa/sbp", "demo"]
        assert amount_of(rubles.text) == "199 ₽"

        await shop.client.post("/app/checkout/currency", headers=tma(language="ru") | htmx(), data={"currency": "XTR"})
        stars = await shop.client.get("/app/checkout/month", headers=tma(language="ru") | htmx())
        assert options_of(stars.text) == ["stars", "demo"] and amount_of(stars.text) == "150 ★"
        # A plan with no Stars price is sold in the next currency of the customer's (roubles for Russian).
        year = await shop.client.get("/app/checkout/year", headers=tma(language="ru") | htmx())
        assert options_of(year.text) == ["yookassa/bank_card", "yookassa/sbp", "demo"]
        assert '<input type="hidden" name="currency" value="RUB">' in year.text

        # A provider that does not take the currency the form carries is refused, and nothing is created.
        refused = await shop.client.post(
            "/app/checkout/month",
            headers=tma(language="ru") | htmx(),
            data={"option": "yookassa/sbp", "currency": "XTR"},
        )
        assert refused.status_code == 422 and 'data-testid="checkout-error"' in refused.text
        assert await shop.count(Payment) == 0


async def test_a_real_provider_charges_the_plans_price_in_the_chosen_currency(open_shop: ShopFactory) -> None:
    emulator = RazorpayEmulator()
    plug = Plug()
    plug.app = emulator.app
    with serve_emulator(plug) as url:
        async with open_shop(**emulator.settings(url)) as shop:
            await add_prices(shop, "month", INR=49900)
            first = await shop.client.get("/app/checkout/month", headers=tma(language="en") | htmx())
            assert "razorpay" not in options_of(first.text)  # USD: Razorpay takes rupees only

            await shop.client.post(
                "/app/checkout/currency", headers=tma(language="en") | htmx(), data={"currency": "INR"}
            )
            plan = await shop.client.get("/app/checkout/month", headers=tma(language="en") | htmx())
            assert options_of(plan.text) == ["razorpay", "demo"] and amount_of(plan.text) == "₹499"

            response = await shop.client.post(
                "/app/checkout/month",
                headers=tma(language="en") | htmx(),
                data={"option": "razorpay", "currency": "INR", "amount_minor": "100"},
            )
            assert response.status_code == 200, response.text
            [payment] = await shop.payments()
    assert (payment.provider, payment.currency, payment.amount_minor) == ("razorpay", "INR", 49900)
    # Auto-renewal is on by default, so Razorpay gets a subscription whose plan carries the amount.
    item = emulator.last("POST /v1/plans").json["item"]
    assert (item["amount"], item["currency"]) == (49900, "INR")


@pytest.mark.parametrize("currency", ["EUR", "", "usd'><script>", "INR"])
async def test_an_unknown_currency_is_refused_and_nothing_changes(shop: Shop, currency: str) -> None:
    """EUR and INR have no price in this shop; the others are not currencies at all."""
    await shop.client.post("/app/checkout/currency", headers=tma(language="en") | htmx(), data={"currency": "RUB"})
    refused = await shop.client.post(
        "/app/checkout/currency", headers=tma(language="en") | htmx(), data={"currency": currency}
    )
    assert refused.status_code == 422
    if currency:  # a missing field is FastAPI's own 422
        assert "Prices are shown in RUB, USD, XTR only." in text_of(refused.text)
        assert "<script>" not in refused.text
    user = await shop.user()
    assert user.currency == "RUB" and len(await currency_audits(shop)) == 1

    # A tampered checkout form: the currency is checked again on the server and nothing is created.
    tampered = await shop.client.post(
        "/app/checkout/month",
        headers=tma(language="en") | htmx(),
        data={"option": "demo", "currency": currency or "EUR"},
    )
    assert tampered.status_code == 422 and 'data-testid="checkout-error"' in tampered.text
    assert await shop.count(Payment) == 0


async def test_the_browser_cabinet_remembers_the_choice_too(shop: Shop) -> None:
    user = User(telegram_id=904, referral_code="b904", language="en")
    shop.db.add(user)
    await shop.db.commit()
    token = await browser_session(shop.client, shop.db, user, shop.settings)
    plain = await shop.client.post("/app/checkout/currency", data={"currency": "RUB", "csrf_token": token})
    assert plain.status_code == 303 and plain.headers["location"] == "/app/checkout"
    page = await shop.client.get("/app/checkout")
    assert shown_currency(page.text) == "RUB"
    paid = await shop.client.post(
        "/app/checkout/month", data={"option": "demo", "currency": "RUB", "csrf_token": token}
    )
    [payment] = await shop.payments()
    assert paid.status_code == 303 and (payment.currency, payment.amount_minor) == ("RUB", 19900)
    forged = await shop.client.post("/app/checkout/currency", data={"currency": "USD"})
    assert forged.status_code == 403
    await shop.db.refresh(user)
    assert user.currency == "RUB"


@pytest.mark.parametrize(
    ("language", "default", "expected"),
    [
        ("hi", "USD", "INR"),
        ("id", "USD", "IDR"),
        ("ru", "USD", "RUB"),
        ("en", "USD", "USD"),
        ("en", "RUB", "RUB"),  # the shop's own default for a language without a currency of its own
        ("de", "XTR", "XTR"),
    ],
)
async def test_a_customer_who_never_chose_starts_in_their_languages_currency(
    open_shop: ShopFactory, language: str, default: str, expected: str
) -> None:
    async with open_shop(default_currency=default) as shop:
        await add_prices(shop, "month", INR=49900, IDR=4500000)
        user = User(telegram_id=905, referral_code="b905", language=language)
        shop.db.add(user)
        await shop.db.commit()
        await browser_session(shop.client, shop.db, user, shop.settings)
        page = await shop.client.get("/app/checkout", headers=htmx())
        assert shown_currency(page.text) == expected
        plan = await shop.client.get("/app/checkout/month", headers=htmx())
        assert f'<input type="hidden" name="currency" value="{expected}">' in plan.text


async def test_a_languages_currency_that_is_not_sold_falls_back_to_the_shops_default(open_shop: ShopFactory) -> None:
    """Hindi with no plan priced in rupees: the shop's default, and the switch lists only what is sold."""
    async with open_shop(default_currency="RUB") as shop:
        user = User(telegram_id=906, referral_code="b906", language="hi")
        shop.db.add(user)
        await shop.db.commit()
        await browser_session(shop.client, shop.db, user, shop.settings)
        page = await shop.client.get("/app/checkout", headers=htmx())
    assert shown_currency(page.text) == "RUB"
    assert re.findall(r'data-testid="currency-(\w+)"', page.text) == ["RUB", "USD", "XTR"]


async def test_a_currency_no_enabled_provider_takes_is_not_offered(open_shop: ShopFactory) -> None:
    """Without the demo provider, only YooKassa (roubles) is on: dollars and Stars are priced but not sold."""
    async with open_shop(demo_payments_enabled=False, yookassa_shop_id="1", yookassa_secret_key="k") as shop:
        page = await shop.client.get("/app/checkout", headers=tma(language="en") | htmx())
        assert shown_currency(page.text) is None  # one currency: no switch at all
        assert 'data-testid="currencies"' not in page.text
        # Roubles for an English customer too, the only currency a provider takes; the dollar-only plan has
        # nothing sold and shows its price as it is (its page says no method can take it).
        assert prices_of(page.text) == ["₽199", "₽1,790", "$5"]
        dollar = await shop.client.get("/app/checkout/dollar", headers=tma(language="en") | htmx())
        assert 'data-testid="no-methods"' in dollar.text
        refused = await shop.client.post(
            "/app/checkout/currency", headers=tma(language="en") | htmx(), data={"currency": "USD"}
        )
        assert refused.status_code == 422
        assert (await shop.user()).currency is None


async def test_settings_show_and_change_the_same_remembered_currency(shop: Shop) -> None:
    page = await shop.client.get("/app/settings", headers=tma(language="ru") | htmx())
    pressed = re.findall(r'aria-pressed="true" data-testid="settings-currency-(\w+)"', page.text)
    assert pressed == ["RUB"]

    changed = await shop.client.post(
        "/app/settings/currency", headers=tma(language="ru") | htmx(), data={"currency": "usd"}
    )
    assert changed.status_code == 200
    assert re.findall(r'aria-pressed="true" data-testid="settings-currency-(\w+)"', changed.text) == ["USD"]
    assert (await shop.user()).currency == "USD"
    plans = await shop.client.get("/app/checkout", headers=tma(language="ru") | htmx())
    assert shown_currency(plans.text) == "USD"

    refused = await shop.client.post(
        "/app/settings/currency", headers=tma(language="ru") | htmx(), data={"currency": "EUR"}
    )
    assert refused.status_code == 422
    error = re.search(r'data-testid="currency-error">([^<]+)<', refused.text)
    assert error and "Цены показываются только в USD, RUB, XTR." in error.group(1)
    assert (await shop.user()).currency == "USD" and len(await currency_audits(shop)) == 1


async def test_pay_once_on_the_plan_page_skips_the_razorpay_subscription(open_shop: ShopFactory) -> None:
    """Issue 18 item 7 on the page: Razorpay sells a 30-day plan as an e-mandate subscription unless the
    customer ticks "pay once", which makes it a one-off payment link."""
    emulator = RazorpayEmulator()
    plug = Plug()
    plug.app = emulator.app
    with serve_emulator(plug) as url:
        async with open_shop(demo_payments_enabled=False, default_currency="INR", **emulator.settings(url)) as shop:
            await add_prices(shop, "month", INR=49900)
            page = await shop.client.get("/app/checkout/month", headers=tma(language="en") | htmx())
            assert options_of(page.text) == ["razorpay"]
            assert 'name="one_off" value="on"' in page.text and "Pay once, without automatic renewal" in page.text
            once = await shop.client.post(
                "/app/checkout/month",
                headers=tma(language="en") | htmx(),
                data={"option": "razorpay", "currency": "INR", "one_off": "on"},
            )
            assert once.status_code == 200, once.text
            assert len(emulator.calls("POST /v1/payment_links")) == 1 and not emulator.calls("POST /v1/subscriptions")
            assert emulator.last("POST /v1/payment_links").json["amount"] == 49900
            renewing = await shop.client.post(
                "/app/checkout/month",
                headers=tma(language="en") | htmx(),
                data={"option": "razorpay", "currency": "INR"},
            )
            assert renewing.status_code == 200, renewing.text
            assert len(emulator.calls("POST /v1/subscriptions")) == 1
            assert len(emulator.calls("POST /v1/payment_links")) == 1


async def test_pay_once_is_not_offered_where_nothing_would_renew(open_shop: ShopFactory) -> None:
    """Crypto Pay neither saves methods nor runs subscriptions: there is nothing to opt out of."""
    async with open_shop(demo_payments_enabled=False, cryptopay_api_token="1:x") as shop:
        page = await shop.client.get("/app/checkout/month", headers=tma(language="en") | htmx())
    assert options_of(page.text) == ["cryptopay"]
    assert 'name="one_off"' not in page.text


@pytest.mark.parametrize("autopayments", [False, True])
async def test_pay_once_is_offered_with_yookassa_only_where_the_shop_has_autopayments(
    open_shop: ShopFactory, autopayments: bool
) -> None:
    """YooKassa saves a card only for a shop with autopayments (YOOKASSA_RECURRING_ENABLED): without them nothing
    would renew, so there is no "pay once" to offer."""
    yookassa = {"yookassa_shop_id": "1", "yookassa_secret_key": "k", "yookassa_recurring_enabled": autopayments}
    async with open_shop(demo_payments_enabled=False, **yookassa) as shop:
        page = await shop.client.get("/app/checkout/month", headers=tma(language="ru") | htmx())
    assert {option.split("/")[0] for option in options_of(page.text)} == {"yookassa"}
    assert ('name="one_off"' in page.text) is autopayments


async def test_pay_once_is_not_offered_to_a_customer_who_turned_auto_renewal_off(shop: Shop) -> None:
    user, subscription = await add_subscriber(shop.db, 907)
    subscription.is_trial, subscription.auto_renew = False, False
    await shop.db.commit()
    off = await shop.client.get("/app/checkout/month", headers=tma(user_id=907) | htmx())
    assert options_of(off.text) == ["demo"] and 'name="one_off"' not in off.text
    subscription.auto_renew = True
    await shop.db.commit()
    on = await shop.client.get("/app/checkout/month", headers=tma(user_id=907) | htmx())
    assert 'name="one_off" value="on"' in on.text  # the demo provider saves methods
    assert user.currency is None
