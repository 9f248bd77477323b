"""Razorpay (India, INR) behind `PaymentProvider`: Payment Links for one-off payments, Subscriptions for renewals.

Wire facts, from shared/reference/payments_api.md §6 (emulated per §10.5):
- Base `https://api.razorpay.com/v1`, HTTP Basic `key_id:key_secret`; amounts are integer paise, minimum 100;
  errors are `{"error": {"code": "BAD_REQUEST_ERROR", "description": …, "field": …}}` (§6.1).
- `POST /payment_links` {amount, currency, accept_partial, reference_id (≤ 40, unique), description,
  callback_url, callback_method, expire_by, notes} → `plink_…` with `short_url`; statuses created,
  partially_paid, paid, expired, cancelled (§6.3). Razorpay has no idempotency header for links: the unique
  `reference_id` (our order id) is what makes a repeated create safe.
- `POST /plans` {period, interval, item{name, amount, currency}} and `POST /subscriptions` {plan_id, total_count,
  customer_notify, notes} → `sub_…` with `short_url`; `POST /subscriptions/{id}/cancel {"cancel_at_cycle_end": 1}`
  (§6.4). Each period is granted on `subscription.charged` (which carries the payment), revoked on halted/cancelled.
- Webhooks: `X-Razorpay-Signature` = lowercase hex HMAC-SHA256(webhook secret, raw body); after a secret rotation
  retries of old events are signed with the old secret; `X-Razorpay-Event-Id` dedupes (§6.5).

Not in the reference, so a sandbox must confirm: the refunds API (`POST /payments/{id}/refund` {amount, receipt,
notes}, `GET /payments/{id}/refunds`, the "fully refunded already" refusal), `GET /payments/{id}`,
`GET /payment_links?reference_id=`, `GET /invoices?subscription_id=` (a subscription's charges), the refusal of a
duplicate `reference_id`, the 15-minute minimum of `expire_by`, and whether `cancel_at_cycle_end: 1` is refused
for a subscription that is not active yet.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar, Self
from urllib.parse import quote

import httpx

from app.config import Settings
from app.kit.clock import ensure_utc, utcnow
from app.kit.errors import ExternalServiceError
from app.kit.http import HttpClient, RetryPolicy
from app.kit.money import Money, MoneyError
from app.payments.providers.base import (
    Checkout,
    CheckoutOrder,
    CheckoutRejected,
    CredentialsRefused,
    IncomingWebhook,
    NotSupported,
    PaymentState,
    ProviderUnavailable,
    ProviderUpdate,
    RefundResult,
    SavedMethod,
    WebhookRejected,
    WebhookResult,
)
from app.payments.providers.fields import JsonFields

SERVICE = "razorpay"
MIN_AMOUNT_PAISE = 100
REFERENCE_LIMIT = 40
DESCRIPTION_LIMIT = 2048
# Razorpay refuses an `expire_by` less than 15 minutes away; a minute more absorbs clock skew and latency.
MIN_LINK_LIFETIME = timedelta(minutes=16)
# Subscription length in days → (plan period, interval, billing cycles). About ten years of cycles: the
# subscription should outlive the customer's interest, not end on its own.
PERIODS: dict[int, tuple[str, int, int]] = {
    30: ("monthly", 1, 120),
    90: ("monthly", 3, 40),
    365: ("yearly", 1, 10),
}
SUBSCRIPTION_ENDED = frozenset({"cancelled", "completed", "expired"})
SUBSCRIPTION_STOPPED = SUBSCRIPTION_ENDED | {"halted"}
LINK_STATES = {"paid": PaymentState.SUCCEEDED, "expired": PaymentState.CANCELLED, "cancelled": PaymentState.CANCELLED}
PAYMENT_STATES = {
    "captured": PaymentState.SUCCEEDED,
    "refunded": PaymentState.REFUNDED,
    "failed": PaymentState.FAILED,
}
REFUND_STATES = {"processed": PaymentState.REFUNDED, "pending": PaymentState.PENDING}


class RazorpayRefusal(CheckoutRejected):
    """A 4xx answer from Razorpay, with its error object kept so callers can recognise known refusals."""

    def __init__(self, status: int, code: str, description: str, field: str | None) -> None:
        super().__init__(f"razorpay: {description}")
        self.status = status
        self.code = code
        self.description = description
        self.field = field

    @property
    def not_found(self) -> bool:
        # Razorpay answers an unknown id with 400 "The id provided does not exist", not with 404.
        return self.status == 404 or "does not exist" in self.description.lower()


class RazorpayProvider:
    """One Razorpay account. Owns its HttpClient (closed by `aclose`)."""

    name: ClassVar[str] = "razorpay"
    currencies: ClassVar[frozenset[str]] = frozenset({"INR"})
    methods: ClassVar[tuple[str, ...]] = ()
    supports_refunds: ClassVar[bool] = True
    supports_partial_refunds: ClassVar[bool] = True
    supports_saved_methods: bool = False
    supports_recurring: ClassVar[bool] = True

    def __init__(
        self,
        base_url: str,
        key_id: str,
        key_secret: str,
        webhook_secret: str,
        *,
        previous_webhook_secret: str = "",
        http: HttpClient | None = None,
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._http = http or HttpClient(base_url, service=SERVICE, timeout=timeout, retry=retry)
        token = base64.b64encode(f"{key_id}:{key_secret}".encode()).decode()
        self._auth = {"Authorization": f"Basic {token}"}
        self._webhook_secrets = tuple(s.encode() for s in (webhook_secret, previous_webhook_secret) if s)
        # Plans are immutable and reusable: one per (paise, currency, period, interval) is enough.
        self._plans: dict[tuple[int, str, str, int], str] = {}
        self._plan_lock = asyncio.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> Self | None:
        if not (settings.razorpay_key_id and settings.razorpay_key_secret and settings.razorpay_webhook_secret):
            return None
        return cls(
            settings.razorpay_api_url,
            settings.razorpay_key_id,
            settings.razorpay_key_secret,
            settings.razorpay_webhook_secret,
            previous_webhook_secret=settings.razorpay_previous_webhook_secret,
        )

    # --- checkout ----------------------------------------------------------------------------------------------

    async def create_checkout(self, order: CheckoutOrder) -> Checkout:
        if order.amount.currency not in self.currencies:
            raise CheckoutRejected(f"razorpay: takes INR only, not {order.amount.currency}")
        if order.amount.minor < MIN_AMOUNT_PAISE:
            raise CheckoutRejected("razorpay: the amount must be at least INR 1.00")
        if len(order.order_id) > REFERENCE_LIMIT:
            raise CheckoutRejected(f"razorpay: order id longer than {REFERENCE_LIMIT} characters")
        period = PERIODS.get(order.recurring_days) if order.recurring_days else None
        if period is not None:
            return await self._subscription_checkout(order, period)
        # Razorpay plans only come in whole days/weeks/months/years: other lengths are sold as one-off links.
        return await self._link_checkout(order)

    async def _link_checkout(self, order: CheckoutOrder) -> Checkout:
        body = {
            "amount": order.amount.minor,
            "currency": order.amount.currency,
            # A partial payment would leave our order neither paid nor unpaid.
            "accept_partial": False,
            "reference_id": order.order_id,
            "description": order.description[:DESCRIPTION_LIMIT],
            "callback_url": order.return_url,
            "callback_method": "get",
            "expire_by": link_deadline(order.expires_at),
            # We talk to the customer in Telegram and have no contact details to give Razorpay.
            "notify": {"sms": False, "email": False},
            "reminder_enable": False,
            "notes": {"order_id": order.order_id},
        }
        try:
            link = await self._call("POST", "payment_links", body=body)
        except RazorpayRefusal as exc:
            # A retried create (our timeout, their success) meets our own reference_id: return that link.
            existing = await self._link_by_reference(order.order_id) if is_duplicate_reference(exc) else None
            if existing is None or not same_amount(existing, order.amount):
                raise
            link = existing
        reader = api_fields(link, "payment link")
        expire_by = reader.optional_integer("expire_by")
        return Checkout(
            external_id=reader.text("id"),
            pay_url=reader.text("short_url"),
            expires_at=datetime.fromtimestamp(expire_by, UTC) if expire_by else None,
            details={"reference_id": order.order_id},
        )

    async def _subscription_checkout(self, order: CheckoutOrder, period: tuple[str, int, int]) -> Checkout:
        plan_id = await self._plan(order, period)
        body = {
            "plan_id": plan_id,
            "total_count": period[2],
            "quantity": 1,
            # Razorpay then sends the pre-debit notices Indian e-mandates require before each renewal.
            "customer_notify": True,
            "expire_by": link_deadline(order.expires_at),
            "notes": {"order_id": order.order_id},
        }
        reader = api_fields(await self._call("POST", "subscriptions", body=body), "subscription")
        subscription_id = reader.text("id")
        return Checkout(
            external_id=subscription_id,
            pay_url=reader.text("short_url"),
            details={"subscription_id": subscription_id, "plan_id": plan_id},
        )

    async def _plan(self, order: CheckoutOrder, period: tuple[str, int, int]) -> str:
        key = (order.amount.minor, order.amount.currency, period[0], period[1])
        async with self._plan_lock:
            if key not in self._plans:
                body = {
                    "period": period[0],
                    "interval": period[1],
                    "item": {
                        "name": order.description[:DESCRIPTION_LIMIT] or f"Subscription, {order.recurring_days} days",
                        "amount": order.amount.minor,
                        "currency": order.amount.currency,
                    },
                }
                self._plans[key] = api_fields(await self._call("POST", "plans", body=body), "plan").text("id")
            return self._plans[key]

    # --- webhooks ----------------------------------------------------------------------------------------------

    async def parse_webhook(self, webhook: IncomingWebhook) -> WebhookResult:
        self._verify_signature(webhook)
        event_id = webhook.headers.get("x-razorpay-event-id", "").strip()
        if not event_id:
            raise WebhookRejected("razorpay: no X-Razorpay-Event-Id header", status_code=400)
        try:
            data = json.loads(webhook.body, parse_float=Decimal)
        except ValueError:
            raise WebhookRejected("razorpay: the body is not JSON", status_code=400) from None
        event = webhook_fields(data, "event")
        name = event.text("event")
        handler = EVENT_HANDLERS.get(name)
        if handler is None:
            return WebhookResult(updates=[])
        update = handler(EventContext(event_id, name, event, data))
        return WebhookResult(updates=[update] if update else [])

    def _verify_signature(self, webhook: IncomingWebhook) -> None:
        given = webhook.headers.get("x-razorpay-signature", "").strip().encode("utf-8", "replace")
        if not given:
            raise WebhookRejected("razorpay: no X-Razorpay-Signature header", status_code=401)
        # Check every configured secret without stopping early, so timing does not tell which one matched.
        matches = [
            hmac.compare_digest(hmac.new(secret, webhook.body, hashlib.sha256).hexdigest().encode(), given)
            for secret in self._webhook_secrets
        ]
        if not any(matches):
            raise WebhookRejected("razorpay: bad webhook signature", status_code=401)

    # --- status, refunds, subscriptions ------------------------------------------------------------------------

    async def fetch(self, external_id: str | None, order_id: str) -> ProviderUpdate | None:
        try:
            if external_id is None:
                link = await self._link_by_reference(order_id)
                return link_update(link, "fetch") if link is not None else None
            if external_id.startswith("sub_"):
                return await self._subscription_status(external_id)
            if external_id.startswith("pay_"):
                return payment_update(await self._call("GET", f"payments/{quote(external_id, safe='')}"))
            return link_update(await self._call("GET", f"payment_links/{quote(external_id, safe='')}"), "fetch")
        except RazorpayRefusal as exc:
            if exc.not_found:
                return None
            raise ProviderUnavailable(f"razorpay: status check refused: {exc.description}") from exc

    async def _subscription_status(self, subscription_id: str) -> ProviderUpdate:
        reader = api_fields(await self._call("GET", f"subscriptions/{quote(subscription_id, safe='')}"), "subscription")
        status = reader.text("status")
        paid_count = reader.optional_integer("paid_count") or 0
        event_id = f"fetch:{subscription_id}:{status}:{paid_count}"
        common = {"event_id": event_id, "kind": "fetch", "external_id": subscription_id}
        order_id = reader.notes().get("order_id")
        if paid_count < 1:
            state = PaymentState.CANCELLED if status in SUBSCRIPTION_STOPPED else PaymentState.PENDING
            return ProviderUpdate(
                **common, state=state, order_id=order_id, amount=None, subscription_ref=subscription_id, raw=reader.data
            )
        plan = api_fields(await self._call("GET", f"plans/{quote(reader.text('plan_id'), safe='')}"), "plan")
        return ProviderUpdate(
            **common,
            state=PaymentState.SUCCEEDED,
            order_id=order_id,
            amount=plan.child("item").money("amount"),
            saved_method=subscription_method(subscription_id),
            subscription_ref=subscription_id,
            raw=reader.data,
        )

    async def refund(
        self, external_id: str, amount: Money, *, idempotency_key: str, user_telegram_id: int
    ) -> RefundResult:
        if amount.currency not in self.currencies or amount.minor < 1:
            raise CheckoutRejected(f"razorpay: cannot refund {amount}")
        payment_id = await self._payment_id(external_id)
        receipt = idempotency_key[:REFERENCE_LIMIT]
        # The receipt marks our refund, so repeating the call finds it instead of refunding twice.
        done = next((r for r in await self._refunds(payment_id) if r.get("receipt") == receipt), None)
        if done is not None:
            return refund_result(done)
        body = {"amount": amount.minor, "receipt": receipt, "notes": {"external_id": external_id}}
        try:
            created = await self._call("POST", f"payments/{quote(payment_id, safe='')}/refund", body=body)
        except RazorpayRefusal as exc:
            if "fully refunded" not in exc.description.lower():
                raise
            # Refunded already (by us under another key, or from the dashboard): the money is back either way.
            refunds = await self._refunds(payment_id)
            if not refunds:
                raise
            created = max(refunds, key=lambda r: r.get("created_at") or 0)
        return refund_result(created)

    async def _payment_id(self, external_id: str) -> str:
        """The pay_… id behind what we stored: a payment itself, a paid link, or a subscription's first charge."""
        if external_id.startswith("pay_"):
            return external_id
        if external_id.startswith("sub_"):
            answer = await self._call("GET", "invoices", params={"subscription_id": external_id})
            paid = [
                item
                for item in api_fields(answer, "invoice list").list("items")
                if isinstance(item, dict) and item.get("status") == "paid" and item.get("payment_id")
            ]
            if not paid:
                raise CheckoutRejected(f"razorpay: subscription {external_id} has no paid charge")
            return str(min(paid, key=lambda item: item.get("paid_at") or 0)["payment_id"])
        link = api_fields(await self._call("GET", f"payment_links/{quote(external_id, safe='')}"), "payment link")
        payments = [p for p in (link.data.get("payments") or []) if isinstance(p, dict) and p.get("payment_id")]
        captured = [p for p in payments if p.get("status") == "captured"] or payments
        if not captured:
            raise CheckoutRejected(f"razorpay: payment link {external_id} has no payment")
        return str(captured[0]["payment_id"])

    async def _refunds(self, payment_id: str) -> list[dict[str, Any]]:
        answer = await self._call("GET", f"payments/{quote(payment_id, safe='')}/refunds")
        return [item for item in api_fields(answer, "refund list").list("items") if isinstance(item, dict)]

    async def cancel_recurring(self, secret: str, *, user_telegram_id: int) -> None:
        path = f"subscriptions/{quote(secret, safe='')}/cancel"
        try:
            # At the cycle's end: the customer keeps the period they paid for.
            await self._call("POST", path, body={"cancel_at_cycle_end": 1})
            return
        except RazorpayRefusal as exc:
            if exc.not_found:
                raise
        status = api_fields(await self._call("GET", f"subscriptions/{quote(secret, safe='')}"), "subscription")
        if status.text("status") in SUBSCRIPTION_ENDED:
            return  # cancelled already: stopping it again is a success
        # Not active yet (created, authenticated) or halted: there is no cycle end to wait for.
        await self._call("POST", path, body={"cancel_at_cycle_end": 0})

    async def check_connection(self) -> None:
        """The admin's "test connection": an authenticated list of the payment links with a reference no order of
        ours has (an empty list; nothing changes). Refused keys (401/403) raise CredentialsRefused; network
        failures, 5xx and any other refusal raise ProviderUnavailable."""
        try:
            answer = await self._call("GET", "payment_links", params={"reference_id": "vpnshop-connection-check"})
        except RazorpayRefusal as exc:
            raise ProviderUnavailable(f"razorpay: the connection check was refused: {exc.description}") from exc
        if not isinstance(answer, dict) or not isinstance(answer.get("payment_links"), list):
            raise ProviderUnavailable("razorpay: the payment link list has no items; check RAZORPAY_API_URL (…/v1)")

    async def charge_saved(self, order: CheckoutOrder, secret: str) -> ProviderUpdate:
        raise NotSupported("razorpay: subscriptions charge by themselves; there is no merchant-initiated charge")

    async def aclose(self) -> None:
        await self._http.aclose()

    # --- plumbing ----------------------------------------------------------------------------------------------

    async def _link_by_reference(self, reference_id: str) -> dict[str, Any] | None:
        answer = await self._call("GET", "payment_links", params={"reference_id": reference_id})
        links = [
            link
            for link in api_fields(answer, "payment link list").list("payment_links")
            if isinstance(link, dict) and link.get("reference_id") == reference_id
        ]
        return max(links, key=lambda link: link.get("created_at") or 0) if links else None

    async def _call(
        self, method: str, path: str, *, body: dict[str, Any] | None = None, params: dict[str, str] | None = None
    ) -> Any:
        """A request whose 2xx JSON answer is returned; 4xx raise RazorpayRefusal, the rest ProviderUnavailable."""
        try:
            response = await self._http.request(method, path, json=body, params=params, headers=self._auth)
        except ExternalServiceError as exc:  # includes an open circuit
            raise ProviderUnavailable(f"razorpay: {exc}") from exc
        except httpx.HTTPError as exc:
            raise ProviderUnavailable(f"razorpay: {method} {path} failed: {exc}") from exc
        if response.is_success:
            try:
                return json.loads(response.content, parse_float=Decimal)
            except ValueError:
                raise ProviderUnavailable(f"razorpay: {method} {path} answered malformed JSON") from None
        code, description, field = error_details(response)
        if response.status_code in (401, 403):
            # Our keys are wrong or revoked: nothing the customer did, and retrying will not help.
            raise CredentialsRefused(f"razorpay: our API keys were refused: {description}")
        if response.status_code >= 500 or response.status_code < 400:
            raise ProviderUnavailable(f"razorpay: {method} {path} answered HTTP {response.status_code}")
        raise RazorpayRefusal(response.status_code, code, description, field)


