"""Crypto Pay (@CryptoBot) behind the PaymentProvider interface.

Wire facts, from shared/reference/payments_api.md §5 (and §1, §9):
- `https://pay.crypt.bot/api/<method>` (testnet `testnet-pay.crypt.bot`, with its own token), header
  `Crypto-Pay-API-Token`; methods take GET query or POST JSON; answers are `{"ok": true, "result": …}` or
  `{"ok": false, "error": {"code", "name"}}` (§5.1).
- `createInvoice`: `currency_type` crypto (`asset`) or fiat (`fiat` plus comma-separated `accepted_assets`),
  `amount` as a string, our order id in `payload` (≤ 4 KB), `expires_in` 1..2678400 s, `paid_btn_name`
  (`callback` opens `paid_btn_url`, http(s) only). The Invoice has `invoice_id`, `status` active → paid |
  expired, `bot_invoice_url` / `mini_app_invoice_url` / `web_app_invoice_url`; `pay_url` is legacy (§5.2).
  Crypto Pay takes no idempotency key.
- Webhooks: `{"update_id", "update_type": "invoice_paid", "request_date", "payload": <Invoice>}` signed in
  `crypto-pay-api-signature` = hex HMAC-SHA256 keyed with the raw sha256 digest of the token, over the raw
  body (§5.3). Paid invoices add `paid_asset`, `paid_amount`, `paid_at`. `getInvoices(invoice_ids=…)`
  re-reads invoices. No refunds and no recurring payments.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar, Self

import httpx

from app.kit.clock import parse_utc, utcnow
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

log = logging.getLogger(__name__)

SERVICE = "cryptopay"
CRYPTO = frozenset({"USDT", "TON"})
FIAT = frozenset({"RUB", "USD", "EUR"})
DESCRIPTION_LIMIT = 1024
MAX_EXPIRES_IN = 2_678_400
# A user waits on createInvoice: a long Retry-After is reported as unavailable rather than sat through.
DEFAULT_RETRY = RetryPolicy(max_retry_after=3.0)
INVOICE_STATES: dict[str, PaymentState] = {
    "active": PaymentState.PENDING,
    "paid": PaymentState.SUCCEEDED,
    "expired": PaymentState.CANCELLED,
}


class Malformed(ValueError):
    """A signed webhook or an API answer that does not have the documented shape."""


class CryptoPayProvider:
    """One Crypto Pay app (its API token).

    Plans priced in USDT or TON become crypto invoices in that asset; plans priced in fiat become fiat
    invoices payable in `accepted_assets`. The provider owns `http` (closed by `aclose`); without one it
    builds an HttpClient with `timeout`, `retry` (default: never wait out a Retry-After longer than 3 s) and
    the host's shared circuit breaker."""

    name: ClassVar[str] = "cryptopay"
    currencies: ClassVar[frozenset[str]] = CRYPTO | FIAT
    methods: ClassVar[tuple[str, ...]] = ()  # the customer picks the asset in @CryptoBot
    supports_refunds: ClassVar[bool] = False
    supports_partial_refunds: ClassVar[bool] = False
    supports_saved_methods: bool = False
    supports_recurring: ClassVar[bool] = False

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        accepted_assets: Iterable[str] = ("USDT", "TON"),
        http: HttpClient | None = None,
        timeout: float = 15.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._http = http or HttpClient(base_url, service=SERVICE, timeout=timeout, retry=retry or DEFAULT_RETRY)
        self._token = token
        # §5.3: the HMAC key is the raw sha256 digest of the token, not the token and not its hex.
        self._webhook_key = hashlib.sha256(token.encode()).digest()
        self._accepted_assets = tuple(asset.strip().upper() for asset in accepted_assets if asset.strip())
        if not self._accepted_assets:
            raise ValueError("cryptopay: accepted_assets is empty")

    @classmethod
    def from_settings(cls, settings: Any) -> Self | None:
        if not settings.cryptopay_api_token:
            return None
        return cls(
            settings.cryptopay_api_url,
            settings.cryptopay_api_token,
            accepted_assets=settings.cryptopay_assets.split(","),
        )

    # --- checkout ----------------------------------------------------------------------------------------------

    async def create_checkout(self, order: CheckoutOrder) -> Checkout:
        price = order.amount
        if price.currency not in self.currencies:
            raise CheckoutRejected(f"cryptopay: cannot price an invoice in {price.currency}")
        body: dict[str, Any] = {
            "amount": wire_amount(price.amount),
            "description": (order.description.strip() or f"Order {order.order_id}")[:DESCRIPTION_LIMIT],
            "payload": order.order_id,
            "expires_in": expires_in(order.expires_at, utcnow()),
        }
        if price.currency in CRYPTO:
            body |= {"currency_type": "crypto", "asset": price.currency}
        else:
            body |= {
                "currency_type": "fiat",
                "fiat": price.currency,
                "accepted_assets": ",".join(self._accepted_assets),
            }
        if order.return_url.startswith(("https://", "http://")):
            # "callback" shows a button back to our waiting page once the invoice is paid (§5.2).
            body |= {"paid_btn_name": "callback", "paid_btn_url": order.return_url}
        invoice = await self._call("createInvoice", body)
        if not isinstance(invoice, dict):
            raise ProviderUnavailable("cryptopay: createInvoice answered something that is not an invoice")
        invoice_id = invoice.get("invoice_id")
        pay_url = invoice.get("mini_app_invoice_url") or invoice.get("bot_invoice_url")
        if not is_id(invoice_id) or not isinstance(pay_url, str) or not pay_url:
            raise ProviderUnavailable("cryptopay: the invoice has no id or payment link")
        return Checkout(
            external_id=str(invoice_id),
            pay_url=pay_url,
            expires_at=parse_utc(invoice.get("expiration_date")),
            details={
                "invoice_id": invoice_id,
                "hash": invoice.get("hash"),
                "bot_invoice_url": invoice.get("bot_invoice_url"),
                "web_app_invoice_url": invoice.get("web_app_invoice_url"),
            },
        )

    # --- webhooks ----------------------------------------------------------------------------------------------

    async def parse_webhook(self, webhook: IncomingWebhook) -> WebhookResult:
        signature = webhook.headers.get("crypto-pay-api-signature")
        if not signature or not signature.strip():
            raise WebhookRejected("cryptopay: the crypto-pay-api-signature header is missing", status_code=401)
        expected = hmac.new(self._webhook_key, webhook.body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected.encode(), signature.strip().lower().encode()):
            raise WebhookRejected("cryptopay: the signature does not match the body", status_code=401)
        # No request_date freshness check: the retry policy is undocumented (§11), so an old date may be a
        # genuine late retry; replays are harmless because the event id makes them idempotent.
        try:
            update = webhook_update(webhook.body)
        except (Malformed, MoneyError) as exc:
            raise WebhookRejected(f"cryptopay: {exc}", status_code=400) from exc
        return WebhookResult(updates=[update] if update else [])

    # --- status ------------------------------------------------------------------------------------------------

    async def fetch(self, external_id: str | None, order_id: str) -> ProviderUpdate | None:
        # getInvoices cannot search by payload, so without the invoice id there is nothing to ask.
        if not external_id or not external_id.isdigit():
            return None
        result = await self._call("getInvoices", {"invoice_ids": external_id}, refusal=ProviderUnavailable)
        items = result.get("items") if isinstance(result, dict) else None
        if not isinstance(items, list):
            raise ProviderUnavailable("cryptopay: getInvoices answered without an item list")
        invoice = next((i for i in items if isinstance(i, dict) and str(i.get("invoice_id")) == external_id), None)
        if invoice is None:
            return None  # deleted, or another app's
        try:
            return invoice_update(invoice, kind="fetch")
        except (Malformed, MoneyError) as exc:
            raise ProviderUnavailable(f"cryptopay: getInvoices: {exc}") from exc

    # --- not offered -------------------------------------------------------------------------------------------

    async def check_connection(self) -> None:
        """getMe: raises CredentialsRefused for a refused token, ProviderUnavailable when unreachable."""
        await self._call("getMe", {}, refusal=CredentialsRefused)

    async def charge_saved(self, order: CheckoutOrder, secret: str) -> ProviderUpdate:
        raise NotSupported("cryptopay: every payment is an invoice the customer pays")

    async def refund(
        self, external_id: str, amount: Money, *, idempotency_key: str, user_telegram_id: int
    ) -> RefundResult:
        raise NotSupported("cryptopay: invoices cannot be refunded through the API")

    async def cancel_recurring(self, secret: str, *, user_telegram_id: int) -> None:
        raise NotSupported("cryptopay: no recurring payments; a new invoice is issued each period")

    async def aclose(self) -> None:
        await self._http.aclose()

    # --- HTTP --------------------------------------------------------------------------------------------------

    async def _call(
        self, method: str, params: Mapping[str, Any], *, refusal: type[Exception] = CheckoutRejected
    ) -> Any:
        """POST a method with a JSON body; its `result`, or the error the answer maps to."""
        try:
            response = await self._http.post(method, json=dict(params), headers={"Crypto-Pay-API-Token": self._token})
        except ExternalServiceError as exc:  # down, 5xx, 429, open circuit
            raise ProviderUnavailable(str(exc)) from exc
        except httpx.HTTPError as exc:
            raise ProviderUnavailable(f"cryptopay: {method} failed: {exc}") from exc
        try:
            data = json.loads(response.content, parse_float=Decimal)
        except ValueError:
            data = None
        if isinstance(data, dict) and data.get("ok") is True and "result" in data:
            return data["result"]
        error = data.get("error") if isinstance(data, dict) else None
        if not isinstance(error, dict):
            if response.is_success or response.status_code >= 500:
                raise ProviderUnavailable(f"cryptopay: {method} answered HTTP {response.status_code} without a result")
            raise refusal(f"cryptopay: {method} refused with HTTP {response.status_code}: {response.text[:200]}")
        name, code = error.get("name") or "UNKNOWN_ERROR", error.get("code")
        if code == 401 or response.status_code == 401:
            raise refusal(f"cryptopay: {method}: the API token was refused ({name}); check CRYPTOPAY_API_TOKEN")
        if response.status_code >= 500 or (isinstance(code, int) and (code >= 500 or code == 429)):
            raise ProviderUnavailable(f"cryptopay: {method} failed: {code} {name}")
        raise refusal(f"cryptopay: {method} refused: {name}")


