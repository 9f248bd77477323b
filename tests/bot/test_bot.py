"""The bot in webhook mode, run as `vpnshop bot` runs it (bot.main.run) against the Telegram Bot API emulator
over HTTP: the emulator posts updates to the bot's webhook with the secret token, and the bot answers through the
emulator's API."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.models import LoginCode, Payment, PaymentStatus, Staff, StaffRole, User
from app.payments.orders import CheckoutRequest, start_checkout
from app.resources import open_resources
from bot.main import run
from tests.conftest import make_settings
from tests.emulators.harness import Plug, free_port, serve
from tests.emulators.telegram import TelegramBotApiEmulator
from tests.payments.shop import seed_plans

plug = Plug()
SHOP_URL = "https://shop.example"


@pytest.fixture(scope="module")
def emulator_url() -> Iterator[str]:
    with serve(plug) as url:
        yield url


@dataclass
class RunningBot:
    emulator: TelegramBotApiEmulator
    settings: Settings
    db: AsyncSession

    def message(self, user_id: int, text: str, *, language_code: str = "en") -> dict[str, Any]:
        """An Update of a private message from the user, as Telegram builds it (posted by the test)."""
        return self.emulator.user_message(user_id, text, language_code=language_code, queue=False)

    async def post(self, update: dict[str, Any], *, secret: str | None = None) -> int:
        delivery = self.emulator.delivery(update)
        if secret is not None:
            delivery.headers["x-telegram-bot-api-secret-token"] = secret
        return (await self.emulator.deliver(delivery, attempts=1)).status_code

    async def say(self, user_id: int, text: str, **fields: Any) -> int:
        return await self.post(self.message(user_id, text, **fields))

    def replies_to(self, chat_id: int) -> list[dict[str, Any]]:
        return [message for message in self.emulator.messages if message["chat"]["id"] == chat_id]

    async def user(self, telegram_id: int) -> User | None:
        self.db.expire_all()
        return await self.db.scalar(select(User).where(User.telegram_id == telegram_id))


async def _wait_until_ready(emulator: TelegramBotApiEmulator, url: str, task: asyncio.Task[None]) -> None:
    """Until the bot has registered its webhook, which it does once its server listens (a busy machine may take
    a while; a bot that died says why at once)."""
    deadline = time.monotonic() + 60
    while emulator.webhook_url != url:
        if task.done():
            task.result()
            raise RuntimeError("the bot stopped before setting its webhook")
        if time.monotonic() > deadline:
            raise RuntimeError("the bot did not set its webhook within 60 s")
        await asyncio.sleep(0.02)


@pytest.fixture
async def running_bot(database_url: str, db: AsyncSession, emulator_url: str) -> AsyncIterator[RunningBot]:
    emulator = TelegramBotApiEmulator()
    plug.app = emulator.app
    port = free_port()
    settings = make_settings(
        database_url,
        **emulator.settings(emulator_url),
        public_base_url=SHOP_URL,
        bot_webhook_url=f"http://127.0.0.1:{port}/telegram/webhook",
        bot_webhook_host="127.0.0.1",
        bot_webhook_port=port,
        bot_throttle_per_minute=10,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(run(settings, stop))
    try:
        await _wait_until_ready(emulator, settings.bot_webhook_url, task)
        yield RunningBot(emulator, settings, db)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        plug.app = None


async def test_start_registers_once_and_opens_the_mini_app(running_bot: RunningBot) -> None:
    assert running_bot.emulator.webhook_url == running_bot.settings.bot_webhook_url  # set by the bot itself
    assert await running_bot.say(501, "/start", language_code="ru") == 200
    user = await running_bot.user(501)
    assert user is not None and user.language == "ru" and user.referrer_id is None
    [reply] = running_bot.replies_to(501)
    assert reply["text"].startswith("👋 Привет")
    button = reply["params"]["reply_markup"]
    assert f"{SHOP_URL}/app" in str(button) and "web_app" in str(button)
    # Again: the same user, no second registration, a "welcome back".
    assert await running_bot.say(501, "/start") == 200
    assert await running_bot.db.scalar(select(func.count()).select_from(User)) == 1
    assert "С возвращением" in running_bot.replies_to(501)[-1]["text"]


async def test_hindi_and_indonesian_speakers_are_answered_in_their_language(running_bot: RunningBot) -> None:
    assert await running_bot.say(511, "/start", language_code="hi") == 200
    assert await running_bot.say(512, "/start", language_code="id") == 200
    assert (await running_bot.user(511)).language == "hi" and (await running_bot.user(512)).language == "id"
    assert running_bot.replies_to(511)[-1]["text"].startswith("👋 नमस्ते")
    assert running_bot.replies_to(512)[-1]["text"].startswith("👋 Hai")
    # The command menu in each language, set by the bot itself at start.
    commands = running_bot.emulator.commands
    by_language = {language: items for (_, language), items in commands.items()}
    assert {"command": "help", "description": "मदद"} in by_language["hi"]
    assert {"command": "help", "description": "Bantuan"} in by_language["id"]


async def test_a_referral_payload_is_recorded_once_and_never_overwritten(running_bot: RunningBot) -> None:
    await running_bot.say(601, "/start")
    referrer = await running_bot.user(601)
    referrer_id, referrer_code = referrer.id, referrer.referral_code
    await running_bot.say(602, f"/start ref_{referrer_code}")
    assert (await running_bot.user(602)).referrer_id == referrer_id
    await running_bot.say(603, "/start")
    other_code = (await running_bot.user(603)).referral_code
    await running_bot.say(602, f"/start ref_{other_code}")  # a later link does not move the referral
    assert (await running_bot.user(602)).referrer_id == referrer_id
    await running_bot.say(604, "/start ref_doesnotexist")
    assert (await running_bot.user(604)).referrer_id is None


async def test_a_wrong_secret_token_is_refused_and_changes_nothing(running_bot: RunningBot) -> None:
    assert await running_bot.post(running_bot.message(701, "/start"), secret="forged") == 401
    assert await running_bot.user(701) is None
    assert running_bot.replies_to(701) == []


async def test_help_support_and_login(running_bot: RunningBot) -> None:
    await running_bot.say(801, "/help")
    await running_bot.say(801, "/support")
    await running_bot.say(801, "/login")
    help_reply, support_reply, login_reply = running_bot.replies_to(801)
    assert "/login" in help_reply["text"]
    assert "t.me/support" in str(support_reply["params"]["reply_markup"])
    assert f"{SHOP_URL}/login/link/" in login_reply["text"]
    user = await running_bot.user(801)
    codes = (await running_bot.db.scalars(select(LoginCode).where(LoginCode.user_id == user.id))).all()
    assert {code.kind for code in codes} == {"link", "code"}


async def test_admin_opens_the_admin_area_for_staff_only(running_bot: RunningBot) -> None:
    running_bot.db.add(Staff(username="boss", password_hash="x", role=StaffRole.OWNER, telegram_id=901))
    await running_bot.db.commit()
    await running_bot.say(901, "/admin")
    await running_bot.say(902, "/admin")
    assert f"{SHOP_URL}/admin" in str(running_bot.replies_to(901)[0]["params"]["reply_markup"])
    assert running_bot.replies_to(902)[0]["text"] == "This command is for staff only."


async def test_more_than_ten_messages_a_minute_get_one_polite_answer(running_bot: RunningBot) -> None:
    running_bot.emulator.set_limits(chat_burst=50)  # Telegram's own per-chat limit is not what this is about
    for _ in range(13):
        assert await running_bot.say(1001, "hello") == 200
    replies = [reply["text"] for reply in running_bot.replies_to(1001)]
    assert len(replies) == 11
    assert replies[-1].startswith("Too many messages")
    assert all(text.startswith("I only understand commands") for text in replies[:10])


async def test_a_reply_refused_with_429_is_sent_after_the_wait(running_bot: RunningBot) -> None:
    running_bot.emulator.fail_next(429, retry_after=1, method="sendMessage")
    assert await running_bot.say(1050, "/help") == 200
    assert len(running_bot.replies_to(1050)) == 1
    assert running_bot.emulator.requests["sendMessage"] == 2


async def test_blocking_the_bot_marks_the_user_unreachable_until_they_return(running_bot: RunningBot) -> None:
    await running_bot.say(1101, "/start")

    def membership(status: str) -> dict[str, Any]:
        person = running_bot.emulator.user(1101)
        return running_bot.emulator.new_update(
            my_chat_member={
                "chat": {"id": 1101, "type": "private", "first_name": person["first_name"]},
                "from": person,
                "date": int(running_bot.emulator.now()),
                "old_chat_member": {"status": "member", "user": running_bot.emulator.bot_user()},
                "new_chat_member": {"status": status, "user": running_bot.emulator.bot_user()}
                | ({"until_date": 0} if status == "kicked" else {}),
            }
        )

    await running_bot.post(membership("kicked"))
    assert (await running_bot.user(1101)).unreachable_since is not None
    await running_bot.post(membership("member"))
    assert (await running_bot.user(1101)).unreachable_since is None


async def _stars_checkout(running_bot: RunningBot, telegram_id: int) -> Payment:
    await seed_plans(running_bot.db)
    await running_bot.say(telegram_id, "/start")
    user = await running_bot.user(telegram_id)
    resources = open_resources(running_bot.settings)
    try:
        async with resources.sessionmaker() as session:
            request = CheckoutRequest(plan="month", provider="stars", currency="XTR")
            return await start_checkout(
                session, resources.payments, resources.settings, user, request, return_url="http://t/{payment}"
            )
    finally:
        await resources.aclose()


async def _payment(running_bot: RunningBot, payment: Payment) -> Payment:
    running_bot.db.expire_all()
    return await running_bot.db.get_one(Payment, payment.id)


async def test_stars_pre_checkout_is_answered_and_the_payment_credited_once(running_bot: RunningBot) -> None:
    payment = await _stars_checkout(running_bot, 1201)
    result = await running_bot.emulator.pay_via_webhook(payment.public_id, user_id=1201)
    assert result["status"] == "paid" and result["webhook_status"] == 200
    [query] = running_bot.emulator.queries.values()
    assert query.answered_at - query.sent_at < 2  # well inside Telegram's 10 s
    assert (await _payment(running_bot, payment)).status == PaymentStatus.SUCCEEDED
    # Telegram delivering the same successful_payment again credits nothing more.
    charge = running_bot.emulator.charges[result["charge_id"]]
    again = running_bot.emulator.payment_update(charge)
    assert await running_bot.post(again) == 200
    paid = await running_bot.db.scalar(
        select(func.count()).select_from(Payment).where(Payment.status == PaymentStatus.SUCCEEDED)
    )
    assert paid == 1


async def test_stars_pre_checkout_for_a_wrong_amount_is_refused(running_bot: RunningBot) -> None:
    payment = await _stars_checkout(running_bot, 1301)
    invoice = running_bot.emulator.invoice(payment.public_id)
    result = await running_bot.emulator.pay_via_webhook(payment.public_id, user_id=1301, amount=invoice.amount - 1)
    assert result["status"] == "rejected"
    assert (await _payment(running_bot, payment)).status == PaymentStatus.PENDING


async def test_the_bot_answers_500_when_it_cannot_record_a_payment_so_telegram_retries(
    running_bot: RunningBot,
) -> None:
    payment = await _stars_checkout(running_bot, 1401)
    # A payment for an order we have never seen: the payments service refuses it (unknown payment).
    charge_update = running_bot.emulator.pay(payment.public_id, user_id=1401)
    body = charge_update.body.replace(payment.public_id.encode(), b"00000000-0000-0000-0000-000000000000")
    async with httpx.AsyncClient() as client:
        response = await client.post(running_bot.settings.bot_webhook_url, content=body, headers=charge_update.headers)
    assert response.status_code == 500
    assert (await _payment(running_bot, payment)).status == PaymentStatus.PENDING


async def test_staff_edits_reach_the_bot_without_a_restart(running_bot: RunningBot) -> None:
    """A text override (/admin/texts) and a setting (/admin/settings) committed while the bot runs are in its
    next answers."""
    from app.audit.service import Actor
    from app.runtime_settings import service as runtime_settings
    from app.texts import service as texts

    await running_bot.say(811, "/help")
    staff = Actor("system", None)
    await texts.save(running_bot.db, staff, "bot.help", "en", "<b>Edited help</b>\n/support — write to us")
    await runtime_settings.update(running_bot.db, staff, running_bot.settings, {"support_username": "@desk_team"})
    await running_bot.db.commit()
    await running_bot.say(811, "/help")
    await running_bot.say(811, "/support")
    before, after, support = running_bot.replies_to(811)
    assert "Edited help" not in before["text"] and "/login" in before["text"]
    assert after["text"].startswith("<b>Edited help</b>") or after["text"].startswith("Edited help")
    assert "t.me/desk_team" in str(support["params"]["reply_markup"]) and "@desk_team" in support["text"]
