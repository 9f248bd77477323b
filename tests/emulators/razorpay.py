"""An HTTP emulator of the Razorpay API (v1), written from shared/reference/payments_api.md §6 and §10.5.

Serve `RazorpayEmulator().app` with `tests.emulators.harness.serve`; point the adapter at it with
`settings(base_url)`. The API lives under `/v1` with HTTP Basic `key_id:key_secret`, integer paise (≥ 100) and the
`{"error": {"code": "BAD_REQUEST_ERROR", …}}` shape. It keeps orders, payment links, plans, subscriptions,
payments, refunds and subscription invoices in memory.

Tests play the customer and the dashboard through Python methods that change the stored objects and return the
webhook `Delivery` Razorpay would send (signed, with a fresh `X-Razorpay-Event-Id`), without sending it:
`pay_link`/`pay`, `fail`, `expire_link`/`expire`, `cancel_link`, `charge_subscription`, `halt_subscription`,
`cancel_subscription`, `refund`, `refund_delivery` (a subscription's first charge needs a mandate-capable method:
card, UPI AutoPay, e-mandate). `forged` and `signed_with_old_secret` re-sign a delivery;
`fail_next`/`delay_next` break the next API answers; `requests` counts calls per route and `log` keeps them.
The same actions are HTTP endpoints under `/_emu/razorpay/...`, which also POST the delivery to `webhook_url`
(retrying non-2xx `webhook_attempts` times; a delivery that never succeeds "disables" the webhook, as 24 h of
failures do at Razorpay).

Guesses beyond the reference (a sandbox must confirm): error descriptions other than the minimum-amount one, 401 for
bad keys, the refunds and invoices endpoints, duplicate `reference_id` refusal, the 15-minute `expire_by` minimum,
notes copied from a link or subscription onto its payments, and refusing `cancel_at_cycle_end: 1` before a
subscription is active.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import secrets
import string
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.routing import Match
from starlette.types import Receive, Scope, Send

from tests.emulators.asgi import read_body, replay, wait_for_disconnect
from tests.emulators.payments_common import Delivery, post_delivery

MIN_AMOUNT = 100
REFERENCE_LIMIT = 40
LINK_MIN_LIFETIME = 15 * 60
PLAN_PERIODS = ("daily", "weekly", "monthly", "yearly")
PERIOD_SECONDS = {"daily": 86400, "weekly": 7 * 86400, "monthly": 30 * 86400, "yearly": 365 * 86400}
CURRENCIES = ("INR",)
SUBSCRIPTION_CHARGEABLE = ("created", "authenticated", "active", "pending")
# A subscription is paid through a recurring mandate (§6.4): cards, UPI AutoPay and bank e-mandates can
# authorise one; wallets and plain netbanking cannot, so a customer with only those cannot pay a subscription
# at all (a payment link takes them).
MANDATE_METHODS = frozenset({"card", "upi", "emandate", "nach"})
ALPHABET = string.ascii_letters + string.digits


class RazorpayError(Exception):
    """An API refusal in Razorpay's shape."""

    def __init__(
        self,
        description: str,
        *,
        status: int = 400,
        field: str | None = None,
        code: str = "BAD_REQUEST_ERROR",
        reason: str = "input_validation_failed",
    ) -> None:
        super().__init__(description)
        self.status = status
        self.body = {
            "error": {
                "code": code,
                "description": description,
                "source": "business" if status < 500 else "NA",
                "step": "payment_initiation" if status < 500 else "NA",
                "reason": reason,
                "metadata": {},
                "field": field,
            }
        }


@dataclass(slots=True)
class Fault:
    kind: str  # "status" or "delay"
    remaining: int
    status: int = 500
    retry_after: int | None = None
    seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class Recorded:
    """One API request as received."""

    method: str
    route: str  # "POST /v1/payment_links/{link_id}/cancel"
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    json: Any = field(default=None)


def to_paise(amount: Decimal | str | int) -> int:
    """Rupees (as the shared contract passes them) to integer paise."""
    paise = Decimal(str(amount)) * 100
    if paise != paise.to_integral_value():
        raise ValueError(f"{amount} has more than two decimal places")
    return int(paise)


def new_id(prefix: str, length: int = 14) -> str:
    return f"{prefix}_{''.join(secrets.choice(ALPHABET) for _ in range(length))}"


