"""XenditProvider against the Xendit emulator over real HTTP (shared/reference/payments_api.md §7, §10.6)."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from app.kit.clock import utcnow
from app.kit.http import CircuitBreaker, HttpClient, RetryPolicy, reset_breakers
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
    ProviderUpdate,
    WebhookRejected,
)
from app.payments.providers.xendit import XenditProvider
from tests.conftest import make_settings
from tests.emulators.harness import Plug, serve
from tests.emulators.payments_common import Delivery
from tests.emulators.xendit import XenditEmulator

INVOICES = "POST /v2/invoices"
GET_INVOICE = "GET /v2/invoices/{invoice_id}"
QR_CODES = "POST /qr_codes"
QR_PAYMENTS = "GET /qr_codes/{qr_id}/payments"


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[Plug, str]]:
    plug = Plug()
    with serve(plug) as base_url:
        yield plug, base_url


@dataclass
class Env:
    provider: XenditProvider
    emu: XenditEmulator
    base_url: str

    def make(self, **options: Any) -> XenditProvider:
        return make_provider(self.emu, self.base_url, **options)


def make_provider(
    emu: XenditEmulator,
    base_url: str,
    *,
    timeout: float = 10.0,
    attempts: int = 2,
    sleep: Any = None,
    secret_key: str | None = None,
) -> XenditProvider:
    async def no_wait(_: float) -> None:
        return None

    http = HttpClient(
        base_url,
        service="xendit",
        timeout=timeout,
        retry=RetryPolicy(attempts=attempts, base_delay=0.001),
        breaker=CircuitBreaker(),
        transport=httpx.AsyncHTTPTransport(verify=False),
        sleep=sleep or no_wait,
    )
    key = secret_key if secret_key is not None else emu.secret_key
    return XenditProvider(base_url, key, emu.callback_token, http=http)


@pytest.fixture
async def env(server: tuple[Plug, str]) -> AsyncIterator[Env]:
    reset_breakers()
    plug, base_url = server
    emu = XenditEmulator()
    plug.app = emu.app
    provider = make_provider(emu, base_url)
    try:
        yield Env(provider, emu, base_url)
    finally:
        await provider.aclose()
        plug.app = None


def order(**overrides: Any) -> CheckoutOrder:
    fields: dict[str, Any] = {
        "order_id": f"ord_{uuid.uuid4().hex[:12]}",
        "idempotency_key": f"idem-{uuid.uuid4().hex}",
        "amount": Money.of("50000", "IDR"),
        "description": "VPN, 30 days",
        "user_id": 1,
        "telegram_id": 1001,
        "return_url": "https://shop.example/pay/return",
        "expires_at": datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1),
    }
    fields.update(overrides)
    return CheckoutOrder(**fields)


def idr(amount: str) -> Money:
    return Money.of(amount, "IDR")


def incoming(delivery: Delivery) -> IncomingWebhook:
    return IncomingWebhook(
        body=delivery.body, headers={k.lower(): v for k, v in delivery.headers.items()}, peer_ip=delivery.peer_ip
    )


async def parse_one(provider: XenditProvider, delivery: Delivery) -> ProviderUpdate:
    result = await provider.parse_webhook(incoming(delivery))
    assert len(result.updates) == 1, result.updates
    return result.updates[0]


def rewritten(delivery: Delivery, **changes: Any) -> Delivery:
    """The same callback with some fields changed: what a replayed, edited request with the (static) token is."""
    data = json.loads(delivery.body)
    data.update(changes)
    return replace(delivery, body=json.dumps(data).encode())


async def invoice_for(env: Env, **fields: Any) -> tuple[CheckoutOrder, str]:
    the_order = order(**fields)
    return the_order, (await env.provider.create_checkout(the_order)).external_id or ""


# --- the interface --------------------------------------------------------------------------------------------


def test_declares_what_xendit_can_do(env: Env) -> None:
    assert isinstance(env.provider, PaymentProvider)
    cls = XenditProvider
    assert (cls.name, cls.currencies, cls.methods) == ("xendit", frozenset({"IDR", "PHP"}), ("invoice", "qris"))
    assert (cls.supports_refunds, cls.supports_saved_methods, cls.supports_recurring) == (False, False, False)


@pytest.mark.parametrize("missing", ["xendit_secret_key", "xendit_callback_token"])
def test_from_settings_needs_both_credentials(missing: str) -> None:
    values = {"xendit_secret_key": "xnd_development_1", "xendit_callback_token": "token"}
    assert XenditProvider.from_settings(make_settings("sqlite+aiosqlite:///:memory:", **values)) is not None
    values[missing] = ""
    assert XenditProvider.from_settings(make_settings("sqlite+aiosqlite:///:memory:", **values)) is None


async def test_from_settings_talks_to_the_configured_api(env: Env) -> None:
    settings = make_settings("sqlite+aiosqlite:///:memory:", **env.emu.settings(env.base_url))
    provider = XenditProvider.from_settings(settings)
    assert provider is not None
    try:
        checkout = await provider.create_checkout(order())
        update = await parse_one(provider, env.emu.pay(checkout.external_id or ""))
    finally:
        await provider.aclose()
    assert update.state is PaymentState.SUCCEEDED


async def test_what_the_invoice_api_cannot_do_is_not_supported(env: Env) -> None:
    with pytest.raises(NotSupported, match="refund"):
        await env.provider.refund("inv", idr("1"), idempotency_key="k", user_telegram_id=1)
    with pytest.raises(NotSupported):
        await env.provider.charge_saved(order(), "secret")
    with pytest.raises(NotSupported):
        await env.provider.cancel_recurring("secret", user_telegram_id=1)
    assert not env.emu.requests


# --- checkout: invoices ---------------------------------------------------------------------------------------


async def test_checkout_creates_an_invoice(env: Env) -> None:
    the_order = order()

    checkout = await env.provider.create_checkout(the_order)

    call = env.emu.last(INVOICES)
    body = call.json
    assert body["external_id"] == the_order.order_id
    assert body["amount"] == 50000 and isinstance(body["amount"], int)
    assert (body["currency"], body["description"]) == ("IDR", "VPN, 30 days")
    assert 3590 <= body["invoice_duration"] <= 3600
    assert body["success_redirect_url"] == body["failure_redirect_url"] == the_order.return_url
    assert call.headers["x-idempotency-key"] == the_order.idempotency_key
    assert call.headers["authorization"] == "Basic " + base64.b64encode(f"{env.emu.secret_key}:".encode()).decode()
    invoice = env.emu.invoices[checkout.external_id or ""]
    assert checkout.pay_url == invoice["invoice_url"]
    assert checkout.details == {"kind": "invoice"}
    assert checkout.expires_at is not None and abs(checkout.expires_at - the_order.expires_at) < timedelta(seconds=10)


async def test_php_centavos_go_out_as_an_exact_number(env: Env) -> None:
    checkout = await env.provider.create_checkout(order(amount=Money.of("99.50", "PHP")))

    assert b'"amount": 99.50' in env.emu.last(INVOICES).body
    assert env.emu.invoices[checkout.external_id or ""]["amount"] == Decimal("99.50")


async def test_a_non_whole_idr_amount_is_refused_before_xendit_truncates_it(env: Env) -> None:
    with pytest.raises(CheckoutRejected, match="whole rupiah"):
        await env.provider.create_checkout(order(amount=idr("4550.50")))
    assert not env.emu.requests


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"amount": Money.of("10.00", "INR")}, "IDR or PHP"),
        ({"amount": Money.of("10.00", "PHP"), "method": "qris"}, "QRIS takes IDR"),
        ({"method": "bank_card"}, "unknown method"),
        ({"amount": idr("0")}, "positive"),
    ],
)
async def test_orders_xendit_cannot_take_are_refused_before_calling(
    env: Env, fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(CheckoutRejected, match=message):
        await env.provider.create_checkout(order(**fields))
    assert not env.emu.requests


async def test_a_repeated_create_returns_the_same_invoice(env: Env, freeze) -> None:
    # The body carries the seconds left until the order expires: a create repeated in the same instant (a retry)
    # sends the same body. The clock stands still so the two calls cannot straddle a second and differ.
    freeze(utcnow())
    the_order = order()

    first = await env.provider.create_checkout(the_order)
    second = await env.provider.create_checkout(the_order)

    assert first == second
    assert len(env.emu.invoices) == 1 and env.emu.requests[INVOICES] == 2


async def test_the_idempotency_key_reused_for_another_order_is_rejected(env: Env) -> None:
    the_order = order()
    await env.provider.create_checkout(the_order)

    with pytest.raises(CheckoutRejected, match="idempotency key"):
        await env.provider.create_checkout(order(idempotency_key=the_order.idempotency_key))


async def test_a_refusal_becomes_checkout_rejected_with_its_message(env: Env) -> None:
    env.emu.fail_next(400)

    with pytest.raises(CheckoutRejected, match="xendit: Bad request"):
        await env.provider.create_checkout(order())
    assert env.emu.requests[INVOICES] == 1


async def test_a_500_is_retried_with_the_same_idempotency_key(env: Env) -> None:
    the_order = order()
    env.emu.fail_next(500)

    await env.provider.create_checkout(the_order)

    keys = [call.headers["x-idempotency-key"] for call in env.emu.calls(INVOICES)]
    assert keys == [the_order.idempotency_key] * 2
    assert len(env.emu.invoices) == 1


@pytest.mark.parametrize("status", [500, 503, 429])
async def test_a_provider_that_keeps_failing_is_unavailable(env: Env, status: int) -> None:
    env.emu.fail_next(status, retry_after=0 if status == 429 else None, times=5)

    with pytest.raises(ProviderUnavailable):
        await env.provider.create_checkout(order())
    assert env.emu.requests[INVOICES] == 2 and not env.emu.invoices


async def test_retry_after_of_a_429_is_honoured(env: Env) -> None:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    provider = env.make(sleep=sleep)
    env.emu.fail_next(429, retry_after=4)
    try:
        await provider.create_checkout(order())
    finally:
        await provider.aclose()
    assert waits == [4.0]


async def test_a_timeout_is_unavailable(env: Env) -> None:
    provider = env.make(timeout=0.2, attempts=1)
    env.emu.delay_next(2.0)
    try:
        with pytest.raises(ProviderUnavailable):
            await provider.create_checkout(order())
    finally:
        await provider.aclose()


async def test_a_wrong_secret_key_is_unavailable_not_a_customer_error(env: Env) -> None:
    provider = env.make(secret_key="xnd_development_wrong")
    try:
        with pytest.raises(ProviderUnavailable, match="INVALID_API_KEY"):
            await provider.create_checkout(order())
    finally:
        await provider.aclose()
    assert not env.emu.invoices


# --- checkout: QRIS -------------------------------------------------------------------------------------------


async def test_qris_checkout_creates_a_dynamic_qr_code(env: Env) -> None:
    the_order = order(method="qris")

    checkout = await env.provider.create_checkout(the_order)

    call = env.emu.last(QR_CODES)
    assert call.headers["api-version"] == "2022-07-31"
    assert call.headers["x-idempotency-key"] == the_order.idempotency_key
    body = call.json
    assert (body["reference_id"], body["type"], body["currency"]) == (the_order.order_id, "DYNAMIC", "IDR")
    assert body["amount"] == 50000 and isinstance(body["amount"], int)
    assert datetime.fromisoformat(body["expires_at"]) == the_order.expires_at
    qr = env.emu.qr_codes[checkout.external_id or ""]
    assert checkout.pay_url is None
    assert checkout.details == {"qr_string": qr["qr_string"], "kind": "qris"}
    assert checkout.expires_at == the_order.expires_at
    assert env.emu.requests[INVOICES] == 0


# --- webhooks: invoices ---------------------------------------------------------------------------------------


async def test_a_paid_invoice_callback_is_confirmed_by_the_api(env: Env) -> None:
    the_order, invoice_id = await invoice_for(env)
    delivery = env.emu.pay(invoice_id)

    update = await parse_one(env.provider, delivery)

    assert update.state is PaymentState.SUCCEEDED and update.kind == "invoice"
    assert (update.external_id, update.order_id, update.amount) == (invoice_id, the_order.order_id, idr("50000"))
    assert update.method == "QRIS" and update.paid_at is not None
    assert update.event_id == delivery.headers["webhook-id"]
    assert env.emu.requests[GET_INVOICE] == 1


async def test_a_redelivery_keeps_its_event_id(env: Env) -> None:
    _, invoice_id = await invoice_for(env)
    delivery = env.emu.pay(invoice_id)

    first = await parse_one(env.provider, delivery)
    again = await parse_one(env.provider, delivery)
    settled = await parse_one(env.provider, env.emu.settle(invoice_id))

    assert first.event_id == again.event_id
    assert settled.state is PaymentState.SUCCEEDED and settled.event_id != first.event_id


async def test_without_a_webhook_id_the_event_id_is_the_invoice_and_status(env: Env) -> None:
    _, invoice_id = await invoice_for(env)
    delivery = env.emu.pay(invoice_id).without_header("webhook-id")

    first = await parse_one(env.provider, delivery)
    again = await parse_one(env.provider, delivery)

    assert first.event_id == again.event_id == f"{invoice_id}:PAID"


@pytest.mark.parametrize(("spoil", "status"), [("missing", 401), ("forged", 403), ("empty", 401)])
async def test_a_callback_without_the_right_token_is_rejected(env: Env, spoil: str, status: int) -> None:
    _, invoice_id = await invoice_for(env)
    delivery = env.emu.pay(invoice_id)
    bad = {
        "missing": delivery.without_header("x-callback-token"),
        "forged": env.emu.forged(delivery),
        "empty": delivery.with_header("x-callback-token", ""),
    }[spoil]

    with pytest.raises(WebhookRejected) as caught:
        await env.provider.parse_webhook(incoming(bad))
    assert caught.value.status_code == status
    assert env.emu.requests[GET_INVOICE] == 0  # refused before anything else


async def test_a_tampered_callback_is_rejected_by_the_re_fetch(env: Env) -> None:
    _, invoice_id = await invoice_for(env)
    tampered = env.emu.pay(invoice_id).tampered()
    assert json.loads(tampered.body)["id"] != invoice_id

    with pytest.raises(WebhookRejected) as caught:
        await env.provider.parse_webhook(incoming(tampered))
    assert caught.value.status_code == 400


async def test_a_callback_lying_about_the_amount_gets_the_apis_amount(env: Env) -> None:
    the_order, invoice_id = await invoice_for(env)
    delivery = env.emu.pay(invoice_id)

    update = await parse_one(env.provider, rewritten(delivery, amount=1, paid_amount=1, external_id="ord_other"))

    assert (update.amount, update.order_id) == (idr("50000"), the_order.order_id)


async def test_a_callback_claiming_paid_for_an_unpaid_invoice_changes_nothing(env: Env) -> None:
    _, invoice_id = await invoice_for(env)
    other_id = (await env.provider.create_checkout(order())).external_id
    delivery = rewritten(env.emu.pay(invoice_id), id=other_id)

    result = await env.provider.parse_webhook(incoming(delivery))

    assert result.updates == []


async def test_a_wrong_paid_amount_is_reported_faithfully(env: Env) -> None:
    the_order, invoice_id = await invoice_for(env)

    update = await parse_one(env.provider, env.emu.pay(invoice_id, amount=Decimal("1000")))
    fetched = await env.provider.fetch(invoice_id, the_order.order_id)

    assert update.amount == idr("1000")
    assert fetched is not None and fetched.amount == idr("1000")


async def test_a_wrong_currency_is_reported_faithfully(env: Env) -> None:
    _, invoice_id = await invoice_for(env)

    update = await parse_one(env.provider, env.emu.pay(invoice_id, amount=Decimal("50000"), currency="PHP"))

    assert update.amount == Money.of("50000", "PHP")


async def test_an_expired_invoice_cancels(env: Env) -> None:
    the_order, invoice_id = await invoice_for(env)

    update = await parse_one(env.provider, env.emu.expire(invoice_id))

    assert update.state is PaymentState.CANCELLED
    assert (update.external_id, update.order_id, update.amount) == (invoice_id, the_order.order_id, None)


async def test_when_the_api_cannot_confirm_the_callback_fails(env: Env) -> None:
    _, invoice_id = await invoice_for(env)
    delivery = env.emu.pay(invoice_id)
    env.emu.fail_next(503, times=5)

    with pytest.raises(ProviderUnavailable):
        await env.provider.parse_webhook(incoming(delivery))


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"[1, 2]", b'"PAID"', b'{"status": "PAID"}', b'{"id": "abc"}', b'{"id": 5, "status": "PAID"}'],
)
async def test_malformed_callbacks_are_rejected_with_400(env: Env, body: bytes) -> None:
    delivery = Delivery(body=body, headers={"x-callback-token": env.emu.callback_token, "webhook-id": "w1"})

    with pytest.raises(WebhookRejected) as caught:
        await env.provider.parse_webhook(incoming(delivery))
    assert caught.value.status_code == 400


@pytest.mark.parametrize("event", ["qr.created", "payment.succeeded", "recurring.plan.activated"])
async def test_events_we_do_not_act_on_are_acknowledged_empty(env: Env, event: str) -> None:
    delivery = env.emu.callback({"event": event, "data": {"id": "x"}, "business_id": env.emu.business_id})

    assert (await env.provider.parse_webhook(incoming(delivery))).updates == []
    assert not env.emu.requests


# --- webhooks: QRIS -------------------------------------------------------------------------------------------


async def test_a_qr_payment_is_confirmed_by_the_api(env: Env) -> None:
    the_order, qr_id = await invoice_for(env, method="qris")
    delivery = env.emu.pay(qr_id)

    update = await parse_one(env.provider, delivery)

    assert update.state is PaymentState.SUCCEEDED and update.kind == "qr.payment"
    assert (update.external_id, update.order_id, update.amount) == (qr_id, the_order.order_id, idr("50000"))
    assert (update.method, update.event_id) == ("QRIS", delivery.headers["webhook-id"])
    assert env.emu.requests[QR_PAYMENTS] == 1
    assert env.emu.last(QR_PAYMENTS).headers["api-version"] == "2022-07-31"


async def test_a_qr_payment_of_another_amount_is_reported_faithfully(env: Env) -> None:
    the_order, qr_id = await invoice_for(env, method="qris")

    update = await parse_one(env.provider, env.emu.pay(the_order.order_id, amount=Decimal("49000")))

    assert (update.amount, update.external_id) == (idr("49000"), qr_id)


async def test_a_qr_callback_is_checked_like_an_invoice_callback(env: Env) -> None:
    _, qr_id = await invoice_for(env, method="qris")
    delivery = env.emu.pay(qr_id)
    data = json.loads(delivery.body)["data"]

    for bad, status in [(env.emu.forged(delivery), 403), (delivery.tampered(), 400)]:
        with pytest.raises(WebhookRejected) as caught:
            await env.provider.parse_webhook(incoming(bad))
        assert caught.value.status_code == status
    lying = rewritten(delivery, data={**data, "amount": 1})
    assert (await parse_one(env.provider, lying)).amount == idr("50000")
    event_id = (await parse_one(env.provider, delivery.without_header("webhook-id"))).event_id
    assert event_id == f"{data['id']}:SUCCEEDED"


# --- fetch ----------------------------------------------------------------------------------------------------


async def test_fetch_follows_an_invoice(env: Env) -> None:
    the_order, invoice_id = await invoice_for(env)

    pending = await env.provider.fetch(invoice_id, the_order.order_id)
    env.emu.pay(invoice_id, method="OVO")
    paid = await env.provider.fetch(invoice_id, the_order.order_id)
    by_order = await env.provider.fetch(None, the_order.order_id)

    assert pending is not None and pending.state is PaymentState.PENDING and pending.amount is None
    assert paid is not None and paid.state is PaymentState.SUCCEEDED
    assert (paid.external_id, paid.order_id, paid.amount, paid.method) == (
        invoice_id,
        the_order.order_id,
        idr("50000"),
        "OVO",
    )
    assert by_order is not None and by_order.external_id == invoice_id and by_order.event_id == paid.event_id
    assert paid.event_id != pending.event_id


async def test_fetch_sees_an_invoice_expire(env: Env) -> None:
    the_order, invoice_id = await invoice_for(env)
    env.emu.advance(2 * 3600)

    update = await env.provider.fetch(invoice_id, the_order.order_id)

    assert update is not None and update.state is PaymentState.CANCELLED


async def test_fetch_of_what_xendit_does_not_know(env: Env) -> None:
    assert await env.provider.fetch("65fc0000000000000000dead", "ord_x") is None
    assert await env.provider.fetch(None, "ord_never_created") is None
    assert await env.provider.fetch("qr_unknown", "ord_x") is None


async def test_fetch_follows_a_qr_code(env: Env) -> None:
    the_order, qr_id = await invoice_for(env, method="qris")
    _, stale_qr = await invoice_for(env, method="qris")

    pending = await env.provider.fetch(qr_id, the_order.order_id)
    env.emu.pay(qr_id)
    paid = await env.provider.fetch(qr_id, the_order.order_id)
    env.emu.advance(2 * 3600)
    expired = await env.provider.fetch(stale_qr, "ord_x")

    assert pending is not None and pending.state is PaymentState.PENDING
    assert paid is not None and paid.state is PaymentState.SUCCEEDED
    assert (paid.external_id, paid.order_id, paid.amount) == (qr_id, the_order.order_id, idr("50000"))
    assert expired is not None and expired.state is PaymentState.CANCELLED


async def test_fetch_when_xendit_is_down(env: Env) -> None:
    env.emu.fail_next(500, times=5)

    with pytest.raises(ProviderUnavailable):
        await env.provider.fetch("65fc0000000000000000beef", "ord_x")


# --- the emulator's endpoints that send callbacks -------------------------------------------------------------


class Shop:
    """A webhook receiver that fails the first `failures` deliveries, as an app that is briefly down would."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.received: list[IncomingWebhook] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        self.received.append(IncomingWebhook(body=message.get("body", b""), headers=headers, peer_ip="127.0.0.1"))
        status = 500 if len(self.received) <= self.failures else 200
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})


