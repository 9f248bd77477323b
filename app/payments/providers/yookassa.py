"""YooKassa (API v3) behind the PaymentProvider interface.

Wire facts, from shared/reference/payments_api.md §2:
- `https://api.yookassa.ru/v3`, JSON only, HTTP Basic `shopId:secretKey` (§2.1). Every POST carries an
  `Idempotence-Key`: the same key and body within 24 h returns the original answer, so a retried POST never makes
  a second payment or refund (§2.1). Errors are `{"type":"error","code","description","parameter"}`; a 500 means
  "result unknown, repeat with the same key", and the official SDK re-sends a POST answered 202 ("still
  processing") with the same key (§2.1).
- `POST /payments` with the amount as a decimal string `"299.00"`, `capture`, a redirect `confirmation`, our
  order id in `metadata`, optional `payment_method_data` / `save_payment_method` and the 54-FZ `receipt` (§2.2,
  §2.5). Statuses: `pending` → (`waiting_for_capture`) → `succeeded` | `canceled` with `cancellation_details`.
- Renewals charge a saved `payment_method_id` without `confirmation`; the answer is final or pending, and
  `permission_revoked` means the customer revoked the method (§2.4). `POST /refunds` (§2.2).
- Notifications are NOT signed (§2.6): the sender's IP must be on YooKassa's allow-list (read from
  X-Forwarded-For only behind a trusted proxy), and the object is then re-fetched from the API, whose answer is
  the only thing believed. If the API cannot be asked, nothing is applied (fail closed).
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import logging
from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar, Self
from urllib.parse import quote

import httpx

from app.kit.errors import ExternalServiceError
from app.kit.http import HttpClient, RetryPolicy
from app.kit.money import Money, MoneyError
from app.payments.providers.base import (
    Checkout,
    CheckoutOrder,
    CheckoutRejected,
    CredentialsRefused,
    IncomingWebhook,
    PaymentState,
    ProviderUnavailable,
    ProviderUpdate,
    RefundResult,
    SavedMethod,
    WebhookRejected,
    WebhookResult,
)

if TYPE_CHECKING:
    from app.config import Settings

log = logging.getLogger(__name__)

SERVICE = "yookassa"
DESCRIPTION_LIMIT = 128  # payment and receipt-item descriptions (§2.5)
# Re-sends of a POST answered 202 "still processing" (the SDK's max_attempts=3), each with the same key.
PROCESSING_RETRIES = 2

# §2.6: the documented allow-list. The SDK narrows IPv6 to four /64s; the docs (and bedolaga) use the /32.
YOOKASSA_NETWORKS: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = tuple(
    ipaddress.ip_network(net)
    for net in (
        "185.71.76.0/27",
        "185.71.77.0/27",
        "77.75.153.0/25",
        "77.75.154.128/25",
        "77.75.156.11/32",
        "77.75.156.35/32",
        "2a02:5180::/32",
    )
)

PAYMENT_STATES: dict[str, PaymentState] = {
    "pending": PaymentState.PENDING,
    # Money is only held, not taken; we never send capture:false, so this is someone else's two-stage payment.
    "waiting_for_capture": PaymentState.PENDING,
    "succeeded": PaymentState.SUCCEEDED,
    "canceled": PaymentState.CANCELLED,
}
# How far along the status machine each status is; a notification the API has not caught up with is retried.
STATUS_RANK = {"pending": 0, "waiting_for_capture": 1, "succeeded": 2, "canceled": 2}
PAYMENT_EVENTS = {
    "payment.succeeded": "succeeded",
    "payment.canceled": "canceled",
    "payment.waiting_for_capture": "waiting_for_capture",
}
REFUND_EVENT = "refund.succeeded"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class Malformed(ValueError):
    """A JSON document that is not the shape YooKassa documents; callers decide whose fault that is."""


class YooKassaProvider:
    """One YooKassa shop.

    `trusted_proxies` (addresses or CIDRs) are the proxies in front of us whose X-Forwarded-For is believed for
    the notification IP check. With `receipts_enabled` every payment carries a 54-FZ receipt for the customer's
    e-mail/phone, else `receipt_email`. With `recurring_enabled` (autopayments, enabled per shop by YooKassa)
    checkouts say whether to save the method; without it they leave `save_payment_method` out. The provider
    owns `http` (closed by `aclose`); without one it builds an HttpClient with `timeout` and the host's shared
    circuit breaker. `processing_delay` is the pause before re-sending a POST answered 202."""

    name: ClassVar[str] = "yookassa"
    currencies: ClassVar[frozenset[str]] = frozenset({"RUB"})
    methods: ClassVar[tuple[str, ...]] = ("bank_card", "sbp")
    supports_refunds: ClassVar[bool] = True
    supports_partial_refunds: ClassVar[bool] = True
    supports_saved_methods: bool = False  # per shop: see __init__
    supports_recurring: ClassVar[bool] = False

    def __init__(
        self,
        base_url: str,
        shop_id: str,
        secret_key: str,
        *,
        trusted_proxies: Iterable[str] = (),
        receipts_enabled: bool = False,
        recurring_enabled: bool = False,
        vat_code: int = 1,
        tax_system_code: int | None = None,
        receipt_email: str = "",
        http: HttpClient | None = None,
        timeout: float = 15.0,
        retry: RetryPolicy | None = None,
        processing_delay: float = 1.0,
    ) -> None:
        self._http = http or HttpClient(base_url, service=SERVICE, timeout=timeout, retry=retry)
        token = base64.b64encode(f"{shop_id}:{secret_key}".encode()).decode()
        self._authorization = f"Basic {token}"
        # A typo here must fail at startup, not silently turn every notification into a 403.
        self._trusted_proxies: tuple[IPNetwork, ...] = tuple(
            ipaddress.ip_network(proxy.strip(), strict=False) for proxy in trusted_proxies if proxy.strip()
        )
        self._receipts_enabled = receipts_enabled
        self._recurring_enabled = recurring_enabled
        # Without autopayments nothing is saved, so there is nothing to charge later (nor a "pay once" to offer).
        self.supports_saved_methods = recurring_enabled
        self._vat_code = vat_code
        self._tax_system_code = tax_system_code
        self._receipt_email = receipt_email.strip()
        self._processing_delay = processing_delay

    @classmethod
    def from_settings(cls, settings: Settings) -> Self | None:
        if not (settings.yookassa_shop_id and settings.yookassa_secret_key):
            return None
        return cls(
            settings.yookassa_api_url,
            settings.yookassa_shop_id,
            settings.yookassa_secret_key,
            trusted_proxies=settings.yookassa_trusted_proxies,
            receipts_enabled=settings.yookassa_receipts_enabled,
            recurring_enabled=settings.yookassa_recurring_enabled,
            vat_code=settings.yookassa_vat_code,
            tax_system_code=settings.yookassa_tax_system_code,
            receipt_email=settings.yookassa_receipt_email,
        )

    # --- checkout ----------------------------------------------------------------------------------------------

    async def create_checkout(self, order: CheckoutOrder) -> Checkout:
        self._check_order(order)
        if order.method is not None and order.method not in self.methods:
            raise CheckoutRejected(f"yookassa: unsupported payment method {order.method!r}")
        body: dict[str, Any] = {
            "amount": wire_amount(order.amount),
            # One-stage: SBP has no two-stage payments (§2.3), and we never want money merely held.
            "capture": True,
            "confirmation": {"type": "redirect", "return_url": order.return_url},
            "description": describe(order),
            "metadata": {"order_id": order.order_id},
        }
        if order.method is not None:
            body["payment_method_data"] = {"type": order.method}
        if self._recurring_enabled:
            # Only a shop YooKassa enabled autopayments for may ask: elsewhere the request is refused, and even
            # there asking narrows the form to methods that can be saved, so a customer who turned auto-renewal
            # off is told "never save" (§2.2, §13).
            body["save_payment_method"] = order.save_method
        if self._receipts_enabled:
            body["receipt"] = self._receipt(order)
        payment = await self._create_payment(body, order.idempotency_key)
        status = payment.get("status")
        if status == "canceled":
            # Only a replay of an earlier key can come back canceled: that attempt is over, a new key is needed.
            raise CheckoutRejected(f"yookassa: the payment was canceled ({cancellation_reason(payment)})")
        confirmation = payment.get("confirmation")
        pay_url = confirmation.get("confirmation_url") if isinstance(confirmation, dict) else None
        if status == "pending" and not isinstance(pay_url, str):
            raise ProviderUnavailable("yookassa: the new payment has no confirmation_url")
        return Checkout(
            external_id=payment["id"],
            pay_url=pay_url if isinstance(pay_url, str) else None,
            details={"payment_id": payment["id"], "status": status, "test": bool(payment.get("test"))},
        )

    # --- notifications -----------------------------------------------------------------------------------------

    async def parse_webhook(self, webhook: IncomingWebhook) -> WebhookResult:
        sender = self._sender_ip(webhook)
        if sender is None or not is_yookassa_ip(sender):
            raise WebhookRejected(f"yookassa: notification from {sender or 'an unknown address'}", status_code=403)
        try:
            event, object_id = parse_notification(webhook.body)
        except Malformed as exc:
            raise WebhookRejected(f"yookassa: malformed notification: {exc}") from exc
        if event in PAYMENT_EVENTS:
            return WebhookResult(updates=[await self._payment_event(event, object_id)])
        if event == REFUND_EVENT:
            update = await self._refund_event(object_id)
            return WebhookResult(updates=[update] if update else [])
        # payment_method.*, deal.*, payout.*: nothing of ours to change; a 200 stops the re-deliveries.
        return WebhookResult(updates=[])

    async def _payment_event(self, event: str, payment_id: str) -> ProviderUpdate:
        payment = await self._get_object("payments", payment_id)
        if payment is None:
            raise WebhookRejected(f"yookassa: notification about unknown payment {payment_id}")
        try:
            status = checked_status(payment)
            if STATUS_RANK[status] < STATUS_RANK[PAYMENT_EVENTS[event]]:
                # The API must confirm the event before we act; a 5xx makes YooKassa deliver it again later.
                raise ProviderUnavailable(f"yookassa: {event} for {payment_id}, but the API still says {status}")
            return payment_update(payment, kind=event, event_id=f"{event}:{payment_id}")
        except Malformed as exc:
            raise ProviderUnavailable(f"yookassa: GET payment {payment_id} answered malformed: {exc}") from exc

    async def _refund_event(self, refund_id: str) -> ProviderUpdate | None:
        refund = await self._get_object("refunds", refund_id)
        if refund is None:
            raise WebhookRejected(f"yookassa: notification about unknown refund {refund_id}")
        try:
            status = require_str(refund, "status")
            payment_id = require_str(refund, "payment_id")
            amount = parse_money(refund.get("amount"), "refund amount")
        except Malformed as exc:
            raise ProviderUnavailable(f"yookassa: GET refund {refund_id} answered malformed: {exc}") from exc
        if status == "pending":
            raise ProviderUnavailable(f"yookassa: refund {refund_id} is still pending on the API")
        if status != "succeeded":
            log.warning("yookassa: refund.succeeded for %s, but the API says %s; ignored", refund_id, status)
            return None
        # The refund carries no metadata of ours; its payment does.
        payment = await self._get_object("payments", payment_id)
        metadata = payment.get("metadata") if payment else None
        order_id = metadata.get("order_id") if isinstance(metadata, dict) else None
        return ProviderUpdate(
            event_id=f"{REFUND_EVENT}:{refund_id}",
            kind=REFUND_EVENT,
            state=PaymentState.REFUNDED,
            external_id=payment_id,
            order_id=order_id if isinstance(order_id, str) else None,
            amount=amount,
            refund_id=refund_id,
            raw=refund,
        )

    def _sender_ip(self, webhook: IncomingWebhook) -> IPAddress | None:
        """The notification's sender: the TCP peer, or, when the peer is one of our trusted proxies, the
        right-most X-Forwarded-For hop that is not a trusted proxy (the left part is whatever the client sent)."""
        peer = parse_ip(webhook.peer_ip)
        if peer is None or not self._is_trusted_proxy(peer):
            return peer
        forwarded = header(webhook.headers, "x-forwarded-for")
        hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()] if forwarded else []
        if not hops:
            return peer
        for hop in reversed(hops):
            address = parse_ip(hop)
            if address is None:
                return None  # garbage in the chain our own proxy built: believe nothing
            if not self._is_trusted_proxy(address):
                return address
        return parse_ip(hops[0])

    def _is_trusted_proxy(self, address: IPAddress) -> bool:
        return any(address in network for network in self._trusted_proxies)

    # --- reconciliation, renewals, refunds ---------------------------------------------------------------------

    async def fetch(self, external_id: str | None, order_id: str) -> ProviderUpdate | None:
        # YooKassa cannot look a payment up by our metadata, so without its id there is nothing to ask.
        if not external_id:
            return None
        payment = await self._get_object("payments", external_id)
        if payment is None:
            return None
        try:
            status = checked_status(payment)
            return payment_update(payment, kind="fetch", event_id=f"fetch:{external_id}:{status}")
        except Malformed as exc:
            raise ProviderUnavailable(f"yookassa: GET payment {external_id} answered malformed: {exc}") from exc

    async def check_connection(self) -> None:
        """An authenticated read of a payment that does not exist: 404 proves the shop id and key work;
        raises CredentialsRefused or ProviderUnavailable."""
        await self._get_object("payments", "vpnshop-connection-check")

    async def charge_saved(self, order: CheckoutOrder, secret: str) -> ProviderUpdate:
        self._check_order(order)
        body: dict[str, Any] = {
            "amount": wire_amount(order.amount),
            "capture": True,
            # No confirmation: the customer is not there; the saved method is charged as is (§2.4).
            "payment_method_id": secret,
            "description": describe(order),
            "metadata": {"order_id": order.order_id},
        }
        if self._receipts_enabled:
            body["receipt"] = self._receipt(order)
        payment = await self._create_payment(body, order.idempotency_key)
        try:
            status = checked_status(payment)
            return payment_update(
                payment, kind="charge", event_id=f"charge:{payment['id']}:{status}", charged_secret=secret
            )
        except Malformed as exc:
            raise ProviderUnavailable(f"yookassa: the charge answer is malformed: {exc}") from exc

    async def refund(
        self, external_id: str, amount: Money, *, idempotency_key: str, user_telegram_id: int
    ) -> RefundResult:
        body = {"payment_id": external_id, "amount": wire_amount(amount)}
        # A repeat with the same key within 24 h returns the first refund instead of refunding twice (§2.1).
        response = await self._send("POST", "refunds", body=body, idempotency_key=idempotency_key)
        refund = self._answer(response, "refund")
        try:
            refund_id, status = require_str(refund, "id"), require_str(refund, "status")
        except Malformed as exc:
            raise ProviderUnavailable(f"yookassa: the refund answer is malformed: {exc}") from exc
        if status == "succeeded":
            return RefundResult(refund_id=refund_id, state=PaymentState.REFUNDED)
        if status == "pending":
            return RefundResult(refund_id=refund_id, state=PaymentState.PENDING)
        raise CheckoutRejected(f"yookassa: refund {refund_id} was {status} ({cancellation_reason(refund)})")

    async def cancel_recurring(self, secret: str, *, user_telegram_id: int) -> None:
        """Nothing to call: the API has no way to delete a saved payment_method_id (§2.4). The method is only
        ever charged by us, so forgetting it on our side (which the service does) stops the renewals."""
        return None

    async def aclose(self) -> None:
        await self._http.aclose()

    # --- plumbing ----------------------------------------------------------------------------------------------

    def _check_order(self, order: CheckoutOrder) -> None:
        if order.amount.currency not in self.currencies:
            raise CheckoutRejected(f"yookassa: only RUB is accepted, not {order.amount.currency}")

    def _receipt(self, order: CheckoutOrder) -> dict[str, Any]:
        """The 54-FZ receipt (§2.5): one "service" item of the whole amount, so the items sum to the payment."""
        customer: dict[str, str] = {}
        if order.receipt_email:
            customer["email"] = order.receipt_email.strip()
        phone = "".join(ch for ch in order.receipt_phone or "" if ch.isdigit())
        if phone:
            # Digits only: a formatted number ("+7 (900) ...") is a 400 (§9).
            customer["phone"] = phone
        if not customer and self._receipt_email:
            customer["email"] = self._receipt_email
        if not customer:
            raise CheckoutRejected("yookassa: a 54-FZ receipt needs the customer's e-mail or phone")
        receipt: dict[str, Any] = {
            "customer": customer,
            "items": [
                {
                    "description": describe(order),
                    "quantity": "1.00",
                    "amount": wire_amount(order.amount),
                    "vat_code": self._vat_code,
                    "payment_mode": "full_payment",
                    "payment_subject": "service",
                }
            ],
        }
        if self._tax_system_code is not None:
            receipt["tax_system_code"] = self._tax_system_code
        return receipt

    async def _create_payment(self, body: dict[str, Any], idempotency_key: str) -> dict[str, Any]:
        response = await self._send("POST", "payments", body=body, idempotency_key=idempotency_key)
        payment = self._answer(response, "create payment")
        if not isinstance(payment.get("id"), str) or not payment["id"]:
            raise ProviderUnavailable("yookassa: the payment answer has no id")
        return payment

    async def _get_object(self, collection: str, object_id: str) -> dict[str, Any] | None:
        """GET /payments/{id} or /refunds/{id}; None when YooKassa does not know it (404)."""
        response = await self._send("GET", f"{collection}/{quote(object_id, safe='')}")
        if response.status_code == 404:
            return None
        data = self._answer(response, f"GET {collection}/{object_id}", refusal=ProviderUnavailable)
        if data.get("id") != object_id:
            raise ProviderUnavailable(f"yookassa: GET {collection}/{object_id} answered about {data.get('id')!r}")
        return data

    async def _send(
        self, method: str, path: str, *, body: Any = None, idempotency_key: str | None = None
    ) -> httpx.Response:
        headers = {"Authorization": self._authorization}
        if idempotency_key is not None:
            headers["Idempotence-Key"] = idempotency_key
        for attempt in range(PROCESSING_RETRIES + 1):
            try:
                # HttpClient re-sends on timeouts and 5xx; for a POST that is safe only because the key is the same.
                response = await self._http.request(method, path, json=body, headers=headers)
            except ExternalServiceError as exc:  # down, 5xx, 429, open circuit
                raise ProviderUnavailable(str(exc)) from exc
            except httpx.HTTPError as exc:
                raise ProviderUnavailable(f"yookassa: {method} {path} failed: {exc}") from exc
            if response.status_code != 202:
                return response
            if attempt < PROCESSING_RETRIES:
                # "Accepted, still processing": the same key fetches the outcome once it exists (§2.1).
                await asyncio.sleep(self._processing_delay)
        raise ProviderUnavailable(f"yookassa: {method} {path} is still processing; retry later with the same key")

    def _answer(
        self, response: httpx.Response, action: str, *, refusal: type[Exception] = CheckoutRejected
    ) -> dict[str, Any]:
        """The JSON object of a 200, or the error it maps to: 401 is our misconfiguration (unavailable until
        fixed); other 4xx are `refusal` with YooKassa's own description."""
        status = response.status_code
        if status == 200:
            try:
                data = response.json()
            except ValueError:
                data = None
            if not isinstance(data, dict):
                raise ProviderUnavailable(f"yookassa: {action} answered something that is not a JSON object")
            return data
        detail = error_description(response)
        if status == 401:
            raise CredentialsRefused(f"yookassa: {action}: the shop id or secret key was refused: {detail}")
        if 400 <= status < 500:
            raise refusal(f"yookassa: {detail}")
        raise ProviderUnavailable(f"yookassa: {action} answered HTTP {status}: {detail}")