# --------------------------------------------------------------------------------------------------------------
# Requests and answers


def link_deadline(expires_at: datetime) -> int:
    return int(max(ensure_utc(expires_at), utcnow() + MIN_LINK_LIFETIME).timestamp())


def error_details(response: httpx.Response) -> tuple[str, str, str | None]:
    try:
        error = response.json().get("error") or {}
    except (ValueError, AttributeError):
        error = {}
    if not isinstance(error, dict):
        error = {}
    description = str(error.get("description") or response.text.strip()[:200] or f"HTTP {response.status_code}")
    field = error.get("field")
    return str(error.get("code") or ""), description, str(field) if field else None


def is_duplicate_reference(exc: RazorpayRefusal) -> bool:
    return exc.field == "reference_id" or "reference" in exc.description.lower()


def same_amount(link: Mapping[str, Any], amount: Money) -> bool:
    return link.get("amount") == amount.minor and link.get("currency") == amount.currency


def subscription_method(subscription_id: str) -> SavedMethod:
    return SavedMethod("razorpay_subscription", "Razorpay subscription", subscription_id)


def refund_result(refund: Mapping[str, Any]) -> RefundResult:
    reader = api_fields(refund, "refund")
    status = reader.text("status")
    state = REFUND_STATES.get(status)
    if state is None:
        raise CheckoutRejected(f"razorpay: refund {reader.text('id')} is {status}")
    return RefundResult(refund_id=reader.text("id"), state=state)


