"""An HTTP emulator of the Xendit Invoice and QR Codes (v2) APIs, written from shared/reference/payments_api.md §7
and §10.6.

Serve `XenditEmulator().app` with `tests.emulators.harness.serve`; point the adapter at it with
`settings(base_url)`. It enforces HTTP Basic `secret_key:` (empty password), honours `X-IDEMPOTENCY-KEY` (the same
key and body replay the first answer), truncates IDR decimals as Xendit does, answers errors as
`{"error_code": …, "message": …}`, and keeps invoices, QR codes and their payments in memory.

Tests play the customer through Python methods that change the stored objects and return the callback `Delivery`
Xendit would send (with `x-callback-token` and a fresh `webhook-id`), without sending it: `pay` (an invoice or a
QR code; `amount`/`currency` override what was paid, and a re-fetch then reports it), `expire`, `settle`.
`forged` swaps the token; `key_permitted = False` answers 403 REQUEST_FORBIDDEN_ERROR to a valid key (one whose
dashboard permissions do not cover the API); `fail_next`/`delay_next` break the next API answers; `requests`
counts calls per route and `log` keeps them. The same actions are HTTP endpoints under `/_emu/xendit/...`, which
also POST the delivery to `webhook_url` (retrying non-2xx `webhook_attempts` times, six by default as Xendit does).

Guesses beyond the reference (a sandbox must confirm): the error codes and messages, the answer to a reused
idempotency key with another body (409 DUPLICATE_ERROR here), the QR v2 shapes (the reference has them from
memory), `GET /qr_codes/{id}/payments`, and refusing a QR request without `api-version` (v1 would ask for
`external_id` and `callback_url`).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import secrets
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.routing import Match
from starlette.types import Receive, Scope, Send

from tests.emulators.asgi import read_body, replay, wait_for_disconnect
from tests.emulators.payments_common import Delivery, post_delivery

QR_API_VERSION = "2022-07-31"
CURRENCIES = ("IDR", "PHP")
DEFAULT_DURATION = 86400
# How the invoice callback names the kind of a payment channel.
CHANNEL_KINDS = {
    "QRIS": "QR_CODE",
    "OVO": "EWALLET",
    "DANA": "EWALLET",
    "SHOPEEPAY": "EWALLET",
    "LINKAJA": "EWALLET",
    "GCASH": "EWALLET",
    "PAYMAYA": "EWALLET",
    "BCA": "BANK_TRANSFER",
    "BNI": "BANK_TRANSFER",
    "BRI": "BANK_TRANSFER",
    "MANDIRI": "BANK_TRANSFER",
    "PERMATA": "BANK_TRANSFER",
    "CREDIT_CARD": "CREDIT_CARD",
}


class XenditError(Exception):
    """An API refusal in Xendit's shape."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error_code": code, "message": message}


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
    route: str  # "GET /v2/invoices/{invoice_id}"
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    json: Any = field(default=None)


def object_id() -> str:
    """A Mongo-style id as Xendit uses for invoices: 8 hex digits of time, 16 random."""
    return f"{int(time.time()):08x}{secrets.token_hex(8)}"


