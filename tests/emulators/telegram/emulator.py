"""TelegramBotApiEmulator: one bot's state, the flood limits, the update queue and the HTTP entry point."""

from __future__ import annotations

import itertools
import secrets
import threading
import time
from collections import Counter
from dataclasses import replace
from decimal import Decimal
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.background import BackgroundTask

from tests.emulators.payments_common import Delivery

# Method modules register their methods on import (payments, messages and updates are imported below).
from tests.emulators.telegram import bot_setup  # noqa: F401
from tests.emulators.telegram.app import build_app
from tests.emulators.telegram.dispatcher import SECRET_HEADER, WebhookDispatcher, update_body
from tests.emulators.telegram.limits import Limiter, Rates
from tests.emulators.telegram.messages import is_group
from tests.emulators.telegram.payments import DEFAULT_USER_ID, PRE_CHECKOUT_TIMEOUT, StarsCustomer, new_charge_id
from tests.emulators.telegram.records import (
    ApiCall,
    CallbackQuery,
    Charge,
    Invoice,
    PreCheckoutQuery,
    SentMessage,
    Subscription,
)
from tests.emulators.telegram.updates import OTHER_POLL, UpdateQueue
from tests.emulators.telegram.users import TelegramUsers, private_chat
from tests.emulators.telegram.webhook import BotWebhook
from tests.emulators.telegram.wire import (
    METHODS,
    ApiError,
    Fault,
    answer_error,
    fault_error,
    forbidden,
    hold,
    read_params,
    too_many_requests,
)

DEFAULT_TOKEN = "7000000001:AAEmulatedBotTokenForVpnshopTests_0123"
DEFAULT_SECRET = "tg-emulator-webhook-secret"
TELEGRAM_IP = "149.154.167.220"  # inside 149.154.160.0/20, where Telegram's webhooks come from


