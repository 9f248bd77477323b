"""An HTTP emulator of the Telegram Bot API, written from shared/reference/payments_api.md §4, §8 and §10.3.

So far it speaks the Stars payment methods plus `getMe` and a basic `sendMessage`; it is built to grow into the
bot's and the broadcasts' emulator: every Bot API method is a function registered in `METHODS` with
`@bot_method("name")`, and every Update it makes goes through one queue (`emulator.updates`, the undelivered ones
in `emulator.pending`) that a later `getUpdates` or webhook dispatcher can drain.

API: `POST|GET /bot<token>/<method>` with JSON, form or query parameters (form values are strings, objects are
JSON-encoded, as the real server accepts). Answers are `{"ok": true, "result": ...}` or
`{"ok": false, "error_code": N, "description": "..."[, "parameters": {...}]}` with the HTTP status `error_code`.
A wrong token gets 401 "Unauthorized", an unknown method 404 "Not Found". Method names are case-insensitive.

Payments (§4):
  createInvoiceLink        XTR only, exactly one price, provider_token "" or absent, title 1-32 characters,
                           description 1-255, payload 1-128 bytes, subscription_period absent or 2592000 with a
                           price of at most 10000 Stars; returns https://t.me/$<slug>
  answerPreCheckoutQuery   records the answer and its time; an unknown, repeated or late (> 10 s) answer is a 400
  refundStarPayment        the first call refunds (a refunded_payment Update is queued and, with a webhook, posted);
                           a repeat is 400 CHARGE_ALREADY_REFUNDED, an unknown charge 400 CHARGE_NOT_FOUND
  editUserStarSubscription the charge id must be a subscription's first charge, of that user
  getStarTransactions      chronological, offset/limit (1-100); a refund reuses its payment's id
  getMyStarBalance         payments add to the balance, refunds take from it
Bot: getMe, sendMessage (records messages; a user in `blocked_users` gets 403). Rate limits come later (§8).

For tests (from any thread): `pay`, `pre_checkout`, `renew`, `refund_delivery` return the webhook `Delivery`
Telegram would send, without sending it; `forged(delivery)` swaps the secret token; `fail_next`/`delay_next` are
the fault knobs; `calls(...)`, `requests`, `invoices`, `charges`, `subscriptions`, `queries`, `messages` show what
happened. Control endpoints under /_emu/tg/ do the same over HTTP, and with a `webhook_url` `/_emu/tg/pay` plays
the whole flow: post the pre_checkout_query, wait up to 10 s for the bot's answer, then post successful_payment.

Descriptions not quoted in the reference are plausible guesses (see `bad_request` call sites).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import secrets
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tests.emulators.payments_common import Delivery, post_delivery

DEFAULT_TOKEN = "7000000001:AAEmulatedBotTokenForVpnshopTests_0123"
DEFAULT_SECRET = "tg-emulator-webhook-secret"
DEFAULT_USER_ID = 424242
SECRET_HEADER = "x-telegram-bot-api-secret-token"
TELEGRAM_IP = "149.154.167.220"  # inside 149.154.160.0/20, where Telegram's webhooks come from
CURRENCY = "XTR"
SUBSCRIPTION_PERIOD = 2592000
SUBSCRIPTION_MAX_STARS = 10_000
PRE_CHECKOUT_TIMEOUT = 10.0
QUERY_TOO_OLD = "query is too old and response timeout expired or query ID is invalid"
MESSAGE_LIMIT = 4096


# --------------------------------------------------------------------------------------------------------------
# Errors and parameters


class ApiError(Exception):
    """A Bot API refusal: answered as {"ok": false, "error_code", "description"[, "parameters"]}."""

    def __init__(self, error_code: int, description: str, parameters: dict[str, Any] | None = None) -> None:
        super().__init__(description)
        self.error_code = error_code
        self.description = description
        self.parameters = parameters

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"ok": False, "error_code": self.error_code, "description": self.description}
        if self.parameters:
            body["parameters"] = self.parameters
        return body


def bad_request(detail: str) -> ApiError:
    return ApiError(400, f"Bad Request: {detail}")


class Params:
    """A method's parameters from JSON (typed) or a form/query string (all strings, objects JSON-encoded)."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values

    def raw(self, name: str) -> Any:
        return self.values.get(name)

    def _present(self, name: str, required: bool) -> Any:
        value = self.values.get(name)
        if value is None and required:
            raise bad_request(f'parameter "{name}" is required')
        return value

    def string(self, name: str, *, required: bool = True) -> str | None:
        value = self._present(name, required)
        if value is None:
            return None
        if isinstance(value, bool | dict | list):
            raise bad_request(f'parameter "{name}" must be a string')
        return str(value)

    def integer(self, name: str, *, required: bool = True) -> int | None:
        value = self._present(name, required)
        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise bad_request(f'parameter "{name}" must be a number')

    def boolean(self, name: str, *, required: bool = True) -> bool | None:
        value = self._present(name, required)
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
            return value.lower() in ("true", "1")
        raise bad_request(f'parameter "{name}" must be a Boolean')

    def array(self, name: str, *, required: bool = True) -> list[Any] | None:
        value = self._present(name, required)
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                raise bad_request(f"can't parse {name} JSON object") from None
        if value is None or isinstance(value, list):
            return value
        raise bad_request(f"can't parse {name} JSON object")


