"""The Telegram Bot API emulator's own behaviour, over real HTTP: flood limits, recipients, message and markup
checks, updates by getUpdates and by webhook, bot setup, and a real aiogram Bot talking to it. The clock is
frozen, so limits move only with `emu.advance()`."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, contextmanager
from decimal import Decimal
from typing import Any

import aiohttp
import httpx
import pytest
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import TelegramBadRequest, TelegramForbiddenError, TelegramRetryAfter
from aiogram.types import (
    BotCommand,
    BotCommandScopeAllPrivateChats,
    BufferedInputFile,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    MenuButtonWebApp,
    WebAppInfo,
)
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tests.emulators.harness import Plug, serve
from tests.emulators.telegram import DEFAULT_TOKEN, SECRET_HEADER, TelegramBotApiEmulator

USER = 5001
GROUP = -1001234567890
APP_URL = "https://shop.example/app"
SECRET = "hook-Secret_1"


@pytest.fixture(scope="module")
def sockets() -> Iterator[tuple[tuple[Plug, str], tuple[Plug, str]]]:
    """Two loopback servers for the module: the emulator's and the bot's webhook."""
    api, hook = Plug(), Plug()
    with ExitStack() as stack:
        yield (api, stack.enter_context(serve(api))), (hook, stack.enter_context(serve(hook)))


@contextmanager
def plugged(sockets: Any, **options: Any) -> Iterator[TelegramBotApiEmulator]:
    """A fresh emulator with a frozen clock on the module's server."""
    (plug, base_url), _ = sockets
    emulator = TelegramBotApiEmulator(freeze_clock=True, **options)
    emulator.base_url = base_url
    plug.app = emulator.app
    try:
        yield emulator
    finally:
        plug.app = None
        emulator.close()


@pytest.fixture
def emu(sockets: Any) -> Iterator[TelegramBotApiEmulator]:
    with plugged(sockets) as emulator:
        yield emulator


@pytest.fixture(scope="module")
async def bot_api(sockets: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The Bot API of whichever emulator is plugged in (they all have the default token); one client for the
    module, since making one costs more than most of these tests."""
    (_, base_url), _ = sockets
    async with httpx.AsyncClient(base_url=f"{base_url}/bot{DEFAULT_TOKEN}/", timeout=15) as client:
        yield client


@pytest.fixture
def client(emu: TelegramBotApiEmulator, bot_api: httpx.AsyncClient) -> httpx.AsyncClient:
    return bot_api


class Hook:
    """The bot's webhook: records each post (update, secret header) and answers the queued statuses, then 200."""

    def __init__(self, plug: Plug, url: str) -> None:
        self.url = url + "/hook"
        self.received: list[tuple[dict[str, Any], str | None]] = []
        self.statuses: list[int] = []
        app = FastAPI()

        @app.post("/hook")
        async def receive(request: Request) -> JSONResponse:
            self.received.append((await request.json(), request.headers.get(SECRET_HEADER)))
            return JSONResponse({}, status_code=self.statuses.pop(0) if self.statuses else 200)

        plug.app = app

    def ids(self) -> list[int]:
        return [update["update_id"] for update, _ in self.received]


@pytest.fixture
def hook(sockets: Any) -> Iterator[Hook]:
    _, (plug, url) = sockets
    yield Hook(plug, url)
    plug.app = None


async def send(client: httpx.AsyncClient, chat: int | str = USER, text: str = "hi", **params: Any) -> httpx.Response:
    return await client.post("sendMessage", json={"chat_id": chat, "text": text, **params})


def refusal(response: httpx.Response) -> tuple[int, str]:
    body = response.json()
    assert body["ok"] is False and body["error_code"] == response.status_code
    return response.status_code, body["description"]


def too_many(retry_after: int) -> dict[str, Any]:
    return {
        "ok": False,
        "error_code": 429,
        "description": f"Too Many Requests: retry after {retry_after}",
        "parameters": {"retry_after": retry_after},
    }


# --- flood limits -------------------------------------------------------------------------------------------------


async def test_one_chat_gets_a_burst_of_three_then_one_a_second(
    emu: TelegramBotApiEmulator, client: httpx.AsyncClient
) -> None:
    for n in range(3):
        assert (await send(client, text=f"m{n}")).status_code == 200

    refused = await send(client, text="m3")

    assert (refused.status_code, refused.json()) == (429, too_many(1))
    assert [m.text for m in emu.messages_to(USER)] == ["m0", "m1", "m2"]  # a refused call records nothing
    assert emu.throttled == {"chat": 1}
    assert (await send(client, USER + 1)).status_code == 200  # another chat is not held up
    emu.advance(0.5)
    assert (await send(client, text="m3")).status_code == 429
    emu.advance(0.5)
    assert (await send(client, text="m3")).status_code == 200
    assert (await send(client, text="m4")).status_code == 429


async def test_thirty_a_second_overall(emu: TelegramBotApiEmulator, client: httpx.AsyncClient) -> None:
    for chat in range(1, 31):
        assert (await send(client, chat)).status_code == 200

    refused = await send(client, 31)

    assert (refused.status_code, refused.json()) == (429, too_many(1))
    assert emu.throttled == {"global": 1} and 31 not in emu.message_counts()
    emu.advance(1 / 30)
    assert (await send(client, 31)).status_code == 200
    assert (await send(client, 32)).status_code == 429


@pytest.mark.parametrize("group", [GROUP, "@vpnshop_news"], ids=["group", "channel"])
async def test_twenty_a_minute_to_a_group(sockets: Any, group: int | str) -> None:
    with plugged(sockets, chat_burst=30) as emu:  # the per-chat burst out of the way
        async with httpx.AsyncClient(base_url=f"{emu.base_url}/bot{emu.token}/") as client:
            for n in range(20):
                assert (await send(client, group, f"post {n}")).status_code == 200

            refused = await send(client, group, "post 20")

            assert (refused.status_code, refused.json()) == (429, too_many(3))
            assert emu.throttled == {"group": 1} and len(emu.messages_to(group)) == 20
            emu.advance(2)
            assert (await send(client, group, "post 20")).json() == too_many(1)
            emu.advance(1)
            assert (await send(client, group, "post 20")).status_code == 200


async def test_paid_broadcast_sends_a_thousand_a_second_for_a_tenth_of_a_star_each(
    emu: TelegramBotApiEmulator, client: httpx.AsyncClient
) -> None:
    emu.balance = 101

    async def paid(chat: int) -> httpx.Response:
        return await send(client, chat, allow_paid_broadcast=True)

    # A thousand at once through aiohttp (httpx's pool is slow with that many waiting requests).
    url = f"{emu.base_url}/bot{emu.token}/sendMessage"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=50)) as session:

        async def paid_fast(chat: int) -> int:
            async with session.post(url, json={"chat_id": chat, "text": "hi", "allow_paid_broadcast": True}) as answer:
                return answer.status

        statuses = await asyncio.gather(*(paid_fast(chat) for chat in range(1, 1001)))

    # All thousand at once and none refused: far over 30/s, so the paid limit is the one that applies (how fast
    # the emulator answers depends on the machine and is the benchmark's business, not this test's).
    assert set(statuses) == {200}
    assert emu.balance == Decimal("1.0") and emu.stats()["paid_messages"] == 1000
    refused = await paid(1001)
    assert (refused.status_code, refused.json()) == (429, too_many(1))
    assert emu.throttled == {"paid": 1} and emu.balance == 1
    assert (await send(client, 1002)).status_code == 200  # unpaid messages still have the overall limit's tokens
    emu.advance(1)
    assert (await paid(1001)).status_code == 200
    assert (await client.post("getMyStarBalance")).json()["result"] == {"amount": 0, "nanostar_amount": 900_000_000}