# --------------------------------------------------------------------------------------------------------------
# Requests


def wire_amount(money: Money) -> dict[str, str]:
    """§2.2: `{"value": "299.00", "currency": "RUB"}`; a number instead of a string is a 400."""
    return {"value": f"{money.amount:.2f}", "currency": money.currency}


def describe(order: CheckoutOrder) -> str:
    return (order.description.strip() or f"Order {order.order_id}")[:DESCRIPTION_LIMIT]


def header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    return next((v for k, v in headers.items() if k.lower() == name), None)


def parse_ip(text: str | None) -> IPAddress | None:
    if not text:
        return None
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    # A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_yookassa_ip(address: IPAddress) -> bool:
    return any(address in network for network in YOOKASSA_NETWORKS)


# --------------------------------------------------------------------------------------------------------------
# Responses and notifications


def parse_notification(body: bytes) -> tuple[str, str]:
    """`{"type":"notification","event":...,"object":{"id":...}}` → (event, object id). Only the event and the
    id are read: everything else is fetched from the API."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Malformed(f"not JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise Malformed("not a JSON object")
    if data.get("type") != "notification":
        raise Malformed(f"type is {data.get('type')!r}, not 'notification'")
    event = data.get("event")
    if not isinstance(event, str) or not event:
        raise Malformed("no event")
    obj = data.get("object")
    if not isinstance(obj, dict):
        raise Malformed("no object")
    object_id = obj.get("id")
    if not isinstance(object_id, str) or not object_id:
        raise Malformed("the object has no id")
    return event, object_id


def require_str(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise Malformed(f"no {key!r}")
    return value


def checked_status(payment: Mapping[str, Any]) -> str:
    status = require_str(payment, "status")
    if status not in PAYMENT_STATES:
        raise Malformed(f"unknown status {status!r}")
    return status


def parse_money(data: Any, what: str) -> Money:
    if not isinstance(data, dict) or not all(isinstance(data.get(key), str) for key in ("value", "currency")):
        raise Malformed(f"the {what} is not {{value: string, currency: string}}")
    try:
        return Money.of(Decimal(data["value"]), data["currency"])
    except (MoneyError, ArithmeticError) as exc:
        raise Malformed(f"the {what} is unreadable: {data!r}") from exc


def parse_moment(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def cancellation_reason(obj: Mapping[str, Any]) -> str:
    details = obj.get("cancellation_details")
    reason = details.get("reason") if isinstance(details, dict) else None
    return reason if isinstance(reason, str) and reason else "canceled"


def error_description(response: httpx.Response) -> str:
    """YooKassa's `description` (with the `parameter` it names), or the raw text of a non-JSON answer."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:200] or f"HTTP {response.status_code}"
    if not isinstance(body, dict):
        return str(body)[:200]
    description = str(body.get("description") or body.get("code") or f"HTTP {response.status_code}")
    parameter = body.get("parameter")
    return f"{description} (parameter {parameter})" if parameter else description


