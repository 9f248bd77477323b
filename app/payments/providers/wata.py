"""WATA (wata.pro) H2H acquiring behind the PaymentProvider interface.

Wire facts, from shared/reference/payments_api.md §3 (and §9 for the known traps):
- `https://api.wata.pro/api/h2h` (sandbox `api-sandbox.wata.pro`, which signs webhooks with its own key),
  `Authorization: Bearer <JWT>`. A token belongs to one terminal and works only from IP addresses agreed with
  WATA, so a 401/403 with a token that looks right usually means this server's IP is not allowed (§3.1).
  Errors are 400 `{"error": {"message", "details", "validationErrors": [{"message", "members"}]}}`.
- `POST /links` makes a payment link: `amount` a JSON number with at most 2 decimals (10 RUB / 1 USD / 1 EUR
  up to 999 999.99), our `orderId` (echoed on every transaction), `type: "OneTime"`, and an
  `expirationDateTime` more than 10 minutes and at most 30 days ahead; production code keeps 15 minutes (§3.2).
  WATA takes no idempotency key on any call.
- Webhooks: `X-Signature` = base64 RSA PKCS#1 v1.5 SHA-512 over the raw body, verified with the PEM from
  `GET /public-key` (no auth; cached about an hour; may carry literal "\\n"). Post-payment hooks carry
  `transactionId`, `transactionStatus` (Paid | Declined), `orderId`, `amount`, `currency`, `transactionType`,
  `errorDescription` and, on refund hooks, `kind: "Refund"`. Delivered at least once for up to 32 h (§3.3).
- Transactions are searched with `GET /v2/transactions?OrderId=` (cursor pagination); the old
  `GET /transactions` answers 404 with an empty body. Some GETs allow 1 request per 30 s and answer 429 with a
  Retry-After of 30-45 s, which is never waited out in-line (§3.1, §9).
- `POST /transactions/refunds {originalTransactionId, amount}`: the original must be Paid; refunds together
  cannot exceed it; the currency is the original's (§3.2).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar, Self
from urllib.parse import quote

import httpx
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

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

SERVICE = "wata"
MINIMUMS: dict[str, Decimal] = {"RUB": Decimal("10"), "USD": Decimal("1"), "EUR": Decimal("1")}
# WATA refuses an expiry within 10 minutes; 15 leaves room for clock skew and latency (bedolaga, §9).
MIN_LINK_LIFETIME = timedelta(minutes=15)
MAX_LINK_LIFETIME = timedelta(days=30) - timedelta(minutes=5)
# A signature failure re-fetches the key (WATA may have rotated it), but not more often than this, so forged
# requests cannot make us hammer /public-key; a genuine webhook refused meanwhile is retried by WATA (§3.3).
KEY_REFRESH_INTERVAL = 60.0
PAGE_SIZE = 100
MAX_PAGES = 20  # an order has a handful of attempts; a longer walk means something is wrong
# A 30-45 s Retry-After is normal for WATA's per-id GET limit; a request handler must not sit through it.
DEFAULT_RETRY = RetryPolicy(max_retry_after=3.0)
# Refunds that still hold money back (a Declined one released it).
LIVE_REFUND_STATUSES = frozenset({"Created", "Pending", "Paid"})


class Malformed(ValueError):
    """A signed webhook or an API answer that does not have the documented shape."""


@dataclass(frozen=True, slots=True)
class _CachedKey:
    key: rsa.RSAPublicKey
    fetched_at: float


class WataProvider:
    """One WATA terminal (its access token).

    The webhook public key is cached for `public_key_ttl` seconds of `clock`; the cache belongs to this
    provider, i.e. to one base URL, so sandbox and production keys never mix. The provider owns `http`
    (closed by `aclose`); without one it builds HttpClients with `timeout`, `retry` (default: never wait out
    a Retry-After longer than 3 s; refunds are sent once) and the host's shared circuit breaker."""

    name: ClassVar[str] = "wata"
    currencies: ClassVar[frozenset[str]] = frozenset({"RUB", "USD", "EUR"})
    methods: ClassVar[tuple[str, ...]] = ()  # WATA's page offers card, SBP and T-Pay itself
    supports_refunds: ClassVar[bool] = True
    supports_partial_refunds: ClassVar[bool] = False
    supports_saved_methods: bool = False
    supports_recurring: ClassVar[bool] = False

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        public_key_ttl: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
        http: HttpClient | None = None,
        timeout: float = 15.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        policy = retry or DEFAULT_RETRY
        self._http = http or HttpClient(base_url, service=SERVICE, timeout=timeout, retry=policy)
        # Refunds move money and WATA takes no idempotency key: a refund POST is never re-sent blindly.
        self._http_once = http or HttpClient(
            base_url, service=SERVICE, timeout=timeout, retry=replace(policy, attempts=1)
        )
        self._authorization = f"Bearer {api_key}"
        self._key_ttl = public_key_ttl
        self._clock = clock
        self._cached_key: _CachedKey | None = None
        self._key_lock = asyncio.Lock()

    @classmethod
    def from_settings(cls, settings: Any) -> Self | None:
        if not settings.wata_api_key:
            return None
        return cls(settings.wata_api_url, settings.wata_api_key)

    # --- checkout ----------------------------------------------------------------------------------------------

    async def create_checkout(self, order: CheckoutOrder) -> Checkout:
        amount = order.amount
        if amount.currency not in self.currencies:
            raise CheckoutRejected(f"wata: takes RUB, USD or EUR, not {amount.currency}")
        minimum = MINIMUMS[amount.currency]
        if amount.amount < minimum:
            raise CheckoutRejected(f"wata: the minimum payment is {minimum} {amount.currency}, not {amount}")
        expires_at = link_expiry(order.expires_at, utcnow())
        body = {
            "amount": amount.amount,
            "currency": amount.currency,
            "description": order.description.strip() or f"Order {order.order_id}",
            "orderId": order.order_id,
            "successRedirectUrl": order.return_url,
            "failRedirectUrl": order.return_url,
            "expirationDateTime": wire_time(expires_at),
            "type": "OneTime",
        }
        response = await self._send("POST", "links", body=body)
        link = self._answer(response, "create link")
        link_id, url = link.get("id"), link.get("url")
        if not isinstance(link_id, str) or not link_id or not isinstance(url, str) or not url:
            raise ProviderUnavailable("wata: the link answer has no id or url")
        # No external id yet: the payment's id is the transactionId its webhook brings (and refunds need);
        # the link is only a handle that WATA deletes after expiry, so payments are found by orderId (§3.2).
        return Checkout(
            external_id=None,
            pay_url=url,
            expires_at=parse_utc(link.get("expirationDateTime")) or expires_at,
            details={"link_id": link_id, "link_status": link.get("status"), "terminal": link.get("terminalName")},
        )

    # --- webhooks ----------------------------------------------------------------------------------------------

    async def parse_webhook(self, webhook: IncomingWebhook) -> WebhookResult:
        signature = decode_signature(webhook.headers.get("x-signature"))
        await self._verify(webhook.body, signature)
        try:
            update = webhook_update(webhook.body)
        except (Malformed, MoneyError) as exc:
            raise WebhookRejected(f"wata: {exc}", status_code=400) from exc
        # Anything we do not act on (a pre-payment hook, a refund still in progress) is answered 200: a
        # non-200 to a pre-payment hook would decline the customer's payment (§3.3).
        return WebhookResult(updates=[update] if update else [])

    async def _verify(self, body: bytes, signature: bytes) -> None:
        key, fetched = await self._public_key()
        if verifies(key, body, signature):
            return
        if not fetched:
            # WATA may have rotated its key within our cache lifetime: ask once more before refusing.
            key, fetched = await self._public_key(stale=key)
            if fetched and verifies(key, body, signature):
                return
        raise WebhookRejected("wata: the X-Signature does not verify", status_code=401)

    async def _public_key(self, stale: rsa.RSAPublicKey | None = None) -> tuple[rsa.RSAPublicKey, bool]:
        """The cached key and False, or a freshly fetched key and True: when there is none, it is older than the
        TTL, or it is `stale` and older than KEY_REFRESH_INTERVAL. A concurrent refresh counts as fresh.
        Unreachable → ProviderUnavailable (fail closed)."""
        async with self._key_lock:
            cached = self._cached_key
            if cached is not None:
                age = self._clock() - cached.fetched_at
                if cached.key is not stale and age < self._key_ttl:
                    return cached.key, stale is not None
                if cached.key is stale and age < KEY_REFRESH_INTERVAL:
                    return cached.key, False
            key = await self._fetch_public_key()
            self._cached_key = _CachedKey(key, self._clock())
            return key, True

    async def _fetch_public_key(self) -> rsa.RSAPublicKey:
        response = await self._send("GET", "public-key", authorized=False)
        if not response.is_success:
            raise ProviderUnavailable(f"wata: GET /public-key answered HTTP {response.status_code}")
        try:
            value = response.json()["value"]
            key = serialization.load_pem_public_key(normalize_pem(value).encode())
        except (ValueError, TypeError, KeyError, AttributeError, UnsupportedAlgorithm) as exc:
            raise ProviderUnavailable(f"wata: the webhook public key is unreadable: {exc}") from exc
        if not isinstance(key, rsa.RSAPublicKey):
            raise ProviderUnavailable("wata: the webhook public key is not an RSA key")
        return key

    # --- status ------------------------------------------------------------------------------------------------

    async def fetch(self, external_id: str | None, order_id: str) -> ProviderUpdate | None:
        chosen = settled_transaction(await self._search(OrderId=order_id))
        if chosen is None:
            return None
        try:
            return transaction_update(chosen)
        except (Malformed, MoneyError) as exc:
            raise ProviderUnavailable(f"wata: transaction search: {exc}") from exc

    async def _search(self, **filters: str) -> list[dict[str, Any]]:
        """Every transaction matching `filters`, following the cursor. Never the v1 `/transactions` search,
        which answers 404 to everything (§9)."""
        params: dict[str, Any] = {**filters, "MaxResultCount": PAGE_SIZE}
        items: list[dict[str, Any]] = []
        for _ in range(MAX_PAGES):
            response = await self._send("GET", "v2/transactions", params=params)
            if response.status_code == 404:
                # Production code has seen 404 for "nothing found"; no transaction is what it means here.
                log.warning("wata: transaction search answered 404 for %s", filters)
                return items
            page = self._answer(response, "transaction search", refusal=ProviderUnavailable)
            found = page.get("items")
            if not isinstance(found, list) or not all(isinstance(item, dict) for item in found):
                raise ProviderUnavailable("wata: the transaction search answer has no item list")
            items.extend(found)
            cursor = {
                name: page[f"next{name}"]
                for name in ("CursorId", "CursorDate", "CursorAmount")
                if page.get(f"next{name}") is not None
            }
            if not page.get("hasNextPage") or "CursorId" not in cursor:
                return items
            params = {**filters, "MaxResultCount": PAGE_SIZE, **cursor}
        log.warning("wata: transaction search for %s stopped after %d pages", filters, MAX_PAGES)
        return items

    # --- refunds -----------------------------------------------------------------------------------------------

    async def refund(
        self, external_id: str, amount: Money, *, idempotency_key: str, user_telegram_id: int
    ) -> RefundResult:
        response = await self._request_refund(external_id, amount)
        if response.status_code == 400:
            # WATA has no idempotency key: a repeated refund is refused as exceeding what is left, so look for
            # the one that already happened before calling it a refusal.
            earlier = await self._earlier_refund(external_id, amount)
            if earlier is not None:
                return earlier
        return refund_result(self._answer(response, "refund"))

    async def _request_refund(self, original_id: str, amount: Money) -> httpx.Response:
        body = {"originalTransactionId": original_id, "amount": amount.amount}
        return await self._send("POST", "transactions/refunds", body=body, once=True)

    async def _earlier_refund(self, original_id: str, amount: Money) -> RefundResult | None:
        response = await self._send("GET", f"transactions/{quote(original_id, safe='')}")
        if response.status_code != 200:
            return None
        original = self._answer(response, "transaction", refusal=ProviderUnavailable)
        order_id = original.get("orderId")
        if not isinstance(order_id, str) or not order_id:
            return None
        refunds = [
            tx
            for tx in await self._search(OrderId=order_id)
            if tx.get("kind") == "Refund"
            and tx.get("status") in LIVE_REFUND_STATUSES
            and tx.get("originalTransactionId") in (None, original_id)
            and decimal_of(tx.get("amount")) == amount.amount
        ]
        if not refunds:
            return None
        return refund_result(max(refunds, key=transaction_time))

    # --- the admin's "test connection" -------------------------------------------------------------------------

    async def check_connection(self) -> None:
        """An authenticated search for an order that cannot exist: an answer proves that WATA accepts the token
        from this server's IP address, and nothing changes. 401/403 raise CredentialsRefused (with WATA's hints:
        expired token, IP not allowed); network failures, 5xx and 429 raise ProviderUnavailable. The order id is
        new each time, since WATA allows one GET per 30 s for the same id or query (§3.1)."""
        order_id = f"vpnshop-connection-check-{secrets.token_hex(6)}"
        response = await self._send("GET", "v2/transactions", params={"OrderId": order_id, "MaxResultCount": 1})
        if response.status_code in (401, 403):
            self._answer(response, "connection check", refusal=CredentialsRefused)
        if response.status_code == 404:
            # WATA has answered "nothing found" with a 404 of its error shape (see _search); an empty 404 is what
            # a path WATA does not serve answers, i.e. WATA_API_URL is wrong.
            if _has_error_object(response):
                return
            raise ProviderUnavailable(f"wata: {response.request.url} answered 404; check WATA_API_URL (…/api/h2h)")
        found = self._answer(response, "connection check", refusal=ProviderUnavailable).get("items")
        if not isinstance(found, list):
            raise ProviderUnavailable("wata: the transaction search answer has no item list; check WATA_API_URL")

    # --- not offered -------------------------------------------------------------------------------------------

    async def charge_saved(self, order: CheckoutOrder, secret: str) -> ProviderUpdate:
        raise NotSupported("wata: links are paid by the customer; there are no saved methods")

    async def cancel_recurring(self, secret: str, *, user_telegram_id: int) -> None:
        raise NotSupported("wata: no provider-managed subscriptions")

    async def aclose(self) -> None:
        await self._http.aclose()
        if self._http_once is not self._http:
            await self._http_once.aclose()

    # --- HTTP --------------------------------------------------------------------------------------------------

    async def _send(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        authorized: bool = True,
        once: bool = False,
    ) -> httpx.Response:
        headers = {"Authorization": self._authorization} if authorized else {}
        content = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            content = encode_json(body)
        try:
            client = self._http_once if once else self._http
            return await client.request(method, path, content=content, params=params, headers=headers)
        except ExternalServiceError as exc:  # down, 5xx, 429 beyond our patience, open circuit
            raise ProviderUnavailable(str(exc)) from exc
        except httpx.HTTPError as exc:
            raise ProviderUnavailable(f"wata: {method} {path} failed: {exc}") from exc

    def _answer(
        self, response: httpx.Response, action: str, *, refusal: type[Exception] = CheckoutRejected
    ) -> dict[str, Any]:
        """The JSON object of a 2xx (amounts as Decimal), or the error it maps to."""
        status = response.status_code
        if response.is_success:
            try:
                data = json.loads(response.content, parse_float=Decimal)
            except ValueError:
                data = None
            if not isinstance(data, dict):
                raise ProviderUnavailable(f"wata: {action} answered something that is not a JSON object")
            return data
        detail = error_message(response)
        if status == 401:
            raise refusal(
                f"wata: {action}: the access token was refused (expired or revoked, or this server's IP "
                f"address is not allowed for it): {detail}"
            )
        if status == 403:
            raise refusal(
                f"wata: {action}: forbidden; this server's IP address is probably not on the terminal's "
                f"allow-list: {detail}"
            )
        if 400 <= status < 500:
            raise refusal(f"wata: {action} refused: {detail}")
        raise ProviderUnavailable(f"wata: {action} answered HTTP {status}: {detail}")