def link_update(link: Any, kind: str) -> ProviderUpdate:
    reader = api_fields(link, "payment link")
    link_id, status = reader.text("id"), reader.text("status")
    state = LINK_STATES.get(status, PaymentState.PENDING)
    payments = [p for p in (reader.data.get("payments") or []) if isinstance(p, dict)]
    captured = next((p for p in payments if p.get("status") == "captured"), None)
    amount = None
    if state is PaymentState.SUCCEEDED:
        amount = reader.money("amount_paid")
    return ProviderUpdate(
        event_id=f"{kind}:{link_id}:{status}",
        kind=kind,
        state=state,
        external_id=link_id,
        order_id=reader.optional_text("reference_id") or reader.notes().get("order_id"),
        amount=amount,
        method=str(captured["method"]) if captured and captured.get("method") else None,
        raw=reader.data,
    )


def payment_update(payment: Any) -> ProviderUpdate:
    reader = api_fields(payment, "payment")
    payment_id, status = reader.text("id"), reader.text("status")
    state = PAYMENT_STATES.get(status, PaymentState.PENDING)
    amount = reader.money("amount_refunded" if state is PaymentState.REFUNDED else "amount")
    return ProviderUpdate(
        event_id=f"fetch:{payment_id}:{status}",
        kind="fetch",
        state=state,
        external_id=payment_id,
        order_id=reader.notes().get("order_id"),
        amount=amount if state in (PaymentState.SUCCEEDED, PaymentState.REFUNDED) else None,
        method=reader.optional_text("method"),
        failure_reason=reader.optional_text("error_description"),
        raw=reader.data,
    )


