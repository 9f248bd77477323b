"""StarsProvider against the Telegram Bot API emulator over real HTTP, and the emulator's own wire behaviour."""

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
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

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
    ProviderUpdate,
    SavedMethod,
    WebhookRejected,
)
from app.payments.providers.stars import PreCheckout, StarsProvider, TelegramApiError
from tests.conftest import make_settings
from tests.emulators.harness import Plug, serve
from tests.emulators.payments_common import Delivery
from tests.emulators.telegram import DEFAULT_USER_ID, SECRET_HEADER, TelegramBotApiEmulator

ORDER_ID = "pay_01HZYX7Q3B"
USER = 555_001


@pytest.fixture(scope="module")
def sockets() -> Iterator[tuple[tuple[Plug, str], tuple[Plug, str]]]:
    """Two servers: the emulator's, and the bot webhook's (for the end-to-end pay flow)."""
    api, hook = Plug(), Plug()
    with ExitStack() as stack:
        yield (api, stack.enter_context(serve(api))), (hook, stack.enter_context(serve(hook)))


@pytest.fixture
def emu(sockets: Any) -> Iterator[TelegramBotApiEmulator]:
    (plug, base_url), _ = sockets
    emulator = TelegramBotApiEmulator()
    emulator.base_url = base_url
    plug.app = emulator.app
    yield emulator
    plug.app = None


class Sleeps(list[float]):
    """A sleep that records instead of waiting, so retry_after waits cost nothing."""

    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


def make_provider(emu: TelegramBotApiEmulator, **options: Any) -> StarsProvider:
    values: dict[str, Any] = {
        "timeout": 2.0,
        "retry": RetryPolicy(attempts=3, base_delay=0.001, max_delay=0.002),
        "answer_timeout": 0.5,
    } | options
    return StarsProvider(emu.base_url, emu.token, emu.webhook_secret, **values)


@pytest.fixture
async def provider(emu: TelegramBotApiEmulator, sleeps: Sleeps) -> AsyncIterator[StarsProvider]:
    reset_breakers()  # no test inherits another's failures of the emulator's host
    stars = make_provider(emu, sleep=sleeps)
    yield stars
    await stars.aclose()
    reset_breakers()


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


def order(**overrides: Any) -> CheckoutOrder:
    values: dict[str, Any] = {
        "order_id": ORDER_ID,
        "idempotency_key": "idem-" + ORDER_ID,
        "amount": Money.of(150, "XTR"),
        "description": "VPN Standard, 30 days",
        "user_id": 7,
        "telegram_id": USER,
        "return_url": "https://shop.example/pay/return",
        "expires_at": datetime.now(UTC) + timedelta(hours=1),
    } | overrides
    return CheckoutOrder(**values)


def incoming(delivery: Delivery) -> IncomingWebhook:
    headers = {name.lower(): value for name, value in delivery.headers.items()}
    return IncomingWebhook(body=delivery.body, headers=headers, peer_ip=delivery.peer_ip)


async def only_update(provider: StarsProvider, delivery: Delivery) -> ProviderUpdate:
    result = await provider.parse_webhook(incoming(delivery))
    assert len(result.updates) == 1, result.updates
    return result.updates[0]


async def paid(provider: StarsProvider, emu: TelegramBotApiEmulator, **checkout: Any) -> tuple[str, Delivery]:
    """A checkout the customer paid: (invoice link, successful_payment delivery)."""
    link = (await provider.create_checkout(order(**checkout))).invoice_link
    assert link is not None
    return link, emu.pay(link, user_id=USER)


def charge_id_of(delivery: Delivery) -> str:
    return json.loads(delivery.body)["message"]["successful_payment"]["telegram_payment_charge_id"]


# --- the provider's shape -----------------------------------------------------------------------------------------


def test_class_attributes_and_protocol(provider: StarsProvider) -> None:
    assert isinstance(provider, PaymentProvider)
    assert (StarsProvider.name, StarsProvider.currencies, StarsProvider.methods) == ("stars", {"XTR"}, ())
    assert StarsProvider.supports_refunds and StarsProvider.supports_recurring
    assert not StarsProvider.supports_saved_methods


def test_from_settings_needs_stars_enabled_and_a_bot_token() -> None:
    url = "sqlite+aiosqlite:///:memory:"
    assert StarsProvider.from_settings(make_settings(url, stars_enabled=False, bot_token="1:x")) is None
    assert StarsProvider.from_settings(make_settings(url, stars_enabled=True, bot_token="")) is None
    settings = make_settings(
        url,
        stars_enabled=True,
        bot_token="1:x",
        telegram_api_url="http://127.0.0.1:9",
        bot_webhook_secret="s",
        stars_subscriptions_enabled=False,
    )
    provider = StarsProvider.from_settings(settings)
    assert isinstance(provider, StarsProvider)
    assert provider.subscriptions_enabled is False


