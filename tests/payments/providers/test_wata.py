"""WataProvider against the WATA emulator over real HTTP (shared/reference/payments_api.md §3, §10.2)."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import Response

from app.config import Settings
from app.kit.http import RetryPolicy, reset_breakers
from app.kit.money import Money
from app.payments.providers.base import (
    CheckoutOrder,
    CheckoutRejected,
    CredentialsRefused,
    IncomingWebhook,
    NotSupported,
    PaymentProvider,
    PaymentState,
    ProviderUnavailable,
    WebhookRejected,
)
from app.payments.providers.wata import WataProvider
from tests.emulators.harness import Plug, serve
from tests.emulators.payments_common import Delivery
from tests.emulators.wata import WataEmulator, new_key

FAST = RetryPolicy(attempts=2, base_delay=0.001, max_delay=0.005, max_retry_after=1.0)
KEY = new_key()  # RSA key generation is slow: one key for every emulator of this module


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[Plug, str]]:
    slot = Plug()
    with serve(slot) as base_url:
        yield slot, base_url


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Env:
    provider: WataProvider
    wata: WataEmulator
    base_url: str
    clock: Clock


@pytest.fixture
async def env(server: tuple[Plug, str]) -> AsyncIterator[Env]:
    reset_breakers()
    slot, base_url = server
    wata = WataEmulator(private_key=KEY)
    slot.app = wata.app
    clock = Clock()
    # The production timeout: a shorter one let a slow machine time a search out, and the retry then met WATA's
    # one-search-per-30-s limit (test_timeout_is_provider_unavailable sets its own short timeout).
    provider = WataProvider(base_url + "/api/h2h", wata.token, clock=clock, retry=FAST)
    yield Env(provider, wata, base_url, clock)
    await provider.aclose()
    slot.app = None
    reset_breakers()


def order(**overrides: Any) -> CheckoutOrder:
    fields: dict[str, Any] = {
        "order_id": "pay_7f3a9c",
        "idempotency_key": "idem-7f3a9c",
        "amount": Money.of("299.00", "RUB"),
        "description": "VPN 30 дней",
        "user_id": 1,
        "telegram_id": 1001,
        "return_url": "https://shop.example/pay/return/pay_7f3a9c",
        "expires_at": datetime.now(UTC) + timedelta(hours=1),
    }
    return CheckoutOrder(**(fields | overrides))


def incoming(delivery: Delivery) -> IncomingWebhook:
    return IncomingWebhook(
        body=delivery.body, headers={k.lower(): v for k, v in delivery.headers.items()}, peer_ip=delivery.peer_ip
    )


async def checkout_and_pay(env: Env, **pay: Any) -> Delivery:
    await env.provider.create_checkout(order())
    return env.wata.pay("pay_7f3a9c", **pay)


def test_implements_the_interface() -> None:
    assert isinstance(WataProvider("https://api.wata.pro/api/h2h", "t"), PaymentProvider)
    assert WataProvider.currencies == frozenset({"RUB", "USD", "EUR"})
    assert (WataProvider.supports_refunds, WataProvider.supports_saved_methods) == (True, False)


# --- checkout -------------------------------------------------------------------------------------------------


async def test_create_checkout_sends_the_documented_link(env: Env) -> None:
    checkout = await env.provider.create_checkout(order())

    [request] = env.wata.requests_to("POST", "/links")
    assert request.headers["authorization"] == f"Bearer {env.wata.token}"
    assert re.search(rb'"amount":299\.00[,}]', request.body), "amount must be a JSON number with 2 decimals"
    body = request.json()
    assert body["amount"] == Decimal("299.00") and body["currency"] == "RUB"
    assert (body["orderId"], body["type"], body["description"]) == ("pay_7f3a9c", "OneTime", "VPN 30 дней")
    assert body["successRedirectUrl"] == body["failRedirectUrl"] == "https://shop.example/pay/return/pay_7f3a9c"
    assert checkout.external_id is None  # the transactionId of the webhook becomes the payment's id
    link = env.wata.links[checkout.details["link_id"]]
    assert checkout.pay_url and checkout.pay_url.endswith(f"/pay-form/{link.id}")
    assert (link.order_id, link.status, link.amount) == ("pay_7f3a9c", "Opened", Decimal("299.00"))
    assert checkout.expires_at == link.expires_at


async def test_expiry_is_kept_at_least_fifteen_minutes_ahead(env: Env) -> None:
    await env.provider.create_checkout(order(expires_at=datetime.now(UTC) + timedelta(minutes=2)))

    [request] = env.wata.requests_to("POST", "/links")
    sent = datetime.fromisoformat(request.json()["expirationDateTime"])
    assert sent >= datetime.now(UTC) + timedelta(minutes=14, seconds=50)


async def test_expiry_beyond_thirty_days_is_capped(env: Env) -> None:
    checkout = await env.provider.create_checkout(order(expires_at=datetime.now(UTC) + timedelta(days=90)))

    assert checkout.expires_at is not None
    assert checkout.expires_at <= datetime.now(UTC) + timedelta(days=30)


@pytest.mark.parametrize("amount", [Money.of("9.99", "RUB"), Money.of("0.99", "USD"), Money.of("0.50", "EUR")])
async def test_amount_below_the_minimum_is_refused_without_a_call(env: Env, amount: Money) -> None:
    with pytest.raises(CheckoutRejected, match="minimum"):
        await env.provider.create_checkout(order(amount=amount))
    assert env.wata.requests == []


async def test_unsupported_currency_is_refused(env: Env) -> None:
    with pytest.raises(CheckoutRejected, match="INR"):
        await env.provider.create_checkout(order(amount=Money.of("500.00", "INR")))
    assert env.wata.requests == []


async def test_validation_error_becomes_checkout_rejected_with_the_message(env: Env) -> None:
    with pytest.raises(CheckoutRejected, match="'Amount' must be"):
        await env.provider.create_checkout(order(amount=Money.of("1000000.00", "RUB")))


async def test_expired_token_is_named(env: Env) -> None:
    env.wata.token_valid = False
    with pytest.raises(CheckoutRejected, match="access token was refused"):
        await env.provider.create_checkout(order())


async def test_ip_not_allowed_is_named(env: Env) -> None:
    env.wata.ip_allowed = False
    with pytest.raises(CheckoutRejected, match="IP address"):
        await env.provider.create_checkout(order())


@pytest.mark.parametrize("status", [500, 502, 429])
async def test_failures_that_persist_are_provider_unavailable(env: Env, status: int) -> None:
    env.wata.fail_next(status, retry_after=0 if status == 429 else None, times=2)
    with pytest.raises(ProviderUnavailable):
        await env.provider.create_checkout(order())
    assert env.wata.counts["POST /links"] == 2


async def test_a_single_500_is_retried(env: Env) -> None:
    env.wata.fail_next(500)
    checkout = await env.provider.create_checkout(order())
    assert checkout.details["link_id"] in env.wata.links


async def test_timeout_is_provider_unavailable(env: Env) -> None:
    provider = WataProvider(env.base_url + "/api/h2h", env.wata.token, retry=FAST, timeout=0.2)
    env.wata.delay_next(2.0, times=2)
    try:
        with pytest.raises(ProviderUnavailable):
            await provider.create_checkout(order())
    finally:
        await provider.aclose()


# --- webhooks -------------------------------------------------------------------------------------------------


async def test_paid_webhook_is_a_succeeded_update(env: Env) -> None:
    delivery = await checkout_and_pay(env, type="SBP")

    [update] = (await env.provider.parse_webhook(incoming(delivery))).updates

    tx = next(iter(env.wata.transactions.values()))
    assert update.state is PaymentState.SUCCEEDED
    assert update.amount == Money.of("299.00", "RUB")
    assert (update.external_id, update.order_id, update.method) == (tx.id, "pay_7f3a9c", "SBP")
    assert update.event_id == f"{tx.id}:Paid:Payment"
    assert update.paid_at is not None and abs(update.paid_at - datetime.now(UTC)) < timedelta(minutes=1)
    assert update.raw["amount"] == "299.00"  # raw keeps amounts exact, as strings
    json.dumps(dict(update.raw))  # and is storable as JSON


async def test_redelivery_has_the_same_event_id(env: Env) -> None:
    delivery = await checkout_and_pay(env)

    first = (await env.provider.parse_webhook(incoming(delivery))).updates
    second = (await env.provider.parse_webhook(incoming(delivery))).updates

    assert first[0].event_id == second[0].event_id
    assert env.wata.counts["GET /public-key"] == 1  # the key is cached


async def test_declined_webhook_is_failed_with_the_reason(env: Env) -> None:
    await env.provider.create_checkout(order())
    delivery = env.wata.decline("pay_7f3a9c", error_description="Card expired")

    [update] = (await env.provider.parse_webhook(incoming(delivery))).updates

    assert update.state is PaymentState.FAILED
    assert update.failure_reason == "Card expired"
    assert update.event_id.endswith(":Declined:Payment")


async def test_declined_webhook_need_not_carry_an_amount(env: Env) -> None:
    body = json.dumps({"transactionId": "t1", "transactionStatus": "Declined", "orderId": "pay_7f3a9c"}).encode()
    [update] = (await env.provider.parse_webhook(incoming(env.wata.signed(body)))).updates
    assert (update.state, update.amount, update.failure_reason) == (PaymentState.FAILED, None, "declined")


async def test_refund_webhook_is_refunded(env: Env) -> None:
    await checkout_and_pay(env)
    delivery = env.wata.refund_delivery("pay_7f3a9c", amount=Decimal("100.00"))

    [update] = (await env.provider.parse_webhook(incoming(delivery))).updates

    assert update.state is PaymentState.REFUNDED
    assert update.amount == Money.of("100.00", "RUB")
    assert update.order_id == "pay_7f3a9c"
    assert update.event_id.endswith(":Paid:Refund")


async def test_wrong_amount_is_reported_as_paid(env: Env) -> None:
    delivery = await checkout_and_pay(env, amount=Decimal("10.00"), currency="USD")

    [update] = (await env.provider.parse_webhook(incoming(delivery))).updates

    assert update.amount == Money.of("10.00", "USD")
    fetched = await env.provider.fetch(None, "pay_7f3a9c")
    assert fetched is not None and fetched.amount == Money.of("10.00", "USD")


async def test_forged_signature_is_rejected_after_one_key_refresh(env: Env) -> None:
    delivery = await checkout_and_pay(env)
    await env.provider.parse_webhook(incoming(delivery))  # caches the key
    env.clock.now += 61

    with pytest.raises(WebhookRejected) as caught:
        await env.provider.parse_webhook(incoming(env.wata.forged(delivery)))

    assert caught.value.status_code == 401
    assert env.wata.counts["GET /public-key"] == 2  # one re-fetch in case the key rotated, no more


async def test_forged_flood_does_not_refetch_the_key_more_than_once_a_minute(env: Env) -> None:
    delivery = await checkout_and_pay(env)
    await env.provider.parse_webhook(incoming(delivery))
    for _ in range(5):
        with pytest.raises(WebhookRejected):
            await env.provider.parse_webhook(incoming(env.wata.forged(delivery)))
    assert env.wata.counts["GET /public-key"] == 1


async def test_tampered_body_is_rejected(env: Env) -> None:
    delivery = await checkout_and_pay(env)
    with pytest.raises(WebhookRejected) as caught:
        await env.provider.parse_webhook(incoming(delivery.tampered()))
    assert caught.value.status_code == 401


@pytest.mark.parametrize("value", [None, "", "not base64!"])
async def test_missing_or_garbled_signature_is_rejected(env: Env, value: str | None) -> None:
    delivery = await checkout_and_pay(env)
    broken = delivery.without_header("X-Signature") if value is None else delivery.with_header("X-Signature", value)
    with pytest.raises(WebhookRejected) as caught:
        await env.provider.parse_webhook(incoming(broken))
    assert caught.value.status_code == 401


async def test_sha256_signature_is_rejected(env: Env) -> None:
    import base64

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    delivery = await checkout_and_pay(env)
    wrong = base64.b64encode(KEY.sign(delivery.body, padding.PKCS1v15(), hashes.SHA256())).decode()
    with pytest.raises(WebhookRejected):
        await env.provider.parse_webhook(incoming(delivery.with_header("X-Signature", wrong)))


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[1, 2]",
        b'{"transactionStatus": "Paid", "amount": 299.00, "currency": "RUB"}',
        b'{"transactionId": "t1", "transactionStatus": "Paid", "currency": "RUB"}',
        b'{"transactionId": "t1", "transactionStatus": "Paid", "amount": "299.00", "currency": "RUB"}',
        b'{"transactionId": "t1", "transactionStatus": "Paid", "amount": 299.001, "currency": "RUB"}',
    ],
)
async def test_malformed_signed_body_is_400(env: Env, body: bytes) -> None:
    with pytest.raises(WebhookRejected) as caught:
        await env.provider.parse_webhook(incoming(env.wata.signed(body)))
    assert caught.value.status_code == 400


@pytest.mark.parametrize(
    "payload",
    [
        {"transactionId": "t1", "transactionStatus": "Pending", "amount": 299, "currency": "RUB"},
        {"transactionId": "t1", "transactionStatus": "Created", "amount": 299, "currency": "RUB"},
        {"transactionId": "t1", "transactionStatus": "Pending", "kind": "Refund", "amount": 1, "currency": "RUB"},
    ],
)
async def test_states_we_do_not_act_on_are_acknowledged_empty(env: Env, payload: dict[str, Any]) -> None:
    result = await env.provider.parse_webhook(incoming(env.wata.signed(json.dumps(payload).encode())))
    assert result.updates == []


async def test_rotated_key_is_fetched_again(env: Env) -> None:
    first = await checkout_and_pay(env)
    await env.provider.parse_webhook(incoming(first))
    env.wata.rotate_key()
    env.clock.now += 61
    await env.provider.create_checkout(order(order_id="pay_second"))
    second = env.wata.pay("pay_second")

    [update] = (await env.provider.parse_webhook(incoming(second))).updates

    assert update.order_id == "pay_second"
    assert env.wata.counts["GET /public-key"] == 2


async def test_key_is_refreshed_after_its_ttl(env: Env) -> None:
    delivery = await checkout_and_pay(env)
    await env.provider.parse_webhook(incoming(delivery))
    env.clock.now += 3599
    await env.provider.parse_webhook(incoming(delivery))
    assert env.wata.counts["GET /public-key"] == 1
    env.clock.now += 2
    await env.provider.parse_webhook(incoming(delivery))
    assert env.wata.counts["GET /public-key"] == 2


async def test_key_with_literal_newlines_is_normalised(env: Env) -> None:
    env.wata.key_with_literal_newlines = True
    delivery = await checkout_and_pay(env)
    [update] = (await env.provider.parse_webhook(incoming(delivery))).updates
    assert update.state is PaymentState.SUCCEEDED


async def test_unreachable_key_fails_closed(env: Env) -> None:
    delivery = await checkout_and_pay(env)
    env.wata.fail_next(503, times=2)
    with pytest.raises(ProviderUnavailable):
        await env.provider.parse_webhook(incoming(delivery))


async def test_garbage_key_fails_closed(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    delivery = await checkout_and_pay(env)
    monkeypatch.setattr(env.wata, "public_pem", lambda: "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----")
    with pytest.raises(ProviderUnavailable, match="unreadable"):
        await env.provider.parse_webhook(incoming(delivery))


# --- fetch ----------------------------------------------------------------------------------------------------


async def test_fetch_reports_the_paid_transaction_with_the_webhook_event_id(env: Env) -> None:
    delivery = await checkout_and_pay(env)
    [from_webhook] = (await env.provider.parse_webhook(incoming(delivery))).updates

    update = await env.provider.fetch(None, "pay_7f3a9c")

    assert update is not None
    assert (update.state, update.event_id, update.kind) == (PaymentState.SUCCEEDED, from_webhook.event_id, "fetch")
    assert (update.external_id, update.amount, update.method) == (from_webhook.external_id, from_webhook.amount, "SBP")
    [search] = env.wata.requests_to("GET", "/v2/transactions")
    assert search.query["OrderId"] == ["pay_7f3a9c"]
    assert env.wata.requests_to("GET", "/transactions") == []


async def test_fetch_without_transactions_is_none(env: Env) -> None:
    await env.provider.create_checkout(order())
    assert await env.provider.fetch(None, "pay_7f3a9c") is None


async def test_fetch_finds_the_payment_on_a_later_page(env: Env) -> None:
    env.wata.max_page_size = 2
    await env.provider.create_checkout(order())
    env.wata.pay("pay_7f3a9c")
    for _ in range(4):  # newer declined attempts push the payment to the last page
        env.wata.links[next(iter(env.wata.links))].status = "Opened"
        env.wata.decline("pay_7f3a9c")

    update = await env.provider.fetch(None, "pay_7f3a9c")

    assert update is not None and update.state is PaymentState.SUCCEEDED
    pages = env.wata.requests_to("GET", "/v2/transactions")
    assert len(pages) == 3
    assert "CursorId" in pages[1].query


async def test_fetch_only_declined_is_failed(env: Env) -> None:
    await env.provider.create_checkout(order())
    env.wata.decline("pay_7f3a9c")
    update = await env.provider.fetch(None, "pay_7f3a9c")
    assert update is not None and update.state is PaymentState.FAILED


async def test_fetch_after_a_refund_is_refunded(env: Env) -> None:
    await checkout_and_pay(env)
    env.wata.refund_delivery("pay_7f3a9c")
    update = await env.provider.fetch(None, "pay_7f3a9c")
    assert update is not None and update.state is PaymentState.REFUNDED


async def test_rate_limited_fetch_is_unavailable_without_waiting(env: Env) -> None:
    await checkout_and_pay(env)
    assert await env.provider.fetch(None, "pay_7f3a9c") is not None

    started = datetime.now(UTC)
    with pytest.raises(ProviderUnavailable):
        await env.provider.fetch(None, "pay_7f3a9c")
    assert datetime.now(UTC) - started < timedelta(seconds=2)

    env.wata.advance(30)
    assert await env.provider.fetch(None, "pay_7f3a9c") is not None


# --- refunds --------------------------------------------------------------------------------------------------


async def paid_transaction_id(env: Env) -> str:
    delivery = await checkout_and_pay(env)
    return json.loads(delivery.body)["transactionId"]


async def test_refund_sends_the_original_and_a_number(env: Env) -> None:
    tx_id = await paid_transaction_id(env)

    result = await env.provider.refund(
        tx_id, Money.of("299.00", "RUB"), idempotency_key="refund-1", user_telegram_id=1001
    )

    assert result.state is PaymentState.REFUNDED
    [request] = env.wata.requests_to("POST", "/transactions/refunds")
    assert re.search(rb'"amount":299\.00[,}]', request.body)
    assert request.json()["originalTransactionId"] == tx_id
    assert [r.id for r in env.wata.refunds_of(tx_id)] == [result.refund_id]


async def test_repeating_a_done_refund_is_success(env: Env) -> None:
    tx_id = await paid_transaction_id(env)
    amount = Money.of("299.00", "RUB")
    first = await env.provider.refund(tx_id, amount, idempotency_key="refund-1", user_telegram_id=1001)

    again = await env.provider.refund(tx_id, amount, idempotency_key="refund-1", user_telegram_id=1001)

    assert again.refund_id == first.refund_id
    assert len(env.wata.refunds_of(tx_id)) == 1


async def test_refund_beyond_what_is_left_is_rejected(env: Env) -> None:
    tx_id = await paid_transaction_id(env)
    await env.provider.refund(tx_id, Money.of("200.00", "RUB"), idempotency_key="r1", user_telegram_id=1)
    with pytest.raises(CheckoutRejected, match="exceeds"):
        await env.provider.refund(tx_id, Money.of("150.00", "RUB"), idempotency_key="r2", user_telegram_id=1)


async def test_pending_refund_is_pending(env: Env) -> None:
    env.wata.refund_status = "Pending"
    tx_id = await paid_transaction_id(env)
    result = await env.provider.refund(tx_id, Money.of("50.00", "RUB"), idempotency_key="r", user_telegram_id=1)
    assert result.state is PaymentState.PENDING
    [update] = (await env.provider.parse_webhook(incoming(env.wata.refund_delivery(tx_id)))).updates
    assert update.state is PaymentState.REFUNDED and update.external_id == result.refund_id


async def test_refund_of_a_declined_payment_is_rejected(env: Env) -> None:
    await env.provider.create_checkout(order())
    tx_id = json.loads(env.wata.decline("pay_7f3a9c").body)["transactionId"]
    with pytest.raises(CheckoutRejected, match="Paid"):
        await env.provider.refund(tx_id, Money.of("10.00", "RUB"), idempotency_key="r", user_telegram_id=1)


async def test_refund_is_not_resent_after_a_failure(env: Env) -> None:
    tx_id = await paid_transaction_id(env)
    env.wata.fail_next(502)
    with pytest.raises(ProviderUnavailable):
        await env.provider.refund(tx_id, Money.of("10.00", "RUB"), idempotency_key="r", user_telegram_id=1)
    assert env.wata.counts["POST /transactions/refunds"] == 1


async def test_saved_methods_and_recurring_are_not_supported(env: Env) -> None:
    with pytest.raises(NotSupported):
        await env.provider.charge_saved(order(), "secret")
    with pytest.raises(NotSupported):
        await env.provider.cancel_recurring("secret", user_telegram_id=1)


# --- settings and the emulator itself -------------------------------------------------------------------------


async def test_from_settings(env: Env) -> None:
    assert WataProvider.from_settings(Settings(_env_file=None, demo_mode=True)) is None
    provider = WataProvider.from_settings(Settings(_env_file=None, demo_mode=True, **env.wata.settings(env.base_url)))
    assert provider is not None
    try:
        checkout = await provider.create_checkout(order())
        assert checkout.details["link_id"] in env.wata.links
    finally:
        await provider.aclose()


async def test_emulator_old_search_is_an_empty_404_and_validation_has_wata_shape(env: Env) -> None:
    async with httpx.AsyncClient(base_url=env.base_url + "/api/h2h") as client:
        auth = {"Authorization": f"Bearer {env.wata.token}"}
        old = await client.get("/transactions", params={"OrderId": "x"}, headers=auth)
        bad = await client.post("/links", json={"currency": "RUB"}, headers=auth)
        text_amount = await client.post("/links", json={"amount": "299.00", "currency": "RUB"}, headers=auth)
        no_auth = await client.post("/links", json={"amount": 299, "currency": "RUB"})
    assert (old.status_code, old.content) == (404, b"")
    assert bad.status_code == 400
    error = bad.json()["error"]
    assert error["message"] == "Your request is invalid!"
    assert error["validationErrors"] == [{"message": "'Amount' is required.", "members": ["amount"]}]
    assert text_amount.status_code == 400
    assert no_auth.status_code == 401


async def test_emulator_control_endpoint_delivers_with_retries(env: Env) -> None:
    received: list[tuple[bytes, dict[str, str]]] = []
    receiver = FastAPI()

    @receiver.post("/hook")
    async def hook(request: Request) -> Response:
        received.append((await request.body(), dict(request.headers)))
        return Response(status_code=500 if len(received) == 1 else 200)

    checkout = await env.provider.create_checkout(order())
    with serve(receiver) as receiver_url:
        async with httpx.AsyncClient(base_url=env.base_url) as client:
            await client.post("/_emu/wata/webhook-url", json={"url": receiver_url + "/hook"})
            answer = await client.post(f"/_emu/wata/links/{checkout.details['link_id']}/pay", json={"type": "TPay"})

    assert answer.json()["delivered"] == 200
    assert len(received) == 2
    body, headers = received[-1]
    [update] = (await env.provider.parse_webhook(IncomingWebhook(body, headers, "127.0.0.1"))).updates
    assert (update.state, update.method) == (PaymentState.SUCCEEDED, "TPay")


async def test_emulator_limits_gets_of_one_link(env: Env) -> None:
    link_id = (await env.provider.create_checkout(order())).details["link_id"]
    async with httpx.AsyncClient(base_url=env.base_url + "/api/h2h") as client:
        auth = {"Authorization": f"Bearer {env.wata.token}"}
        first = await client.get(f"/links/{link_id}", headers=auth)
        second = await client.get(f"/links/{link_id}", headers=auth)
        env.wata.advance(30)
        third = await client.get(f"/links/{link_id}", headers=auth)
        env.wata.expire(link_id)
        env.wata.advance(30)
        gone = await client.get(f"/links/{link_id}", headers=auth)
    assert (first.status_code, second.status_code, third.status_code, gone.status_code) == (200, 429, 200, 404)
    assert second.headers["retry-after"] == "30"
    with pytest.raises(ValueError, match="expired"):
        env.wata.pay(link_id)


# --- the admin's connection test ------------------------------------------------------------------------------


async def test_check_connection_reads_without_changing_anything(env: Env) -> None:
    await env.provider.check_connection()
    # A second test at once is not throttled: each asks about its own made-up order (one GET per 30 s per query).
    await env.provider.check_connection()
    searches = env.wata.requests_to("GET", "/v2/transactions")
    order_ids = [r.query["OrderId"][0] for r in searches]
    assert len(order_ids) == 2 and all(o.startswith("vpnshop-connection-check-") for o in order_ids)
    assert order_ids[0] != order_ids[1]
    assert not env.wata.links and not env.wata.transactions


@pytest.mark.parametrize(("knob", "hint"), [("token_valid", "access token was refused"), ("ip_allowed", "IP address")])
async def test_check_connection_refused_token_or_ip_is_credentials_refused(env: Env, knob: str, hint: str) -> None:
    setattr(env.wata, knob, False)
    with pytest.raises(CredentialsRefused, match=hint):
        await env.provider.check_connection()


async def test_check_connection_with_a_token_wata_does_not_know(env: Env) -> None:
    provider = WataProvider(env.base_url + "/api/h2h", "not-the-token", retry=FAST)
    try:
        with pytest.raises(CredentialsRefused, match="access token was refused"):
            await provider.check_connection()
    finally:
        await provider.aclose()


@pytest.mark.parametrize("status", [500, 503])
async def test_check_connection_failing_api_is_unavailable_not_refused(env: Env, status: int) -> None:
    env.wata.fail_next(status, times=2)
    with pytest.raises(ProviderUnavailable) as caught:
        await env.provider.check_connection()
    assert not isinstance(caught.value, CredentialsRefused)


async def test_check_connection_at_a_wrong_url_is_unavailable(env: Env) -> None:
    # The base URL without /api/h2h: that server answers 404, which must not pass for "no transaction found".
    provider = WataProvider(env.base_url, env.wata.token, retry=FAST)
    try:
        with pytest.raises(ProviderUnavailable, match="WATA_API_URL") as caught:
            await provider.check_connection()
    finally:
        await provider.aclose()
    assert not isinstance(caught.value, CredentialsRefused)
