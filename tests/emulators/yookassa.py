"""An HTTP emulator of the YooKassa API v3, written from shared/reference/payments_api.md §2 and §10.1.

What it enforces: Basic auth (401 `invalid_credentials`), an `Idempotence-Key` on every POST with a 24 h map
(same key + same body → the original answer; same key + another body → 400), `amount.value` as a `"299.00"`
string, the 54-FZ receipt when `fiscalization_enabled` (customer e-mail/phone, items summing to the amount), no
two-stage SBP, autopayments only where the shop has them (`autopayments`, on in a test shop, off in a live one
until YooKassa's manager enables them: `save_payment_method: true` elsewhere is 403 `forbidden`, and the form
offers no "save" box), and YooKassa's error shape `{"type":"error","id","code","description","parameter"}`.

What it does: payments (`pending` with `confirmation_url = {base}/confirm/{id}`, a tiny page where a person can
pay), charges of saved methods (active → `succeeded` at once; revoked → `canceled`/`permission_revoked`; the
`set_nsf` knob → `canceled`/`insufficient_funds`), capture, cancel, refunds (never more than the remainder),
`GET /me`. Notifications are built, not sent: `pay()`, `cancel()`, `refund_delivery()` return the `Delivery`
YooKassa would POST, from an allow-listed address (185.71.76.10, as the peer and as X-Forwarded-For); the
`/_emu/yookassa/...` control endpoints do the same and POST it to `webhook_url` when one is set.

Serve `emulator.app` with `tests.emulators.harness.serve`. Tests read `emulator.requests(...)` (every API call
with its headers and JSON body), `emulator.payments` / `emulator.refunds` (the stored API objects) and use the
knobs `fail_next`, `delay_next`, `advance` + `expire_pending`, `revoke_method`, `set_nsf`, `refunds_pending`.

Left out on purpose: confirmation types other than redirect, payment lists and cursors, deals, payouts,
receipts as their own objects, webhooks management (OAuth-only), and the zero-amount SBP binding flow.
Guessed (not in the reference): the wording of error descriptions, the 202 body, SBP's payment-method title.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import html
import json
import re
import threading
import uuid
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Match
from starlette.types import Message, Receive, Scope, Send

from tests.emulators.asgi import read_body, replay, wait_for_disconnect
from tests.emulators.payments_common import Delivery, post_delivery

SHOP_ID = "100500"
SECRET_KEY = "test_yookassa_emulator_secret"
GATEWAY_ID = "100700"
NOTIFIER_IP = "185.71.76.10"  # inside 185.71.76.0/27 of the §2.6 allow-list
FOREIGN_IP = "203.0.113.7"  # TEST-NET-3: on nobody's allow-list
IDEMPOTENCY_TTL = timedelta(hours=24)
COMMISSION = Decimal("0.035")
SBP_TTL = timedelta(hours=1)  # §2.3: an SBP payment lives one hour
AMOUNT_RE = re.compile(r"^\d+\.\d{2}$")
PHONE_RE = re.compile(r"^\+?\d{10,15}$")
METHODS = ("bank_card", "sbp")
PAYMENT_MODES = frozenset(
    {"full_prepayment", "prepayment", "advance", "full_payment", "partial_payment", "credit", "credit_payment"}
)
PAYMENT_SUBJECTS = frozenset(
    {"commodity", "excise", "job", "service", "payment", "agent_commission", "property_right", "another"}
)
# Who cancels, by reason (§2.2 cancellation_details.party).
MERCHANT_REASONS = frozenset({"canceled_by_merchant", "expired_on_capture"})
NETWORK_REASONS = frozenset(
    {
        "3d_secure_failed",
        "call_issuer",
        "card_expired",
        "country_forbidden",
        "general_decline",
        "insufficient_funds",
        "invalid_card_number",
        "invalid_csc",
        "issuer_unavailable",
        "payment_method_limit_exceeded",
        "payment_method_restricted",
    }
)
ERROR_CODES = {
    400: "invalid_request",
    401: "invalid_credentials",
    403: "forbidden",
    404: "not_found",
    429: "too_many_requests",
}


class ApiError(Exception):
    """An error answer in YooKassa's shape."""

    def __init__(self, status: int, description: str, *, parameter: str | None = None, code: str | None = None):
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameter = parameter
        self.code = code or ERROR_CODES.get(status, "internal_server_error")

    def body(self) -> dict[str, Any]:
        body = {"type": "error", "id": str(uuid.uuid4()), "code": self.code, "description": self.description}
        if self.parameter:
            body["parameter"] = self.parameter
        return body


class EmulatorError(Exception):
    """A test asked the emulator for something impossible (paying a canceled payment, an unknown id)."""


@dataclass(slots=True)
class SavedMethodRecord:
    method_type: str
    payment_method: dict[str, Any]  # the `payment_method` object charges of it carry
    revoked: bool = False
    nsf: bool = False


@dataclass(slots=True)
class PaymentMeta:
    """What the API object does not show but the emulator must remember about a payment."""

    capture: bool
    save_requested: bool | None  # save_payment_method as sent: None when left out (the form then offers a box)
    method_type: str | None
    created: datetime
    return_url: str | None = None


