"""An HTTP emulator of the Crypto Pay API (@CryptoBot), written from shared/reference/payments_api.md §5 and §10.4.

Serve `emulator.app` with `tests.emulators.harness.serve`; point the adapter at `emulator.settings(base_url)`.
`GET|POST /api/<method>` (query, JSON or form parameters) with the `Crypto-Pay-API-Token` header, answering
`{"ok": true, "result": …}` or `{"ok": false, "error": {"code", "name"}}`: createInvoice (validated),
getInvoices (`invoice_ids`, `status`, `asset`, `fiat`, `offset`, `count`), deleteInvoice and getMe. Invoices
past their `expires_in` read as `expired` on the emulator's injectable clock. Tests drive the customer through
`pay` (returns the signed `invoice_paid` webhook, not sent) and `expire`, and the faults through `fail_next` and
`delay_next`.

Guessed where the reference is silent (a sandbox must confirm): the HTTP status of error answers (the error
code), the error names other than UNAUTHORIZED, the exchange rates and fee, and the order of getInvoices.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qsl

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.types import Receive, Scope, Send

from tests.emulators.asgi import read_body, replay, wait_for_disconnect
from tests.emulators.payments_common import Delivery, post_delivery

ASSETS = ("USDT", "TON", "BTC", "ETH", "LTC", "BNB", "TRX", "USDC")
FIATS = ("RUB", "USD", "EUR", "BYN", "UAH", "KZT", "GBP", "CNY")
PAID_BUTTONS = ("viewItem", "openChannel", "openBot", "callback")
MAX_EXPIRES_IN = 2_678_400
# Made-up but fixed rates (fiat per asset), so paid_amount is deterministic.
RATES: dict[str, dict[str, Decimal]] = {
    "USDT": {"RUB": Decimal("90"), "USD": Decimal("1"), "EUR": Decimal("0.92")},
    "TON": {"RUB": Decimal("450"), "USD": Decimal("5"), "EUR": Decimal("4.6")},
    "BTC": {"RUB": Decimal("9000000"), "USD": Decimal("100000"), "EUR": Decimal("92000")},
}
FEE = Decimal("0.03")


def signature(token: str, body: bytes) -> str:
    """§5.3: hex HMAC-SHA256 keyed with sha256(token) raw digest, over the raw body."""
    return hmac.new(hashlib.sha256(token.encode()).digest(), body, hashlib.sha256).hexdigest()


def compact(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


def iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def plain(value: Decimal) -> str:
    return f"{value.normalize():f}"


def ok(result: Any) -> Response:
    return Response(compact({"ok": True, "result": result}), media_type="application/json")


def failed(code: int, name: str, headers: dict[str, str] | None = None) -> Response:
    return Response(
        compact({"ok": False, "error": {"code": code, "name": name}}),
        status_code=code,
        media_type="application/json",
        headers=headers,
    )


class ApiError(Exception):
    def __init__(self, name: str, code: int = 400) -> None:
        super().__init__(name)
        self.name, self.code = name, code


# --------------------------------------------------------------------------------------------------------------
# Records


@dataclass(slots=True)
class Invoice:
    invoice_id: int
    hash: str
    currency_type: str
    asset: str | None
    fiat: str | None
    amount: str
    accepted_assets: list[str] | None
    description: str | None
    hidden_message: str | None
    payload: str | None
    paid_btn_name: str | None
    paid_btn_url: str | None
    allow_comments: bool
    allow_anonymous: bool
    created_at: datetime
    expires_at: datetime | None
    status: str = "active"
    paid_at: datetime | None = None
    paid_asset: str | None = None
    paid_amount: str | None = None
    paid_fiat_rate: str | None = None
    paid_usd_rate: str | None = None
    fee_asset: str | None = None
    fee_amount: str | None = None
    fee_in_usd: str | None = None
    comment: str | None = None
    deleted: bool = False


@dataclass(frozen=True, slots=True)
class Recorded:
    """One API request as received; `params` merges the query and a JSON or form body."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    params: dict[str, Any]


