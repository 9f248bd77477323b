"""Telegram's flood limits (reference §8) as token buckets on the emulator's clock.

- Per chat: 1 message a second, with short bursts allowed (`chat_burst`, 3 by default).
- Overall: `global_rate` a second (30), a burst of one second's worth.
- A group or channel (a negative chat id or an "@name"): `group_per_minute` (20), a burst of one minute's worth.
- `allow_paid_broadcast`: counted against `paid_rate` (1000 a second) instead of the overall limit.
A message over a limit is refused whole: no bucket gives a token unless all of them can.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

Reason = Literal["chat", "group", "global", "paid"]
# Float slack: three seconds at a third of a token a second must make a whole token.
EPSILON = 1e-9


@dataclass(slots=True)
class TokenBucket:
    rate: float  # tokens a second
    capacity: float  # the burst
    tokens: float
    updated: float

    @classmethod
    def full(cls, rate: float, capacity: float, now: float) -> TokenBucket:
        return cls(rate, capacity, capacity, now)

    def wait(self, now: float) -> float:
        """Seconds until a token is there (0 when one is)."""
        self._refill(now)
        missing = 1 - self.tokens
        return 0.0 if missing <= EPSILON else missing / self.rate

    def take(self, now: float) -> None:
        self._refill(now)
        self.tokens -= 1

    def _refill(self, now: float) -> None:
        if now > self.updated:
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
            self.updated = now


@dataclass(frozen=True, slots=True)
class Rates:
    chat_rate: float = 1.0  # a second
    chat_burst: int = 3
    global_rate: float = 30.0  # a second
    group_per_minute: float = 20.0
    paid_rate: float = 1000.0  # a second
    enabled: bool = True

    def __post_init__(self) -> None:
        for name in ("chat_rate", "chat_burst", "global_rate", "group_per_minute", "paid_rate"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Limiter:
    """The buckets of one bot. Not thread-safe: the emulator calls it under its lock."""

    def __init__(self, rates: Rates, now: float) -> None:
        self.rates = rates
        self._global = TokenBucket.full(rates.global_rate, max(1.0, rates.global_rate), now)
        self._paid = TokenBucket.full(rates.paid_rate, max(1.0, rates.paid_rate), now)
        self._chats: dict[int | str, TokenBucket] = {}
        self._groups: dict[int | str, TokenBucket] = {}

    def admit(
        self, chat: int | str, now: float, *, group: bool, paid: bool, overall: bool = True
    ) -> tuple[Reason, int] | None:
        """Take a token from every bucket the message counts against; or, if one has none, take nothing and
        return (the limit, whole seconds until it has one, at least 1). `overall=False` for edits, which count
        against their chat only."""
        if not self.rates.enabled:
            return None
        buckets: list[tuple[Reason, TokenBucket]] = [("chat", self._chat(chat, now))]
        if group:
            buckets.append(("group", self._group(chat, now)))
        if overall:
            buckets.append(("paid", self._paid) if paid else ("global", self._global))
        waits = [(bucket.wait(now), reason) for reason, bucket in buckets]
        longest, reason = max(waits, key=lambda item: item[0])
        if longest > 0:
            return reason, max(1, math.ceil(longest - EPSILON))
        for _, bucket in buckets:
            bucket.take(now)
        return None

    def _chat(self, chat: int | str, now: float) -> TokenBucket:
        bucket = self._chats.get(chat)
        if bucket is None:
            bucket = self._chats[chat] = TokenBucket.full(self.rates.chat_rate, self.rates.chat_burst, now)
        return bucket

    def _group(self, chat: int | str, now: float) -> TokenBucket:
        bucket = self._groups.get(chat)
        if bucket is None:
            per_minute = self.rates.group_per_minute
            bucket = self._groups[chat] = TokenBucket.full(per_minute / 60, per_minute, now)
        return bucket