async def test_a_paid_broadcast_without_stars_is_refused(
    emu: TelegramBotApiEmulator, client: httpx.AsyncClient
) -> None:
    emu.balance = "0.1"
    assert (await send(client, 1, allow_paid_broadcast=True)).status_code == 200

    refused = await send(client, 2, allow_paid_broadcast=True)

    assert refusal(refused) == (400, "Bad Request: BALANCE_TOO_LOW")
    assert emu.balance == 0 and emu.message_counts() == {1: 1} and not emu.throttled


async def test_limits_change_at_run_time_and_can_be_switched_off(
    emu: TelegramBotApiEmulator, client: httpx.AsyncClient
) -> None:
    control = httpx.AsyncClient(base_url=emu.base_url)
    async with control:
        changed = await control.post("/_emu/tg/limits", json={"global_rate": 2, "chat_burst": 1})
        assert changed.json() | {"global_rate": 2, "chat_burst": 1} == changed.json()
        assert (await send(client, 1)).status_code == 200
        assert (await send(client, 1)).json() == too_many(1)  # a burst of one
        assert (await send(client, 2)).status_code == 200
        assert (await send(client, 3)).json() == too_many(1)  # two a second overall
        assert (await control.post("/_emu/tg/limits", json={"global_rate": 0})).status_code == 422
        await control.post("/_emu/tg/limits", json={"enabled": False})
    for _ in range(50):
        assert (await send(client, 1)).status_code == 200


# --- recipients ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("knob", "expected"),
    [
        ("blocked_users", (403, "Forbidden: bot was blocked by the user")),
        ("deactivated_users", (403, "Forbidden: user is deactivated")),
        ("missing_chats", (400, "Bad Request: chat not found")),
    ],
)
async def test_unreachable_recipients_are_refused_without_using_the_limits(
    emu: TelegramBotApiEmulator, client: httpx.AsyncClient, knob: str, expected: tuple[int, str]
) -> None:
    getattr(emu, knob).add(USER)
    for _ in range(5):
        assert refusal(await send(client)) == expected

    getattr(emu, knob).clear()
    for _ in range(3):  # the refusals took no tokens: the whole burst is still there
        assert (await send(client)).status_code == 200
    assert emu.message_counts() == {USER: 3} and not emu.throttled
    assert sum(emu.refused.values()) == 5


async def test_recipients_by_control_endpoint(emu: TelegramBotApiEmulator, client: httpx.AsyncClient) -> None:
    async with httpx.AsyncClient(base_url=emu.base_url) as control:
        counts = await control.put("/_emu/tg/recipients", json={"blocked": [1, 2], "missing": [3]})
    assert counts.json() == {"blocked": 2, "deactivated": 0, "missing": 1}
    assert [refusal(await send(client, chat))[0] for chat in (1, 2, 3)] == [403, 403, 400]
    assert (await send(client, 4)).status_code == 200


