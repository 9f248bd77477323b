"""A refund from the customer page goes through the provider (the YooKassa emulator, over real HTTP) via the
outbox: the provider records the refund, the payment becomes refunded, its days are taken back, and the staff
member's request is audited with before and after."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from app.config import Settings
from app.kit.clock import utcnow
from app.kit.http import reset_breakers
from app.kit.money import Money
from app.models import AuditLog, Payment, PaymentStatus, Subscription
from app.payments.providers.base import CheckoutOrder
from tests.admin.conftest import AdminHarness
from tests.conftest import make_settings
from tests.emulators.harness import serve
from tests.emulators.yookassa import YooKassaEmulator
from tests.factories import add_account, add_server, add_subscriber
from tests.web import BOT_TOKEN, drain_outbox, htmx


@pytest.fixture
def yookassa() -> Iterator[tuple[YooKassaEmulator, str]]:
    reset_breakers()
    emulator = YooKassaEmulator()
    with serve(emulator.app) as base_url:
        yield emulator, base_url
    reset_breakers()


@pytest.fixture
def admin_settings(database_url: str, yookassa: tuple[YooKassaEmulator, str]) -> Settings:
    emulator, base_url = yookassa
    return make_settings(database_url, bot_token=BOT_TOKEN, **emulator.settings(base_url))


async def _paid_customer(admin: AdminHarness) -> tuple[Payment, datetime]:
    """A customer who paid 199 ₽ through YooKassa for 30 days (the emulator holds the succeeded payment)."""
    server = await add_server(admin.db)
    user, sub = await add_subscriber(admin.db, 8801, ends_in=timedelta(days=30))
    await add_account(admin.db, server, sub)
    public_id = str(uuid.uuid4())
    provider = admin.app.state.resources.payments.get("yookassa")
    checkout = await provider.create_checkout(
        CheckoutOrder(
            order_id=public_id,
            idempotency_key=f"key-{public_id}",
            amount=Money.of("199.00", "RUB"),
            description="VPN 30 days",
            user_id=user.id,
            telegram_id=user.telegram_id,
            return_url="http://t/app",
            expires_at=datetime.now(UTC) + timedelta(hours=1),
        )
    )
    payment = Payment(
        public_id=public_id,
        user_id=user.id,
        subscription_id=sub.id,
        provider="yookassa",
        amount_minor=19900,
        currency="RUB",
        status=PaymentStatus.SUCCEEDED,
        external_id=checkout.external_id,
        idempotency_key=f"key-{public_id}",
        days=30,
        paid_at=utcnow(),
    )
    admin.db.add(payment)
    await admin.db.commit()
    return payment, sub.ends_at


async def test_a_refund_goes_through_the_provider_and_takes_the_days_back(
    admin: AdminHarness, yookassa: tuple[YooKassaEmulator, str]
) -> None:
    emulator, _ = yookassa
    payment, ends = await _paid_customer(admin)
    emulator.pay(payment.external_id or "")
    client = await admin.browser("admin")
    page = await client.get(f"/admin/users/{payment.user_id}")
    assert f"/payments/{payment.id}/refund" in page.text

    asked = await client.post(f"/admin/users/{payment.user_id}/payments/{payment.id}/refund", headers=htmx("content"))
    assert asked.status_code == 200 and "toast-success" in asked.text
    (row,) = (await admin.db.scalars(select(AuditLog).where(AuditLog.action == "payment.refund_requested"))).all()
    assert (row.actor_type, row.actor_id) == ("staff", str(admin.staff["admin"].id))
    assert row.before["refund"] is None and row.after["refund"] == "requested"

    await drain_outbox(admin.app)
    (refund,) = emulator.refunds.values()
    assert refund["payment_id"] == payment.external_id and refund["amount"] == {"value": "199.00", "currency": "RUB"}
    stored = await admin.db.get(Payment, payment.id, populate_existing=True)
    assert stored.status == PaymentStatus.REFUNDED
    subscription = await admin.db.get(Subscription, stored.subscription_id, populate_existing=True)
    assert subscription.ends_at <= ends - timedelta(days=29)

    # A second refund of the same payment is refused, and the provider is not asked again.
    again = await client.post(f"/admin/users/{payment.user_id}/payments/{payment.id}/refund", headers=htmx("content"))
    assert again.status_code == 409 and "form-error" in again.text
    await drain_outbox(admin.app)
    assert len(emulator.refunds) == 1


async def test_support_may_not_refund_and_nothing_reaches_the_provider(
    admin: AdminHarness, yookassa: tuple[YooKassaEmulator, str]
) -> None:
    emulator, _ = yookassa
    payment, _ = await _paid_customer(admin)
    emulator.pay(payment.external_id or "")
    client = await admin.browser("support")
    page = await client.get(f"/admin/users/{payment.user_id}")
    assert f"/payments/{payment.id}/refund" not in page.text
    denied = await client.post(f"/admin/users/{payment.user_id}/payments/{payment.id}/refund", headers=htmx("content"))
    assert denied.status_code == 403
    await drain_outbox(admin.app)
    assert emulator.refunds == {}
    assert (await admin.db.get(Payment, payment.id, populate_existing=True)).status == PaymentStatus.SUCCEEDED