def test_emulator_settings_build_a_provider(emu: TelegramBotApiEmulator) -> None:
    settings = make_settings("sqlite+aiosqlite:///:memory:", **emu.settings(emu.base_url))
    assert isinstance(StarsProvider.from_settings(settings), StarsProvider)


# --- checkout -----------------------------------------------------------------------------------------------------


async def test_create_checkout_sends_an_xtr_invoice_link_request(
    provider: StarsProvider, emu: TelegramBotApiEmulator
) -> None:
    checkout = await provider.create_checkout(order())

    assert checkout.external_id is None and checkout.pay_url is None
    assert checkout.invoice_link is not None and checkout.invoice_link.startswith("https://t.me/$")
    assert checkout.details == {"subscription": False}
    assert emu.calls("createInvoiceLink") == [
        {
            "title": "VPN Standard, 30 days",
            "description": "VPN Standard, 30 days",
            "payload": ORDER_ID,
            "provider_token": "",
            "currency": "XTR",
            "prices": [{"label": "VPN Standard, 30 days", "amount": 150}],
        }
    ]
    assert emu.invoice(checkout.invoice_link).payload == ORDER_ID


async def test_a_30_day_order_becomes_a_star_subscription(provider: StarsProvider, emu: TelegramBotApiEmulator) -> None:
    checkout = await provider.create_checkout(order(recurring_days=30))

    assert checkout.details == {"subscription": True}
    assert emu.calls("createInvoiceLink")[0]["subscription_period"] == 2592000


@pytest.mark.parametrize(
    ("overrides", "subscriptions_enabled"),
    [
        ({"recurring_days": 30}, False),
        ({"recurring_days": 30, "amount": Money.of(10_001, "XTR")}, True),
        ({"recurring_days": 90}, True),
        ({"recurring_days": None}, True),
    ],
    ids=["disabled", "over-10000-stars", "not-30-days", "one-time"],
)
async def test_no_subscription_unless_allowed(
    emu: TelegramBotApiEmulator, overrides: dict[str, Any], subscriptions_enabled: bool
) -> None:
    reset_breakers()
    provider = make_provider(emu, subscriptions_enabled=subscriptions_enabled)
    try:
        checkout = await provider.create_checkout(order(**overrides))
    finally:
        await provider.aclose()
    assert checkout.details == {"subscription": False}
    assert "subscription_period" not in emu.calls("createInvoiceLink")[0]


async def test_subscription_at_exactly_10000_stars(provider: StarsProvider, emu: TelegramBotApiEmulator) -> None:
    checkout = await provider.create_checkout(order(recurring_days=30, amount=Money.of(10_000, "XTR")))
    assert checkout.details == {"subscription": True}


async def test_long_descriptions_are_clipped_to_telegram_limits(
    provider: StarsProvider, emu: TelegramBotApiEmulator
) -> None:
    await provider.create_checkout(order(description="Premium VPN plan " * 30))

    sent = emu.calls("createInvoiceLink")[0]
    assert len(sent["title"]) == 32 and sent["title"].endswith("…")
    assert len(sent["description"]) <= 255 and sent["description"].endswith("…")


async def test_non_xtr_orders_are_refused_without_a_call(provider: StarsProvider, emu: TelegramBotApiEmulator) -> None:
    with pytest.raises(CheckoutRejected, match="XTR"):
        await provider.create_checkout(order(amount=Money.of("299.00", "RUB")))
    assert not emu.requests


async def test_telegram_refusal_is_checkout_rejected_with_its_description(
    provider: StarsProvider, emu: TelegramBotApiEmulator
) -> None:
    emu.fail_next(400, description="Bad Request: STARS_INVOICE_INVALID")

    with pytest.raises(TelegramApiError) as caught:
        await provider.create_checkout(order())

    assert isinstance(caught.value, CheckoutRejected)
    assert (caught.value.error_code, caught.value.description) == (400, "Bad Request: STARS_INVOICE_INVALID")
    assert emu.requests["createInvoiceLink"] == 1  # a refusal is not retried


async def test_429_waits_retry_after_from_the_body_then_succeeds(
    provider: StarsProvider, emu: TelegramBotApiEmulator, sleeps: Sleeps
) -> None:
    emu.fail_next(429, retry_after=7)

    checkout = await provider.create_checkout(order())

    assert checkout.invoice_link
    assert sleeps == [7.0]
    assert emu.requests["createInvoiceLink"] == 2


async def test_429_that_persists_is_provider_unavailable(
    provider: StarsProvider, emu: TelegramBotApiEmulator, sleeps: Sleeps
) -> None:
    emu.fail_next(429, retry_after=1, times=5)

    with pytest.raises(ProviderUnavailable, match="Too Many Requests"):
        await provider.create_checkout(order())

    assert emu.requests["createInvoiceLink"] == 3 and sleeps == [1.0, 1.0]


