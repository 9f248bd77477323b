"""`bot`: the Telegram Bot API emulator served over HTTP and the app's resources pointed at it (memory pacer at
a high rate so runs stay short). Telegram's answers are waited for as long as in production, so a busy machine
never turns a slow answer into "no answer"; the "no answer" cases shorten the wait with `Bot.impatient` and have
the emulator hold the answer far longer than that."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.broadcasts import service
from app.resources import Resources, open_resources
from app.telegram.api import BotApi
from app.telegram.outbound import TelegramOutbound
from app.telegram.pacing import MemoryPacer
from tests.broadcasts.people import draft
from tests.conftest import make_settings
from tests.emulators.harness import serve
from tests.emulators.telegram import TelegramBotApiEmulator

RATE = 200
READ_TIMEOUT = 15.0  # BotApi's own default
IMPATIENT_TIMEOUT = 2.0
NO_ANSWER_SECONDS = 60.0  # how long the emulator holds an answer the client must give up on


@dataclass
class Bot:
    emulator: TelegramBotApiEmulator
    resources: Resources

    @property
    def settings(self):
        return self.resources.settings

    def per_chat(self) -> dict[int | str, int]:
        """Messages the emulator took, per chat."""
        return self.emulator.message_counts()

    def texts(self) -> dict[int | str, str]:
        return {message.chat_id: message.text for message in self.emulator.messages}

    def params(self) -> dict[int | str, dict[str, Any]]:
        return {message.chat_id: message.params for message in self.emulator.messages}

    async def impatient(self, seconds: float = IMPATIENT_TIMEOUT) -> None:
        """Stop waiting for an answer after `seconds` (the "no answer" cases, with the emulator holding one for
        NO_ANSWER_SECONDS); every other answer still has `seconds` to come back, plenty on a busy machine."""
        telegram = self.resources.telegram
        assert telegram is not None
        await telegram.api.aclose()
        telegram.api = BotApi(self.emulator.token, self.settings.telegram_api_url, timeout=seconds)

    async def running(self, db: AsyncSession, **fields: Any) -> int:
        """A broadcast created and started now (the dispatcher's part is the test's)."""
        created = await service.create(db, self.settings, draft(**fields), service.Actor("cli"))
        await service.start(db, created.id, service.Actor("cli"), now=True)
        await db.commit()
        return created.id


def bot_resources(database_url: str, api_url: str, token: str, **overrides: Any) -> Resources:
    rate = overrides.pop("telegram_rate_per_second", RATE)
    settings = make_settings(
        database_url,
        bot_token=token,
        telegram_api_url=api_url,
        telegram_rate_per_second=rate,
        broadcast_lease_seconds=overrides.pop("broadcast_lease_seconds", 5),
        **overrides,
    )
    resources = open_resources(settings)
    resources.telegram = TelegramOutbound(
        BotApi(token, api_url, timeout=READ_TIMEOUT),
        MemoryPacer(rate, settings.telegram_paid_rate_per_second),
    )
    return resources


def emulator_at(rate: int) -> TelegramBotApiEmulator:
    """An emulator enforcing `rate` a second overall (Telegram's other limits as they are) and with Stars for
    paid broadcasts."""
    return TelegramBotApiEmulator(global_rate=rate, balance=1000)


@pytest.fixture
async def bot(database_url: str, db: AsyncSession) -> AsyncIterator[Bot]:
    emulator = emulator_at(RATE)
    with serve(emulator.app) as url:
        resources = bot_resources(database_url, url, emulator.token)
        try:
            yield Bot(emulator, resources)
        finally:
            await resources.aclose()
