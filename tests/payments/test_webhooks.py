"""`POST /api/payments/webhook/{provider}` for every provider, against its HTTP emulator (SPEC §5.2): happy path,
forged signature, tampered body, wrong amount, unknown payment and duplicate delivery. The checkout is created
through our service on the emulator, the emulator's customer pays, and its webhook delivery is posted to our app
from the address the emulator sends from."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import delete, func, select

from app.kit.http import reset_breakers
from app.main import create_app
from app.models import Payment, PaymentEvent, PaymentStatus, Subscription, User
from app.payments.orders import CheckoutRequest, start_checkout
from tests.conftest import make_settings
from tests.emulators.harness import Plug, serve
from tests.emulators.payments_common import Delivery
from tests.payments.shop import seed_plans


def _emulator(module: str, name: str) -> Callable[[], Any]:
    def build() -> Any:
        return getattr(__import__(f"tests.emulators.{module}", fromlist=[name]), name)()

    return build


@dataclass(frozen=True)
class Case:
    provider: str
    build: Callable[[], Any]
    currency: str
    wrong_amount: Decimal
    # Whether the provider signs the body. YooKassa and Xendit do not but are re-fetched from their API, so a
    # tampered body is harmless; Telegram authenticates the request by its secret-token header only.
    signs_body: bool = True

    def ref(self, payment: Payment) -> str:
        if self.provider == "stars":
            return payment.public_id  # the invoice payload: Stars has no id before the payment
        return payment.external_id or payment.public_id

    def pay(self, emulator: Any, payment: Payment, **knobs: Any) -> Delivery:
        if self.provider == "razorpay" and (payment.external_id or "").startswith("sub_"):
            amount = knobs.get("amount")
            return emulator.charge_subscription(self.ref(payment), amount=int(amount * 100) if amount else None)
        return emulator.pay(self.ref(payment), **knobs)


CASES = [
    Case("yookassa", _emulator("yookassa", "YooKassaEmulator"), "RUB", Decimal("1.00"), signs_body=False),
    Case("wata", _emulator("wata", "WataEmulator"), "RUB", Decimal("100.00")),
    Case("stars", _emulator("telegram", "TelegramBotApiEmulator"), "XTR", Decimal(1), signs_body=False),
    Case("cryptopay", _emulator("cryptopay", "CryptoPayEmulator"), "RUB", Decimal("1.00")),
    Case("razorpay", _emulator("razorpay", "RazorpayEmulator"), "INR", Decimal("100.00")),
    Case("xendit", _emulator("xendit", "XenditEmulator"), "IDR", Decimal("10000"), signs_body=False),
]


@dataclass
class Harness:
    case: Case
    emulator: Any
    app: FastAPI
    user: User

    async def checkout(self, **fields: Any) -> Payment:
        resources = self.app.state.resources
        async with resources.sessionmaker() as session:
            request = CheckoutRequest(plan="month", provider=self.case.provider, currency=self.case.currency, **fields)
            return await start_checkout(
                session, resources.payments, resources.settings, self.user, request, return_url="http://t/{payment}"
            )

    async def post(self, delivery: Delivery) -> httpx.Response:
        transport = httpx.ASGITransport(app=self.app, client=(delivery.peer_ip, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://shop") as client:
            return await client.post(
                f"/api/payments/webhook/{self.case.provider}", content=delivery.body, headers=delivery.headers
            )

    async def payment(self, payment: Payment) -> Payment:
        async with self.app.state.resources.sessionmaker() as session:
            return await session.get_one(Payment, payment.id)

    async def count(self, model: Any) -> int:
        async with self.app.state.resources.sessionmaker() as session:
            return await session.scalar(select(func.count()).select_from(model)) or 0


@asynccontextmanager
async def running(case: Case, database_url: str, db) -> AsyncIterator[Harness]:
    """The shop (plans, a demo panel, one customer) wired to `case`'s emulator served over real HTTP."""
    reset_breakers()
    emulator = case.build()
    await seed_plans(db)
    user = User(telegram_id=777, referral_code="r777", language="ru")
    db.add(user)
    await db.commit()

    plug = Plug()
    plug.app = emulator.app
    with serve(plug) as base_url:
        settings = make_settings(database_url, **emulator.settings(base_url))
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            yield Harness(case, emulator, app, user)


