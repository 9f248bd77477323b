"""Xendit (Indonesia IDR, Philippines PHP) behind `PaymentProvider`: hosted Invoices, and QRIS through the QR Codes API.

Wire facts, from shared/reference/payments_api.md §7 (emulated per §10.6):
- Base `https://api.xendit.co`, HTTP Basic with the secret key as user name and an empty password;
  `X-IDEMPOTENCY-KEY` on creates; errors are `{"error_code": …, "message": …}` (§7.1).
- `POST /v2/invoices` {external_id, amount, currency, description, invoice_duration (seconds),
  success_redirect_url, failure_redirect_url} → {id, invoice_url, status "PENDING", expiry_date}. Amounts are JSON
  numbers and Xendit truncates IDR decimals (4550.50 → 4550), so a non-whole IDR price is refused here rather than
  undercharged. `GET /v2/invoices/{id}`, `GET /v2/invoices?external_id=` (an array). Statuses PENDING → PAID →
  SETTLED, or EXPIRED (§7.2).
- QRIS v2: `POST /qr_codes` with `api-version: 2022-07-31` {reference_id, type "DYNAMIC", currency "IDR", amount,
  expires_at} → {id "qr_…", qr_string, status "ACTIVE"}; the callback is {"event": "qr.payment", "data": {id
  "qrpy_…", qr_id, reference_id, amount, status "SUCCEEDED"}} (§7.3; the reference marks this from memory).
- Callbacks carry a static `x-callback-token` (no HMAC) and a `webhook-id`. A token is replayable and covers no
  body, so every callback is re-fetched from the API and only the API's status and amount count; if the API cannot
  be reached the callback fails (5xx) and Xendit retries it (§7.4, §1 rule 3).
- No refunds here: the Invoice API has none in our scope (Xendit refunds belong to its Payment Request API), and
  Recurring Plans do not cover QRIS (§7.4), so refunds, saved methods and subscriptions are not supported.

Not in the reference, so a sandbox must confirm: `GET /qr_codes/{id}` and `GET /qr_codes/{id}/payments` (v2),
the error codes (INVALID_API_KEY, API_VALIDATION_ERROR, INVOICE_NOT_FOUND_ERROR, DATA_NOT_FOUND) and the answer to a
reused idempotency key with another body.
"""

from __future__ import annotations

import base64
import hmac
import json
from datetime import datetime
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
    WebhookRejected,
    WebhookResult,
)
from app.payments.providers.fields import JsonFields

SERVICE = "xendit"
QR_API_VERSION = "2022-07-31"
INVOICE_STATES = {
    "PENDING": PaymentState.PENDING,
    "PAID": PaymentState.SUCCEEDED,
    "SETTLED": PaymentState.SUCCEEDED,
    "EXPIRED": PaymentState.CANCELLED,
}


