"""CryptoPayProvider against the Crypto Pay emulator over real HTTP (shared/reference/payments_api.md §5, §10.4)."""

from __future__ import annotations

import hashlib
import hmac
import json
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
    IncomingWebhook,
    NotSupported,
    PaymentProvider,
    PaymentState,
    ProviderUnavailable,
    WebhookRejected,
)
from app.payments.providers.cryptopay import CryptoPayProvider
from tests.emulators.cryptopay import CryptoPayEmulator
from tests.emulators.harness import Plug, serve
from tests.emulators.payments_common import Delivery

FAST = RetryPolicy(attempts=2, base_delay=0.001, max_delay=0.005, max_retry_after=1.0)


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[Plug, str]]:
    slot = Plug()
    with serve(slot) as base_url:
        yield slot, base_url


@dataclass
class Env:
    provider: CryptoPayProvider
    crypto: CryptoPayEmulator
    base_url: str


@pytest.fixture
async def env(server: tuple[Plug, str]) -> AsyncIterator[Env]:
    reset_breakers()
    slot, base_url = server
    crypto = CryptoPayEmulator()
    slot.app = crypto.app
    # The production timeout: a busy machine is slow, not down.
    provider = CryptoPayProvider(base_url + "/api", crypto.token, retry=FAST)
    yield Env(provider, crypto, base_url)
    await provider.aclose()
    slot.app = None
    reset_breakers()


def order(**overrides: Any) -> CheckoutOrder:
    fields: dict[str, Any] = {
        "order_id": "pay_c0ffee",
        "idempotency_key": "idem-c0ffee",
        "amount": Money.of("299.00", "RUB"),
        "description": "VPN 30 дней",
        "user_id": 1,
        "telegram_id": 1001,
        "return_url": "https://shop.example/pay/return/pay_c0ffee",
        "expires_at": datetime.now(UTC) + timedelta(hours=1),
    }
    return CheckoutOrder(**(fields | overrides))


def incoming(delivery: Delivery) -> IncomingWebhook:
    return IncomingWebhook(
        body=delivery.body, headers={k.lower(): v for k, v in delivery.headers.items()}, peer_ip=delivery.peer_ip
    )


async def checkout_and_pay(env: Env, **pay: Any) -> tuple[str, Delivery]:
    checkout = await env.provider.create_checkout(order())
    assert checkout.external_id is not None
    return checkout.external_id, env.crypto.pay(checkout.external_id, **pay)


def test_implements_the_interface() -> None:
    assert isinstance(CryptoPayProvider("https://pay.crypt.bot/api", "t"), PaymentProvider)
    assert CryptoPayProvider.currencies == frozenset({"USDT", "TON", "RUB", "USD", "EUR"})
    assert not (CryptoPayProvider.supports_refunds or CryptoPayProvider.supports_recurring)


# --- checkout -------------------------------------------------------------------------------------------------


async def test_fiat_price_becomes_a_fiat_invoice(env: Env) -> None:
    checkout = await env.provider.create_checkout(order())

    [call] = env.crypto.calls("createInvoice")
    assert (call.method, call.headers["crypto-pay-api-token"]) == ("POST", env.crypto.token)
    params = call.params
    assert (params["currency_type"], params["fiat"], params["accepted_assets"]) == ("fiat", "RUB", "USDT,TON")
    assert params["amount"] == "299" and isinstance(params["amount"], str)
    assert params["payload"] == "pay_c0ffee"
    assert 3590 <= params["expires_in"] <= 3600
    assert (params["paid_btn_name"], params["paid_btn_url"]) == ("callback", order().return_url)
    assert "asset" not in params
    invoice = env.crypto.invoices[int(checkout.external_id or 0)]
    assert checkout.pay_url == f"https://t.me/CryptoBot/app?startapp=invoice-{invoice.hash}&mode=compact"
    assert checkout.expires_at is not None and abs(checkout.expires_at - order().expires_at) < timedelta(seconds=5)
    assert checkout.details["bot_invoice_url"] == f"https://t.me/CryptoBot?start={invoice.hash}"


async def test_crypto_price_becomes_a_crypto_invoice(env: Env) -> None:
    await env.provider.create_checkout(order(amount=Money.of("4.50", "USDT")))

    [call] = env.crypto.calls("createInvoice")
    assert (call.params["currency_type"], call.params["asset"], call.params["amount"]) == ("crypto", "USDT", "4.5")
    assert "fiat" not in call.params and "accepted_assets" not in call.params


async def test_configured_assets_are_accepted(env: Env) -> None:
    provider = CryptoPayProvider(env.base_url + "/api", env.crypto.token, accepted_assets=["ton", " BTC"], retry=FAST)
    try:
        await provider.create_checkout(order())
    finally:
        await provider.aclose()
    assert env.crypto.calls("createInvoice")[0].params["accepted_assets"] == "TON,BTC"