async def test_a_long_retry_after_is_not_waited_for(
    provider: StarsProvider, emu: TelegramBotApiEmulator, sleeps: Sleeps
) -> None:
    emu.fail_next(429, retry_after=3600)

    with pytest.raises(ProviderUnavailable):
        await provider.create_checkout(order())

    assert sleeps == [] and emu.requests["createInvoiceLink"] == 1


async def test_500_is_retried(provider: StarsProvider, emu: TelegramBotApiEmulator) -> None:
    emu.fail_next(500)
    assert (await provider.create_checkout(order())).invoice_link
    assert emu.requests["createInvoiceLink"] == 2


async def test_500_that_persists_is_provider_unavailable(provider: StarsProvider, emu: TelegramBotApiEmulator) -> None:
    emu.fail_next(502, times=3)
    with pytest.raises(ProviderUnavailable):
        await provider.create_checkout(order())
    assert emu.requests["createInvoiceLink"] == 3


async def test_timeout_is_provider_unavailable(emu: TelegramBotApiEmulator) -> None:
    reset_breakers()
    provider = make_provider(emu, timeout=0.2, retry=RetryPolicy(attempts=2, base_delay=0.001))
    emu.delay_next(1.0, times=2)
    try:
        with pytest.raises(ProviderUnavailable, match="Timeout"):
            await provider.create_checkout(order())
    finally:
        await provider.aclose()


async def test_a_rejected_token_is_provider_unavailable_and_never_logged(emu: TelegramBotApiEmulator) -> None:
    reset_breakers()
    provider = StarsProvider(emu.base_url, "1:wrong-token", emu.webhook_secret)
    try:
        with pytest.raises(ProviderUnavailable, match="Unauthorized") as caught:
            await provider.create_checkout(order())
    finally:
        await provider.aclose()
    assert "wrong-token" not in str(caught.value)


# --- webhooks: successful payments --------------------------------------------------------------------------------


async def test_successful_payment_becomes_a_succeeded_update(
    provider: StarsProvider, emu: TelegramBotApiEmulator
) -> None:
    _, delivery = await paid(provider, emu)
    charge_id = charge_id_of(delivery)

    update = await only_update(provider, delivery)

    assert update.state is PaymentState.SUCCEEDED
    assert update.kind == "successful_payment"
    assert (update.external_id, update.order_id) == (charge_id, ORDER_ID)
    assert update.amount == Money.of(150, "XTR")
    assert update.event_id == f"charge:{charge_id}"
    assert update.method == "stars"
    assert (update.saved_method, update.subscription_ref, update.is_renewal) == (None, None, False)
    assert update.paid_at is not None and abs(update.paid_at - datetime.now(UTC)) < timedelta(minutes=1)
    assert update.raw["message"]["from"]["id"] == USER


async def test_redelivery_keeps_the_event_id_and_a_second_payment_gets_a_new_one(
    provider: StarsProvider, emu: TelegramBotApiEmulator
) -> None:
    link, delivery = await paid(provider, emu)

    first = await only_update(provider, delivery)
    again = await only_update(provider, delivery)
    repaid = await only_update(provider, emu.pay(link, user_id=USER))  # an old invoice paid again

    assert first.event_id == again.event_id
    assert repaid.event_id != first.event_id and repaid.external_id != first.external_id
    assert repaid.order_id == first.order_id == ORDER_ID


async def test_wrong_amount_and_currency_are_reported_as_paid(
    provider: StarsProvider, emu: TelegramBotApiEmulator
) -> None:
    link, _ = await paid(provider, emu)

    cheap = await only_update(provider, emu.pay(link, user_id=USER, amount=Decimal(1)))
    dollars = await only_update(provider, emu.pay(link, user_id=USER, currency="USD"))

    assert cheap.amount == Money.of(1, "XTR")  # the service, not the adapter, calls it a mismatch
    assert dollars.amount == Money.of("1.50", "USD")


async def test_first_subscription_payment_carries_the_saved_method(
    provider: StarsProvider, emu: TelegramBotApiEmulator
) -> None:
    _, delivery = await paid(provider, emu, recurring_days=30)
    charge_id = charge_id_of(delivery)

    update = await only_update(provider, delivery)

    assert update.saved_method == SavedMethod("stars_subscription", "Telegram Stars subscription", charge_id)
    assert update.subscription_ref == charge_id
    assert update.is_renewal is False


async def test_a_renewal_is_a_new_charge_of_the_original_order(
    provider: StarsProvider, emu: TelegramBotApiEmulator
) -> None:
    _, first = await paid(provider, emu, recurring_days=30)

    renewal = await only_update(provider, emu.renew(charge_id_of(first)))

    assert renewal.state is PaymentState.SUCCEEDED
    assert renewal.is_renewal is True
    assert renewal.order_id == ORDER_ID
    assert renewal.external_id not in (None, charge_id_of(first))
    assert renewal.saved_method is None
    assert renewal.amount == Money.of(150, "XTR")
    payment = renewal.raw["message"]["successful_payment"]
    assert (payment["is_recurring"], payment["is_first_recurring"]) == (True, False)


