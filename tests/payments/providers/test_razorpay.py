"""RazorpayProvider against the Razorpay emulator over real HTTP (shared/reference/payments_api.md §6, §10.5)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
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
    CredentialsRefused,
    IncomingWebhook,
    NotSupported,
    PaymentProvider,
    PaymentState,
    ProviderUnavailable,
    ProviderUpdate,
    SavedMethod,
    WebhookRejected,
)
from app.payments.providers.razorpay import RazorpayProvider
from tests.conftest import make_settings
from tests.emulators.harness import Plug, serve
from tests.emulators.payments_common import Delivery
from tests.emulators.razorpay import RazorpayEmulator

OLD_SECRET = "rotated_away_webhook_secret"
LINKS = "POST /v1/payment_links"
PLANS = "POST /v1/plans"
SUBSCRIPTIONS = "POST /v1/subscriptions"
REFUND = "POST /v1/payments/{payment_id}/refund"
CANCEL = "POST /v1/subscriptions/{sub_id}/cancel"


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[Plug, str]]:
    plug = Plug()
    with serve(plug) as base_url:
        yield plug, base_url


@dataclass
class Env:
    provider: RazorpayProvider
    emu: RazorpayEmulator
    base_url: str

    def make(self, **options: Any) -> RazorpayProvider:
        return make_provider(self.emu, self.base_url, **options)


def make_provider(
    emu: RazorpayEmulator,
    base_url: str,
    *,
    timeout: float = 10.0,
    attempts: int = 2,
    sleep: Any = None,
    key_secret: str | None = None,
    previous_webhook_secret: str = OLD_SECRET,
) -> RazorpayProvider:
    async def no_wait(_: float) -> None:
        return None

    http = HttpClient(
        f"{base_url}/v1",
        service="razorpay",
        timeout=timeout,
        retry=RetryPolicy(attempts=attempts, base_delay=0.001),
        breaker=CircuitBreaker(),
        transport=httpx.AsyncHTTPTransport(verify=False),
        sleep=sleep or no_wait,
    )
    return RazorpayProvider(
        f"{base_url}/v1",
        emu.key_id,
        key_secret if key_secret is not None else emu.key_secret,
        emu.webhook_secret,
        previous_webhook_secret=previous_webhook_secret,
        http=http,
    )


@pytest.fixture
async def env(server: tuple[Plug, str]) -> AsyncIterator[Env]:
    reset_breakers()
    plug, base_url = server
    emu = RazorpayEmulator(previous_webhook_secret=OLD_SECRET)
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
        "amount": Money.of("299.00", "INR"),
        "description": "VPN, 30 days",
        "user_id": 1,
        "telegram_id": 1001,
        "return_url": "https://shop.example/pay/return",
        "expires_at": datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1),
    }
    fields.update(overrides)
    return CheckoutOrder(**fields)


def incoming(delivery: Delivery) -> IncomingWebhook:
    return IncomingWebhook(
        body=delivery.body, headers={k.lower(): v for k, v in delivery.headers.items()}, peer_ip=delivery.peer_ip
    )


async def parse_one(provider: RazorpayProvider, delivery: Delivery) -> ProviderUpdate:
    result = await provider.parse_webhook(incoming(delivery))
    assert len(result.updates) == 1, result.updates
    return result.updates[0]


def resigned(emu: RazorpayEmulator, body: bytes, event_id: str = "evt_manual") -> Delivery:
    return Delivery(body=body, headers={"x-razorpay-signature": emu.sign(body), "x-razorpay-event-id": event_id})


def inr(amount: str) -> Money:
    return Money.of(amount, "INR")


# --- the interface --------------------------------------------------------------------------------------------


def test_declares_what_razorpay_can_do(env: Env) -> None:
    assert isinstance(env.provider, PaymentProvider)
    cls = RazorpayProvider
    assert (cls.name, cls.currencies, cls.methods) == ("razorpay", frozenset({"INR"}), ())
    assert (cls.supports_refunds, cls.supports_saved_methods, cls.supports_recurring) == (True, False, True)


@pytest.mark.parametrize("missing", ["razorpay_key_id", "razorpay_key_secret", "razorpay_webhook_secret"])
def test_from_settings_needs_every_credential(missing: str) -> None:
    values = {"razorpay_key_id": "rzp_test_1", "razorpay_key_secret": "s", "razorpay_webhook_secret": "w"}
    assert RazorpayProvider.from_settings(make_settings("sqlite+aiosqlite:///:memory:", **values)) is not None
    values[missing] = ""
    assert RazorpayProvider.from_settings(make_settings("sqlite+aiosqlite:///:memory:", **values)) is None


async def test_from_settings_talks_to_the_configured_api(env: Env) -> None:
    settings = make_settings("sqlite+aiosqlite:///:memory:", **env.emu.settings(env.base_url))
    provider = RazorpayProvider.from_settings(settings)
    assert provider is not None
    try:
        checkout = await provider.create_checkout(order())
        delivery = env.emu.pay_link(checkout.external_id or "")
        # The previous secret from the settings is honoured too.
        update = await parse_one(provider, env.emu.signed_with_old_secret(delivery))
    finally:
        await provider.aclose()
    assert checkout.external_id in env.emu.links
    assert update.state is PaymentState.SUCCEEDED


# --- checkout: payment links ----------------------------------------------------------------------------------


async def test_checkout_creates_a_payment_link_in_paise(env: Env) -> None:
    the_order = order(amount=inr("299.50"))

    checkout = await env.provider.create_checkout(the_order)

    call = env.emu.last(LINKS)
    body = call.json
    assert body["amount"] == 29950 and isinstance(body["amount"], int)
    assert (body["currency"], body["reference_id"], body["accept_partial"]) == ("INR", the_order.order_id, False)
    assert (body["callback_url"], body["callback_method"]) == (the_order.return_url, "get")
    assert body["expire_by"] == int(the_order.expires_at.timestamp())
    assert body["notes"] == {"order_id": the_order.order_id}
    assert body["description"] == "VPN, 30 days"
    expected_auth = base64.b64encode(f"{env.emu.key_id}:{env.emu.key_secret}".encode()).decode()
    assert call.headers["authorization"] == f"Basic {expected_auth}"
    link = env.emu.links[checkout.external_id or ""]
    assert checkout.pay_url == link["short_url"] and checkout.pay_url.startswith("https://rzp.io/i/")
    assert checkout.expires_at == the_order.expires_at
    assert checkout.invoice_link is None


async def test_link_lives_at_least_the_15_minutes_razorpay_requires(env: Env) -> None:
    soon = datetime.now(UTC) + timedelta(minutes=5)

    checkout = await env.provider.create_checkout(order(expires_at=soon))

    expire_by = env.emu.last(LINKS).json["expire_by"]
    assert expire_by >= int((datetime.now(UTC) + timedelta(minutes=15)).timestamp())
    assert checkout.expires_at == datetime.fromtimestamp(expire_by, UTC)


async def test_amount_under_one_rupee_is_refused_before_calling(env: Env) -> None:
    with pytest.raises(CheckoutRejected, match=r"at least INR 1\.00"):
        await env.provider.create_checkout(order(amount=inr("0.99")))
    assert not env.emu.requests


async def test_other_currencies_are_refused_before_calling(env: Env) -> None:
    with pytest.raises(CheckoutRejected, match="INR"):
        await env.provider.create_checkout(order(amount=Money.of("5.00", "USD")))
    assert not env.emu.requests


async def test_repeated_checkout_returns_the_existing_link(env: Env) -> None:
    the_order = order()

    first = await env.provider.create_checkout(the_order)
    second = await env.provider.create_checkout(the_order)

    assert second.external_id == first.external_id and second.pay_url == first.pay_url
    assert len(env.emu.links) == 1
    assert env.emu.requests[LINKS] == 2 and env.emu.requests["GET /v1/payment_links"] == 1


async def test_same_order_id_with_another_amount_is_rejected(env: Env) -> None:
    the_order = order()
    await env.provider.create_checkout(the_order)

    with pytest.raises(CheckoutRejected, match="already exists"):
        await env.provider.create_checkout(order(order_id=the_order.order_id, amount=inr("499.00")))


async def test_bad_request_error_becomes_checkout_rejected_with_its_description(env: Env) -> None:
    env.emu.fail_next(400)

    with pytest.raises(CheckoutRejected, match="razorpay: Bad request"):
        await env.provider.create_checkout(order())
    assert env.emu.requests[LINKS] == 1  # a refusal is not retried


async def test_a_500_is_retried_and_makes_one_link(env: Env) -> None:
    env.emu.fail_next(500)

    checkout = await env.provider.create_checkout(order())

    assert env.emu.requests[LINKS] == 2
    assert list(env.emu.links) == [checkout.external_id]


@pytest.mark.parametrize("status", [500, 502, 429])
async def test_a_provider_that_keeps_failing_is_unavailable(env: Env, status: int) -> None:
    env.emu.fail_next(status, retry_after=0 if status == 429 else None, times=5)

    with pytest.raises(ProviderUnavailable):
        await env.provider.create_checkout(order())
    assert env.emu.requests[LINKS] == 2
    assert not env.emu.links


async def test_retry_after_of_a_429_is_honoured(env: Env) -> None:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    provider = env.make(sleep=sleep)
    env.emu.fail_next(429, retry_after=7)
    try:
        await provider.create_checkout(order())
    finally:
        await provider.aclose()
    assert waits == [7.0]


async def test_a_timeout_is_unavailable(env: Env) -> None:
    provider = env.make(timeout=0.2, attempts=1)
    env.emu.delay_next(2.0)
    try:
        with pytest.raises(ProviderUnavailable):
            await provider.create_checkout(order())
    finally:
        await provider.aclose()


async def test_wrong_api_keys_are_unavailable_not_a_customer_error(env: Env) -> None:
    provider = env.make(key_secret="wrong")
    try:
        with pytest.raises(ProviderUnavailable, match="API keys were refused"):
            await provider.create_checkout(order())
    finally:
        await provider.aclose()
    assert not env.emu.links


# --- checkout: subscriptions ----------------------------------------------------------------------------------


async def test_a_30_day_recurring_order_creates_a_monthly_subscription(env: Env) -> None:
    the_order = order(recurring_days=30)

    checkout = await env.provider.create_checkout(the_order)

    plan = env.emu.last(PLANS).json
    assert (plan["period"], plan["interval"]) == ("monthly", 1)
    assert plan["item"]["amount"] == 29900 and plan["item"]["currency"] == "INR"
    sub = env.emu.last(SUBSCRIPTIONS).json
    assert sub["plan_id"] in env.emu.plans
    assert (sub["total_count"], sub["customer_notify"]) == (120, True)
    assert sub["notes"] == {"order_id": the_order.order_id}
    stored = env.emu.subscriptions[checkout.external_id or ""]
    assert checkout.pay_url == stored["short_url"]
    assert checkout.details["subscription_id"] == stored["id"]
    assert env.emu.requests[LINKS] == 0


@pytest.mark.parametrize(("days", "period", "interval", "count"), [(90, "monthly", 3, 40), (365, "yearly", 1, 10)])
async def test_longer_recurring_periods(env: Env, days: int, period: str, interval: int, count: int) -> None:
    await env.provider.create_checkout(order(recurring_days=days))

    plan = env.emu.last(PLANS).json
    assert (plan["period"], plan["interval"]) == (period, interval)
    assert env.emu.last(SUBSCRIPTIONS).json["total_count"] == count


async def test_plans_are_reused_for_the_same_price_and_period(env: Env) -> None:
    await env.provider.create_checkout(order(recurring_days=30))
    await env.provider.create_checkout(order(recurring_days=30))
    await env.provider.create_checkout(order(recurring_days=30, amount=inr("499.00")))

    assert env.emu.requests[PLANS] == 2
    assert env.emu.requests[SUBSCRIPTIONS] == 3


async def test_a_length_razorpay_plans_cannot_express_is_sold_as_a_link(env: Env) -> None:
    checkout = await env.provider.create_checkout(order(recurring_days=7))

    assert (checkout.external_id or "").startswith("plink_")
    assert env.emu.requests[PLANS] == 0


# --- webhooks: verification -----------------------------------------------------------------------------------


async def paid_link(env: Env, **pay: Any) -> tuple[CheckoutOrder, str, Delivery]:
    the_order = order()
    checkout = await env.provider.create_checkout(the_order)
    link_id = checkout.external_id or ""
    return the_order, link_id, env.emu.pay_link(link_id, **pay)


async def test_paid_link_webhook_is_a_success(env: Env) -> None:
    the_order, link_id, delivery = await paid_link(env)

    update = await parse_one(env.provider, delivery)

    assert update.state is PaymentState.SUCCEEDED
    assert (update.kind, update.external_id, update.order_id) == ("payment_link.paid", link_id, the_order.order_id)
    assert update.amount == inr("299.00")
    assert update.method == "upi"
    assert update.event_id == delivery.headers["x-razorpay-event-id"]
    assert update.paid_at is not None and update.saved_method is None and not update.is_renewal


async def test_a_redelivery_carries_the_same_event_id_and_a_new_event_another(env: Env) -> None:
    _, link_id, delivery = await paid_link(env)

    first = await parse_one(env.provider, delivery)
    again = await parse_one(env.provider, delivery)
    other = await parse_one(env.provider, env.emu.expire_link(link_id))

    assert first.event_id == again.event_id
    assert other.event_id != first.event_id


async def test_events_signed_with_the_previous_secret_are_accepted(env: Env) -> None:
    _, _, delivery = await paid_link(env)
    old = env.emu.signed_with_old_secret(delivery)

    assert (await parse_one(env.provider, old)).state is PaymentState.SUCCEEDED

    provider = env.make(previous_webhook_secret="")
    try:
        with pytest.raises(WebhookRejected) as caught:
            await provider.parse_webhook(incoming(old))
    finally:
        await provider.aclose()
    assert caught.value.status_code == 401


@pytest.mark.parametrize("spoil", ["forged", "tampered", "unsigned", "garbage"])
async def test_bad_signatures_are_rejected_with_401(env: Env, spoil: str) -> None:
    _, _, delivery = await paid_link(env)
    bad = {
        "forged": env.emu.forged(delivery),
        "tampered": delivery.tampered(),
        "unsigned": delivery.without_header("x-razorpay-signature"),
        "garbage": delivery.with_header("x-razorpay-signature", "ünïcode"),
    }[spoil]
    assert bad.body != delivery.body or bad.headers != delivery.headers

    with pytest.raises(WebhookRejected) as caught:
        await env.provider.parse_webhook(incoming(bad))
    assert caught.value.status_code == 401


async def test_a_signed_event_without_an_event_id_is_malformed(env: Env) -> None:
    _, _, delivery = await paid_link(env)

    with pytest.raises(WebhookRejected) as caught:
        await env.provider.parse_webhook(incoming(delivery.without_header("x-razorpay-event-id")))
    assert caught.value.status_code == 400


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[]",
        b'{"entity":"event"}',
        b'{"event":"payment_link.paid","payload":{}}',
        b'{"event":"payment_link.paid","payload":{"payment_link":{"entity":{"id":"plink_1","status":"paid"}}}}',
        b'{"event":"subscription.charged","payload":{"subscription":{"entity":{"id":"sub_1"}}}}',
    ],
)
async def test_signed_but_malformed_events_are_rejected_with_400(env: Env, body: bytes) -> None:
    with pytest.raises(WebhookRejected) as caught:
        await env.provider.parse_webhook(incoming(resigned(env.emu, body)))
    assert caught.value.status_code == 400


async def test_events_we_do_not_act_on_are_acknowledged_empty(env: Env) -> None:
    _, link_id, _ = await paid_link(env)
    payment = env.emu.payment(link_id)

    for name in ("payment.captured", "order.paid", "payment_link.partially_paid", "subscription.activated"):
        result = await env.provider.parse_webhook(incoming(env.emu.event(name, {"payment": payment})))
        assert result.updates == []


# --- webhooks: meaning ----------------------------------------------------------------------------------------


async def test_a_wrong_amount_is_reported_as_paid(env: Env) -> None:
    the_order, link_id, delivery = await paid_link(env, amount=Decimal("1.00"))

    update = await parse_one(env.provider, delivery)
    fetched = await env.provider.fetch(link_id, the_order.order_id)

    assert update.amount == inr("1.00")
    assert fetched is not None and fetched.amount == inr("1.00")


async def test_a_wrong_currency_is_reported_as_paid(env: Env) -> None:
    _, _, delivery = await paid_link(env, amount=Decimal("5.00"), currency="USD")

    assert (await parse_one(env.provider, delivery)).amount == Money.of("5.00", "USD")


@pytest.mark.parametrize("close", ["expire_link", "cancel_link"])
async def test_an_expired_or_cancelled_link_cancels(env: Env, close: str) -> None:
    the_order = order()
    link_id = (await env.provider.create_checkout(the_order)).external_id or ""

    update = await parse_one(env.provider, getattr(env.emu, close)(link_id))

    assert update.state is PaymentState.CANCELLED
    assert (update.external_id, update.order_id, update.amount) == (link_id, the_order.order_id, None)


async def test_a_failed_attempt_on_our_order_is_reported(env: Env) -> None:
    the_order = order()
    link_id = (await env.provider.create_checkout(the_order)).external_id or ""

    update = await parse_one(env.provider, env.emu.fail(link_id, reason="Card declined"))

    assert update.state is PaymentState.FAILED
    assert (update.order_id, update.external_id, update.failure_reason) == (the_order.order_id, None, "Card declined")


async def test_a_failed_payment_that_is_not_ours_is_ignored(env: Env) -> None:
    payment = env.emu.new_payment(10000, "INR", "card", notes={"shop": "another"})
    payment.update(status="failed")

    result = await env.provider.parse_webhook(incoming(env.emu.event("payment.failed", {"payment": payment})))

    assert result.updates == []


async def test_subscription_first_charge_then_renewals(env: Env) -> None:
    the_order = order(recurring_days=30)
    sub_id = (await env.provider.create_checkout(the_order)).external_id or ""

    first = await parse_one(env.provider, env.emu.charge_subscription(sub_id))
    renewal = await parse_one(env.provider, env.emu.charge_subscription(sub_id))
    later = await parse_one(env.provider, env.emu.charge_subscription(sub_id, amount=Decimal("399.00")))

    assert first.state is PaymentState.SUCCEEDED and first.kind == "subscription.charged"
    assert (first.external_id, first.order_id, first.subscription_ref) == (sub_id, the_order.order_id, sub_id)
    assert first.saved_method == SavedMethod("razorpay_subscription", "Razorpay subscription", sub_id)
    assert (first.is_renewal, first.amount) == (False, inr("299.00"))

    assert renewal.state is PaymentState.SUCCEEDED and renewal.is_renewal
    assert renewal.external_id in env.emu.payments and renewal.external_id != sub_id
    assert (renewal.subscription_ref, renewal.saved_method, renewal.amount) == (sub_id, None, inr("299.00"))
    assert later.amount == inr("399.00") and later.external_id != renewal.external_id
    assert len({first.event_id, renewal.event_id, later.event_id}) == 3
    assert env.emu.subscriptions[sub_id]["paid_count"] == 3


@pytest.mark.parametrize("stop", ["halt_subscription", "cancel_subscription"])
async def test_a_halted_or_cancelled_subscription_stops_renewals(env: Env, stop: str) -> None:
    the_order = order(recurring_days=30)
    sub_id = (await env.provider.create_checkout(the_order)).external_id or ""
    env.emu.charge_subscription(sub_id)

    update = await parse_one(env.provider, getattr(env.emu, stop)(sub_id))

    assert update.state is PaymentState.CANCELLED
    assert (update.subscription_ref, update.external_id, update.order_id) == (sub_id, sub_id, the_order.order_id)


async def test_our_refund_names_what_we_stored(env: Env) -> None:
    the_order, link_id, _ = await paid_link(env)
    result = await env.provider.refund(link_id, inr("299.00"), idempotency_key="refund-1", user_telegram_id=1001)

    update = await parse_one(env.provider, env.emu.refund_delivery(result.refund_id))

    assert update.state is PaymentState.REFUNDED and update.kind == "refund.processed"
    assert (update.external_id, update.order_id, update.amount) == (link_id, the_order.order_id, inr("299.00"))


async def test_a_dashboard_refund_names_the_payment(env: Env) -> None:
    the_order, link_id, _ = await paid_link(env)
    payment_id = env.emu.payment(link_id)["id"]

    update = await parse_one(env.provider, env.emu.refund(link_id, amount=Decimal("100.00")))

    assert (update.external_id, update.order_id, update.amount) == (payment_id, the_order.order_id, inr("100.00"))


# --- fetch ----------------------------------------------------------------------------------------------------


async def test_fetch_follows_a_link(env: Env) -> None:
    the_order = order()
    link_id = (await env.provider.create_checkout(the_order)).external_id or ""

    pending = await env.provider.fetch(link_id, the_order.order_id)
    env.emu.pay_link(link_id, method="card")
    paid = await env.provider.fetch(link_id, the_order.order_id)
    by_order = await env.provider.fetch(None, the_order.order_id)

    assert pending is not None and pending.state is PaymentState.PENDING and pending.amount is None
    assert paid is not None and paid.state is PaymentState.SUCCEEDED
    assert (paid.external_id, paid.order_id, paid.amount, paid.method) == (
        link_id,
        the_order.order_id,
        inr("299.00"),
        "card",
    )
    assert paid.event_id != pending.event_id
    assert by_order is not None and by_order.external_id == link_id and by_order.event_id == paid.event_id


async def test_fetch_sees_a_link_expire(env: Env) -> None:
    the_order = order()
    link_id = (await env.provider.create_checkout(the_order)).external_id or ""
    env.emu.advance(2 * 3600)

    update = await env.provider.fetch(link_id, the_order.order_id)

    assert update is not None and update.state is PaymentState.CANCELLED


async def test_fetch_of_something_razorpay_does_not_know(env: Env) -> None:
    assert await env.provider.fetch("plink_doesnotexist", "ord_x") is None
    assert await env.provider.fetch(None, "ord_never_created") is None


async def test_fetch_follows_a_subscription_and_a_renewal(env: Env) -> None:
    the_order = order(recurring_days=30)
    sub_id = (await env.provider.create_checkout(the_order)).external_id or ""

    pending = await env.provider.fetch(sub_id, the_order.order_id)
    env.emu.charge_subscription(sub_id)
    charged = await env.provider.fetch(sub_id, the_order.order_id)
    renewal = await parse_one(env.provider, env.emu.charge_subscription(sub_id))
    renewal_fetched = await env.provider.fetch(renewal.external_id, the_order.order_id)

    assert pending is not None and pending.state is PaymentState.PENDING
    assert charged is not None and charged.state is PaymentState.SUCCEEDED
    assert (charged.amount, charged.subscription_ref, charged.order_id) == (inr("299.00"), sub_id, the_order.order_id)
    assert charged.saved_method is not None and charged.saved_method.secret == sub_id
    assert renewal_fetched is not None and renewal_fetched.state is PaymentState.SUCCEEDED
    assert renewal_fetched.amount == inr("299.00")


async def test_fetch_when_razorpay_is_down(env: Env) -> None:
    env.emu.fail_next(503, times=5)

    with pytest.raises(ProviderUnavailable):
        await env.provider.fetch("plink_whatever", "ord_x")


# --- refunds --------------------------------------------------------------------------------------------------


async def test_refund_of_a_paid_link(env: Env) -> None:
    _, link_id, _ = await paid_link(env)

    result = await env.provider.refund(link_id, inr("299.00"), idempotency_key="refund-key-1", user_telegram_id=1)

    assert result.state is PaymentState.REFUNDED
    body = env.emu.last(REFUND).json
    assert body["amount"] == 29900 and body["receipt"] == "refund-key-1"
    assert env.emu.payment(link_id)["status"] == "refunded"
    assert env.emu.refunds[result.refund_id]["payment_id"] == env.emu.payment(link_id)["id"]


async def test_repeating_a_refund_does_not_refund_twice(env: Env) -> None:
    _, link_id, _ = await paid_link(env)

    first = await env.provider.refund(link_id, inr("100.00"), idempotency_key="same-key", user_telegram_id=1)
    again = await env.provider.refund(link_id, inr("100.00"), idempotency_key="same-key", user_telegram_id=1)

    assert again.refund_id == first.refund_id
    assert env.emu.requests[REFUND] == 1
    assert env.emu.payment(link_id)["amount_refunded"] == 10000


async def test_refunding_what_is_refunded_already_is_a_success(env: Env) -> None:
    _, link_id, _ = await paid_link(env)
    env.emu.refund(link_id)  # from the dashboard

    result = await env.provider.refund(link_id, inr("299.00"), idempotency_key="late-key", user_telegram_id=1)

    assert result.state is PaymentState.REFUNDED
    assert result.refund_id in env.emu.refunds and len(env.emu.refunds) == 1


async def test_refunding_more_than_was_paid_is_rejected(env: Env) -> None:
    _, link_id, _ = await paid_link(env, amount=Decimal("100.00"))

    with pytest.raises(CheckoutRejected, match="greater than amount captured"):
        await env.provider.refund(link_id, inr("299.00"), idempotency_key="k", user_telegram_id=1)


async def test_a_pending_refund_is_pending(env: Env) -> None:
    _, link_id, _ = await paid_link(env)
    env.emu.refund_status = "pending"

    result = await env.provider.refund(link_id, inr("299.00"), idempotency_key="k", user_telegram_id=1)

    assert result.state is PaymentState.PENDING
    assert (await parse_one(env.provider, env.emu.refund_delivery(result.refund_id))).state is PaymentState.REFUNDED


async def test_refund_of_subscription_charges(env: Env) -> None:
    sub_id = (await env.provider.create_checkout(order(recurring_days=30))).external_id or ""
    env.emu.charge_subscription(sub_id)
    first_payment = env.emu.payment(sub_id)["id"]
    renewal = await parse_one(env.provider, env.emu.charge_subscription(sub_id))

    by_subscription = await env.provider.refund(sub_id, inr("299.00"), idempotency_key="a", user_telegram_id=1)
    by_payment = await env.provider.refund(
        renewal.external_id or "", inr("299.00"), idempotency_key="b", user_telegram_id=1
    )

    assert env.emu.refunds[by_subscription.refund_id]["payment_id"] == first_payment
    assert env.emu.refunds[by_payment.refund_id]["payment_id"] == renewal.external_id


async def test_refund_of_an_unpaid_link_is_rejected(env: Env) -> None:
    link_id = (await env.provider.create_checkout(order())).external_id or ""

    with pytest.raises(CheckoutRejected, match="no payment"):
        await env.provider.refund(link_id, inr("299.00"), idempotency_key="k", user_telegram_id=1)


# --- subscriptions: stopping, and what Razorpay does not have ------------------------------------------------


async def test_cancel_recurring_stops_at_the_cycle_end(env: Env) -> None:
    sub_id = (await env.provider.create_checkout(order(recurring_days=30))).external_id or ""
    env.emu.charge_subscription(sub_id)

    await env.provider.cancel_recurring(sub_id, user_telegram_id=1)

    assert env.emu.last(CANCEL).json == {"cancel_at_cycle_end": 1}
    assert env.emu.subscriptions[sub_id]["status"] == "active"  # the paid period runs out first
    update = await parse_one(env.provider, env.emu.charge_subscription(sub_id))
    assert update.kind == "subscription.cancelled" and update.state is PaymentState.CANCELLED


async def test_cancel_recurring_before_the_first_charge_cancels_at_once(env: Env) -> None:
    sub_id = (await env.provider.create_checkout(order(recurring_days=30))).external_id or ""

    await env.provider.cancel_recurring(sub_id, user_telegram_id=1)

    assert env.emu.subscriptions[sub_id]["status"] == "cancelled"
    assert [c.json for c in env.emu.calls(CANCEL)] == [{"cancel_at_cycle_end": 1}, {"cancel_at_cycle_end": 0}]


async def test_cancelling_a_cancelled_subscription_is_a_success(env: Env) -> None:
    sub_id = (await env.provider.create_checkout(order(recurring_days=30))).external_id or ""
    env.emu.cancel_subscription(sub_id)

    await env.provider.cancel_recurring(sub_id, user_telegram_id=1)

    assert env.emu.subscriptions[sub_id]["status"] == "cancelled"


async def test_charge_saved_is_not_supported(env: Env) -> None:
    with pytest.raises(NotSupported):
        await env.provider.charge_saved(order(), "sub_x")


# --- the emulator's control endpoints -------------------------------------------------------------------------


async def test_control_endpoint_pays_and_delivers_to_the_webhook_url(env: Env) -> None:
    received: list[tuple[bytes, dict[str, str]]] = []

    async def shop(scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        received.append((message.get("body", b""), {k.decode(): v.decode() for k, v in scope["headers"]}))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    link_id = (await env.provider.create_checkout(order())).external_id or ""
    with serve(shop) as shop_url:
        env.emu.webhook_url = f"{shop_url}/webhooks/razorpay"
        async with httpx.AsyncClient() as client:
            answer = await client.post(
                f"{env.base_url}/_emu/razorpay/payment_links/{link_id}/pay", json={"amount": "5.00"}
            )

    assert answer.status_code == 200 and answer.json()["delivered_status"] == 200
    body, headers = received[0]
    update = await env.provider.parse_webhook(IncomingWebhook(body=body, headers=headers, peer_ip="127.0.0.1"))
    assert update.updates[0].amount == inr("5.00")
    assert json.loads(body)["event"] == "payment_link.paid"


async def test_a_webhook_that_keeps_failing_is_disabled(env: Env) -> None:
    calls: list[int] = []

    async def broken_shop(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        calls.append(1)
        await send({"type": "http.response.start", "status": 500, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    link_id = (await env.provider.create_checkout(order())).external_id or ""
    with serve(broken_shop) as shop_url:
        env.emu.webhook_url = shop_url
        async with httpx.AsyncClient() as client:
            first = await client.post(f"{env.base_url}/_emu/razorpay/payment_links/{link_id}/expire")
            second = await client.post(f"{env.base_url}/_emu/razorpay/payment_links/{link_id}/cancel")

    assert first.json()["delivered_status"] == 500 and second.json()["delivered_status"] is None
    assert len(calls) == env.emu.webhook_attempts and env.emu.webhook_disabled


async def test_the_browser_callback_carries_the_payment_link_signature(env: Env) -> None:
    the_order, link_id, _ = await paid_link(env)

    query = env.emu.callback_query(link_id)

    payment_id = env.emu.payment(link_id)["id"]
    message = f"{link_id}|{the_order.order_id}|paid|{payment_id}".encode()
    expected = hmac.new(env.emu.key_secret.encode(), message, hashlib.sha256).hexdigest()
    assert query["razorpay_signature"] == expected and query["razorpay_payment_id"] == payment_id


# --- the admin's connection test ------------------------------------------------------------------------------


async def test_check_connection_reads_without_changing_anything(env: Env) -> None:
    await env.provider.check_connection()
    (call,) = env.emu.calls("GET /v1/payment_links")
    assert call.query == {"reference_id": "vpnshop-connection-check"}
    assert not env.emu.links and not env.emu.orders and not env.emu.plans


async def test_check_connection_with_wrong_keys_is_credentials_refused(env: Env) -> None:
    provider = env.make(key_secret="wrong")
    try:
        with pytest.raises(CredentialsRefused, match="API keys were refused"):
            await provider.check_connection()
    finally:
        await provider.aclose()


@pytest.mark.parametrize("status", [500, 503])
async def test_check_connection_failing_api_is_unavailable_not_refused(env: Env, status: int) -> None:
    env.emu.fail_next(status, times=2)
    with pytest.raises(ProviderUnavailable) as caught:
        await env.provider.check_connection()
    assert not isinstance(caught.value, CredentialsRefused)


async def test_check_connection_at_a_wrong_url_is_unavailable(env: Env) -> None:
    provider = RazorpayProvider(env.base_url, env.emu.key_id, env.emu.key_secret, env.emu.webhook_secret)
    try:
        with pytest.raises(ProviderUnavailable) as caught:
            await provider.check_connection()
    finally:
        await provider.aclose()
    assert not isinstance(caught.value, CredentialsRefused)