async def test_expires_in_stays_within_limits(env: Env) -> None:
    await env.provider.create_checkout(order(expires_at=datetime.now(UTC) + timedelta(days=90)))
    await env.provider.create_checkout(order(expires_at=datetime.now(UTC) - timedelta(minutes=1)))
    first, second = env.crypto.calls("createInvoice")
    assert (first.params["expires_in"], second.params["expires_in"]) == (2_678_400, 1)


async def test_unsupported_currency_is_refused_without_a_call(env: Env) -> None:
    with pytest.raises(CheckoutRejected, match="INR"):
        await env.provider.create_checkout(order(amount=Money.of("500.00", "INR")))
    assert env.crypto.requests == []


async def test_api_error_becomes_checkout_rejected(env: Env) -> None:
    with pytest.raises(CheckoutRejected, match="PAYLOAD_TOO_LONG"):
        await env.provider.create_checkout(order(order_id="x" * 5000))


async def test_wrong_token_is_named(env: Env) -> None:
    provider = CryptoPayProvider(env.base_url + "/api", "1:wrong", retry=FAST)
    try:
        with pytest.raises(CheckoutRejected, match="token was refused"):
            await provider.create_checkout(order())
    finally:
        await provider.aclose()


@pytest.mark.parametrize("status", [500, 503, 429])
async def test_failures_that_persist_are_provider_unavailable(env: Env, status: int) -> None:
    env.crypto.fail_next(status, retry_after=0 if status == 429 else None, times=2)
    with pytest.raises(ProviderUnavailable):
        await env.provider.create_checkout(order())
    assert env.crypto.counts["createInvoice"] == 2


async def test_long_retry_after_is_not_waited_for(env: Env) -> None:
    env.crypto.fail_next(429, retry_after=60)
    with pytest.raises(ProviderUnavailable):
        await env.provider.create_checkout(order())
    assert env.crypto.counts["createInvoice"] == 1


async def test_timeout_is_provider_unavailable(env: Env) -> None:
    provider = CryptoPayProvider(env.base_url + "/api", env.crypto.token, retry=FAST, timeout=0.2)
    env.crypto.delay_next(2.0, times=2)
    try:
        with pytest.raises(ProviderUnavailable):
            await provider.create_checkout(order())
    finally:
        await provider.aclose()


# --- webhooks -------------------------------------------------------------------------------------------------


async def test_paid_webhook_is_a_succeeded_update_at_the_invoice_price(env: Env) -> None:
    invoice_id, delivery = await checkout_and_pay(env, paid_asset="TON")

    [update] = (await env.provider.parse_webhook(incoming(delivery))).updates

    assert update.state is PaymentState.SUCCEEDED
    assert update.amount == Money.of("299.00", "RUB")
    assert (update.external_id, update.order_id, update.method) == (invoice_id, "pay_c0ffee", "TON")
    assert (update.event_id, update.kind) == (f"invoice_paid:{invoice_id}", "invoice_paid")
    assert update.paid_at is not None and abs(update.paid_at - datetime.now(UTC)) < timedelta(minutes=1)
    assert update.raw["paid_amount"] == "0.664444"  # what was actually sent stays in raw
    json.dumps(dict(update.raw))


async def test_redelivery_has_the_same_event_id(env: Env) -> None:
    _, delivery = await checkout_and_pay(env)
    first = (await env.provider.parse_webhook(incoming(delivery))).updates
    second = (await env.provider.parse_webhook(incoming(delivery))).updates
    assert first[0].event_id == second[0].event_id


async def test_signature_is_over_the_raw_compact_body(env: Env) -> None:
    _, delivery = await checkout_and_pay(env)
    assert b'"update_type":"invoice_paid"' in delivery.body and "дней".encode() in delivery.body
    key = hashlib.sha256(env.crypto.token.encode()).digest()
    assert delivery.headers["crypto-pay-api-signature"] == hmac.new(key, delivery.body, hashlib.sha256).hexdigest()
    reserialised = json.dumps(json.loads(delivery.body)).encode()  # spaces and \u escapes: other bytes
    with pytest.raises(WebhookRejected):
        await env.provider.parse_webhook(incoming(Delivery(reserialised, delivery.headers)))


async def test_wrong_amount_is_reported_faithfully(env: Env) -> None:
    invoice_id, delivery = await checkout_and_pay(env, amount=Decimal("1"), currency="USD")

    [update] = (await env.provider.parse_webhook(incoming(delivery))).updates

    assert update.amount == Money.of("1.00", "USD")
    fetched = await env.provider.fetch(invoice_id, "pay_c0ffee")
    assert fetched is not None and fetched.amount == Money.of("1.00", "USD")


