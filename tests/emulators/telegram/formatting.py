"""Message text and reply markup as the Bot API checks them.

HTML follows tdlib's parser (its error wording; offsets in bytes of the UTF-8 text): the tags Telegram knows, every
tag closed in order, `<span>` only as a spoiler. Markdown and MarkdownV2 are accepted unchecked (their length is
taken raw). Keyboards follow the Bot API server's JSON checks and tdlib's URL rules; where this emulator is
stricter than Telegram (a button with two actions, or none, or an empty label) it says so.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlsplit

from tests.emulators.telegram.wire import ApiError, bad_request

HTML_TAGS = frozenset(
    {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "a", "code", "pre", "tg-spoiler", "blockquote", "span"}
)
PARSE_MODES = {"html": "HTML", "markdownv2": "MarkdownV2", "markdown": "Markdown"}
HTML_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_ENTITY = re.compile(r"&(?:#x([0-9a-fA-F]+)|#([0-9]+)|([a-zA-Z]+));?")
_NAME_TOKEN = re.compile(r"[A-Za-z0-9.-]*")
CALLBACK_DATA_LIMIT = 64  # bytes
INLINE_ACTIONS = (
    "url",
    "callback_data",
    "web_app",
    "login_url",
    "switch_inline_query",
    "switch_inline_query_current_chat",
    "switch_inline_query_chosen_chat",
    "copy_text",
    "callback_game",
    "pay",
)


# --------------------------------------------------------------------------------------------------------------
# Text


def parse_mode_of(value: str | None) -> str | None:
    """The canonical parse mode ("HTML", "MarkdownV2", "Markdown"), None for plain text."""
    if not value:
        return None
    mode = PARSE_MODES.get(value.lower())
    if mode is None:
        raise bad_request("unsupported parse_mode")
    return mode


def message_text(text: str, parse_mode: str | None, *, limit: int, empty: str | None, too_long: str) -> str:
    """The text the user reads, after entity parsing. `empty` is the refusal of a blank text (None: allowed)."""
    plain = parse_html(text) if parse_mode == "HTML" else text
    if empty is not None and not plain.strip():
        raise bad_request(empty)
    if len(plain) > limit:
        raise bad_request(too_long)
    return plain


def entities_error(detail: str) -> ApiError:
    return bad_request(f"can't parse entities: {detail}")


def parse_html(text: str) -> str:
    """The plain text of Telegram-HTML; refuses what Telegram refuses, with tdlib's message."""
    out: list[str] = []
    open_tags: list[str] = []
    i, size = 0, len(text)

    def at(position: int) -> int:
        return len(text[:position].encode())

    while i < size:
        char = text[i]
        if char == "&":
            decoded, i = decode_entity(text, i)
            out.append(decoded)
            continue
        if char != "<":
            out.append(char)
            i += 1
            continue
        begin = i
        i += 1
        if i < size and text[i] == "/":
            i += 1
            name_start = i
            while i < size and not text[i].isspace() and text[i] != ">":
                i += 1
            name = text[name_start:i].lower()
            while i < size and text[i].isspace():
                i += 1
            if i >= size or text[i] != ">":
                raise entities_error(f"Unclosed end tag at byte offset {at(begin)}")
            i += 1
            if not open_tags:
                raise entities_error(f"Unexpected end tag at byte offset {at(begin)}")
            if name and name != open_tags[-1]:
                raise entities_error(
                    f'Unmatched end tag at byte offset {at(begin)}, expected "</{open_tags[-1]}>", found "</{name}>"'
                )
            open_tags.pop()
            continue
        name_start = i
        while i < size and not text[i].isspace() and text[i] != ">":
            i += 1
        if i >= size:
            raise entities_error(f"Unclosed start tag at byte offset {at(begin)}")
        name = text[name_start:i].lower()
        if name not in HTML_TAGS:
            raise entities_error(f'Unsupported start tag "{name}" at byte offset {at(begin)}')
        attributes, i = read_attributes(text, i, name, at(begin), at)
        if name == "span" and attributes.get("class") != "tg-spoiler":
            raise entities_error(f'Tag "span" must have class "tg-spoiler" at byte offset {at(begin)}')
        open_tags.append(name)
    if open_tags:
        raise entities_error(f'Can\'t find end tag corresponding to start tag "{open_tags[-1]}"')
    return "".join(out)


