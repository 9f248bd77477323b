"""The one interface every payment provider implements, and the plain data that crosses it.

A provider adapter speaks its provider's wire protocol (shared/reference/payments_api.md) and nothing else: it
never touches our database. It turns our order into a checkout on the provider, and turns whatever the provider
tells us (a webhook, a status fetch, a saved-method charge) into `ProviderUpdate`s, verified. The payments
service decides what an update means for our payment (app/payments/service.py).

Errors: `WebhookRejected` for input we must refuse (answered 4xx, nothing changes), `ProviderUnavailable` when
the provider could not be reached or failed (answered 5xx to a webhook so the provider retries; shown as "try
again" at checkout), `CheckoutRejected` when the provider refused the order itself (a clear 4xx/422).
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Protocol, runtime_checkable

from app.kit.money import Money


class PaymentState(enum.StrEnum):
    """What the provider says about one payment (our `PaymentStatus` adds `mismatch`, which is our verdict)."""

    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    REFUNDED = "refunded"


class ProviderError(Exception):
    """Base of the errors an adapter raises."""


class WebhookRejected(ProviderError):
    """A webhook we refuse: forged, tampered, malformed, from a disallowed address. Answered with `status_code`."""

    def __init__(self, message: str, *, status_code: int = 400) -> None:
        super().__init__(message)
        self.status_code = status_code


class ProviderUnavailable(ProviderError):
    """The provider's API could not be reached or kept failing (timeouts, 5xx, 429, open circuit)."""


class CredentialsRefused(ProviderUnavailable):
    """The provider refused our credentials (HTTP 401): our misconfiguration, unavailable until fixed. The admin's
    "test connection" tells it apart from a provider it cannot reach."""


class CheckoutRejected(ProviderError):
    """The provider refused to create the checkout or charge as asked (amount below its minimum, bad data)."""


@dataclass(frozen=True, slots=True)
class CheckoutOrder:
    """Our order, as the adapter needs it. `order_id` is our payment's public id: adapters send it wherever the
    provider echoes a merchant reference back (metadata, orderId, external_id, payload, reference_id)."""

    order_id: str
    idempotency_key: str
    amount: Money
    description: str
    user_id: int
    telegram_id: int
    # Where the customer returns after paying (our waiting page).
    return_url: str
    expires_at: datetime
    # A provider sub-method the customer chose ("bank_card", "sbp", "qris"); None lets the provider offer all.
    method: str | None = None
    # Ask the provider to keep the method for renewals (YooKassa save_payment_method).
    save_method: bool = False
    # A provider-managed subscription (Stars subscription_period, Razorpay subscription) of this many days.
    recurring_days: int | None = None
    # Contact for a fiscal receipt (54-FZ: e-mail or E.164 phone digits), when receipts are on.
    receipt_email: str | None = None
    receipt_phone: str | None = None


@dataclass(frozen=True, slots=True)
class Checkout:
    """What the provider made for the order: where to send the customer."""

    external_id: str | None  # the provider's id of the payment/invoice/link; None when it has none yet (Stars)
    pay_url: str | None  # a page to open (openLink / redirect)
    invoice_link: str | None = None  # a Telegram invoice link (openInvoice)
    expires_at: datetime | None = None
    details: dict[str, Any] = field(default_factory=dict)  # provider facts worth keeping (safe to show staff)


@dataclass(frozen=True, slots=True)
class SavedMethod:
    """A reusable method the provider reports: `secret` charges or identifies it (YooKassa payment_method_id,
    the first Stars subscription charge id, a Razorpay subscription id). Stored encrypted."""

    method_type: str  # "bank_card", "sbp", "stars_subscription", "razorpay_subscription"
    title: str  # safe to show: "Visa •••• 4444", "SBP", "Stars subscription"
    secret: str


