"""The bot itself (getMe) and its setup: commands, the menu button and descriptions.

setMyCommands / getMyCommands / deleteMyCommands
    up to 100 commands, each 1-32 of [a-z0-9_] (a leading "/" is dropped) with a description of 1-256
    characters; stored per scope (default, all_private_chats, all_group_chats, all_chat_administrators, chat,
    chat_administrators, chat_member) and language_code ("" or two lower-case letters)
setChatMenuButton / getChatMenuButton
    default, commands, or web_app with a text and an https URL; for one private chat or, without chat_id, the
    default for every chat
setMyDescription / setMyShortDescription (and their getters)
    up to 512 / 120 characters, per language_code
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from tests.emulators.telegram.formatting import check_link
from tests.emulators.telegram.wire import ApiError, Params, bad_request, bot_method

if TYPE_CHECKING:
    from tests.emulators.telegram.emulator import TelegramBotApiEmulator

MAX_COMMANDS = 100
COMMAND = re.compile(r"[a-z0-9_]{1,32}")
LANGUAGE_CODE = re.compile(r"(?:[a-z]{2})?")
SIMPLE_SCOPES = ("default", "all_private_chats", "all_group_chats", "all_chat_administrators")
CHAT_SCOPES = ("chat", "chat_administrators", "chat_member")
DESCRIPTION_LIMIT = 512
SHORT_DESCRIPTION_LIMIT = 120
DEFAULT_MENU_BUTTON = {"type": "default"}

Scope = tuple[Any, ...]


@bot_method("getMe")
def get_me(emu: TelegramBotApiEmulator, params: Params) -> dict[str, Any]:
    return emu.bot_user(full=True)


def language_of(params: Params) -> str:
    language = params.string("language_code", required=False) or ""
    if not LANGUAGE_CODE.fullmatch(language):
        raise bad_request("invalid language code specified")
    return language


def scope_of(params: Params) -> Scope:
    """A BotCommandScope as a hashable key: (type,) or (type, chat_id[, user_id])."""
    value = params.json_value("scope", "BotCommandScope")
    if value is None:
        return ("default",)

    def refuse(detail: str) -> ApiError:
        return bad_request(f"can't parse BotCommandScope: {detail}")

    if not isinstance(value, dict):
        raise refuse("BotCommandScope must be an Object")
    kind = value.get("type")
    if not isinstance(kind, str):
        raise refuse('Can\'t find field "type"')
    if kind in SIMPLE_SCOPES:
        return (kind,)
    if kind not in CHAT_SCOPES:
        raise refuse("Unsupported type specified")
    chat_id = value.get("chat_id")
    if chat_id in (None, ""):
        raise refuse('Can\'t find field "chat_id"')
    if kind != "chat_member":
        return (kind, str(chat_id))
    user_id = value.get("user_id")
    if not isinstance(user_id, int) or isinstance(user_id, bool) or user_id <= 0:
        raise refuse("Invalid user_id specified")
    return (kind, str(chat_id), user_id)


def commands_of(params: Params) -> list[dict[str, str]]:
    value = params.json_value("commands", "commands")
    if value is None:
        return []
    if not isinstance(value, list):
        raise bad_request("expected an Array of BotCommand")
    commands = []
    for item in value:
        if not isinstance(item, dict):
            raise bad_request("can't parse BotCommand: expected an Object")
        for field in ("command", "description"):
            if not isinstance(item.get(field), str):
                raise bad_request(f"can't parse BotCommand: Can't find field \"{field}\"")
        command = item["command"].strip().removeprefix("/")
        description = item["description"].strip()
        # tdlib's checks, then the server's.
        if not command:
            raise bad_request("command must be non-empty")
        if len(command) > 32:
            raise bad_request("command length must not exceed 32")
        if not description:
            raise bad_request("command description must be non-empty")
        if len(description) > 256:
            raise bad_request("command description length must not exceed 256")
        if not COMMAND.fullmatch(command):
            raise bad_request("BOT_COMMAND_INVALID")
        commands.append({"command": command, "description": description})
    if len(commands) > MAX_COMMANDS:
        raise bad_request("BOT_COMMANDS_TOO_MUCH")
    return commands


@bot_method("setMyCommands")
def set_my_commands(emu: TelegramBotApiEmulator, params: Params) -> bool:
    commands = commands_of(params)
    key = (scope_of(params), language_of(params))
    if commands:
        emu.commands[key] = commands
    else:
        emu.commands.pop(key, None)  # an empty list removes them, as deleteMyCommands does
    return True


@bot_method("getMyCommands")
def get_my_commands(emu: TelegramBotApiEmulator, params: Params) -> list[dict[str, str]]:
    return [dict(command) for command in emu.commands.get((scope_of(params), language_of(params)), [])]


@bot_method("deleteMyCommands")
def delete_my_commands(emu: TelegramBotApiEmulator, params: Params) -> bool:
    emu.commands.pop((scope_of(params), language_of(params)), None)
    return True


def menu_button_of(params: Params) -> dict[str, Any]:
    value = params.json_value("menu_button", "menu button")
    if value is None:
        return dict(DEFAULT_MENU_BUTTON)

    def refuse(detail: str) -> ApiError:
        return bad_request(f"can't parse menu button: {detail}")

    if not isinstance(value, dict):
        raise refuse("MenuButton must be an Object")
    kind = value.get("type")
    if not isinstance(kind, str):
        raise refuse('Can\'t find field "type"')
    if kind in ("default", "commands"):
        return {"type": kind}
    if kind != "web_app":
        raise refuse("MenuButton has unsupported type")
    text, web_app = value.get("text"), value.get("web_app")
    if not isinstance(text, str):
        raise refuse('Can\'t find field "text"')
    if not isinstance(web_app, dict):
        raise refuse('Can\'t find field "web_app"')
    if not isinstance(web_app.get("url"), str):
        raise refuse('Can\'t find field "url"')
    if not text.strip():
        raise bad_request("menu button text must be non-empty")  # guessed wording
    check_link(web_app["url"], "menu button Web App", https_only=True)  # guessed head, tdlib's tail
    return {"type": "web_app", "text": text, "web_app": {"url": web_app["url"]}}


def menu_chat_of(emu: TelegramBotApiEmulator, params: Params) -> int | None:
    """The private chat a menu button is for; None for the default."""
    chat_id = params.raw("chat_id")
    if chat_id in (None, ""):
        return None
    chat = params.integer("chat_id")
    assert chat is not None
    if chat <= 0 or chat in emu.missing_chats:
        raise bad_request("chat not found")  # menu buttons are for private chats only
    return chat


@bot_method("setChatMenuButton")
def set_chat_menu_button(emu: TelegramBotApiEmulator, params: Params) -> bool:
    chat = menu_chat_of(emu, params)
    emu.menu_buttons[chat] = menu_button_of(params)
    return True


@bot_method("getChatMenuButton")
def get_chat_menu_button(emu: TelegramBotApiEmulator, params: Params) -> dict[str, Any]:
    chat = menu_chat_of(emu, params)
    button = emu.menu_buttons.get(chat) or emu.menu_buttons.get(None) or DEFAULT_MENU_BUTTON
    return dict(button)


def set_text(emu: TelegramBotApiEmulator, params: Params, field: str, limit: int) -> bool:
    text = params.string(field, required=False) or ""
    language = language_of(params)
    if len(text) > limit:
        raise bad_request(f"{field.replace('_', ' ')} is too long")  # guessed wording
    texts = emu.descriptions.setdefault(field, {})
    if text:
        texts[language] = text
    else:
        texts.pop(language, None)  # an empty text removes it
    return True


def get_text(emu: TelegramBotApiEmulator, params: Params, field: str) -> dict[str, str]:
    return {field: emu.descriptions.get(field, {}).get(language_of(params), "")}


@bot_method("setMyDescription")
def set_my_description(emu: TelegramBotApiEmulator, params: Params) -> bool:
    return set_text(emu, params, "description", DESCRIPTION_LIMIT)


@bot_method("getMyDescription")
def get_my_description(emu: TelegramBotApiEmulator, params: Params) -> dict[str, str]:
    return get_text(emu, params, "description")


@bot_method("setMyShortDescription")
def set_my_short_description(emu: TelegramBotApiEmulator, params: Params) -> bool:
    return set_text(emu, params, "short_description", SHORT_DESCRIPTION_LIMIT)


@bot_method("getMyShortDescription")
def get_my_short_description(emu: TelegramBotApiEmulator, params: Params) -> dict[str, str]:
    return get_text(emu, params, "short_description")