def read_attributes(text: str, i: int, tag: str, begin: int, at: Any) -> tuple[dict[str, str], int]:
    """The attributes of a start tag from just after its name; returns them and the index after its ">"."""
    attributes: dict[str, str] = {}
    size = len(text)
    while True:
        while i < size and text[i].isspace():
            i += 1
        if i >= size:
            raise entities_error(f"Unclosed start tag at byte offset {begin}")
        if text[i] == ">":
            return attributes, i + 1
        name_start = i
        while i < size and not text[i].isspace() and text[i] not in "=>":
            i += 1
        name = text[name_start:i].lower()
        while i < size and text[i].isspace():
            i += 1
        if tag == "blockquote" and name == "expandable" and (i >= size or text[i] != "="):
            attributes[name] = ""  # the one attribute Telegram takes without a value
            continue
        if not name or i >= size or text[i] != "=":
            raise entities_error(
                f'Expected equal sign in declaration of attribute of the tag "{tag}" at byte offset {begin}'
            )
        i += 1
        while i < size and text[i].isspace():
            i += 1
        if i >= size:
            raise entities_error(f"Unclosed start tag at byte offset {begin}")
        if text[i] in "'\"":
            quote = text[i]
            end = text.find(quote, i + 1)
            if end < 0:
                raise entities_error(f"Unclosed start tag at byte offset {begin}")
            value = "".join(decode_entities(text[i + 1 : end]))
            i = end + 1
        else:
            token = _NAME_TOKEN.match(text, i)
            assert token is not None  # the pattern matches the empty string
            value = token.group().lower()
            if token.end() >= size or not (text[token.end()].isspace() or text[token.end()] == ">"):
                raise entities_error(f"Unexpected end of name token at byte offset {at(i)}")
            i = token.end()
        attributes[name] = value


def decode_entity(text: str, i: int) -> tuple[str, int]:
    """The character an HTML entity at `i` stands for and the index after it; a bare "&" stands for itself."""
    match = _ENTITY.match(text, i)
    if match is not None:
        hex_code, decimal, name = match.groups()
        if name is not None and name in HTML_ENTITIES:
            return HTML_ENTITIES[name], match.end()
        if hex_code or decimal:
            code = int(hex_code, 16) if hex_code else int(decimal)
            if 0 < code < 0x10FFFF:
                return chr(code), match.end()
    return "&", i + 1


def decode_entities(text: str) -> list[str]:
    out, i = [], 0
    while i < len(text):
        if text[i] == "&":
            char, i = decode_entity(text, i)
        else:
            char, i = text[i], i + 1
        out.append(char)
    return out


# --------------------------------------------------------------------------------------------------------------
# URLs


def link_error(button: str, url: str, reason: str) -> ApiError:
    return bad_request(f"{button} URL '{url}' is invalid: {reason}")


def check_link(url: str, button: str, *, https_only: bool) -> None:
    """tdlib's link check for a button: http(s) or tg links, or https only for Web Apps and login URLs."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if https_only:
        if scheme != "https" or not parts.hostname:
            raise link_error(button, url, "Only HTTPS links are allowed")
        return
    if scheme == "tg" or (scheme in ("http", "https") and parts.hostname):
        return
    raise link_error(button, url, "Wrong HTTP URL")  # guessed tail; the head is tdlib's


# --------------------------------------------------------------------------------------------------------------
# Reply markup


def parse_reply_markup(value: Any) -> dict[str, Any] | None:
    """The reply_markup object (given as an object, or as JSON text in forms) after the Bot API's checks."""
    if value in (None, ""):
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise bad_request("can't parse reply keyboard markup JSON object") from None
    if not isinstance(value, dict):
        raise bad_request("object expected as reply markup")
    if "inline_keyboard" in value:
        check_inline_keyboard(value["inline_keyboard"])
    if "keyboard" in value:
        check_keyboard(value["keyboard"])
    return value


