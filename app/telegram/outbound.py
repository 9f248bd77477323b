"""Sending a message the way every part of the product must: paced (pacing.py), a 429 pausing all senders and
the same message tried again after the pause, and nothing ever sent twice on purpose."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Self

from redis.asyncio import Redis

from app.config import Settings
from app.kit.metrics import TELEGRAM_MESSAGES
from app.telegram.api import BotApi, RetryAfter, TelegramError
from app.telegram.pacing import MemoryPacer, Pacer, RedisPacer, wait_turn

log = logging.getLogger(__name__)

# After this many 429s in a row the message is handed back to the caller's own retry (outbox backoff, the
# broadcast's next pass) instead of holding a worker.
MAX_THROTTLED_TRIES = 5


class TelegramOutbound:
    def __init__(self, api: BotApi, pacer: Pacer) -> None:
        self.api = api
        self.pacer = pacer

    @classmethod
    def from_settings(cls, settings: Settings, redis: Redis | None) -> Self | None:
        """None when no bot is configured (the demo without BOT_TOKEN)."""
        if not settings.bot_token:
            return None
        rates = (settings.telegram_rate_per_second, settings.telegram_paid_rate_per_second)
        pacer: Pacer = RedisPacer(redis, *rates) if redis is not None else MemoryPacer(*rates)
        return cls(BotApi(settings.bot_token, settings.telegram_api_url), pacer)

    async def send(
        self,
        chat_id: int,
        text: str,
        *,
        reply_markup: dict[str, Any] | None = None,
        paid: bool = False,
        thread_id: int | None = None,
    ) -> dict[str, Any]:
        """Send one message in its turn; raises the api module's errors (RetryAfter after repeated 429s)."""
        return await self._in_turn(
            chat_id,
            paid,
            lambda: self.api.send_message(
                chat_id, text, reply_markup=reply_markup, paid_broadcast=paid, message_thread_id=thread_id
            ),
        )

    async def send_document(
        self, chat_id: int, file_name: str, contents: bytes, media_type: str, *, caption: str = ""
    ) -> dict[str, Any]:
        """Send one file in its turn, as `send` does a message."""
        return await self._in_turn(
            chat_id, False, lambda: self.api.send_document(chat_id, file_name, contents, media_type, caption=caption)
        )

    async def _in_turn(self, chat_id: int, paid: bool, call: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
        attempt = 1
        while True:
            await wait_turn(self.pacer, chat_id, paid=paid)
            try:
                message = await call()
            except RetryAfter as exc:
                TELEGRAM_MESSAGES.labels("throttled").inc()
                # Telegram's own advice plus a second, as its limits are approximate (reference §8).
                await self.pacer.pause(exc.retry_after + 1)
                log.warning("telegram 429: every sender paused %.0f s (try %d)", exc.retry_after + 1, attempt)
                if attempt == MAX_THROTTLED_TRIES:
                    raise
                attempt += 1
                continue
            except TelegramError as exc:
                TELEGRAM_MESSAGES.labels(type(exc).__name__).inc()
                raise
            TELEGRAM_MESSAGES.labels("sent").inc()
            return message

    async def aclose(self) -> None:
        await self.api.aclose()