@dataclass(slots=True)
class Fault:
    status: int | None = None
    retry_after: int | None = None
    seconds: float = 0.0
    remaining: int = 1


# --------------------------------------------------------------------------------------------------------------
# The emulator


class CryptoPayEmulator:
    """Crypto Pay for one app (one token). Safe to call from the test thread while the server runs."""

    def __init__(
        self,
        *,
        token: str = "12345:AAtestCryptoPayToken",
        app_name: str = "vpnshop-test",
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.token = token
        self.app_id = int(token.split(":", 1)[0]) if token.split(":", 1)[0].isdigit() else 1
        self.app_name = app_name
        self._clock = clock or (lambda: datetime.now(UTC))
        self._offset = timedelta(0)
        self.invoices: dict[int, Invoice] = {}
        self.requests: list[Recorded] = []
        self.counts: Counter[str] = Counter()  # API method name → requests
        self.webhook_url: str | None = None
        self.webhook_attempts = 3
        self._next_id = 528890
        self._next_update = 1
        self._faults: list[Fault] = []
        self._lock = threading.RLock()
        self.app = _Front(self, build_api(self))

    # --- clock and settings ------------------------------------------------------------------------------------

    def now(self) -> datetime:
        return self._clock() + self._offset

    def advance(self, seconds: float) -> None:
        """Move the emulator's clock (invoice expiry) without waiting."""
        self._offset += timedelta(seconds=seconds)

    def settings(self, base_url: str) -> dict[str, Any]:
        return {
            "cryptopay_api_url": base_url + "/api",
            "cryptopay_api_token": self.token,
            "cryptopay_assets": "USDT,TON",
        }

    # --- fault knobs -------------------------------------------------------------------------------------------

    def fail_next(self, status: int, retry_after: int | None = None, times: int = 1) -> None:
        """Answer the next `times` API requests with `status` (429 carries Retry-After when given)."""
        with self._lock:
            self._faults.append(Fault(status=status, retry_after=retry_after, remaining=times))

    def delay_next(self, seconds: float, times: int = 1) -> None:
        """Hold the next `times` API requests for `seconds` (then answer, unless the client hung up)."""
        with self._lock:
            self._faults.append(Fault(seconds=seconds, remaining=times))

    def take_fault(self) -> Fault | None:
        with self._lock:
            if not self._faults:
                return None
            fault = self._faults[0]
            fault.remaining -= 1
            if fault.remaining <= 0:
                self._faults.pop(0)
            return fault

    # --- the customer's side -----------------------------------------------------------------------------------

    def pay(
        self,
        invoice_id_or_order_id: int | str,
        *,
        amount: Decimal | None = None,
        currency: str | None = None,
        paid_asset: str = "USDT",
        comment: str | None = None,
    ) -> Delivery:
        """The customer pays the invoice. `amount`/`currency` replace the invoice's amount and fiat (or asset) in
        what the webhook and getInvoices report, for the wrong-amount case. Returns the webhook, not sent."""
        with self._lock:
            invoice = self.find(invoice_id_or_order_id)
            if self.status(invoice) != "active":
                raise ValueError(f"invoice {invoice.invoice_id} is {self.status(invoice)}")
            if amount is not None:
                invoice.amount = plain(Decimal(amount))
            if currency is not None:
                if currency in FIATS:
                    invoice.currency_type, invoice.fiat, invoice.asset = "fiat", currency, None
                else:
                    invoice.currency_type, invoice.asset, invoice.fiat = "crypto", currency, None
            self._settle(invoice, paid_asset, comment)
            return self.delivery(invoice)

    def _settle(self, invoice: Invoice, paid_asset: str, comment: str | None) -> None:
        price = Decimal(invoice.amount)
        if invoice.currency_type == "crypto":
            asset = invoice.asset or paid_asset
            paid, fiat_rate = price, Decimal(1)
        else:
            asset = paid_asset
            if invoice.accepted_assets and asset not in invoice.accepted_assets:
                raise ValueError(f"{asset} is not accepted by invoice {invoice.invoice_id}")
            fiat_rate = RATES.get(asset, {}).get(invoice.fiat or "", Decimal(1))
            paid = (price / fiat_rate).quantize(Decimal("0.000001"))
        usd_rate = RATES.get(asset, {}).get("USD", Decimal(1))
        fee = (paid * FEE).quantize(Decimal("0.000001"))
        invoice.status = "paid"
        invoice.paid_at = self.now()
        invoice.paid_asset, invoice.paid_amount = asset, plain(paid)
        invoice.paid_fiat_rate, invoice.paid_usd_rate = plain(fiat_rate), plain(usd_rate)
        invoice.fee_asset, invoice.fee_amount, invoice.fee_in_usd = asset, plain(fee), plain(fee * usd_rate)
        invoice.comment = comment

    def expire(self, invoice_id_or_order_id: int | str) -> Invoice:
        """The invoice's time runs out: it reads as `expired` and can no longer be paid (no webhook)."""
        with self._lock:
            invoice = self.find(invoice_id_or_order_id)
            invoice.status = "expired"
            invoice.expires_at = self.now()
            return invoice

    def delivery(self, invoice: Invoice, update_type: str = "invoice_paid") -> Delivery:
        """The webhook Crypto Pay sends about `invoice`, compact JSON as signed (§10.4)."""
        with self._lock:
            update_id, self._next_update = self._next_update, self._next_update + 1
        body = compact(
            {
                "update_id": update_id,
                "update_type": update_type,
                "request_date": iso(self.now()),
                "payload": invoice_json(self, invoice),
            }
        )
        return self.signed(body)

    def signed(self, body: bytes) -> Delivery:
        """Any bytes, signed with this app's token (for malformed-but-genuine bodies)."""
        return Delivery(
            body=body,
            headers={"Content-Type": "application/json", "crypto-pay-api-signature": signature(self.token, body)},
        )

    def forged(self, delivery: Delivery) -> Delivery:
        """The same body signed with another app's token."""
        return delivery.with_header("crypto-pay-api-signature", signature(self.token + "-forged", delivery.body))

    async def deliver(self, delivery: Delivery) -> httpx.Response:
        """POST a delivery to `webhook_url`, retrying non-2xx answers."""
        if not self.webhook_url:
            raise RuntimeError("set webhook_url first")
        return await post_delivery(self.webhook_url, delivery, attempts=self.webhook_attempts)

    # --- lookups -----------------------------------------------------------------------------------------------

    def find(self, invoice_id_or_order_id: int | str) -> Invoice:
        with self._lock:
            key = str(invoice_id_or_order_id)
            if key.isdigit() and int(key) in self.invoices:
                return self.invoices[int(key)]
            matches = [i for i in self.invoices.values() if i.payload == key and not i.deleted]
            if not matches:
                raise KeyError(f"no invoice {invoice_id_or_order_id!r}")
            return matches[-1]

    def status(self, invoice: Invoice) -> str:
        if invoice.status == "active" and invoice.expires_at is not None and invoice.expires_at <= self.now():
            return "expired"
        return invoice.status

    def calls(self, method: str) -> list[Recorded]:
        return [r for r in self.requests if r.path == f"/api/{method}"]

    # --- API methods -------------------------------------------------------------------------------------------

    def record(self, scope: Scope, body: bytes) -> None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        params = params_of(scope.get("query_string", b""), headers.get("content-type", ""), body)
        with self._lock:
            self.requests.append(Recorded(scope["method"], scope["path"], headers, body, params))
            self.counts[scope["path"].removeprefix("/api/")] += 1

    def call(self, method: str, token: str | None, params: dict[str, Any]) -> Any:
        if token != self.token:
            raise ApiError("UNAUTHORIZED", 401)
        handler = {
            "getMe": self.get_me,
            "createInvoice": self.create_invoice,
            "getInvoices": self.get_invoices,
            "deleteInvoice": self.delete_invoice,
        }.get(method)
        if handler is None:
            raise ApiError("METHOD_NOT_FOUND", 405)
        with self._lock:
            return handler(params)

    def get_me(self, _: dict[str, Any]) -> dict[str, Any]:
        return {"app_id": self.app_id, "name": self.app_name, "payment_processing_bot_username": "CryptoBot"}

    def create_invoice(self, params: dict[str, Any]) -> dict[str, Any]:
        currency_type = params.get("currency_type") or "crypto"
        asset = fiat = accepted = None
        if currency_type == "crypto":
            asset = params.get("asset")
            if asset not in ASSETS:
                raise ApiError("ASSET_INVALID")
        elif currency_type == "fiat":
            fiat = params.get("fiat")
            if fiat not in FIATS:
                raise ApiError("FIAT_INVALID")
            accepted = split_list(params.get("accepted_assets")) or ["USDT", "TON", "BTC"]
            if any(a not in ASSETS for a in accepted):
                raise ApiError("ACCEPTED_ASSETS_INVALID")
        else:
            raise ApiError("CURRENCY_TYPE_INVALID")
        amount = decimal_param(params.get("amount"))
        if amount is None or amount <= 0:
            raise ApiError("AMOUNT_INVALID")
        description, hidden = params.get("description"), params.get("hidden_message")
        if description is not None and len(str(description)) > 1024:
            raise ApiError("DESCRIPTION_TOO_LONG")
        if hidden is not None and len(str(hidden)) > 2048:
            raise ApiError("HIDDEN_MESSAGE_TOO_LONG")
        payload = params.get("payload")
        if payload is not None and len(str(payload).encode()) > 4096:
            raise ApiError("PAYLOAD_TOO_LONG")
        button, button_url = params.get("paid_btn_name"), params.get("paid_btn_url")
        if button is not None and button not in PAID_BUTTONS:
            raise ApiError("PAID_BTN_NAME_INVALID")
        if button is not None and not str(button_url or "").startswith(("http://", "https://")):
            raise ApiError("PAID_BTN_URL_INVALID")
        expires_at = None
        if params.get("expires_in") is not None:
            seconds = int_param(params["expires_in"])
            if seconds is None or not 1 <= seconds <= MAX_EXPIRES_IN:
                raise ApiError("EXPIRES_IN_INVALID")
            expires_at = self.now() + timedelta(seconds=seconds)
        invoice = Invoice(
            invoice_id=self._next_id,
            hash="IV" + secrets.token_urlsafe(9),
            currency_type=currency_type,
            asset=asset,
            fiat=fiat,
            amount=str(params["amount"]),
            accepted_assets=accepted,
            description=str(description) if description is not None else None,
            hidden_message=str(hidden) if hidden is not None else None,
            payload=str(payload) if payload is not None else None,
            paid_btn_name=button,
            paid_btn_url=button_url,
            allow_comments=bool_param(params.get("allow_comments"), True),
            allow_anonymous=bool_param(params.get("allow_anonymous"), True),
            created_at=self.now(),
            expires_at=expires_at,
        )
        self._next_id += 1
        self.invoices[invoice.invoice_id] = invoice
        return invoice_json(self, invoice)

    def get_invoices(self, params: dict[str, Any]) -> dict[str, Any]:
        ids = None
        if params.get("invoice_ids") not in (None, ""):
            raw_ids = split_list(params["invoice_ids"])
            if not all(i.isdigit() for i in raw_ids):
                raise ApiError("INVOICE_IDS_INVALID")
            ids = {int(i) for i in raw_ids}
        status = params.get("status")
        if status not in (None, "", "active", "paid", "expired"):
            raise ApiError("STATUS_INVALID")
        offset, count = int_param(params.get("offset", 0)), int_param(params.get("count", 100))
        if offset is None or offset < 0:
            raise ApiError("OFFSET_INVALID")
        if count is None or not 1 <= count <= 1000:
            raise ApiError("COUNT_INVALID")
        assets, fiats = split_list(params.get("asset")), split_list(params.get("fiat"))
        items = [
            i
            for i in self.invoices.values()
            if not i.deleted
            and (ids is None or i.invoice_id in ids)
            and (not status or self.status(i) == status)
            and (not assets or i.asset in assets or i.paid_asset in assets)
            and (not fiats or i.fiat in fiats)
        ]
        return {"items": [invoice_json(self, i) for i in items[offset : offset + count]]}

    def delete_invoice(self, params: dict[str, Any]) -> bool:
        invoice_id = int_param(params.get("invoice_id"))
        invoice = self.invoices.get(invoice_id) if invoice_id is not None else None
        if invoice is None or invoice.deleted:
            raise ApiError("INVOICE_NOT_FOUND")
        invoice.deleted = True
        return True


# --------------------------------------------------------------------------------------------------------------
# JSON and parameters


def invoice_json(emulator: CryptoPayEmulator, invoice: Invoice) -> dict[str, Any]:
    """The Invoice object (§5.2); paid invoices add the paid_* and fee fields."""
    data: dict[str, Any] = {
        "invoice_id": invoice.invoice_id,
        "hash": invoice.hash,
        "currency_type": invoice.currency_type,
    }
    if invoice.currency_type == "crypto":
        data["asset"] = invoice.asset
    else:
        data["fiat"] = invoice.fiat
        data["accepted_assets"] = invoice.accepted_assets
    data |= {
        "amount": invoice.amount,
        "pay_url": f"https://t.me/CryptoBot?start={invoice.hash}",
        "bot_invoice_url": f"https://t.me/CryptoBot?start={invoice.hash}",
        "mini_app_invoice_url": f"https://t.me/CryptoBot/app?startapp=invoice-{invoice.hash}&mode=compact",
        "web_app_invoice_url": f"https://app.send.tg/invoices/{invoice.hash}",
        "description": invoice.description,
        "status": emulator.status(invoice),
        "created_at": iso(invoice.created_at),
        "allow_comments": invoice.allow_comments,
        "allow_anonymous": invoice.allow_anonymous,
    }
    optional = {
        "expiration_date": iso(invoice.expires_at),
        "hidden_message": invoice.hidden_message,
        "payload": invoice.payload,
        "paid_btn_name": invoice.paid_btn_name,
        "paid_btn_url": invoice.paid_btn_url,
    }
    data |= {k: v for k, v in optional.items() if v is not None}
    if invoice.status == "paid":
        data |= {
            "paid_asset": invoice.paid_asset,
            "paid_amount": invoice.paid_amount,
            "paid_fiat_rate": invoice.paid_fiat_rate,
            "paid_usd_rate": invoice.paid_usd_rate,
            "fee_asset": invoice.fee_asset,
            "fee_amount": invoice.fee_amount,
            "fee_in_usd": invoice.fee_in_usd,
            "paid_anonymously": False,
            "paid_at": iso(invoice.paid_at),
        }
        if invoice.comment:
            data["comment"] = invoice.comment
    return data


def params_of(query: bytes, content_type: str, body: bytes) -> dict[str, Any]:
    """Method parameters from the query string and a JSON or form body (§5.1: both GET and POST work)."""
    params: dict[str, Any] = dict(parse_qsl(query.decode()))
    if body and "json" in content_type:
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            params |= parsed
    elif body and "form" in content_type:
        params |= dict(parse_qsl(body.decode()))
    return params


def split_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v).strip() for v in value if str(v).strip()]
    return [part.strip() for part in str(value).split(",") if part.strip()]


