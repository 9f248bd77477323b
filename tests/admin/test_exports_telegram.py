"""An Excel export sent to the staff member's own Telegram as well: through the outbox to the Bot API emulator,
which keeps the uploaded file, so the test compares it with the download byte for byte."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select

from app.config import Settings
from app.kit.i18n import translate
from app.models import ExportFile
from tests.admin.conftest import STAFF_TELEGRAM_IDS, AdminHarness
from tests.admin.test_users_pages import _people
from tests.conftest import make_settings
from tests.emulators.telegram import TelegramBotApiEmulator
from tests.web import htmx


@pytest.fixture
def admin_settings(
    request: pytest.FixtureRequest, database_url: str, telegram_bot: tuple[TelegramBotApiEmulator, str]
) -> Settings:
    bot, url = telegram_bot
    token = "" if request.node.get_closest_marker("without_bot") else bot.token
    return make_settings(database_url, bot_token=token, telegram_api_url=url)


async def test_an_excel_export_can_also_go_to_the_staff_members_telegram(
    admin: AdminHarness, telegram_bot: tuple[TelegramBotApiEmulator, str]
) -> None:
    """The file arrives as a document in the owner's own chat (the harness links the owner's Telegram), exactly
    once and byte for byte the download; a staff member without a linked Telegram is refused and nothing is built."""
    bot, _ = telegram_bot
    await _people(admin)
    owner = await admin.browser("owner")
    page = await owner.get("/admin/users")
    assert 'name="to_telegram"' in page.text
    asked = await owner.post(
        "/admin/users/export.xlsx", data={"segment": "expiring", "to_telegram": "1"}, headers=htmx("export-status")
    )
    assert asked.status_code == 202
    export = await admin.db.scalar(select(ExportFile))
    deadline = asyncio.get_running_loop().time() + 30
    while (await admin.db.get(ExportFile, export.id, populate_existing=True)).sent_to_telegram_at is None:
        assert asyncio.get_running_loop().time() < deadline, "the file did not reach Telegram"
        await asyncio.sleep(0.05)
    [message] = [m for m in bot.messages if m.method == "sendDocument"]
    assert message.chat_id == STAFF_TELEGRAM_IDS["owner"]
    download = await owner.get(f"/admin/users/exports/{export.id}/download")
    file_name, contents = message.files["document"]
    assert (file_name, contents) == (export.file_name, download.content)
    assert message.message["caption"] == translate(
        admin.settings.default_language, "admin_users.export_caption", rows=2
    )
    status = await owner.get(f"/admin/users/exports/{export.id}")
    assert 'data-testid="export-telegram"' in status.text

    # The admin has no linked Telegram: the box is not offered, and asking anyway is refused before any work.
    other = await admin.browser("admin")
    assert 'name="to_telegram"' not in (await other.get("/admin/users")).text
    refused = await other.post("/admin/users/export.xlsx", data={"to_telegram": "1"}, headers=htmx("export-status"))
    assert refused.status_code == 422 and "Link your Telegram" in refused.text
    assert await admin.db.scalar(select(func.count()).select_from(ExportFile)) == 1


async def test_the_payments_list_offers_the_same_and_records_the_chat(admin: AdminHarness) -> None:
    owner = await admin.browser("owner")
    assert 'name="to_telegram"' in (await owner.get("/admin/payments")).text
    asked = await owner.post("/admin/payments/export.xlsx", data={"to_telegram": "on"}, headers=htmx("export-status"))
    assert asked.status_code == 202, asked.text
    export = await admin.db.scalar(select(ExportFile))
    assert (export.kind, export.telegram_chat_id) == ("payments", STAFF_TELEGRAM_IDS["owner"])


@pytest.mark.without_bot
async def test_without_a_bot_the_box_is_not_offered_and_asking_is_refused(admin: AdminHarness) -> None:
    owner = await admin.browser("owner")  # linked to Telegram, but the shop has no BOT_TOKEN
    assert 'name="to_telegram"' not in (await owner.get("/admin/users")).text
    refused = await owner.post("/admin/users/export.xlsx", data={"to_telegram": "1"}, headers=htmx("export-status"))
    assert refused.status_code == 422 and "needs a bot" in refused.text
    assert await admin.db.scalar(select(func.count()).select_from(ExportFile)) == 0
