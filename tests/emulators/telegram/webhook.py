"""The webhook side of the emulator (mixed into TelegramBotApiEmulator): what setWebhook, deleteWebhook and
getWebhookInfo do, queueing updates for the bot, and posting one at once (`post_now`, `deliver`)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx

from tests.emulators.payments_common import Delivery, post_delivery
from tests.emulators.telegram.dispatcher import update_body, webhook_headers
from tests.emulators.telegram.updates import WEBHOOK_SET


class BotWebhook:
    """Uses the emulator's lock, queue, dispatcher and webhook fields; safe to call from any thread."""

    @property
    def webhook_url(self: Any) -> str | None:
        return self._webhook_url

    @webhook_url.setter
    def webhook_url(self: Any, url: str | None) -> None:
        """Point deliveries at `url` (or stop them) without the Bot API's checks, for tests."""
        with self._lock:
            self._webhook_url = url or None
            self.dispatcher.reset_backoff()
            self.dispatcher.kick()

    def install_webhook(
        self: Any,
        url: str,
        *,
        secret: str,
        max_connections: int = 40,
        allowed_updates: list[Any] | None = None,
        drop_pending_updates: bool = False,
    ) -> None:
        """What setWebhook does once its parameters are checked."""
        with self._lock:
            if drop_pending_updates:
                self.queue.clear()
            self.queue.set_allowed(allowed_updates)
            self.queue.end_poll(WEBHOOK_SET)
            self.webhook_secret = secret
            self.webhook_max_connections = max_connections
            self.webhook_error = None
            self.webhook_url = url

    def remove_webhook(self: Any, *, drop_pending_updates: bool = False) -> None:
        """deleteWebhook. The secret stays for the `Delivery` helpers, which tests post themselves."""
        with self._lock:
            if drop_pending_updates:
                self.queue.clear()
            self.webhook_error = None
            self.webhook_url = None

    def webhook_info(self: Any) -> dict[str, Any]:
        with self._lock:
            info: dict[str, Any] = {
                "url": self._webhook_url or "",
                "has_custom_certificate": False,
                "pending_update_count": len(self.queue.pending),
            }
            if self._webhook_url:
                info["max_connections"] = self.webhook_max_connections
                if self.queue.allowed_updates is not None:
                    info["allowed_updates"] = list(self.queue.allowed_updates)
            if self.webhook_error is not None:
                info["last_error_date"], info["last_error_message"] = self.webhook_error
            return info

    def record_webhook_error(self: Any, message: str) -> None:
        with self._lock:
            self.webhook_error = (int(self.now()), message)

    def enqueue(self: Any, update: dict[str, Any] | Delivery) -> dict[str, Any]:
        """Queue an Update (or a `Delivery` from `pay` and friends) for the bot to fetch or be posted."""
        if isinstance(update, Delivery):
            update = json.loads(update.body)
        assert isinstance(update, dict)
        with self._lock:
            self.queue.put(update)
            self.dispatcher.kick()
        return update

    async def post_now(self: Any, update: dict[str, Any]) -> int:
        """POST one Update to the webhook now and return the HTTP status. A queued update is taken off the queue
        first (and put back if the bot does not answer 2xx, for the dispatcher to retry)."""
        if not self._webhook_url:
            raise RuntimeError("no webhook is set")
        with self._lock:
            if self.queue.in_flight == update["update_id"]:
                raise RuntimeError("the webhook dispatcher is posting this update already")
            queued = self.queue.remove(update["update_id"])
            url, secret = self._webhook_url, self.webhook_secret
        status: int | None = None
        try:
            async with httpx.AsyncClient(timeout=self.dispatcher.timeout) as client:
                response = await client.post(url, content=update_body(update), headers=webhook_headers(secret))
            status = response.status_code
            return status
        finally:
            with self._lock:
                self.deliveries.append((update, status))
                if queued and (status is None or not 200 <= status < 300):
                    self.queue.put(update)
                    self.dispatcher.kick()

    async def deliver(self: Any, delivery: Delivery, *, attempts: int = 3) -> httpx.Response:
        """POST a delivery (from `pay` and friends) to `webhook_url`, retrying non-2xx answers a few times."""
        if not self._webhook_url:
            raise RuntimeError("no webhook_url is set")
        update = json.loads(delivery.body)
        try:
            response = await post_delivery(self._webhook_url, delivery, attempts=attempts)
        except httpx.HTTPError:
            self.deliveries.append((update, None))
            raise
        self.deliveries.append((update, response.status_code))
        if response.is_success:
            with self._lock:
                if self.queue.in_flight != update["update_id"]:
                    self.queue.remove(update["update_id"])
        return response

    async def wait_delivered(self: Any, within: float = 5.0) -> None:
        """Wait until nothing is pending for the webhook (every update posted and confirmed)."""
        deadline = time.monotonic() + within
        while True:
            with self._lock:
                if not self.queue.pending and self.queue.in_flight is None:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.queue.pending)} updates still pending after {within} s")
            await asyncio.sleep(0.01)
