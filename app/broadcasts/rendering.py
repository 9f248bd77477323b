"""What a recipient sees: the body in their language (the default language's when there is none) and the
optional button under it, which opens the Mini App (`"url": "web_app"`) or a link.

The stored button is `{"text": {"ru": ..., "en": ...}, "url": "https://…" | "web_app"}`. A Mini App button is a
`web_app` button only when the shop is served over https (Telegram's rule); otherwise it links to the browser
cabinet (app/telegram/buttons.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.config import Settings
from app.kit.i18n import translate
from app.models import Broadcast
from app.telegram.buttons import keyboard, page_button

WEB_APP = "web_app"
MINI_APP_PATH = "/app"


@dataclass(frozen=True)
class BroadcastMessage:
    text: str
    reply_markup: dict[str, Any] | None


def in_language(values: dict[str, str], language: str, default_language: str) -> str:
    """The value for `language`, else the default language's, else any (bodies always have the default's)."""
    return values.get(language) or values.get(default_language) or next(iter(values.values()))


def render(broadcast: Broadcast, language: str, settings: Settings) -> BroadcastMessage:
    """The message for a recipient speaking `language`."""
    default = settings.default_language
    text = in_language(broadcast.bodies, language, default)
    return BroadcastMessage(text, reply_markup(broadcast.button, language, settings))


def reply_markup(button: dict[str, Any] | None, language: str, settings: Settings) -> dict[str, Any] | None:
    if not button:
        return None
    labels: dict[str, str] = button.get("text") or {}
    label = in_language(labels, language, settings.default_language) if labels else ""
    if button["url"] == WEB_APP:
        label = label or translate(language, "broadcast.button.open_app")
        return keyboard([page_button(settings, label, MINI_APP_PATH)])
    return keyboard([{"text": label, "url": button["url"]}])
