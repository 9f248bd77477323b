"""An HTTP emulator of WATA's H2H acquiring API, written from shared/reference/payments_api.md §3 and §10.2.

Serve `emulator.app` with `tests.emulators.harness.serve`; point the adapter at `emulator.settings(base_url)`.
It keeps links and transactions in memory, signs webhooks with an RSA-2048 key made at start (served without
auth by GET /api/h2h/public-key), enforces the Bearer token (401) and the IP allow-list (403), validates links
into WATA's 400 shape, limits GETs of one link/transaction/search to 1 per 30 s (429, Retry-After: 30) on its
own injectable clock, pages GET /v2/transactions by cursor and answers the old GET /transactions with an empty
404. Tests drive the customer side through `pay`, `decline`, `refund_delivery` (each returns the webhook
`Delivery` without sending it), and the faults through `fail_next`, `delay_next`, `rotate_key`, `expire`.

Guessed where the reference is silent (a sandbox must confirm): the bodies of 401/403/404/429, the refund
answer (a transaction object with `kind: "Refund"` and `originalTransactionId`), the fields of a transaction
in the search, the default sort (newest first), and which GETs the 1-per-30-s limit covers.
"""

from __future__ import annotations

import base64
import json
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.types import Receive, Scope, Send

from tests.emulators.asgi import read_body, replay, wait_for_disconnect
from tests.emulators.payments_common import Delivery, post_delivery

API = "/api/h2h"
CURRENCIES = ("RUB", "USD", "EUR")
MINIMUMS = {"RUB": Decimal("10"), "USD": Decimal("1"), "EUR": Decimal("1")}
MAXIMUM = Decimal("999999.99")
LINK_TYPES = ("OneTime", "ManyTime")
TRANSACTION_TYPES = ("CardCrypto", "SBP", "TPay")
RATE_WINDOW = timedelta(seconds=30)
COMMISSION = Decimal("0.02")
DEFAULT_LIFETIME = timedelta(days=3)


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


_forger: rsa.RSAPrivateKey | None = None


def forger_key() -> rsa.RSAPrivateKey:
    """One stranger's key per test run (RSA key generation is slow)."""
    global _forger
    if _forger is None:
        _forger = new_key()
    return _forger


def sign(key: rsa.RSAPrivateKey, body: bytes) -> str:
    return base64.b64encode(key.sign(body, padding.PKCS1v15(), hashes.SHA512())).decode()


