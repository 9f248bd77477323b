"""The checkout JSON API: plans with prices and providers, quotes, starting a payment (server-side price,
Idempotency-Key), and a payment's status from pending to succeeded or failed; errors with stable codes."""

from __future__ import annotations

from sqlalchemy import select, update

from app.models import (
    PanelKind,
    Payment,
    PaymentStatus,
    PromoRedemption,
    RedemptionStatus,
    Server,
    Subscription,
    User,
)
from tests.checkout.conftest import BASE, Shop, ShopFactory
from tests.web import browser_session, drain_outbox, htmx, tma


async def pay(shop: Shop, payment_id: str, outcome: str = "succeed") -> None:
    payment = await shop.db.scalar(select(Payment).where(Payment.public_id == payment_id))
    assert payment is not None
    response = await shop.client.post(f"/pay/demo/{payment.external_id}", data={"outcome": outcome})
    assert response.status_code == 303
    await drain_outbox(shop.app)


async def test_plans_list_prices_per_currency_with_their_providers(open_shop: ShopFactory) -> None:
    async with open_shop(yookassa_shop_id="1", yookassa_secret_key="k") as shop:
        response = await shop.client.get("/api/plans", headers=tma(language="ru"))
    assert response.status_code == 200
    plans = response.json()
    assert [plan["code"] for plan in plans] == ["month", "year", "dollar"]  # active ones, in order
    month = plans[0]
    assert month["name"] == "1 месяц" and month["days"] == 30 and month["device_limit"] == 3
    assert [price["currency"] for price in month["prices"]] == ["RUB", "USD", "XTR"]  # Russian: roubles first
    rub = month["prices"][0]
    assert rub["amount"] == "199.00" and rub["amount_minor"] == 19900
    assert rub["providers"] == [{"name": "yookassa", "methods": ["bank_card", "sbp"]}, {"name": "demo", "methods": []}]
    assert month["prices"][2] == {
        "amount": "150",
        "amount_minor": 150,
        "currency": "XTR",
        "providers": [{"name": "demo", "methods": []}],
    }
    assert plans[1]["discount_percent"] == "25.00"


async def test_the_api_needs_a_signed_in_user(shop: Shop) -> None:
    for method, path in (("GET", "/api/plans"), ("POST", "/api/checkout"), ("GET", "/api/payments/x")):
        response = await shop.client.request(method, path, json={})
        assert response.status_code == 401 and response.json()["error"]["code"] == "not_authenticated"


async def test_a_quote_prices_the_code_and_names_the_reason_when_it_is_refused(shop: Shop) -> None:
    await shop.promo("SAVE20", percent=20)
    ok = await shop.client.post("/api/checkout/quote", headers=tma(), json={"plan": "year", "promo_code": "save20"})
    assert ok.status_code == 200
    assert ok.json() == {
        "plan": "year",
        "currency": "USD",
        "price": {"amount": "26.99", "amount_minor": 2699, "currency": "USD"},
        "amount": {"amount": "21.59", "amount_minor": 2159, "currency": "USD"},
        "discount": {"amount": "5.40", "amount_minor": 540, "currency": "USD"},
        "days": 365,
        "promo_code": "SAVE20",
    }
    in_stars = await shop.client.post(
        "/api/checkout/quote", headers=tma(), json={"plan": "month", "currency": "xtr", "promo_code": "SAVE20"}
    )
    assert in_stars.json()["amount"] == {"amount": "120", "amount_minor": 120, "currency": "XTR"}
    refused = await shop.client.post("/api/checkout/quote", headers=tma(), json={"plan": "year", "promo_code": "NOPE"})
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "promo_not_found"
    missing = await shop.client.post("/api/checkout/quote", headers=tma(), json={"plan": "nope"})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "plan_not_found"
    assert await shop.count(Payment) == 0 and await shop.count(PromoRedemption) == 0


