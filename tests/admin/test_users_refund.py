"""A refund from the customer page goes through the provider (the YooKassa emulator, over real HTTP) via the
outbox: the provider records the refund, the payment becomes refunded, its days are taken back, and the staff
member's request is audited with before and after."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from app.config import Settings
from app.kit.clock import utcnow
from app.kit.http import reset_breakers
from app.kit.money import Money
from app.models import AuditLog, Payment, PaymentRefund, PaymentStatus, RefundStatus, Subscription
from app.payments.providers.base import CheckoutOrder, IncomingWebhook
from app.payments.service import Outcome
from app.payments.webhooks import receive
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


def _refund_url(payment: Payment) -> str:
    return f"/admin/users/{payment.user_id}/payments/{payment.id}/refund"


async def _refund_rows(admin: AdminHarness, payment: Payment) -> list[PaymentRefund]:
    found = await admin.db.scalars(
        select(PaymentRefund).where(PaymentRefund.payment_id == payment.id).order_by(PaymentRefund.id)
    )
    return list(found.all())


async def test_a_partial_refund_then_the_rest_then_nothing_left(
    admin: AdminHarness, yookassa: tuple[YooKassaEmulator, str]
) -> None:
    emulator, _ = yookassa
    payment, ends = await _paid_customer(admin)
    emulator.pay(payment.external_id or "")
    client = await admin.browser("admin")
    page = await client.get(f"/admin/users/{payment.user_id}")
    assert 'name="amount"' in page.text and 'value="199.00"' in page.text  # all of it, unless staff type less

    form = {"amount": "50.00", "refund_key": "first-click"}
    asked = await client.post(_refund_url(payment), data=form, headers=htmx("content"))
    assert asked.status_code == 200 and "toast-success" in asked.text
    # A double click sends the same form again: one refund, one request to the provider.
    again = await client.post(_refund_url(payment), data=form, headers=htmx("content"))
    assert again.status_code == 200
    await drain_outbox(admin.app)
    (first,) = emulator.refunds.values()
    assert first["amount"] == {"value": "50.00", "currency": "RUB"}
    stored = await admin.db.get(Payment, payment.id, populate_existing=True)
    assert (stored.status, stored.refunded_minor, stored.refunded_at) == (PaymentStatus.SUCCEEDED, 50_00, None)
    (row,) = await _refund_rows(admin, payment)
    assert (row.status, row.amount_minor, row.provider_refund_id) == (RefundStatus.SUCCEEDED, 50_00, first["id"])
    # A partial refund leaves the purchase's days alone.
    subscription = await admin.db.get(Subscription, payment.subscription_id, populate_existing=True)
    assert subscription.ends_at == ends
    (audit_row,) = (
        await admin.db.scalars(select(AuditLog).where(AuditLog.action == "payment.partially_refunded"))
    ).all()
    assert audit_row.before == {"status": "succeeded", "refunded_minor": 0}
    assert audit_row.after["refunded_minor"] == 50_00 and audit_row.after["status"] == "succeeded"

    # YooKassa's own notification about that refund arrives too: it is the same refund, counted once.
    delivery = emulator.refund_delivery(first["id"])
    provider = admin.app.state.resources.payments.get("yookassa")
    webhook = IncomingWebhook(body=delivery.body, headers=delivery.headers, peer_ip=delivery.peer_ip)
    _, outcomes = await receive(admin.app.state.resources, "yookassa", webhook)
    assert outcomes == [Outcome.UNCHANGED] and provider is not None
    assert (await admin.db.get(Payment, payment.id, populate_existing=True)).refunded_minor == 50_00

    # The list and the payment's page show what went back.
    listed = await client.get("/admin/payments")
    assert 'data-refunded="5000"' in listed.text
    shown = await client.get(f"/admin/payments/{payment.id}")
    assert 'data-refunded="5000"' in shown.text

    page = await client.get(f"/admin/users/{payment.user_id}")
    assert 'value="149.00"' in page.text and 'data-refunded="5000"' in page.text
    rest = await client.post(
        _refund_url(payment), data={"amount": "149", "refund_key": "second"}, headers=htmx("content")
    )
    assert rest.status_code == 200 and "toast-success" in rest.text
    await drain_outbox(admin.app)
    assert [r["amount"]["value"] for r in emulator.refunds.values()] == ["50.00", "149.00"]
    stored = await admin.db.get(Payment, payment.id, populate_existing=True)
    assert (stored.status, stored.refunded_minor) == (PaymentStatus.REFUNDED, 199_00) and stored.refunded_at
    subscription = await admin.db.get(Subscription, payment.subscription_id, populate_existing=True)
    assert subscription.ends_at <= ends - timedelta(days=29)  # the whole refund takes the days back

    # Nothing is left: refused, and the provider is not asked.
    more = await client.post(_refund_url(payment), data={"amount": "1", "refund_key": "third"}, headers=htmx("content"))
    assert more.status_code == 409 and "form-error" in more.text
    await drain_outbox(admin.app)
    assert len(emulator.refunds) == 2 and len(await _refund_rows(admin, payment)) == 2


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        ("150.00", "At most 149.00 RUB of this payment can still be refunded."),
        ("0", "Give an amount above zero."),
        ("-5", "Give an amount above zero."),
        ("12.345", "Give an amount in RUB, like 99.50."),
        ("lots", "Give an amount in RUB, like 99.50."),
    ],
)
async def test_a_refund_beyond_what_is_left_or_malformed_is_refused_and_changes_nothing(
    admin: AdminHarness, yookassa: tuple[YooKassaEmulator, str], amount: str, message: str
) -> None:
    emulator, _ = yookassa
    payment, _ = await _paid_customer(admin)
    emulator.pay(payment.external_id or "")
    client = await admin.browser("admin")
    await client.post(_refund_url(payment), data={"amount": "50", "refund_key": "k1"}, headers=htmx("content"))
    await drain_outbox(admin.app)
    audit_rows = await admin.db.scalar(select(func.count()).select_from(AuditLog))

    refused = await client.post(
        _refund_url(payment), data={"amount": amount, "refund_key": "k2"}, headers=htmx("content")
    )
    assert refused.status_code == 422
    assert "field-error" in refused.text and message in refused.text.replace("&nbsp;", " ").replace("\xa0", " ")
    await drain_outbox(admin.app)
    assert len(emulator.refunds) == 1
    assert len(await _refund_rows(admin, payment)) == 1
    stored = await admin.db.get(Payment, payment.id, populate_existing=True)
    assert (stored.status, stored.refunded_minor) == (PaymentStatus.SUCCEEDED, 50_00)
    assert await admin.db.scalar(select(func.count()).select_from(AuditLog)) == audit_rows