async def test_refunded_payment_becomes_a_refunded_update(provider: StarsProvider, emu: TelegramBotApiEmulator) -> None:
    _, delivery = await paid(provider, emu)
    charge_id = charge_id_of(delivery)

    update = await only_update(provider, emu.refund_delivery(charge_id))

    assert update.state is PaymentState.REFUNDED
    assert (update.event_id, update.external_id, update.order_id) == (f"refund:{charge_id}", charge_id, ORDER_ID)
    assert update.amount == Money.of(150, "XTR")
    assert emu.charges[charge_id].refunded


# --- webhooks: authenticity and shape -----------------------------------------------------------------------------


async def test_forged_or_missing_secret_token_is_401(provider: StarsProvider, emu: TelegramBotApiEmulator) -> None:
    _, delivery = await paid(provider, emu)

    for bad in (emu.forged(delivery), delivery.without_header(SECRET_HEADER)):
        with pytest.raises(WebhookRejected) as caught:
            await provider.parse_webhook(incoming(bad))
        assert caught.value.status_code == 401


async def test_an_unset_secret_rejects_everything_with_403(emu: TelegramBotApiEmulator) -> None:
    provider = StarsProvider(emu.base_url, emu.token, "")
    try:
        link = (await provider.create_checkout(order())).invoice_link
        assert link is not None
        with pytest.raises(WebhookRejected, match="must be set") as caught:
            await provider.parse_webhook(incoming(emu.pay(link).with_header(SECRET_HEADER, "")))
    finally:
        await provider.aclose()
    assert caught.value.status_code == 403


async def test_a_tampered_body_with_the_right_token_is_not_detectable_but_keeps_its_event(
    provider: StarsProvider, emu: TelegramBotApiEmulator
) -> None:
    # Telegram signs nothing: the secret token proves the sender, not the body. The first digit in the body is
    # the update_id, so the money facts and the event id stay the same and the service applies it once.
    _, delivery = await paid(provider, emu)
    genuine = await only_update(provider, delivery)

    tampered = await only_update(provider, delivery.tampered())

    assert tampered.raw["update_id"] != genuine.raw["update_id"]
    assert (tampered.event_id, tampered.amount) == (genuine.event_id, genuine.amount)


def with_body(delivery: Delivery, body: Any) -> Delivery:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return replace(delivery, body=raw)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda update: b"{not json",
        lambda update: [update],
        lambda update: {k: v for k, v in update.items() if k != "update_id"},
        lambda update: update | {"message": update["message"] | {"successful_payment": "paid"}},
        lambda update: drop_payment_field(update, "telegram_payment_charge_id"),
        lambda update: drop_payment_field(update, "total_amount"),
        lambda update: set_payment_field(update, "total_amount", "150"),
        lambda update: set_payment_field(update, "currency", "???"),
        lambda update: set_payment_field(update, "is_first_recurring", "yes"),
    ],
    ids=[
        "not-json",
        "not-an-object",
        "no-update-id",
        "payment-not-object",
        "no-charge-id",
        "no-amount",
        "amount-as-string",
        "unknown-currency",
        "flag-not-bool",
    ],
)
async def test_malformed_updates_are_400(provider: StarsProvider, emu: TelegramBotApiEmulator, mutate: Any) -> None:
    _, delivery = await paid(provider, emu)
    body = mutate(json.loads(delivery.body))

    with pytest.raises(WebhookRejected) as caught:
        await provider.parse_webhook(incoming(with_body(delivery, body)))

    assert caught.value.status_code == 400


def drop_payment_field(update: dict[str, Any], name: str) -> dict[str, Any]:
    payment = dict(update["message"]["successful_payment"])
    del payment[name]
    return update | {"message": update["message"] | {"successful_payment": payment}}


def set_payment_field(update: dict[str, Any], name: str, value: Any) -> dict[str, Any]:
    payment = dict(update["message"]["successful_payment"]) | {name: value}
    return update | {"message": update["message"] | {"successful_payment": payment}}


async def test_updates_without_payments_are_acknowledged_and_ignored(
    provider: StarsProvider, emu: TelegramBotApiEmulator
) -> None:
    link = (await provider.create_checkout(order())).invoice_link
    assert link is not None
    query = emu.pre_checkout(link, USER)
    base = json.loads(query.body)
    others = [
        {
            "update_id": 1,
            "message": {"message_id": 5, "date": 1, "chat": {"id": USER, "type": "private"}, "text": "hi"},
        },
        {"update_id": 2, "callback_query": {"id": "9", "data": "buy"}},
        {"update_id": 3, "my_chat_member": {}},
    ]

    for body in [base, *others]:
        result = await provider.parse_webhook(incoming(with_body(query, body)))
        assert result.updates == []