# --------------------------------------------------------------------------------------------------------------
# Webhook events


class EventContext:
    """One verified event: its id, name, envelope reader and raw JSON."""

    def __init__(self, event_id: str, name: str, event: Fields, raw: Any) -> None:
        self.event_id = event_id
        self.name = name
        self.event = event
        self.raw = raw

    def entity(self, name: str) -> Fields:
        return self.event.child("payload").child(name).child("entity")

    def optional_entity(self, name: str) -> Fields | None:
        holder = self.event.child("payload").optional_child(name)
        return holder.child("entity") if holder is not None else None

    def at(self) -> datetime | None:
        created = self.event.optional_integer("created_at")
        return datetime.fromtimestamp(created, UTC) if created else None

    def update(self, state: PaymentState, **fields: Any) -> ProviderUpdate:
        return ProviderUpdate(event_id=self.event_id, kind=self.name, state=state, raw=self.raw, **fields)


def on_link_paid(ctx: EventContext) -> ProviderUpdate:
    link = ctx.entity("payment_link")
    payment = ctx.optional_entity("payment")
    return ctx.update(
        PaymentState.SUCCEEDED,
        external_id=link.text("id"),
        order_id=link.optional_text("reference_id") or link.notes().get("order_id"),
        # The payment says what was actually charged; the link only its running total.
        amount=payment.money("amount") if payment is not None else link.money("amount_paid"),
        method=payment.optional_text("method") if payment is not None else None,
        paid_at=ctx.at(),
    )