# --------------------------------------------------------------------------------------------------------------
# Wire formats


def encode_json(value: Any) -> bytes:
    """JSON with Decimals written as numbers exactly as they are ("1188.00", never through a float): WATA wants
    amounts as JSON numbers with at most two decimals (§1.4)."""

    def render(item: Any) -> str:
        if isinstance(item, Decimal):
            return f"{item:f}"
        if isinstance(item, Mapping):
            return "{" + ",".join(f"{json.dumps(str(k))}:{render(v)}" for k, v in item.items()) + "}"
        if isinstance(item, list | tuple):
            return "[" + ",".join(render(v) for v in item) + "]"
        return json.dumps(item, ensure_ascii=False)

    return render(value).encode()


def link_expiry(wanted: datetime, now: datetime) -> datetime:
    """Our checkout's expiry, moved into WATA's accepted window (more than 10 min, at most 30 days ahead)."""
    return min(max(wanted, now + MIN_LINK_LIFETIME), now + MAX_LINK_LIFETIME)


def wire_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def error_message(response: httpx.Response) -> str:
    """The validation messages of WATA's 400 shape, else its message, else the start of the body."""
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        error = None
    if isinstance(error, dict):
        checks = error.get("validationErrors")
        messages = [str(v["message"]) for v in checks or () if isinstance(v, dict) and v.get("message")]
        if messages:
            return "; ".join(messages)
        for key in ("details", "message"):
            if isinstance(error.get(key), str) and error[key]:
                return error[key]
    return response.text[:200] or f"HTTP {response.status_code}"


