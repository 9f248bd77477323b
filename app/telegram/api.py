"""A minimal Bot API client for what the worker sends (notifications, broadcasts), with Telegram's answers turned
into exceptions that say what a sender may do next.

Telegram has no idempotency key, so a send is never retried blindly: a failure that proves nothing was sent
(connection refused, 429, 5xx) is `NotSent`; one after the request may have reached Telegram (a read timeout, a
dropped connection) is `OutcomeUnknown`, and the caller must not send that message again. The token lives in the
client's base URL only, and the errors raised here name the method, never the URL (aiohttp's own exceptions
may quote it, so they are not chained).

aiohttp rather than httpx: a paid broadcast's worker is CPU-bound in its Bot API client, and with 50 requests on
their way httpx spent 1.8 ms of CPU per sendMessage here (its pool checks every connection on each request)
against 0.2 ms for aiohttp (bench/README.md, "broadcast").
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp


class TelegramError(Exception):
    """A Bot API call failed; `description` is Telegram's own wording when it answered."""

    def __init__(self, description: str, *, error_code: int | None = None) -> None:
        super().__init__(description)
        self.description = description
        self.error_code = error_code


class NotSent(TelegramError):
    """Certainly not sent (refused connection, Telegram's 5xx): safe to send again later."""


class RetryAfter(NotSent):
    """429: wait `retry_after` seconds (every sender of this bot, not just this one) and send again."""

    def __init__(self, description: str, retry_after: float) -> None:
        super().__init__(description, error_code=429)
        self.retry_after = retry_after


class Undeliverable(TelegramError):
    """Telegram refused this message for good (bad markup, a too long text…): do not retry it."""


class RecipientUnreachable(Undeliverable):
    """The user blocked the bot, deleted their account, or the chat does not exist."""


class OutcomeUnknown(TelegramError):
    """The request may have reached Telegram before the connection failed: the message may have been sent."""


# 400s that mean "this recipient", not "this message" (Bot API wording).
_UNREACHABLE_400 = ("chat not found", "user is deactivated", "peer_id_invalid", "bot can't initiate conversation")


def error_from(envelope: dict[str, Any], status: int) -> TelegramError:
    """The exception for an `{"ok": false, ...}` answer."""
    description = str(envelope.get("description") or f"HTTP {status}")
    code = int(envelope.get("error_code") or status)
    if code == 429:
        parameters = envelope.get("parameters") or {}
        return RetryAfter(description, float(parameters.get("retry_after") or 1))
    if code == 403 or (code == 400 and any(marker in description.lower() for marker in _UNREACHABLE_400)):
        return RecipientUnreachable(description, error_code=code)
    if code >= 500:
        return NotSent(description, error_code=code)
    return Undeliverable(description, error_code=code)


class BotApi:
    """`call(method, params)` on `<api_url>/bot<token>/`; one attempt per call (see the module docstring)."""

    def __init__(
        self,
        token: str,
        api_url: str = "https://api.telegram.org",
        *,
        timeout: float = 15.0,
        max_connections: int = 100,
    ) -> None:
        self._base_url = f"{api_url.rstrip('/')}/bot{token}/"
        # `connect` bounds the wait for a free connection plus connecting, `sock_connect` the connecting alone,
        # `sock_read` each wait for the answer (as httpx's pool, connect and read timeouts did).
        self._timeout = aiohttp.ClientTimeout(total=None, connect=timeout, sock_connect=5.0, sock_read=timeout)
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        # Made on first use: an aiohttp session can only be made in a running event loop, and belongs to it.
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout,
                # Idle connections are dropped after 5 s, as httpx did, before servers commonly close them: a
                # request on a connection the server is closing may have been sent or not (OutcomeUnknown).
                connector=aiohttp.TCPConnector(limit=self._max_connections, keepalive_timeout=5.0),
                cookie_jar=aiohttp.DummyCookieJar(),  # the Bot API sets no cookies
                raise_for_status=False,
            )
        return self._session

    async def call(
        self, method: str, params: dict[str, Any], *, files: dict[str, tuple[str, bytes, str]] | None = None
    ) -> Any:
        """The method's `result`; raises a TelegramError subclass otherwise. With `files` (name → file name,
        contents, media type) the call is multipart, the other parameters as form fields."""
        if files:
            form = aiohttp.FormData()
            for name, value in params.items():
                form.add_field(name, value if isinstance(value, str) else json.dumps(value))
            for name, (file_name, contents, media_type) in files.items():
                form.add_field(name, contents, filename=file_name, content_type=media_type)
            request: dict[str, Any] = {"data": form}
        else:
            request = {"json": params}
        # The exceptions are not chained (`from None`): aiohttp's may quote the URL, which holds the token.
        try:
            async with self._client().post(self._base_url + method, **request) as response:
                status = response.status
                raw = await response.read()
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            # Refused, unreachable, or no free connection in time: the request never left.
            raise NotSent(f"{method}: could not connect: {type(exc).__name__}") from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise OutcomeUnknown(f"{method}: no answer: {type(exc).__name__}") from None
        try:
            envelope = json.loads(raw)
        except ValueError:
            envelope = {}
        if not isinstance(envelope, dict):
            envelope = {}
        if status == 200 and envelope.get("ok") is True:
            return envelope.get("result")
        if status >= 500 or not envelope:
            # A proxy's error page or Telegram's own 5xx: it answered, so the method did not run.
            raise NotSent(f"{method}: HTTP {status}", error_code=status)
        raise error_from(envelope, status)

    async def send_message(
        self,
        chat_id: int,
        text: str,
        *,
        reply_markup: dict[str, Any] | None = None,
        paid_broadcast: bool = False,
        message_thread_id: int | None = None,
    ) -> dict[str, Any]:
        """sendMessage with HTML formatting and no link previews (into a forum topic with message_thread_id)."""
        params: dict[str, Any] = {
            "chat_id": chat_id,
            "text": text,
            "parse_mode": "HTML",
            "link_preview_options": {"is_disabled": True},
        }
        if reply_markup:
            params["reply_markup"] = reply_markup
        if paid_broadcast:
            params["allow_paid_broadcast"] = True
        if message_thread_id is not None:
            params["message_thread_id"] = message_thread_id
        return await self.call("sendMessage", params)

    async def send_document(
        self, chat_id: int, file_name: str, contents: bytes, media_type: str, *, caption: str = ""
    ) -> dict[str, Any]:
        """sendDocument with the file uploaded (a bot may upload up to 50 MB) and an HTML caption."""
        params: dict[str, Any] = {"chat_id": chat_id, "caption": caption, "parse_mode": "HTML"}
        return await self.call("sendDocument", params, files={"document": (file_name, contents, media_type)})

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
