"""Telegram Stars (XTR) behind the PaymentProvider interface.

Wire facts (shared/reference/payments_api.md §4, §8 and §10.3; Bot API 10.1):
- Every call is `POST {api_url}/bot<token>/<method>` with a JSON body; answers use the envelope
  `{"ok": true, "result": ...}` or `{"ok": false, "error_code": N, "description": "...", "parameters": {...}}`.
  A 429 carries `parameters.retry_after` (seconds) in the body (§8), so this adapter honours it itself.
- `createInvoiceLink` (§4.1): currency "XTR", `provider_token` "", exactly one price with an integer number of
  Stars, title 1-32 characters, description 1-255, payload 1-128 bytes (our order id, echoed back as
  `invoice_payload`). `subscription_period` must be 2592000 (30 days) and then the price must be ≤ 10000 Stars.
  Telegram has no idempotency key: a link is only an offer, and creating a second one for a retried order is
  harmless (the charge id, not the payload, identifies a payment).
- Updates reach our webhook with `X-Telegram-Bot-Api-Secret-Token` (§4.2.7): the only authenticity there is.
  The body is not signed, so a changed body with the right token cannot be told apart; the service compares the
  amount with the order, and every money event is keyed on `telegram_payment_charge_id`.
- `pre_checkout_query` must be answered with `answerPreCheckoutQuery` within 10 s (§4.2.1), or the payment
  fails; `message.successful_payment` is the only proof of payment (§4.2.2). Subscriptions: the first charge has
  `is_first_recurring`; each renewal is another `successful_payment` with `is_recurring`, a new charge id and the
  original payload (§4.2.4). There is no "renewal failed" update.
- `refundStarPayment` refunds the whole charge; a repeat answers 400 `CHARGE_ALREADY_REFUNDED` (§4.2.3), which
  is success. `getStarTransactions` lists transactions in chronological order; an incoming payment's id is its
  charge id and a refund transaction reuses the id of the payment it refunds (§4.2.5).
- `editUserStarSubscription(user_id, telegram_payment_charge_id, is_canceled)` takes the first charge id.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, Self

import httpx

from app.kit.errors import ExternalServiceError
from app.kit.http import HttpClient, RetryPolicy
from app.kit.money import Money, MoneyError
from app.payments.providers.base import (
    Checkout,
    CheckoutOrder,
    CheckoutRejected,
    IncomingWebhook,
    NotSupported,
    OrderQuestion,
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

SERVICE = "telegram"
CURRENCY = "XTR"
SECRET_HEADER = "x-telegram-bot-api-secret-token"
SUBSCRIPTION_PERIOD = 30 * 24 * 3600  # the only period Telegram accepts (§4.1)
SUBSCRIPTION_MAX_STARS = 10_000
TITLE_LIMIT = 32
DESCRIPTION_LIMIT = 255
PAYLOAD_LIMIT_BYTES = 128
TRANSACTIONS_PAGE = 100  # getStarTransactions' largest page
ALREADY_REFUNDED = "CHARGE_ALREADY_REFUNDED"
SAVED_METHOD_TYPE = "stars_subscription"
SAVED_METHOD_TITLE = "Telegram Stars subscription"


class TelegramApiError(CheckoutRejected):
    """Telegram refused a call (`ok: false`, a 4xx other than 429): its error code and description."""

    def __init__(self, method: str, error_code: int, description: str) -> None:
        super().__init__(f"telegram {method}: {description}")
        self.method = method
        self.error_code = error_code
        self.description = description


@dataclass(frozen=True, slots=True)
class PreCheckout:
    """A `pre_checkout_query` to answer within 10 s: the order it is for and what the customer is about to pay."""

    query_id: str
    order_id: str  # the invoice payload, i.e. our order id
    amount: Money
    telegram_user_id: int


class StarsProvider:
    """Telegram Stars through the bot's own Bot API token.

    Owns two HttpClients (closed by `aclose`): the main one with `retry`, and a fast one for
    answerPreCheckoutQuery (a short timeout, at most one retry), whose deadline is Telegram's 10 s. The token is
    part of the client's base URL, so logs and errors name only the method."""

    name: ClassVar[str] = "stars"
    currencies: ClassVar[frozenset[str]] = frozenset({CURRENCY})
    methods: ClassVar[tuple[str, ...]] = ()
    supports_refunds: ClassVar[bool] = True
    supports_partial_refunds: ClassVar[bool] = False
    supports_saved_methods: bool = False
    supports_recurring: ClassVar[bool] = True

    def __init__(
        self,
        api_url: str,
        bot_token: str,
        webhook_secret: str,
        *,
        subscriptions_enabled: bool = True,
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        answer_timeout: float = 3.0,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        if not bot_token:
            raise ValueError("a bot token is required")
        self._webhook_secret = webhook_secret
        self.subscriptions_enabled = subscriptions_enabled
        policy = retry or RetryPolicy()
        # Telegram's 429 says how long to wait in the JSON body, which HttpClient cannot read: it hands 429s
        # back and `_call` waits `retry_after` itself, up to the same limits.
        self._retry = replace(policy, statuses=policy.statuses - {429})
        self._sleep = sleep
        base_url = f"{api_url.rstrip('/')}/bot{bot_token}/"
        self._http = HttpClient(
            base_url, service=SERVICE, timeout=timeout, retry=self._retry, transport=transport, sleep=sleep
        )
        answer_retry = RetryPolicy(attempts=2, base_delay=0.05, max_delay=0.1, statuses=self._retry.statuses)
        self._answer_http = HttpClient(
            base_url, service=SERVICE, timeout=answer_timeout, retry=answer_retry, transport=transport, sleep=sleep
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> Self | None:
        if not settings.stars_enabled or not settings.bot_token:
            return None
        return cls(
            settings.telegram_api_url,
            settings.bot_token,
            settings.bot_webhook_secret,
            subscriptions_enabled=settings.stars_subscriptions_enabled,
        )

    # --- checkout ------------------------------------------------------------------------------------------

    async def create_checkout(self, order: CheckoutOrder) -> Checkout:
        if order.amount.currency != CURRENCY:
            raise CheckoutRejected(f"stars: prices must be in XTR, not {order.amount.currency}")
        stars = order.amount.minor
        if stars < 1:
            raise CheckoutRejected("stars: the price must be at least 1 Star")
        payload = order.order_id
        if not payload or len(payload.encode()) > PAYLOAD_LIMIT_BYTES:
            raise CheckoutRejected("stars: the order id must be 1-128 bytes to travel as the invoice payload")
        title = clip(order.description, TITLE_LIMIT) or clip(f"Order {order.order_id}", TITLE_LIMIT)
        subscription = self.subscriptions_enabled and order.recurring_days == 30 and stars <= SUBSCRIPTION_MAX_STARS
        params: dict[str, Any] = {
            "title": title,
            "description": clip(order.description, DESCRIPTION_LIMIT) or title,
            "payload": payload,
            "provider_token": "",
            "currency": CURRENCY,
            "prices": [{"label": title, "amount": stars}],
        }
        if subscription:
            params["subscription_period"] = SUBSCRIPTION_PERIOD
        link = await self._call("createInvoiceLink", params)
        if not isinstance(link, str) or not link.startswith("https://"):
            raise ProviderUnavailable(f"telegram createInvoiceLink: unexpected result {link!r}")
        # No external id yet: Telegram names a payment only when it is paid (telegram_payment_charge_id).
        return Checkout(external_id=None, pay_url=None, invoice_link=link, details={"subscription": subscription})

    # --- webhooks ------------------------------------------------------------------------------------------

    async def parse_webhook(self, webhook: IncomingWebhook) -> WebhookResult:
        self._verify_secret(webhook.headers)
        return self.read_update(parse_update(webhook.body))

    def read_update(self, update: dict[str, Any]) -> WebhookResult:
        """The money events in an Update the bot already received from Telegram (webhook with its secret
        checked, or long polling)."""
        query = self.pre_checkout_query(update)
        if query is not None:
            return WebhookResult(
                updates=[], question=OrderQuestion(query.order_id, query.amount, self._answerer(query))
            )
        message = update.get("message")
        if not isinstance(message, dict):
            return WebhookResult(updates=[])  # callbacks, edits: not money events
        if "successful_payment" in message:
            return WebhookResult(updates=[successful_payment_update(update, message)])
        if "refunded_payment" in message:
            return WebhookResult(updates=[refunded_payment_update(update, message)])
        return WebhookResult(updates=[])

    def pre_checkout_query(self, webhook_body: Mapping[str, Any]) -> PreCheckout | None:
        """The pre-checkout query in an Update already accepted by `parse_webhook`, or None for other updates.
        A malformed query raises WebhookRejected (400)."""
        query = webhook_body.get("pre_checkout_query")
        if query is None:
            return None
        reader = Fields(query, "pre_checkout_query")
        return PreCheckout(
            query_id=reader.text("id"),
            order_id=reader.text("invoice_payload", allow_empty=True),
            amount=money(reader.integer("total_amount"), reader.text("currency")),
            telegram_user_id=Fields(reader.get("from", dict), "pre_checkout_query.from").integer("id"),
        )

    def _answerer(self, query: PreCheckout) -> Callable[[str | None], Awaitable[None]]:
        async def answer(refusal: str | None) -> None:
            await self.answer_pre_checkout(query.query_id, refusal is None, refusal)

        return answer

    async def answer_pre_checkout(self, query_id: str, ok: bool, error_message: str | None = None) -> None:
        """Say yes or no to a pre-checkout query. Telegram gives 10 s in all, so this call has a short timeout,
        at most one retry, and never waits out a 429."""
        params: dict[str, Any] = {"pre_checkout_query_id": query_id, "ok": ok}
        if not ok:
            # Required with ok=false; Telegram shows it to the customer.
            params["error_message"] = error_message or "This order can no longer be paid."
        await self._call("answerPreCheckoutQuery", params, http=self._answer_http, throttle_retries=0)

    def _verify_secret(self, headers: Mapping[str, str]) -> None:
        if not self._webhook_secret:
            raise WebhookRejected(
                "stars: BOT_WEBHOOK_SECRET must be set (and passed to setWebhook as secret_token) "
                "before Telegram updates are accepted",
                status_code=403,
            )
        given = header(headers, SECRET_HEADER)
        if given is None:
            raise WebhookRejected("stars: the secret token header is missing", status_code=401)
        if not hmac.compare_digest(given.encode(), self._webhook_secret.encode()):
            raise WebhookRejected("stars: the secret token does not match", status_code=401)

    # --- reconciliation ------------------------------------------------------------------------------------

    async def fetch(self, external_id: str | None, order_id: str) -> ProviderUpdate | None:
        """Find the charge in the bot's Star transactions: by charge id, or (none known yet) the first payment
        of our order's payload. The walk reads every page, as a refund comes after the payment it undoes."""
        payments: list[dict[str, Any]] = []
        refunded: set[str] = set()
        offset = 0
        while True:
            page = await self._call("getStarTransactions", {"offset": offset, "limit": TRANSACTIONS_PAGE})
            transactions = Fields(page, "getStarTransactions result").get("transactions", list)
            for item in transactions:
                transaction = Fields(item, "StarTransaction")
                receiver = transaction.data.get("receiver")
                if isinstance(receiver, dict) and receiver.get("type") == "user":
                    refunded.add(transaction.text("id"))  # a refund reuses the id of the payment it undoes
                elif is_invoice_payment(transaction.data.get("source")):
                    payments.append(transaction.data)
            if len(transactions) < TRANSACTIONS_PAGE:
                break
            offset += len(transactions)
        return transaction_update(payments, refunded, external_id, order_id)

    # --- refunds and subscriptions -------------------------------------------------------------------------

    async def refund(
        self, external_id: str, amount: Money, *, idempotency_key: str, user_telegram_id: int
    ) -> RefundResult:
        """Stars refunds are whole: `amount` only has to be in XTR. `idempotency_key` has no wire counterpart;
        a repeat is safe because Telegram answers CHARGE_ALREADY_REFUNDED."""
        if amount.currency != CURRENCY:
            raise CheckoutRejected(f"stars: a Stars payment is refunded in XTR, not {amount.currency}")
        params = {"user_id": user_telegram_id, "telegram_payment_charge_id": external_id}
        try:
            await self._call("refundStarPayment", params)
        except TelegramApiError as exc:
            if ALREADY_REFUNDED not in exc.description:
                raise
            # The first call went through and its answer was lost: the refund is done (§4.2.3).
        return RefundResult(refund_id=external_id, state=PaymentState.REFUNDED)

    async def cancel_recurring(self, secret: str, *, user_telegram_id: int) -> None:
        """Stop renewals of the subscription whose first charge id is `secret`; it stays paid to the period end."""
        params = {"user_id": user_telegram_id, "telegram_payment_charge_id": secret, "is_canceled": True}
        await self._call("editUserStarSubscription", params)

    async def charge_saved(self, order: CheckoutOrder, secret: str) -> ProviderUpdate:
        raise NotSupported("stars: Telegram renews Star subscriptions by itself; a bot cannot charge a user")

    async def aclose(self) -> None:
        await self._http.aclose()
        await self._answer_http.aclose()

    # --- plumbing ------------------------------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        params: dict[str, Any],
        *,
        http: HttpClient | None = None,
        throttle_retries: int | None = None,
    ) -> Any:
        """The `result` of one Bot API call. Raises ProviderUnavailable (network, 5xx, a 429 not waited out, a
        rejected token or URL) or TelegramApiError (Telegram refused the request)."""
        http = http or self._http
        retries = self._retry.attempts - 1 if throttle_retries is None else throttle_retries
        attempt = 0
        while True:
            try:
                response = await http.post(method, json=params)
            except ExternalServiceError as exc:
                raise ProviderUnavailable(str(exc)) from exc
            except httpx.HTTPError as exc:
                raise ProviderUnavailable(f"telegram {method}: {type(exc).__name__}") from exc
            envelope = read_envelope(response, method)
            if envelope.get("ok") is True and "result" in envelope:
                return envelope["result"]
            code = envelope.get("error_code")
            code = code if isinstance(code, int) and not isinstance(code, bool) else response.status_code
            description = str(envelope.get("description") or f"HTTP {response.status_code}")
            if code == 429:
                wait = retry_after(envelope)
                if attempt < retries and wait is not None and wait <= self._retry.max_retry_after:
                    attempt += 1
                    log.warning("telegram %s throttled; retrying in %ss", method, wait)
                    await self._sleep(wait)
                    continue
                raise ProviderUnavailable(f"telegram {method}: {description}")
            if code in (401, 404):
                # A wrong token (401) or API URL (404) is our configuration, not something wrong with the order.
                raise ProviderUnavailable(f"telegram {method}: {description}; check BOT_TOKEN and TELEGRAM_API_URL")
            if code >= 500:
                raise ProviderUnavailable(f"telegram {method}: {description}")
            raise TelegramApiError(method, code, description)


# --------------------------------------------------------------------------------------------------------------
# Requests and answers


def clip(text: str, limit: int) -> str:
    """Whitespace-trimmed text of at most `limit` characters, an ellipsis marking a cut."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def read_envelope(response: httpx.Response, method: str) -> dict[str, Any]:
    try:
        envelope = response.json()
    except ValueError:
        # Not Telegram speaking (a proxy's error page): nothing to act on, so try again later.
        raise ProviderUnavailable(f"telegram {method}: HTTP {response.status_code} without a JSON body") from None
    if not isinstance(envelope, dict) or not isinstance(envelope.get("ok"), bool):
        raise ProviderUnavailable(f"telegram {method}: HTTP {response.status_code} without the Bot API envelope")
    return envelope


def retry_after(envelope: Mapping[str, Any]) -> float | None:
    parameters = envelope.get("parameters")
    value = parameters.get("retry_after") if isinstance(parameters, dict) else None
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    return None


def header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        value = next((v for k, v in headers.items() if k.lower() == name), None)
    return value


# --------------------------------------------------------------------------------------------------------------
# Updates


class Fields:
    """Typed access to one JSON object of an Update; anything missing or mistyped is a 400 WebhookRejected."""

    def __init__(self, data: Any, what: str) -> None:
        if not isinstance(data, dict):
            raise WebhookRejected(f"stars: {what} is not a JSON object")
        self.data = data
        self.what = what

    def get(self, name: str, kind: type) -> Any:
        value = self.data.get(name)
        # bool is an int subclass: `true` where a number belongs is malformed.
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise WebhookRejected(f"stars: {self.what}.{name} is missing or not a {kind.__name__}")
        return value

    def text(self, name: str, *, allow_empty: bool = False) -> str:
        value = self.get(name, str)
        if not value and not allow_empty:
            raise WebhookRejected(f"stars: {self.what}.{name} is empty")
        return value

    def integer(self, name: str) -> int:
        return self.get(name, int)

    def flag(self, name: str) -> bool:
        value = self.data.get(name, False)
        if not isinstance(value, bool):
            raise WebhookRejected(f"stars: {self.what}.{name} is not a boolean")
        return value

    def moment(self, name: str) -> datetime | None:
        value = self.data.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            return datetime.fromtimestamp(value, UTC)
        return None


def parse_update(body: bytes) -> dict[str, Any]:
    try:
        update = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise WebhookRejected("stars: the body is not JSON") from None
    Fields(update, "update").integer("update_id")
    return update


def money(total_amount: int, currency: str) -> Money:
    if total_amount < 0:
        raise WebhookRejected("stars: a negative total_amount")
    try:
        return Money.from_minor(total_amount, currency)
    except MoneyError as exc:
        raise WebhookRejected(f"stars: {exc}") from None


def successful_payment_update(update: dict[str, Any], message: dict[str, Any]) -> ProviderUpdate:
    payment = Fields(message.get("successful_payment"), "successful_payment")
    charge_id = payment.text("telegram_payment_charge_id")
    first = payment.flag("is_first_recurring")
    renewal = payment.flag("is_recurring") and not first
    return ProviderUpdate(
        event_id=f"charge:{charge_id}",
        kind="successful_payment",
        state=PaymentState.SUCCEEDED,
        external_id=charge_id,
        # For a renewal this is the payload of the original invoice: the order the subscription was bought with.
        order_id=payment.text("invoice_payload", allow_empty=True) or None,
        amount=money(payment.integer("total_amount"), payment.text("currency")),
        method="stars",
        saved_method=SavedMethod(SAVED_METHOD_TYPE, SAVED_METHOD_TITLE, charge_id) if first else None,
        # A renewal does not name the first charge; the service finds the subscription through order_id.
        subscription_ref=charge_id if first else None,
        is_renewal=renewal,
        paid_at=Fields(message, "message").moment("date"),
        raw=update,
    )


def refunded_payment_update(update: dict[str, Any], message: dict[str, Any]) -> ProviderUpdate:
    refund = Fields(message.get("refunded_payment"), "refunded_payment")
    charge_id = refund.text("telegram_payment_charge_id")
    return ProviderUpdate(
        event_id=f"refund:{charge_id}",
        kind="refunded_payment",
        state=PaymentState.REFUNDED,
        external_id=charge_id,
        order_id=refund.text("invoice_payload", allow_empty=True) or None,
        amount=money(refund.integer("total_amount"), refund.text("currency")),
        method="stars",
        raw=update,
    )


# --------------------------------------------------------------------------------------------------------------
# Star transactions


def is_invoice_payment(source: Any) -> bool:
    return (
        isinstance(source, dict)
        and source.get("type") == "user"
        and source.get("transaction_type") == "invoice_payment"
    )


def transaction_update(
    payments: list[dict[str, Any]], refunded: set[str], external_id: str | None, order_id: str
) -> ProviderUpdate | None:
    """The update for the wanted payment among the bot's invoice payments (chronological). The earliest payment
    of a payload with a subscription period is the subscription's first charge; later ones are renewals."""
    if external_id is not None:
        found = next((p for p in payments if p.get("id") == external_id), None)
    else:
        found = next((p for p in payments if p["source"].get("invoice_payload") == order_id), None)
    if found is None:
        return None
    transaction = Fields(found, "StarTransaction")
    charge_id = transaction.text("id")
    payload = found["source"].get("invoice_payload")
    payload = payload if isinstance(payload, str) and payload else None
    recurring = bool(found["source"].get("subscription_period"))
    earliest = next(p for p in payments if p["source"].get("invoice_payload") == payload)
    first = recurring and earliest is found
    is_refunded = charge_id in refunded
    return ProviderUpdate(
        event_id=f"{'refund' if is_refunded else 'charge'}:{charge_id}",
        kind="fetch",
        state=PaymentState.REFUNDED if is_refunded else PaymentState.SUCCEEDED,
        external_id=charge_id,
        order_id=payload,
        amount=Money.from_minor(transaction.integer("amount"), CURRENCY),
        method="stars",
        saved_method=SavedMethod(SAVED_METHOD_TYPE, SAVED_METHOD_TITLE, charge_id) if first else None,
        subscription_ref=charge_id if first else None,
        is_renewal=recurring and not first,
        paid_at=transaction.moment("date"),
        raw=found,
    )