def _has_error_object(response: httpx.Response) -> bool:
    """Whether the body is WATA's error shape `{"error": {...}}` (the API itself answered, not a stray server)."""
    try:
        data = response.json()
    except ValueError:
        return False
    return isinstance(data, dict) and isinstance(data.get("error"), dict)


def decimal_of(value: Any) -> Decimal | None:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    return None


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
# Webhook signature


def decode_signature(value: str | None) -> bytes:
    if not value or not value.strip():
        raise WebhookRejected("wata: the X-Signature header is missing", status_code=401)
    try:
        return base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise WebhookRejected("wata: the X-Signature header is not base64", status_code=401) from exc


def normalize_pem(value: str) -> str:
    """Some deliveries of the key carry literal "\\n" instead of line breaks (§3.3)."""
    pem = value.replace("\\n", "\n").strip()
    if "-----BEGIN" not in pem:
        pem = f"-----BEGIN PUBLIC KEY-----\n{pem}\n-----END PUBLIC KEY-----"
    return pem + "\n"


def verifies(key: rsa.RSAPublicKey, body: bytes, signature: bytes) -> bool:
    """SHA512withRSA over the exact bytes received; SHA-256 would reject every genuine webhook (§3.3)."""
    try:
        key.verify(signature, body, padding.PKCS1v15(), hashes.SHA512())
    except InvalidSignature:
        return False
    return True