# --------------------------------------------------------------------------------------------------------------
# Records


@dataclass(slots=True)
class Invoice:
    slug: str
    title: str
    description: str
    payload: str
    amount: int
    label: str
    subscription_period: int | None
    created_at: float

    @property
    def link(self) -> str:
        return f"https://t.me/${self.slug}"


@dataclass(slots=True)
class Charge:
    """One successful payment (a first purchase, a re-payment of an old invoice, or a renewal)."""

    charge_id: str
    user_id: int
    payload: str
    amount: int
    currency: str
    date: int
    subscription_period: int | None = None
    is_first_recurring: bool = False
    is_recurring: bool = False
    expiration_date: int | None = None
    refunded: bool = False


@dataclass(slots=True)
class Subscription:
    first_charge_id: str
    user_id: int
    payload: str
    amount: int
    expires_at: int
    canceled: bool = False
    charge_ids: list[str] = field(default_factory=list)


@dataclass(slots=True)
class PreCheckoutQuery:
    query_id: str
    user_id: int
    payload: str
    amount: int
    currency: str
    sent_at: float
    answered_at: float | None = None
    ok: bool | None = None
    error_message: str | None = None
    late: bool = False


@dataclass(frozen=True, slots=True)
class ApiCall:
    method: str  # as registered ("createInvoiceLink"), or as sent when unknown
    params: dict[str, Any]
    at: float


@dataclass(slots=True)
class Fault:
    kind: Literal["status", "delay"]
    remaining: int
    method: str | None  # lower-case method name, None for any
    status: int = 500
    retry_after: int | None = None
    description: str | None = None
    seconds: float = 0.0


# --------------------------------------------------------------------------------------------------------------
# The method registry

Handler = Callable[["TelegramBotApiEmulator", Params], Any]
METHODS: dict[str, tuple[str, Handler]] = {}  # lower-case name -> (canonical name, handler)


def bot_method(name: str) -> Callable[[Handler], Handler]:
    """Register a Bot API method. Handlers run under the emulator's lock and return the `result`."""

    def register(handler: Handler) -> Handler:
        METHODS[name.lower()] = (name, handler)
        return handler

    return register


@bot_method("getMe")
def get_me(emu: TelegramBotApiEmulator, params: Params) -> dict[str, Any]:
    return emu.bot_user(full=True)


@bot_method("sendMessage")
def send_message(emu: TelegramBotApiEmulator, params: Params) -> dict[str, Any]:
    chat_id = params.raw("chat_id")
    if chat_id in (None, ""):
        raise bad_request("chat_id is empty")
    text = params.string("text", required=False) or ""
    if not text.strip():
        raise bad_request("message text is empty")
    if len(text) > MESSAGE_LIMIT:
        raise bad_request("message is too long")
    chat = params.integer("chat_id") if not str(chat_id).startswith("@") else str(chat_id)
    if chat in emu.blocked_users:
        raise ApiError(403, "Forbidden: bot was blocked by the user")
    message = {
        "message_id": emu.next_message_id(),
        "from": emu.bot_user(),
        "chat": {"id": chat, "type": "private" if isinstance(chat, int) and chat > 0 else "group"},
        "date": int(emu.now()),
        "text": text,
    }
    emu.messages.append({**message, "params": dict(params.values)})
    return message