class RazorpayEmulator:
    """The emulated account: `app` to serve, the stores, the knobs and the customer/dashboard actions."""

    def __init__(
        self,
        *,
        key_id: str = "rzp_test_emulator",
        key_secret: str = "emulator_key_secret",
        webhook_secret: str = "emulator_webhook_secret",
        previous_webhook_secret: str = "",
        webhook_url: str | None = None,
        webhook_attempts: int = 3,
    ) -> None:
        self.key_id = key_id
        self.key_secret = key_secret
        self.webhook_secret = webhook_secret
        self.previous_webhook_secret = previous_webhook_secret
        self.webhook_url = webhook_url
        self.webhook_attempts = webhook_attempts
        self.webhook_disabled = False
        self.account_id = new_id("acc")
        # "processed" refunds settle at once; "pending" ones wait for refund_delivery().
        self.refund_status = "processed"
        self.orders: dict[str, dict[str, Any]] = {}
        self.links: dict[str, dict[str, Any]] = {}
        self.plans: dict[str, dict[str, Any]] = {}
        self.subscriptions: dict[str, dict[str, Any]] = {}
        self.payments: dict[str, dict[str, Any]] = {}
        self.refunds: dict[str, dict[str, Any]] = {}
        self.invoices: dict[str, dict[str, Any]] = {}
        self.requests: Counter[str] = Counter()
        self.log: list[Recorded] = []
        self.deliveries: list[Delivery] = []
        self.clock_offset = 0.0
        self._cancel_at_cycle_end: set[str] = set()
        self._faults: list[Fault] = []
        self._lock = threading.RLock()
        self.api = build_api(self)

    # --- wiring ------------------------------------------------------------------------------------------------

    def settings(self, base_url: str) -> dict[str, Any]:
        """Settings overrides that point RazorpayProvider.from_settings at this emulator."""
        return {
            "razorpay_api_url": f"{base_url}/v1",
            "razorpay_key_id": self.key_id,
            "razorpay_key_secret": self.key_secret,
            "razorpay_webhook_secret": self.webhook_secret,
            "razorpay_previous_webhook_secret": self.previous_webhook_secret,
        }

    def now(self) -> int:
        return int(time.time() + self.clock_offset)

    def advance(self, seconds: float) -> None:
        """Move the emulated clock (links past `expire_by` read as expired)."""
        self.clock_offset += seconds

    # --- fault knobs and the request log ------------------------------------------------------------------------

    def fail_next(self, status: int, retry_after: int | None = None, times: int = 1) -> None:
        """Answer the next `times` API requests with `status` (429 carries Retry-After when given), untouched."""
        with self._lock:
            self._faults.append(Fault("status", times, status=status, retry_after=retry_after))

    def delay_next(self, seconds: float, times: int = 1) -> None:
        """Hold the next `times` API requests for `seconds` (or until the client hangs up), then carry them out."""
        with self._lock:
            self._faults.append(Fault("delay", times, seconds=seconds))

    def take_fault(self) -> Fault | None:
        with self._lock:
            if not self._faults:
                return None
            fault = self._faults[0]
            fault.remaining -= 1
            if fault.remaining <= 0:
                self._faults.pop(0)
            return fault

    def calls(self, route: str) -> list[Recorded]:
        """The logged requests to one route key, e.g. "POST /v1/payment_links", oldest first."""
        return [record for record in self.log if record.route == route]

    def last(self, route: str) -> Recorded:
        found = self.calls(route)
        assert found, f"no request to {route}; got {sorted(self.requests)}"
        return found[-1]

    # --- webhooks ----------------------------------------------------------------------------------------------

    def sign(self, body: bytes, secret: str | None = None) -> str:
        key = (secret if secret is not None else self.webhook_secret).encode()
        return hmac.new(key, body, hashlib.sha256).hexdigest()

    def event(self, name: str, entities: dict[str, dict[str, Any]]) -> Delivery:
        """A signed event envelope carrying `entities` ({"payment": {...}, ...}), recorded in `deliveries`."""
        envelope = {
            "entity": "event",
            "account_id": self.account_id,
            "event": name,
            "contains": list(entities),
            "payload": {key: {"entity": render(value)} for key, value in entities.items()},
            "created_at": self.now(),
        }
        body = json.dumps(envelope, separators=(",", ":")).encode()
        headers = {
            "content-type": "application/json",
            "user-agent": "Razorpay-Webhook/v1",
            "x-razorpay-signature": self.sign(body),
            # A redelivery is the same Delivery, so it carries the same id.
            "x-razorpay-event-id": new_id("evt")[4:],
        }
        delivery = Delivery(body=body, headers=headers)
        self.deliveries.append(delivery)
        return delivery

    def forged(self, delivery: Delivery) -> Delivery:
        """The same body signed with a secret we never gave anyone."""
        return delivery.with_header("x-razorpay-signature", self.sign(delivery.body, "not-the-webhook-secret"))

    def signed_with_old_secret(self, delivery: Delivery) -> Delivery:
        """The same body signed with `previous_webhook_secret`, as retries after a secret rotation are."""
        if not self.previous_webhook_secret:
            raise ValueError("construct the emulator with previous_webhook_secret=... first")
        return delivery.with_header("x-razorpay-signature", self.sign(delivery.body, self.previous_webhook_secret))

    async def deliver(self, delivery: Delivery) -> int | None:
        """POST a delivery to `webhook_url` as Razorpay does; returns the final status (None: not sent)."""
        if not self.webhook_url or self.webhook_disabled:
            return None
        response = await post_delivery(self.webhook_url, delivery, attempts=self.webhook_attempts)
        if not response.is_success:
            self.webhook_disabled = True
        return response.status_code

    def enable_webhook(self) -> None:
        self.webhook_disabled = False

    # --- lookups -----------------------------------------------------------------------------------------------

    def link(self, ref: str) -> dict[str, Any]:
        """A payment link by its id or by our reference_id (the newest one)."""
        with self._lock:
            if ref in self.links:
                return self.refresh_link(self.links[ref])
            found = [link for link in self.links.values() if link["reference_id"] == ref]
            if not found:
                raise KeyError(f"no payment link {ref!r}")
            return self.refresh_link(max(found, key=lambda link: link["created_at"]))

    def subscription(self, ref: str) -> dict[str, Any]:
        """A subscription by its id or by the order_id in its notes (the newest one)."""
        with self._lock:
            if ref in self.subscriptions:
                return self.subscriptions[ref]
            found = [sub for sub in self.subscriptions.values() if sub["notes"].get("order_id") == ref]
            if not found:
                raise KeyError(f"no subscription {ref!r}")
            return max(found, key=lambda sub: sub["created_at"])

    def payment(self, ref: str) -> dict[str, Any]:
        """A payment by its id, or the captured payment of a link / the last charge of a subscription."""
        with self._lock:
            if ref in self.payments:
                return self.payments[ref]
            try:
                link = self.link(ref)
            except KeyError:
                sub = self.subscription(ref)
                charges = [p for p in self.payments.values() if p.get("_subscription_id") == sub["id"]]
                if not charges:
                    raise KeyError(f"subscription {ref!r} has no charge") from None
                return charges[-1]
            if not link["payments"]:
                raise KeyError(f"payment link {ref!r} has no payment")
            return self.payments[link["payments"][-1]["payment_id"]]

    def refresh_link(self, link: dict[str, Any]) -> dict[str, Any]:
        if link["status"] in ("created", "partially_paid") and link["expire_by"] and link["expire_by"] <= self.now():
            link.update(status="expired", expired_at=link["expire_by"], updated_at=self.now())
        return link

    # --- the customer and the dashboard ------------------------------------------------------------------------

    def pay_link(
        self, ref: str, *, amount: Decimal | str | None = None, currency: str | None = None, method: str = "upi"
    ) -> Delivery:
        """The customer pays a link (by plink id or reference_id); `amount` (rupees) / `currency` override what
        is charged, and the link's `amount_paid` / `currency` then say the same. Returns payment_link.paid."""
        with self._lock:
            link = self.link(ref)
            if link["status"] != "created":
                raise ValueError(f"payment link {link['id']} is {link['status']}, not payable")
            paid = link["amount"] if amount is None else to_paise(amount)
            paid_currency = currency or link["currency"]
            order = self.new_order(paid, paid_currency, link["reference_id"], link["notes"], status="paid")
            payment = self.new_payment(paid, paid_currency, method, notes=link["notes"], order_id=order["id"])
            link.update(
                status="paid",
                amount_paid=paid,
                currency=paid_currency,
                order_id=order["id"],
                updated_at=self.now(),
                payments=[
                    {
                        "amount": paid,
                        "created_at": payment["created_at"],
                        "method": method,
                        "payment_id": payment["id"],
                        "plink_id": link["id"],
                        "status": "captured",
                        "updated_at": payment["created_at"],
                    }
                ],
            )
            return self.event("payment_link.paid", {"payment_link": link, "order": order, "payment": payment})

    def pay(
        self,
        ref: str,
        *,
        amount: Decimal | str | None = None,
        currency: str | None = None,
        method: str = "upi",
        **_: Any,
    ) -> Delivery:
        """The shared contract's "customer pays": a link (pay_link), or a subscription's next charge."""
        with self._lock:
            try:
                self.link(ref)
            except KeyError:
                return self.charge_subscription(ref, amount=amount)
            return self.pay_link(ref, amount=amount, currency=currency, method=method)

    def fail(self, ref: str, *, reason: str = "Payment was declined by the bank") -> Delivery:
        """A failed attempt on a link (the link stays payable). Returns payment.failed."""
        with self._lock:
            link = self.link(ref)
            payment = self.new_payment(link["amount"], link["currency"], "card", notes=link["notes"])
            payment.update(
                status="failed",
                captured=False,
                error_code="BAD_REQUEST_ERROR",
                error_description=reason,
                error_source="bank",
                error_step="payment_authorization",
                error_reason="payment_declined",
            )
            return self.event("payment.failed", {"payment": payment})

    def expire_link(self, ref: str) -> Delivery:
        """The link's expire_by passed. Returns payment_link.expired."""
        with self._lock:
            link = self.link(ref)
            link.update(status="expired", expired_at=self.now(), updated_at=self.now())
            return self.event("payment_link.expired", {"payment_link": link})

    expire = expire_link

    def cancel_link(self, ref: str) -> Delivery:
        with self._lock:
            link = self.link(ref)
            link.update(status="cancelled", cancelled_at=self.now(), updated_at=self.now())
            return self.event("payment_link.cancelled", {"payment_link": link})

    cancel = cancel_link

    def charge_subscription(self, ref: str, *, amount: Decimal | str | None = None, method: str = "card") -> Delivery:
        """One billing cycle (the first call is the authorisation charge, later ones renewals; paid_count grows).
        Returns subscription.charged; for a subscription cancelled at cycle end, subscription.cancelled instead."""
        with self._lock:
            sub = self.subscription(ref)
            if sub["id"] in self._cancel_at_cycle_end and sub["paid_count"] > 0:
                self._cancel_at_cycle_end.discard(sub["id"])
                sub.update(status="cancelled", ended_at=self.now())
                return self.event("subscription.cancelled", {"subscription": sub})
            if sub["status"] not in SUBSCRIPTION_CHARGEABLE:
                raise ValueError(f"subscription {sub['id']} is {sub['status']}, not chargeable")
            if sub["paid_count"] == 0 and method not in MANDATE_METHODS:
                raise ValueError(f"subscription {sub['id']}: {method} cannot authorise a recurring mandate")
            item = self.plans[sub["plan_id"]]["item"]
            paid = item["amount"] if amount is None else to_paise(amount)
            now = self.now()
            invoice_id = new_id("inv")
            payment = self.new_payment(paid, item["currency"], method, notes=sub["notes"], invoice_id=invoice_id)
            payment["_subscription_id"] = sub["id"]
            self.invoices[invoice_id] = {
                "id": invoice_id,
                "entity": "invoice",
                "subscription_id": sub["id"],
                "payment_id": payment["id"],
                "status": "paid",
                "amount": paid,
                "amount_paid": paid,
                "currency": item["currency"],
                "billing_start": now,
                "billing_end": now + self.cycle_seconds(sub),
                "paid_at": now,
                "created_at": now,
            }
            sub["paid_count"] += 1
            sub["remaining_count"] = max(0, sub["total_count"] - sub["paid_count"])
            sub.update(
                status="completed" if sub["remaining_count"] == 0 else "active",
                current_start=now,
                current_end=now + self.cycle_seconds(sub),
                charge_at=now + self.cycle_seconds(sub),
                ended_at=now if sub["remaining_count"] == 0 else None,
            )
            return self.event("subscription.charged", {"subscription": sub, "payment": payment})

    def halt_subscription(self, ref: str) -> Delivery:
        """Renewal retries ran out. Returns subscription.halted."""
        with self._lock:
            sub = self.subscription(ref)
            sub.update(status="halted")
            return self.event("subscription.halted", {"subscription": sub})

    def cancel_subscription(self, ref: str) -> Delivery:
        """Cancelled at once from the dashboard. Returns subscription.cancelled."""
        with self._lock:
            sub = self.subscription(ref)
            sub.update(status="cancelled", ended_at=self.now())
            return self.event("subscription.cancelled", {"subscription": sub})

    def refund(self, ref: str, *, amount: Decimal | str | None = None) -> Delivery:
        """A refund (in rupees; all that is left by default) made from the dashboard: no notes, no receipt.
        Returns refund.processed."""
        with self._lock:
            paise = None if amount is None else to_paise(amount)
            refund = self.new_refund(self.payment(ref), paise, receipt=None, notes={}, status="processed")
            return self.refund_delivery(refund["id"])

    def refund_delivery(self, refund_ref: str) -> Delivery:
        """refund.processed for a stored refund (by refund id, or the last refund of a payment/link), settling a
        pending one first."""
        with self._lock:
            refund = self.refunds.get(refund_ref)
            if refund is None:
                payment_id = self.payment(refund_ref)["id"]
                mine = [r for r in self.refunds.values() if r["payment_id"] == payment_id]
                if not mine:
                    raise KeyError(f"no refund for {refund_ref!r}")
                refund = mine[-1]
            refund["status"] = "processed"
            return self.event("refund.processed", {"refund": refund, "payment": self.payments[refund["payment_id"]]})

    def callback_query(self, ref: str) -> dict[str, str]:
        """The query string the customer's browser brings back to callback_url after paying a link (§6.3)."""
        with self._lock:
            link = self.link(ref)
            payment_id = link["payments"][-1]["payment_id"] if link["payments"] else ""
            message = f"{link['id']}|{link['reference_id']}|{link['status']}|{payment_id}"
            return {
                "razorpay_payment_id": payment_id,
                "razorpay_payment_link_id": link["id"],
                "razorpay_payment_link_reference_id": link["reference_id"],
                "razorpay_payment_link_status": link["status"],
                "razorpay_signature": self.sign(message.encode(), self.key_secret),
            }

    # --- records -----------------------------------------------------------------------------------------------

    def cycle_seconds(self, sub: dict[str, Any]) -> int:
        plan = self.plans[sub["plan_id"]]
        return PERIOD_SECONDS[plan["period"]] * plan["interval"]

    def new_order(
        self, amount: int, currency: str, receipt: str | None, notes: dict[str, str], *, status: str = "created"
    ) -> dict[str, Any]:
        paid = amount if status == "paid" else 0
        order = {
            "id": new_id("order"),
            "entity": "order",
            "amount": amount,
            "amount_paid": paid,
            "amount_due": amount - paid,
            "currency": currency,
            "receipt": receipt,
            "offer_id": None,
            "status": status,
            "attempts": 1 if paid else 0,
            "notes": dict(notes),
            "created_at": self.now(),
        }
        self.orders[order["id"]] = order
        return order

    def new_payment(
        self,
        amount: int,
        currency: str,
        method: str,
        *,
        notes: dict[str, str],
        order_id: str | None = None,
        invoice_id: str | None = None,
    ) -> dict[str, Any]:
        payment = {
            "id": new_id("pay"),
            "entity": "payment",
            "amount": amount,
            "currency": currency,
            "status": "captured",
            "order_id": order_id,
            "invoice_id": invoice_id,
            "international": False,
            "method": method,
            "amount_refunded": 0,
            "refund_status": None,
            "captured": True,
            "description": None,
            "card_id": None,
            "bank": None,
            "wallet": None,
            "vpa": "success@razorpay" if method == "upi" else None,
            "email": "void@razorpay.com",
            "contact": "+919999999999",
            "notes": dict(notes),
            "fee": amount * 2 // 100,
            "tax": 0,
            "error_code": None,
            "error_description": None,
            "error_source": None,
            "error_step": None,
            "error_reason": None,
            "acquirer_data": {},
            "created_at": self.now(),
        }
        self.payments[payment["id"]] = payment
        return payment

    def new_refund(
        self,
        payment: dict[str, Any],
        amount: int | None,
        *,
        receipt: str | None,
        notes: dict[str, str],
        status: str,
    ) -> dict[str, Any]:
        """Refund part or all of a captured payment, or raise the RazorpayError the API would answer."""
        if payment["status"] == "refunded":
            raise RazorpayError("The payment has been fully refunded already", field="payment_id")
        if payment["status"] != "captured":
            raise RazorpayError("Only captured payments can be refunded", field="payment_id")
        left = payment["amount"] - payment["amount_refunded"]
        amount = left if amount is None else amount
        if amount > left:
            raise RazorpayError("The refund amount provided is greater than amount captured", field="amount")
        refund = {
            "id": new_id("rfnd"),
            "entity": "refund",
            "amount": amount,
            "currency": payment["currency"],
            "payment_id": payment["id"],
            "notes": dict(notes),
            "receipt": receipt,
            "acquirer_data": {"arn": None},
            "created_at": self.now(),
            "batch_id": None,
            "status": status,
            "speed_processed": "normal",
            "speed_requested": "normal",
        }
        self.refunds[refund["id"]] = refund
        payment["amount_refunded"] += amount
        full = payment["amount_refunded"] >= payment["amount"]
        payment.update(refund_status="full" if full else "partial", status="refunded" if full else "captured")
        return refund

    # --- the ASGI entry point ----------------------------------------------------------------------------------

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI app: counts and logs API requests and applies armed faults before Razorpay's logic."""
        if scope["type"] != "http" or scope["path"].startswith("/_emu/"):
            await self.api(scope, receive, send)
            return
        body = await read_body(receive)
        route = self.route_key(scope)
        with self._lock:
            self.requests[route] += 1
            self.log.append(record(scope, route, body))
        fault = self.take_fault()
        if fault is not None and fault.kind == "status":
            await send_fault(send, fault)
            return
        if fault is not None:
            await wait_for_disconnect(receive, fault.seconds)
        await self.api(scope, replay(body, receive), send)

    def route_key(self, scope: Scope) -> str:
        for route in self.api.router.routes:
            match, _ = route.matches(scope)
            if match is Match.FULL:
                return f"{scope['method']} {getattr(route, 'path', scope['path'])}"
        return f"{scope['method']} {scope['path']}"