CASE_BY_PROVIDER = {case.provider: case for case in CASES}


@pytest.fixture(params=CASES, ids=[case.provider for case in CASES])
async def harness(request: pytest.FixtureRequest, database_url: str, db) -> AsyncIterator[Harness]:
    async with running(request.param, database_url, db) as running_harness:
        yield running_harness


async def test_a_paid_checkout_is_credited_once_however_often_it_is_delivered(harness: Harness) -> None:
    payment = await harness.checkout()
    delivery = harness.case.pay(harness.emulator, payment)
    first = await harness.post(delivery)
    assert first.status_code == 200, first.text
    stored = await harness.payment(payment)
    assert stored.status == PaymentStatus.SUCCEEDED
    assert (stored.amount_minor, stored.currency) == (payment.amount_minor, harness.case.currency)
    events = await harness.count(PaymentEvent)

    again = await harness.post(delivery)
    assert again.status_code == 200 and again.json()["outcomes"] in (["duplicate"], ["unchanged"], [])
    assert await harness.count(PaymentEvent) == events
    assert await harness.count(Subscription) == 1
    assert (await harness.payment(payment)).paid_at == stored.paid_at


async def test_a_forged_delivery_is_refused_and_changes_nothing(harness: Harness) -> None:
    payment = await harness.checkout()
    delivery = harness.emulator.forged(harness.case.pay(harness.emulator, payment))
    response = await harness.post(delivery)
    assert response.status_code in (401, 403), response.text
    assert response.json()["error"]["code"] == "webhook_rejected"
    assert (await harness.payment(payment)).status == PaymentStatus.PENDING
    assert await harness.count(PaymentEvent) == 0


async def test_a_tampered_body_is_refused_or_overruled_by_the_provider_api(harness: Harness) -> None:
    payment = await harness.checkout()
    delivery = harness.case.pay(harness.emulator, payment).tampered()
    response = await harness.post(delivery)
    stored = await harness.payment(payment)
    if response.status_code == 200 and not harness.case.signs_body:
        # Nothing detects a changed body; what is applied is the re-fetched object (or, for Telegram, the
        # charge as the secret-token-authenticated update states it): the genuine, correctly priced payment.
        assert stored.status == PaymentStatus.SUCCEEDED
        assert stored.amount_minor == payment.amount_minor
    else:
        assert response.status_code in (400, 401, 403), response.text
        assert stored.status == PaymentStatus.PENDING
        assert await harness.count(PaymentEvent) == 0


async def test_a_wrong_amount_is_a_mismatch_and_nothing_is_credited(harness: Harness) -> None:
    payment = await harness.checkout()
    delivery = harness.case.pay(harness.emulator, payment, amount=harness.case.wrong_amount)
    response = await harness.post(delivery)
    assert response.status_code == 200, response.text
    assert (await harness.payment(payment)).status == PaymentStatus.MISMATCH
    assert await harness.count(Subscription) == 0


async def test_a_payment_we_do_not_know_is_a_404_and_changes_nothing(harness: Harness) -> None:
    payment = await harness.checkout()
    delivery = harness.case.pay(harness.emulator, payment)
    async with harness.app.state.resources.sessionmaker() as session:
        await session.execute(delete(Payment).where(Payment.id == payment.id))
        await session.commit()
    response = await harness.post(delivery)
    assert response.status_code == 404, response.text
    assert response.json()["error"]["code"] == "unknown_payment"
    assert await harness.count(PaymentEvent) == 0
    assert await harness.count(Subscription) == 0


async def test_malformed_json_is_a_4xx(harness: Harness) -> None:
    payment = await harness.checkout()
    delivery = harness.case.pay(harness.emulator, payment)
    broken = Delivery(b'{"not": "closed', delivery.headers, delivery.peer_ip)
    response = await harness.post(broken)
    assert 400 <= response.status_code < 500, response.text
    assert (await harness.payment(payment)).status == PaymentStatus.PENDING


async def test_an_unknown_provider_is_a_404(harness: Harness) -> None:
    transport = httpx.ASGITransport(app=harness.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://shop") as client:
        unknown = await client.post("/api/payments/webhook/paypal", content=b"{}")
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "provider_not_available"
