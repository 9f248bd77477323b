"""The demo payment provider (SPEC §1.1): a local pay page where the customer chooses what happens (succeed,
fail, cancel, or succeed with the notification delivered twice), and signed webhooks that reach the shop the way
a real provider's do — asynchronously, through our webhook code path, verified and deduplicated.

Its own state lives in `demo_invoices` (a real provider's database); the shop's tables are never touched here.
Wire format of its notifications:

    {"event_id": "...", "event": "invoice.paid|invoice.failed|invoice.cancelled|invoice.refunded",
     "invoice": {"id", "order_id", "amount": "199.00", "currency", "status", "paid_at", "card": {...} | null}}

signed with `X-Demo-Signature: hex(HMAC-SHA256(key, raw body))`, the key derived from SECRET_KEY.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from typing import Any, ClassVar

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.db import transaction
from app.kit.clock import ensure_utc, utcnow
from app.kit.money import CURRENCY_EXPONENTS, Money, MoneyError
from app.models import DemoInvoice, DemoInvoiceStatus
from app.payments.providers.base import (
    Checkout,
    CheckoutOrder,
    CheckoutRejected,
    IncomingWebhook,
    PaymentState,
    ProviderUpdate,
    RefundResult,
    SavedMethod,
    WebhookRejected,
    WebhookResult,
)

SIGNATURE_HEADER = "x-demo-signature"
# A saved demo card whose token starts with this is declined on renewal (to try the failure path).
DECLINING_CARD = "demo_declined_"

STATE_OF = {
    DemoInvoiceStatus.PENDING: PaymentState.PENDING,
    DemoInvoiceStatus.PAID: PaymentState.SUCCEEDED,
    DemoInvoiceStatus.FAILED: PaymentState.FAILED,
    DemoInvoiceStatus.CANCELLED: PaymentState.CANCELLED,
    DemoInvoiceStatus.REFUNDED: PaymentState.REFUNDED,
}
EVENT_OF = {
    DemoInvoiceStatus.PAID: "invoice.paid",
    DemoInvoiceStatus.FAILED: "invoice.failed",
    DemoInvoiceStatus.CANCELLED: "invoice.cancelled",
    DemoInvoiceStatus.REFUNDED: "invoice.refunded",
}


def signing_key(secret_key: str) -> bytes:
    return hashlib.sha256(b"vpnshop-demo-payments:" + secret_key.encode()).digest()


def sign(key: bytes, body: bytes) -> str:
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def invoice_json(invoice: DemoInvoice) -> dict[str, Any]:
    card = None
    if invoice.card_token:
        card = {"token": invoice.card_token, "title": "Demo card •••• 4242"}
    return {
        "id": invoice.external_id,
        "order_id": invoice.order_id,
        "amount": str(Money.from_minor(invoice.amount_minor, invoice.currency).amount),
        "currency": invoice.currency,
        "status": invoice.status.value,
        "paid_at": invoice.paid_at.isoformat() if invoice.paid_at else None,
        "card": card,
    }


def notification(invoice: DemoInvoice, key: bytes) -> tuple[bytes, dict[str, str]]:
    """The signed notification about the invoice's current status (a new event id per notification)."""
    invoice.deliveries += 1
    body = json.dumps(
        {
            "event_id": f"{invoice.external_id}:{invoice.deliveries}",
            "event": EVENT_OF[invoice.status],
            "invoice": invoice_json(invoice),
        },
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()
    return body, {"content-type": "application/json", SIGNATURE_HEADER: sign(key, body)}


def _update(invoice: dict[str, Any], *, event_id: str, kind: str) -> ProviderUpdate:
    try:
        status = DemoInvoiceStatus(invoice["status"])
        amount = Money.of(invoice["amount"], invoice["currency"])
        card = invoice.get("card")
        saved = SavedMethod("demo_card", card["title"], card["token"]) if card else None
        return ProviderUpdate(
            event_id=event_id,
            kind=kind,
            state=STATE_OF[status],
            external_id=str(invoice["id"]),
            order_id=str(invoice["order_id"]),
            amount=amount,
            method="demo_card",
            saved_method=saved if status == DemoInvoiceStatus.PAID else None,
            failure_reason={"failed": "declined", "cancelled": "cancelled by the customer"}.get(status.value),
            raw=invoice,
        )
    except (KeyError, TypeError, ValueError, MoneyError) as exc:
        raise WebhookRejected(f"malformed demo invoice: {exc}") from None


class DemoProvider:
    name: ClassVar[str] = "demo"
    currencies: ClassVar[frozenset[str]] = frozenset(CURRENCY_EXPONENTS)
    methods: ClassVar[tuple[str, ...]] = ()
    supports_refunds: ClassVar[bool] = True
    supports_partial_refunds: ClassVar[bool] = False
    supports_saved_methods: bool = True
    supports_recurring: ClassVar[bool] = False

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], *, base_url: str, key: bytes) -> None:
        self._sessionmaker = sessionmaker
        self._base_url = base_url.rstrip("/")
        self.key = key

    @classmethod
    def from_settings(
        cls, settings: Settings, sessionmaker: async_sessionmaker[AsyncSession] | None = None
    ) -> DemoProvider | None:
        if not settings.demo_payments_enabled or sessionmaker is None:
            return None
        return cls(sessionmaker, base_url=settings.public_base_url, key=signing_key(settings.secret_key))

    def pay_page(self, external_id: str) -> str:
        return f"{self._base_url}/pay/demo/{external_id}"

    async def create_checkout(self, order: CheckoutOrder) -> Checkout:
        external_id = "demo_" + secrets.token_hex(12)
        async with transaction(self._sessionmaker) as session:
            session.add(
                DemoInvoice(
                    external_id=external_id,
                    order_id=order.order_id,
                    amount_minor=order.amount.minor,
                    currency=order.amount.currency,
                    description=order.description[:255],
                    return_url=order.return_url,
                    status=DemoInvoiceStatus.PENDING,
                    save_card=order.save_method,
                    expires_at=order.expires_at,
                )
            )
        return Checkout(external_id=external_id, pay_url=self.pay_page(external_id), expires_at=order.expires_at)

    async def parse_webhook(self, webhook: IncomingWebhook) -> WebhookResult:
        signature = webhook.headers.get(SIGNATURE_HEADER, "")
        if not hmac.compare_digest(signature.encode(), sign(self.key, webhook.body).encode()):
            raise WebhookRejected("bad X-Demo-Signature", status_code=401)
        try:
            event = json.loads(webhook.body)
            update = _update(event["invoice"], event_id=str(event["event_id"]), kind=str(event["event"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise WebhookRejected(f"malformed notification: {exc}") from None
        return WebhookResult([update])

    async def fetch(self, external_id: str | None, order_id: str) -> ProviderUpdate | None:
        async with transaction(self._sessionmaker) as session:
            query = select(DemoInvoice).where(DemoInvoice.order_id == order_id)
            if external_id:
                query = select(DemoInvoice).where(DemoInvoice.external_id == external_id)
            invoice = await session.scalar(query.order_by(DemoInvoice.id.desc()).limit(1))
            if invoice is None:
                return None
            if invoice.status == DemoInvoiceStatus.PENDING and ensure_utc(invoice.expires_at) <= utcnow():
                invoice.status = DemoInvoiceStatus.CANCELLED
            data = invoice_json(invoice)
        return _update(data, event_id=f"fetch:{data['id']}:{data['status']}", kind="fetch")

    async def charge_saved(self, order: CheckoutOrder, secret: str) -> ProviderUpdate:
        declined = secret.startswith(DECLINING_CARD)
        async with transaction(self._sessionmaker) as session:
            invoice = await session.scalar(select(DemoInvoice).where(DemoInvoice.order_id == order.order_id))
            if invoice is None:  # the same order charged again (a retried job) is answered from the first charge
                invoice = DemoInvoice(
                    external_id="demo_" + secrets.token_hex(12),
                    order_id=order.order_id,
                    amount_minor=order.amount.minor,
                    currency=order.amount.currency,
                    description=order.description[:255],
                    return_url=order.return_url,
                    status=DemoInvoiceStatus.FAILED if declined else DemoInvoiceStatus.PAID,
                    card_token=secret,
                    expires_at=order.expires_at,
                    paid_at=None if declined else utcnow(),
                )
                session.add(invoice)
                await session.flush()
            data = invoice_json(invoice)
        return _update(data, event_id=f"charge:{data['id']}", kind="charge")

    async def refund(
        self, external_id: str, amount: Money, *, idempotency_key: str, user_telegram_id: int
    ) -> RefundResult:
        async with transaction(self._sessionmaker) as session:
            invoice = await session.scalar(
                select(DemoInvoice).where(DemoInvoice.external_id == external_id).with_for_update()
            )
            if invoice is None or invoice.status not in (DemoInvoiceStatus.PAID, DemoInvoiceStatus.REFUNDED):
                raise CheckoutRejected("only a paid demo invoice can be refunded")
            invoice.status = DemoInvoiceStatus.REFUNDED
        return RefundResult(refund_id=f"refund_{external_id}", state=PaymentState.REFUNDED)

    async def cancel_recurring(self, secret: str, *, user_telegram_id: int) -> None:
        """Demo cards are forgotten on our side only, as with YooKassa."""

    async def aclose(self) -> None:
        """Nothing to close: the demo provider shares the shop's database engine."""