# --- message text -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "plain"),
    [
        ("<b>bold <i>and italic</i></b> &lt;3 &amp; &quot;q&quot;", 'bold and italic <3 & "q"'),
        ('<a href="https://x.example/?a=1&amp;b=2">link</a> <code>x</code> <pre>y</pre>', "link x y"),
        ('<span class="tg-spoiler">s</span><tg-spoiler>t</tg-spoiler><STRONG>u</STRONG>', "stu"),
        ("<blockquote expandable>quote</blockquote><u>u</u><ins>i</ins><s>s</s><del>d</del>", "quoteuisd"),
        ("fish & chips", "fish & chips"),  # a bare ampersand stands for itself
    ],
)
async def test_html_that_telegram_takes(client: httpx.AsyncClient, text: str, plain: str) -> None:
    response = await send(client, text=text, parse_mode="HTML")
    assert response.status_code == 200, response.text
    assert response.json()["result"]["text"] == plain


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        ("<div>x</div>", 'Unsupported start tag "div" at byte offset 0'),
        ("Привет <br>", 'Unsupported start tag "br" at byte offset 13'),  # offsets count UTF-8 bytes
        ("<b>bold", 'Can\'t find end tag corresponding to start tag "b"'),
        ("<b><i>x</b></i>", 'Unmatched end tag at byte offset 7, expected "</i>", found "</b>"'),
        ("x</b>", "Unexpected end tag at byte offset 1"),
        ("<span>x</span>", 'Tag "span" must have class "tg-spoiler" at byte offset 0'),
        ("<b", "Unclosed start tag at byte offset 0"),
        ("<b>x</b", "Unclosed end tag at byte offset 4"),
        ('<a href="x>y</a>', "Unclosed start tag at byte offset 0"),
        ("<a href>y</a>", 'Expected equal sign in declaration of attribute of the tag "a" at byte offset 0'),
    ],
)
async def test_html_that_telegram_refuses(
    emu: TelegramBotApiEmulator, client: httpx.AsyncClient, text: str, detail: str
) -> None:
    response = await send(client, text=text, parse_mode="HTML")
    assert refusal(response) == (400, f"Bad Request: can't parse entities: {detail}")
    assert not emu.messages


@pytest.mark.parametrize(
    ("params", "description"),
    [
        ({"text": ""}, "Bad Request: message text is empty"),
        ({"text": "<b> </b>", "parse_mode": "HTML"}, "Bad Request: message text is empty"),
        ({"text": "x" * 4097}, "Bad Request: message is too long"),
        ({"text": "<i>" + "x" * 4097 + "</i>", "parse_mode": "HTML"}, "Bad Request: message is too long"),
        ({"text": "x", "parse_mode": "BBCode"}, "Bad Request: unsupported parse_mode"),
        ({"text": "x", "chat_id": "not a chat"}, "Bad Request: chat not found"),
        ({"text": "x", "chat_id": ""}, "Bad Request: chat_id is empty"),
    ],
)
async def test_bad_messages_are_refused(
    emu: TelegramBotApiEmulator, client: httpx.AsyncClient, params: dict[str, Any], description: str
) -> None:
    response = await client.post("sendMessage", json={"chat_id": USER} | params)
    assert refusal(response) == (400, description)
    assert not emu.messages and not emu.throttled


async def test_length_counts_the_text_after_parsing(emu: TelegramBotApiEmulator, client: httpx.AsyncClient) -> None:
    text = "<b>" + "x" * 4096 + "</b>"
    assert (await send(client, text=text, parse_mode="HTML")).status_code == 200
    assert (await send(client, text="x" * 4096)).status_code == 200
    assert (await send(client, text="*unchecked*", parse_mode="markdownv2")).status_code == 200
    [html, plain, markdown] = emu.messages_to(USER)
    assert (html.text, html.plain, html.parse_mode) == (text, "x" * 4096, "HTML")
    assert markdown.parse_mode == "MarkdownV2" and plain.parse_mode is None


# --- reply markup -------------------------------------------------------------------------------------------------

GOOD_KEYBOARD = {
    "inline_keyboard": [
        [{"text": "Open the shop", "web_app": {"url": APP_URL}}],
        [{"text": "Help", "url": "https://t.me/help"}, {"text": "Renew", "callback_data": "renew:7"}],
        [{"text": "Channel", "url": "tg://resolve?domain=vpnshop"}],
    ]
}


@pytest.mark.parametrize("encode", [False, True], ids=["object", "json-text"])
async def test_an_inline_keyboard_is_recorded_and_echoed(
    emu: TelegramBotApiEmulator, client: httpx.AsyncClient, encode: bool
) -> None:
    markup = json.dumps(GOOD_KEYBOARD) if encode else GOOD_KEYBOARD
    response = await send(client, reply_markup=markup)
    assert response.status_code == 200, response.text
    assert response.json()["result"]["reply_markup"] == GOOD_KEYBOARD
    assert emu.messages_to(USER)[0].reply_markup == GOOD_KEYBOARD


def keyboard(*buttons: Any) -> dict[str, Any]:
    return {"inline_keyboard": [list(buttons)]}