def on_link_closed(ctx: EventContext) -> ProviderUpdate:
    link = ctx.entity("payment_link")
    return ctx.update(
        PaymentState.CANCELLED,
        external_id=link.text("id"),
        order_id=link.optional_text("reference_id") or link.notes().get("order_id"),
        amount=None,
    )


def on_payment_failed(ctx: EventContext) -> ProviderUpdate | None:
    payment = ctx.entity("payment")
    order_id = payment.notes().get("order_id")
    if not order_id:
        return None  # someone else's payment on this account (another integration): not ours to judge
    return ctx.update(
        PaymentState.FAILED,
        # The pay_… id is not what we stored (a link or subscription id): the order id identifies it.
        external_id=None,
        order_id=order_id,
        amount=None,
        method=payment.optional_text("method"),
        failure_reason=payment.optional_text("error_description") or payment.optional_text("error_reason"),
    )


def on_subscription_charged(ctx: EventContext) -> ProviderUpdate:
    subscription = ctx.entity("subscription")
    payment = ctx.entity("payment")
    subscription_id = subscription.text("id")
    renewal = subscription.integer("paid_count") > 1
    return ctx.update(
        PaymentState.SUCCEEDED,
        # The first charge pays the checkout we stored under the subscription id; each renewal is a payment
        # of its own, named by its pay_… id.
        external_id=payment.text("id") if renewal else subscription_id,
        order_id=subscription.notes().get("order_id"),
        amount=payment.money("amount"),
        method=payment.optional_text("method"),
        saved_method=None if renewal else subscription_method(subscription_id),
        subscription_ref=subscription_id,
        is_renewal=renewal,
        paid_at=ctx.at(),
    )


