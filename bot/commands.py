"""The launcher's commands: /start (registration, once, with a referral payload), /help, /support, /login (a
browser sign-in link), /admin (staff only). Each handler reads and writes our database only: nothing here waits
on a panel or a payment provider."""

from __future__ import annotations

import html
from datetime import datetime

from aiogram import F, Router
from aiogram.filters import Command, CommandObject, CommandStart
from aiogram.types import ChatMemberUpdated, InlineKeyboardMarkup, Message
from aiogram.types import User as TelegramAccount
from sqlalchemy import select

from app.auth.login_codes import issue_login
from app.auth.telegram import TelegramUser
from app.config import Settings
from app.db import transaction
from app.kit.clock import utcnow
from app.kit.i18n import Translator, pick_language
from app.models import Staff, User
from app.resources import Resources
from app.runtime_settings import service as runtime_settings
from app.telegram.buttons import keyboard, page_button
from app.users.service import upsert_from_telegram


def _identity(account: TelegramAccount) -> TelegramUser:
    return TelegramUser(
        id=account.id,
        first_name=account.first_name,
        last_name=account.last_name,
        username=account.username,
        language_code=account.language_code,
        is_premium=bool(account.is_premium),
    )


async def _user(resources: Resources, account: TelegramAccount, start_param: str | None = None) -> tuple[User, bool]:
    """The customer behind a Telegram account, registered on first contact (a repeated /start changes nothing
    but the names); also means they can be written to again. Returns (user, created)."""
    async with transaction(resources.sessionmaker) as session:
        known = await session.scalar(select(User.id).where(User.telegram_id == account.id))
        user = await upsert_from_telegram(
            session, _identity(account), start_param=start_param, default_language=resources.settings.default_language
        )
        user.unreachable_since = None
    return user, known is None


def _markup(settings: Settings, _: Translator, *buttons: tuple[str, str]) -> InlineKeyboardMarkup:
    rows = [[page_button(settings, _(label), path)] for label, path in buttons]
    return InlineKeyboardMarkup.model_validate(keyboard(*rows))


async def start(message: Message, command: CommandObject, resources: Resources) -> None:
    assert message.from_user is not None
    user, created = await _user(resources, message.from_user, command.args)
    _ = Translator(user.language)
    name = html.escape(message.from_user.first_name)
    text = _("bot.welcome" if created else "bot.welcome_back", name=name)
    await message.answer(text, reply_markup=_markup(resources.settings, _, ("bot.open", "/app")))


async def help_command(message: Message, resources: Resources) -> None:
    assert message.from_user is not None
    user, _created = await _user(resources, message.from_user)
    _ = Translator(user.language)
    await message.answer(_("bot.help"), reply_markup=_markup(resources.settings, _, ("bot.help_button", "/app/help")))


async def support(message: Message, resources: Resources) -> None:
    assert message.from_user is not None
    user, _created = await _user(resources, message.from_user)
    _ = Translator(user.language)
    contact = (await runtime_settings.cached(resources.sessionmaker, resources.settings)).support_username
    handle = contact.removeprefix("@").removeprefix("https://t.me/")
    markup = keyboard([{"text": _("bot.support_button"), "url": f"https://t.me/{handle}"}])
    await message.answer(
        _("bot.support", contact=html.escape(contact)), reply_markup=InlineKeyboardMarkup.model_validate(markup)
    )


async def login(message: Message, resources: Resources) -> None:
    assert message.from_user is not None
    settings = resources.settings
    async with transaction(resources.sessionmaker) as session:
        account = _identity(message.from_user)
        user = await upsert_from_telegram(session, account, default_language=settings.default_language)
        issued = await issue_login(session, user, secret_key=settings.secret_key)
        language = user.language
    _ = Translator(language)
    link = f"{settings.public_base_url.rstrip('/')}/login/link/{issued.link_token}"
    # A plain link, not a Web App: the point is to sign in in another browser.
    markup = InlineKeyboardMarkup.model_validate(keyboard([{"text": _("bot.login_button"), "url": link}]))
    await message.answer(_("bot.login", link=html.escape(link), code=issued.display_code), reply_markup=markup)


async def admin(message: Message, resources: Resources) -> None:
    assert message.from_user is not None
    async with transaction(resources.sessionmaker) as session:
        staff = await session.scalar(
            select(Staff).where(Staff.telegram_id == message.from_user.id, Staff.is_active, ~Staff.is_demo)
        )
        user = await session.scalar(select(User).where(User.telegram_id == message.from_user.id))
    _ = Translator(
        user.language if user else pick_language(message.from_user.language_code, resources.settings.default_language)
    )
    if staff is None:
        await message.answer(_("bot.not_staff"))
        return
    await message.answer(_("bot.admin"), reply_markup=_markup(resources.settings, _, ("bot.admin_button", "/admin")))


async def membership(update: ChatMemberUpdated, resources: Resources) -> None:
    """Blocking the bot (kicked) makes the user unreachable; unblocking makes them reachable again."""
    if update.chat.type != "private":
        return
    reachable = update.new_chat_member.status == "member"
    async with transaction(resources.sessionmaker) as session:
        user = await session.scalar(select(User).where(User.telegram_id == update.from_user.id))
        if user is not None:
            since: datetime | None = None if reachable else (user.unreachable_since or utcnow())
            user.unreachable_since = since


async def anything_else(message: Message, resources: Resources) -> None:
    assert message.from_user is not None
    user, _created = await _user(resources, message.from_user)
    _ = Translator(user.language)
    await message.answer(_("bot.unknown"), reply_markup=_markup(resources.settings, _, ("bot.open", "/app")))


def build_router() -> Router:
    """A fresh router each time: aiogram attaches a router to one dispatcher only."""
    router = Router(name="commands")
    router.message.register(start, CommandStart())
    router.message.register(help_command, Command("help"))
    router.message.register(support, Command("support"))
    router.message.register(login, Command("login"))
    router.message.register(admin, Command("admin"))
    router.my_chat_member.register(membership)
    router.message.register(anything_else, F.text)
    return router
