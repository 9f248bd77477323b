"""A test send from a broadcast's page goes to the staff member's own linked Telegram account (through the Bot
API emulator), in the language asked for; it counts as no delivery and is audited."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.models import AuditLog, Broadcast
from tests.admin.conftest import STAFF_TELEGRAM_IDS, AdminHarness
from tests.conftest import make_settings
from tests.emulators.telegram import TelegramBotApiEmulator

EN = {"accept-language": "en"}


@pytest.fixture
def admin_settings(database_url: str, telegram_bot: tuple[TelegramBotApiEmulator, str]) -> Settings:
    bot, url = telegram_bot
    return make_settings(database_url, bot_token=bot.token, telegram_api_url=url)


async def test_a_test_send_reaches_the_staff_members_own_telegram(
    admin: AdminHarness, db: AsyncSession, telegram_bot: tuple[TelegramBotApiEmulator, str]
) -> None:
    bot, _ = telegram_bot
    owner = await admin.browser("owner")  # the harness links the owner's Telegram id
    data = {"title": "Sale", "bodies.ru": "<b>Скидка</b>", "bodies.en": "<b>Sale</b>", "segment": "all"}
    created = await owner.post("/admin/broadcasts", data=data, headers=EN)
    broadcast_id = int(created.headers["location"].rsplit("/", 1)[1])
    response = await owner.post(f"/admin/broadcasts/{broadcast_id}/test", data={"language": "en"}, headers=EN)
    assert response.status_code == 200, response.text
    [message] = bot.messages
    assert message.chat_id == STAFF_TELEGRAM_IDS["owner"]
    assert message.text == "<b>Sale</b>"  # the English body, as written
    await db.rollback()
    broadcast = await db.get(Broadcast, broadcast_id)
    assert broadcast is not None and (broadcast.sent, broadcast.total) == (0, 0)
    audit = await db.scalar(select(AuditLog).where(AuditLog.action == "broadcast.test_sent"))
    assert audit is not None and audit.after["telegram_id"] == STAFF_TELEGRAM_IDS["owner"]
    assert audit.actor_id == str(admin.staff["owner"].id)