# --- pre-checkout -------------------------------------------------------------------------------------------------


async def test_pre_checkout_query_is_read_and_answered_yes(
    provider: StarsProvider, emu: TelegramBotApiEmulator
) -> None:
    link = (await provider.create_checkout(order())).invoice_link
    assert link is not None
    delivery = emu.pre_checkout(link, USER)
    body = json.loads(delivery.body)
    assert (await provider.parse_webhook(incoming(delivery))).updates == []

    query = provider.pre_checkout_query(body)
    assert query == PreCheckout(
        query_id=body["pre_checkout_query"]["id"],
        order_id=ORDER_ID,
        amount=Money.of(150, "XTR"),
        telegram_user_id=USER,
    )
    await provider.answer_pre_checkout(query.query_id, True)

    record = emu.queries[query.query_id]
    assert (record.ok, record.error_message, record.late) == (True, None, False)
    assert record.answered_at is not None
    assert emu.calls("answerPreCheckoutQuery") == [{"pre_checkout_query_id": query.query_id, "ok": True}]


async def test_pre_checkout_answered_no_carries_the_message(
    provider: StarsProvider, emu: TelegramBotApiEmulator
) -> None:
    link = (await provider.create_checkout(order())).invoice_link
    assert link is not None
    query = provider.pre_checkout_query(json.loads(emu.pre_checkout(link, USER).body))
    assert query is not None

    await provider.answer_pre_checkout(query.query_id, False, "This order has expired.")
    record = emu.queries[query.query_id]
    assert (record.ok, record.error_message) == (False, "This order has expired.")


async def test_pre_checkout_query_of_other_updates_is_none_and_malformed_is_400(
    provider: StarsProvider, emu: TelegramBotApiEmulator
) -> None:
    _, delivery = await paid(provider, emu)
    assert provider.pre_checkout_query(json.loads(delivery.body)) is None
    with pytest.raises(WebhookRejected) as caught:
        provider.pre_checkout_query({"update_id": 1, "pre_checkout_query": {"id": "1", "currency": "XTR"}})
    assert caught.value.status_code == 400


async def test_a_late_answer_is_refused(provider: StarsProvider, emu: TelegramBotApiEmulator) -> None:
    link = (await provider.create_checkout(order())).invoice_link
    assert link is not None
    query = provider.pre_checkout_query(json.loads(emu.pre_checkout(link, USER).body))
    assert query is not None
    emu.advance(11)

    with pytest.raises(CheckoutRejected, match="too old"):
        await provider.answer_pre_checkout(query.query_id, True)
    assert emu.queries[query.query_id].late


async def test_answer_is_retried_at_most_once_and_never_waits_out_a_429(
    provider: StarsProvider, emu: TelegramBotApiEmulator, sleeps: Sleeps
) -> None:
    link = (await provider.create_checkout(order())).invoice_link
    assert link is not None
    query = provider.pre_checkout_query(json.loads(emu.pre_checkout(link, USER).body))
    assert query is not None

    emu.fail_next(500, times=2, method="answerPreCheckoutQuery")
    with pytest.raises(ProviderUnavailable):
        await provider.answer_pre_checkout(query.query_id, True)
    assert emu.requests["answerPreCheckoutQuery"] == 2

    emu.fail_next(429, retry_after=1, method="answerPreCheckoutQuery")
    with pytest.raises(ProviderUnavailable):
        await provider.answer_pre_checkout(query.query_id, True)
    assert emu.requests["answerPreCheckoutQuery"] == 3
    assert 1.0 not in sleeps

    emu.fail_next(500, method="answerPreCheckoutQuery")
    await provider.answer_pre_checkout(query.query_id, True)
    assert emu.queries[query.query_id].ok is True


async def test_answer_has_a_short_timeout(emu: TelegramBotApiEmulator) -> None:
    reset_breakers()
    provider = make_provider(emu, timeout=5.0, answer_timeout=0.15)
    emu.delay_next(2.0, times=2, method="answerPreCheckoutQuery")
    try:
        with pytest.raises(ProviderUnavailable, match="Timeout"):
            await provider.answer_pre_checkout("123", True)
    finally:
        await provider.aclose()
    assert emu.requests["answerPreCheckoutQuery"] == 2


# --- refunds ------------------------------------------------------------------------------------------------------


async def test_refund_then_repeat_both_succeed(provider: StarsProvider, emu: TelegramBotApiEmulator) -> None:
    _, delivery = await paid(provider, emu)
    charge_id = charge_id_of(delivery)
    amount = Money.of(150, "XTR")

    first = await provider.refund(charge_id, amount, idempotency_key="r1", user_telegram_id=USER)
    again = await provider.refund(charge_id, amount, idempotency_key="r1", user_telegram_id=USER)

    assert first.state is again.state is PaymentState.REFUNDED
    assert first.refund_id == charge_id
    assert emu.calls("refundStarPayment")[0] == {"user_id": USER, "telegram_payment_charge_id": charge_id}
    assert emu.charges[charge_id].refunded and emu.balance == 0
    refunded = emu.pending[-1]["message"]["refunded_payment"]  # Telegram also sends refunded_payment
    assert refunded["telegram_payment_charge_id"] == charge_id


