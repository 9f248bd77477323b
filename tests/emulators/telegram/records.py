"""What the emulator remembers: invoices, charges, subscriptions, queries, calls and the bot's messages."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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


@dataclass(slots=True)
class CallbackQuery:
    query_id: str
    user_id: int
    data: str
    message_id: int
    sent_at: float
    answered_at: float | None = None
    text: str | None = None
    show_alert: bool = False


@dataclass(frozen=True, slots=True)
class ApiCall:
    method: str  # as registered ("createInvoiceLink"), or as sent when unknown
    params: dict[str, Any]
    at: float


@dataclass(slots=True)
class SentMessage:
    """A message the bot sent (sendMessage, sendPhoto, sendDocument), as it stands after any edits."""

    message_id: int
    chat_id: int | str  # as the bot gave it: a number, or "@channelname"
    method: str
    text: str  # as sent: the text or caption with its markup
    plain: str  # after entity parsing (what the user reads)
    parse_mode: str | None
    reply_markup: dict[str, Any] | None
    paid: bool  # sent with allow_paid_broadcast
    at: float  # emulator time
    params: dict[str, Any]
    message: dict[str, Any]  # the Message object the API answered with
    edits: int = 0
    deleted: bool = False
    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # uploads: name → (file name, contents)

    def __getitem__(self, key: str) -> Any:
        # Messages were dicts once (the Message object plus "params" and the text as sent): `message["chat"]`,
        # `message["text"]` and `message["params"]` keep working.
        if key in self.__dataclass_fields__:
            return getattr(self, key)
        return self.message[key]