# --------------------------------------------------------------------------------------------------------------
# Wire formats


def wire_amount(amount: Decimal) -> str:
    """A plain decimal string without trailing zeros: "299", "4.5", "0.000001" (§5.2)."""
    return f"{amount.normalize():f}"


def expires_in(expires_at: datetime, now: datetime) -> int:
    seconds = math.ceil((expires_at - now).total_seconds())
    return min(max(seconds, 1), MAX_EXPIRES_IN)


def is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def jsonable(value: Any) -> Any:
    """`value` with Decimals as decimal strings, so `raw` can be stored as JSON without passing a float."""
    if isinstance(value, Decimal):
        return f"{value:f}"
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    return value


# --------------------------------------------------------------------------------------------------------------
# Invoices → updates


def webhook_update(body: bytes) -> ProviderUpdate | None:
    try:
        update = json.loads(body, parse_float=Decimal)
    except ValueError as exc:
        raise Malformed("the webhook body is not JSON") from exc
    if not isinstance(update, dict) or not isinstance(update.get("update_type"), str):
        raise Malformed("the webhook body has no update_type")
    if update["update_type"] != "invoice_paid":
        return None
    invoice = update.get("payload")
    if not isinstance(invoice, dict):
        raise Malformed("invoice_paid without an invoice")
    return invoice_update(invoice, kind="invoice_paid", state=PaymentState.SUCCEEDED)