async def test_refund_whose_answer_was_lost_is_done(emu: TelegramBotApiEmulator) -> None:
    reset_breakers()
    provider = make_provider(emu, timeout=0.3)
    try:
        link = (await provider.create_checkout(order())).invoice_link
        assert link is not None
        charge_id = charge_id_of(emu.pay(link, user_id=USER))
        emu.delay_next(2.0, method="refundStarPayment")

        result = await provider.refund(charge_id, Money.of(150, "XTR"), idempotency_key="r", user_telegram_id=USER)
    finally:
        await provider.aclose()

    assert result.state is PaymentState.REFUNDED
    assert emu.requests["refundStarPayment"] == 2
    assert sum(1 for t in emu.transactions if "receiver" in t) == 1


async def test_refund_of_an_unknown_charge_is_rejected(provider: StarsProvider, emu: TelegramBotApiEmulator) -> None:
    _, delivery = await paid(provider, emu)
    with pytest.raises(CheckoutRejected, match="CHARGE_NOT_FOUND"):
        await provider.refund("stxNope", Money.of(150, "XTR"), idempotency_key="r", user_telegram_id=USER)
    with pytest.raises(CheckoutRejected, match="CHARGE_NOT_FOUND"):  # someone else's charge
        await provider.refund(charge_id_of(delivery), Money.of(150, "XTR"), idempotency_key="r", user_telegram_id=1)


async def test_refund_in_another_currency_is_refused(provider: StarsProvider, emu: TelegramBotApiEmulator) -> None:
    with pytest.raises(CheckoutRejected):
        await provider.refund("stx1", Money.of("1.00", "USD"), idempotency_key="r", user_telegram_id=USER)
    assert not emu.requests


# --- fetch (reconciliation) ---------------------------------------------------------------------------------------


async def test_fetch_finds_a_charge_by_id_or_by_order(provider: StarsProvider, emu: TelegramBotApiEmulator) -> None:
    _, delivery = await paid(provider, emu)
    webhook = await only_update(provider, delivery)

    by_id = await provider.fetch(webhook.external_id, ORDER_ID)
    by_order = await provider.fetch(None, ORDER_ID)

    for update in (by_id, by_order):
        assert update is not None
        assert update.state is PaymentState.SUCCEEDED
        assert (update.external_id, update.order_id, update.amount) == (webhook.external_id, ORDER_ID, webhook.amount)
        assert update.event_id == webhook.event_id  # a late webhook after a fetch is the same event
        assert update.kind == "fetch"


async def test_fetch_of_an_unknown_payment_is_none(provider: StarsProvider, emu: TelegramBotApiEmulator) -> None:
    await paid(provider, emu)
    assert await provider.fetch("stxUnknown", ORDER_ID) is None
    assert await provider.fetch(None, "pay_other") is None


async def test_fetch_reports_a_refund_and_the_paid_amount(provider: StarsProvider, emu: TelegramBotApiEmulator) -> None:
    link, _ = await paid(provider, emu)
    delivery = emu.pay(link, user_id=USER, amount=3)
    charge_id = charge_id_of(delivery)
    before = await provider.fetch(charge_id, ORDER_ID)
    assert before is not None and before.amount == Money.of(3, "XTR")  # what was paid, not the price

    await provider.refund(charge_id, Money.of(3, "XTR"), idempotency_key="r", user_telegram_id=USER)
    update = await provider.fetch(charge_id, ORDER_ID)

    assert update is not None and update.state is PaymentState.REFUNDED
    assert update.event_id == f"refund:{charge_id}"


async def test_fetch_pages_through_transactions(provider: StarsProvider, emu: TelegramBotApiEmulator) -> None:
    filler = (await provider.create_checkout(order(order_id="pay_filler"))).invoice_link
    assert filler is not None
    for _ in range(120):
        emu.pay(filler)
    _, delivery = await paid(provider, emu)

    update = await provider.fetch(None, ORDER_ID)

    assert update is not None and update.external_id == charge_id_of(delivery)
    offsets = [call["offset"] for call in emu.calls("getStarTransactions")]
    assert offsets == [0, 100]
    assert all(call["limit"] == 100 for call in emu.calls("getStarTransactions"))


async def test_fetch_tells_a_first_subscription_charge_from_a_renewal(
    provider: StarsProvider, emu: TelegramBotApiEmulator
) -> None:
    _, first = await paid(provider, emu, recurring_days=30)
    first_id = charge_id_of(first)
    renewal_id = charge_id_of(emu.renew(first_id))

    original = await provider.fetch(None, ORDER_ID)
    renewal = await provider.fetch(renewal_id, ORDER_ID)

    assert original is not None and original.external_id == first_id
    assert original.saved_method == SavedMethod("stars_subscription", "Telegram Stars subscription", first_id)
    assert renewal is not None and renewal.is_renewal and renewal.saved_method is None


