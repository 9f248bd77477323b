"""The webhook dispatcher: posts the queued updates to the bot's webhook one at a time, in order, as Telegram does.

It runs in its own thread (so it works whether or not the emulator is served, and never blocks a server loop),
started when there is a webhook and something to post, and ending when it has been idle a second, when the
webhook is deleted, on `close()`, or once nothing else refers to the emulator. A 2xx answer confirms the update;
anything else, or no answer, is recorded as the webhook's last error and retried after a real-time backoff
(`retry_delay`, doubling up to `retry_max`), the same update first.
"""

from __future__ import annotations

import json
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from tests.emulators.telegram.emulator import TelegramBotApiEmulator

SECRET_HEADER = "x-telegram-bot-api-secret-token"
IDLE_EXIT = 1.0  # seconds without work before the thread ends (a new update starts another)


def update_body(update: dict[str, Any]) -> bytes:
    return json.dumps(update, separators=(",", ":"), ensure_ascii=False).encode()


def webhook_headers(secret: str) -> dict[str, str]:
    headers = {"content-type": "application/json"}
    if secret:  # without a secret_token Telegram sends no header at all
        headers[SECRET_HEADER] = secret
    return headers


def failure_message(response: httpx.Response | None, error: Exception | None) -> str:
    """getWebhookInfo's last_error_message, in Telegram's words where known."""
    if response is not None:
        return f"Wrong response from the webhook: {response.status_code} {response.reason_phrase}"
    if isinstance(error, httpx.TimeoutException):
        return "Read timeout expired"
    if isinstance(error, httpx.ConnectError):
        return "Connection refused"
    return str(error) or type(error).__name__


class WebhookDispatcher:
    def __init__(
        self, emulator: TelegramBotApiEmulator, *, retry_delay: float, retry_max: float, timeout: float
    ) -> None:
        self._emulator = weakref.ref(emulator)  # the thread must not keep a dropped emulator alive
        self.retry_delay = retry_delay
        self.retry_max = retry_max
        self.timeout = timeout
        self._delay = retry_delay
        self._retry_at = 0.0  # time.monotonic() before which nothing is posted
        self._thread: threading.Thread | None = None
        self._closed = False

    def kick(self) -> None:
        """Something changed (a webhook, an update): wake the thread, or start one. Call with the lock held."""
        emulator = self._emulator()
        if emulator is None or self._closed:
            return
        emulator.queue.changed.notify_all()
        if self._thread is None and emulator.webhook_url and emulator.queue.pending:
            self._thread = threading.Thread(target=self._run, name="tg-emulator-webhook", daemon=True)
            self._thread.start()

    def reset_backoff(self) -> None:
        self._delay, self._retry_at = self.retry_delay, 0.0

    def close(self) -> None:
        """Stop for good (the thread ends after the post in progress, if any). Call with the lock held."""
        self._closed = True
        emulator = self._emulator()
        if emulator is not None:
            emulator.queue.changed.notify_all()

    def _run(self) -> None:
        with httpx.Client(timeout=self.timeout) as client:
            while True:
                emulator = self._emulator()
                if emulator is None:
                    return
                job = self._next(emulator)
                if job is None:
                    return
                self._post(emulator, client, *job)
                del emulator

    def _next(self, emulator: TelegramBotApiEmulator) -> tuple[str, str, dict[str, Any]] | None:
        """The next (url, secret, update) to post, waiting for one; None when the thread should end."""
        queue = emulator.queue
        with queue.changed:
            idle_until = time.monotonic() + IDLE_EXIT
            while True:
                url = emulator.webhook_url
                if self._closed or not url:
                    self._thread = None
                    return None
                now = time.monotonic()
                if now < self._retry_at:
                    queue.changed.wait(self._retry_at - now)
                    continue
                ready = queue.deliverable(1)
                if ready:
                    queue.in_flight = ready[0]["update_id"]
                    return url, emulator.webhook_secret, ready[0]
                if now >= idle_until:
                    self._thread = None
                    return None
                queue.changed.wait(idle_until - now)

    def _post(
        self, emulator: TelegramBotApiEmulator, client: httpx.Client, url: str, secret: str, update: dict[str, Any]
    ) -> None:
        response: httpx.Response | None = None
        error: Exception | None = None
        try:
            response = client.post(url, content=update_body(update), headers=webhook_headers(secret))
        except httpx.HTTPError as exc:
            error = exc
        with emulator.lock:
            emulator.queue.in_flight = None
            emulator.deliveries.append((update, response.status_code if response is not None else None))
            if response is not None and response.is_success:
                emulator.queue.remove(update["update_id"])
                self.reset_backoff()
            else:
                emulator.record_webhook_error(failure_message(response, error))
                self._retry_at = time.monotonic() + self._delay
                self._delay = min(self._delay * 2, self.retry_max)
            emulator.queue.changed.notify_all()
