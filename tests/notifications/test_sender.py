"""Notifications go out through the Bot API (the emulator, over HTTP) exactly once per dedupe key, in the
user's language from editable texts; transient errors are retried, 403 marks the user unreachable, and a
message whose fate is unknown is never sent twice."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import transaction
from app.kit.clock import utcnow
from app.models import DeliveryStatus, MessageText, Notification, OutboxMessage, OutboxStatus, Staff, StaffRole, User
from app.notifications import handlers  # noqa: F401  (registers the notification topics)
from app.notifications.service import alert_staff, notify_user
from app.outbox import service as outbox
from app.outbox.service import dispatch
from app.resources import Resources, open_resources
from app.telegram.api import BotApi
from tests.conftest import make_settings
from tests.emulators.harness import Plug, serve
from tests.emulators.telegram import TelegramBotApiEmulator

plug = Plug()


@pytest.fixture(scope="module")
def emulator_url() -> Iterator[str]:
    with serve(plug) as url:
        yield url


@dataclass
class Bot:
    emulator: TelegramBotApiEmulator
    resources: Resources
    db: AsyncSession

    async def user(self, telegram_id: int, **fields) -> User:
        user = User(telegram_id=telegram_id, referral_code=f"r{telegram_id}", **fields)
        self.db.add(user)
        await self.db.commit()
        return user

    async def notify(self, user: User, kind: str, data: dict, key: str) -> None:
        async with transaction(self.resources.sessionmaker) as session:
            await notify_user(session, user.id, kind, data, dedupe_key=key)

    async def dispatch(self) -> dict[str, int]:
        return await dispatch({"resources": self.resources}, lane="messages")

    async def notification(self, key: str) -> Notification:
        async with self.resources.sessionmaker() as session:
            return await session.scalar(select(Notification).where(Notification.dedupe_key == key))

    def texts_to(self, chat_id: int) -> list[str]:
        return [message["text"] for message in self.emulator.messages if message["chat"]["id"] == chat_id]


@pytest.fixture
async def bot(database_url: str, db: AsyncSession, emulator_url: str) -> AsyncIterator[Bot]:
    emulator = TelegramBotApiEmulator()
    plug.app = emulator.app
    resources = open_resources(make_settings(database_url, **emulator.settings(emulator_url)))
    try:
        yield Bot(emulator, resources, db)
    finally:
        plug.app = None
        await resources.aclose()


REMINDER = {"days": 3, "ends_at": "2026-12-01T10:00:00+00:00", "auto_renew": False, "subscription_id": 1}


async def test_sent_once_in_the_users_language_with_a_button(bot: Bot) -> None:
    russian, english = await bot.user(101, language="ru"), await bot.user(102, language="en")
    await bot.notify(russian, "expiry_reminder", REMINDER, "r:1")
    await bot.notify(english, "expiry_reminder", REMINDER, "r:2")
    await bot.notify(english, "expiry_reminder", REMINDER, "r:2")  # queued twice: one outbox row
    assert (await bot.dispatch()) == {"done": 2, "retry": 0, "dead": 0}
    assert bot.texts_to(101) == [
        # CLDR's medium date; its closing "г." takes the sentence's full stop.
        "⏳ Подписка закончится через <b>3 дня</b> — 1 дек. 2026\u202fг. Продлите, чтобы VPN не отключился."
    ]
    assert bot.texts_to(102) == [
        "⏳ Your subscription ends in <b>3 days</b> — Dec 1, 2026. Renew it to keep your VPN on."
    ]
    sent = bot.emulator.messages[-1]["params"]
    assert sent["parse_mode"] == "HTML"
    assert "Renew" in str(sent["reply_markup"]) and "/app/checkout" in str(sent["reply_markup"])
    notification = await bot.notification("r:2")
    assert notification.status == DeliveryStatus.SENT and notification.attempts == 1
    # A second outbox message with the same notification key (queued by another path) sends nothing more.
    async with transaction(bot.resources.sessionmaker) as session:
        await outbox.add(
            session,
            "notify.user",
            {"user_id": english.id, "kind": "expiry_reminder", "data": REMINDER, "dedupe_key": "r:2"},
        )
    await bot.dispatch()
    assert len(bot.texts_to(102)) == 1


async def test_hindi_and_indonesian_readers_get_their_language_and_dates(bot: Bot) -> None:
    hindi, indonesian = await bot.user(103, language="hi"), await bot.user(104, language="id")
    await bot.notify(hindi, "expiry_reminder", REMINDER, "r:hi")
    await bot.notify(indonesian, "expiry_reminder", REMINDER, "r:id")
    assert (await bot.dispatch()) == {"done": 2, "retry": 0, "dead": 0}
    ends = "1 दिस॰ 2026"
    assert bot.texts_to(103) == [f"⏳ आपकी सदस्यता <b>3 दिन</b> में खत्म होगी — {ends}. VPN चालू रखने के लिए इसे रिन्यू करें।"]
    assert bot.texts_to(104) == [
        "⏳ Langganan Anda berakhir dalam <b>3 hari</b> — 1 Des 2026. Perpanjang agar VPN tetap menyala."
    ]
    buttons = " ".join(str(message["params"].get("reply_markup")) for message in bot.emulator.messages)
    assert "रिन्यू करें" in buttons and "Perpanjang" in buttons  # the buttons are translated too


async def test_staff_edited_text_wins_and_values_are_escaped(bot: Bot) -> None:
    user = await bot.user(103, language="en")
    bot.db.add(MessageText(key="notify.payment_failed", language="en", body="Oops: {reason} (pay again)"))
    await bot.db.commit()
    await bot.notify(user, "payment_failed", {"payment": "p1", "reason": "<card> declined", "renewal": False}, "f:1")
    await bot.dispatch()
    assert bot.texts_to(103) == ["Oops: &lt;card&gt; declined (pay again)"]


async def test_a_blocked_bot_marks_the_user_unreachable_and_later_messages_are_skipped(bot: Bot) -> None:
    user = await bot.user(104)
    bot.emulator.blocked_users.add(104)
    await bot.notify(user, "trial_ending", {"ends_at": "2026-12-01T10:00:00+00:00"}, "t:1")
    assert (await bot.dispatch())["done"] == 1  # nothing to retry
    notification = await bot.notification("t:1")
    assert notification.status == DeliveryStatus.FAILED and "blocked" in notification.error
    await bot.db.refresh(user)
    assert user.unreachable_since is not None
    await bot.notify(user, "subscription_ended", {"ends_at": "2026-12-01T10:00:00+00:00"}, "e:1")
    await bot.dispatch()
    assert (await bot.notification("e:1")).status == DeliveryStatus.SKIPPED
    assert bot.emulator.requests["sendMessage"] == 1


async def test_a_server_error_is_retried_later_and_sent_once(bot: Bot) -> None:
    user = await bot.user(105)
    bot.emulator.fail_next(502, method="sendMessage")
    await bot.notify(user, "trial_ending", {"ends_at": "2026-12-01T10:00:00+00:00"}, "t:2")
    assert (await bot.dispatch())["retry"] == 1
    assert (await bot.notification("t:2")).status == DeliveryStatus.PENDING
    async with transaction(bot.resources.sessionmaker) as session:
        message = await session.scalar(select(OutboxMessage).where(OutboxMessage.topic == "notify.user"))
        message.available_at = utcnow() - timedelta(seconds=1)  # the backoff has passed
    assert (await bot.dispatch())["done"] == 1
    assert len(bot.texts_to(105)) == 1
    assert (await bot.notification("t:2")).attempts == 2


async def test_a_429_pauses_and_the_same_message_goes_out_once(bot: Bot) -> None:
    user = await bot.user(106)
    bot.emulator.fail_next(429, retry_after=1, method="sendMessage")
    await bot.notify(user, "trial_ending", {"ends_at": "2026-12-01T10:00:00+00:00"}, "t:3")
    assert (await bot.dispatch())["done"] == 1
    assert bot.emulator.requests["sendMessage"] == 2
    assert len(bot.texts_to(106)) == 1


async def test_an_answer_that_never_came_is_not_sent_again(bot: Bot) -> None:
    user = await bot.user(107)
    bot.emulator.delay_next(30, method="sendMessage")  # Telegram sends it but we never hear back
    telegram = bot.resources.telegram
    await telegram.api.aclose()
    telegram.api = BotApi(bot.emulator.token, bot.resources.settings.telegram_api_url, timeout=0.5)
    await bot.notify(user, "trial_ending", {"ends_at": "2026-12-01T10:00:00+00:00"}, "t:4")
    assert (await bot.dispatch())["done"] == 1
    notification = await bot.notification("t:4")
    assert notification.status == DeliveryStatus.UNKNOWN
    await bot.dispatch()
    assert len(bot.texts_to(107)) == 1


async def test_a_crash_while_sending_leaves_the_message_unknown_not_resent(bot: Bot) -> None:
    user = await bot.user(108)
    await bot.notify(user, "trial_ending", {"ends_at": "2026-12-01T10:00:00+00:00"}, "t:5")
    async with transaction(bot.resources.sessionmaker) as session:
        # What a worker killed right after marking the row (and maybe sending) leaves behind.
        session.add(
            Notification(
                user_id=user.id,
                kind="trial_ending",
                dedupe_key="t:5",
                payload={},
                status=DeliveryStatus.SENDING,
                attempts=1,
            )
        )
    await bot.dispatch()
    assert (await bot.notification("t:5")).status == DeliveryStatus.UNKNOWN
    assert bot.texts_to(108) == []


async def test_without_a_bot_messages_are_recorded_as_skipped(database_url: str, db: AsyncSession) -> None:
    resources = open_resources(make_settings(database_url))
    try:
        user = User(telegram_id=109, referral_code="r109")
        db.add(user)
        await db.commit()
        async with transaction(resources.sessionmaker) as session:
            await notify_user(
                session, user.id, "trial_ending", {"ends_at": "2026-12-01T10:00:00+00:00"}, dedupe_key="t:6"
            )
        await dispatch({"resources": resources}, lane="messages")
        async with resources.sessionmaker() as session:
            notification = await session.scalar(select(Notification))
            outbox_row = await session.scalar(select(OutboxMessage))
        assert notification.status == DeliveryStatus.SKIPPED and "BOT_TOKEN" in notification.error
        assert outbox_row.status == OutboxStatus.DONE
    finally:
        await resources.aclose()


async def test_staff_alerts_reach_each_owner_and_admin_with_telegram(bot: Bot) -> None:
    for name, role, telegram_id in (
        ("own", StaffRole.OWNER, 901),
        ("adm", StaffRole.ADMIN, 902),
        ("sup", StaffRole.SUPPORT, 903),
        ("nobody", StaffRole.ADMIN, None),
    ):
        bot.db.add(Staff(username=name, password_hash="x", role=role, telegram_id=telegram_id))
    await bot.db.commit()
    async with transaction(bot.resources.sessionmaker) as session:
        await alert_staff(
            session, "payment_mismatch", {"payment": "p-1", "provider": "wata", "reason": "<amount>"}, dedupe_key="m:1"
        )
    await bot.dispatch()
    await bot.dispatch()  # the fan-out queued one message per member
    assert {message["chat"]["id"] for message in bot.emulator.messages} == {901, 902}
    assert "&lt;amount&gt;" in bot.texts_to(901)[0]


async def test_problems_are_alerted_to_the_staff_chat_and_topic_set_in_the_admin(bot: Bot) -> None:
    """raise_alerts (the alert job) finds a server down, a stuck outbox and a failed backup; each reaches the
    chat and forum topic chosen in /admin/settings, besides the owners."""
    from app.audit.service import Actor
    from app.models import JobRun
    from app.runtime_settings import service as runtime_settings
    from app.stats.alerts import raise_alerts
    from tests.factories import add_server

    bot.db.add(Staff(username="own", password_hash="x", role=StaffRole.OWNER, telegram_id=901))
    server = await add_server(bot.db, "helsinki-1")
    server.health = "down"
    now = utcnow()
    bot.db.add(JobRun(job_name="backup_database", started_at=now, finished_at=now, outcome="failed", error="disk full"))
    await runtime_settings.update(
        bot.db,
        Actor("system", None),
        bot.resources.settings,
        {"staff_alert_chat_id": "-1001234567890", "staff_alert_topic_id": "7"},
    )
    await bot.db.commit()
    async with transaction(bot.resources.sessionmaker) as session:
        raised = await raise_alerts(session, now)
    assert sorted(raised) == ["backup_failed", "server_down"]
    async with transaction(bot.resources.sessionmaker) as session:
        assert await raise_alerts(session, now) == raised  # the same hour: queued again under the same keys …
    for _ in range(3):
        await bot.dispatch()
    to_chat = [m for m in bot.emulator.messages if m["chat"]["id"] == -1001234567890]
    assert len(to_chat) == 2  # … so each is sent once
    assert {m["params"].get("message_thread_id") for m in to_chat} == {7}
    texts = " ".join(m["text"] for m in to_chat)
    assert "helsinki-1" in texts and "disk full" in texts
    assert len(bot.texts_to(901)) == 2