@bot_method("createInvoiceLink")
def create_invoice_link(emu: TelegramBotApiEmulator, params: Params) -> str:
    title = params.string("title") or ""
    description = params.string("description") or ""
    payload = params.string("payload") or ""
    currency = params.string("currency")
    prices = params.array("prices")
    provider_token = params.string("provider_token", required=False)
    period = params.integer("subscription_period", required=False)
    if not 1 <= len(title) <= 32:
        raise bad_request("invoice title must be 1-32 characters")  # guessed wording
    if not 1 <= len(description) <= 255:
        raise bad_request("invoice description must be 1-255 characters")  # guessed wording
    if not 1 <= len(payload.encode()) <= 128:
        raise bad_request("INVOICE_PAYLOAD_INVALID")
    if currency != CURRENCY or provider_token not in (None, ""):
        raise bad_request("PAYMENT_PROVIDER_INVALID")  # this emulator sells in Stars only
    if not prices or len(prices) != 1:
        raise bad_request("STARS_INVOICE_INVALID")  # XTR takes exactly one price (§4.1)
    price = prices[0]
    if not isinstance(price, dict) or not isinstance(price.get("label"), str):
        raise bad_request("can't parse prices JSON object")
    amount = price.get("amount")
    if not isinstance(amount, int) or isinstance(amount, bool) or amount < 1:
        raise bad_request("CURRENCY_TOTAL_AMOUNT_INVALID")
    if period is not None and period != SUBSCRIPTION_PERIOD:
        raise bad_request("SUBSCRIPTION_PERIOD_INVALID")
    if period is not None and amount > SUBSCRIPTION_MAX_STARS:
        raise bad_request("STARS_INVOICE_INVALID")  # guessed: subscriptions cost at most 10000 Stars
    invoice = Invoice(
        slug=emu.new_slug(),
        title=title,
        description=description,
        payload=payload,
        amount=amount,
        label=price["label"],
        subscription_period=period,
        created_at=emu.now(),
    )
    emu.invoices[invoice.slug] = invoice
    return invoice.link


@bot_method("answerPreCheckoutQuery")
def answer_pre_checkout_query(emu: TelegramBotApiEmulator, params: Params) -> bool:
    query_id = params.string("pre_checkout_query_id") or ""
    ok = params.boolean("ok")
    error_message = params.string("error_message", required=False)
    query = emu.queries.get(query_id)
    if query is None or query.answered_at is not None:
        raise bad_request(QUERY_TOO_OLD)
    if not ok and not error_message:
        raise bad_request("ERROR_MESSAGE_EMPTY")  # guessed; error_message is required with ok=false
    query.answered_at = emu.now()
    emu.wake(query_id)
    if query.answered_at - query.sent_at > emu.pre_checkout_timeout:
        query.late = True  # Telegram has already failed the payment
        raise bad_request(QUERY_TOO_OLD)
    query.ok, query.error_message = ok, error_message
    return True


@bot_method("refundStarPayment")
def refund_star_payment(emu: TelegramBotApiEmulator, params: Params) -> bool:
    user_id = params.integer("user_id")
    charge = emu.charges.get(params.string("telegram_payment_charge_id") or "")
    if charge is None or charge.user_id != user_id:
        raise bad_request("CHARGE_NOT_FOUND")
    if charge.refunded:
        raise bad_request("CHARGE_ALREADY_REFUNDED")
    if emu.balance < charge.amount:
        raise bad_request("BALANCE_TOO_LOW")  # guessed
    emu.refund_charge(charge, outbox=True)
    return True


@bot_method("editUserStarSubscription")
def edit_user_star_subscription(emu: TelegramBotApiEmulator, params: Params) -> bool:
    user_id = params.integer("user_id")
    charge_id = params.string("telegram_payment_charge_id") or ""
    is_canceled = params.boolean("is_canceled")
    subscription = emu.subscriptions.get(charge_id)  # keyed by the first charge id only
    if subscription is None or subscription.user_id != user_id:
        raise bad_request("CHARGE_ID_INVALID")  # guessed wording
    subscription.canceled = bool(is_canceled)
    return True


@bot_method("getStarTransactions")
def get_star_transactions(emu: TelegramBotApiEmulator, params: Params) -> dict[str, Any]:
    offset = params.integer("offset", required=False) or 0
    limit = params.integer("limit", required=False)
    limit = 100 if limit is None else limit
    if offset < 0 or not 1 <= limit <= 100:
        raise bad_request("invalid offset or limit")  # guessed wording
    return {"transactions": [dict(item) for item in emu.transactions[offset : offset + limit]]}


@bot_method("getMyStarBalance")
def get_my_star_balance(emu: TelegramBotApiEmulator, params: Params) -> dict[str, Any]:
    return {"amount": emu.balance}


# --------------------------------------------------------------------------------------------------------------
# The emulator


