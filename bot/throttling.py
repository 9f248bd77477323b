"""Per-user throttling of what people type and tap (BOT_THROTTLE_PER_MINUTE, default 10 a minute), through the
product's rate limiter: Redis-backed in production, so every bot replica counts together. Payments are never
throttled: a pre-checkout query or a successful payment always goes through."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import CallbackQuery, Message, TelegramObject

from app.kit.i18n import pick_language, translate
from app.resources import Resources

WINDOW_SECONDS = 60


class Throttle(BaseMiddleware):
    def __init__(self, resources: Resources) -> None:
        self.resources = resources

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        user = getattr(event, "from_user", None)
        if user is None or _is_payment(event):
            return await handler(event, data)
        limiter = self.resources.rate_limiter
        limit = self.resources.settings.bot_throttle_per_minute
        decision = await limiter.hit(f"bot:user:{user.id}", limit, WINDOW_SECONDS)
        if decision.allowed:
            return await handler(event, data)
        # Say it once per window, not on every extra message (that would be its own flood).
        if (await limiter.hit(f"bot:told:{user.id}", 1, WINDOW_SECONDS)).allowed:
            text = translate(pick_language(user.language_code), "bot.throttled", seconds=decision.retry_after)
            if isinstance(event, Message):
                await event.answer(text)
            elif isinstance(event, CallbackQuery):
                await event.answer(text, show_alert=False)
        return None


def _is_payment(event: TelegramObject) -> bool:
    return isinstance(event, Message) and (event.successful_payment is not None or event.refunded_payment is not None)