@dataclass(slots=True)
class Recorded:
    """One API request as received, with the status it was answered."""

    method: str
    path: str
    route: str
    headers: dict[str, str]
    body: Any
    status: int = 0

    @property
    def idempotence_key(self) -> str | None:
        return self.headers.get("idempotence-key")


@dataclass(slots=True)
class Fault:
    kind: str  # "status" | "delay"
    remaining: int
    status: int = 500
    retry_after: int | None = None
    seconds: float = 0.0


@dataclass(slots=True)
class IdempotentAnswer:
    fingerprint: str
    stored: datetime
    body: dict[str, Any] = field(default_factory=dict)


def new_id() -> str:
    """An id in YooKassa's shape: "23d93cac-000f-5000-8000-126628f15141"."""
    raw = uuid.uuid4().hex
    return f"{raw[:8]}-000f-5000-{'89ab'[int(raw[8], 16) % 4]}000-{raw[20:32]}"


def stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def money_text(value: Decimal) -> str:
    return f"{value.quantize(Decimal('0.01')):.2f}"


class YooKassaEmulator:
    """The emulator: `app` to serve, the stored objects, and the Python API tests drive it with."""

    def __init__(
        self,
        fiscalization_enabled: bool = False,
        *,
        shop_id: str = SHOP_ID,
        secret_key: str = SECRET_KEY,
        pending_ttl: timedelta = timedelta(hours=1),
        autopayments: bool = True,
    ) -> None:
        self.fiscalization_enabled = fiscalization_enabled
        # Saving methods for renewals: every test shop has it; a live shop only once YooKassa enables it (§2.4).
        self.autopayments = autopayments
        self.shop_id = shop_id
        self.secret_key = secret_key
        self.pending_ttl = pending_ttl
        self.payments: dict[str, dict[str, Any]] = {}
        self.refunds: dict[str, dict[str, Any]] = {}
        self.methods: dict[str, SavedMethodRecord] = {}
        # New refunds stay `pending` until refund_delivery() settles them (SBP refunds settle the next day, §2.3).
        self.refunds_pending = False
        # Where the control endpoints and the confirmation page POST notifications (our webhook), if anywhere.
        self.webhook_url: str | None = None
        self.log: list[Recorded] = []
        self.counts: Counter[str] = Counter()
        self._meta: dict[str, PaymentMeta] = {}
        self._idempotency: dict[str, IdempotentAnswer] = {}
        self._faults: list[Fault] = []
        self._offset = timedelta()
        self.lock = threading.RLock()
        self.api = build_api(self)
        # The ASGI app to serve (a callable object: uvicorn takes a bound method for an ASGI2 app).
        self.app = Front(self)

    # --- serving -----------------------------------------------------------------------------------------------

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Log API requests and apply the armed faults in front of the FastAPI routes."""
        if scope["type"] != "http" or not scope["path"].startswith("/v3/"):
            await self.api(scope, receive, send)
            return
        raw = await read_body(receive)
        record = Recorded(
            method=scope["method"],
            path=scope["path"],
            route=self.route_key(scope),
            headers={k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]},
            body=parse_json_or_raw(raw),
        )
        with self.lock:
            self.log.append(record)
            self.counts[record.route] += 1
            fault = self._take_fault()

        async def recording_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                record.status = message["status"]
            await send(message)

        if fault is not None and fault.kind == "status":
            await send_fault(recording_send, fault)
            return
        if fault is not None and fault.kind == "delay":
            # The client times out; the request is still processed afterwards, as a slow real server would.
            await wait_for_disconnect(receive, fault.seconds)
        await self.api(scope, replay(raw, receive), recording_send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.handle(scope, receive, send)

    def route_key(self, scope: Scope) -> str:
        """ "POST /v3/payments", "GET /v3/payments/{payment_id}": counters group requests by endpoint."""
        for route in router.routes:  # the app wraps included routers, so match against ours
            match, _ = route.matches(scope)
            if match is Match.FULL:
                return f"{scope['method']} {getattr(route, 'path', scope['path'])}"
        return f"{scope['method']} {scope['path']}"

    def settings(self, base_url: str) -> dict[str, Any]:
        """Settings overrides pointing our YooKassa provider at this emulator served at `base_url`. Loopback is
        a trusted proxy, so a delivery POSTed from the test (X-Forwarded-For: 185.71.76.10) passes the IP check."""
        return {
            "yookassa_api_url": base_url.rstrip("/") + "/v3",
            "yookassa_shop_id": self.shop_id,
            "yookassa_secret_key": self.secret_key,
            "yookassa_trusted_proxies": ["127.0.0.1", "::1"],
            "yookassa_receipts_enabled": self.fiscalization_enabled,
            "yookassa_receipt_email": "receipts@vpnshop.test" if self.fiscalization_enabled else "",
            "yookassa_recurring_enabled": self.autopayments,
        }

    # --- clock and fault knobs ---------------------------------------------------------------------------------

    def now(self) -> datetime:
        return datetime.now(UTC) + self._offset

    def advance(self, **delta: float) -> datetime:
        """Move the emulator's clock (idempotency TTL, payment expiry) forward, e.g. advance(hours=25)."""
        with self.lock:
            self._offset += timedelta(**delta)
            return self.now()

    def fail_next(self, status: int, retry_after: int | None = None, times: int = 1) -> None:
        """Answer the next `times` API requests with `status` (429 too_many_requests with Retry-After when
        given, 500 internal_server_error, 202 "still processing", ...) without processing them."""
        with self.lock:
            self._faults.append(Fault("status", times, status=status, retry_after=retry_after))

    def delay_next(self, seconds: float, times: int = 1) -> None:
        """Hold the next `times` API requests for `seconds` (a client timeout), then process them anyway."""
        with self.lock:
            self._faults.append(Fault("delay", times, seconds=seconds))

    def _take_fault(self) -> Fault | None:
        if not self._faults:
            return None
        fault = self._faults[0]
        fault.remaining -= 1
        if fault.remaining <= 0:
            self._faults.pop(0)
        return fault

    def requests(self, route: str | None = None) -> list[Recorded]:
        """The API requests received, optionally only one endpoint's ("POST /v3/payments")."""
        with self.lock:
            return [r for r in self.log if route is None or r.route == route]

    # --- what a customer or YooKassa does (Python API for tests) -----------------------------------------------

    def pay(
        self,
        payment_id: str,
        *,
        amount: Decimal | str | None = None,
        currency: str | None = None,
        save_method: bool = False,
        method: str | None = None,
    ) -> Delivery:
        """The customer pays payment `payment_id` (or the latest payment of that order id). `amount`/`currency`
        override what was paid (a re-fetch sees it too); the method is `method`, else the one forced at creation,
        else bank_card; it is saved when save_payment_method was true, or left out and the customer ticked the
        form's box (`save_method`, offered only where the shop has autopayments); never when it was false. Returns the
        payment.succeeded (or, for capture:false, payment.waiting_for_capture) notification."""
        with self.lock:
            payment = self._find(payment_id)
            pid = payment["id"]
            if payment["status"] != "pending":
                raise EmulatorError(f"payment {pid} is {payment['status']}, not pending")
            meta = self._meta[pid]
            kind = method or meta.method_type or "bank_card"
            if kind not in METHODS:
                raise EmulatorError(f"unknown method {kind!r}")
            if amount is not None or currency is not None:
                value = Decimal(str(amount)) if amount is not None else Decimal(payment["amount"]["value"])
                payment["amount"] = {"value": money_text(value), "currency": currency or payment["amount"]["currency"]}
            offered_box = meta.save_requested is None and self.autopayments
            saved = meta.save_requested is True or (save_method and offered_box)
            # The first payment's method id is the payment's own id (§2.2 example).
            payment["payment_method"] = method_object(kind, pid, saved=saved)
            if saved:
                self.methods[pid] = SavedMethodRecord(kind, copy.deepcopy(payment["payment_method"]))
            payment["paid"] = True
            if meta.capture:
                self._settle(payment)
                return self.notification("payment.succeeded", pid)
            payment["status"] = "waiting_for_capture"
            payment["expires_at"] = stamp(self.now() + timedelta(days=7))
            return self.notification("payment.waiting_for_capture", pid)

    def cancel(self, payment_id: str, reason: str = "expired_on_confirmation") -> Delivery:
        """YooKassa cancels a pending (or held) payment with `reason`; returns the payment.canceled notification."""
        with self.lock:
            payment = self._find(payment_id)
            if payment["status"] not in ("pending", "waiting_for_capture"):
                raise EmulatorError(f"payment {payment['id']} is {payment['status']}; it cannot be canceled")
            self._cancel(payment, reason)
            return self.notification("payment.canceled", payment["id"])

    def revoke_method(self, pm_id: str) -> None:
        """The customer revokes the saved method: later charges are canceled with permission_revoked."""
        with self.lock:
            self._method(pm_id).revoked = True

    def set_nsf(self, pm_id: str, nsf: bool = True) -> None:
        """The saved method has no funds: later charges are canceled with insufficient_funds."""
        with self.lock:
            self._method(pm_id).nsf = nsf

    def refund_delivery(self, refund_id: str) -> Delivery:
        """The refund.succeeded notification of a refund (a pending refund settles first)."""
        with self.lock:
            refund = self.refunds.get(refund_id)
            if refund is None:
                raise EmulatorError(f"no refund {refund_id}")
            if refund["status"] == "pending":
                refund["status"] = "succeeded"
            return self.notification("refund.succeeded", refund_id)

    def expire_pending(self) -> list[Delivery]:
        """YooKassa's expiry job: pending payments past their confirmation window (1 h for SBP, `pending_ttl`
        otherwise) become canceled/expired_on_confirmation, held ones past expires_at expired_on_capture.
        Returns their payment.canceled notifications. Use advance() to get there."""
        deliveries = []
        with self.lock:
            now = self.now()
            for pid, payment in self.payments.items():
                meta = self._meta[pid]
                ttl = SBP_TTL if meta.method_type == "sbp" else self.pending_ttl
                if payment["status"] == "pending" and meta.created + ttl <= now:
                    self._cancel(payment, "expired_on_confirmation")
                elif payment["status"] == "waiting_for_capture" and payment["expires_at"] <= stamp(now):
                    self._cancel(payment, "expired_on_capture")
                else:
                    continue
                deliveries.append(self.notification("payment.canceled", pid))
        return deliveries

    def notification(self, event: str, object_id: str) -> Delivery:
        """The notification YooKassa would POST about the object's current state, from an allow-listed IP.

        `amount` leads the object: JSON key order means nothing to a reader, and it makes Delivery.tampered()
        (which changes the first digit) alter the figure an attacker would change rather than the id."""
        with self.lock:
            source = self.refunds if event.startswith("refund.") else self.payments
            obj = source.get(object_id)
            if obj is None:
                raise EmulatorError(f"no object {object_id} for {event}")
            ordered = {"amount": obj["amount"], **copy.deepcopy(obj)}
        body = json.dumps({"type": "notification", "event": event, "object": ordered}, ensure_ascii=False)
        return Delivery(
            body=body.encode(),
            headers={"content-type": "application/json", "x-forwarded-for": NOTIFIER_IP},
            peer_ip=NOTIFIER_IP,
        )

    @staticmethod
    def forged(delivery: Delivery) -> Delivery:
        """YooKassa signs nothing, so a forgery is the same body from an address off the allow-list."""
        return replace(delivery, peer_ip=FOREIGN_IP, headers={**delivery.headers, "x-forwarded-for": FOREIGN_IP})

    async def dispatch(self, delivery: Delivery) -> int | None:
        """POST a delivery to `webhook_url` (re-sending on non-2xx a few times); its last status, or None."""
        if not self.webhook_url:
            return None
        response = await post_delivery(self.webhook_url, delivery)
        return response.status_code

    # --- state transitions -------------------------------------------------------------------------------------

    def _find(self, payment_or_order_id: str) -> dict[str, Any]:
        payment = self.payments.get(payment_or_order_id)
        if payment is not None:
            return payment
        for candidate in reversed(self.payments.values()):
            if candidate.get("metadata", {}).get("order_id") == payment_or_order_id:
                return candidate
        raise EmulatorError(f"no payment {payment_or_order_id}")

    def _method(self, pm_id: str) -> SavedMethodRecord:
        record = self.methods.get(pm_id)
        if record is None:
            raise EmulatorError(f"no saved payment method {pm_id}")
        return record

    def _settle(self, payment: dict[str, Any]) -> None:
        value = Decimal(payment["amount"]["value"])
        payment.update(
            status="succeeded",
            paid=True,
            captured_at=stamp(self.now()),
            income_amount={"value": money_text(value * (1 - COMMISSION)), "currency": payment["amount"]["currency"]},
            refunded_amount={"value": "0.00", "currency": payment["amount"]["currency"]},
            refundable=True,
        )
        payment.pop("expires_at", None)
        payment.pop("confirmation", None)

    def _cancel(self, payment: dict[str, Any], reason: str) -> None:
        party = "merchant" if reason in MERCHANT_REASONS else "payment_network" if reason in NETWORK_REASONS else None
        payment.update(
            status="canceled",
            paid=False,
            refundable=False,
            cancellation_details={"party": party or "yoo_kassa", "reason": reason},
        )
        payment.pop("expires_at", None)
        payment.pop("confirmation", None)

    # --- API operations (called by the routes, under the lock) -------------------------------------------------

    def create_payment(self, body: Any, base_url: str) -> dict[str, Any]:
        body = require_object(body, "body")
        amount = parse_amount(body.get("amount"), "amount")
        capture = body.get("capture", False)  # YooKassa's default is two-stage
        if not isinstance(capture, bool):
            raise ApiError(400, "capture must be a boolean", parameter="capture")
        description = body.get("description")
        if description is not None and (not isinstance(description, str) or len(description) > 128):
            raise ApiError(400, "Description must be a string of at most 128 characters", parameter="description")
        metadata = body.get("metadata", {})
        if not isinstance(metadata, dict) or not all(isinstance(v, str | int | float) for v in metadata.values()):
            raise ApiError(400, "Metadata must be an object of scalar values", parameter="metadata")
        save = body.get("save_payment_method")
        if save is not None and not isinstance(save, bool):
            raise ApiError(400, "save_payment_method must be a boolean", parameter="save_payment_method")
        if save is True and not self.autopayments:
            raise ApiError(403, "Forbidden to save payment method", parameter="save_payment_method")
        self.check_receipt(body.get("receipt"), amount)
        pm_id = body.get("payment_method_id")
        if pm_id is not None:
            return self._charge_saved(pm_id, body, amount, capture, description, metadata)

        method_type = None
        if "payment_method_data" in body:
            data = require_object(body["payment_method_data"], "payment_method_data")
            method_type = data.get("type")
            if method_type not in METHODS:
                raise ApiError(400, f"Payment method {method_type!r} is not available", parameter="payment_method_data")
            if method_type == "sbp" and not capture:
                raise ApiError(400, "Payment method sbp does not support two-stage payments", parameter="capture")
        confirmation = require_object(body.get("confirmation"), "confirmation")
        if confirmation.get("type") != "redirect":
            raise ApiError(400, "Only the redirect confirmation type is emulated", parameter="confirmation.type")
        return_url = confirmation.get("return_url")
        if not isinstance(return_url, str) or not return_url:
            raise ApiError(400, "Return URL is missing", parameter="confirmation.return_url")

        pid = new_id()
        payment: dict[str, Any] = {
            "id": pid,
            "status": "pending",
            "paid": False,
            "amount": amount,
            "confirmation": {
                "type": "redirect",
                "confirmation_url": f"{base_url.rstrip('/')}/confirm/{pid}",
                "return_url": return_url,
            },
            "created_at": stamp(self.now()),
            "description": description or "",
            "metadata": metadata,
            "recipient": {"account_id": self.shop_id, "gateway_id": GATEWAY_ID},
            "refundable": False,
            "test": True,
        }
        if method_type is not None:
            payment["payment_method"] = method_object(method_type, pid, saved=False)
        self.payments[pid] = payment
        self._meta[pid] = PaymentMeta(capture, save, method_type, self.now(), return_url)
        return payment

    def _charge_saved(
        self, pm_id: Any, body: dict[str, Any], amount: dict[str, str], capture: bool, description: Any, metadata: Any
    ) -> dict[str, Any]:
        if "confirmation" in body:
            raise ApiError(400, "A saved method is charged without confirmation", parameter="confirmation")
        record = self.methods.get(pm_id) if isinstance(pm_id, str) else None
        if record is None:
            raise ApiError(400, "Payment method is not found or not saved", parameter="payment_method_id")
        pid = new_id()
        payment: dict[str, Any] = {
            "id": pid,
            "status": "pending",
            "paid": False,
            "amount": amount,
            "created_at": stamp(self.now()),
            "description": description or "",
            "metadata": metadata,
            "payment_method": copy.deepcopy(record.payment_method),
            "recipient": {"account_id": self.shop_id, "gateway_id": GATEWAY_ID},
            "refundable": False,
            "test": True,
        }
        self.payments[pid] = payment
        self._meta[pid] = PaymentMeta(capture, False, record.method_type, self.now())
        if record.revoked:
            self._cancel(payment, "permission_revoked")
        elif record.nsf:
            self._cancel(payment, "insufficient_funds")
        elif capture:
            self._settle(payment)
        else:
            payment.update(status="waiting_for_capture", paid=True, expires_at=stamp(self.now() + timedelta(days=7)))
        return payment

    def check_receipt(self, receipt: Any, amount: dict[str, str]) -> None:
        """§2.5, enforced when the shop fiscalizes (a shop without it ignores the receipt)."""
        if not self.fiscalization_enabled:
            return
        if not isinstance(receipt, dict):
            raise ApiError(400, "Receipt is missing or illegal", parameter="receipt")
        customer = receipt.get("customer")
        email = customer.get("email") if isinstance(customer, dict) else None
        phone = customer.get("phone") if isinstance(customer, dict) else None
        if not email and not phone:
            raise ApiError(400, "Receipt is missing or illegal", parameter="receipt.customer")
        if email is not None and (not isinstance(email, str) or "@" not in email):
            raise ApiError(400, "Receipt is missing or illegal", parameter="receipt.customer.email")
        if phone is not None and (not isinstance(phone, str) or not PHONE_RE.match(phone)):
            raise ApiError(400, "Receipt is missing or illegal", parameter="receipt.customer.phone")
        items = receipt.get("items")
        if not isinstance(items, list) or not items:
            raise ApiError(400, "Receipt is missing or illegal", parameter="receipt.items")
        total = Decimal(0)
        for index, item in enumerate(items):
            where = f"receipt.items[{index}]"
            if not isinstance(item, dict):
                raise ApiError(400, "Receipt is missing or illegal", parameter=where)
            text = item.get("description")
            if not isinstance(text, str) or not 1 <= len(text) <= 128:
                raise ApiError(400, "Receipt is missing or illegal", parameter=f"{where}.description")
            quantity = parse_decimal(item.get("quantity"), f"{where}.quantity")
            price = parse_amount(item.get("amount"), f"{where}.amount")
            if price["currency"] != amount["currency"]:
                raise ApiError(400, "Receipt is missing or illegal", parameter=f"{where}.amount.currency")
            vat = item.get("vat_code")
            if isinstance(vat, bool) or not isinstance(vat, int) or not 1 <= vat <= 12:
                raise ApiError(400, "Receipt is missing or illegal", parameter=f"{where}.vat_code")
            if item.get("payment_mode") not in PAYMENT_MODES:
                raise ApiError(400, "Receipt is missing or illegal", parameter=f"{where}.payment_mode")
            if item.get("payment_subject") not in PAYMENT_SUBJECTS:
                raise ApiError(400, "Receipt is missing or illegal", parameter=f"{where}.payment_subject")
            total += Decimal(price["value"]) * quantity
        if total != Decimal(amount["value"]):
            raise ApiError(400, "Sum of receipt items does not match the payment amount", parameter="receipt.items")
        tax = receipt.get("tax_system_code")
        if tax is not None and (isinstance(tax, bool) or not isinstance(tax, int) or not 1 <= tax <= 6):
            raise ApiError(400, "Receipt is missing or illegal", parameter="receipt.tax_system_code")

    def get_payment(self, payment_id: str) -> dict[str, Any]:
        payment = self.payments.get(payment_id)
        if payment is None:
            raise ApiError(404, "Payment not found or forbidden", parameter="payment_id")
        return payment

    def capture_payment(self, payment_id: str, body: Any) -> dict[str, Any]:
        payment = self.get_payment(payment_id)
        if payment["status"] != "waiting_for_capture":
            raise ApiError(400, f"Payment is {payment['status']}, not waiting_for_capture", parameter="payment_id")
        if isinstance(body, dict) and "amount" in body:
            amount = parse_amount(body["amount"], "amount")
            if Decimal(amount["value"]) > Decimal(payment["amount"]["value"]):
                raise ApiError(400, "Capture amount exceeds the authorized amount", parameter="amount")
            payment["amount"] = amount
        self._settle(payment)
        return payment

    def cancel_payment(self, payment_id: str) -> dict[str, Any]:
        payment = self.get_payment(payment_id)
        if payment["status"] == "canceled":
            return payment
        if payment["status"] != "waiting_for_capture":
            raise ApiError(400, f"Payment is {payment['status']}; only a held payment can be canceled")
        self._cancel(payment, "canceled_by_merchant")
        return payment

    def create_refund(self, body: Any) -> dict[str, Any]:
        body = require_object(body, "body")
        payment_id = body.get("payment_id")
        payment = self.payments.get(payment_id) if isinstance(payment_id, str) else None
        if payment is None:
            raise ApiError(400, "Payment not found", parameter="payment_id")
        amount = parse_amount(body.get("amount"), "amount")
        if payment["status"] != "succeeded":
            raise ApiError(400, f"Payment is {payment['status']}; only a succeeded payment is refunded")
        if amount["currency"] != payment["amount"]["currency"]:
            raise ApiError(400, "Refund currency differs from the payment's", parameter="amount.currency")
        refunded = Decimal(payment["refunded_amount"]["value"])
        remainder = Decimal(payment["amount"]["value"]) - refunded
        value = Decimal(amount["value"])
        if value <= 0 or value > remainder:
            raise ApiError(
                400,
                f"Refund amount must be above 0 and at most the remainder {money_text(remainder)}",
                parameter="amount",
            )
        refund = {
            "id": new_id(),
            "payment_id": payment_id,
            "status": "pending" if self.refunds_pending else "succeeded",
            "amount": amount,
            "created_at": stamp(self.now()),
        }
        if isinstance(body.get("description"), str):
            refund["description"] = body["description"]
        self.refunds[refund["id"]] = refund
        payment["refunded_amount"] = {"value": money_text(refunded + value), "currency": amount["currency"]}
        payment["refundable"] = refunded + value < Decimal(payment["amount"]["value"])
        return refund

    def get_refund(self, refund_id: str) -> dict[str, Any]:
        refund = self.refunds.get(refund_id)
        if refund is None:
            raise ApiError(404, "Refund not found or forbidden", parameter="refund_id")
        return refund

    def me(self) -> dict[str, Any]:
        return {
            "account_id": self.shop_id,
            "test": True,
            "fiscalization_enabled": self.fiscalization_enabled,
            "fiscalization": {"enabled": self.fiscalization_enabled},
            "payment_methods": list(METHODS),
            "status": "enabled",
        }

    # --- request plumbing ----------------------------------------------------------------------------------------

    def authenticate(self, request: Request) -> None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        try:
            user, _, password = base64.b64decode(token, validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            user = password = ""
        ok = scheme.lower() == "basic" and hmac.compare_digest(
            f"{user}:{password}", f"{self.shop_id}:{self.secret_key}"
        )
        if not ok:
            raise ApiError(401, "Login or password is incorrect: check the shopId and the secret key")

    def idempotent(self, request: Request, raw: bytes, operation: Any) -> dict[str, Any]:
        """Run a POST once per Idempotence-Key: a replay with the same body answers the stored result."""
        key = request.headers.get("idempotence-key")
        if not key:
            raise ApiError(400, "Idempotence key is missing", parameter="Idempotence-Key")
        if len(key) > 64:
            raise ApiError(400, "Idempotence key is longer than 64 characters", parameter="Idempotence-Key")
        body = parse_body(raw)
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
        fingerprint = hashlib.sha256(f"{request.url.path}\n{canonical}".encode()).hexdigest()
        with self.lock:
            now = self.now()
            known = self._idempotency.get(key)
            if known is not None and now - known.stored >= IDEMPOTENCY_TTL:
                known = None
            if known is not None:
                if known.fingerprint != fingerprint:
                    raise ApiError(400, "Idempotence key duplicated", parameter="Idempotence-Key")
                return copy.deepcopy(known.body)
            result = copy.deepcopy(operation(body))
            self._idempotency[key] = IdempotentAnswer(fingerprint, now, result)
            return result


# --------------------------------------------------------------------------------------------------------------
# Routes


router = APIRouter()


def emulator_of(request: Request) -> YooKassaEmulator:
    return request.app.state.yookassa


@router.post("/v3/payments")
async def post_payment(request: Request) -> Response:
    emu = emulator_of(request)
    emu.authenticate(request)
    raw = await request.body()
    base = str(request.base_url)
    return JSONResponse(emu.idempotent(request, raw, lambda body: emu.create_payment(body, base)))


@router.get("/v3/payments/{payment_id}")
async def get_payment(payment_id: str, request: Request) -> Response:
    emu = emulator_of(request)
    emu.authenticate(request)
    with emu.lock:
        return JSONResponse(copy.deepcopy(emu.get_payment(payment_id)))


@router.post("/v3/payments/{payment_id}/capture")
async def capture_payment(payment_id: str, request: Request) -> Response:
    emu = emulator_of(request)
    emu.authenticate(request)
    raw = await request.body()
    return JSONResponse(emu.idempotent(request, raw, lambda body: emu.capture_payment(payment_id, body)))


@router.post("/v3/payments/{payment_id}/cancel")
async def cancel_payment(payment_id: str, request: Request) -> Response:
    emu = emulator_of(request)
    emu.authenticate(request)
    raw = await request.body()
    return JSONResponse(emu.idempotent(request, raw, lambda _: emu.cancel_payment(payment_id)))


@router.post("/v3/refunds")
async def post_refund(request: Request) -> Response:
    emu = emulator_of(request)
    emu.authenticate(request)
    raw = await request.body()
    return JSONResponse(emu.idempotent(request, raw, emu.create_refund))


@router.get("/v3/refunds/{refund_id}")
async def get_refund(refund_id: str, request: Request) -> Response:
    emu = emulator_of(request)
    emu.authenticate(request)
    with emu.lock:
        return JSONResponse(copy.deepcopy(emu.get_refund(refund_id)))


@router.get("/v3/me")
async def get_me(request: Request) -> Response:
    emu = emulator_of(request)
    emu.authenticate(request)
    return JSONResponse(emu.me())


# --- the confirmation page a customer is redirected to ------------------------------------------------------------


@router.get("/confirm/{payment_id}")
async def confirm_page(payment_id: str, request: Request) -> Response:
    emu = emulator_of(request)
    with emu.lock:
        payment = emu.payments.get(payment_id)
        if payment is None:
            return HTMLResponse("<h1>Payment not found</h1>", status_code=404)
        amount, status = payment["amount"], payment["status"]
        description = payment.get("description", "")
        offers_box = emu._meta[payment_id].save_requested is None and emu.autopayments
    buttons = ""
    if status == "pending":
        box = '<label><input type="checkbox" name="save_method" value="1"> Save the card</label>' if offers_box else ""
        buttons = (
            f'<form method="post">{box}'
            f'<button name="action" value="pay">Pay {amount["value"]} {amount["currency"]}</button>'
            f'<button name="action" value="cancel">Cancel</button></form>'
        )
    page = (
        f"<!doctype html><html><head><title>YooKassa emulator</title></head><body>"
        f"<h1>{html.escape(description) or 'Payment'}</h1><p>{amount['value']} {amount['currency']}: "
        f"<strong id='status'>{status}</strong></p>{buttons}</body></html>"
    )
    return HTMLResponse(page)


@router.post("/confirm/{payment_id}")
async def confirm_action(payment_id: str, request: Request) -> Response:
    emu = emulator_of(request)
    form = await request.form()
    try:
        if form.get("action") == "pay":
            delivery = emu.pay(payment_id, save_method=form.get("save_method") == "1")
        else:
            delivery = emu.cancel(payment_id, "canceled_by_merchant")
    except EmulatorError as exc:
        return HTMLResponse(f"<h1>{html.escape(str(exc))}</h1>", status_code=409)
    await emu.dispatch(delivery)
    with emu.lock:
        return_url = emu._meta[payment_id].return_url or f"/confirm/{payment_id}"
    return RedirectResponse(return_url, status_code=303)


# --- control endpoints ---------------------------------------------------------------------------------------------


async def control_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    data = json.loads(raw) if raw.strip() else {}
    return data if isinstance(data, dict) else {}


async def delivered(emu: YooKassaEmulator, delivery: Delivery) -> JSONResponse:
    status = await emu.dispatch(delivery)
    return JSONResponse({"delivered": status, "body": json.loads(delivery.body)})


@router.post("/_emu/yookassa/payments/{payment_id}/succeed")
async def control_succeed(payment_id: str, request: Request) -> Response:
    emu = emulator_of(request)
    data = await control_body(request)
    amount = data.get("amount")
    delivery = emu.pay(
        payment_id,
        amount=Decimal(str(amount)) if amount is not None else None,
        currency=data.get("currency"),
        save_method=bool(data.get("save_method")),
        method=data.get("method"),
    )
    return await delivered(emu, delivery)


@router.post("/_emu/yookassa/payments/{payment_id}/cancel")
async def control_cancel(payment_id: str, request: Request) -> Response:
    emu = emulator_of(request)
    data = await control_body(request)
    return await delivered(emu, emu.cancel(payment_id, data.get("reason") or "expired_on_confirmation"))


@router.post("/_emu/yookassa/refunds/{refund_id}/succeed")
async def control_refund(refund_id: str, request: Request) -> Response:
    emu = emulator_of(request)
    return await delivered(emu, emu.refund_delivery(refund_id))


@router.post("/_emu/yookassa/methods/{pm_id}/revoke")
async def control_revoke(pm_id: str, request: Request) -> Response:
    emulator_of(request).revoke_method(pm_id)
    return JSONResponse({"revoked": pm_id})


@router.post("/_emu/yookassa/methods/{pm_id}/nsf")
async def control_nsf(pm_id: str, request: Request) -> Response:
    data = await control_body(request)
    emulator_of(request).set_nsf(pm_id, bool(data.get("nsf", True)))
    return JSONResponse({"nsf": pm_id})


@router.post("/_emu/yookassa/expire")
async def control_expire(request: Request) -> Response:
    emu = emulator_of(request)
    statuses = [await emu.dispatch(delivery) for delivery in emu.expire_pending()]
    return JSONResponse({"expired": len(statuses), "delivered": statuses})


@router.post("/_emu/yookassa/advance")
async def control_advance(request: Request) -> Response:
    data = await control_body(request)
    moment = emulator_of(request).advance(seconds=float(data.get("seconds", 0)))
    return JSONResponse({"now": stamp(moment)})


@router.post("/_emu/yookassa/fail_next")
async def control_fail_next(request: Request) -> Response:
    data = await control_body(request)
    emulator_of(request).fail_next(int(data.get("status", 500)), data.get("retry_after"), int(data.get("times", 1)))
    return JSONResponse({"armed": True})


@router.post("/_emu/yookassa/delay_next")
async def control_delay_next(request: Request) -> Response:
    data = await control_body(request)
    emulator_of(request).delay_next(float(data.get("seconds", 1)), int(data.get("times", 1)))
    return JSONResponse({"armed": True})


@router.post("/_emu/yookassa/webhook")
async def control_webhook(request: Request) -> Response:
    data = await control_body(request)
    emulator_of(request).webhook_url = data.get("url") or None
    return JSONResponse({"webhook_url": emulator_of(request).webhook_url})


@router.get("/_emu/yookassa/requests")
async def control_requests(request: Request) -> Response:
    records = emulator_of(request).requests()
    return JSONResponse(
        [
            {"method": r.method, "path": r.path, "status": r.status, "headers": r.headers, "body": r.body}
            for r in records
        ]
    )


async def api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return JSONResponse(exc.body(), status_code=exc.status)


async def emulator_error(_: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=409)


def build_api(emulator: YooKassaEmulator) -> FastAPI:
    api = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    api.state.yookassa = emulator
    api.include_router(router)
    api.add_exception_handler(ApiError, api_error)
    api.add_exception_handler(EmulatorError, emulator_error)
    return api


# --------------------------------------------------------------------------------------------------------------
# Validation helpers


def parse_body(raw: bytes) -> Any:
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except ValueError:
        raise ApiError(400, "Request body is not valid JSON") from None


def parse_json_or_raw(raw: bytes) -> Any:
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")


def require_object(value: Any, parameter: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ApiError(400, f"{parameter} is missing or is not an object", parameter=parameter)
    return value


def parse_amount(value: Any, parameter: str) -> dict[str, str]:
    """`{"value": "299.00", "currency": "RUB"}`: the value must be a string with exactly two decimals (§9)."""
    amount = require_object(value, parameter)
    text = amount.get("value")
    if not isinstance(text, str) or not AMOUNT_RE.match(text):
        raise ApiError(400, "Amount value must be a string like 100.00", parameter=f"{parameter}.value")
    if Decimal(text) <= 0:
        raise ApiError(400, "Amount value must be greater than 0", parameter=f"{parameter}.value")
    if amount.get("currency") != "RUB":
        raise ApiError(400, "Currency is not supported by the shop", parameter=f"{parameter}.currency")
    return {"value": text, "currency": "RUB"}


def parse_decimal(value: Any, parameter: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ApiError(400, "Receipt is missing or illegal", parameter=parameter)
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise ApiError(400, "Receipt is missing or illegal", parameter=parameter) from None
    if number <= 0:
        raise ApiError(400, "Receipt is missing or illegal", parameter=parameter)
    return number


def method_object(kind: str, pm_id: str, *, saved: bool) -> dict[str, Any]:
    """The `payment_method` of a paid payment: the test card 5555 5555 5555 4444 (§2.7), or an SBP payer."""
    if kind == "bank_card":
        return {
            "type": "bank_card",
            "id": pm_id,
            "saved": saved,
            "title": "Bank card *4444",
            "card": {
                "first6": "555555",
                "last4": "4444",
                "expiry_year": "2030",
                "expiry_month": "12",
                "card_type": "MasterCard",
                "issuer_country": "RU",
            },
        }
    return {
        "type": "sbp",
        "id": pm_id,
        "saved": saved,
        "title": "SBP",
        "payer_bank_details": {"bank_id": "100000000111", "bic": "044525225"},
    }


# --------------------------------------------------------------------------------------------------------------
# ASGI helpers


class Front:
    """`emulator.app`: an ASGI3 callable in front of the emulator."""

    def __init__(self, emulator: YooKassaEmulator) -> None:
        self.emulator = emulator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.emulator.handle(scope, receive, send)


async def send_fault(send: Send, fault: Fault) -> None:
    if fault.status == 202:
        body: dict[str, Any] = {"type": "processing", "description": "Request accepted, not processed yet"}
    else:
        description = "Too many requests" if fault.status == 429 else "Internal server error"
        body = ApiError(fault.status, description).body()
    headers = [(b"content-type", b"application/json")]
    if fault.retry_after is not None:
        headers.append((b"retry-after", str(fault.retry_after).encode()))
    payload = json.dumps(body).encode()
    headers.append((b"content-length", str(len(payload)).encode()))
    await send({"type": "http.response.start", "status": fault.status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