def on_subscription_stopped(ctx: EventContext) -> ProviderUpdate:
    subscription = ctx.entity("subscription")
    subscription_id = subscription.text("id")
    return ctx.update(
        PaymentState.CANCELLED,
        external_id=subscription_id,
        order_id=subscription.notes().get("order_id"),
        amount=None,
        subscription_ref=subscription_id,
    )


def on_refund_processed(ctx: EventContext) -> ProviderUpdate:
    refund = ctx.entity("refund")
    payment = ctx.optional_entity("payment")
    payment_id = refund.text("payment_id")
    notes = refund.notes()
    payment_notes = payment.notes() if payment is not None else {}
    return ctx.update(
        PaymentState.REFUNDED,
        # Our own refunds name what we stored (link or subscription id); dashboard refunds only the payment.
        external_id=notes.get("external_id") or payment_id,
        order_id=payment_notes.get("order_id") or notes.get("order_id"),
        amount=refund.money("amount"),
        refund_id=refund.text("id"),
    )


EVENT_HANDLERS: dict[str, Callable[[EventContext], ProviderUpdate | None]] = {
    "payment_link.paid": on_link_paid,
    "payment_link.expired": on_link_closed,
    "payment_link.cancelled": on_link_closed,
    "payment.failed": on_payment_failed,
    "subscription.charged": on_subscription_charged,
    "subscription.halted": on_subscription_stopped,
    "subscription.cancelled": on_subscription_stopped,
    "refund.processed": on_refund_processed,
}


# --------------------------------------------------------------------------------------------------------------
# Reading JSON objects


class Fields(JsonFields):
    service = "razorpay"

    def money(self, name: str) -> Money:
        """Integer paise in `name`, in the object's `currency`."""
        try:
            return Money.from_minor(self.integer(name), self.text("currency"))
        except MoneyError as exc:
            raise self.error(f"has an unusable amount: {exc}") from None

    def notes(self) -> dict[str, str]:
        # Razorpay writes empty notes as [] (a PHP empty array), full ones as an object.
        notes = self.data.get("notes")
        return {str(k): str(v) for k, v in notes.items()} if isinstance(notes, dict) else {}


webhook_fields = Fields.of_webhook
api_fields = Fields.of_api