def check_inline_keyboard(rows: Any) -> None:
    if not isinstance(rows, list):
        raise bad_request('field "inline_keyboard" must be of type Array')
    for row in rows:
        if not isinstance(row, list):
            raise bad_request('field "inline_keyboard" of the InlineKeyboardMarkup must be an Array of Arrays')
        for button in row:
            check_inline_button(button)


def button_error(detail: str) -> ApiError:
    return bad_request(f"can't parse inline keyboard button: {detail}")


def check_inline_button(button: Any) -> None:
    if not isinstance(button, dict):
        raise button_error("InlineKeyboardButton must be an Object")
    label = button.get("text")
    if label is None:
        raise button_error('Can\'t find field "text"')
    if not isinstance(label, str):
        raise button_error('Field "text" must be of type String')
    if not label.strip():
        # Stricter than Telegram, which drops such a button without a word: an unlabelled button is our bug.
        raise bad_request("inline keyboard button text must be non-empty")
    actions = [name for name in INLINE_ACTIONS if name in button and button[name] not in (None, "")]
    if not actions:
        raise button_error("Text buttons are unallowed in the inline keyboard")
    if len(actions) > 1:
        # Stricter than Telegram, which takes the first it knows: two actions on one button is our bug.
        raise button_error(f"one action per button, got {', '.join(actions)}")  # our wording
    action, value = actions[0], button[actions[0]]
    if action == "url":
        check_string(value, "url")
        check_link(value, "inline keyboard button", https_only=False)
    elif action == "callback_data":
        check_string(value, "callback_data")
        if len(value.encode()) > CALLBACK_DATA_LIMIT:
            raise bad_request("BUTTON_DATA_INVALID")
    elif action in ("web_app", "login_url"):
        url = object_field(value, action, "url")
        button_name = "inline keyboard button Web App" if action == "web_app" else "inline keyboard button login"
        check_link(url, button_name, https_only=True)
    elif action == "copy_text":
        object_field(value, action, "text")
    elif action in ("switch_inline_query", "switch_inline_query_current_chat"):
        check_string(value, action)
    elif action == "switch_inline_query_chosen_chat" and not isinstance(value, dict):
        raise button_error(f'Field "{action}" must be of type Object')


def check_string(value: Any, field: str) -> None:
    if not isinstance(value, str):
        raise button_error(f'Field "{field}" must be of type String')


def object_field(value: Any, field: str, inner: str) -> str:
    if not isinstance(value, dict):
        raise button_error(f'Field "{field}" must be of type Object')
    found = value.get(inner)
    if found is None:
        raise button_error(f'Can\'t find field "{inner}"')
    if not isinstance(found, str):
        raise button_error(f'Field "{inner}" must be of type String')
    return found


def check_keyboard(rows: Any) -> None:
    """A reply keyboard: rows of buttons, each a label or an object with one."""
    if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
        raise bad_request('field "keyboard" must be an Array of Arrays')
    for row in rows:
        for button in row:
            if isinstance(button, str):
                continue
            if not isinstance(button, dict):
                raise bad_request("can't parse keyboard button: KeyboardButton must be a String or an Object")
            if not isinstance(button.get("text"), str):
                raise bad_request("can't parse keyboard button: Can't find field \"text\"")
            web_app = button.get("web_app")
            if isinstance(web_app, dict) and isinstance(web_app.get("url"), str):
                check_link(web_app["url"], "keyboard button Web App", https_only=True)