# --------------------------------------------------------------------------------------------------------------
# Transactions → updates


def state_of(kind: str, status: str) -> PaymentState | None:
    """What a transaction means for our payment; None for states we do not act on."""
    if kind == "Payment":
        return {"Paid": PaymentState.SUCCEEDED, "Declined": PaymentState.FAILED}.get(status)
    if kind == "Refund" and status == "Paid":
        return PaymentState.REFUNDED
    return None


def webhook_update(body: bytes) -> ProviderUpdate | None:
    try:
        payload = json.loads(body, parse_float=Decimal)
    except ValueError as exc:
        raise Malformed("the webhook body is not JSON") from exc
    if not isinstance(payload, dict):
        raise Malformed("the webhook body is not a JSON object")
    transaction_id = required_str(payload, "transactionId")
    status = required_str(payload, "transactionStatus")
    kind = optional_str(payload, "kind") or "Payment"
    state = state_of(kind, status)
    if state is None:
        return None
    return ProviderUpdate(
        # A redelivery repeats the same transaction in the same status; a refund is its own transaction.
        event_id=f"{transaction_id}:{status}:{kind}",
        kind=f"{kind.lower()}.{status.lower()}",
        state=state,
        external_id=transaction_id,
        order_id=optional_str(payload, "orderId"),
        amount=money_of(payload, state),
        method=optional_str(payload, "transactionType"),
        failure_reason=failure_reason(payload) if state is PaymentState.FAILED else None,
        paid_at=parse_utc(payload.get("paymentTime")),
        raw=jsonable(payload),
    )


