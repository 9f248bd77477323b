"""`vpnshop broadcast …` through click's runner: the whole life of a broadcast from the shell, and every refusal
as one line on stderr with exit code 2 and nothing changed."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy.ext.asyncio import AsyncSession

from app.cli import main
from app.models import AuditLog, Broadcast, BroadcastStatus
from tests.broadcasts.people import crowd, plan, reload, rows
from tests.conftest import TEST_ENCRYPTION_KEY, TEST_SECRET
from tests.emulators.harness import serve
from tests.emulators.telegram import TelegramBotApiEmulator


@pytest.fixture(autouse=True)
def _no_dotenv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # a developer's .env must not change what the commands see


def _env(database_url: str, **extra: str) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "SECRET_KEY": TEST_SECRET,
        "ENCRYPTION_KEY": TEST_ENCRYPTION_KEY,
        "REDIS_URL": "",
        "BOT_TOKEN": "4242:broadcast-cli-test-token",  # never called: only `test` sends, with its own emulator
        "DEMO_MODE": "false",
        "TIMEZONE": "Europe/Moscow",
        **extra,
    }


async def _run(database_url: str, *args: str, **env: str) -> Result:
    # The commands run their own event loop, so they run in a thread of their own here.
    return await asyncio.to_thread(CliRunner().invoke, main, ["broadcast", *args], env=_env(database_url, **env))


async def test_a_broadcast_from_creation_to_cancellation(db: AsyncSession, database_url: str, tmp_path: Path) -> None:
    await crowd(db, 3)  # 2 ru, 1 en
    english = tmp_path / "en.html"
    english.write_text("<b>Sale</b> for you", encoding="utf-8")

    created = await _run(
        database_url,
        "create",
        "--title",
        "Spring",
        "--text-ru",
        "<b>Скидка</b>",
        "--text-file",
        f"en={english}",
        "--button-url",
        "web_app",
        "--button-text",
        "Открыть",
        "--button-text",
        "en=Open",
    )
    assert created.exit_code == 0, created.output
    assert created.stdout.startswith("broadcast #") and "created (draft): 3 recipients now" in created.stdout
    broadcast_id = int(created.stdout.split("#", 1)[1].split(" ", 1)[0])
    stored = await reload(db, broadcast_id)
    assert stored.bodies == {"ru": "<b>Скидка</b>", "en": "<b>Sale</b> for you"}
    # The unlabelled text is every other language's (Hindi and Indonesian too).
    labels = {"ru": "Открыть", "en": "Open", "hi": "Открыть", "id": "Открыть"}
    assert stored.button == {"text": labels, "url": "web_app"}

    preview = await _run(database_url, "preview", str(broadcast_id))
    assert preview.exit_code == 0, preview.output
    assert "3 recipients (ru 2, en 1)" in preview.stdout
    assert "--- en (1) ---\n<b>Sale</b> for you\n[Open] → http://127.0.0.1:8000/app" in preview.stdout

    listed = await _run(database_url, "list")
    assert f"#{broadcast_id}\tdraft\tall\t0/0 sent" in listed.stdout

    assert (await _run(database_url, "start", str(broadcast_id))).stdout.endswith("begins sending within seconds\n")
    shown = await _run(database_url, "show", str(broadcast_id))
    assert shown.exit_code == 0 and '"Spring": running' in shown.stdout
    assert (await _run(database_url, "pause", str(broadcast_id))).stdout == f"broadcast #{broadcast_id} paused\n"
    assert (await _run(database_url, "resume", str(broadcast_id))).exit_code == 0
    assert (await _run(database_url, "cancel", str(broadcast_id))).exit_code == 0
    assert (await reload(db, broadcast_id)).status == BroadcastStatus.CANCELLED

    refused = await _run(database_url, "pause", str(broadcast_id))
    assert refused.exit_code == 2
    assert refused.stderr == (
        f"error: broadcast #{broadcast_id} is cancelled: only a broadcast that is running can be paused\n"
    )
    assert (await reload(db, broadcast_id)).status == BroadcastStatus.CANCELLED


async def test_scheduling_reads_a_time_without_offset_in_the_shops_zone(db: AsyncSession, database_url: str) -> None:
    created = await _run(database_url, "create", "--title", "Later", "--text-ru", "Привет", "--at", "2099-01-01T10:00")
    assert created.exit_code == 0, created.output
    started = await _run(database_url, "start", created.stdout.split("#")[1].split(" ")[0])
    assert started.exit_code == 0, started.output
    assert "scheduled for 2099-01-01T07:00:00+00:00" in started.stdout  # 10:00 in Moscow


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--text-ru", "<b>x"], "not valid Telegram HTML: <b> is never closed"),
        (["--text-en", "Hello"], "a text in the default language (ru) is required"),
        (["--text-ru", "x", "--segment", "plan"], "the plan segment needs a plan id"),
        (["--text-ru", "x", "--segment", "plan", "--plan", "777"], "no plan #777"),
        (["--text-ru", "x", "--language", "de"], "unknown language 'de'"),
        (["--text-ru", "x", "--at", "2001-01-01T00:00+00:00"], "scheduled time must be in the future"),
        (["--text-ru", "x", "--at", "tomorrow"], "is not an ISO 8601 time"),
        (["--text-ru", "x", "--button-text", "Go"], "--button-text needs --button-url"),
        (["--text-ru", "x", "--button-url", "ftp://x"], "http:// or https:// URL, or web_app"),
        (["--text-ru", "x", "--text-file", "en=/nonexistent/file.html"], "--text-file en=/nonexistent/file.html"),
        (["--text-ru", "x", "--text-file", "en"], "--text-file expects LANG=VALUE"),
    ],
)
async def test_create_refusals_exit_2_and_change_nothing(
    db: AsyncSession, database_url: str, args: list[str], message: str
) -> None:
    result = await _run(database_url, "create", "--title", "T", *args)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert result.stdout == ""
    assert await rows(db, Broadcast) == 0
    assert await rows(db, AuditLog) == 0


async def test_an_unknown_segment_is_a_usage_error(db: AsyncSession, database_url: str) -> None:
    result = await _run(database_url, "create", "--title", "T", "--text-ru", "x", "--segment", "vip")
    assert result.exit_code == 2
    assert "'vip' is not one of" in result.stderr
    assert await rows(db, Broadcast) == 0


async def test_by_plan_from_the_shell(db: AsyncSession, database_url: str) -> None:
    month_id = (await plan(db, "month")).id
    await db.commit()
    result = await _run(
        database_url, "create", "--title", "T", "--text-ru", "x", "--segment", "plan", "--plan", str(month_id)
    )
    assert result.exit_code == 0, result.output
    assert "0 recipients now" in result.stdout


@pytest.mark.parametrize("command", ["show", "preview", "start", "pause", "resume", "cancel"])
async def test_an_unknown_id_exits_2(db: AsyncSession, database_url: str, command: str) -> None:
    result = await _run(database_url, command, "999")
    assert result.exit_code == 2
    assert result.stderr == "error: no broadcast #999\n"


async def test_test_send_reaches_the_given_account_only(db: AsyncSession, database_url: str) -> None:
    created = await _run(database_url, "create", "--title", "T", "--text-ru", "Привет", "--text-en", "Hi")
    broadcast_id = created.stdout.split("#")[1].split(" ")[0]
    emulator = TelegramBotApiEmulator()
    with serve(emulator.app) as url:
        bot = {"BOT_TOKEN": emulator.token, "TELEGRAM_API_URL": url}
        sent = await _run(database_url, "test", broadcast_id, "--telegram-id", "5551234", "--language", "en", **bot)
        assert sent.exit_code == 0, sent.output
        assert sent.stdout == f"test message of broadcast #{broadcast_id} sent to 5551234\n"
        assert [(m.chat_id, m.text) for m in emulator.messages] == [(5551234, "Hi")]

        emulator.blocked_users.add(5551235)
        refused = await _run(database_url, "test", broadcast_id, "--telegram-id", "5551235", **bot)
        assert refused.exit_code == 2
        assert refused.stderr.startswith("error: Telegram did not take the test message: Forbidden: bot was blocked")

    no_bot = await _run(database_url, "test", broadcast_id, "--telegram-id", "5551234", BOT_TOKEN="")
    assert no_bot.exit_code == 2 and "no bot is configured" in no_bot.stderr


async def test_start_without_a_bot_refuses_and_changes_nothing(db: AsyncSession, database_url: str) -> None:
    created = await _run(database_url, "create", "--title", "T", "--text-ru", "Привет")
    broadcast_id = int(created.stdout.split("#")[1].split(" ")[0])

    refused = await _run(database_url, "start", str(broadcast_id), BOT_TOKEN="")

    assert refused.exit_code == 2
    assert refused.stderr == "error: no bot is configured (BOT_TOKEN), so nothing can be sent\n"
    assert (await reload(db, broadcast_id)).status == BroadcastStatus.DRAFT
