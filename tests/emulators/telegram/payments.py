"""Telegram Stars (reference §4, §10.3): the payment methods, and the customer's side for tests.

  createInvoiceLink        XTR only, exactly one price, provider_token "" or absent, title 1-32 characters,
                           description 1-255, payload 1-128 bytes, subscription_period absent or 2592000 with a
                           price of at most 10000 Stars; returns https://t.me/$<slug>
  answerPreCheckoutQuery   records the answer and its time; an unknown, repeated or late (> 10 s) answer is a 400
  refundStarPayment        the first call refunds (a refunded_payment Update is queued, and posted to a webhook
                           once the call is answered); a repeat is 400 CHARGE_ALREADY_REFUNDED, an unknown charge
                           400 CHARGE_NOT_FOUND
  editUserStarSubscription the charge id must be a subscription's first charge, of that user
  getStarTransactions      chronological, offset/limit (1-100); a refund reuses its payment's id
  getMyStarBalance         payments add to the balance, refunds and paid broadcasts (0.1 Star each) take from it

The customer's side (`StarsCustomer`, mixed into the emulator) hands each Update back as the webhook `Delivery`
Telegram would send, without sending or queueing it: the test posts it (or `enqueue`s it for the bot to fetch).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import httpx

from tests.emulators.payments_common import Delivery
from tests.emulators.telegram.records import Charge, Invoice, PreCheckoutQuery, Subscription
from tests.emulators.telegram.wire import QUERY_TOO_OLD, Params, bad_request, bot_method

if TYPE_CHECKING:
    from tests.emulators.telegram.emulator import TelegramBotApiEmulator

CURRENCY = "XTR"
SUBSCRIPTION_PERIOD = 2592000
SUBSCRIPTION_MAX_STARS = 10_000
PRE_CHECKOUT_TIMEOUT = 10.0
DEFAULT_USER_ID = 424242


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
    return star_amount(emu.balance_tenths)


def star_amount(tenths: int) -> dict[str, Any]:
    """A StarAmount: whole Stars, plus nanostars when there is a fraction (same sign, as the Bot API says)."""
    sign = -1 if tenths < 0 else 1
    whole, fraction = divmod(abs(tenths), 10)
    amount: dict[str, Any] = {"amount": sign * whole}
    if fraction:
        amount["nanostar_amount"] = sign * fraction * 100_000_000
    return amount


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


def new_charge_id() -> str:
    return "stxEmu" + secrets.token_urlsafe(24).replace("-", "A").replace("_", "B")


class StarsCustomer:
    """The customer's and Telegram's side of Stars payments, mixed into TelegramBotApiEmulator (whose state and
    helpers these methods use). Every method is safe to call from any thread."""

    def invoice(self: Any, ref: str) -> Invoice:
        """The invoice behind a link (https://t.me/$slug), a slug, or a payload (the newest with it)."""
        with self._lock:
            slug = ref.rsplit("$", 1)[-1].rsplit("/invoice/", 1)[-1]
            if slug in self.invoices:
                return self.invoices[slug]
            for invoice in reversed(self.invoices.values()):
                if invoice.payload == ref:
                    return invoice
        raise KeyError(f"no invoice {ref!r}")

    def pre_checkout(
        self: Any,
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
                query_id=str(10**15 + self.next_message_id()),
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
        self: Any,
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
                charge_id=new_charge_id(),
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

    def renew(self: Any, first_charge_id: str) -> Delivery:
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
                charge_id=new_charge_id(),
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

    def refund_delivery(self: Any, charge_id: str) -> Delivery:
        """The refunded_payment Update of a charge; refunds it first (as refundStarPayment would) if needed."""
        with self._lock:
            charge = self.charges.get(charge_id)
            if charge is None:
                raise KeyError(f"no charge {charge_id!r}")
            if not charge.refunded:
                return self.delivery(self.refund_charge(charge, outbox=False))
            return self.delivery(self.new_update(message=self.service_message(charge.user_id, refund_body(charge))))

    async def pay_via_webhook(
        self: Any,
        invoice_link_or_payload: str,
        *,
        user_id: int = DEFAULT_USER_ID,
        amount: int | Decimal | None = None,
        currency: str | None = None,
    ) -> dict[str, Any]:
        """The whole flow (§10.3): post the pre_checkout_query, wait up to `pre_checkout_timeout` for the bot's
        answer, then post successful_payment if it said yes in time. Returns what happened. A successful_payment
        the webhook does not take is queued, so the webhook dispatcher keeps re-delivering it as Telegram does."""
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
            status = None
        if status is None or not 200 <= status < 300:
            self.enqueue(delivery)  # the charge stands; Telegram keeps re-delivering the update
        return result | {"status": "paid", "charge_id": charge_id, "webhook_status": status}

    def wake(self: Any, query_id: str) -> None:
        waiter = self._waiters.get(query_id)
        if waiter is not None:
            loop, event = waiter
            loop.call_soon_threadsafe(event.set)

    # --- building blocks (call with the lock held) ---------------------------------------------------------

    def payment_update(self: Any, charge: Charge) -> dict[str, Any]:
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

    def record_payment(self: Any, charge: Charge) -> None:
        self.charges[charge.charge_id] = charge
        self.balance_tenths += charge.amount * 10
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

    def refund_charge(self: Any, charge: Charge, *, outbox: bool) -> dict[str, Any]:
        """Refund a charge; returns its refunded_payment Update. With `outbox` (refundStarPayment) the Update is
        queued for the bot, held back until the API call has been answered; otherwise it is handed back."""
        charge.refunded = True
        self.balance_tenths -= charge.amount * 10
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
            self.queue.put(update, held=True)
            self._outbox.append(update["update_id"])
        return update
