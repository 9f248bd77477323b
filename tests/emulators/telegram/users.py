"""Telegram users writing to the bot and pressing its buttons (mixed into TelegramBotApiEmulator)."""

from __future__ import annotations

from typing import Any

from tests.emulators.telegram.formatting import CALLBACK_DATA_LIMIT
from tests.emulators.telegram.records import CallbackQuery


class TelegramUsers:
    """Uses the emulator's lock, clock, ids and queue; safe to call from any thread."""

    def user_message(
        self: Any,
        user_id: int,
        text: str,
        *,
        language_code: str = "en",
        first_name: str = "Test",
        username: str | None = None,
        queue: bool = True,
    ) -> dict[str, Any]:
        """A user writes to the bot in their private chat; returns the Update, queued for the bot unless
        `queue=False` (then post it with `post_now`). A "/command" gets its bot_command entity."""
        user = self.user(user_id, language_code=language_code, first_name=first_name, username=username)
        message: dict[str, Any] = {
            "message_id": self.next_message_id(),
            "from": user,
            "chat": private_chat(user),
            "date": int(self.now()),
            "text": text,
        }
        if text.startswith("/"):
            command = text.split(maxsplit=1)[0]
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": utf16_length(command)}]
        return self._made(self.new_update(message=message), queue)

    def callback_query(
        self: Any, user_id: int, data: str, message_id: int, *, language_code: str = "en", queue: bool = True
    ) -> dict[str, Any]:
        """A user presses an inline button carrying `data` under the bot's message `message_id` (in their chat);
        returns the Update (queued unless `queue=False`). The query waits for answerCallbackQuery."""
        if not 1 <= len(data.encode()) <= CALLBACK_DATA_LIMIT:
            raise ValueError("callback data is 1-64 bytes")
        user = self.user(user_id, language_code=language_code)
        with self._lock:
            sent = self.sent_message(user_id, message_id)
            # A message the emulator does not know is an InaccessibleMessage (date 0), as Telegram sends.
            message = sent.message if sent else {"message_id": message_id, "chat": private_chat(user), "date": 0}
            query = CallbackQuery(
                query_id=str(8 * 10**18 + self.next_message_id()),
                user_id=user_id,
                data=data,
                message_id=message_id,
                sent_at=self.now(),
            )
            self.callback_queries[query.query_id] = query
            body = {
                "id": query.query_id,
                "from": user,
                "message": message,
                "chat_instance": str(user_id * 7919 % 10**12),
                "data": data,
            }
            return self._made(self.new_update(callback_query=body), queue)

    def _made(self: Any, update: dict[str, Any], queue: bool) -> dict[str, Any]:
        if queue:
            self.enqueue(update)
        return update

    def user(
        self: Any, user_id: int, *, language_code: str = "en", first_name: str = "Test", username: str | None = None
    ) -> dict[str, Any]:
        return {
            "id": user_id,
            "is_bot": False,
            "first_name": first_name,
            "last_name": f"User {user_id}",
            "username": username or f"user{user_id}",
            "language_code": language_code,
        }


def private_chat(user: dict[str, Any]) -> dict[str, Any]:
    return {"id": user["id"], "first_name": user["first_name"], "username": user["username"], "type": "private"}


def utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2