# --------------------------------------------------------------------------------------------------------------
# Validation


def json_object(raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw or b"{}")
    except ValueError:
        raise RazorpayError("The request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise RazorpayError("The request body must be a JSON object")
    return data


def amount_field(data: dict[str, Any], name: str = "amount", *, minimum: int = MIN_AMOUNT) -> int:
    value = data.get(name)
    if value is None:
        raise RazorpayError(f"The {name} field is required.", field=name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise RazorpayError(f"The {name} must be an integer.", field=name)
    if value < minimum:
        raise RazorpayError("The amount must be at least INR 1.00", field=name)
    return value


def currency_field(data: dict[str, Any]) -> str:
    currency = data.get("currency", "INR")
    if currency not in CURRENCIES:
        raise RazorpayError("Currency is not supported", field="currency")
    return currency


def text_field(data: dict[str, Any], name: str, limit: int, *, required: bool = False) -> str | None:
    value = data.get(name)
    if value is None:
        if required:
            raise RazorpayError(f"The {name} field is required.", field=name)
        return None
    if not isinstance(value, str):
        raise RazorpayError(f"The {name} must be a string.", field=name)
    if len(value) > limit:
        raise RazorpayError(f"The {name} may not be greater than {limit} characters.", field=name)
    return value


def notes_field(data: dict[str, Any]) -> dict[str, str]:
    notes = data.get("notes")
    if notes is None or notes == []:
        return {}
    if not isinstance(notes, dict):
        raise RazorpayError("The notes must be an object.", field="notes")
    if len(notes) > 15:
        raise RazorpayError("The notes may not have more than 15 items.", field="notes")
    for key, value in notes.items():
        if not isinstance(value, str | int) or len(str(value)) > 256:
            raise RazorpayError(f"The notes.{key} may not be greater than 256 characters.", field="notes")
    return {str(k): str(v) for k, v in notes.items()}


def flag_field(data: dict[str, Any], name: str, default: bool) -> bool:
    value = data.get(name, default)
    if value in (True, False, 0, 1, "0", "1"):
        return value in (True, 1, "1")
    raise RazorpayError(f"The {name} field must be a boolean.", field=name)


def render(entity: dict[str, Any]) -> dict[str, Any]:
    """An entity as Razorpay writes it: private keys dropped, empty notes as [] (a PHP empty array)."""
    out = {key: copy.deepcopy(value) for key, value in entity.items() if not key.startswith("_")}
    if "notes" in out and not out["notes"]:
        out["notes"] = []
    return out


# --------------------------------------------------------------------------------------------------------------
# Routes


def build_api(emu: RazorpayEmulator) -> FastAPI:
    api = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @api.exception_handler(RazorpayError)
    async def refusal(_: Request, exc: RazorpayError) -> JSONResponse:
        return JSONResponse(exc.body, status_code=exc.status)

    def authenticate(request: Request) -> None:
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        try:
            key_id, _, key_secret = base64.b64decode(encoded).partition(b":")
        except ValueError:
            key_id = key_secret = b""
        good_id = hmac.compare_digest(key_id, emu.key_id.encode())
        good = good_id & hmac.compare_digest(key_secret, emu.key_secret.encode())
        if scheme.lower() != "basic" or not good:
            raise RazorpayError("Authentication failed", status=401, reason="NA")

    async def body_of(request: Request) -> dict[str, Any]:
        authenticate(request)
        return json_object(await request.body())

    def found(store: dict[str, dict[str, Any]], entity_id: str) -> dict[str, Any]:
        if entity_id not in store:
            raise RazorpayError("The id provided does not exist", field="id")
        return store[entity_id]

    def answer(entity: dict[str, Any]) -> JSONResponse:
        return JSONResponse(render(entity))

    def collection(items: list[dict[str, Any]]) -> JSONResponse:
        return JSONResponse({"entity": "collection", "count": len(items), "items": [render(i) for i in items]})

    # --- orders ---

    @api.post("/v1/orders")
    async def create_order(request: Request) -> JSONResponse:
        data = await body_of(request)
        with emu._lock:
            amount, currency = amount_field(data), currency_field(data)
            receipt = text_field(data, "receipt", REFERENCE_LIMIT)
            return answer(emu.new_order(amount, currency, receipt, notes_field(data)))

    @api.get("/v1/orders/{order_id}")
    async def get_order(order_id: str, request: Request) -> JSONResponse:
        authenticate(request)
        return answer(found(emu.orders, order_id))

    # --- payment links ---

    @api.post("/v1/payment_links")
    async def create_link(request: Request) -> JSONResponse:
        data = await body_of(request)
        with emu._lock:
            amount, currency = amount_field(data), currency_field(data)
            reference = text_field(data, "reference_id", REFERENCE_LIMIT)
            description = text_field(data, "description", 2048)
            callback_url = text_field(data, "callback_url", 2048)
            callback_method = text_field(data, "callback_method", 10)
            if callback_url and callback_method != "get":
                raise RazorpayError("callback_method should be get when callback_url is set", field="callback_method")
            expire_by = data.get("expire_by")
            if expire_by is not None:
                if isinstance(expire_by, bool) or not isinstance(expire_by, int):
                    raise RazorpayError("The expire by must be an integer.", field="expire_by")
                if expire_by < emu.now() + LINK_MIN_LIFETIME:
                    raise RazorpayError(
                        "The expire by date should be at least 15 minutes after current time", field="expire_by"
                    )
            if reference and any(link["reference_id"] == reference for link in emu.links.values()):
                raise RazorpayError(f"Payment Link with reference id {reference} already exists", field="reference_id")
            now = emu.now()
            link = {
                "id": new_id("plink"),
                "accept_partial": flag_field(data, "accept_partial", False),
                "amount": amount,
                "amount_paid": 0,
                "callback_method": callback_method or "",
                "callback_url": callback_url or "",
                "cancelled_at": 0,
                "created_at": now,
                "currency": currency,
                "customer": data.get("customer") or {},
                "description": description or "",
                "expire_by": expire_by or 0,
                "expired_at": 0,
                "first_min_partial_amount": 0,
                "notes": notes_field(data),
                "notify": data.get("notify") or {"email": False, "sms": False},
                "order_id": "",
                "payments": None,
                "reference_id": reference or "",
                "reminder_enable": flag_field(data, "reminder_enable", False),
                "reminders": [],
                "short_url": f"https://rzp.io/i/{new_id('x', 9)[2:]}",
                "status": "created",
                "updated_at": now,
                "upi_link": False,
                "user_id": "",
            }
            emu.links[link["id"]] = link
            return answer(link)

    @api.get("/v1/payment_links")
    async def list_links(request: Request) -> JSONResponse:
        authenticate(request)
        reference = request.query_params.get("reference_id")
        with emu._lock:
            links = [emu.refresh_link(link) for link in emu.links.values()]
            if reference is not None:
                links = [link for link in links if link["reference_id"] == reference]
            return JSONResponse({"payment_links": [render(link) for link in reversed(links)]})

    @api.get("/v1/payment_links/{link_id}")
    async def get_link(link_id: str, request: Request) -> JSONResponse:
        authenticate(request)
        with emu._lock:
            return answer(emu.refresh_link(found(emu.links, link_id)))

    @api.post("/v1/payment_links/{link_id}/cancel")
    async def cancel_link(link_id: str, request: Request) -> JSONResponse:
        authenticate(request)
        with emu._lock:
            link = emu.refresh_link(found(emu.links, link_id))
            if link["status"] != "created":
                raise RazorpayError(f"Payment Link cannot be cancelled in {link['status']} status")
            link.update(status="cancelled", cancelled_at=emu.now(), updated_at=emu.now())
            return answer(link)

    # --- plans and subscriptions ---

    @api.post("/v1/plans")
    async def create_plan(request: Request) -> JSONResponse:
        data = await body_of(request)
        with emu._lock:
            period = data.get("period")
            if period not in PLAN_PERIODS:
                raise RazorpayError("The period must be one of daily, weekly, monthly, yearly", field="period")
            interval = data.get("interval")
            if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
                raise RazorpayError("The interval must be an integer of at least 1.", field="interval")
            if period == "daily" and interval < 7:
                raise RazorpayError("The interval for daily plans must be at least 7.", field="interval")
            item = data.get("item")
            if not isinstance(item, dict):
                raise RazorpayError("The item field is required.", field="item")
            name = text_field(item, "name", 256, required=True)
            amount, currency = amount_field(item), currency_field(item)
            plan = {
                "id": new_id("plan"),
                "entity": "plan",
                "interval": interval,
                "period": period,
                "item": {
                    "id": new_id("item"),
                    "active": True,
                    "name": name,
                    "description": item.get("description"),
                    "amount": amount,
                    "unit_amount": amount,
                    "currency": currency,
                    "type": "plan",
                    "created_at": emu.now(),
                },
                "notes": notes_field(data),
                "created_at": emu.now(),
            }
            emu.plans[plan["id"]] = plan
            return answer(plan)

    @api.get("/v1/plans/{plan_id}")
    async def get_plan(plan_id: str, request: Request) -> JSONResponse:
        authenticate(request)
        return answer(found(emu.plans, plan_id))

    @api.post("/v1/subscriptions")
    async def create_subscription(request: Request) -> JSONResponse:
        data = await body_of(request)
        with emu._lock:
            plan = found(emu.plans, str(data.get("plan_id") or ""))
            total = data.get("total_count")
            if isinstance(total, bool) or not isinstance(total, int) or total < 1:
                raise RazorpayError("The total count must be an integer of at least 1.", field="total_count")
            quantity = data.get("quantity", 1)
            if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1:
                raise RazorpayError("The quantity must be an integer of at least 1.", field="quantity")
            now = emu.now()
            sub = {
                "id": new_id("sub"),
                "entity": "subscription",
                "plan_id": plan["id"],
                "customer_id": None,
                "status": "created",
                "current_start": None,
                "current_end": None,
                "ended_at": None,
                "quantity": quantity,
                "notes": notes_field(data),
                "charge_at": data.get("start_at") or now,
                "start_at": data.get("start_at") or now,
                "end_at": now + total * PERIOD_SECONDS[plan["period"]] * plan["interval"],
                "auth_attempts": 0,
                "total_count": total,
                "paid_count": 0,
                "customer_notify": flag_field(data, "customer_notify", True),
                "created_at": now,
                "expire_by": data.get("expire_by"),
                "short_url": f"https://rzp.io/i/{new_id('x', 9)[2:]}",
                "has_scheduled_changes": False,
                "change_scheduled_at": None,
                "source": "api",
                "remaining_count": total,
            }
            emu.subscriptions[sub["id"]] = sub
            return answer(sub)

    @api.get("/v1/subscriptions/{sub_id}")
    async def get_subscription(sub_id: str, request: Request) -> JSONResponse:
        authenticate(request)
        return answer(found(emu.subscriptions, sub_id))

    @api.post("/v1/subscriptions/{sub_id}/cancel")
    async def cancel_subscription(sub_id: str, request: Request) -> JSONResponse:
        data = await body_of(request)
        with emu._lock:
            sub = found(emu.subscriptions, sub_id)
            at_cycle_end = flag_field(data, "cancel_at_cycle_end", False)
            if sub["status"] in ("cancelled", "completed", "expired"):
                raise RazorpayError(f"Subscription is not cancellable in {sub['status']} status.")
            if at_cycle_end and sub["status"] != "active":
                raise RazorpayError(
                    f"Subscription cannot be cancelled at cycle end in {sub['status']} status.",
                    field="cancel_at_cycle_end",
                )
            if at_cycle_end:
                emu._cancel_at_cycle_end.add(sub_id)
                sub.update(has_scheduled_changes=True, change_scheduled_at=sub["current_end"])
                return answer(sub)
            sub.update(status="cancelled", ended_at=emu.now())
            delivery = emu.event("subscription.cancelled", {"subscription": sub})
        await emu.deliver(delivery)
        return answer(sub)

    @api.get("/v1/invoices")
    async def list_invoices(request: Request) -> JSONResponse:
        authenticate(request)
        wanted = request.query_params.get("subscription_id")
        with emu._lock:
            items = [i for i in emu.invoices.values() if wanted is None or i["subscription_id"] == wanted]
            return collection(items)

    # --- payments and refunds ---

    @api.get("/v1/payments/{payment_id}")
    async def get_payment(payment_id: str, request: Request) -> JSONResponse:
        authenticate(request)
        return answer(found(emu.payments, payment_id))

    @api.post("/v1/payments/{payment_id}/refund")
    async def refund_payment(payment_id: str, request: Request) -> JSONResponse:
        data = await body_of(request)
        with emu._lock:
            payment = found(emu.payments, payment_id)
            amount = amount_field(data, minimum=1) if "amount" in data else None
            receipt = text_field(data, "receipt", REFERENCE_LIMIT)
            refund = emu.new_refund(payment, amount, receipt=receipt, notes=notes_field(data), status=emu.refund_status)
            return answer(refund)

    @api.get("/v1/payments/{payment_id}/refunds")
    async def list_refunds(payment_id: str, request: Request) -> JSONResponse:
        authenticate(request)
        with emu._lock:
            found(emu.payments, payment_id)
            return collection([r for r in emu.refunds.values() if r["payment_id"] == payment_id])

    # --- control endpoints (no auth, no faults) ---

    async def control(action: Any, *args: Any, **kwargs: Any) -> JSONResponse:
        try:
            delivery = action(*args, **kwargs)
        except (KeyError, ValueError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=409)
        status = await emu.deliver(delivery)
        return JSONResponse(
            {
                "event_id": delivery.headers["x-razorpay-event-id"],
                "delivered_status": status,
                "event": json.loads(delivery.body),
            }
        )

    async def options(request: Request) -> dict[str, Any]:
        raw = await request.body()
        return json.loads(raw) if raw else {}

    @api.post("/_emu/razorpay/payment_links/{ref}/pay")
    async def emu_pay(ref: str, request: Request) -> JSONResponse:
        return await control(emu.pay_link, ref, **(await options(request)))

    @api.post("/_emu/razorpay/payment_links/{ref}/fail")
    async def emu_fail(ref: str) -> JSONResponse:
        return await control(emu.fail, ref)

    @api.post("/_emu/razorpay/payment_links/{ref}/expire")
    async def emu_expire(ref: str) -> JSONResponse:
        return await control(emu.expire_link, ref)

    @api.post("/_emu/razorpay/payment_links/{ref}/cancel")
    async def emu_cancel(ref: str) -> JSONResponse:
        return await control(emu.cancel_link, ref)

    @api.post("/_emu/razorpay/subscriptions/{ref}/charge")
    async def emu_charge(ref: str, request: Request) -> JSONResponse:
        return await control(emu.charge_subscription, ref, **(await options(request)))

    @api.post("/_emu/razorpay/subscriptions/{ref}/halt")
    async def emu_halt(ref: str) -> JSONResponse:
        return await control(emu.halt_subscription, ref)

    @api.post("/_emu/razorpay/subscriptions/{ref}/cancel")
    async def emu_cancel_subscription(ref: str) -> JSONResponse:
        return await control(emu.cancel_subscription, ref)

    @api.post("/_emu/razorpay/payments/{ref}/refund")
    async def emu_refund(ref: str, request: Request) -> JSONResponse:
        return await control(emu.refund, ref, **(await options(request)))

    @api.post("/_emu/razorpay/refunds/{ref}/process")
    async def emu_process_refund(ref: str) -> JSONResponse:
        return await control(emu.refund_delivery, ref)

    return api


# --------------------------------------------------------------------------------------------------------------
# ASGI plumbing


def record(scope: Scope, route: str, body: bytes) -> Recorded:
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
    query = dict(parse_qsl(scope.get("query_string", b"").decode()))
    try:
        parsed = json.loads(body) if body else None
    except ValueError:
        parsed = None
    return Recorded(scope["method"], route, scope["path"], query, headers, body, parsed)


async def send_fault(send: Send, fault: Fault) -> None:
    extra: list[tuple[bytes, bytes]] = []
    if fault.status == 429:
        error = RazorpayError("Too many requests", status=429, reason="rate_limit_exceeded")
        if fault.retry_after is not None:
            extra.append((b"retry-after", str(fault.retry_after).encode()))
    elif fault.status >= 500:
        error = RazorpayError(
            "The server encountered an error. The incident has been reported to admins.",
            status=fault.status,
            code="SERVER_ERROR",
            reason="server_error",
        )
    else:
        error = RazorpayError("Bad request", status=fault.status)
    body = json.dumps(error.body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra]
    await send({"type": "http.response.start", "status": fault.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
