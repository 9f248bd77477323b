"""What the bot sends: messages, photos, edits, deletions and callback answers.

  sendMessage          text 1-4096 characters after entity parsing; parse_mode absent, HTML (checked: see
                       formatting), MarkdownV2 or Markdown (unchecked); reply_markup as an object or JSON text;
                       allow_paid_broadcast counts against the paid limit and costs 0.1 Star
  sendPhoto            photo (a file id, URL or upload), caption 0-1024 characters after parsing, as above
  sendDocument         document (a file id, URL or upload of at most 50 MB: larger is 413 "Request Entity Too
                       Large"), caption as above; an upload's contents are kept on the record (`files`)
  editMessageText      the bot's own message in that chat; counts against the chat's limits, not the overall one
  deleteMessage        the bot's own message
  answerCallbackQuery  a query the emulator sent (`callback_query`), once; text up to 200 characters

Every send checks, in order: parameters, the recipient (`missing_chats` 400 "chat not found",
`deactivated_users` 403 "user is deactivated", `blocked_users` 403 "bot was blocked by the user"), the Star
balance for a paid broadcast, then the flood limits (429 with retry_after). A refused call changes nothing.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from tests.emulators.telegram.formatting import message_text, parse_mode_of, parse_reply_markup
from tests.emulators.telegram.records import SentMessage
from tests.emulators.telegram.wire import QUERY_TOO_OLD, ApiError, Params, bad_request, bot_method

if TYPE_CHECKING:
    from tests.emulators.telegram.emulator import TelegramBotApiEmulator

MESSAGE_LIMIT = 4096
CAPTION_LIMIT = 1024
UPLOAD_LIMIT = 50 * 1024 * 1024  # a bot's multipart upload
CALLBACK_ANSWER_LIMIT = 200
NOT_MODIFIED = (
    "message is not modified: specified new message content and reply markup are exactly the same as a current "
    "content and reply markup of the message"
)


def chat_id_of(params: Params) -> int | str:
    """A chat id as the Bot API takes it: a number, or "@username" of a channel."""
    raw = params.raw("chat_id")
    if raw is None or raw == "":
        raise bad_request("chat_id is empty")
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    text = str(raw).strip()
    if text.startswith("@") and len(text) > 1:
        return text
    try:
        return int(text)
    except ValueError:
        raise bad_request("chat not found") from None


def is_group(chat: int | str) -> bool:
    """Groups, supergroups and channels have negative ids; channels are also reached by "@name"."""
    return isinstance(chat, str) or chat < 0


def chat_object(chat: int | str) -> dict[str, Any]:
    if isinstance(chat, str):
        # A stable made-up id for a channel addressed by name.
        number = int(hashlib.sha256(chat.encode()).hexdigest()[:9], 16)
        return {"id": -1_000_000_000_000 - number, "title": chat[1:], "username": chat[1:], "type": "channel"}
    if chat < 0:
        return {"id": chat, "title": f"Group {-chat}", "type": "supergroup"}
    return {"id": chat, "first_name": "Test", "last_name": f"User {chat}", "username": f"user{chat}", "type": "private"}


def send(
    emu: TelegramBotApiEmulator,
    params: Params,
    method: str,
    *,
    chat: int | str,
    text: str,
    plain: str,
    parse_mode: str | None,
    reply_markup: dict[str, Any] | None,
    content: dict[str, Any],
) -> dict[str, Any]:
    """Check the recipient, the balance and the limits, then record the message; returns the Message."""
    paid = params.flag("allow_paid_broadcast")
    emu.check_recipient(chat)
    if paid and emu.balance_tenths < 1:
        raise bad_request("BALANCE_TOO_LOW")  # guessed: too few Stars for a paid broadcast
    emu.admit(chat, paid=paid)
    if paid:
        emu.balance_tenths -= 1  # 0.1 Star a message
    now = emu.now()
    message: dict[str, Any] = {
        "message_id": emu.next_message_id(),
        "from": emu.bot_user(),
        "chat": chat_object(chat),
        "date": int(now),
        **content,
    }
    if reply_markup and "inline_keyboard" in reply_markup:
        message["reply_markup"] = {"inline_keyboard": reply_markup["inline_keyboard"]}
    emu.record_message(
        SentMessage(
            message_id=message["message_id"],
            chat_id=chat,
            method=method,
            text=text,
            plain=plain,
            parse_mode=parse_mode,
            reply_markup=reply_markup,
            paid=paid,
            at=now,
            params=params.values,
            message=message,
            files=dict(params.uploads),
        )
    )
    return message


@bot_method("sendMessage")
def send_message(emu: TelegramBotApiEmulator, params: Params) -> dict[str, Any]:
    chat = chat_id_of(params)
    reply_markup = parse_reply_markup(params.raw("reply_markup"))
    parse_mode = parse_mode_of(params.string("parse_mode", required=False))
    text = params.string("text", required=False) or ""
    plain = message_text(
        text, parse_mode, limit=MESSAGE_LIMIT, empty="message text is empty", too_long="message is too long"
    )
    return send(
        emu,
        params,
        "sendMessage",
        chat=chat,
        text=text,
        plain=plain,
        parse_mode=parse_mode,
        reply_markup=reply_markup,
        content={"text": plain},
    )


@bot_method("sendDocument")
def send_document(emu: TelegramBotApiEmulator, params: Params) -> dict[str, Any]:
    chat = chat_id_of(params)
    document = params.string("document", required=False)
    if not document:
        raise bad_request("there is no document in the request")
    name, contents = params.uploads.get("document", (document.rsplit("/", 1)[-1], b""))
    if len(contents) > UPLOAD_LIMIT:
        raise ApiError(413, "Request Entity Too Large")
    parse_mode = parse_mode_of(params.string("parse_mode", required=False))
    caption = params.string("caption", required=False) or ""
    plain = message_text(caption, parse_mode, limit=CAPTION_LIMIT, empty=None, too_long="message caption is too long")
    file_id = "BQACAgEmu" + hashlib.sha256(contents or document.encode()).hexdigest()[:24]
    content: dict[str, Any] = {
        "document": {"file_id": file_id, "file_unique_id": file_id[-12:], "file_name": name, "file_size": len(contents)}
    }
    if plain:
        content["caption"] = plain
    return send(
        emu,
        params,
        "sendDocument",
        chat=chat,
        text=caption,
        plain=plain,
        parse_mode=parse_mode,
        reply_markup=parse_reply_markup(params.raw("reply_markup")),
        content=content,
    )


@bot_method("sendPhoto")
def send_photo(emu: TelegramBotApiEmulator, params: Params) -> dict[str, Any]:
    chat = chat_id_of(params)
    reply_markup = parse_reply_markup(params.raw("reply_markup"))
    photo = params.string("photo", required=False)
    if not photo:
        raise bad_request("there is no photo in the request")
    parse_mode = parse_mode_of(params.string("parse_mode", required=False))
    caption = params.string("caption", required=False) or ""
    plain = message_text(caption, parse_mode, limit=CAPTION_LIMIT, empty=None, too_long="message caption is too long")
    file_id = "AgACAgEmu" + hashlib.sha256(photo.encode()).hexdigest()[:24]
    content: dict[str, Any] = {
        "photo": [{"file_id": file_id, "file_unique_id": file_id[-12:], "width": 800, "height": 600}]
    }
    if plain:
        content["caption"] = plain
    return send(
        emu,
        params,
        "sendPhoto",
        chat=chat,
        text=caption,
        plain=plain,
        parse_mode=parse_mode,
        reply_markup=reply_markup,
        content=content,
    )


@bot_method("editMessageText")
def edit_message_text(emu: TelegramBotApiEmulator, params: Params) -> dict[str, Any]:
    if params.raw("inline_message_id") is not None:
        raise bad_request("MESSAGE_ID_INVALID")  # guessed: this emulator sends no inline messages
    chat = chat_id_of(params)
    message_id = params.integer("message_id")
    record = emu.sent_message(chat, message_id or 0)
    if record is None:
        raise bad_request("message to edit not found")
    if record.method != "sendMessage":
        raise bad_request("there is no text in the message to edit")
    reply_markup = parse_reply_markup(params.raw("reply_markup"))
    parse_mode = parse_mode_of(params.string("parse_mode", required=False))
    text = params.string("text", required=False) or ""
    plain = message_text(
        text, parse_mode, limit=MESSAGE_LIMIT, empty="message text is empty", too_long="message is too long"
    )
    if plain == record.plain and reply_markup == record.reply_markup:
        raise bad_request(NOT_MODIFIED)
    emu.check_recipient(chat)
    emu.admit(chat, paid=False, overall=False)
    now = int(emu.now())
    message = {**record.message, "text": plain, "edit_date": now}
    message.pop("reply_markup", None)
    if reply_markup and "inline_keyboard" in reply_markup:
        message["reply_markup"] = {"inline_keyboard": reply_markup["inline_keyboard"]}
    record.text, record.plain, record.parse_mode, record.reply_markup = text, plain, parse_mode, reply_markup
    record.message = message
    record.edits += 1
    emu.edits += 1
    return message


@bot_method("deleteMessage")
def delete_message(emu: TelegramBotApiEmulator, params: Params) -> bool:
    record = emu.sent_message(chat_id_of(params), params.integer("message_id") or 0)
    if record is None:
        raise bad_request("message to delete not found")
    record.deleted = True
    return True


@bot_method("answerCallbackQuery")
def answer_callback_query(emu: TelegramBotApiEmulator, params: Params) -> bool:
    query = emu.callback_queries.get(params.string("callback_query_id") or "")
    if query is None or query.answered_at is not None:
        raise bad_request(QUERY_TOO_OLD)
    text = params.string("text", required=False) or ""
    if len(text) > CALLBACK_ANSWER_LIMIT:
        raise bad_request("MESSAGE_TOO_LONG")  # guessed
    query.answered_at = emu.now()
    query.text = text or None
    query.show_alert = params.flag("show_alert")
    return True