def dumps(value: Any) -> str:
    """Compact JSON with Decimals as exact numbers, the way WATA (.NET) writes amounts: 1188.00."""
    if isinstance(value, Decimal):
        return f"{value:f}"
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(k))}:{dumps(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(dumps(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(dumps(data), status_code=status, media_type="application/json", headers=headers)


def error(
    status: int,
    message: str,
    *,
    details: str | None = None,
    validation: list | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """WATA's error shape (§3.1)."""
    body = {"error": {"code": None, "message": message, "details": details, "data": {}, "validationErrors": validation}}
    return json_response(body, status, headers)


# --------------------------------------------------------------------------------------------------------------
# Records


@dataclass(slots=True)
class Link:
    id: str
    amount: Decimal
    currency: str
    order_id: str | None
    description: str | None
    type: str
    success_url: str | None
    fail_url: str | None
    expires_at: datetime
    created_at: datetime
    status: str = "Opened"
    deleted: bool = False  # WATA deletes links after expiry (§3.2)


@dataclass(slots=True)
class Transaction:
    id: str
    kind: str  # Payment | Refund
    status: str  # Created | Pending | Paid | Declined
    type: str
    amount: Decimal
    currency: str
    order_id: str | None
    description: str | None
    link_id: str | None
    created_at: datetime
    payment_time: datetime | None = None
    commission: Decimal = Decimal("0.00")
    error_code: str | None = None
    error_description: str | None = None
    original_id: str | None = None  # refunds


@dataclass(frozen=True, slots=True)
class Recorded:
    """One API request as received."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body, parse_float=Decimal)


@dataclass(slots=True)
class Fault:
    status: int | None = None
    retry_after: int | None = None
    seconds: float = 0.0
    remaining: int = 1


class Rejected(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


# --------------------------------------------------------------------------------------------------------------
# The emulator


class WataEmulator:
    """WATA for one terminal. Everything a test inspects or steers is an attribute; safe to call from the test
    thread while the server runs."""

    def __init__(
        self,
        *,
        token: str = "wata-test-token",
        terminal_name: str = "vpnshop-test",
        clock: Callable[[], datetime] | None = None,
        private_key: rsa.RSAPrivateKey | None = None,
    ) -> None:
        self.token = token
        self.terminal_name = terminal_name
        self.terminal_public_id = str(uuid.uuid4())
        self._clock = clock or (lambda: datetime.now(UTC))
        self._offset = timedelta(0)
        self.private_key = private_key or new_key()
        self.links: dict[str, Link] = {}
        self.transactions: dict[str, Transaction] = {}
        self.requests: list[Recorded] = []
        self.counts: Counter[str] = Counter()  # "METHOD /path" (ids kept), API requests only
        # Knobs.
        self.token_valid = True  # False: the token expired or was revoked → 401
        self.ip_allowed = True  # False: this server's IP is not on the list → 403
        self.rate_limit = True
        self.max_page_size = 1000
        self.refund_status = "Paid"  # what a new refund becomes at once ("Pending": settled by refund_delivery)
        self.key_with_literal_newlines = False  # serve the PEM with "\\n" in place of line breaks
        self.webhook_url: str | None = None
        self.webhook_attempts = 3
        self._faults: list[Fault] = []
        self._last_get: dict[str, datetime] = {}
        self._lock = threading.RLock()
        self.app = _Front(self, build_api(self))

    # --- clock and settings ------------------------------------------------------------------------------------

    def now(self) -> datetime:
        return self._clock() + self._offset

    def advance(self, seconds: float) -> None:
        """Move the emulator's clock (rate-limit windows, link expiry) without waiting."""
        self._offset += timedelta(seconds=seconds)

    def settings(self, base_url: str) -> dict[str, Any]:
        return {"wata_api_url": base_url + API, "wata_api_key": self.token}

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

    def rotate_key(self) -> None:
        """WATA changes its signing key: later webhooks are signed with the new one."""
        self.private_key = new_key()

    def public_pem(self) -> str:
        return (
            self.private_key.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode()
        )

    def expire(self, link_id_or_order_id: str) -> Link:
        """The link's lifetime ends: WATA deletes it, so it can no longer be paid or read."""
        with self._lock:
            link = self.find_link(link_id_or_order_id)
            link.expires_at = self.now() - timedelta(seconds=1)
            link.deleted = True
            return link

    # --- the customer's side -----------------------------------------------------------------------------------

    def pay(
        self,
        link_id_or_order_id: str,
        *,
        amount: Decimal | None = None,
        currency: str | None = None,
        type: str = "SBP",
    ) -> Delivery:
        """The customer pays the link (with `amount`/`currency` if given: what the webhook and the transaction
        search then report). Returns the post-payment webhook, not sent."""
        return self._attempt(link_id_or_order_id, "Paid", amount=amount, currency=currency, type=type)

    def decline(
        self,
        link_id_or_order_id: str,
        *,
        type: str = "CardCrypto",
        error_code: str = "InsufficientFunds",
        error_description: str = "Insufficient funds",
    ) -> Delivery:
        """The bank declines the customer's attempt; the link stays open. Returns the webhook, not sent."""
        return self._attempt(
            link_id_or_order_id, "Declined", type=type, error_code=error_code, error_description=error_description
        )

    def _attempt(
        self,
        link_id_or_order_id: str,
        status: str,
        *,
        type: str,
        amount: Decimal | None = None,
        currency: str | None = None,
        error_code: str | None = None,
        error_description: str | None = None,
    ) -> Delivery:
        if type not in TRANSACTION_TYPES:
            raise ValueError(f"transaction type must be one of {TRANSACTION_TYPES}")
        with self._lock:
            link = self.find_link(link_id_or_order_id)
            if link.deleted or link.expires_at <= self.now():
                raise ValueError(f"link {link.id} has expired")
            if link.status != "Opened":
                raise ValueError(f"link {link.id} is {link.status}")
            now = self.now()
            paid_amount = Decimal(amount) if amount is not None else link.amount
            tx = Transaction(
                id=str(uuid.uuid4()),
                kind="Payment",
                status=status,
                type=type,
                amount=paid_amount,
                currency=currency or link.currency,
                order_id=link.order_id,
                description=link.description,
                link_id=link.id,
                created_at=now,
                payment_time=now,
                commission=(paid_amount * COMMISSION).quantize(Decimal("0.01")) if status == "Paid" else Decimal(0),
                error_code=error_code,
                error_description=error_description,
            )
            self.transactions[tx.id] = tx
            if status == "Paid" and link.type == "OneTime":
                link.status = "Closed"
            return self.delivery(tx)

    def refund_delivery(self, transaction_id_or_order_id: str, *, amount: Decimal | None = None) -> Delivery:
        """A refund of the order's paid payment completes: the pending one requested through the API, or a new
        one (as if made in the cabinet) of `amount` (default: all that is left). Returns the refund webhook."""
        with self._lock:
            original = self.find_paid(transaction_id_or_order_id)
            pending = [
                tx
                for tx in self.transactions.values()
                if tx.original_id == original.id and tx.status in ("Created", "Pending")
            ]
            if pending:
                refund = pending[0]
                refund.status = "Paid"
                refund.payment_time = self.now()
            else:
                left = self.refundable(original)
                refund = self._new_refund(original, amount if amount is not None else left, "Paid")
            return self.delivery(refund)

    def forged(self, delivery: Delivery) -> Delivery:
        """The same body signed by someone else's key."""
        return delivery.with_header("X-Signature", sign(forger_key(), delivery.body))

    def signed(self, body: bytes) -> Delivery:
        """Any bytes, signed with WATA's current key (for malformed-but-genuine bodies)."""
        return Delivery(
            body=body, headers={"Content-Type": "application/json", "X-Signature": sign(self.private_key, body)}
        )

    def delivery(self, tx: Transaction) -> Delivery:
        """The webhook WATA sends about `tx` (§3.3 shape)."""
        return self.signed(dumps(webhook_payload(self, tx)).encode())

    async def deliver(self, delivery: Delivery) -> httpx.Response:
        """POST a delivery to `webhook_url` the way WATA does, retrying non-2xx answers."""
        if not self.webhook_url:
            raise RuntimeError("set webhook_url first")
        return await post_delivery(self.webhook_url, delivery, attempts=self.webhook_attempts)

    # --- lookups -----------------------------------------------------------------------------------------------

    def find_link(self, link_id_or_order_id: str) -> Link:
        with self._lock:
            if link_id_or_order_id in self.links:
                return self.links[link_id_or_order_id]
            matches = [link for link in self.links.values() if link.order_id == link_id_or_order_id]
            if not matches:
                raise KeyError(f"no link {link_id_or_order_id!r}")
            return max(matches, key=lambda link: link.created_at)

    def find_paid(self, transaction_id_or_order_id: str) -> Transaction:
        with self._lock:
            tx = self.transactions.get(transaction_id_or_order_id)
            if tx is not None:
                if tx.kind != "Payment" or tx.status != "Paid":
                    raise ValueError(f"transaction {tx.id} is not a paid payment")
                return tx
            paid = [
                tx
                for tx in self.transactions.values()
                if tx.order_id == transaction_id_or_order_id and tx.kind == "Payment" and tx.status == "Paid"
            ]
            if not paid:
                raise KeyError(f"no paid transaction for {transaction_id_or_order_id!r}")
            return paid[-1]

    def refundable(self, original: Transaction) -> Decimal:
        """What is left to refund: pending refunds hold their amount back too (wata-mcp skill notes)."""
        taken = sum(
            (
                tx.amount
                for tx in self.transactions.values()
                if tx.original_id == original.id and tx.status in ("Created", "Pending", "Paid")
            ),
            Decimal(0),
        )
        return original.amount - taken

    def refunds_of(self, original_id: str) -> list[Transaction]:
        return [tx for tx in self.transactions.values() if tx.original_id == original_id]

    def _new_refund(self, original: Transaction, amount: Decimal, status: str) -> Transaction:
        now = self.now()
        refund = Transaction(
            id=str(uuid.uuid4()),
            kind="Refund",
            status=status,
            type=original.type,
            amount=amount,
            currency=original.currency,
            order_id=original.order_id,
            description=original.description,
            link_id=original.link_id,
            created_at=now,
            payment_time=now if status == "Paid" else None,
            original_id=original.id,
        )
        self.transactions[refund.id] = refund
        return refund

    # --- API helpers -------------------------------------------------------------------------------------------

    def record(self, scope: Scope, body: bytes) -> None:
        query: dict[str, list[str]] = {}
        for key, value in httpx.QueryParams(scope.get("query_string", b"").decode()).multi_items():
            query.setdefault(key, []).append(value)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        with self._lock:
            self.requests.append(Recorded(scope["method"], scope["path"], query, headers, body))
            self.counts[f"{scope['method']} {scope['path'].removeprefix(API)}"] += 1

    def requests_to(self, method: str, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == method and r.path == API + path]

    def authorize(self, request: Request) -> None:
        if request.headers.get("authorization") != f"Bearer {self.token}" or not self.token_valid:
            raise Rejected(error(401, "Unauthorized: the access token is missing, unknown or expired"))
        if not self.ip_allowed:
            raise Rejected(error(403, "Forbidden: requests from this IP address are not allowed"))

    def throttle(self, key: str) -> None:
        """1 GET per 30 s for one id or search (§3.1): Retry-After 30."""
        if not self.rate_limit:
            return
        with self._lock:
            now = self.now()
            last = self._last_get.get(key)
            if last is not None and now - last < RATE_WINDOW:
                raise Rejected(error(429, "Too many requests. Retry after 30 seconds", headers={"Retry-After": "30"}))
            self._last_get[key] = now

    def create_link(self, body: Any) -> Link:
        fields = validate_link(body, self.now())
        with self._lock:
            now = self.now()
            link = Link(id=str(uuid.uuid4()), created_at=now, **fields)
            self.links[link.id] = link
            return link

    def request_refund(self, body: Any) -> Transaction:
        if not isinstance(body, dict):
            raise Rejected(invalid([("input", "The input was not valid.")]))
        original_id = body.get("originalTransactionId")
        amount = body.get("amount")
        problems = []
        if not isinstance(original_id, str) or not original_id:
            problems.append(("originalTransactionId", "'Original Transaction Id' is required."))
        problems += amount_problems(amount, minimum=Decimal("0.01"), maximum=None)
        if problems:
            raise Rejected(invalid(problems))
        with self._lock:
            original = self.transactions.get(original_id)
            if original is None:
                raise Rejected(error(404, f"There is no entity Transaction with id = {original_id}!"))
            if original.kind != "Payment" or original.status != "Paid":
                raise Rejected(invalid([("originalTransactionId", "Only a Paid payment can be refunded.")]))
            if amount > self.refundable(original):
                message = "The refund amount exceeds the amount available for refund."
                raise Rejected(invalid([("amount", message)]))
            return self._new_refund(original, amount, self.refund_status)

    def search(self, query: dict[str, list[str]]) -> dict[str, Any]:
        def values(name: str) -> set[str]:
            found = {part for raw in query.get(name, []) for part in raw.split(",") if part}
            return found

        order_ids, statuses, link_ids = values("OrderId"), values("Statuses"), values("PaymentLinkIds")
        try:
            size = int((query.get("MaxResultCount") or ["10"])[0])
        except ValueError:
            raise Rejected(invalid([("maxResultCount", "The value is not valid for MaxResultCount.")])) from None
        if not 1 <= size <= 1000:
            raise Rejected(invalid([("maxResultCount", "'Max Result Count' must be between 1 and 1000.")]))
        size = min(size, self.max_page_size)
        with self._lock:
            items = [
                tx
                for tx in self.transactions.values()
                if (not order_ids or tx.order_id in order_ids)
                and (not statuses or tx.status in statuses)
                and (not link_ids or tx.link_id in link_ids)
            ]
        items.sort(key=lambda tx: (tx.created_at, tx.id), reverse=True)  # newest first
        cursor = (query.get("CursorId") or [None])[0]
        if cursor:
            position = next((i for i, tx in enumerate(items) if tx.id == cursor), None)
            if position is None:
                raise Rejected(invalid([("cursorId", "Unknown cursor.")]))
            items = items[position + 1 :]
        page, more = items[:size], len(items) > size
        last = page[-1] if page and more else None
        return {
            "hasNextPage": more,
            "nextCursorId": last.id if last else None,
            "nextCursorDate": iso(last.created_at) if last else None,
            "nextCursorAmount": last.amount if last else None,
            "items": [transaction_json(self, tx) for tx in page],
        }


# --------------------------------------------------------------------------------------------------------------
# Validation and JSON


def invalid(problems: list[tuple[str, str]]) -> Response:
    """WATA's 400: "Your request is invalid!" with one validation error per problem (§3.1)."""
    lines = "".join(f" - {message}\r\n" for _, message in problems)
    return error(
        400,
        "Your request is invalid!",
        details=f"The following errors were detected during validation.\r\n{lines}",
        validation=[{"message": message, "members": [member]} for member, message in problems],
    )


def amount_problems(amount: Any, *, minimum: Decimal, maximum: Decimal | None) -> list[tuple[str, str]]:
    if amount is None:
        return [("amount", "'Amount' is required.")]
    if isinstance(amount, bool) or not isinstance(amount, Decimal | int):
        # .NET does not read a string (or anything else) into a decimal.
        return [("amount", "The JSON value could not be converted to System.Decimal.")]
    value = Decimal(amount)
    if value.as_tuple().exponent < -2:  # type: ignore[operator]
        return [("amount", "'Amount' must not have more than 2 decimal places.")]
    if value < minimum or (maximum is not None and value > maximum):
        upper = f" and {maximum}" if maximum is not None else ""
        return [("amount", f"'Amount' must be at least {minimum}{upper}.")]
    return []


def validate_link(body: Any, now: datetime) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise Rejected(invalid([("input", "The input was not valid.")]))
    problems: list[tuple[str, str]] = []
    currency = body.get("currency")
    if currency is None:
        problems.append(("currency", "'Currency' is required."))
    elif currency not in CURRENCIES:
        problems.append(("currency", f"'Currency' has a range of values which does not include '{currency}'."))
    minimum = MINIMUMS.get(currency, Decimal("10")) if isinstance(currency, str) else Decimal("10")
    amount = body.get("amount")
    problems += amount_problems(amount, minimum=minimum, maximum=MAXIMUM)
    link_type = body.get("type", "OneTime")
    if link_type not in LINK_TYPES:
        problems.append(("type", f"'Type' has a range of values which does not include '{link_type}'."))
    expires_at = now + DEFAULT_LIFETIME
    raw_expiry = body.get("expirationDateTime")
    if raw_expiry is not None:
        try:
            expires_at = datetime.fromisoformat(raw_expiry)
            if expires_at.tzinfo is None:
                expires_at = expires_at.replace(tzinfo=UTC)
        except (TypeError, ValueError):
            problems.append(("expirationDateTime", "The value is not a valid date and time."))
        else:
            if expires_at <= now + timedelta(minutes=10):
                problems.append(("expirationDateTime", "The link must live longer than 10 minutes."))
            elif expires_at > now + timedelta(days=30):
                problems.append(("expirationDateTime", "The link cannot live longer than 30 days."))
    for key in ("orderId", "description", "successRedirectUrl", "failRedirectUrl"):
        if body.get(key) is not None and not isinstance(body[key], str):
            problems.append((key, f"'{key}' must be a string."))
    if problems:
        raise Rejected(invalid(problems))
    return {
        "amount": Decimal(amount),
        "currency": currency,
        "order_id": body.get("orderId"),
        "description": body.get("description"),
        "type": link_type,
        "success_url": body.get("successRedirectUrl"),
        "fail_url": body.get("failRedirectUrl"),
        "expires_at": expires_at,
    }


def link_json(emulator: WataEmulator, link: Link, base_url: str) -> dict[str, Any]:
    return {
        "id": link.id,
        "amount": link.amount,
        "currency": link.currency,
        "status": link.status,
        "url": f"{base_url}/_emu/wata/pay-form/{link.id}",
        "terminalName": emulator.terminal_name,
        "terminalPublicId": emulator.terminal_public_id,
        "creationTime": iso(link.created_at),
        "orderId": link.order_id,
        "description": link.description,
        "successRedirectUrl": link.success_url,
        "failRedirectUrl": link.fail_url,
        "expirationDateTime": iso(link.expires_at),
        "type": link.type,
    }


def transaction_json(emulator: WataEmulator, tx: Transaction) -> dict[str, Any]:
    """GET /transactions/{id} and the search items: the commission is `totalCommission` here (§3.3)."""
    data = {
        "id": tx.id,
        "terminalName": emulator.terminal_name,
        "terminalPublicId": emulator.terminal_public_id,
        "type": tx.type,
        "kind": tx.kind,
        "amount": tx.amount,
        "currency": tx.currency,
        "status": tx.status,
        "errorCode": tx.error_code,
        "errorDescription": tx.error_description,
        "creationTime": iso(tx.created_at),
        "paymentTime": iso(tx.payment_time),
        "orderId": tx.order_id,
        "orderDescription": tx.description,
        "paymentLinkId": tx.link_id,
        "totalCommission": tx.commission,
        "email": None,
    }
    if tx.original_id:
        data["originalTransactionId"] = tx.original_id
    return data


def webhook_payload(emulator: WataEmulator, tx: Transaction) -> dict[str, Any]:
    """The post-payment / refund webhook body (§3.3): the commission is `commission` here."""
    return {
        "transactionType": tx.type,
        "transactionId": tx.id,
        "transactionStatus": tx.status,
        "errorCode": tx.error_code,
        "errorDescription": tx.error_description,
        "terminalName": emulator.terminal_name,
        "amount": tx.amount,
        "currency": tx.currency,
        "orderId": tx.order_id,
        "orderDescription": tx.description,
        "paymentTime": iso(tx.payment_time),
        "commission": tx.commission,
        "email": None,
        "paymentLinkId": tx.link_id,
        "kind": tx.kind,
    }


async def read_json(request: Request) -> Any:
    try:
        return json.loads(await request.body(), parse_float=Decimal)
    except ValueError:
        raise Rejected(invalid([("input", "The JSON value is not valid.")])) from None


def base_url_of(request: Request) -> str:
    return str(request.base_url).rstrip("/")


# --------------------------------------------------------------------------------------------------------------
# Routes


def build_api(emulator: WataEmulator) -> FastAPI:
    api = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @api.exception_handler(Rejected)
    async def rejected(_: Request, exc: Rejected) -> Response:
        return exc.response

    @api.get(API + "/public-key")
    async def public_key() -> Response:
        pem = emulator.public_pem()
        if emulator.key_with_literal_newlines:
            pem = pem.replace("\n", "\\n")
        return json_response({"value": pem})

    @api.post(API + "/links")
    async def create_link(request: Request) -> Response:
        emulator.authorize(request)
        link = emulator.create_link(await read_json(request))
        return json_response(link_json(emulator, link, base_url_of(request)))

    @api.get(API + "/links/{link_id}")
    async def get_link(link_id: str, request: Request) -> Response:
        emulator.authorize(request)
        emulator.throttle(f"link:{link_id}")
        link = emulator.links.get(link_id)
        if link is None or link.deleted:
            return error(404, f"There is no entity PaymentLink with id = {link_id}!")
        return json_response(link_json(emulator, link, base_url_of(request)))

    @api.get(API + "/transactions")
    async def old_search() -> Response:
        # The v1 search is gone: an empty 404, whatever the query (bedolaga PR #3170, §9).
        return Response(status_code=404)

    @api.get(API + "/v2/transactions")
    async def search(request: Request) -> Response:
        emulator.authorize(request)
        emulator.throttle(f"search:{request.url.query}")
        query: dict[str, list[str]] = {}
        for key, value in request.query_params.multi_items():
            query.setdefault(key, []).append(value)
        return json_response(emulator.search(query))

    @api.get(API + "/transactions/{transaction_id}")
    async def get_transaction(transaction_id: str, request: Request) -> Response:
        emulator.authorize(request)
        emulator.throttle(f"transaction:{transaction_id}")
        tx = emulator.transactions.get(transaction_id)
        if tx is None:
            return error(404, f"There is no entity Transaction with id = {transaction_id}!")
        return json_response(transaction_json(emulator, tx))

    @api.post(API + "/transactions/refunds")
    async def refund(request: Request) -> Response:
        emulator.authorize(request)
        return json_response(transaction_json(emulator, emulator.request_refund(await read_json(request))))

    # --- control endpoints (tests and manual runs) -------------------------------------------------------------

    async def dispatch(delivery: Delivery) -> dict[str, Any]:
        if not emulator.webhook_url:
            return {"delivered": None}
        try:
            response = await emulator.deliver(delivery)
        except httpx.HTTPError as exc:
            return {"delivered": None, "error": str(exc)}
        return {"delivered": response.status_code}

    @api.post("/_emu/wata/links/{link_id}/pay")
    async def emu_pay(link_id: str, request: Request) -> Response:
        body = json.loads(await request.body() or b"{}", parse_float=Decimal)
        status, kind = body.get("status", "Paid"), body.get("type", "SBP")
        try:
            if status == "Declined":
                delivery = emulator.decline(link_id, type=kind)
            else:
                amount = body.get("amount")
                delivery = emulator.pay(
                    link_id,
                    amount=Decimal(amount) if amount is not None else None,
                    currency=body.get("currency"),
                    type=kind,
                )
        except (KeyError, ValueError, InvalidOperation) as exc:
            return json_response({"error": str(exc)}, 409)
        payload = json.loads(delivery.body)
        return json_response({"transactionId": payload["transactionId"], **await dispatch(delivery)})

    @api.post("/_emu/wata/transactions/{transaction_id}/refund")
    async def emu_refund(transaction_id: str, request: Request) -> Response:
        body = json.loads(await request.body() or b"{}", parse_float=Decimal)
        amount = body.get("amount")
        try:
            delivery = emulator.refund_delivery(transaction_id, amount=Decimal(amount) if amount is not None else None)
        except (KeyError, ValueError, InvalidOperation) as exc:
            return json_response({"error": str(exc)}, 409)
        payload = json.loads(delivery.body)
        return json_response({"transactionId": payload["transactionId"], **await dispatch(delivery)})

    @api.post("/_emu/wata/rotate-key")
    async def emu_rotate() -> Response:
        emulator.rotate_key()
        return json_response({"ok": True})

    @api.post("/_emu/wata/fail-next")
    async def emu_fail(request: Request) -> Response:
        body = await request.json()
        emulator.fail_next(int(body["status"]), body.get("retry_after"), int(body.get("times", 1)))
        return json_response({"ok": True})

    @api.post("/_emu/wata/delay-next")
    async def emu_delay(request: Request) -> Response:
        body = await request.json()
        emulator.delay_next(float(body["seconds"]), int(body.get("times", 1)))
        return json_response({"ok": True})

    @api.post("/_emu/wata/webhook-url")
    async def emu_webhook(request: Request) -> Response:
        emulator.webhook_url = (await request.json()).get("url")
        return json_response({"ok": True})

    @api.get("/_emu/wata/pay-form/{link_id}")
    async def pay_form(link_id: str) -> Response:
        link = emulator.links.get(link_id)
        if link is None:
            return Response("no such link", status_code=404)
        return Response(f"WATA test payment form: {link.amount} {link.currency} ({link.status})")

    return api


# --------------------------------------------------------------------------------------------------------------
# The ASGI front: request log and faults before the API


class _Front:
    def __init__(self, emulator: WataEmulator, api: FastAPI) -> None:
        self.emulator = emulator
        self.api = api

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(API):
            await self.api(scope, receive, send)
            return
        body = await read_body(receive)
        self.emulator.record(scope, body)
        fault = self.emulator.take_fault()
        if fault is not None and fault.status is not None:
            await send_fault(send, fault)
            return
        if fault is not None and await wait_for_disconnect(receive, fault.seconds):
            return
        await self.api(scope, replay(body, receive), send)


async def send_fault(send: Send, fault: Fault) -> None:
    assert fault.status is not None
    headers = [(b"content-type", b"application/json")]
    if fault.retry_after is not None:
        headers.append((b"retry-after", str(fault.retry_after).encode()))
    message = "An internal error occurred during your request!" if fault.status >= 500 else "Request failed"
    if fault.status == 429:
        message = f"Too many requests. Retry after {fault.retry_after or 30} seconds"
    body = dumps({"error": {"code": None, "message": message, "details": None}}).encode()
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": fault.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
