"""The Bot API client against the emulator over real HTTP: what it sends, how it classifies what went wrong
(certainly not sent, or maybe sent), and that the bot's token never reaches the logs."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator

import pytest

from app.kit.logging import configure_logging
from app.telegram.api import BotApi, NotSent, OutcomeUnknown, RecipientUnreachable, RetryAfter
from tests.emulators.harness import free_port, serve
from tests.emulators.telegram import TelegramBotApiEmulator

TOKEN = "123456:SECRET-token-that-must-not-be-logged"


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    configure_logging("DEBUG", json_lines=False)
    logging.getLogger().addHandler(caplog.handler)  # configure_logging replaced the root's handlers
    caplog.set_level(logging.DEBUG)
    return caplog


@pytest.fixture
def emulator() -> Iterator[tuple[TelegramBotApiEmulator, str]]:
    emulator = TelegramBotApiEmulator(TOKEN, balance=10)  # Stars for a paid message
    with serve(emulator.app) as url:
        yield emulator, url


async def test_a_message_and_a_document_reach_telegram_and_the_token_is_not_logged(
    logs: pytest.LogCaptureFixture, emulator: tuple[TelegramBotApiEmulator, str]
) -> None:
    bot, url = emulator
    api = BotApi(TOKEN, url)
    try:
        markup = {"inline_keyboard": [[{"text": "Buy", "url": "https://example.com/"}]]}
        sent = await api.send_message(42, "<b>Hello</b>", reply_markup=markup, paid_broadcast=True)
        await api.send_document(42, "report.csv", b"a,b\n1,2\n", "text/csv", caption="<i>report</i>")
    finally:
        await api.aclose()
    message, document = bot.messages_to(42)
    assert sent["message_id"] == message.message_id
    assert (message.plain, message.reply_markup, message.paid) == ("Hello", markup, True)
    assert message.params["link_preview_options"] == {"is_disabled": True}
    assert document.method == "sendDocument" and document.plain == "report"
    assert document.files == {"document": ("report.csv", b"a,b\n1,2\n")}
    assert "SECRET-token" not in logs.text


async def test_telegrams_refusals_become_the_errors_a_sender_acts_on(
    emulator: tuple[TelegramBotApiEmulator, str],
) -> None:
    bot, url = emulator
    api = BotApi(TOKEN, url)
    try:
        bot.fail_next(429, retry_after=7)
        with pytest.raises(RetryAfter) as throttled:
            await api.send_message(1, "hi")
        assert throttled.value.retry_after == 7
        bot.fail_next(502)
        with pytest.raises(NotSent):
            await api.send_message(1, "hi")
        bot.blocked_users.add(2)
        with pytest.raises(RecipientUnreachable):
            await api.send_message(2, "hi")
    finally:
        await api.aclose()
    assert bot.messages == []


async def test_no_answer_in_time_is_an_unknown_outcome(emulator: tuple[TelegramBotApiEmulator, str]) -> None:
    bot, url = emulator
    bot.delay_next(60)
    api = BotApi(TOKEN, url, timeout=1.0)
    try:
        with pytest.raises(OutcomeUnknown):
            await api.send_message(5, "hi")
    finally:
        await api.aclose()
    assert len(bot.messages_to(5)) == 1  # Telegram did send it: it must never be sent again


async def test_a_refused_connection_is_certainly_not_sent() -> None:
    api = BotApi(TOKEN, f"http://127.0.0.1:{free_port()}")  # nothing listens there
    try:
        with pytest.raises(NotSent):
            await api.send_message(1, "hi")
    finally:
        await api.aclose()


async def test_a_connection_that_never_opens_is_not_sent_and_its_error_hides_the_token(
    logs: pytest.LogCaptureFixture,
) -> None:
    # A listener whose accept queue is full: the kernel drops further connection attempts, so connecting hangs
    # until the client's timeout. aiohttp's timeout error quotes the whole URL, token included.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = []
        while True:  # fill the queue (its length depends on the kernel): until a connection attempt hangs
            try:
                fillers.append(socket.create_connection(("127.0.0.1", port), timeout=0.5))
            except TimeoutError:
                break
        api = BotApi(TOKEN, f"http://127.0.0.1:{port}", timeout=1.0)
        try:
            with pytest.raises(NotSent):
                try:
                    await api.send_message(1, "hi")
                except NotSent:
                    logging.getLogger("test").exception("send failed")
                    raise
        finally:
            await api.aclose()
            for filler in fillers:
                filler.close()
    assert "send failed" in logs.text
    assert "SECRET-token" not in logs.text