def method_title(method: Mapping[str, Any]) -> str:
    """A title safe to show: "Bank card •••• 4444", "SBP", or YooKassa's own title for other types."""
    kind = method.get("type")
    if kind == "bank_card":
        card = method.get("card")
        last4 = card.get("last4") if isinstance(card, dict) else None
        return f"Bank card •••• {last4}" if isinstance(last4, str) and last4 else "Bank card"
    if kind == "sbp":
        return "SBP"
    title = method.get("title")
    return title if isinstance(title, str) and title else str(kind or "saved method")


def payment_update(
    payment: Mapping[str, Any], *, kind: str, event_id: str, charged_secret: str | None = None
) -> ProviderUpdate:
    """A payment object from the API as an update. `charged_secret` is the saved method a renewal charged: a
    `permission_revoked` answer revokes exactly that one."""
    payment_id = require_str(payment, "id")
    status = checked_status(payment)
    method = payment.get("payment_method")
    method = method if isinstance(method, dict) else {}
    method_type = method.get("type") if isinstance(method.get("type"), str) else None
    method_id = method.get("id") if isinstance(method.get("id"), str) and method.get("id") else None
    saved: SavedMethod | None = None
    if status == "succeeded" and method.get("saved") is True and method_id and method_type:
        saved = SavedMethod(method_type=method_type, title=method_title(method), secret=method_id)
    failure_reason = revoked = None
    if status == "canceled":
        failure_reason = cancellation_reason(payment)
        if failure_reason == "permission_revoked":
            revoked = charged_secret or method_id
    metadata = payment.get("metadata")
    order_id = metadata.get("order_id") if isinstance(metadata, dict) else None
    return ProviderUpdate(
        event_id=event_id,
        kind=kind,
        state=PAYMENT_STATES[status],
        external_id=payment_id,
        order_id=order_id if isinstance(order_id, str) else None,
        amount=parse_money(payment.get("amount"), "payment amount"),
        method=method_type,
        saved_method=saved,
        revoked_method_secret=revoked,
        failure_reason=failure_reason,
        paid_at=parse_moment(payment.get("captured_at")) if status == "succeeded" else None,
        raw=dict(payment),
    )