class TelegramBotApiEmulator:
    """One bot. `app` is the ASGI app to serve; everything else is for tests. Thread-safe: the server runs in
    another thread (harness.serve) while tests call `pay` and friends."""

    def __init__(
        self,
        token: str = DEFAULT_TOKEN,
        webhook_secret: str = DEFAULT_SECRET,
        *,
        webhook_url: str | None = None,
        bot_username: str = "vpnshop_emu_bot",
        pre_checkout_timeout: float = PRE_CHECKOUT_TIMEOUT,
    ) -> None:
        self.token = token
        self.webhook_secret = webhook_secret
        self.webhook_url = webhook_url
        self.base_url = ""  # where it is served, for whoever serves it to fill in (harness.serve yields it)
        self.bot_id = int(token.split(":", 1)[0]) if token.split(":", 1)[0].isdigit() else 7000000001
        self.bot_username = bot_username
        self.pre_checkout_timeout = pre_checkout_timeout
        self.clock_offset = 0.0
        self.balance = 0
        self.invoices: dict[str, Invoice] = {}  # by slug
        self.charges: dict[str, Charge] = {}  # by telegram_payment_charge_id
        self.subscriptions: dict[str, Subscription] = {}  # by first charge id
        self.queries: dict[str, PreCheckoutQuery] = {}  # pre-checkout queries by id
        self.transactions: list[dict[str, Any]] = []  # StarTransaction objects, chronological
        self.messages: list[dict[str, Any]] = []  # sent by the bot (sendMessage), with their params
        self.blocked_users: set[int | str] = set()
        self.updates: list[dict[str, Any]] = []  # every Update made, in order
        self.pending: deque[dict[str, Any]] = deque()  # Updates not yet delivered (getUpdates will drain it)
        self.requests: Counter[str] = Counter()  # Bot API calls by method name (faulted ones too)
        self.log: list[ApiCall] = []  # calls that reached a method, with their parameters
        self.deliveries: list[tuple[dict[str, Any], int | None]] = []  # webhook posts: (update, status)
        self._faults: list[Fault] = []
        self._outbox: list[dict[str, Any]] = []  # Updates made by API calls, to post once the call is answered
        self._tasks: set[asyncio.Task[Any]] = set()
        # pay_via_webhook waiting for an answer: query id -> (its loop, its event), set from the server's thread.
        self._waiters: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Event]] = {}
        self._ids = itertools.count(1)
        self._update_ids = itertools.count(100_000_001)
        self._lock = threading.RLock()
        self.app = build_app(self)

    def settings(self, base_url: str) -> dict[str, Any]:
        """The Settings overrides that point StarsProvider (and the bot) at this emulator."""
        return {
            "stars_enabled": True,
            "bot_token": self.token,
            "telegram_api_url": base_url,
            "bot_webhook_secret": self.webhook_secret,
        }

    # --- clock ---------------------------------------------------------------------------------------------

    def now(self) -> float:
        return time.time() + self.clock_offset

    def advance(self, seconds: float) -> None:
        """Move the emulator's clock (pre-checkout deadlines, dates in Updates)."""
        self.clock_offset += seconds

    # --- fault knobs ---------------------------------------------------------------------------------------

    def fail_next(
        self,
        status: int,
        retry_after: int | None = None,
        times: int = 1,
        *,
        method: str | None = None,
        description: str | None = None,
    ) -> None:
        """Answer the next `times` (matching) calls with `status` without doing anything; a 429 carries
        `parameters.retry_after` (1 s unless given) and "Too Many Requests: retry after N" as Telegram does."""
        if status == 429 and retry_after is None:
            retry_after = 1
        fault = Fault("status", times, method.lower() if method else None, status, retry_after, description)
        with self._lock:
            self._faults.append(fault)

    def delay_next(self, seconds: float, times: int = 1, *, method: str | None = None) -> None:
        """Carry out the next `times` (matching) calls, then hold the answer for `seconds` or until the client
        hangs up: a timeout after which the work is done, the case Telegram's CHARGE_ALREADY_REFUNDED is for."""
        with self._lock:
            self._faults.append(Fault("delay", times, method.lower() if method else None, seconds=seconds))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _take_fault(self, method: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.remaining > 0 and fault.method in (None, method):
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._faults.remove(fault)
                    return fault
        return None

    # --- inspection ----------------------------------------------------------------------------------------

    def calls(self, method: str | None = None) -> list[dict[str, Any]]:
        """The parameters of every call of `method` (any method when None) that reached the API, oldest first."""
        wanted = method.lower() if method else None
        with self._lock:
            return [call.params for call in self.log if wanted in (None, call.method.lower())]

    def invoice(self, ref: str) -> Invoice:
        """The invoice behind a link (https://t.me/$slug), a slug, or a payload (the newest with it)."""
        with self._lock:
            slug = ref.rsplit("$", 1)[-1].rsplit("/invoice/", 1)[-1]
            if slug in self.invoices:
                return self.invoices[slug]
            for invoice in reversed(self.invoices.values()):
                if invoice.payload == ref:
                    return invoice
        raise KeyError(f"no invoice {ref!r}")

    # --- the customer --------------------------------------------------------------------------------------

    def pre_checkout(
        self,
        invoice_link_or_payload: str,
        user_id: int = DEFAULT_USER_ID,
        *,
        amount: int | Decimal | None = None,
        currency: str | None = None,
    ) -> Delivery:
        """The customer pressed Pay: the pre_checkout_query Update; its id is in `queries` (and the body)."""
        with self._lock:
            invoice = self.invoice(invoice_link_or_payload)
            query = PreCheckoutQuery(
                query_id=str(10**15 + next(self._ids)),
                user_id=user_id,
                payload=invoice.payload,
                amount=stars(amount, invoice.amount),
                currency=currency or CURRENCY,
                sent_at=self.now(),
            )
            self.queries[query.query_id] = query
            body = {
                "id": query.query_id,
                "from": self.user(user_id),
                "currency": query.currency,
                "total_amount": query.amount,
                "invoice_payload": query.payload,
            }
            return self.delivery(self.new_update(pre_checkout_query=body))

    def pay(
        self,
        invoice_link_or_payload: str,
        *,
        user_id: int = DEFAULT_USER_ID,
        amount: int | Decimal | None = None,
        currency: str | None = None,
    ) -> Delivery:
        """The customer paid: a new charge (a new charge id on every call, as re-paying an old invoice gives),
        its Star transaction, and the successful_payment Update. `amount`/`currency` override what was paid
        (the wrong-amount knob; getStarTransactions then shows that amount too). A subscription invoice starts
        a subscription whose first charge is this one."""
        with self._lock:
            invoice = self.invoice(invoice_link_or_payload)
            now = int(self.now())
            period = invoice.subscription_period
            charge = Charge(
                charge_id=self.new_charge_id(),
                user_id=user_id,
                payload=invoice.payload,
                amount=stars(amount, invoice.amount),
                currency=currency or CURRENCY,
                date=now,
                subscription_period=period,
                is_first_recurring=period is not None,
                is_recurring=period is not None,
                expiration_date=now + period if period else None,
            )
            self.record_payment(charge)
            if period:
                self.subscriptions[charge.charge_id] = Subscription(
                    first_charge_id=charge.charge_id,
                    user_id=user_id,
                    payload=invoice.payload,
                    amount=charge.amount,
                    expires_at=charge.expiration_date or now,
                    charge_ids=[charge.charge_id],
                )
            return self.delivery(self.payment_update(charge))

    def renew(self, first_charge_id: str) -> Delivery:
        """Telegram renewed a subscription: a successful_payment with is_recurring, not is_first_recurring, a new
        charge id, the original payload and the next expiration date. A cancelled one does not renew."""
        with self._lock:
            subscription = self.subscriptions.get(first_charge_id)
            if subscription is None:
                raise KeyError(f"{first_charge_id!r} is not the first charge of a subscription")
            if subscription.canceled:
                raise RuntimeError(f"subscription {first_charge_id!r} was cancelled; Telegram would not renew it")
            subscription.expires_at += SUBSCRIPTION_PERIOD
            charge = Charge(
                charge_id=self.new_charge_id(),
                user_id=subscription.user_id,
                payload=subscription.payload,
                amount=subscription.amount,
                currency=CURRENCY,
                date=int(self.now()),
                subscription_period=SUBSCRIPTION_PERIOD,
                is_recurring=True,
                expiration_date=subscription.expires_at,
            )
            subscription.charge_ids.append(charge.charge_id)
            self.record_payment(charge)
            return self.delivery(self.payment_update(charge))

    def refund_delivery(self, charge_id: str) -> Delivery:
        """The refunded_payment Update of a charge; refunds it first (as refundStarPayment would) if needed."""
        with self._lock:
            charge = self.charges.get(charge_id)
            if charge is None:
                raise KeyError(f"no charge {charge_id!r}")
            if not charge.refunded:
                return self.delivery(self.refund_charge(charge, outbox=False))
            return self.delivery(self.new_update(message=self.service_message(charge.user_id, refund_body(charge))))

    def forged(self, delivery: Delivery) -> Delivery:
        """The same Update with a secret token that is not ours."""
        return delivery.with_header(SECRET_HEADER, "forged-" + secrets.token_urlsafe(16))

    # --- delivery to the bot's webhook ---------------------------------------------------------------------

    async def deliver(self, delivery: Delivery, *, attempts: int = 3) -> httpx.Response:
        """POST a delivery to `webhook_url`, retrying non-2xx answers as Telegram does."""
        if not self.webhook_url:
            raise RuntimeError("no webhook_url is set")
        update = json.loads(delivery.body)
        try:
            response = await post_delivery(self.webhook_url, delivery, attempts=attempts)
        except httpx.HTTPError:
            self.deliveries.append((update, None))
            raise
        self.deliveries.append((update, response.status_code))
        if response.is_success:
            with self._lock:
                if update in self.pending:
                    self.pending.remove(update)
        return response

    async def pay_via_webhook(
        self,
        invoice_link_or_payload: str,
        *,
        user_id: int = DEFAULT_USER_ID,
        amount: int | Decimal | None = None,
        currency: str | None = None,
    ) -> dict[str, Any]:
        """The whole flow (§10.3): post the pre_checkout_query, wait up to `pre_checkout_timeout` for the bot's
        answer, then post successful_payment if it said yes in time. Returns what happened."""
        query_delivery = self.pre_checkout(invoice_link_or_payload, user_id, amount=amount, currency=currency)
        query = self.queries[json.loads(query_delivery.body)["pre_checkout_query"]["id"]]
        answered = asyncio.Event()
        with self._lock:
            self._waiters[query.query_id] = (asyncio.get_running_loop(), answered)
        try:
            with contextlib.suppress(httpx.HTTPError):  # an unreachable bot simply never answers
                await self.deliver(query_delivery, attempts=1)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(answered.wait(), self.pre_checkout_timeout)
        finally:
            with self._lock:
                self._waiters.pop(query.query_id, None)
        result: dict[str, Any] = {"query_id": query.query_id}
        if query.answered_at is None:
            return result | {"status": "timeout"}
        if query.late:
            return result | {"status": "late"}
        if not query.ok:
            return result | {"status": "rejected", "error_message": query.error_message}
        delivery = self.pay(invoice_link_or_payload, user_id=user_id, amount=amount, currency=currency)
        charge_id = json.loads(delivery.body)["message"]["successful_payment"]["telegram_payment_charge_id"]
        try:
            status: int | None = (await self.deliver(delivery)).status_code
        except httpx.HTTPError:
            status = None  # the charge stands; Telegram would keep re-delivering the update
        return result | {"status": "paid", "charge_id": charge_id, "webhook_status": status}

    def wake(self, query_id: str) -> None:
        waiter = self._waiters.get(query_id)
        if waiter is not None:
            loop, event = waiter
            loop.call_soon_threadsafe(event.set)

    # --- building blocks (call with the lock held) ---------------------------------------------------------

    def new_slug(self) -> str:
        return secrets.token_urlsafe(12)

    def new_charge_id(self) -> str:
        return "stxEmu" + secrets.token_urlsafe(24).replace("-", "A").replace("_", "B")

    def next_message_id(self) -> int:
        return next(self._ids)

    def bot_user(self, *, full: bool = False) -> dict[str, Any]:
        user: dict[str, Any] = {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": "VPN Shop (emulated)",
            "username": self.bot_username,
        }
        if full:
            user |= {
                "can_join_groups": True,
                "can_read_all_group_messages": False,
                "supports_inline_queries": False,
                "can_connect_to_business": False,
                "has_main_web_app": False,
            }
        return user

    def user(self, user_id: int) -> dict[str, Any]:
        return {
            "id": user_id,
            "is_bot": False,
            "first_name": "Test",
            "last_name": f"User {user_id}",
            "username": f"user{user_id}",
            "language_code": "en",
        }

    def new_update(self, **content: Any) -> dict[str, Any]:
        update = {"update_id": next(self._update_ids), **content}
        self.updates.append(update)
        self.pending.append(update)
        return update

    def service_message(self, user_id: int, content: dict[str, Any]) -> dict[str, Any]:
        user = self.user(user_id)
        chat = {"id": user_id, "first_name": user["first_name"], "username": user["username"], "type": "private"}
        return {"message_id": self.next_message_id(), "from": user, "chat": chat, "date": int(self.now()), **content}

    def payment_update(self, charge: Charge) -> dict[str, Any]:
        payment: dict[str, Any] = {
            "currency": charge.currency,
            "total_amount": charge.amount,
            "invoice_payload": charge.payload,
            "telegram_payment_charge_id": charge.charge_id,
            "provider_payment_charge_id": "",  # guessed: Stars have no payment provider
        }
        if charge.is_recurring:
            payment |= {
                "subscription_expiration_date": charge.expiration_date,
                "is_recurring": True,
                "is_first_recurring": charge.is_first_recurring,
            }
        return self.new_update(message=self.service_message(charge.user_id, {"successful_payment": payment}))

    def record_payment(self, charge: Charge) -> None:
        self.charges[charge.charge_id] = charge
        self.balance += charge.amount
        source: dict[str, Any] = {
            "type": "user",
            "transaction_type": "invoice_payment",
            "user": self.user(charge.user_id),
            "invoice_payload": charge.payload,
        }
        if charge.subscription_period:
            source["subscription_period"] = charge.subscription_period
        self.transactions.append(
            {"id": charge.charge_id, "amount": charge.amount, "date": charge.date, "source": source}
        )

    def refund_charge(self, charge: Charge, *, outbox: bool) -> dict[str, Any]:
        """Refund a charge; returns its refunded_payment Update (queued for the webhook when `outbox`)."""
        charge.refunded = True
        self.balance -= charge.amount
        receiver = {
            "type": "user",
            "transaction_type": "invoice_payment",
            "user": self.user(charge.user_id),
            "invoice_payload": charge.payload,
        }
        self.transactions.append(
            {"id": charge.charge_id, "amount": charge.amount, "date": int(self.now()), "receiver": receiver}
        )
        update = self.new_update(message=self.service_message(charge.user_id, refund_body(charge)))
        if outbox:
            self._outbox.append(update)
        return update

    def delivery(self, update: dict[str, Any]) -> Delivery:
        body = json.dumps(update, separators=(",", ":"), ensure_ascii=False).encode()
        headers = {"content-type": "application/json", SECRET_HEADER: self.webhook_secret}
        return Delivery(body=body, headers=headers, peer_ip=TELEGRAM_IP)

    # --- serving -------------------------------------------------------------------------------------------

    async def call(self, token: str, method: str, request: Request) -> JSONResponse:
        key = method.lower()
        name, handler = METHODS.get(key, (method, None))
        self.requests[name] += 1
        fault = self._take_fault(key)
        if fault is not None and fault.kind == "status":
            return answer_error(fault_error(fault))
        if not same_secret(token, self.token):
            return answer_error(ApiError(401, "Unauthorized"))
        if handler is None:
            return answer_error(ApiError(404, "Not Found"))
        try:
            params = await read_params(request)
        except ApiError as exc:
            return answer_error(exc)
        with self._lock:
            self.log.append(ApiCall(name, dict(params.values), self.now()))
            try:
                response = JSONResponse({"ok": True, "result": handler(self, params)})
            except ApiError as exc:
                response = answer_error(exc)
            outbox, self._outbox = self._outbox, []
        if self.webhook_url:
            for update in outbox:
                task = asyncio.get_running_loop().create_task(self.deliver(self.delivery(update)))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        if fault is not None:  # a delay: the work is done, the answer comes late (or never)
            await hold(request, fault.seconds)
        return response


def stars(amount: int | Decimal | None, default: int) -> int:
    if amount is None:
        return default
    value = Decimal(amount)
    if value != value.to_integral_value():
        raise ValueError(f"{amount} is not a whole number of Stars")
    return int(value)


def refund_body(charge: Charge) -> dict[str, Any]:
    return {
        "refunded_payment": {
            "currency": CURRENCY,
            "total_amount": charge.amount,
            "invoice_payload": charge.payload,
            "telegram_payment_charge_id": charge.charge_id,
        }
    }


def same_secret(given: str, expected: str) -> bool:
    return secrets.compare_digest(given.encode(), expected.encode())


def fault_error(fault: Fault) -> ApiError:
    if fault.status == 429:
        retry_after = fault.retry_after if fault.retry_after is not None else 1
        description = fault.description or f"Too Many Requests: retry after {retry_after}"
        return ApiError(429, description, {"retry_after": retry_after})
    phrases = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}
    return ApiError(fault.status, fault.description or phrases.get(fault.status, f"Error {fault.status}"))