@pytest.mark.parametrize(
    ("markup", "description"),
    [
        ("{not json", "can't parse reply keyboard markup JSON object"),
        ([1], "object expected as reply markup"),
        ({"inline_keyboard": {}}, 'field "inline_keyboard" must be of type Array'),
        (
            {"inline_keyboard": [{"text": "a"}]},
            'field "inline_keyboard" of the InlineKeyboardMarkup must be an Array of Arrays',
        ),
        (keyboard("a"), "can't parse inline keyboard button: InlineKeyboardButton must be an Object"),
        (keyboard({"url": "https://x.example"}), "can't parse inline keyboard button: Can't find field \"text\""),
        (
            keyboard({"text": 1, "url": "https://x.example"}),
            'can\'t parse inline keyboard button: Field "text" must be of type String',
        ),
        (
            keyboard({"text": "a"}),
            "can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard",
        ),
        (
            keyboard({"text": "a", "url": "https://x.example", "callback_data": "x"}),
            "can't parse inline keyboard button: one action per button, got url, callback_data",
        ),
        (keyboard({"text": "a", "callback_data": "x" * 65}), "BUTTON_DATA_INVALID"),
        (
            keyboard({"text": "a", "web_app": {"url": "http://shop.example/app"}}),
            "inline keyboard button Web App URL 'http://shop.example/app' is invalid: Only HTTPS links are allowed",
        ),
        (
            keyboard({"text": "a", "web_app": "https://shop.example"}),
            'can\'t parse inline keyboard button: Field "web_app" must be of type Object',
        ),
        (
            keyboard({"text": "a", "url": "ftp://x.example"}),
            "inline keyboard button URL 'ftp://x.example' is invalid: Wrong HTTP URL",
        ),
        (keyboard({"text": " ", "url": "https://x.example"}), "inline keyboard button text must be non-empty"),
        (
            {"keyboard": [[{"text": "a", "web_app": {"url": "http://x"}}]]},
            "keyboard button Web App URL 'http://x' is invalid: Only HTTPS links are allowed",
        ),
    ],
)
async def test_bad_reply_markup_is_refused(
    emu: TelegramBotApiEmulator, client: httpx.AsyncClient, markup: Any, description: str
) -> None:
    response = await send(client, reply_markup=markup)
    assert refusal(response) == (400, f"Bad Request: {description}")
    assert not emu.messages


async def test_callback_data_of_64_bytes_is_fine(client: httpx.AsyncClient) -> None:
    response = await send(client, reply_markup=keyboard({"text": "a", "callback_data": "я" * 32}))
    assert response.status_code == 200


# --- edits, deletions, callbacks ----------------------------------------------------------------------------------


async def test_callback_query_edit_and_delete(emu: TelegramBotApiEmulator, client: httpx.AsyncClient) -> None:
    sent = (await send(client, text="Renew?", reply_markup=keyboard({"text": "Yes", "callback_data": "yes"}))).json()
    message_id = sent["result"]["message_id"]
    update = emu.callback_query(USER, "yes", message_id)
    query_id = update["callback_query"]["id"]
    assert update["callback_query"]["message"]["text"] == "Renew?" and emu.pending[-1] is update

    too_long = await client.post("answerCallbackQuery", json={"callback_query_id": query_id, "text": "x" * 201})
    assert refusal(too_long) == (400, "Bad Request: MESSAGE_TOO_LONG")
    answered = await client.post("answerCallbackQuery", json={"callback_query_id": query_id, "text": "Done"})
    assert answered.json() == {"ok": True, "result": True} and emu.callback_queries[query_id].text == "Done"
    again = await client.post("answerCallbackQuery", json={"callback_query_id": query_id})
    assert refusal(again)[1].startswith("Bad Request: query is too old")

    edit = {"chat_id": USER, "message_id": message_id, "text": "Renewed <b>ok</b>", "parse_mode": "HTML"}
    edited = await client.post("editMessageText", json=edit)
    assert edited.json()["result"]["text"] == "Renewed ok" and "reply_markup" not in edited.json()["result"]
    same = await client.post("editMessageText", json=edit)
    assert refusal(same)[1].startswith("Bad Request: message is not modified")
    assert emu.messages_to(USER)[0].edits == 1 and emu.message_counts() == {USER: 1}
    # Edits count against the chat: one send plus one edit so far, one more is fine, then 429.
    assert (await client.post("editMessageText", json=edit | {"text": "third"})).status_code == 200
    assert (await client.post("editMessageText", json=edit | {"text": "fourth"})).json() == too_many(1)

    assert (await client.post("deleteMessage", json={"chat_id": USER, "message_id": message_id})).json()["result"]
    gone = await client.post("deleteMessage", json={"chat_id": USER, "message_id": message_id})
    assert refusal(gone) == (400, "Bad Request: message to delete not found")
    emu.advance(5)
    missing = await client.post("editMessageText", json=edit | {"text": "fifth"})
    assert refusal(missing) == (400, "Bad Request: message to edit not found")
    other_chat = await client.post("editMessageText", json=edit | {"chat_id": USER + 1, "text": "x"})
    assert refusal(other_chat) == (400, "Bad Request: message to edit not found")


async def test_send_photo(emu: TelegramBotApiEmulator, client: httpx.AsyncClient) -> None:
    ok = await client.post("sendPhoto", json={"chat_id": USER, "photo": "https://x.example/qr.png", "caption": "QR"})
    assert ok.json()["result"]["caption"] == "QR" and ok.json()["result"]["photo"][0]["file_id"]
    no_photo = await client.post("sendPhoto", json={"chat_id": USER, "caption": "QR"})
    assert refusal(no_photo) == (400, "Bad Request: there is no photo in the request")
    long = await client.post("sendPhoto", json={"chat_id": USER, "photo": "id", "caption": "x" * 1025})
    assert refusal(long) == (400, "Bad Request: message caption is too long")
    assert [m.method for m in emu.messages] == ["sendPhoto"]
    edit = {"chat_id": USER, "message_id": ok.json()["result"]["message_id"], "text": "new"}
    no_text = await client.post("editMessageText", json=edit)
    assert refusal(no_text) == (400, "Bad Request: there is no text in the message to edit")


