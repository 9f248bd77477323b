"""YooKassaProvider against the YooKassa emulator over real HTTP."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from app.kit.http import CircuitBreaker, HttpClient, RetryPolicy, reset_breakers
from app.kit.money import Money
from app.payments.providers.base import (
    CheckoutOrder,
    CheckoutRejected,
    IncomingWebhook,
    PaymentProvider,
    PaymentState,
    ProviderUnavailable,
    SavedMethod,
    WebhookRejected,
)
from app.payments.providers.yookassa import YooKassaProvider
from tests.conftest import make_settings
from tests.emulators.harness import Plug, serve
from tests.emulators.payments_common import Delivery
from tests.emulators.yookassa import NOTIFIER_IP, YooKassaEmulator

CREATE = "POST /v3/payments"
GET_PAYMENT = "GET /v3/payments/{payment_id}"
GET_REFUND = "GET /v3/refunds/{refund_id}"
REFUNDS = "POST /v3/refunds"
PRICE = Money.of("299.00", "RUB")


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[Plug, str]]:
    plug = Plug()
    with ExitStack() as stack:
        yield plug, stack.enter_context(serve(plug))


class Env:
    def __init__(self, emulator: YooKassaEmulator, base_url: str) -> None:
        self.emu = emulator
        self.base_url = base_url
        self.providers: list[YooKassaProvider] = []

    def provider(
        self, *, secret: str | None = None, attempts: int = 2, timeout: float = 10.0, **options: Any
    ) -> YooKassaProvider:
        http = HttpClient(
            self.base_url + "/v3",
            service="yookassa",
            timeout=timeout,
            retry=RetryPolicy(attempts=attempts, base_delay=0.01, max_retry_after=0.05),
            breaker=CircuitBreaker(),
            transport=httpx.AsyncHTTPTransport(verify=False),
        )
        provider = YooKassaProvider(
            self.base_url + "/v3",
            self.emu.shop_id,
            secret if secret is not None else self.emu.secret_key,
            http=http,
            processing_delay=0.01,
            **options,
        )
        self.providers.append(provider)
        return provider


@pytest.fixture
def emulator_options() -> dict[str, Any]:
    return {}


@pytest.fixture
async def env(server: tuple[Plug, str], emulator_options: dict[str, Any]) -> AsyncIterator[Env]:
    reset_breakers()
    plug, base_url = server
    emulator = YooKassaEmulator(**emulator_options)
    plug.app = emulator.app
    environment = Env(emulator, base_url)
    try:
        yield environment
    finally:
        for provider in environment.providers:
            await provider.aclose()
        plug.app = None
        reset_breakers()


@pytest.fixture
def yk(env: Env) -> YooKassaProvider:
    return env.provider()


def order(number: int = 1, **overrides: Any) -> CheckoutOrder:
    fields: dict[str, Any] = {
        "order_id": f"ord_{number}",
        "idempotency_key": f"key-{number}",
        "amount": PRICE,
        "description": "VPN 30 дней",
        "user_id": 7,
        "telegram_id": 1007,
        "return_url": "https://shop.test/pay/return",
        "expires_at": datetime.now(UTC) + timedelta(hours=1),
    } | overrides
    return CheckoutOrder(**fields)


def incoming(delivery: Delivery) -> IncomingWebhook:
    return IncomingWebhook(body=delivery.body, headers=delivery.headers, peer_ip=delivery.peer_ip)


def raw_notification(event: str, obj: dict[str, Any], peer_ip: str = NOTIFIER_IP) -> IncomingWebhook:
    body = json.dumps({"type": "notification", "event": event, "object": obj}).encode()
    return IncomingWebhook(body=body, headers={"content-type": "application/json"}, peer_ip=peer_ip)


async def paid(yk: YooKassaProvider, env: Env, number: int = 1, **pay: Any) -> tuple[str, Delivery]:
    checkout = await yk.create_checkout(order(number))
    assert checkout.external_id is not None
    return checkout.external_id, env.emu.pay(checkout.external_id, **pay)


# --- configuration ----------------------------------------------------------------------------------------------


async def test_from_settings_needs_both_credentials(env: Env) -> None:
    database = "sqlite+aiosqlite:///unused.sqlite3"
    assert YooKassaProvider.from_settings(make_settings(database, yookassa_shop_id="", yookassa_secret_key="")) is None
    assert YooKassaProvider.from_settings(make_settings(database, yookassa_shop_id="100500")) is None
    configured = YooKassaProvider.from_settings(make_settings(database, **env.emu.settings(env.base_url)))
    assert isinstance(configured, YooKassaProvider)
    assert isinstance(configured, PaymentProvider)
    try:
        # The settings really point at the emulator: a checkout made through them lands there.
        checkout = await configured.create_checkout(order())
        assert checkout.external_id in env.emu.payments
    finally:
        await configured.aclose()


def test_a_bad_trusted_proxy_fails_at_startup() -> None:
    with pytest.raises(ValueError):
        YooKassaProvider("http://127.0.0.1:9/v3", "1", "s", trusted_proxies=["10.0.0.0/8", "not-an-ip"])


def test_capabilities() -> None:
    assert YooKassaProvider.name == "yookassa"
    assert YooKassaProvider.currencies == frozenset({"RUB"})
    assert YooKassaProvider.methods == ("bank_card", "sbp")
    assert YooKassaProvider.supports_refunds and not YooKassaProvider.supports_recurring
    # Saved methods only for a shop with autopayments (YooKassa enables them per shop).
    for recurring in (False, True):
        provider = YooKassaProvider("http://yk.test", "1", "k", recurring_enabled=recurring)
        assert provider.supports_saved_methods is recurring


# --- checkout ---------------------------------------------------------------------------------------------------


async def test_checkout_sends_the_documented_request(env: Env, yk: YooKassaProvider) -> None:
    checkout = await yk.create_checkout(order())

    [sent] = env.emu.requests(CREATE)
    assert sent.status == 200
    assert sent.idempotence_key == "key-1"
    assert sent.headers["authorization"].startswith("Basic ")
    assert sent.body == {
        "amount": {"value": "299.00", "currency": "RUB"},
        "capture": True,
        "confirmation": {"type": "redirect", "return_url": "https://shop.test/pay/return"},
        "description": "VPN 30 дней",
        "metadata": {"order_id": "ord_1"},
    }
    assert checkout.external_id in env.emu.payments
    assert checkout.pay_url == f"{env.base_url}/confirm/{checkout.external_id}"
    assert checkout.details["status"] == "pending"


async def test_checkout_forces_the_method_and_asks_to_save_it(env: Env) -> None:
    await env.provider(recurring_enabled=True).create_checkout(order(method="sbp", save_method=True))

    [sent] = env.emu.requests(CREATE)
    assert sent.body["payment_method_data"] == {"type": "sbp"}
    assert sent.body["save_payment_method"] is True
    assert sent.body["capture"] is True
    assert "receipt" not in sent.body


@pytest.mark.parametrize("emulator_options", [{"autopayments": False}])
async def test_a_shop_without_autopayments_is_never_asked_to_save(env: Env, yk: YooKassaProvider) -> None:
    # YooKassa enables autopayments per shop on request; a shop without them refuses a request to save.
    checkout = await yk.create_checkout(order(save_method=True))

    [sent] = env.emu.requests(CREATE)
    assert sent.status == 200 and "save_payment_method" not in sent.body
    assert checkout.external_id is not None
    # Its payment form has no "save" box either: nothing is saved, so nothing will be charged later.
    [update] = (await yk.parse_webhook(incoming(env.emu.pay(checkout.external_id, save_method=True)))).updates
    assert update.state is PaymentState.SUCCEEDED and update.saved_method is None

    # Turning recurring on before YooKassa has enabled it is the shop's mistake, named in the refusal.
    with pytest.raises(CheckoutRejected, match="Forbidden to save payment method"):
        await env.provider(recurring_enabled=True).create_checkout(order(2, save_method=True))
    assert env.emu.requests(CREATE)[-1].status == 403


async def test_a_customer_without_auto_renewal_is_never_saved(env: Env) -> None:
    checkout = await env.provider(recurring_enabled=True).create_checkout(order(save_method=False))

    [sent] = env.emu.requests(CREATE)
    assert sent.body["save_payment_method"] is False
    assert checkout.external_id is not None
    env.emu.pay(checkout.external_id, save_method=True)  # "false never saves", whatever the form shows
    assert env.emu.payments[checkout.external_id]["payment_method"]["saved"] is False


async def test_checkout_refuses_what_yookassa_cannot_take(yk: YooKassaProvider) -> None:
    with pytest.raises(CheckoutRejected, match="RUB"):
        await yk.create_checkout(order(amount=Money.of("5.00", "USD")))
    with pytest.raises(CheckoutRejected, match="method"):
        await yk.create_checkout(order(method="qris"))


async def test_the_same_idempotency_key_gives_the_same_payment(env: Env, yk: YooKassaProvider) -> None:
    first = await yk.create_checkout(order())
    again = await yk.create_checkout(order())

    assert again.external_id == first.external_id
    assert len(env.emu.payments) == 1
    assert [r.idempotence_key for r in env.emu.requests(CREATE)] == ["key-1", "key-1"]


async def test_a_202_still_processing_is_asked_again_with_the_same_key(env: Env, yk: YooKassaProvider) -> None:
    env.emu.fail_next(202)
    checkout = await yk.create_checkout(order())

    assert [(r.status, r.idempotence_key) for r in env.emu.requests(CREATE)] == [(202, "key-1"), (200, "key-1")]
    assert checkout.external_id in env.emu.payments


async def test_a_payment_that_stays_processing_is_unavailable(env: Env, yk: YooKassaProvider) -> None:
    env.emu.fail_next(202, times=5)
    with pytest.raises(ProviderUnavailable, match="processing"):
        await yk.create_checkout(order())
    assert len(env.emu.requests(CREATE)) == 3


async def test_a_500_is_retried_with_the_same_key(env: Env, yk: YooKassaProvider) -> None:
    env.emu.fail_next(500)
    checkout = await yk.create_checkout(order())

    assert [(r.status, r.idempotence_key) for r in env.emu.requests(CREATE)] == [(500, "key-1"), (200, "key-1")]
    assert list(env.emu.payments) == [checkout.external_id]


async def test_a_400_is_a_rejection_with_yookassas_description(yk: YooKassaProvider) -> None:
    with pytest.raises(CheckoutRejected, match=r"greater than 0 \(parameter amount.value\)"):
        await yk.create_checkout(order(amount=Money.of("0", "RUB")))


async def test_wrong_credentials_are_unavailable_not_a_rejection(env: Env) -> None:
    yk = env.provider(secret="test_wrong")
    with pytest.raises(ProviderUnavailable, match="refused"):
        await yk.create_checkout(order())
    assert env.emu.requests(CREATE)[0].status == 401


@pytest.mark.parametrize("status", [429, 500])
async def test_throttling_and_failures_are_unavailable(env: Env, yk: YooKassaProvider, status: int) -> None:
    env.emu.fail_next(status, retry_after=1 if status == 429 else None, times=5)
    with pytest.raises(ProviderUnavailable):
        await yk.create_checkout(order())
    assert env.emu.payments == {}


async def test_a_timeout_is_unavailable(env: Env) -> None:
    yk = env.provider(timeout=0.2, attempts=1)
    env.emu.delay_next(1.0)
    with pytest.raises(ProviderUnavailable):
        await yk.create_checkout(order())


# --- 54-FZ receipts ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("emulator_options", [{"fiscalization_enabled": True}])
async def test_a_fiscalizing_shop_refuses_a_payment_without_receipt(env: Env, yk: YooKassaProvider) -> None:
    with pytest.raises(CheckoutRejected, match="Receipt is missing or illegal"):
        await yk.create_checkout(order())


@pytest.mark.parametrize("emulator_options", [{"fiscalization_enabled": True}])
async def test_the_receipt_names_the_customer_and_sums_to_the_amount(env: Env) -> None:
    yk = env.provider(receipts_enabled=True, vat_code=11, tax_system_code=2, receipt_email="shop@vpn.test")
    await yk.create_checkout(order(1, receipt_email="user@example.com"))
    await yk.create_checkout(order(2, receipt_phone="+7 (900) 123-45-67"))
    await yk.create_checkout(order(3))

    first, second, third = (r.body["receipt"] for r in env.emu.requests(CREATE))
    assert first == {
        "customer": {"email": "user@example.com"},
        "items": [
            {
                "description": "VPN 30 дней",
                "quantity": "1.00",
                "amount": {"value": "299.00", "currency": "RUB"},
                "vat_code": 11,
                "payment_mode": "full_payment",
                "payment_subject": "service",
            }
        ],
        "tax_system_code": 2,
    }
    assert second["customer"] == {"phone": "79001234567"}
    assert third["customer"] == {"email": "shop@vpn.test"}
    assert len(env.emu.payments) == 3


async def test_a_receipt_without_any_contact_is_refused_before_calling(env: Env) -> None:
    yk = env.provider(receipts_enabled=True)
    with pytest.raises(CheckoutRejected, match="e-mail or phone"):
        await yk.create_checkout(order())
    assert env.emu.requests() == []


# --- notifications ----------------------------------------------------------------------------------------------


async def test_a_paid_notification_becomes_a_verified_update(env: Env, yk: YooKassaProvider) -> None:
    payment_id, delivery = await paid(yk, env)

    result = await yk.parse_webhook(incoming(delivery))

    [update] = result.updates
    assert update.state is PaymentState.SUCCEEDED
    assert update.kind == "payment.succeeded"
    assert update.event_id == f"payment.succeeded:{payment_id}"
    assert update.external_id == payment_id
    assert update.order_id == "ord_1"
    assert update.amount == PRICE
    assert update.method == "bank_card"
    assert update.saved_method is None
    assert update.paid_at is not None and update.paid_at.tzinfo is not None
    # The adapter asked the API instead of believing the body.
    assert [r.path for r in env.emu.requests(GET_PAYMENT)] == [f"/v3/payments/{payment_id}"]


async def test_a_redelivery_carries_the_same_event_id(env: Env, yk: YooKassaProvider) -> None:
    _, delivery = await paid(yk, env)
    first = await yk.parse_webhook(incoming(delivery))
    second = await yk.parse_webhook(incoming(delivery))
    assert first.updates[0].event_id == second.updates[0].event_id


async def test_a_saved_card_is_reported_for_renewals(env: Env, yk: YooKassaProvider) -> None:
    payment_id, delivery = await paid(yk, env, save_method=True)
    [update] = (await yk.parse_webhook(incoming(delivery))).updates
    assert update.saved_method == SavedMethod(method_type="bank_card", title="Bank card •••• 4444", secret=payment_id)


async def test_a_saved_sbp_method_is_titled_sbp(env: Env, yk: YooKassaProvider) -> None:
    checkout = await env.provider(recurring_enabled=True).create_checkout(order(method="sbp", save_method=True))
    assert checkout.external_id is not None
    [update] = (await yk.parse_webhook(incoming(env.emu.pay(checkout.external_id)))).updates
    assert update.method == "sbp"
    assert update.saved_method == SavedMethod("sbp", "SBP", checkout.external_id)


async def test_a_forged_notification_is_403_and_never_reaches_the_api(env: Env, yk: YooKassaProvider) -> None:
    _, delivery = await paid(yk, env)
    with pytest.raises(WebhookRejected) as caught:
        await yk.parse_webhook(incoming(env.emu.forged(delivery)))
    assert caught.value.status_code == 403
    assert env.emu.requests(GET_PAYMENT) == []


async def test_a_notification_without_a_peer_address_is_403(env: Env, yk: YooKassaProvider) -> None:
    _, delivery = await paid(yk, env)
    with pytest.raises(WebhookRejected) as caught:
        await yk.parse_webhook(replace(incoming(delivery), peer_ip=None))
    assert caught.value.status_code == 403


@pytest.mark.parametrize(
    ("peer", "forwarded", "accepted"),
    [
        ("10.0.0.5", "185.71.76.10", True),
        ("10.0.0.5", "203.0.113.7, 185.71.76.10", True),  # whatever the client prepends is ignored
        ("10.0.0.5", "185.71.76.10, 203.0.113.7", False),  # the right-most untrusted hop is the sender
        ("172.16.0.1", "77.75.156.11, 10.9.8.7", True),  # two of our proxies in a row
        ("10.0.0.5", "", False),  # a proxy is not YooKassa
        ("10.0.0.5", "10.1.1.1", False),  # only proxies in the chain
        ("10.0.0.5", "garbage, 185.71.76.10", True),
        ("10.0.0.5", "185.71.76.10, garbage", False),
        ("203.0.113.7", "185.71.76.10", False),  # an untrusted peer's header is not believed
        ("2a02:5180::17", "", True),
        ("::ffff:185.71.77.3", "", True),
        ("185.71.76.32", "", False),  # just past 185.71.76.0/27
    ],
)
async def test_the_sender_ip_is_resolved_through_trusted_proxies_only(
    env: Env, peer: str, forwarded: str, accepted: bool
) -> None:
    yk = env.provider(trusted_proxies=["10.0.0.0/8", "172.16.0.1"])
    _, delivery = await paid(yk, env)
    webhook = IncomingWebhook(
        body=delivery.body, headers={"x-forwarded-for": forwarded} if forwarded else {}, peer_ip=peer
    )
    if accepted:
        assert (await yk.parse_webhook(webhook)).updates[0].state is PaymentState.SUCCEEDED
    else:
        with pytest.raises(WebhookRejected) as caught:
            await yk.parse_webhook(webhook)
        assert caught.value.status_code == 403


async def test_a_tampered_body_changes_nothing_because_the_api_is_asked(env: Env, yk: YooKassaProvider) -> None:
    payment_id, delivery = await paid(yk, env)
    tampered = delivery.tampered()
    assert json.loads(tampered.body)["object"]["amount"]["value"] != "299.00"

    [update] = (await yk.parse_webhook(incoming(tampered))).updates

    assert update.amount == PRICE
    assert update.external_id == payment_id


async def test_a_wrong_amount_is_reported_faithfully(env: Env, yk: YooKassaProvider) -> None:
    _, delivery = await paid(yk, env, amount=Decimal("1.00"))
    [update] = (await yk.parse_webhook(incoming(delivery))).updates
    assert update.state is PaymentState.SUCCEEDED
    assert update.amount == Money.of("1.00", "RUB")


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[]",
        b'{"type":"notification","event":"payment.succeeded"}',
        b'{"type":"notification","event":"payment.succeeded","object":{}}',
        b'{"type":"notification","object":{"id":"x"}}',
        b'{"type":"something","event":"payment.succeeded","object":{"id":"x"}}',
    ],
)
async def test_malformed_notifications_are_400(env: Env, yk: YooKassaProvider, body: bytes) -> None:
    with pytest.raises(WebhookRejected) as caught:
        await yk.parse_webhook(IncomingWebhook(body=body, headers={}, peer_ip=NOTIFIER_IP))
    assert caught.value.status_code == 400
    assert env.emu.requests() == []


async def test_a_notification_about_an_unknown_payment_is_400(yk: YooKassaProvider) -> None:
    with pytest.raises(WebhookRejected) as caught:
        await yk.parse_webhook(raw_notification("payment.succeeded", {"id": "2f000000-000f-5000-8000-000000000000"}))
    assert caught.value.status_code == 400


async def test_events_we_do_not_act_on_are_acknowledged(env: Env, yk: YooKassaProvider) -> None:
    result = await yk.parse_webhook(raw_notification("payment_method.active", {"id": "pm-1"}))
    assert result.updates == []
    assert env.emu.requests() == []


async def test_an_event_the_api_has_not_confirmed_is_retried_later(env: Env, yk: YooKassaProvider) -> None:
    checkout = await yk.create_checkout(order())
    assert checkout.external_id is not None
    early = env.emu.notification("payment.succeeded", checkout.external_id)  # the API still says pending
    with pytest.raises(ProviderUnavailable, match="still says pending"):
        await yk.parse_webhook(incoming(early))


async def test_an_unreachable_api_fails_closed(env: Env, yk: YooKassaProvider) -> None:
    _, delivery = await paid(yk, env)
    env.emu.fail_next(500, times=5)
    with pytest.raises(ProviderUnavailable):
        await yk.parse_webhook(incoming(delivery))


async def test_a_canceled_payment_carries_its_reason(env: Env, yk: YooKassaProvider) -> None:
    checkout = await yk.create_checkout(order())
    assert checkout.external_id is not None
    [update] = (await yk.parse_webhook(incoming(env.emu.cancel(checkout.external_id)))).updates
    assert update.state is PaymentState.CANCELLED
    assert update.failure_reason == "expired_on_confirmation"
    assert update.event_id == f"payment.canceled:{checkout.external_id}"
    assert update.revoked_method_secret is None


async def test_a_held_payment_is_pending(env: Env, yk: YooKassaProvider) -> None:
    # We always capture; a two-stage payment made elsewhere in the shop must not look paid.
    async with httpx.AsyncClient(base_url=env.base_url, auth=(env.emu.shop_id, env.emu.secret_key)) as client:
        body = {
            "amount": {"value": "299.00", "currency": "RUB"},
            "capture": False,
            "confirmation": {"type": "redirect", "return_url": "https://shop.test"},
            "metadata": {"order_id": "ord_held"},
        }
        created = await client.post("/v3/payments", json=body, headers={"Idempotence-Key": "held"})
    [update] = (await yk.parse_webhook(incoming(env.emu.pay(created.json()["id"])))).updates
    assert update.kind == "payment.waiting_for_capture"
    assert update.state is PaymentState.PENDING
    assert update.order_id == "ord_held"


async def test_a_refund_notification_is_verified_and_names_the_payment(env: Env, yk: YooKassaProvider) -> None:
    payment_id, _ = await paid(yk, env)
    env.emu.refunds_pending = True
    refund = await yk.refund(payment_id, Money.of("100.00", "RUB"), idempotency_key="r-1", user_telegram_id=1007)
    assert refund.state is PaymentState.PENDING

    [update] = (await yk.parse_webhook(incoming(env.emu.refund_delivery(refund.refund_id)))).updates

    assert update.state is PaymentState.REFUNDED
    assert update.event_id == f"refund.succeeded:{refund.refund_id}"
    assert update.external_id == payment_id
    assert update.order_id == "ord_1"
    assert update.amount == Money.of("100.00", "RUB")
    assert len(env.emu.requests(GET_REFUND)) == 1


async def test_a_refund_notification_the_api_has_not_settled_is_retried(env: Env, yk: YooKassaProvider) -> None:
    payment_id, _ = await paid(yk, env)
    env.emu.refunds_pending = True
    refund = await yk.refund(payment_id, PRICE, idempotency_key="r-1", user_telegram_id=1007)
    early = raw_notification("refund.succeeded", {"id": refund.refund_id, "payment_id": payment_id})
    with pytest.raises(ProviderUnavailable, match="pending"):
        await yk.parse_webhook(early)


# --- fetch ------------------------------------------------------------------------------------------------------


async def test_fetch_reports_the_current_state(env: Env, yk: YooKassaProvider) -> None:
    checkout = await yk.create_checkout(order())
    assert checkout.external_id is not None

    pending = await yk.fetch(checkout.external_id, "ord_1")
    env.emu.pay(checkout.external_id)
    done = await yk.fetch(checkout.external_id, "ord_1")

    assert pending is not None and pending.state is PaymentState.PENDING
    assert pending.event_id == f"fetch:{checkout.external_id}:pending"
    assert done is not None and done.state is PaymentState.SUCCEEDED
    assert done.kind == "fetch"
    assert done.event_id == f"fetch:{checkout.external_id}:succeeded"
    assert done.order_id == "ord_1"
    assert done.amount == PRICE


async def test_fetch_of_nothing_is_none(yk: YooKassaProvider) -> None:
    assert await yk.fetch(None, "ord_1") is None
    assert await yk.fetch("2f000000-000f-5000-8000-000000000000", "ord_1") is None


async def test_fetch_when_the_api_is_down_is_unavailable(env: Env, yk: YooKassaProvider) -> None:
    env.emu.fail_next(503, times=5)
    with pytest.raises(ProviderUnavailable):
        await yk.fetch("2f000000-000f-5000-8000-000000000000", "ord_1")


# --- saved-method charges ------------------------------------------------------------------------------------------


async def saved_method(yk: YooKassaProvider, env: Env) -> str:
    _, delivery = await paid(yk, env, save_method=True)
    [update] = (await yk.parse_webhook(incoming(delivery))).updates
    assert update.saved_method is not None
    return update.saved_method.secret


async def test_a_saved_method_is_charged_without_the_customer(env: Env, yk: YooKassaProvider) -> None:
    secret = await saved_method(yk, env)

    update = await yk.charge_saved(order(2, idempotency_key="renew-2"), secret)

    assert update.state is PaymentState.SUCCEEDED
    assert update.kind == "charge"
    assert update.order_id == "ord_2"
    assert update.amount == PRICE
    assert update.event_id == f"charge:{update.external_id}:succeeded"
    sent = env.emu.requests(CREATE)[-1]
    assert sent.idempotence_key == "renew-2"
    assert sent.body == {
        "amount": {"value": "299.00", "currency": "RUB"},
        "capture": True,
        "payment_method_id": secret,
        "description": "VPN 30 дней",
        "metadata": {"order_id": "ord_2"},
    }


async def test_a_revoked_method_is_reported_for_deactivation(env: Env, yk: YooKassaProvider) -> None:
    secret = await saved_method(yk, env)
    env.emu.revoke_method(secret)

    update = await yk.charge_saved(order(2), secret)

    assert update.state is PaymentState.CANCELLED
    assert update.failure_reason == "permission_revoked"
    assert update.revoked_method_secret == secret
    # The payment.canceled notification of that charge says the same.
    assert update.external_id is not None
    notice = env.emu.notification("payment.canceled", update.external_id)
    [notified] = (await yk.parse_webhook(incoming(notice))).updates
    assert notified.revoked_method_secret == secret


async def test_insufficient_funds_is_a_cancellation_keeping_the_method(env: Env, yk: YooKassaProvider) -> None:
    secret = await saved_method(yk, env)
    env.emu.set_nsf(secret)

    update = await yk.charge_saved(order(2), secret)

    assert update.state is PaymentState.CANCELLED
    assert update.failure_reason == "insufficient_funds"
    assert update.revoked_method_secret is None


@pytest.mark.parametrize("emulator_options", [{"fiscalization_enabled": True}])
async def test_a_charge_carries_the_receipt(env: Env) -> None:
    yk = env.provider(receipts_enabled=True, receipt_email="shop@vpn.test")
    secret = await saved_method(yk, env)
    update = await yk.charge_saved(order(2), secret)
    assert update.state is PaymentState.SUCCEEDED
    assert env.emu.requests(CREATE)[-1].body["receipt"]["customer"] == {"email": "shop@vpn.test"}


async def test_an_unknown_method_is_a_rejection(yk: YooKassaProvider) -> None:
    with pytest.raises(CheckoutRejected, match="payment_method_id"):
        await yk.charge_saved(order(2), "2f000000-000f-5000-8000-000000000000")


async def test_forgetting_a_saved_method_calls_nothing(env: Env, yk: YooKassaProvider) -> None:
    await yk.cancel_recurring("any-method", user_telegram_id=1007)
    assert env.emu.requests() == []


# --- refunds ----------------------------------------------------------------------------------------------------


async def test_a_refund_is_idempotent_on_its_key(env: Env, yk: YooKassaProvider) -> None:
    payment_id, _ = await paid(yk, env)

    first = await yk.refund(payment_id, PRICE, idempotency_key="refund-1", user_telegram_id=1007)
    again = await yk.refund(payment_id, PRICE, idempotency_key="refund-1", user_telegram_id=1007)

    assert first.state is PaymentState.REFUNDED
    assert again == first
    assert len(env.emu.refunds) == 1
    [sent, _] = env.emu.requests(REFUNDS)
    assert sent.idempotence_key == "refund-1"
    assert sent.body == {"payment_id": payment_id, "amount": {"value": "299.00", "currency": "RUB"}}


async def test_refunding_more_than_is_left_is_a_rejection(env: Env, yk: YooKassaProvider) -> None:
    payment_id, _ = await paid(yk, env)
    await yk.refund(payment_id, Money.of("200.00", "RUB"), idempotency_key="refund-1", user_telegram_id=1007)
    with pytest.raises(CheckoutRejected, match="amount"):
        await yk.refund(payment_id, Money.of("100.00", "RUB"), idempotency_key="refund-2", user_telegram_id=1007)


# --- the emulator's own wire rules --------------------------------------------------------------------------------


@pytest.fixture
async def client(env: Env) -> AsyncIterator[httpx.AsyncClient]:
    auth = (env.emu.shop_id, env.emu.secret_key)
    async with httpx.AsyncClient(base_url=env.base_url + "/v3", auth=auth) as http:
        yield http


PAYMENT = {
    "amount": {"value": "10.00", "currency": "RUB"},
    "capture": True,
    "confirmation": {"type": "redirect", "return_url": "https://shop.test"},
}


async def test_emulator_requires_basic_auth(env: Env) -> None:
    async with httpx.AsyncClient(base_url=env.base_url + "/v3", auth=("100500", "nope")) as http:
        response = await http.get("/me")
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_credentials"


async def test_emulator_requires_an_idempotence_key(client: httpx.AsyncClient) -> None:
    response = await client.post("/payments", json=PAYMENT)
    assert response.status_code == 400
    assert response.json()["parameter"] == "Idempotence-Key"


async def test_emulator_refuses_a_reused_key_with_another_body(client: httpx.AsyncClient, env: Env) -> None:
    first = await client.post("/payments", json=PAYMENT, headers={"Idempotence-Key": "k"})
    other = await client.post("/payments", json={**PAYMENT, "description": "x"}, headers={"Idempotence-Key": "k"})
    assert first.status_code == 200
    assert other.status_code == 400
    assert other.json()["description"] == "Idempotence key duplicated"
    # After 24 hours the key is free again.
    env.emu.advance(hours=25)
    later = await client.post("/payments", json={**PAYMENT, "description": "x"}, headers={"Idempotence-Key": "k"})
    assert later.status_code == 200
    assert later.json()["id"] != first.json()["id"]


@pytest.mark.parametrize(
    ("change", "parameter"),
    [
        ({"amount": {"value": 10, "currency": "RUB"}}, "amount.value"),
        ({"amount": {"value": "10.5", "currency": "RUB"}}, "amount.value"),
        ({"capture": False, "payment_method_data": {"type": "sbp"}}, "capture"),
        ({"confirmation": {"type": "redirect"}}, "confirmation.return_url"),
    ],
)
async def test_emulator_validates_payments(client: httpx.AsyncClient, change: dict, parameter: str) -> None:
    response = await client.post("/payments", json={**PAYMENT, **change}, headers={"Idempotence-Key": "k"})
    assert response.status_code == 400
    assert response.json()["type"] == "error"
    assert response.json()["code"] == "invalid_request"
    assert response.json()["parameter"] == parameter


@pytest.mark.parametrize("emulator_options", [{"fiscalization_enabled": True}])
async def test_emulator_checks_that_receipt_items_sum_to_the_amount(client: httpx.AsyncClient) -> None:
    item = {
        "description": "VPN",
        "quantity": "2",
        "amount": {"value": "4.00", "currency": "RUB"},
        "vat_code": 1,
        "payment_mode": "full_payment",
        "payment_subject": "service",
    }
    receipt = {"customer": {"phone": "79001234567"}, "items": [item]}
    short = await client.post("/payments", json={**PAYMENT, "receipt": receipt}, headers={"Idempotence-Key": "a"})
    item["amount"] = {"value": "5.00", "currency": "RUB"}
    exact = await client.post("/payments", json={**PAYMENT, "receipt": receipt}, headers={"Idempotence-Key": "b"})
    assert short.status_code == 400 and short.json()["parameter"] == "receipt.items"
    assert exact.status_code == 200


async def test_emulator_confirmation_page_pays_and_notifies(env: Env, yk: YooKassaProvider) -> None:
    received: list[bytes] = []

    async def webhook(scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        received.append(message.get("body", b""))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    checkout = await yk.create_checkout(order())
    assert checkout.pay_url is not None
    with serve(webhook) as webhook_url:
        env.emu.webhook_url = webhook_url
        async with httpx.AsyncClient() as browser:
            page = await browser.get(checkout.pay_url)
            assert "299.00 RUB" in page.text and "pending" in page.text
            done = await browser.post(checkout.pay_url, data={"action": "pay"})
    assert done.status_code == 303
    assert done.headers["location"] == "https://shop.test/pay/return"
    [body] = received
    assert json.loads(body)["event"] == "payment.succeeded"
    assert env.emu.payments[checkout.external_id]["status"] == "succeeded"


@pytest.mark.parametrize("emulator_options", [{"pending_ttl": timedelta(hours=2)}])
async def test_emulator_expires_unpaid_payments(env: Env, yk: YooKassaProvider) -> None:
    sbp = await yk.create_checkout(order(1, method="sbp"))
    card = await yk.create_checkout(order(2, method="bank_card"))
    assert env.emu.expire_pending() == []

    env.emu.advance(minutes=61)  # past SBP's hour, not the card's two
    [delivery] = env.emu.expire_pending()

    [update] = (await yk.parse_webhook(incoming(delivery))).updates
    assert update.external_id == sbp.external_id
    assert update.state is PaymentState.CANCELLED
    assert update.failure_reason == "expired_on_confirmation"
    assert env.emu.payments[card.external_id]["status"] == "pending"
    env.emu.advance(hours=1)
    assert len(env.emu.expire_pending()) == 1
    assert env.emu.payments[card.external_id]["status"] == "canceled"


async def test_emulator_control_endpoints_drive_the_same_state(env: Env, yk: YooKassaProvider) -> None:
    checkout = await yk.create_checkout(order())
    async with httpx.AsyncClient(base_url=env.base_url + "/_emu/yookassa") as control:
        paid_now = await control.post(f"/payments/{checkout.external_id}/succeed", json={"amount": "1.00"})
        await control.post("/fail_next", json={"status": 500, "times": 5})
    assert paid_now.json()["delivered"] is None  # no webhook_url configured
    assert paid_now.json()["body"]["event"] == "payment.succeeded"
    assert env.emu.payments[checkout.external_id]["amount"] == {"value": "1.00", "currency": "RUB"}
    with pytest.raises(ProviderUnavailable):
        await yk.fetch(checkout.external_id, "ord_1")
