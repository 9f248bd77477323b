"""`vpnshop bot`: the thin launcher (SPEC §11), by long polling or, when BOT_WEBHOOK_URL is set, by webhook with
Telegram's secret token checked. In webhook mode every update is handled before it is answered, so a failure
answers 500 and Telegram delivers the update again (a payment is never dropped on the floor)."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from typing import Any

from aiogram import Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.session.middlewares.base import BaseRequestMiddleware, NextRequestMiddlewareType
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import TelegramNetworkError, TelegramRetryAfter, TelegramServerError, TelegramUnauthorizedError
from aiogram.methods import TelegramMethod
from aiogram.types import BotCommand, MenuButtonWebApp, WebAppInfo
from aiogram.webhook.aiohttp_server import SimpleRequestHandler
from aiohttp import web

from app.config import ConfigError, Settings
from app.kit.i18n import available_languages, translate
from app.kit.metrics import BOT_UPDATE_LATENCY, BOT_UPDATES, serve_metrics
from app.resources import Resources, open_resources
from app.texts import overrides as text_overrides
from bot import commands, payments
from bot.throttling import Throttle

log = logging.getLogger(__name__)

COMMANDS = ("start", "help", "support", "login")
UPDATES = ["message", "callback_query", "pre_checkout_query", "my_chat_member"]
REPLY_ATTEMPTS = 3
MAX_REPLY_WAIT = 10  # seconds; Telegram waits up to 60 s for a webhook answer
MAX_CONNECT_WAIT = 60.0  # seconds between two tries at reaching Telegram at start-up, at most


class WaitOutFloodControl(BaseRequestMiddleware):
    """A reply refused with 429 (a user tapping fast hits the one-message-a-second chat limit) is sent again
    after Telegram's retry_after, a couple of times, instead of failing the update."""

    async def __call__(self, make_request: NextRequestMiddlewareType, bot: Bot, method: TelegramMethod) -> Any:
        attempt = 1
        while True:
            try:
                return await make_request(bot, method)
            except TelegramRetryAfter as exc:
                if attempt == REPLY_ATTEMPTS or exc.retry_after > MAX_REPLY_WAIT:
                    raise
                attempt += 1
                await asyncio.sleep(exc.retry_after)


def build_bot(settings: Settings) -> Bot:
    session = AiohttpSession(api=TelegramAPIServer.from_base(settings.telegram_api_url))
    session.middleware(WaitOutFloodControl())
    return Bot(settings.bot_token, session=session, default=DefaultBotProperties(parse_mode="HTML"))


async def observe_update(handler: Any, update: Any, data: dict[str, Any]) -> Any:
    """Counts and times every update (the dashboard's bot panel); a failure is counted and passed on."""
    started = time.perf_counter()
    try:
        result = await handler(update, data)
    except Exception:
        BOT_UPDATES.labels("failed").inc()
        raise
    finally:
        BOT_UPDATE_LATENCY.observe(time.perf_counter() - started)
    BOT_UPDATES.labels("ok").inc()
    return result


def texts_in_force(resources: Resources) -> Any:
    """The staff's edited texts (/admin/texts) for each update, read afresh (app/texts/overrides.py)."""

    async def bind(handler: Any, update: Any, data: dict[str, Any]) -> Any:
        await text_overrides.bind(resources.sessionmaker)
        return await handler(update, data)

    return bind


def build_dispatcher(resources: Resources) -> Dispatcher:
    dispatcher = Dispatcher(resources=resources)
    dispatcher.update.outer_middleware(observe_update)
    dispatcher.update.outer_middleware(texts_in_force(resources))
    throttle = Throttle(resources)
    dispatcher.message.outer_middleware(throttle)
    dispatcher.callback_query.outer_middleware(throttle)
    # Money first: a payment message must never fall through to the catch-all text handler.
    dispatcher.include_router(payments.build_router())
    dispatcher.include_router(commands.build_router())
    return dispatcher


async def set_up_profile(bot: Bot, settings: Settings) -> None:
    """Commands in each language, and the menu button opening the Mini App (Telegram requires https)."""
    for language in available_languages():
        await bot.set_my_commands(
            [BotCommand(command=name, description=translate(language, f"bot.command.{name}")) for name in COMMANDS],
            language_code=language,
        )
    app_url = settings.public_base_url.rstrip("/") + "/app"
    if app_url.startswith("https://"):
        text = translate(settings.default_language, "bot.menu")
        await bot.set_chat_menu_button(menu_button=MenuButtonWebApp(text=text, web_app=WebAppInfo(url=app_url)))


async def wait_for_telegram(bot: Bot, stop: asyncio.Event) -> bool:
    """Until Telegram answers getMe, trying again with backoff (1 s doubling to a minute) and one line per try:
    Telegram (or the network to it) being down at start-up is no reason to exit. False if stopped meanwhile; a
    token Telegram refuses is the operator's to fix (ConfigError)."""
    delay = 1.0
    while not stop.is_set():
        try:
            await bot.get_me()
            return True
        except TelegramUnauthorizedError:
            raise ConfigError("config error: BOT_TOKEN: Telegram refused this token (revoked or mistyped?)") from None
        except (TelegramNetworkError, TelegramServerError) as exc:
            log.warning("bot: Telegram (TELEGRAM_API_URL) is unreachable (%s); trying again in %.0f s", exc, delay)
        try:
            await asyncio.wait_for(stop.wait(), delay)
        except TimeoutError:
            delay = min(delay * 2, MAX_CONNECT_WAIT)
    return False


async def _serve_webhook(bot: Bot, dispatcher: Dispatcher, settings: Settings, stop: asyncio.Event) -> None:
    app = web.Application()
    handler = SimpleRequestHandler(
        dispatcher, bot, secret_token=settings.bot_webhook_secret or None, handle_in_background=False
    )
    path = "/" + settings.bot_webhook_url.split("://", 1)[-1].partition("/")[2]
    handler.register(app, path=path)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.bot_webhook_host, settings.bot_webhook_port).start()
    await bot.set_webhook(
        settings.bot_webhook_url, secret_token=settings.bot_webhook_secret or None, allowed_updates=UPDATES
    )
    log.info("bot webhook listening on %s:%d%s", settings.bot_webhook_host, settings.bot_webhook_port, path)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


async def run(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Until `stop` is set (by SIGTERM/SIGINT when not given)."""
    resources = open_resources(settings)
    metrics_server = await serve_metrics(settings.metrics_host, settings.bot_metrics_port)
    bot = build_bot(settings)
    dispatcher = build_dispatcher(resources)
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    try:
        if not await wait_for_telegram(bot, stop):
            return
        await set_up_profile(bot, settings)
        if settings.bot_webhook_url:
            await _serve_webhook(bot, dispatcher, settings, stop)
        else:
            await bot.delete_webhook(drop_pending_updates=False)
            polling = asyncio.create_task(
                dispatcher.start_polling(bot, allowed_updates=UPDATES, handle_signals=False, close_bot_session=False)
            )
            await stop.wait()
            await dispatcher.stop_polling()
            await polling
    finally:
        await bot.session.close()
        await resources.aclose()
        if metrics_server is not None:
            await metrics_server.cleanup()