async def test_crypto_invoice_is_reported_in_its_asset(env: Env) -> None:
    await env.provider.create_checkout(order(amount=Money.of("4.50", "USDT")))
    [update] = (await env.provider.parse_webhook(incoming(env.crypto.pay("pay_c0ffee")))).updates
    assert (update.amount, update.method) == (Money.of("4.5", "USDT"), "USDT")


async def test_forged_signature_is_rejected(env: Env) -> None:
    _, delivery = await checkout_and_pay(env)
    with pytest.raises(WebhookRejected) as caught:
        await env.provider.parse_webhook(incoming(env.crypto.forged(delivery)))
    assert caught.value.status_code == 401


async def test_tampered_body_is_rejected(env: Env) -> None:
    _, delivery = await checkout_and_pay(env)
    with pytest.raises(WebhookRejected) as caught:
        await env.provider.parse_webhook(incoming(delivery.tampered()))
    assert caught.value.status_code == 401


@pytest.mark.parametrize("value", [None, "", "zz" * 32])
async def test_missing_or_garbled_signature_is_rejected(env: Env, value: str | None) -> None:
    _, delivery = await checkout_and_pay(env)
    name = "crypto-pay-api-signature"
    broken = delivery.without_header(name) if value is None else delivery.with_header(name, value)
    with pytest.raises(WebhookRejected) as caught:
        await env.provider.parse_webhook(incoming(broken))
    assert caught.value.status_code == 401


async def test_signature_keyed_with_the_plain_token_is_rejected(env: Env) -> None:
    _, delivery = await checkout_and_pay(env)
    wrong = hmac.new(env.crypto.token.encode(), delivery.body, hashlib.sha256).hexdigest()
    with pytest.raises(WebhookRejected):
        await env.provider.parse_webhook(incoming(delivery.with_header("crypto-pay-api-signature", wrong)))


INVOICE = {"invoice_id": 7, "status": "paid", "currency_type": "fiat", "fiat": "RUB", "amount": "299"}


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[]",
        b'{"update_id": 1}',
        json.dumps({"update_type": "invoice_paid", "payload": "x"}).encode(),
        json.dumps({"update_type": "invoice_paid", "payload": INVOICE | {"invoice_id": "7"}}).encode(),
        json.dumps({"update_type": "invoice_paid", "payload": INVOICE | {"amount": None}}).encode(),
        json.dumps({"update_type": "invoice_paid", "payload": INVOICE | {"amount": "many"}}).encode(),
        json.dumps({"update_type": "invoice_paid", "payload": INVOICE | {"fiat": None}}).encode(),
    ],
)
async def test_malformed_signed_body_is_400(env: Env, body: bytes) -> None:
    with pytest.raises(WebhookRejected) as caught:
        await env.provider.parse_webhook(incoming(env.crypto.signed(body)))
    assert caught.value.status_code == 400


async def test_other_update_types_are_acknowledged_empty(env: Env) -> None:
    body = json.dumps({"update_id": 9, "update_type": "check_activated", "payload": {}}).encode()
    result = await env.provider.parse_webhook(incoming(env.crypto.signed(body)))
    assert result.updates == []


# --- fetch ----------------------------------------------------------------------------------------------------


async def test_fetch_paid_matches_the_webhook_event(env: Env) -> None:
    invoice_id, delivery = await checkout_and_pay(env)
    [from_webhook] = (await env.provider.parse_webhook(incoming(delivery))).updates

    update = await env.provider.fetch(invoice_id, "pay_c0ffee")

    assert update is not None
    assert (update.state, update.event_id, update.kind) == (PaymentState.SUCCEEDED, from_webhook.event_id, "fetch")
    assert (update.amount, update.order_id, update.method) == (from_webhook.amount, "pay_c0ffee", "USDT")
    [call] = env.crypto.calls("getInvoices")
    assert call.params["invoice_ids"] == invoice_id


async def test_fetch_active_is_pending(env: Env) -> None:
    checkout = await env.provider.create_checkout(order())
    update = await env.provider.fetch(checkout.external_id, "pay_c0ffee")
    assert update is not None and update.state is PaymentState.PENDING
    assert update.method is None and update.paid_at is None


@pytest.mark.parametrize("how", ["expire", "clock"])
async def test_fetch_expired_is_cancelled(env: Env, how: str) -> None:
    checkout = await env.provider.create_checkout(order())
    if how == "expire":
        env.crypto.expire("pay_c0ffee")
    else:
        env.crypto.advance(3601)
    update = await env.provider.fetch(checkout.external_id, "pay_c0ffee")
    assert update is not None and update.state is PaymentState.CANCELLED
    assert update.event_id == f"invoice_expired:{checkout.external_id}"
    with pytest.raises(ValueError, match="expired"):
        env.crypto.pay("pay_c0ffee")