def iso(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def number(value: Decimal | int) -> int | Decimal:
    value = Decimal(value)
    return int(value) if value == value.to_integral_value() else value


def dumps(data: Any) -> bytes:
    """JSON with Decimals as plain numbers (Xendit amounts are JSON numbers; floats would blur them)."""
    numbers: list[str] = []

    def placeholder(value: Any) -> str:
        if not isinstance(value, Decimal):
            raise TypeError(type(value).__name__)
        numbers.append(format(value, "f"))
        return f"\x00{len(numbers) - 1}\x00"

    text = json.dumps(data, default=placeholder)
    for index, text_number in enumerate(numbers):
        text = text.replace(f'"\\u0000{index}\\u0000"', text_number, 1)
    return text.encode()


def answer(data: Any, status: int = 200) -> Response:
    return Response(dumps(data), status_code=status, media_type="application/json")


class XenditEmulator:
    """The emulated account: `app` to serve, the stores, the knobs and the customer's actions."""

    def __init__(
        self,
        *,
        secret_key: str = "xnd_development_emulator",
        callback_token: str = "emulator-callback-token",
        webhook_url: str | None = None,
        webhook_attempts: int = 6,
    ) -> None:
        self.secret_key = secret_key
        self.callback_token = callback_token
        self.webhook_url = webhook_url
        self.webhook_attempts = webhook_attempts
        self.business_id = secrets.token_hex(12)
        self.key_permitted = True  # False: the key is valid but lacks the Invoice permission → 403
        self.invoices: dict[str, dict[str, Any]] = {}
        self.qr_codes: dict[str, dict[str, Any]] = {}
        self.qr_payments: dict[str, list[dict[str, Any]]] = {}
        self.requests: Counter[str] = Counter()
        self.log: list[Recorded] = []
        self.deliveries: list[Delivery] = []
        self.clock_offset = 0.0
        # (route, key) → (body fingerprint, status, answer): what a repeated create gets back.
        self._idempotent: dict[tuple[str, str], tuple[str, int, Any]] = {}
        self._faults: list[Fault] = []
        self._lock = threading.RLock()
        self.api = build_api(self)

    # --- wiring ------------------------------------------------------------------------------------------------

    def settings(self, base_url: str) -> dict[str, Any]:
        """Settings overrides that point XenditProvider.from_settings at this emulator."""
        return {
            "xendit_api_url": base_url,
            "xendit_secret_key": self.secret_key,
            "xendit_callback_token": self.callback_token,
        }

    def now(self) -> float:
        return time.time() + self.clock_offset

    def advance(self, seconds: float) -> None:
        """Move the emulated clock (invoices and QR codes past their expiry read as EXPIRED / INACTIVE)."""
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
        """The logged requests to one route key, e.g. "POST /v2/invoices", oldest first."""
        return [record for record in self.log if record.route == route]

    def last(self, route: str) -> Recorded:
        found = self.calls(route)
        assert found, f"no request to {route}; got {sorted(self.requests)}"
        return found[-1]

    # --- callbacks ---------------------------------------------------------------------------------------------

    def callback(self, data: dict[str, Any]) -> Delivery:
        """A callback as Xendit sends it, recorded in `deliveries`. A redelivery is the same Delivery, so it
        carries the same webhook-id."""
        headers = {
            "content-type": "application/json",
            "x-callback-token": self.callback_token,
            "webhook-id": str(uuid.uuid4()),
        }
        delivery = Delivery(body=dumps(data), headers=headers)
        self.deliveries.append(delivery)
        return delivery

    def forged(self, delivery: Delivery) -> Delivery:
        """The same body with a token that is not the account's."""
        return delivery.with_header("x-callback-token", "not-the-callback-token")

    async def deliver(self, delivery: Delivery) -> int | None:
        """POST a delivery to `webhook_url` as Xendit does; returns the final status (None: not sent)."""
        if not self.webhook_url:
            return None
        response = await post_delivery(self.webhook_url, delivery, attempts=self.webhook_attempts)
        return response.status_code

    # --- lookups -----------------------------------------------------------------------------------------------

    def invoice(self, ref: str) -> dict[str, Any]:
        """An invoice by its id or by external_id (the newest one)."""
        with self._lock:
            if ref in self.invoices:
                return self.refresh_invoice(self.invoices[ref])
            found = [inv for inv in self.invoices.values() if inv["external_id"] == ref]
            if not found:
                raise KeyError(f"no invoice {ref!r}")
            return self.refresh_invoice(found[-1])

    def qr_code(self, ref: str) -> dict[str, Any]:
        """A QR code by its id or by reference_id (the newest one)."""
        with self._lock:
            if ref in self.qr_codes:
                return self.refresh_qr(self.qr_codes[ref])
            found = [qr for qr in self.qr_codes.values() if qr["reference_id"] == ref]
            if not found:
                raise KeyError(f"no QR code {ref!r}")
            return self.refresh_qr(found[-1])

    def refresh_invoice(self, invoice: dict[str, Any]) -> dict[str, Any]:
        if invoice["status"] == "PENDING" and invoice["_expires"] <= self.now():
            invoice.update(status="EXPIRED", updated=iso(self.now()))
        return invoice

    def refresh_qr(self, qr: dict[str, Any]) -> dict[str, Any]:
        if qr["status"] == "ACTIVE" and qr["_expires"] is not None and qr["_expires"] <= self.now():
            qr.update(status="INACTIVE", updated=iso(self.now()))
        return qr

    # --- the customer ------------------------------------------------------------------------------------------

    def pay(
        self,
        ref: str,
        *,
        amount: Decimal | str | int | None = None,
        currency: str | None = None,
        method: str = "QRIS",
        **_: Any,
    ) -> Delivery:
        """The customer pays an invoice or a QR code (by id, external_id or reference_id). `amount`/`currency`
        override what was paid: the invoice's `paid_amount` (or the QR payment's amount) as re-fetched says so
        too. Returns the invoice callback or the qr.payment callback."""
        with self._lock:
            try:
                invoice = self.invoice(ref)
            except KeyError:
                return self.pay_qr(ref, amount=amount, currency=currency)
            return self.pay_invoice(invoice, amount=amount, currency=currency, method=method)

    def pay_invoice(
        self,
        invoice: dict[str, Any],
        *,
        amount: Decimal | str | int | None = None,
        currency: str | None = None,
        method: str = "QRIS",
    ) -> Delivery:
        with self._lock:
            if invoice["status"] != "PENDING":
                raise ValueError(f"invoice {invoice['id']} is {invoice['status']}, not payable")
            paid = invoice["amount"] if amount is None else number(Decimal(str(amount)))
            invoice.update(
                status="PAID",
                paid_amount=paid,
                currency=currency or invoice["currency"],
                payment_method=CHANNEL_KINDS.get(method, "EWALLET"),
                payment_channel=method,
                payment_destination=method,
                payment_id=f"qrpy_{uuid.uuid4()}" if method == "QRIS" else secrets.token_hex(12),
                paid_at=iso(self.now()),
                updated=iso(self.now()),
                adjusted_received_amount=paid,
                fees_paid_amount=0,
            )
            return self.invoice_callback(invoice)

    def pay_qr(self, ref: str, *, amount: Decimal | str | int | None = None, currency: str | None = None) -> Delivery:
        with self._lock:
            qr = self.qr_code(ref)
            if qr["status"] != "ACTIVE":
                raise ValueError(f"QR code {qr['id']} is {qr['status']}, not payable")
            paid = qr["amount"] if amount is None else number(Decimal(str(amount)))
            payment = {
                "id": f"qrpy_{uuid.uuid4()}",
                "business_id": self.business_id,
                "currency": currency or qr["currency"],
                "amount": paid,
                "status": "SUCCEEDED",
                "created": iso(self.now()),
                "qr_id": qr["id"],
                "qr_string": qr["qr_string"],
                "reference_id": qr["reference_id"],
                "type": qr["type"],
                "channel_code": qr["channel_code"],
                "expires_at": qr["expires_at"],
                "metadata": qr["metadata"],
                "payment_detail": {"receipt_id": secrets.token_hex(6), "source": "DANA"},
            }
            self.qr_payments.setdefault(qr["id"], []).append(payment)
            if qr["type"] == "DYNAMIC":
                qr.update(status="INACTIVE", updated=iso(self.now()))
            # The payment's id leads the body, ahead of fields we do not check.
            data = {"id": payment["id"], **{k: v for k, v in payment.items() if k != "id"}}
            return self.callback(
                {"event": "qr.payment", "data": data, "business_id": self.business_id, "created": iso(self.now())}
            )

    def expire(self, ref: str) -> Delivery:
        """An invoice runs out (as `POST /invoices/{id}/expire!` or its duration would do). Returns the EXPIRED
        invoice callback."""
        with self._lock:
            invoice = self.invoice(ref)
            if invoice["status"] not in ("PENDING", "EXPIRED"):
                raise ValueError(f"invoice {invoice['id']} is {invoice['status']}")
            invoice.update(status="EXPIRED", updated=iso(self.now()))
            return self.invoice_callback(invoice)

    def settle(self, ref: str) -> Delivery:
        """A paid invoice's money reaches the balance. Returns the SETTLED invoice callback."""
        with self._lock:
            invoice = self.invoice(ref)
            if invoice["status"] != "PAID":
                raise ValueError(f"invoice {invoice['id']} is {invoice['status']}, not PAID")
            invoice.update(status="SETTLED", updated=iso(self.now()))
            return self.invoice_callback(invoice)

    def invoice_callback(self, invoice: dict[str, Any]) -> Delivery:
        fields = (
            "id",
            "external_id",
            "user_id",
            "is_high",
            "payment_method",
            "status",
            "merchant_name",
            "amount",
            "paid_amount",
            "paid_at",
            "payer_email",
            "description",
            "adjusted_received_amount",
            "fees_paid_amount",
            "updated",
            "created",
            "currency",
            "payment_channel",
            "payment_destination",
            "payment_id",
            "success_redirect_url",
            "failure_redirect_url",
        )
        return self.callback({name: invoice[name] for name in fields if invoice.get(name) is not None})

    # --- records -----------------------------------------------------------------------------------------------

    def new_invoice(self, data: dict[str, Any]) -> dict[str, Any]:
        external_id = data.get("external_id")
        if not isinstance(external_id, str) or not external_id:
            raise XenditError(400, "API_VALIDATION_ERROR", '"external_id" is required')
        currency = data.get("currency", "IDR")
        if currency not in CURRENCIES:
            raise XenditError(400, "UNSUPPORTED_CURRENCY", f"Currency {currency} is not supported")
        amount = amount_of(data.get("amount"))
        if currency == "IDR":
            amount = Decimal(int(amount))  # Xendit drops IDR decimals: 4550.50 becomes 4550
        if amount < 1:
            raise XenditError(400, "API_VALIDATION_ERROR", '"amount" must be greater than or equal to 1')
        duration = data.get("invoice_duration", DEFAULT_DURATION)
        if isinstance(duration, bool) or not isinstance(duration, int) or duration < 1:
            raise XenditError(400, "API_VALIDATION_ERROR", '"invoice_duration" must be a positive integer')
        for name in ("description", "success_redirect_url", "failure_redirect_url", "payer_email"):
            if data.get(name) is not None and not isinstance(data[name], str):
                raise XenditError(400, "API_VALIDATION_ERROR", f'"{name}" must be a string')
        invoice_id = object_id()
        now = self.now()
        invoice = {
            "id": invoice_id,
            "external_id": external_id,
            "user_id": self.business_id,
            "status": "PENDING",
            "merchant_name": "VPN Shop Emulated",
            "merchant_profile_picture_url": "https://xnd-companies.s3.amazonaws.com/prod/default.png",
            "amount": number(amount),
            "payer_email": data.get("payer_email"),
            "description": data.get("description"),
            "expiry_date": iso(now + duration),
            "invoice_url": f"https://checkout-staging.xendit.co/web/{invoice_id}",
            "available_banks": [],
            "available_retail_outlets": [],
            "available_ewallets": [{"ewallet_type": "OVO"}, {"ewallet_type": "DANA"}],
            "available_qr_codes": [{"qr_code_type": "QRIS"}],
            "available_direct_debits": [],
            "available_paylaters": [],
            "should_exclude_credit_card": False,
            "should_send_email": False,
            "success_redirect_url": data.get("success_redirect_url"),
            "failure_redirect_url": data.get("failure_redirect_url"),
            "created": iso(now),
            "updated": iso(now),
            "currency": currency,
            "is_high": False,
            "_expires": now + duration,
        }
        self.invoices[invoice_id] = invoice
        return invoice

    def new_qr(self, data: dict[str, Any]) -> dict[str, Any]:
        reference_id = data.get("reference_id")
        if not isinstance(reference_id, str) or not reference_id:
            raise XenditError(400, "API_VALIDATION_ERROR", "reference_id is required")
        kind = data.get("type")
        if kind not in ("DYNAMIC", "STATIC"):
            raise XenditError(400, "API_VALIDATION_ERROR", "type must be one of DYNAMIC, STATIC")
        if data.get("currency", "IDR") != "IDR":
            raise XenditError(400, "API_VALIDATION_ERROR", "currency must be IDR")
        amount = None
        if kind == "DYNAMIC" or data.get("amount") is not None:
            amount = amount_of(data.get("amount"))
            if amount != amount.to_integral_value() or amount < 1:
                raise XenditError(400, "API_VALIDATION_ERROR", "amount must be a whole number of at least 1")
        expires = None
        if data.get("expires_at") is not None:
            try:
                expires = datetime.fromisoformat(str(data["expires_at"])).timestamp()
            except ValueError:
                raise XenditError(400, "API_VALIDATION_ERROR", "expires_at must be an ISO 8601 date") from None
        now = self.now()
        qr = {
            "id": f"qr_{uuid.uuid4()}",
            "reference_id": reference_id,
            "business_id": self.business_id,
            "type": kind,
            "currency": "IDR",
            "amount": number(amount) if amount is not None else None,
            "channel_code": "ID_DANA",
            "status": "ACTIVE",
            "qr_string": "00020101021226660014ID.LINKAJA.WWW011893600911002411480002152003260324114800303UME"
            + hashlib.sha256(reference_id.encode()).hexdigest()[:16],
            "expires_at": iso(expires) if expires is not None else None,
            "created": iso(now),
            "updated": iso(now),
            "metadata": data.get("metadata"),
            "_expires": expires,
        }
        self.qr_codes[qr["id"]] = qr
        return qr

    # --- the ASGI entry point ----------------------------------------------------------------------------------

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI app: counts and logs API requests and applies armed faults before Xendit's logic."""
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


def amount_of(value: Any) -> Decimal:
    if value is None:
        raise XenditError(400, "API_VALIDATION_ERROR", '"amount" is required')
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise XenditError(400, "API_VALIDATION_ERROR", '"amount" must be a number')
    return Decimal(value)


def public(entity: dict[str, Any]) -> dict[str, Any]:
    return {key: copy.deepcopy(value) for key, value in entity.items() if not key.startswith("_")}


# --------------------------------------------------------------------------------------------------------------
# Routes


def build_api(emu: XenditEmulator) -> FastAPI:
    api = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @api.exception_handler(XenditError)
    async def refusal(_: Request, exc: XenditError) -> Response:
        return answer(exc.body, exc.status)

    def authenticate(request: Request) -> None:
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        try:
            user, _, password = base64.b64decode(encoded).partition(b":")
        except ValueError:
            user = password = b"?"
        good = hmac.compare_digest(user, emu.secret_key.encode()) and not password
        if scheme.lower() != "basic" or not good:
            raise XenditError(401, "INVALID_API_KEY", "API key is not authorized for this API service")
        if not emu.key_permitted:
            # A valid key whose permissions (set per product in the dashboard) do not cover this API.
            raise XenditError(403, "REQUEST_FORBIDDEN_ERROR", "The API key is forbidden to perform this request")

    def require_qr_version(request: Request) -> None:
        if request.headers.get("api-version") != QR_API_VERSION:
            # Without the header Xendit speaks QR Codes v1, which wants external_id and callback_url.
            raise XenditError(400, "API_VALIDATION_ERROR", '"external_id" is required. "callback_url" is required')

    async def json_body(request: Request) -> dict[str, Any]:
        try:
            data = json.loads(await request.body() or b"{}", parse_float=Decimal)
        except (ValueError, InvalidOperation):
            raise XenditError(400, "API_VALIDATION_ERROR", "Request body is not valid JSON") from None
        if not isinstance(data, dict):
            raise XenditError(400, "API_VALIDATION_ERROR", "Request body must be an object")
        return data

    async def idempotent(request: Request, route: str, create: Any) -> Response:
        """Run `create(body)` once per X-IDEMPOTENCY-KEY: a repeat with the same body gets the first answer."""
        raw = await request.body()
        key = request.headers.get("x-idempotency-key")
        fingerprint = hashlib.sha256(raw).hexdigest()
        data = await json_body(request)
        with emu._lock:
            if key is not None and (route, key) in emu._idempotent:
                seen, status, data = emu._idempotent[(route, key)]
                if seen != fingerprint:
                    raise XenditError(
                        409, "DUPLICATE_ERROR", "The idempotency key was already used with a different request"
                    )
                return answer(data, status)
            data = public(create(data))
            if key is not None:
                emu._idempotent[(route, key)] = (fingerprint, 200, data)
            return answer(data)

    def found_invoice(invoice_id: str) -> dict[str, Any]:
        if invoice_id not in emu.invoices:
            raise XenditError(404, "INVOICE_NOT_FOUND_ERROR", "Could not find invoice by id")
        return emu.refresh_invoice(emu.invoices[invoice_id])

    def found_qr(qr_id: str) -> dict[str, Any]:
        if qr_id not in emu.qr_codes:
            raise XenditError(404, "DATA_NOT_FOUND", "QR code not found")
        return emu.refresh_qr(emu.qr_codes[qr_id])

    # --- invoices ---

    @api.post("/v2/invoices")
    async def create_invoice(request: Request) -> Response:
        authenticate(request)
        return await idempotent(request, "invoice", emu.new_invoice)

    @api.get("/v2/invoices/{invoice_id}")
    async def get_invoice(invoice_id: str, request: Request) -> Response:
        authenticate(request)
        with emu._lock:
            return answer(public(found_invoice(invoice_id)))

    @api.get("/v2/invoices")
    async def list_invoices(request: Request) -> Response:
        authenticate(request)
        wanted = request.query_params.get("external_id")
        with emu._lock:
            invoices = [emu.refresh_invoice(i) for i in emu.invoices.values()]
            return answer([public(i) for i in invoices if wanted is None or i["external_id"] == wanted])

    @api.post("/invoices/{invoice_id}/expire!")
    async def expire_invoice(invoice_id: str, request: Request) -> Response:
        authenticate(request)
        with emu._lock:
            invoice = found_invoice(invoice_id)
            if invoice["status"] != "PENDING":
                raise XenditError(404, "INVOICE_NOT_FOUND_ERROR", f"Invoice is already {invoice['status']}")
            delivery = emu.expire(invoice_id)
            data = public(invoice)
        await emu.deliver(delivery)
        return answer(data)

    # --- QR codes (v2) ---

    @api.post("/qr_codes")
    async def create_qr(request: Request) -> Response:
        authenticate(request)
        require_qr_version(request)
        return await idempotent(request, "qr", emu.new_qr)

    @api.get("/qr_codes/{qr_id}")
    async def get_qr(qr_id: str, request: Request) -> Response:
        authenticate(request)
        require_qr_version(request)
        with emu._lock:
            return answer(public(found_qr(qr_id)))

    @api.get("/qr_codes/{qr_id}/payments")
    async def list_qr_payments(qr_id: str, request: Request) -> Response:
        authenticate(request)
        require_qr_version(request)
        with emu._lock:
            found_qr(qr_id)
            return answer({"data": copy.deepcopy(emu.qr_payments.get(qr_id, [])), "has_more": False})

    @api.post("/qr_codes/{qr_id}/payments/simulate")
    async def simulate_qr_payment(qr_id: str, request: Request) -> Response:
        authenticate(request)
        data = await json_body(request)
        with emu._lock:
            qr = found_qr(qr_id)
            if qr["status"] != "ACTIVE":
                raise XenditError(400, "INACTIVE_QR_CODE", "QR code is inactive")
            delivery = emu.pay_qr(qr_id, amount=data.get("amount"))
            payment = copy.deepcopy(emu.qr_payments[qr_id][-1])
        await emu.deliver(delivery)
        return answer(payment)

    # --- control endpoints (no auth, no faults) ---

    async def control(action: Any, *args: Any, **kwargs: Any) -> Response:
        try:
            delivery = action(*args, **kwargs)
        except (KeyError, ValueError) as exc:
            return answer({"error": str(exc)}, 409)
        status = await emu.deliver(delivery)
        return answer(
            {
                "webhook_id": delivery.headers["webhook-id"],
                "delivered_status": status,
                "callback": json.loads(delivery.body, parse_float=Decimal),
            }
        )

    async def options(request: Request) -> dict[str, Any]:
        raw = await request.body()
        return json.loads(raw, parse_float=Decimal) if raw else {}

    @api.post("/_emu/xendit/invoices/{ref}/pay")
    async def emu_pay_invoice(ref: str, request: Request) -> Response:
        return await control(emu.pay, ref, **(await options(request)))

    @api.post("/_emu/xendit/invoices/{ref}/expire")
    async def emu_expire(ref: str) -> Response:
        return await control(emu.expire, ref)

    @api.post("/_emu/xendit/invoices/{ref}/settle")
    async def emu_settle(ref: str) -> Response:
        return await control(emu.settle, ref)

    @api.post("/_emu/xendit/qr_codes/{ref}/pay")
    async def emu_pay_qr(ref: str, request: Request) -> Response:
        return await control(emu.pay_qr, ref, **(await options(request)))

    return api


# --------------------------------------------------------------------------------------------------------------
# ASGI plumbing


def record(scope: Scope, route: str, body: bytes) -> Recorded:
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
    query = dict(parse_qsl(scope.get("query_string", b"").decode()))
    try:
        parsed = json.loads(body, parse_float=Decimal) if body else None
    except ValueError:
        parsed = None
    return Recorded(scope["method"], route, scope["path"], query, headers, body, parsed)


async def send_fault(send: Send, fault: Fault) -> None:
    extra: list[tuple[bytes, bytes]] = []
    if fault.status == 429:
        error = XenditError(429, "RATE_LIMIT_EXCEEDED", "Rate limit exceeded. Please retry later")
        if fault.retry_after is not None:
            extra.append((b"retry-after", str(fault.retry_after).encode()))
    elif fault.status >= 500:
        error = XenditError(fault.status, "SERVER_ERROR", "An unexpected error occurred, our team has been notified")
    else:
        error = XenditError(fault.status, "API_VALIDATION_ERROR", "Bad request")
    body = dumps(error.body)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra]
    await send({"type": "http.response.start", "status": fault.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