def invoice_update(invoice: dict[str, Any], *, kind: str, state: PaymentState | None = None) -> ProviderUpdate:
    invoice_id = invoice.get("invoice_id")
    if not is_id(invoice_id):
        raise Malformed("the invoice has no invoice_id")
    status = invoice.get("status")
    if state is None:
        if status not in INVOICE_STATES:
            raise Malformed(f"unknown invoice status {status!r}")
        state = INVOICE_STATES[status]
    order_id = invoice.get("payload")
    paid = state is PaymentState.SUCCEEDED
    return ProviderUpdate(
        # A redelivery, and a fetch of the same paid invoice, carry the same id: the payment is applied once.
        event_id=f"invoice_{'paid' if paid else status}:{invoice_id}",
        kind=kind,
        state=state,
        external_id=str(invoice_id),
        order_id=order_id if isinstance(order_id, str) and order_id else None,
        amount=invoice_price(invoice),
        method=invoice.get("paid_asset") if isinstance(invoice.get("paid_asset"), str) else None,
        paid_at=parse_utc(invoice.get("paid_at")) if paid else None,
        raw=jsonable(invoice),
    )


def invoice_price(invoice: Mapping[str, Any]) -> Money:
    """The invoice's amount in its fiat or asset: the price the order set, which the service compares. What the
    customer actually sent (`paid_amount` in `paid_asset`) stays in `raw`."""
    currency = invoice.get("fiat") if invoice.get("currency_type") == "fiat" else invoice.get("asset")
    amount = invoice.get("amount")
    if not isinstance(currency, str) or not currency:
        raise Malformed("the invoice has no fiat or asset")
    if isinstance(amount, bool) or not isinstance(amount, str | int | Decimal):
        raise Malformed("the invoice has no amount")
    return Money.of(amount, currency)