async def test_fetch_unknown_or_without_id_is_none(env: Env) -> None:
    assert await env.provider.fetch("999999", "pay_c0ffee") is None
    assert await env.provider.fetch(None, "pay_c0ffee") is None
    assert env.crypto.counts["getInvoices"] == 1


async def test_fetch_failures_are_provider_unavailable(env: Env) -> None:
    checkout = await env.provider.create_checkout(order())
    env.crypto.fail_next(500, times=2)
    with pytest.raises(ProviderUnavailable):
        await env.provider.fetch(checkout.external_id, "pay_c0ffee")


async def test_fetch_with_a_refused_token_is_unavailable(env: Env) -> None:
    provider = CryptoPayProvider(env.base_url + "/api", "1:wrong", retry=FAST)
    try:
        with pytest.raises(ProviderUnavailable, match="token"):
            await provider.fetch("528890", "pay_c0ffee")
    finally:
        await provider.aclose()


async def test_refunds_saved_methods_and_recurring_are_not_supported(env: Env) -> None:
    with pytest.raises(NotSupported):
        await env.provider.refund("1", Money.of("1.00", "RUB"), idempotency_key="k", user_telegram_id=1)
    with pytest.raises(NotSupported):
        await env.provider.charge_saved(order(), "secret")
    with pytest.raises(NotSupported):
        await env.provider.cancel_recurring("secret", user_telegram_id=1)


# --- settings and the emulator itself -------------------------------------------------------------------------


async def test_from_settings(env: Env) -> None:
    assert CryptoPayProvider.from_settings(Settings(_env_file=None, demo_mode=True)) is None
    settings = Settings(
        _env_file=None, demo_mode=True, **env.crypto.settings(env.base_url) | {"cryptopay_assets": "TON"}
    )
    provider = CryptoPayProvider.from_settings(settings)
    assert provider is not None
    try:
        await provider.create_checkout(order())
    finally:
        await provider.aclose()
    assert env.crypto.calls("createInvoice")[0].params["accepted_assets"] == "TON"


async def test_emulator_api_shapes(env: Env) -> None:
    async with httpx.AsyncClient(base_url=env.base_url + "/api") as client:
        token = {"Crypto-Pay-API-Token": env.crypto.token}
        unauthorized = await client.get("/getMe")
        me = await client.get("/getMe", headers=token)
        bad_expiry = await client.get(
            "/createInvoice", params={"asset": "USDT", "amount": "1", "expires_in": "0"}, headers=token
        )
        created = await client.post(
            "/createInvoice", data={"currency_type": "crypto", "asset": "TON", "amount": "2"}, headers=token
        )
        invoice_id = created.json()["result"]["invoice_id"]
        active = await client.get("/getInvoices", params={"status": "active"}, headers=token)
        deleted = await client.post("/deleteInvoice", json={"invoice_id": invoice_id}, headers=token)
        again = await client.post("/deleteInvoice", json={"invoice_id": invoice_id}, headers=token)
        listed = await client.get("/getInvoices", params={"invoice_ids": str(invoice_id)}, headers=token)
    assert unauthorized.json() == {"ok": False, "error": {"code": 401, "name": "UNAUTHORIZED"}}
    assert me.json()["result"]["app_id"] == 12345
    assert bad_expiry.json()["error"]["name"] == "EXPIRES_IN_INVALID"
    assert created.json()["result"]["status"] == "active"
    assert [i["invoice_id"] for i in active.json()["result"]["items"]] == [invoice_id]
    assert deleted.json() == {"ok": True, "result": True}
    assert again.json()["error"]["name"] == "INVOICE_NOT_FOUND"
    assert listed.json()["result"]["items"] == []


async def test_emulator_control_endpoint_delivers_with_retries(env: Env) -> None:
    received: list[tuple[bytes, dict[str, str]]] = []
    receiver = FastAPI()

    @receiver.post("/hook")
    async def hook(request: Request) -> Response:
        received.append((await request.body(), dict(request.headers)))
        return Response(status_code=503 if len(received) == 1 else 200)

    checkout = await env.provider.create_checkout(order())
    with serve(receiver) as receiver_url:
        async with httpx.AsyncClient(base_url=env.base_url) as client:
            await client.post("/_emu/cryptopay/webhook-url", json={"url": receiver_url + "/hook"})
            answer = await client.post(
                f"/_emu/cryptopay/invoices/{checkout.external_id}/pay", json={"paid_asset": "TON"}
            )

    assert answer.json()["delivered"] == 200
    assert len(received) == 2
    body, headers = received[-1]
    [update] = (await env.provider.parse_webhook(IncomingWebhook(body, headers, "127.0.0.1"))).updates
    assert (update.state, update.method, update.external_id) == (PaymentState.SUCCEEDED, "TON", checkout.external_id)