async def test_send_document_keeps_the_upload_and_refuses_one_over_50_mb(
    emu: TelegramBotApiEmulator, client: httpx.AsyncClient
) -> None:
    data = {"chat_id": str(USER), "caption": "<b>Export</b>", "parse_mode": "HTML"}
    ok = await client.post("sendDocument", data=data, files={"document": ("users.xlsx", b"PK\x03\x04rows", "x/y")})
    document = ok.json()["result"]["document"]
    assert (document["file_name"], document["file_size"]) == ("users.xlsx", 8)
    assert ok.json()["result"]["caption"] == "Export"
    assert emu.messages[-1].files == {"document": ("users.xlsx", b"PK\x03\x04rows")}
    no_document = await client.post("sendDocument", json={"chat_id": USER})
    assert refusal(no_document) == (400, "Bad Request: there is no document in the request")
    huge = await client.post("sendDocument", data=data, files={"document": ("big.xlsx", b"0" * (50 * 1024 * 1024 + 1))})
    assert refusal(huge) == (413, "Request Entity Too Large")
    assert [m.method for m in emu.messages] == ["sendDocument"]


# --- getUpdates ---------------------------------------------------------------------------------------------------


async def test_get_updates_confirms_by_offset(emu: TelegramBotApiEmulator, client: httpx.AsyncClient) -> None:
    first = emu.user_message(USER, "/start ref_42", language_code="ru", username="anna")
    second = emu.user_message(USER, "hello")

    got = (await client.post("getUpdates", json={"limit": 1})).json()["result"]
    assert got == [first]
    message = first["message"]
    assert message["entities"] == [{"type": "bot_command", "offset": 0, "length": 6}]
    assert message["from"]["language_code"] == "ru" and message["from"]["username"] == "anna"
    assert message["chat"] == {"id": USER, "first_name": "Test", "username": "anna", "type": "private"}
    assert "entities" not in second["message"]

    assert (await client.post("getUpdates")).json()["result"] == [first, second]  # nothing confirmed yet
    after = (await client.post("getUpdates", json={"offset": first["update_id"] + 1})).json()["result"]
    assert after == [second] and list(emu.pending) == [second]
    await client.post("getUpdates", json={"offset": second["update_id"] + 1})
    assert not emu.pending


async def test_get_updates_negative_offset_and_clamped_limit(
    emu: TelegramBotApiEmulator, client: httpx.AsyncClient
) -> None:
    made = [emu.user_message(USER, f"m{n}") for n in range(5)]
    assert (await client.post("getUpdates", json={"offset": -2})).json()["result"] == made[-2:]
    assert (await client.post("getUpdates", json={"limit": 0})).json()["result"] == made[-2:-1]  # clamped to 1


async def test_get_updates_filters_by_allowed_updates(emu: TelegramBotApiEmulator, client: httpx.AsyncClient) -> None:
    emu.user_message(USER, "dropped")
    sent = (await send(client, reply_markup=keyboard({"text": "a", "callback_data": "a"}))).json()["result"]
    query = emu.callback_query(USER, "a", sent["message_id"])

    got = await client.post("getUpdates", data={"allowed_updates": json.dumps(["callback_query"])})

    assert got.json()["result"] == [query] and list(emu.pending) == [query]
    emu.user_message(USER, "also dropped: the filter is remembered")
    assert (await client.post("getUpdates")).json()["result"] == [query]


async def test_a_long_poll_returns_when_an_update_comes(emu: TelegramBotApiEmulator, client: httpx.AsyncClient) -> None:
    poll = asyncio.create_task(client.post("getUpdates", json={"timeout": 10}))
    await wait_for(lambda: emu.queue.poller is not None)
    assert not poll.done()

    update = emu.user_message(USER, "/help")

    assert (await poll).json()["result"] == [update]  # a poll that ran out its 10 s would answer empty


async def test_a_long_poll_with_nothing_to_say_answers_empty_after_its_timeout(client: httpx.AsyncClient) -> None:
    started = time.monotonic()
    response = await client.post("getUpdates", data={"timeout": "1"})
    assert response.json() == {"ok": True, "result": []}
    assert 0.9 < time.monotonic() - started < 5


async def test_a_second_long_poll_ends_the_first_with_409(
    emu: TelegramBotApiEmulator, client: httpx.AsyncClient
) -> None:
    older = asyncio.create_task(client.post("getUpdates", json={"timeout": 10}))
    await wait_for(lambda: emu.queue.poller is not None)
    first_poller = emu.queue.poller
    newer = asyncio.create_task(client.post("getUpdates", json={"timeout": 10}))
    await wait_for(lambda: emu.queue.poller not in (None, first_poller))

    assert refusal(await older) == (
        409,
        "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running",
    )
    update = emu.user_message(USER, "hi")
    assert (await newer).json()["result"] == [update]


async def test_get_updates_conflicts_with_a_webhook(emu: TelegramBotApiEmulator, client: httpx.AsyncClient) -> None:
    emu.user_message(USER, "waiting")
    assert (await client.post("setWebhook", json={"url": "http://127.0.0.1:9/hook"})).json()["result"] is True

    response = await client.post("getUpdates")

    assert refusal(response) == (
        409,
        "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first",
    )
    assert (await client.post("deleteWebhook")).json()["result"] is True
    assert len((await client.post("getUpdates")).json()["result"]) == 1


# --- the webhook --------------------------------------------------------------------------------------------------