def transaction_update(tx: dict[str, Any]) -> ProviderUpdate:
    """A transaction from the search, as an update whose event id matches the webhook of the same fact."""
    transaction_id = required_str(tx, "id")
    status = required_str(tx, "status")
    kind = optional_str(tx, "kind") or "Payment"
    state = state_of(kind, status) or PaymentState.PENDING
    return ProviderUpdate(
        event_id=f"{transaction_id}:{status}:{kind}",
        kind="fetch",
        state=state,
        external_id=transaction_id,
        order_id=optional_str(tx, "orderId"),
        amount=money_of(tx, state),
        method=optional_str(tx, "type"),
        failure_reason=failure_reason(tx) if state is PaymentState.FAILED else None,
        paid_at=parse_utc(tx.get("paymentTime")),
        raw=jsonable(tx),
    )


def settled_transaction(transactions: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The transaction that decides the order: a completed refund, else a paid payment, else the latest
    attempt. A paid order stays paid even when a later attempt on it was declined."""
    valid = [tx for tx in transactions if isinstance(tx.get("id"), str) and isinstance(tx.get("status"), str)]
    refunds = [tx for tx in valid if tx.get("kind") == "Refund" and tx["status"] == "Paid"]
    payments = [tx for tx in valid if tx.get("kind", "Payment") in ("Payment", None)]
    paid = [tx for tx in payments if tx["status"] == "Paid"]
    for candidates in (refunds, paid, payments):
        if candidates:
            return max(candidates, key=transaction_time)
    return None


def is_paid_payment(tx: dict[str, Any]) -> bool:
    return tx.get("status") == "Paid" and tx.get("kind", "Payment") in ("Payment", None) and bool(tx.get("id"))


def transaction_time(tx: dict[str, Any]) -> datetime:
    return parse_utc(tx.get("creationTime")) or parse_utc(tx.get("paymentTime")) or datetime.min.replace(tzinfo=UTC)


def refund_result(tx: dict[str, Any]) -> RefundResult:
    refund_id = tx.get("id")
    if not isinstance(refund_id, str) or not refund_id:
        raise ProviderUnavailable("wata: the refund answer has no id")
    status = tx.get("status")
    if status == "Declined":
        raise CheckoutRejected(f"wata: the refund was declined: {failure_reason(tx)}")
    state = PaymentState.REFUNDED if status == "Paid" else PaymentState.PENDING
    return RefundResult(refund_id=refund_id, state=state)


def money_of(data: Mapping[str, Any], state: PaymentState) -> Money | None:
    """The transaction's amount; money that moved must say how much, a declined attempt need not."""
    amount = decimal_of(data.get("amount"))
    currency = data.get("currency")
    if amount is None or not isinstance(currency, str):
        if state in (PaymentState.SUCCEEDED, PaymentState.REFUNDED):
            raise Malformed("the amount or currency is missing (a string amount is not WATA's format)")
        return None
    return Money.of(amount, currency)


def failure_reason(data: Mapping[str, Any]) -> str:
    for key in ("errorDescription", "errorCode"):
        value = data.get(key)
        if isinstance(value, str) and value:
            return value
    return "declined"


def required_str(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise Malformed(f"{key} is missing")
    return value


def optional_str(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    return value if isinstance(value, str) and value else None