class TelegramBotApiEmulator(StarsCustomer, BotWebhook, TelegramUsers):
    """One bot. `app` is the ASGI app to serve; everything else is for tests. Thread-safe: the server runs in
    another thread (harness.serve) while tests call `pay`, `user_message` and friends."""

    def __init__(
        self,
        token: str = DEFAULT_TOKEN,
        webhook_secret: str = DEFAULT_SECRET,
        *,
        webhook_url: str | None = None,
        bot_username: str = "vpnshop_emu_bot",
        pre_checkout_timeout: float = PRE_CHECKOUT_TIMEOUT,
        freeze_clock: bool = False,
        rate_limits: bool = True,
        chat_rate: float = 1.0,
        chat_burst: int = 3,
        global_rate: float = 30.0,
        group_per_minute: float = 20.0,
        paid_rate: float = 1000.0,
        balance: int | Decimal | str = 0,
        allow_http_webhook: bool = True,
        webhook_retry_delay: float = 0.2,
        webhook_retry_max: float = 5.0,
        webhook_timeout: float = 10.0,
        keep_records: bool = True,
    ) -> None:
        """`freeze_clock`: the emulator's time moves only by `advance()` (deterministic limits in tests); by
        default it is real time plus whatever was advanced. The rates are those of `limits.Rates`.
        `keep_records=False` is for long broadcast benchmarks: no call log and no message records (so no edits
        or callbacks on earlier messages), only the counts and times `stats()` reports."""
        self.token = token
        self.webhook_secret = webhook_secret
        self.base_url = ""  # where it is served, for whoever serves it to fill in (harness.serve yields it)
        self.bot_id = int(token.split(":", 1)[0]) if token.split(":", 1)[0].isdigit() else 7000000001
        self.bot_username = bot_username
        self.pre_checkout_timeout = pre_checkout_timeout
        self.allow_http_webhook = allow_http_webhook
        self.clock_offset = 0.0
        self._frozen_at = time.time() if freeze_clock else None
        self._started = time.monotonic()
        self.balance_tenths = 0  # the bot's Stars in tenths (a paid broadcast message costs 0.1)
        self.balance = balance
        # Payments
        self.invoices: dict[str, Invoice] = {}  # by slug
        self.charges: dict[str, Charge] = {}  # by telegram_payment_charge_id
        self.subscriptions: dict[str, Subscription] = {}  # by first charge id
        self.queries: dict[str, PreCheckoutQuery] = {}  # pre-checkout queries by id
        self.transactions: list[dict[str, Any]] = []  # StarTransaction objects, chronological
        # Messages and recipients
        self.keep_records = keep_records
        self.messages: list[SentMessage] = []  # sent by the bot, oldest first
        self._by_chat: dict[int | str, list[SentMessage]] = {}
        self._by_id: dict[tuple[int | str, int], SentMessage] = {}
        self._counts: dict[int | str, int] = {}  # messages by chat
        self._duplicates: dict[int | str, int] = {}  # chats with more than one message -> how many
        self.sent_total = 0
        self.paid_messages = 0
        self.first_message_at: float | None = None
        self.last_message_at: float | None = None
        self.edits = 0
        self.blocked_users: set[int | str] = set()
        self.deactivated_users: set[int | str] = set()
        self.missing_chats: set[int | str] = set()
        self.throttled: Counter[str] = Counter()  # 429s answered, by limit: global, chat, group, paid
        self.refused: Counter[str] = Counter()  # sends refused for the recipient: blocked, deactivated, missing
        self.callback_queries: dict[str, CallbackQuery] = {}
        # Bot setup
        self.commands: dict[tuple[Any, str], list[dict[str, str]]] = {}  # by (scope, language_code)
        self.menu_buttons: dict[int | None, dict[str, Any]] = {}  # by private chat id; None is the default
        self.descriptions: dict[str, dict[str, str]] = {}  # "description"/"short_description" -> language -> text
        # Updates and the webhook
        self.lock = self._lock = threading.RLock()
        self.queue = UpdateQueue(self._lock)
        self.updates: list[dict[str, Any]] = []  # every Update made, in order
        self._webhook_url = webhook_url
        self.webhook_max_connections = 40
        self.webhook_error: tuple[int, str] | None = None  # (date, message) of the last failed delivery
        self.deliveries: list[tuple[dict[str, Any], int | None]] = []  # webhook posts: (update, status)
        self.dispatcher = WebhookDispatcher(
            self, retry_delay=webhook_retry_delay, retry_max=webhook_retry_max, timeout=webhook_timeout
        )
        # Calls
        self.requests: Counter[str] = Counter()  # Bot API calls by method name (faulted ones too)
        self.log: list[ApiCall] = []  # calls that reached a method, with their parameters
        self._faults: list[Fault] = []
        self._outbox: list[int] = []  # update ids an API call made, held back until it is answered
        # pay_via_webhook waiting for an answer: query id -> (its loop, its event), set from the server's thread.
        self._waiters: dict[str, tuple[Any, Any]] = {}
        self._ids = itertools.count(1)
        self._update_ids = itertools.count(100_000_001)
        self.limiter = Limiter(
            Rates(chat_rate, chat_burst, global_rate, group_per_minute, paid_rate, rate_limits), self.elapsed()
        )
        self.app = build_app(self)

    def settings(self, base_url: str) -> dict[str, Any]:
        """The Settings overrides that point StarsProvider (and the bot) at this emulator."""
        return {
            "stars_enabled": True,
            "bot_token": self.token,
            "telegram_api_url": base_url,
            "bot_webhook_secret": self.webhook_secret,
        }

    @property
    def pending(self) -> Any:
        """Updates not yet taken by the bot (getUpdates or the webhook), oldest first."""
        return self.queue.pending

    # --- clock ---------------------------------------------------------------------------------------------

    def now(self) -> float:
        base = self._frozen_at if self._frozen_at is not None else time.time()
        return base + self.clock_offset

    def elapsed(self) -> float:
        """Seconds since the emulator was made, on its clock: small numbers, so the flood limits' arithmetic
        stays exact where wall-clock timestamps would round away a thirtieth of a second's tokens."""
        real = 0.0 if self._frozen_at is not None else time.monotonic() - self._started
        return real + self.clock_offset

    def advance(self, seconds: float) -> None:
        """Move the emulator's clock (flood limits, pre-checkout deadlines, dates in Updates)."""
        self.clock_offset += seconds

    # --- money ---------------------------------------------------------------------------------------------

    @property
    def balance(self) -> Decimal:
        """The bot's Star balance (payments in, refunds and paid broadcasts out)."""
        return Decimal(self.balance_tenths) / 10

    @balance.setter
    def balance(self, stars: int | Decimal | str) -> None:
        tenths = Decimal(stars) * 10
        if tenths != tenths.to_integral_value():
            raise ValueError(f"{stars} is not a whole number of tenths of a Star")
        self.balance_tenths = int(tenths)

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

    # --- flood limits and recipients -----------------------------------------------------------------------

    @property
    def rates(self) -> Rates:
        return self.limiter.rates

    def set_limits(self, **changes: Any) -> Rates:
        """Change rates (chat_rate, chat_burst, global_rate, group_per_minute, paid_rate, enabled); every bucket
        starts full again."""
        with self._lock:
            self.limiter = Limiter(replace(self.limiter.rates, **changes), self.elapsed())
            return self.limiter.rates

    def admit(self, chat: int | str, *, paid: bool, overall: bool = True) -> None:
        """Take the flood-limit tokens of one message to `chat`, or refuse it with a 429 (and count it)."""
        refusal = self.limiter.admit(chat, self.elapsed(), group=is_group(chat), paid=paid, overall=overall)
        if refusal is not None:
            reason, retry_after = refusal
            self.throttled[reason] += 1
            raise too_many_requests(retry_after)

    def check_recipient(self, chat: int | str) -> None:
        if chat in self.missing_chats:
            self.refused["missing"] += 1
            raise ApiError(400, "Bad Request: chat not found")
        if chat in self.deactivated_users:
            self.refused["deactivated"] += 1
            raise forbidden("user is deactivated")
        if chat in self.blocked_users:
            self.refused["blocked"] += 1
            raise forbidden("bot was blocked by the user")

    # --- messages ------------------------------------------------------------------------------------------

    def record_message(self, message: SentMessage) -> None:
        chat = message.chat_id
        count = self._counts[chat] = self._counts.get(chat, 0) + 1
        if count > 1:
            self._duplicates[chat] = count
        self.sent_total += 1
        self.paid_messages += message.paid
        if self.first_message_at is None:
            self.first_message_at = message.at
        self.last_message_at = message.at
        if self.keep_records:
            self.messages.append(message)
            self._by_chat.setdefault(chat, []).append(message)
            self._by_id[(chat, message.message_id)] = message

    def sent_message(self, chat: int | str, message_id: int) -> SentMessage | None:
        """The bot's message `message_id` in `chat`, unless deleted."""
        message = self._by_id.get((chat, message_id))
        return None if message is None or message.deleted else message

    def messages_to(self, chat_id: int | str) -> list[SentMessage]:
        """What the bot sent to a chat, oldest first."""
        with self._lock:
            return list(self._by_chat.get(chat_id, []))

    def message_counts(self) -> dict[int | str, int]:
        """How many messages each chat got."""
        with self._lock:
            return dict(self._counts)

    def stats(self) -> dict[str, Any]:
        """For a broadcast benchmark: what was sent, how fast, refused how often, and sent twice to whom."""
        with self._lock:
            first, last, count = self.first_message_at, self.last_message_at, self.sent_total
            rate = (count - 1) / (last - first) if first is not None and last is not None and last > first else None
            return {
                "messages": count,
                "paid_messages": self.paid_messages,
                "edits": self.edits,
                "chats": len(self._counts),
                "duplicates": {str(chat): n for chat, n in self._duplicates.items()},
                "throttled": dict(self.throttled),
                "throttled_total": sum(self.throttled.values()),
                "refused": dict(self.refused),
                "first_message_at": first,
                "last_message_at": last,
                "rate": rate,
                "balance": str(self.balance),
                "rates": self.limiter.rates.as_dict(),
            }

    # --- inspection ----------------------------------------------------------------------------------------

    def calls(self, method: str | None = None) -> list[dict[str, Any]]:
        """The parameters of every call of `method` (any method when None) that reached the API, oldest first."""
        wanted = method.lower() if method else None
        with self._lock:
            return [call.params for call in self.log if wanted in (None, call.method.lower())]

    def close(self) -> None:
        """Stop the webhook dispatcher and end a waiting long poll."""
        with self._lock:
            self.dispatcher.close()
            self.queue.end_poll(OTHER_POLL)

    # --- building blocks -----------------------------------------------------------------------------------

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

    def new_update(self, **content: Any) -> dict[str, Any]:
        """A new Update, recorded in `updates`; not queued (see `enqueue`)."""
        with self._lock:
            update = {"update_id": next(self._update_ids), **content}
            self.updates.append(update)
            return update

    def service_message(self, user_id: int, content: dict[str, Any]) -> dict[str, Any]:
        user = self.user(user_id)
        return {
            "message_id": self.next_message_id(),
            "from": user,
            "chat": private_chat(user),
            "date": int(self.now()),
            **content,
        }

    def delivery(self, update: dict[str, Any]) -> Delivery:
        headers = {"content-type": "application/json", SECRET_HEADER: self.webhook_secret}
        return Delivery(body=update_body(update), headers=headers, peer_ip=TELEGRAM_IP)

    def forged(self, delivery: Delivery) -> Delivery:
        """The same Update with a secret token that is not ours."""
        return delivery.with_header(SECRET_HEADER, "forged-" + secrets.token_urlsafe(16))

    def new_slug(self) -> str:
        return secrets.token_urlsafe(12)

    def new_charge_id(self) -> str:
        return new_charge_id()

    # --- serving -------------------------------------------------------------------------------------------

    async def call(self, token: str, method: str, request: Request) -> JSONResponse:
        key = method.lower()
        spec = METHODS.get(key)
        name = spec.name if spec else method
        self.requests[name] += 1
        fault = self._take_fault(key)
        if fault is not None and fault.kind == "status":
            return answer_error(fault_error(fault))
        if not secrets.compare_digest(token.encode(), self.token.encode()):
            return answer_error(ApiError(401, "Unauthorized"))
        if spec is None:
            return answer_error(ApiError(404, "Not Found"))
        try:
            params = await read_params(request)
        except ApiError as exc:
            return answer_error(exc)
        if self.keep_records:
            with self._lock:
                self.log.append(ApiCall(name, params.values, self.now()))
        if spec.long_poll:
            try:
                response = JSONResponse({"ok": True, "result": await spec.handler(self, params, request)})
            except ApiError as exc:
                response = answer_error(exc)
        else:
            with self._lock:
                try:
                    response = JSONResponse({"ok": True, "result": spec.handler(self, params)})
                except ApiError as exc:
                    response = answer_error(exc)
                held, self._outbox = self._outbox, []
            if held:  # Updates this call made go out once it has been answered
                response.background = BackgroundTask(self._release, held)
        if fault is not None:  # a delay: the work is done, the answer comes late (or never)
            await hold(request, fault.seconds)
        return response

    def _release(self, update_ids: list[int]) -> None:
        with self._lock:
            self.queue.release(update_ids)
            self.dispatcher.kick()


__all__ = ["DEFAULT_SECRET", "DEFAULT_TOKEN", "DEFAULT_USER_ID", "TELEGRAM_IP", "TelegramBotApiEmulator"]