async def test_control_endpoint_pays_and_retries_the_delivery(env: Env) -> None:
    _, invoice_id = await invoice_for(env)
    shop = Shop(failures=2)
    with serve(shop) as shop_url:
        env.emu.webhook_url = f"{shop_url}/webhooks/xendit"
        async with httpx.AsyncClient() as client:
            reply = await client.post(f"{env.base_url}/_emu/xendit/invoices/{invoice_id}/pay", json={"amount": 7})

    assert reply.status_code == 200 and reply.json()["delivered_status"] == 200
    assert len(shop.received) == 3
    assert len({hook.headers["webhook-id"] for hook in shop.received}) == 1
    update = (await env.provider.parse_webhook(shop.received[-1])).updates[0]
    assert update.amount == idr("7")


async def test_simulated_qr_payment_sends_its_callback(env: Env) -> None:
    the_order, qr_id = await invoice_for(env, method="qris")
    shop = Shop()
    auth = (env.emu.secret_key, "")
    with serve(shop) as shop_url:
        env.emu.webhook_url = shop_url
        async with httpx.AsyncClient(auth=auth) as client:
            reply = await client.post(f"{env.base_url}/qr_codes/{qr_id}/payments/simulate", json={"amount": 50000})

    assert reply.status_code == 200 and reply.json()["status"] == "SUCCEEDED"
    update = (await env.provider.parse_webhook(shop.received[0])).updates[0]
    assert (update.external_id, update.order_id) == (qr_id, the_order.order_id)