async def test_fetch_when_telegram_is_down_is_provider_unavailable(
    provider: StarsProvider, emu: TelegramBotApiEmulator
) -> None:
    emu.fail_next(500, times=3)
    with pytest.raises(ProviderUnavailable):
        await provider.fetch(None, ORDER_ID)


# --- subscriptions ------------------------------------------------------------------------------------------------


async def test_cancel_recurring_cancels_the_star_subscription(
    provider: StarsProvider, emu: TelegramBotApiEmulator
) -> None:
    _, first = await paid(provider, emu, recurring_days=30)
    first_id = charge_id_of(first)

    await provider.cancel_recurring(first_id, user_telegram_id=USER)

    assert emu.calls("editUserStarSubscription") == [
        {"user_id": USER, "telegram_payment_charge_id": first_id, "is_canceled": True}
    ]
    assert emu.subscriptions[first_id].canceled
    with pytest.raises(RuntimeError, match="cancelled"):
        emu.renew(first_id)


async def test_cancel_recurring_needs_the_first_charge(provider: StarsProvider, emu: TelegramBotApiEmulator) -> None:
    _, first = await paid(provider, emu, recurring_days=30)
    renewal_id = charge_id_of(emu.renew(charge_id_of(first)))

    with pytest.raises(CheckoutRejected):
        await provider.cancel_recurring(renewal_id, user_telegram_id=USER)


async def test_charge_saved_is_not_supported(provider: StarsProvider) -> None:
    with pytest.raises(NotSupported):
        await provider.charge_saved(order(), "stx1")


# --- the whole flow through a webhook -----------------------------------------------------------------------------


def bot_webhook(emu: TelegramBotApiEmulator, seen: list[ProviderUpdate], *, answer: bool | None) -> FastAPI:
    """A stand-in for our webhook route: verify, answer a pre-checkout inline (or not), collect updates."""
    app = FastAPI()

    @app.post("/webhook")
    async def webhook(request: Request) -> JSONResponse:
        # The route runs on the webhook server's own loop, so it gets its own provider.
        provider = make_provider(emu)
        try:
            body = await request.body()
            result = await provider.parse_webhook(IncomingWebhook(body, dict(request.headers), None))
            query = provider.pre_checkout_query(json.loads(body))
            if query is not None and answer is not None:
                await provider.answer_pre_checkout(query.query_id, answer, None if answer else "Sold out")
            seen.extend(result.updates)
        finally:
            await provider.aclose()
        return JSONResponse({})

    return app


@pytest.mark.parametrize(
    ("answer", "status"), [(True, "paid"), (False, "rejected"), (None, "timeout")], ids=["yes", "no", "silent"]
)
async def test_emulated_pay_flow_posts_to_the_webhook(
    provider: StarsProvider, emu: TelegramBotApiEmulator, sockets: Any, answer: bool | None, status: str
) -> None:
    _, (hook, hook_url) = sockets
    seen: list[ProviderUpdate] = []
    hook.app = bot_webhook(emu, seen, answer=answer)
    # Telegram's own 10 s for an answer, so a busy machine's slow answer is not "late"; a bot that never answers
    # is given up on sooner, to keep the silent case short.
    emu.pre_checkout_timeout = 0.3 if answer is None else 10.0
    try:
        link = (await provider.create_checkout(order())).invoice_link
        async with httpx.AsyncClient(base_url=emu.base_url) as client:
            assert (await client.put("/_emu/tg/webhook", json={"url": hook_url + "/webhook"})).status_code == 200
            response = await client.post("/_emu/tg/pay", json={"invoice_link": link, "user_id": USER})
    finally:
        hook.app = None

    assert response.status_code == 200
    result = response.json()
    assert result["status"] == status
    if status == "paid":
        assert [u.external_id for u in seen] == [result["charge_id"]]
        assert seen[0].order_id == ORDER_ID
    else:
        assert seen == [] and not emu.charges


# --- the emulator's own wire behaviour ----------------------------------------------------------------------------


async def api(emu: TelegramBotApiEmulator, method: str, token: str | None = None, **kwargs: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=emu.base_url) as client:
        return await client.post(f"/bot{token or emu.token}/{method}", **kwargs)


async def test_emulator_auth_and_unknown_methods(emu: TelegramBotApiEmulator) -> None:
    unauthorized = await api(emu, "getMe", token="1:nope")
    missing = await api(emu, "fooBar")
    assert (unauthorized.status_code, unauthorized.json()) == (
        401,
        {"ok": False, "error_code": 401, "description": "Unauthorized"},
    )
    assert (missing.status_code, missing.json()) == (404, {"ok": False, "error_code": 404, "description": "Not Found"})