async def test_the_webhook_gets_pending_updates_in_order_with_the_secret(
    emu: TelegramBotApiEmulator, client: httpx.AsyncClient, hook: Hook
) -> None:
    made = [emu.user_message(USER, f"m{n}") for n in range(3)]

    response = await client.post("setWebhook", json={"url": hook.url, "secret_token": SECRET})
    assert response.json() == {"ok": True, "result": True}
    made.append(emu.user_message(USER + 1, "/start"))
    await emu.wait_delivered()

    assert hook.received == [(update, SECRET) for update in made]
    info = (await client.post("getWebhookInfo")).json()["result"]
    assert info == {"url": hook.url, "has_custom_certificate": False, "pending_update_count": 0, "max_connections": 40}


async def test_the_webhook_retries_a_failed_update_before_the_next(sockets: Any, hook: Hook) -> None:
    # The first retry waits 0.2 s: time enough to look at getWebhookInfo in between.
    with plugged(sockets, webhook_retry_delay=0.2, webhook_retry_max=0.4) as emu:
        hook.statuses = [500, 502]
        async with httpx.AsyncClient(base_url=f"{emu.base_url}/bot{emu.token}/") as client:
            await client.post("setWebhook", json={"url": hook.url, "secret_token": SECRET})
            first, second = emu.user_message(USER, "one"), emu.user_message(USER, "two")
            await wait_for(lambda: emu.webhook_error is not None)
            info = (await client.post("getWebhookInfo")).json()["result"]
            assert info["pending_update_count"] == 2
            assert info["last_error_message"] == "Wrong response from the webhook: 500 Internal Server Error"
            assert info["last_error_date"] == int(emu.now())

            await emu.wait_delivered()

        assert hook.ids() == [first["update_id"]] * 3 + [second["update_id"]]
        assert [status for _, status in emu.deliveries] == [500, 502, 200, 200]


async def test_an_unreachable_webhook_is_recorded_and_retried(sockets: Any) -> None:
    with plugged(sockets, webhook_retry_delay=0.02, webhook_retry_max=0.05) as emu:
        emu.webhook_url = "http://127.0.0.1:9/hook"  # nothing listens there
        emu.user_message(USER, "lost?")
        await wait_for(lambda: len(emu.deliveries) >= 2)
        assert emu.webhook_info()["last_error_message"] == "Connection refused"
        assert len(emu.pending) == 1


async def test_post_now_returns_the_bots_status(emu: TelegramBotApiEmulator, hook: Hook) -> None:
    emu.webhook_url = hook.url
    hook.statuses = [429]
    update = emu.user_message(USER, "/start", queue=False)

    assert await emu.post_now(update) == 429
    assert await emu.post_now(emu.user_message(USER, "again", queue=False)) == 200
    assert hook.received[0] == (update, emu.webhook_secret) and not emu.pending


async def test_a_refunds_update_reaches_the_webhook_once_the_call_is_answered(
    emu: TelegramBotApiEmulator, client: httpx.AsyncClient, hook: Hook
) -> None:
    await client.post("setWebhook", json={"url": hook.url, "secret_token": SECRET})
    invoice = {"title": "VPN", "description": "30 days", "payload": "p1", "currency": "XTR"}
    link = (await client.post("createInvoiceLink", json=invoice | {"prices": [{"label": "VPN", "amount": 5}]})).json()
    charge_id = json.loads(emu.pay(link["result"], user_id=USER).body)["message"]["successful_payment"][
        "telegram_payment_charge_id"
    ]

    refunded = await client.post("refundStarPayment", json={"user_id": USER, "telegram_payment_charge_id": charge_id})

    assert refunded.json()["result"] is True
    await emu.wait_delivered()
    [(update, secret)] = hook.received  # the payment itself was handed to the test, not queued
    assert update["message"]["refunded_payment"]["telegram_payment_charge_id"] == charge_id and secret == SECRET


@pytest.mark.parametrize(
    ("params", "description"),
    [
        ({"url": "ftp://bot.example/hook"}, "invalid webhook URL specified"),
        (
            {"url": "https://bot.example/hook", "secret_token": "has space"},
            "secret token contains unallowed characters",
        ),
        ({"url": "https://bot.example/hook", "secret_token": "x" * 257}, "secret token is too long"),
    ],
)
async def test_bad_webhooks_are_refused(
    emu: TelegramBotApiEmulator, client: httpx.AsyncClient, params: dict[str, Any], description: str
) -> None:
    emu.user_message(USER, "kept")
    response = await client.post("setWebhook", json=params | {"drop_pending_updates": True})
    assert refusal(response) == (400, f"Bad Request: {description}")
    assert emu.webhook_url is None and len(emu.pending) == 1


@pytest.mark.parametrize(
    ("url", "description"),
    [
        ("http://bot.example/hook", "bad webhook: An HTTPS URL must be provided for webhook"),
        ("https://bot.example:8080/hook", "bad webhook: Webhook can be set up only on ports 80, 88, 443 or 8443"),
    ],
)
async def test_a_strict_emulator_wants_https_on_telegrams_ports(sockets: Any, url: str, description: str) -> None:
    with plugged(sockets, allow_http_webhook=False) as emu:
        async with httpx.AsyncClient(base_url=f"{emu.base_url}/bot{emu.token}/") as client:
            assert refusal(await client.post("setWebhook", json={"url": url})) == (400, f"Bad Request: {description}")
            assert (await client.post("setWebhook", json={"url": "https://bot.example:8443/h"})).status_code == 200


async def test_drop_pending_updates(emu: TelegramBotApiEmulator, client: httpx.AsyncClient) -> None:
    emu.user_message(USER, "old")
    await client.post("setWebhook", json={"url": "http://127.0.0.1:9/hook", "drop_pending_updates": True})
    assert not emu.pending
    emu.webhook_url = None
    emu.user_message(USER, "older")
    await client.post("deleteWebhook", data={"drop_pending_updates": "true"})
    assert not emu.pending