@dataclass(frozen=True, slots=True)
class ProviderUpdate:
    """One verified statement from the provider about one payment."""

    # Unique per provider: a redelivery of the same event carries the same id and is applied once.
    event_id: str
    kind: str  # the provider's event name ("payment.succeeded", "invoice_paid", "successful_payment", "fetch")
    state: PaymentState
    external_id: str | None  # the provider's payment id
    order_id: str | None  # our order id echoed back, when the provider carries it
    amount: Money | None  # what was paid (or refunded, for REFUNDED); None when the event does not say
    method: str | None = None  # how it was paid ("bank_card", "sbp", "USDT", "QRIS")
    saved_method: SavedMethod | None = None
    # The customer revoked a saved method (YooKassa permission_revoked): its secret, to deactivate it.
    revoked_method_secret: str | None = None
    failure_reason: str | None = None
    # Provider-managed renewals: the subscription this charge belongs to and whether it is a renewal (not the
    # first charge). A renewal has no order of ours; the service records it as a new payment.
    subscription_ref: str | None = None
    is_renewal: bool = False
    paid_at: datetime | None = None
    # For REFUNDED: the provider's id of this refund (one payment may be refunded in several parts), so our own
    # call's answer and the provider's notification about the same refund count once.
    refund_id: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class IncomingWebhook:
    """A webhook request as received: the exact body bytes, lower-cased headers, and the TCP peer address.
    Adapters verify signatures over `body` itself, never over re-serialised JSON."""

    body: bytes
    headers: Mapping[str, str]
    peer_ip: str | None

    def __post_init__(self) -> None:
        # Header names are case-insensitive: adapters look them up in lower case.
        object.__setattr__(self, "headers", {name.lower(): value for name, value in self.headers.items()})


@dataclass(frozen=True, slots=True)
class OrderQuestion:
    """The provider asks, before it takes the money, whether an order may be paid now (Telegram's
    pre-checkout query, answered within 10 s). `answer(None)` says yes; `answer(reason)` refuses, showing the
    reason to the customer."""

    order_id: str
    amount: Money
    answer: Callable[[str | None], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class WebhookResult:
    """Verified updates to apply, a question to answer, and what to answer the provider (most want an empty 200)."""

    updates: list[ProviderUpdate]
    response_body: dict[str, Any] | None = None
    question: OrderQuestion | None = None


@dataclass(frozen=True, slots=True)
class RefundResult:
    refund_id: str
    state: PaymentState  # REFUNDED when done, PENDING while the provider processes it


@runtime_checkable
class PaymentProvider(Protocol):
    """One provider. Implementations also offer `from_settings(settings) -> Self | None` (None: not configured)
    and are registered in app/payments/registry.py."""

    name: ClassVar[str]
    # Currencies the provider can take our plan prices in.
    currencies: ClassVar[frozenset[str]]
    # Sub-methods the customer may pick ("bank_card", "sbp"); empty: the provider's page offers its own.
    methods: ClassVar[tuple[str, ...]]
    supports_refunds: ClassVar[bool]
    # Refunds of part of a payment, several until the whole is back (YooKassa, Razorpay); others refund whole.
    supports_partial_refunds: ClassVar[bool]
    # Merchant-initiated charges of a saved method (YooKassa, where the shop has autopayments): per instance, as
    # a shop's settings can turn it off.
    supports_saved_methods: bool
    # Provider-managed subscriptions that renew on their own (Stars, Razorpay).
    supports_recurring: ClassVar[bool]

    async def create_checkout(self, order: CheckoutOrder) -> Checkout: ...

    async def parse_webhook(self, webhook: IncomingWebhook) -> WebhookResult:
        """Verify and parse; weakly authenticated providers re-fetch the object from their API here."""
        ...

    async def fetch(self, external_id: str | None, order_id: str) -> ProviderUpdate | None:
        """The provider's current view of a payment (reconciliation of lost webhooks); None if it has none."""
        ...

    async def charge_saved(self, order: CheckoutOrder, secret: str) -> ProviderUpdate:
        """Charge a saved method without the customer (renewal); the answer may be final or PENDING."""
        ...

    async def refund(
        self, external_id: str, amount: Money, *, idempotency_key: str, user_telegram_id: int
    ) -> RefundResult:
        """Refund `amount` of a succeeded payment. Repeating a refund that already happened is a success
        (Stars CHARGE_ALREADY_REFUNDED); `user_telegram_id` is what Stars needs, others ignore it."""
        ...

    async def cancel_recurring(self, secret: str, *, user_telegram_id: int) -> None:
        """Stop a provider-managed subscription (or forget a saved method on the provider's side)."""
        ...

    async def aclose(self) -> None: ...


class NotSupported(ProviderError):
    """The provider has no such operation (a refund on Crypto Pay, a saved-method charge on Xendit)."""