# --- the admin's connection test ------------------------------------------------------------------------------


async def test_check_connection_reads_without_changing_anything(env: Env) -> None:
    await env.provider.check_connection()
    (call,) = env.emu.calls("GET /v2/invoices")
    assert call.query == {"external_id": "vpnshop-connection-check"}
    assert not env.emu.invoices and not env.emu.qr_codes


async def test_check_connection_with_a_wrong_key_is_credentials_refused(env: Env) -> None:
    provider = env.make(secret_key="xnd_development_wrong")
    try:
        with pytest.raises(CredentialsRefused, match="INVALID_API_KEY"):
            await provider.check_connection()
    finally:
        await provider.aclose()


async def test_check_connection_with_a_key_lacking_the_permission_is_credentials_refused(env: Env) -> None:
    env.emu.key_permitted = False
    with pytest.raises(CredentialsRefused, match="REQUEST_FORBIDDEN_ERROR"):
        await env.provider.check_connection()


@pytest.mark.parametrize("status", [500, 503])
async def test_check_connection_failing_api_is_unavailable_not_refused(env: Env, status: int) -> None:
    env.emu.fail_next(status, times=2)
    with pytest.raises(ProviderUnavailable) as caught:
        await env.provider.check_connection()
    assert not isinstance(caught.value, CredentialsRefused)


async def test_check_connection_at_a_wrong_url_is_unavailable(env: Env) -> None:
    # A server that is not Xendit's API answers a bare 404: not to be taken for "no such invoice".
    provider = XenditProvider(env.base_url + "/nothing", env.emu.secret_key, env.emu.callback_token)
    try:
        with pytest.raises(ProviderUnavailable) as caught:
            await provider.check_connection()
    finally:
        await provider.aclose()
    assert not isinstance(caught.value, CredentialsRefused)