# --- bot setup ----------------------------------------------------------------------------------------------------


async def test_commands_are_kept_per_scope_and_language(client: httpx.AsyncClient) -> None:
    private = {"type": "all_private_chats"}
    english = [{"command": "start", "description": "Start"}, {"command": "/help", "description": " Help "}]
    russian = [{"command": "start", "description": "Начать"}]
    assert (await client.post("setMyCommands", json={"commands": english, "scope": private})).json()["result"]
    await client.post("setMyCommands", json={"commands": russian, "scope": private, "language_code": "ru"})

    async def commands(**params: Any) -> Any:
        return (await client.post("getMyCommands", json=params)).json()["result"]

    assert await commands(scope=private) == [
        {"command": "start", "description": "Start"},
        {"command": "help", "description": "Help"},
    ]
    assert await commands(scope=private, language_code="ru") == russian
    assert await commands() == []  # the default scope has none
    await client.post("deleteMyCommands", json={"scope": private})
    assert await commands(scope=private) == []


@pytest.mark.parametrize(
    ("params", "description"),
    [
        ({"commands": [{"command": "Start", "description": "x"}]}, "BOT_COMMAND_INVALID"),
        ({"commands": [{"command": "my-cmd", "description": "x"}]}, "BOT_COMMAND_INVALID"),
        ({"commands": [{"command": "x" * 33, "description": "x"}]}, "command length must not exceed 32"),
        ({"commands": [{"command": "/", "description": "x"}]}, "command must be non-empty"),
        ({"commands": [{"command": "a", "description": " "}]}, "command description must be non-empty"),
        ({"commands": [{"command": "a", "description": "x" * 257}]}, "command description length must not exceed 256"),
        ({"commands": [{"command": "a"}]}, "can't parse BotCommand: Can't find field \"description\""),
        ({"commands": [{"command": f"c{n}", "description": "x"} for n in range(101)]}, "BOT_COMMANDS_TOO_MUCH"),
        ({"commands": "{"}, "can't parse commands JSON object"),
        ({"commands": [], "scope": {"type": "everyone"}}, "can't parse BotCommandScope: Unsupported type specified"),
        ({"commands": [], "scope": {"type": "chat"}}, "can't parse BotCommandScope: Can't find field \"chat_id\""),
        ({"commands": [], "language_code": "eng"}, "invalid language code specified"),
    ],
)
async def test_bad_commands_are_refused(client: httpx.AsyncClient, params: dict[str, Any], description: str) -> None:
    good = [{"command": "start", "description": "Start"}]
    await client.post("setMyCommands", json={"commands": good})
    response = await client.post("setMyCommands", json=params)
    assert refusal(response) == (400, f"Bad Request: {description}")
    assert (await client.post("getMyCommands")).json()["result"] == good  # unchanged


async def test_menu_buttons_per_chat_and_default(client: httpx.AsyncClient) -> None:
    async def menu(**params: Any) -> Any:
        return (await client.post("getChatMenuButton", json=params)).json()["result"]

    assert await menu() == {"type": "default"}
    shop = {"type": "web_app", "text": "Shop", "web_app": {"url": APP_URL}}
    assert (await client.post("setChatMenuButton", json={"menu_button": shop})).json()["result"] is True
    await client.post("setChatMenuButton", json={"chat_id": USER, "menu_button": {"type": "commands"}})
    assert await menu() == shop and await menu(chat_id=USER + 1) == shop
    assert await menu(chat_id=USER) == {"type": "commands"}


@pytest.mark.parametrize(
    ("params", "description"),
    [
        (
            {"menu_button": {"type": "web_app", "text": "Shop", "web_app": {"url": "http://x.example"}}},
            "menu button Web App URL 'http://x.example' is invalid: Only HTTPS links are allowed",
        ),
        (
            {"menu_button": {"type": "web_app", "web_app": {"url": APP_URL}}},
            "can't parse menu button: Can't find field \"text\"",
        ),
        ({"menu_button": {"type": "web_app", "text": "Shop"}}, "can't parse menu button: Can't find field \"web_app\""),
        ({"menu_button": {"type": "button"}}, "can't parse menu button: MenuButton has unsupported type"),
        ({"menu_button": "{"}, "can't parse menu button JSON object"),
        ({"chat_id": GROUP, "menu_button": {"type": "commands"}}, "chat not found"),
    ],
)
async def test_bad_menu_buttons_are_refused(
    emu: TelegramBotApiEmulator, client: httpx.AsyncClient, params: dict[str, Any], description: str
) -> None:
    response = await client.post("setChatMenuButton", json=params)
    assert refusal(response) == (400, f"Bad Request: {description}")
    assert emu.menu_buttons == {}


async def test_descriptions(client: httpx.AsyncClient) -> None:
    await client.post("setMyDescription", json={"description": "A VPN shop"})
    await client.post("setMyShortDescription", json={"short_description": "VPN", "language_code": "en"})
    assert (await client.post("getMyDescription")).json()["result"] == {"description": "A VPN shop"}
    short = await client.post("getMyShortDescription", json={"language_code": "en"})
    assert short.json()["result"] == {"short_description": "VPN"}
    too_long = await client.post("setMyShortDescription", json={"short_description": "x" * 121})
    assert refusal(too_long) == (400, "Bad Request: short description is too long")


# --- control endpoints and the broadcast figures ------------------------------------------------------------------


