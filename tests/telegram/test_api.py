"""The Bot API client never lets the bot's token reach the logs."""

from __future__ import annotations

import logging

import httpx
import pytest

from app.kit.logging import configure_logging
from app.telegram.api import BotApi

TOKEN = "123456:SECRET-token-that-must-not-be-logged"


async def test_requests_are_not_logged_with_the_token(caplog: pytest.LogCaptureFixture) -> None:
    configure_logging("INFO", json_lines=False)
    logging.getLogger().addHandler(caplog.handler)  # configure_logging replaced the root's handlers
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json={"ok": True, "result": {"id": 1}}))
    api = BotApi(TOKEN, "https://api.example", transport=transport)
    try:
        assert await api.call("getMe", {}) == {"id": 1}
    finally:
        await api.aclose()
    assert "SECRET-token" not in caplog.text
