"""The process-wide resources every entry point (web, worker, bot, CLI) builds from Settings, and closes."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.config import Settings
from app.connect.qr import QrCodes
from app.db import create_engine, create_sessionmaker
from app.kit.crypto import configure_cipher
from app.kit.ratelimit import RateLimiter, build_rate_limiter
from app.panels.registry import PanelRegistry
from app.payments.registry import PaymentRegistry
from app.telegram.outbound import TelegramOutbound

log = logging.getLogger(__name__)


@dataclass
class Resources:
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    redis: Redis | None
    rate_limiter: RateLimiter
    panels: PanelRegistry
    payments: PaymentRegistry
    qr_codes: QrCodes
    # The bot's outgoing messages (notifications, broadcasts); None when no BOT_TOKEN is configured.
    telegram: TelegramOutbound | None = None

    async def aclose(self) -> None:
        await self.panels.aclose()
        await self.payments.aclose()
        if self.telegram is not None:
            await self.telegram.aclose()
        if self.redis is not None:
            await self.redis.aclose()
        await self.engine.dispose()


def open_resources(settings: Settings) -> Resources:
    configure_cipher(settings.encryption_key, settings.secret_key)
    engine = create_engine(settings)
    redis = (
        Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=2) if settings.redis_url else None
    )
    sessionmaker = create_sessionmaker(engine)
    payments = PaymentRegistry.from_settings(settings, sessionmaker=sessionmaker)
    payments.watch(sessionmaker)  # the admin's provider settings, applied without a restart
    return Resources(
        settings=settings,
        engine=engine,
        sessionmaker=sessionmaker,
        redis=redis,
        rate_limiter=build_rate_limiter(settings.redis_url),
        qr_codes=QrCodes(redis),
        panels=PanelRegistry(sessionmaker, settings),
        payments=payments,
        telegram=TelegramOutbound.from_settings(settings, redis),
    )
