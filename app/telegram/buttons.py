"""Inline buttons that open a page of the shop: inside Telegram as the Mini App when the shop is served over
https (Telegram opens Web Apps from https URLs only), else as a plain link to the browser cabinet."""

from __future__ import annotations

from typing import Any

from app.config import Settings


def page_button(settings: Settings, text: str, path: str) -> dict[str, Any]:
    url = settings.public_base_url.rstrip("/") + path
    if url.startswith("https://"):
        return {"text": text, "web_app": {"url": url}}
    return {"text": text, "url": url}


def keyboard(*rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {"inline_keyboard": [row for row in rows if row]}