async def test_emulator_get_me_send_message_and_balance(emu: TelegramBotApiEmulator) -> None:
    me = (await api(emu, "getme")).json()  # method names are case-insensitive
    assert me["ok"] and me["result"]["is_bot"] and me["result"]["id"] == emu.bot_id

    sent = (await api(emu, "sendMessage", json={"chat_id": USER, "text": "hello"})).json()
    assert sent["result"]["chat"]["id"] == USER and sent["result"]["text"] == "hello"
    assert [m["text"] for m in emu.messages] == ["hello"]

    emu.blocked_users.add(USER)
    blocked = await api(emu, "sendMessage", data={"chat_id": str(USER), "text": "again"})
    assert blocked.status_code == 403 and blocked.json()["description"] == "Forbidden: bot was blocked by the user"
    assert (await api(emu, "getMyStarBalance")).json()["result"] == {"amount": 0}


async def test_emulator_accepts_form_encoded_invoices(emu: TelegramBotApiEmulator) -> None:
    form = {
        "title": "VPN",
        "description": "30 days",
        "payload": "p1",
        "currency": "XTR",
        "prices": json.dumps([{"label": "VPN", "amount": 5}]),
        "subscription_period": "2592000",
    }
    response = await api(emu, "createInvoiceLink", data=form)
    assert response.json()["ok"] is True
    assert emu.invoice("p1").subscription_period == 2592000


GOOD_INVOICE = {
    "title": "VPN",
    "description": "30 days",
    "payload": "p1",
    "currency": "XTR",
    "provider_token": "",
    "prices": [{"label": "VPN", "amount": 100}],
}


@pytest.mark.parametrize(
    ("change", "description"),
    [
        ({"currency": "USD"}, "PAYMENT_PROVIDER_INVALID"),
        ({"provider_token": "284685063:TEST:abc"}, "PAYMENT_PROVIDER_INVALID"),
        ({"prices": [{"label": "a", "amount": 1}, {"label": "b", "amount": 1}]}, "STARS_INVOICE_INVALID"),
        ({"prices": [{"label": "a", "amount": 0}]}, "CURRENCY_TOTAL_AMOUNT_INVALID"),
        ({"prices": [{"label": "a", "amount": 1.5}]}, "CURRENCY_TOTAL_AMOUNT_INVALID"),
        ({"subscription_period": 86400}, "SUBSCRIPTION_PERIOD_INVALID"),
        ({"subscription_period": 2592000, "prices": [{"label": "a", "amount": 10_001}]}, "STARS_INVOICE_INVALID"),
        ({"title": "x" * 33}, "title"),
        ({"description": ""}, "description"),
        ({"payload": "я" * 65}, "INVOICE_PAYLOAD_INVALID"),
        ({"title": None}, '"title" is required'),
    ],
)
async def test_emulator_validates_invoices(
    emu: TelegramBotApiEmulator, change: dict[str, Any], description: str
) -> None:
    body = {k: v for k, v in (GOOD_INVOICE | change).items() if v is not None}
    response = await api(emu, "createInvoiceLink", json=body)
    assert response.status_code == 400
    assert response.json()["ok"] is False and description in response.json()["description"]
    assert not emu.invoices


async def test_emulator_star_transactions_and_subscription_rules(emu: TelegramBotApiEmulator) -> None:
    assert (await api(emu, "createInvoiceLink", json=GOOD_INVOICE | {"subscription_period": 2592000})).is_success
    first = charge_id_of(emu.pay("p1"))
    renewal = charge_id_of(emu.renew(first))

    page = (await api(emu, "getStarTransactions", json={"offset": 1, "limit": 1})).json()["result"]
    assert [t["id"] for t in page["transactions"]] == [renewal]
    assert page["transactions"][0]["source"]["subscription_period"] == 2592000
    edit = {"user_id": DEFAULT_USER_ID, "telegram_payment_charge_id": renewal, "is_canceled": True}
    assert (await api(emu, "editUserStarSubscription", json=edit)).status_code == 400
    edit["telegram_payment_charge_id"] = first
    assert (await api(emu, "editUserStarSubscription", json=edit)).json() == {"ok": True, "result": True}
    assert (await api(emu, "getMyStarBalance")).json()["result"] == {"amount": 200}


async def test_emulator_429_shape(emu: TelegramBotApiEmulator) -> None:
    async with httpx.AsyncClient(base_url=emu.base_url) as client:
        armed = await client.post("/_emu/tg/faults/fail_next", json={"status": 429, "retry_after": 5})
    assert armed.status_code == 200
    response = await api(emu, "getMe")
    assert response.status_code == 429
    assert response.json() == {
        "ok": False,
        "error_code": 429,
        "description": "Too Many Requests: retry after 5",
        "parameters": {"retry_after": 5},
    }