class XenditRefusal(CheckoutRejected):
    """A 4xx answer from Xendit, with its error code kept so callers can recognise "not found"."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"xendit: {message}")
        self.status = status
        self.code = code
        self.message = message

    @property
    def not_found(self) -> bool:
        return self.status == 404


class XenditProvider:
    """One Xendit account. Owns its HttpClient (closed by `aclose`)."""

    name: ClassVar[str] = "xendit"
    currencies: ClassVar[frozenset[str]] = frozenset({"IDR", "PHP"})
    methods: ClassVar[tuple[str, ...]] = ("invoice", "qris")
    supports_refunds: ClassVar[bool] = False
    supports_partial_refunds: ClassVar[bool] = False
    supports_saved_methods: bool = False
    supports_recurring: ClassVar[bool] = False

    def __init__(
        self,
        base_url: str,
        secret_key: str,
        callback_token: str,
        *,
        http: HttpClient | None = None,
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._http = http or HttpClient(base_url, service=SERVICE, timeout=timeout, retry=retry)
        token = base64.b64encode(f"{secret_key}:".encode()).decode()
        self._auth = {"Authorization": f"Basic {token}"}
        self._callback_token = callback_token.encode()

    @classmethod
    def from_settings(cls, settings: Settings) -> Self | None:
        if not (settings.xendit_secret_key and settings.xendit_callback_token):
            return None
        return cls(settings.xendit_api_url, settings.xendit_secret_key, settings.xendit_callback_token)

    # --- checkout ----------------------------------------------------------------------------------------------

    async def create_checkout(self, order: CheckoutOrder) -> Checkout:
        money = order.amount
        if money.currency not in self.currencies:
            raise CheckoutRejected(f"xendit: takes IDR or PHP, not {money.currency}")
        if money.amount <= 0:
            raise CheckoutRejected("xendit: the amount must be positive")
        if money.currency == "IDR" and money.amount != money.amount.to_integral_value():
            raise CheckoutRejected(f"xendit: IDR amounts must be whole rupiah (Xendit would drop the rest of {money})")
        method = order.method or "invoice"
        if method == "qris":
            if money.currency != "IDR":
                raise CheckoutRejected("xendit: QRIS takes IDR only")
            return await self._qr_checkout(order)
        if method != "invoice":
            raise CheckoutRejected(f"xendit: unknown method {method!r}")
        return await self._invoice_checkout(order)

    async def _invoice_checkout(self, order: CheckoutOrder) -> Checkout:
        body = {
            "external_id": order.order_id,
            "amount": wire_amount(order.amount),
            "currency": order.amount.currency,
            "description": order.description,
            "invoice_duration": seconds_until(order.expires_at),
            "success_redirect_url": order.return_url,
            "failure_redirect_url": order.return_url,
        }
        invoice = api_fields(await self._call("POST", "v2/invoices", body=body, key=order.idempotency_key), "invoice")
        return Checkout(
            external_id=invoice.text("id"),
            pay_url=invoice.text("invoice_url"),
            expires_at=invoice.moment("expiry_date"),
            details={"kind": "invoice"},
        )

    async def _qr_checkout(self, order: CheckoutOrder) -> Checkout:
        body = {
            "reference_id": order.order_id,
            "type": "DYNAMIC",
            "currency": "IDR",
            "amount": wire_amount(order.amount),
            "expires_at": ensure_utc(order.expires_at).isoformat().replace("+00:00", "Z"),
        }
        qr = api_fields(await self._call("POST", "qr_codes", body=body, key=order.idempotency_key, qr=True), "QR code")
        return Checkout(
            external_id=qr.text("id"),
            # QRIS has no page to open: the customer scans the code we render from qr_string.
            pay_url=None,
            expires_at=qr.moment("expires_at"),
            details={"qr_string": qr.text("qr_string"), "kind": "qris"},
        )

    # --- webhooks ----------------------------------------------------------------------------------------------

    async def parse_webhook(self, webhook: IncomingWebhook) -> WebhookResult:
        token = webhook.headers.get("x-callback-token", "")
        if not token:
            raise WebhookRejected("xendit: no x-callback-token header", status_code=401)
        if not hmac.compare_digest(token.encode("utf-8", "replace"), self._callback_token):
            raise WebhookRejected("xendit: wrong x-callback-token", status_code=403)
        try:
            data = json.loads(webhook.body, parse_float=Decimal)
        except ValueError:
            raise WebhookRejected("xendit: the body is not JSON", status_code=400) from None
        callback = webhook_fields(data, "callback")
        webhook_id = webhook.headers.get("webhook-id", "").strip()
        if "event" in callback.data:
            update = await self._qr_callback(callback, webhook_id)
        else:
            update = await self._invoice_callback(callback, webhook_id)
        # A callback the API does not confirm (yet) changes nothing; the reconciliation poller looks again later.
        if update is None or update.state is PaymentState.PENDING:
            return WebhookResult(updates=[])
        return WebhookResult(updates=[update])

    async def _invoice_callback(self, callback: Fields, webhook_id: str) -> ProviderUpdate | None:
        invoice_id, status = callback.text("id"), callback.text("status")
        try:
            invoice = await self._call("GET", f"v2/invoices/{quote(invoice_id, safe='')}")
        except XenditRefusal as exc:
            raise WebhookRejected(f"xendit: the API does not confirm invoice {invoice_id}: {exc.message}") from exc
        return invoice_update(invoice, webhook_id or f"{invoice_id}:{status}", "invoice")

    async def _qr_callback(self, callback: Fields, webhook_id: str) -> ProviderUpdate | None:
        if callback.text("event") != "qr.payment":
            return None
        data = callback.child("data")
        payment_id, qr_id, status = data.text("id"), data.text("qr_id"), data.text("status")
        try:
            payment = await self._qr_payment(qr_id, payment_id)
        except XenditRefusal as exc:
            raise WebhookRejected(f"xendit: the API does not confirm QR code {qr_id}: {exc.message}") from exc
        if payment is None:
            raise WebhookRejected(f"xendit: the API does not know payment {payment_id} of QR code {qr_id}")
        return qr_payment_update(payment, webhook_id or f"{payment_id}:{status}", "qr.payment")

    # --- status ------------------------------------------------------------------------------------------------

    async def fetch(self, external_id: str | None, order_id: str) -> ProviderUpdate | None:
        try:
            if external_id is None:
                found = await self._call("GET", "v2/invoices", params={"external_id": order_id})
                if not isinstance(found, list):
                    raise ProviderUnavailable("xendit: the invoice search did not answer a list")
                invoices = [item for item in found if isinstance(item, dict) and item.get("external_id") == order_id]
                if not invoices:
                    return None
                latest = max(invoices, key=lambda item: str(item.get("created") or ""))
                return invoice_update(latest, None, "fetch")
            if external_id.startswith("qr_"):
                return await self._qr_status(external_id)
            return invoice_update(await self._call("GET", f"v2/invoices/{quote(external_id, safe='')}"), None, "fetch")
        except XenditRefusal as exc:
            if exc.not_found:
                return None
            raise ProviderUnavailable(f"xendit: status check refused: {exc.message}") from exc

    async def _qr_status(self, qr_id: str) -> ProviderUpdate:
        payments = await self._qr_payments(qr_id)
        paid = next((p for p in payments if p.get("status") == "SUCCEEDED"), None)
        if paid is not None:
            return qr_payment_update(paid, None, "fetch")
        qr = api_fields(await self._call("GET", f"qr_codes/{quote(qr_id, safe='')}", qr=True), "QR code")
        status = qr.text("status")
        # A dynamic code turns INACTIVE once paid or expired; unpaid, that means it can no longer be paid.
        state = PaymentState.CANCELLED if status == "INACTIVE" else PaymentState.PENDING
        return ProviderUpdate(
            event_id=f"fetch:{qr_id}:{status}",
            kind="fetch",
            state=state,
            external_id=qr_id,
            order_id=qr.optional_text("reference_id"),
            amount=None,
            raw=qr.data,
        )

    async def _qr_payment(self, qr_id: str, payment_id: str) -> dict[str, Any] | None:
        return next((p for p in await self._qr_payments(qr_id) if p.get("id") == payment_id), None)

    async def _qr_payments(self, qr_id: str) -> list[dict[str, Any]]:
        answer = api_fields(await self._call("GET", f"qr_codes/{quote(qr_id, safe='')}/payments", qr=True), "list")
        return [item for item in answer.list("data") if isinstance(item, dict)]

    async def check_connection(self) -> None:
        """The admin's "test connection": an authenticated invoice search for an external id no order of ours has
        (an empty list, or Xendit's not-found; nothing changes). It uses the Invoice permission checkout needs,
        not the Balance API, which a key limited to money-in may not read. 401/403 raise CredentialsRefused;
        network failures, 5xx and any other refusal raise ProviderUnavailable."""
        try:
            found = await self._call("GET", "v2/invoices", params={"external_id": "vpnshop-connection-check"})
        except XenditRefusal as exc:
            if exc.not_found and exc.code:
                return
            raise ProviderUnavailable(f"xendit: the connection check was refused: {exc.code} {exc.message}") from exc
        if not isinstance(found, list):
            raise ProviderUnavailable("xendit: the invoice search did not answer a list; check XENDIT_API_URL")

    # --- what the Invoice API does not do ----------------------------------------------------------------------

    async def refund(
        self, external_id: str, amount: Money, *, idempotency_key: str, user_telegram_id: int
    ) -> RefundResult:
        raise NotSupported("xendit: invoices and QRIS payments have no refund API in this integration")

    async def charge_saved(self, order: CheckoutOrder, secret: str) -> ProviderUpdate:
        raise NotSupported("xendit: no saved-method charges")

    async def cancel_recurring(self, secret: str, *, user_telegram_id: int) -> None:
        raise NotSupported("xendit: no provider-managed subscriptions")

    async def aclose(self) -> None:
        await self._http.aclose()

    # --- plumbing ----------------------------------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
        key: str | None = None,
        qr: bool = False,
    ) -> Any:
        """A request whose 2xx JSON answer is returned; 4xx raise XenditRefusal, the rest ProviderUnavailable."""
        headers = dict(self._auth)
        if key is not None:
            headers["X-IDEMPOTENCY-KEY"] = key
        if qr:
            headers["api-version"] = QR_API_VERSION
        content = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            content = json_bytes(body)
        try:
            response = await self._http.request(method, path, content=content, params=params, headers=headers)
        except ExternalServiceError as exc:  # includes an open circuit
            raise ProviderUnavailable(f"xendit: {exc}") from exc
        except httpx.HTTPError as exc:
            raise ProviderUnavailable(f"xendit: {method} {path} failed: {exc}") from exc
        if response.is_success:
            try:
                return json.loads(response.content, parse_float=Decimal)
            except ValueError:
                raise ProviderUnavailable(f"xendit: {method} {path} answered malformed JSON") from None
        code, message = error_details(response)
        if response.status_code in (401, 403):
            # Our key is wrong, revoked or lacks a permission: nothing the customer did.
            raise CredentialsRefused(f"xendit: our secret key was refused: {code} {message}")
        if response.status_code >= 500 or response.status_code < 400:
            raise ProviderUnavailable(f"xendit: {method} {path} answered HTTP {response.status_code}")
        raise XenditRefusal(response.status_code, code, message)


# --------------------------------------------------------------------------------------------------------------
# Requests and answers


def wire_amount(money: Money) -> int | Decimal:
    """A JSON number: whole amounts as integers (all of IDR), PHP centavos as an exact decimal."""
    if money.amount == money.amount.to_integral_value():
        return int(money.amount)
    return money.amount


def json_bytes(data: Any) -> bytes:
    """JSON with Decimals written as plain numbers: the json module cannot, and a float could round."""
    numbers: list[str] = []

    def placeholder(value: Any) -> str:
        if not isinstance(value, Decimal):
            raise TypeError(f"cannot send {type(value).__name__} as JSON")
        numbers.append(format(value, "f"))
        # A NUL cannot come from our own strings unescaped, so the marker is unambiguous.
        return f"\x00{len(numbers) - 1}\x00"

    text = json.dumps(data, default=placeholder)
    for index, number in enumerate(numbers):
        text = text.replace(f'"\\u0000{index}\\u0000"', number, 1)
    return text.encode()


def seconds_until(moment: datetime) -> int:
    return max(1, int((ensure_utc(moment) - utcnow()).total_seconds()))


def error_details(response: httpx.Response) -> tuple[str, str]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return "", response.text.strip()[:200] or f"HTTP {response.status_code}"
    return str(body.get("error_code") or ""), str(body.get("message") or f"HTTP {response.status_code}")


def invoice_update(invoice: Any, event_id: str | None, kind: str) -> ProviderUpdate:
    """Our view of an invoice as the API answered it (never as a callback claimed it)."""
    reader = api_fields(invoice, "invoice")
    invoice_id, status = reader.text("id"), reader.text("status")
    state = INVOICE_STATES.get(status)
    if state is None:
        raise ProviderUnavailable(f"xendit: invoice {invoice_id} has an unknown status {status!r}")
    amount = None
    if state is PaymentState.SUCCEEDED:
        # paid_amount is what the customer actually paid; amount is only what we asked for.
        amount = reader.money("paid_amount" if reader.data.get("paid_amount") is not None else "amount")
    return ProviderUpdate(
        event_id=event_id or f"fetch:{invoice_id}:{status}",
        kind=kind,
        state=state,
        external_id=invoice_id,
        order_id=reader.optional_text("external_id"),
        amount=amount,
        method=reader.optional_text("payment_channel") or reader.optional_text("payment_method"),
        paid_at=reader.moment("paid_at") if state is PaymentState.SUCCEEDED else None,
        raw=reader.data,
    )


def qr_payment_update(payment: Any, event_id: str | None, kind: str) -> ProviderUpdate | None:
    reader = api_fields(payment, "QR payment")
    payment_id, status = reader.text("id"), reader.text("status")
    if status != "SUCCEEDED":
        return None
    return ProviderUpdate(
        event_id=event_id or f"fetch:{payment_id}:{status}",
        kind=kind,
        state=PaymentState.SUCCEEDED,
        external_id=reader.text("qr_id"),
        order_id=reader.optional_text("reference_id"),
        amount=reader.money("amount"),
        method="QRIS",
        paid_at=reader.moment("created"),
        raw=reader.data,
    )


# --------------------------------------------------------------------------------------------------------------
# Reading JSON objects


class Fields(JsonFields):
    service = "xendit"

    def money(self, name: str) -> Money:
        value = self.data.get(name)
        if isinstance(value, bool) or not isinstance(value, int | Decimal):
            raise self.error(f"has no numeric '{name}'")
        try:
            return Money.of(value, self.text("currency"))
        except MoneyError as exc:
            raise self.error(f"has an unusable '{name}': {exc}") from None


webhook_fields = Fields.of_webhook
api_fields = Fields.of_api