def decimal_param(value: Any) -> Decimal | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def int_param(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    text = str(value).strip()
    return int(text) if text.lstrip("-").isdigit() else None


def bool_param(value: Any, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    return str(value).lower() == "true"


# --------------------------------------------------------------------------------------------------------------
# Routes


def build_api(emulator: CryptoPayEmulator) -> FastAPI:
    api = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @api.api_route("/api/{method}", methods=["GET", "POST"])
    async def call(method: str, request: Request) -> Response:
        params = params_of(request.url.query.encode(), request.headers.get("content-type", ""), await request.body())
        try:
            return ok(emulator.call(method, request.headers.get("crypto-pay-api-token"), params))
        except ApiError as exc:
            return failed(exc.code, exc.name)

    # --- control endpoints (tests and manual runs) -------------------------------------------------------------

    async def dispatch(delivery: Delivery) -> dict[str, Any]:
        if not emulator.webhook_url:
            return {"delivered": None}
        try:
            response = await emulator.deliver(delivery)
        except httpx.HTTPError as exc:
            return {"delivered": None, "error": str(exc)}
        return {"delivered": response.status_code}

    @api.post("/_emu/cryptopay/invoices/{invoice_id}/pay")
    async def emu_pay(invoice_id: int, request: Request) -> Response:
        body = json.loads(await request.body() or b"{}")
        try:
            amount = body.get("amount") or body.get("paid_amount")
            delivery = emulator.pay(
                invoice_id,
                amount=Decimal(str(amount)) if amount is not None else None,
                currency=body.get("currency"),
                paid_asset=body.get("paid_asset", "USDT"),
            )
        except (KeyError, ValueError, InvalidOperation) as exc:
            return Response(compact({"error": str(exc)}), status_code=409, media_type="application/json")
        return Response(compact({"invoice_id": invoice_id, **await dispatch(delivery)}), media_type="application/json")

    @api.post("/_emu/cryptopay/invoices/{invoice_id}/expire")
    async def emu_expire(invoice_id: int) -> Response:
        try:
            emulator.expire(invoice_id)
        except KeyError as exc:
            return Response(compact({"error": str(exc)}), status_code=404, media_type="application/json")
        return Response(compact({"ok": True}), media_type="application/json")

    @api.post("/_emu/cryptopay/fail-next")
    async def emu_fail(request: Request) -> Response:
        body = await request.json()
        emulator.fail_next(int(body["status"]), body.get("retry_after"), int(body.get("times", 1)))
        return Response(compact({"ok": True}), media_type="application/json")

    @api.post("/_emu/cryptopay/delay-next")
    async def emu_delay(request: Request) -> Response:
        body = await request.json()
        emulator.delay_next(float(body["seconds"]), int(body.get("times", 1)))
        return Response(compact({"ok": True}), media_type="application/json")

    @api.post("/_emu/cryptopay/webhook-url")
    async def emu_webhook(request: Request) -> Response:
        emulator.webhook_url = (await request.json()).get("url")
        return Response(compact({"ok": True}), media_type="application/json")

    return api


# --------------------------------------------------------------------------------------------------------------
# The ASGI front: request log and faults before the API


class _Front:
    def __init__(self, emulator: CryptoPayEmulator, api: FastAPI) -> None:
        self.emulator = emulator
        self.api = api

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/api/"):
            await self.api(scope, receive, send)
            return
        body = await read_body(receive)
        self.emulator.record(scope, body)
        fault = self.emulator.take_fault()
        if fault is not None and fault.status is not None:
            headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else None
            name = "TOO_MANY_REQUESTS" if fault.status == 429 else "INTERNAL_ERROR"
            await failed(fault.status, name, headers)(scope, receive, send)
            return
        if fault is not None and await wait_for_disconnect(receive, fault.seconds):
            return
        await self.api(scope, replay(body, receive), send)