def answer_error(error: ApiError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.error_code)


async def read_params(request: Request) -> Params:
    values: dict[str, Any] = dict(request.query_params)
    content_type = request.headers.get("content-type", "")
    if "application/json" in content_type:
        body = await request.body()
        if body.strip():
            try:
                data = json.loads(body)
            except ValueError:
                raise bad_request("can't parse JSON object") from None  # guessed wording
            if not isinstance(data, dict):
                raise bad_request("can't parse JSON object")
            values.update(data)
    elif "form" in content_type:
        form = await request.form()
        values.update({key: value for key, value in form.items() if isinstance(value, str)})
    return Params(values)


async def hold(request: Request, seconds: float) -> None:
    """Wait `seconds`, or less if the client hangs up first (so a stopping server never waits long)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await request.is_disconnected():
            return
        await asyncio.sleep(0.02)


# --------------------------------------------------------------------------------------------------------------
# The ASGI app: the Bot API plus control endpoints


def build_app(emu: TelegramBotApiEmulator) -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    async def bot_api(request: Request) -> JSONResponse:
        return await emu.call(request.path_params["token"], request.path_params["method"], request)

    app.add_api_route("/bot{token}/{method}", bot_api, methods=["GET", "POST"])

    async def control_body(request: Request) -> dict[str, Any]:
        body = await request.body()
        data = json.loads(body) if body.strip() else {}
        return data if isinstance(data, dict) else {}

    async def pay(request: Request) -> JSONResponse:
        data = await control_body(request)
        ref = data.get("invoice_link") or data.get("invoice_slug") or data.get("payload")
        if not ref:
            return JSONResponse({"detail": "give invoice_link, invoice_slug or payload"}, status_code=422)
        if not emu.webhook_url:
            return JSONResponse({"detail": "set webhook_url first (PUT /_emu/tg/webhook)"}, status_code=409)
        try:
            emu.invoice(ref)
        except KeyError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=404)
        amount = data.get("amount")
        if amount is not None and (isinstance(amount, bool) or not isinstance(amount, int)):
            return JSONResponse({"detail": "amount must be a whole number of Stars"}, status_code=422)
        result = await emu.pay_via_webhook(
            ref, user_id=int(data.get("user_id") or DEFAULT_USER_ID), amount=amount, currency=data.get("currency")
        )
        return JSONResponse(result)

    async def renew(request: Request) -> JSONResponse:
        charge_id = request.path_params["charge_id"]
        if (await control_body(request)).get("lapse"):
            return JSONResponse({"status": "lapsed"})  # Telegram sends nothing when a renewal fails
        try:
            delivery = emu.renew(charge_id)
        except KeyError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=404)
        except RuntimeError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=409)
        return JSONResponse(await posted(delivery))

    async def refund(request: Request) -> JSONResponse:
        try:
            delivery = emu.refund_delivery(request.path_params["charge_id"])
        except KeyError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=404)
        return JSONResponse(await posted(delivery))

    async def posted(delivery: Delivery) -> dict[str, Any]:
        result: dict[str, Any] = {"update": json.loads(delivery.body)}
        if emu.webhook_url:
            result["webhook_status"] = (await emu.deliver(delivery)).status_code
        return result

    async def set_webhook(request: Request) -> JSONResponse:
        emu.webhook_url = (await control_body(request)).get("url") or None
        return JSONResponse({"url": emu.webhook_url})

    async def fail_next(request: Request) -> JSONResponse:
        data = await control_body(request)
        emu.fail_next(
            int(data.get("status", 500)),
            data.get("retry_after"),
            int(data.get("times", 1)),
            method=data.get("method"),
            description=data.get("description"),
        )
        return JSONResponse({"armed": True})

    async def delay_next(request: Request) -> JSONResponse:
        data = await control_body(request)
        emu.delay_next(float(data.get("seconds", 1.0)), int(data.get("times", 1)), method=data.get("method"))
        return JSONResponse({"armed": True})

    async def clear_faults(request: Request) -> JSONResponse:
        emu.clear_faults()
        return JSONResponse({"cleared": True})

    async def advance(request: Request) -> JSONResponse:
        emu.advance(float((await control_body(request)).get("seconds", 0)))
        return JSONResponse({"now": emu.now()})

    async def state(request: Request) -> JSONResponse:
        with emu._lock:
            return JSONResponse(
                {
                    "balance": emu.balance,
                    "requests": dict(emu.requests),
                    "invoices": [
                        {"link": i.link, "payload": i.payload, "amount": i.amount} for i in emu.invoices.values()
                    ],
                    "charges": [
                        {"charge_id": c.charge_id, "payload": c.payload, "amount": c.amount, "refunded": c.refunded}
                        for c in emu.charges.values()
                    ],
                    "queries": [
                        {"id": q.query_id, "payload": q.payload, "ok": q.ok, "late": q.late}
                        for q in emu.queries.values()
                    ],
                    "messages": len(emu.messages),
                    "pending_updates": len(emu.pending),
                }
            )

    app.add_api_route("/_emu/tg/pay", pay, methods=["POST"])
    app.add_api_route("/_emu/tg/subscriptions/{charge_id}/renew", renew, methods=["POST"])
    app.add_api_route("/_emu/tg/refunds/{charge_id}/deliver", refund, methods=["POST"])
    app.add_api_route("/_emu/tg/webhook", set_webhook, methods=["PUT"])
    app.add_api_route("/_emu/tg/faults/fail_next", fail_next, methods=["POST"])
    app.add_api_route("/_emu/tg/faults/delay_next", delay_next, methods=["POST"])
    app.add_api_route("/_emu/tg/faults", clear_faults, methods=["DELETE"])
    app.add_api_route("/_emu/tg/clock/advance", advance, methods=["POST"])
    app.add_api_route("/_emu/tg/state", state, methods=["GET"])
    return app