async def test_checkout_creates_a_pending_payment_at_the_servers_price(shop: Shop) -> None:
    await shop.promo("SAVE20", percent=20)
    response = await shop.client.post(
        "/api/checkout",
        headers=tma(),
        json={"plan": "month", "provider": "demo", "promo_code": "SAVE20", "amount": "0.01", "amount_minor": 1},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    [payment] = await shop.payments()
    assert body["payment_id"] == payment.public_id and body["status"] == "pending"
    assert (body["amount"], body["amount_minor"], body["currency"], body["days"]) == ("2.39", 239, "USD", 30)
    assert payment.amount_minor == 239
    assert body["pay_url"] == f"{BASE}/pay/demo/{payment.external_id}"
    assert body["invoice_link"] is None and body["qr_string"] is None and body["expires_at"]
    redemption = await shop.db.scalar(select(PromoRedemption))
    assert redemption is not None and redemption.status == RedemptionStatus.HELD


async def test_a_repeated_idempotency_key_returns_the_same_payment(shop: Shop) -> None:
    request = {"plan": "month", "provider": "demo", "currency": "RUB"}
    headers = tma() | {"idempotency-key": "order-42"}
    first = await shop.client.post("/api/checkout", headers=headers, json=request)
    again = await shop.client.post("/api/checkout", headers=headers, json=request)
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json() and first.json()["currency"] == "RUB"
    assert await shop.count(Payment) == 1
    other_plan = await shop.client.post("/api/checkout", headers=headers, json=request | {"plan": "year"})
    assert other_plan.status_code == 422 and other_plan.json()["error"]["code"] == "idempotency_key_reused"
    # Keys belong to their user: someone else's same key is a new payment.
    stranger = await shop.client.post(
        "/api/checkout", headers=tma(user_id=778) | {"idempotency-key": "order-42"}, json=request
    )
    assert stranger.status_code == 201 and stranger.json()["payment_id"] != first.json()["payment_id"]
    assert await shop.count(Payment) == 2


async def test_refused_checkouts_create_nothing(shop: Shop) -> None:
    cases = [
        ({"plan": "nope", "provider": "demo"}, 404, "plan_not_found"),
        ({"plan": "month", "provider": "yookassa"}, 404, "provider_not_available"),
        ({"plan": "month", "provider": "demo", "method": "sbp"}, 422, "method_not_offered"),
        ({"plan": "dollar", "provider": "demo", "currency": "RUB"}, 422, "currency_not_offered"),
        ({"plan": "month", "provider": "demo", "promo_code": "NOPE"}, 422, "promo_not_found"),
        ({"plan": "month"}, 422, "validation_failed"),
    ]
    for body, status, code in cases:
        response = await shop.client.post("/api/checkout", headers=tma(), json=body)
        assert (response.status_code, response.json()["error"]["code"]) == (status, code), body
    assert await shop.count(Payment) == 0


async def test_a_payment_goes_from_pending_to_succeeded_with_its_receipt(shop: Shop) -> None:
    await shop.promo("SAVE20", percent=20)
    started = await shop.client.post(
        "/api/checkout", headers=tma(), json={"plan": "month", "provider": "demo", "promo_code": "SAVE20"}
    )
    payment_id = started.json()["payment_id"]
    pending = await shop.client.get(f"/api/payments/{payment_id}", headers=tma())
    assert pending.status_code == 200
    assert pending.json()["status"] == "pending" and pending.json()["receipt"] is None
    assert pending.json()["pay_url"] == started.json()["pay_url"]

    await pay(shop, payment_id)
    done = (await shop.client.get(f"/api/payments/{payment_id}", headers=tma())).json()
    subscription = await shop.db.scalar(select(Subscription))
    assert subscription is not None
    assert done["status"] == "succeeded" and done["pay_url"] is None and done["paid_at"]
    assert (done["amount"], done["currency"], done["plan"], done["provider"]) == ("2.39", "USD", "month", "demo")
    receipt = done["receipt"]
    assert receipt["number"] == payment_id.split("-")[0].upper()
    assert receipt["price"] == {"amount": "2.99", "amount_minor": 299, "currency": "USD"}
    assert receipt["discount"]["amount"] == "0.60" and receipt["total"]["amount_minor"] == 239
    assert receipt["days"] == 30 and receipt["method"] == "demo_card"
    assert receipt["ends_at"].startswith(subscription.ends_at.date().isoformat())


async def test_a_declined_payment_reports_failed_with_its_reason(shop: Shop) -> None:
    started = await shop.client.post("/api/checkout", headers=tma(), json={"plan": "month", "provider": "demo"})
    payment_id = started.json()["payment_id"]
    await pay(shop, payment_id, outcome="fail")
    body = (await shop.client.get(f"/api/payments/{payment_id}", headers=tma())).json()
    assert body["status"] == "failed" and body["failure_reason"] == "declined" and body["receipt"] is None
    assert (await shop.payments())[0].status == PaymentStatus.FAILED


async def test_another_users_payment_is_not_found(shop: Shop) -> None:
    started = await shop.client.post("/api/checkout", headers=tma(), json={"plan": "month", "provider": "demo"})
    payment_id = started.json()["payment_id"]
    response = await shop.client.get(f"/api/payments/{payment_id}", headers=tma(user_id=778))
    assert response.status_code == 404 and response.json()["error"]["code"] == "payment_not_found"
    unknown = await shop.client.get("/api/payments/00000000-0000-0000-0000-000000000000", headers=tma())
    assert unknown.status_code == 404


async def test_a_browser_session_needs_its_csrf_header(shop: Shop) -> None:
    user = User(telegram_id=904, referral_code="b904", language="en")
    shop.db.add(user)
    await shop.db.commit()
    token = await browser_session(shop.client, shop.db, user, shop.settings)
    body = {"plan": "month", "provider": "demo"}
    refused = await shop.client.post("/api/checkout", json=body)
    assert refused.status_code == 403 and await shop.count(Payment) == 0
    accepted = await shop.client.post("/api/checkout", json=body, headers={"x-csrf-token": token})
    assert accepted.status_code == 201


async def test_the_endpoints_are_documented(shop: Shop) -> None:
    spec = (await shop.client.get("/api/openapi.json")).json()
    checkout = spec["paths"]["/api/checkout"]["post"]
    assert {"201", "404", "422", "429", "503"} <= set(checkout["responses"])
    assert any(p["name"] == "Idempotency-Key" for p in checkout["parameters"])
    assert "amount" not in spec["components"]["schemas"]["CheckoutIn"]["properties"]
    for path in ("/api/plans", "/api/checkout/quote", "/api/payments/{payment_id}"):
        assert path in spec["paths"]


async def test_no_device_limit_is_sold_where_the_panel_cannot_enforce_it(open_shop: ShopFactory) -> None:
    """Marzban has no device limits (issue 11): with a Marzban server a new customer may land on, plans promise
    none, in the API and on the page; the same plans on a panel that enforces them do."""
    async with open_shop() as shop:
        enforced = (await shop.client.get("/api/plans", headers=tma(language="en"))).json()
        enforced_page = await shop.client.get("/app/checkout", headers=tma(language="en") | htmx())
        await shop.db.execute(update(Server).values(panel_kind=PanelKind.MARZBAN))
        await shop.db.commit()
        plans = (await shop.client.get("/api/plans", headers=tma(language="en"))).json()
        page = await shop.client.get("/app/checkout", headers=tma(language="en") | htmx())
        plan_page = await shop.client.get("/app/checkout/month", headers=tma(language="en") | htmx())
    assert [plan["device_limit"] for plan in enforced] == [3, 3, 3]
    assert "up to 3 devices" in enforced_page.text
    assert [plan["device_limit"] for plan in plans] == [None, None, None]
    assert page.status_code == 200 and "month" in page.text and "up to 3 devices" not in page.text
    assert plan_page.status_code == 200 and "up to 3 devices" not in plan_page.text