async def test_user_actions_and_stats_over_http(emu: TelegramBotApiEmulator, client: httpx.AsyncClient) -> None:
    async with httpx.AsyncClient(base_url=emu.base_url) as control:
        posted = await control.post(f"/_emu/tg/users/{USER}/messages", json={"text": "/start", "language_code": "ru"})
        assert posted.json()["update"]["message"]["from"]["language_code"] == "ru"
        sent = (await send(client, reply_markup=keyboard({"text": "a", "callback_data": "go"}))).json()["result"]
        pressed = await control.post(
            f"/_emu/tg/users/{USER}/callbacks", json={"data": "go", "message_id": sent["message_id"]}
        )
        assert pressed.json()["update"]["callback_query"]["data"] == "go"
        assert (await control.post(f"/_emu/tg/users/{USER}/callbacks", json={"data": ""})).status_code == 422
        assert len(emu.pending) == 2

        emu.advance(0.5)
        await send(client, text="second")
        emu.advance(0.5)
        await send(client, USER + 1)
        await control.put("/_emu/tg/balance", json={"stars": "2.5"})
        state = (await control.get("/_emu/tg/state")).json()
        listed = (await control.get("/_emu/tg/messages", params={"chat_id": USER})).json()

    stats = state["stats"]
    assert (stats["messages"], stats["chats"], stats["duplicates"]) == (3, 2, {str(USER): 2})
    assert stats["last_message_at"] - stats["first_message_at"] == pytest.approx(1.0)
    assert stats["rate"] == pytest.approx(2.0) and stats["throttled_total"] == 0
    assert state["balance"] == stats["balance"] == "2.5" and state["pending_updates"] == 2
    assert [m["text"] for m in listed] == ["hi", "second"]


async def test_without_records_only_the_figures_are_kept(sockets: Any, bot_api: httpx.AsyncClient) -> None:
    with plugged(sockets, keep_records=False) as emu:
        for chat in (1, 2, 1):
            emu.advance(1)
            assert (await send(bot_api, chat)).status_code == 200
        stats = emu.stats()
        assert (stats["messages"], stats["chats"], stats["duplicates"], stats["rate"]) == (3, 2, {"1": 2}, 1.0)
        assert emu.message_counts() == {1: 2, 2: 1}
        assert emu.messages == [] and emu.calls() == []


# --- a real aiogram Bot ---------------------------------------------------------------------------------------------


async def test_aiogram_talks_to_the_emulator(emu: TelegramBotApiEmulator, hook: Hook) -> None:
    session = AiohttpSession(api=TelegramAPIServer.from_base(emu.base_url))
    bot = Bot(emu.token, session=session)
    try:
        me = await bot.get_me()
        assert (me.id, me.is_bot, me.username) == (emu.bot_id, True, emu.bot_username)

        markup = InlineKeyboardMarkup(
            inline_keyboard=[[InlineKeyboardButton(text="Open", web_app=WebAppInfo(url=APP_URL))]]
        )
        message = await bot.send_message(USER, "<b>Welcome</b>", parse_mode="HTML", reply_markup=markup)
        assert message.text == "Welcome" and message.chat.id == USER
        recorded = emu.messages_to(USER)[0]
        assert recorded.reply_markup == {"inline_keyboard": [[{"text": "Open", "web_app": {"url": APP_URL}}]]}
        assert recorded.parse_mode == "HTML"  # form fields, the keyboard as JSON text
        photo = await bot.send_photo(USER, BufferedInputFile(b"\x89PNG", filename="qr.png"), caption="Your QR")
        assert photo.caption == "Your QR" and photo.photo  # a file goes along: multipart/form-data
        assert emu.messages_to(USER)[-1].params["photo"].startswith("attach://")

        commands = [BotCommand(command="start", description="Start"), BotCommand(command="help", description="Help")]
        assert await bot.set_my_commands(commands, scope=BotCommandScopeAllPrivateChats(), language_code="en")
        assert emu.commands[(("all_private_chats",), "en")][1] == {"command": "help", "description": "Help"}
        assert await bot.set_chat_menu_button(
            menu_button=MenuButtonWebApp(text="Shop", web_app=WebAppInfo(url=APP_URL))
        )
        assert emu.menu_buttons[None] == {"type": "web_app", "text": "Shop", "web_app": {"url": APP_URL}}

        emu.user_message(USER, "/start ref_7")
        [update] = await bot.get_updates(timeout=1)
        assert update.message is not None and update.message.text == "/start ref_7"
        assert update.message.entities is not None and update.message.entities[0].type == "bot_command"
        assert await bot.get_updates(offset=update.update_id + 1, timeout=0) == []

        assert await bot.set_webhook(hook.url, secret_token=SECRET, drop_pending_updates=True)
        assert (await bot.get_webhook_info()).url == hook.url
        emu.user_message(USER, "/help")
        await emu.wait_delivered()
        assert hook.received[0][1] == SECRET
        assert await bot.delete_webhook()

        with pytest.raises(TelegramBadRequest, match="can't parse entities"):
            await bot.send_message(USER, "<b>unclosed", parse_mode="HTML")
        emu.advance(10)
        for n in range(3):
            await bot.send_message(USER + 1, f"burst {n}")
        with pytest.raises(TelegramRetryAfter) as throttled:
            await bot.send_message(USER + 1, "one too many")
        assert throttled.value.retry_after == 1
        emu.blocked_users.add(USER + 2)
        with pytest.raises(TelegramForbiddenError, match="bot was blocked by the user"):
            await bot.send_message(USER + 2, "hello?")
    finally:
        await bot.session.close()


async def wait_for(condition: Any, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)
