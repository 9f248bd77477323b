"""Updates for the bot: the queue Telegram keeps for it, and the methods that drain it.

  getUpdates      offset confirms earlier updates (a negative one keeps only the last -offset), limit and timeout
                  are clamped to 1-100 and 0-50 as the server does, allowed_updates is remembered; a long poll
                  waits for an update without blocking the server's loop. 409 while a webhook is set; a newer
                  poll ends an older one with 409 "terminated by other getUpdates request".
  setWebhook      url https (any http too while `allow_http_webhook`, the default, for test servers), secret_token
                  0-256 of [A-Za-z0-9_-], allowed_updates, drop_pending_updates, max_connections (1-100, 40);
                  an empty url deletes the webhook. The dispatcher then posts pending updates to it.
  deleteWebhook   drop_pending_updates
  getWebhookInfo  url, has_custom_certificate, pending_update_count, max_connections, allowed_updates and the
                  last delivery error (its date and message)

The queue holds updates in update_id order until getUpdates confirms them or the webhook answers 2xx. Updates an
API call makes (a refund's refunded_payment) are held back until that call has been answered.
"""

from __future__ import annotations

import asyncio
import bisect
import re
import threading
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from fastapi import Request

from tests.emulators.telegram.wire import ApiError, Params, bad_request, bot_method, disconnected

if TYPE_CHECKING:
    from tests.emulators.telegram.emulator import TelegramBotApiEmulator

LONG_POLL_MAX_TIMEOUT = 50
# Telegram leaves these out unless asked for by name.
NOT_BY_DEFAULT = frozenset({"chat_member", "message_reaction", "message_reaction_count"})
WEBHOOK_ACTIVE = (
    "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first"
)
OTHER_POLL = "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"
WEBHOOK_SET = "Conflict: terminated by setWebhook request"
SECRET_TOKEN = re.compile(r"[A-Za-z0-9_-]*")
WEBHOOK_PORTS = (80, 88, 443, 8443)


def update_type(update: dict[str, Any]) -> str:
    return next((key for key in update if key != "update_id"), "")


@dataclass(slots=True)
class Poller:
    """A getUpdates long poll waiting in the server's loop; woken from any thread."""

    loop: asyncio.AbstractEventLoop
    event: asyncio.Event
    conflict: str | None = None

    def wake(self) -> None:
        self.loop.call_soon_threadsafe(self.event.set)


class UpdateQueue:
    """The updates Telegram still owes the bot. Call everything with the emulator's lock held (`changed` is a
    condition on that lock: the webhook dispatcher waits on it)."""

    def __init__(self, lock: threading.RLock) -> None:
        self.pending: deque[dict[str, Any]] = deque()
        self.held: set[int] = set()  # update ids made by an API call that has not been answered yet
        self.in_flight: int | None = None  # the update id the webhook dispatcher is posting
        self.allowed_updates: list[str] | None = None  # None: every type but NOT_BY_DEFAULT
        self.changed = threading.Condition(lock)
        self.poller: Poller | None = None

    def put(self, update: dict[str, Any], *, held: bool = False) -> None:
        if self.pending and update["update_id"] < self.pending[-1]["update_id"]:
            ids = [item["update_id"] for item in self.pending]  # a re-queued update goes back in its place
            self.pending.insert(bisect.bisect(ids, update["update_id"]), update)
        else:
            self.pending.append(update)
        if held:
            self.held.add(update["update_id"])
        else:
            self.notify()

    def release(self, update_ids: list[int]) -> None:
        self.held.difference_update(update_ids)
        self.notify()

    def notify(self) -> None:
        self.changed.notify_all()
        if self.poller is not None:
            self.poller.wake()

    def allows(self, update: dict[str, Any]) -> bool:
        kind = update_type(update)
        if self.allowed_updates is None:
            return kind not in NOT_BY_DEFAULT
        return kind in self.allowed_updates

    def set_allowed(self, allowed: list[Any] | None) -> None:
        """As the server does: a given list replaces the filter, an empty one restores the default."""
        if allowed is not None:
            self.allowed_updates = [str(kind) for kind in allowed] or None

    def deliverable(self, limit: int) -> list[dict[str, Any]]:
        """Up to `limit` updates in order, stopping at one still held back; updates of types the bot did not ask
        for are dropped (Telegram would not have made them)."""
        ready: list[dict[str, Any]] = []
        index = 0
        while index < len(self.pending) and len(ready) < limit:
            update = self.pending[index]
            if update["update_id"] in self.held:
                break
            if not self.allows(update):
                del self.pending[index]
                continue
            ready.append(update)
            index += 1
        return ready

    def confirm(self, offset: int) -> None:
        """getUpdates' offset: updates below a positive offset are confirmed; a negative one keeps the last."""
        if offset > 0:
            while self.pending and self.pending[0]["update_id"] < offset:
                self.pending.popleft()
        elif offset < 0:
            while len(self.pending) > -offset:
                self.pending.popleft()

    def remove(self, update_id: int) -> bool:
        for index, update in enumerate(self.pending):
            if update["update_id"] == update_id:
                del self.pending[index]
                return True
        return False

    def clear(self) -> None:
        self.pending.clear()
        self.held.clear()

    def start_poll(self, loop: asyncio.AbstractEventLoop) -> Poller:
        self.end_poll(OTHER_POLL)
        self.poller = Poller(loop, asyncio.Event())
        return self.poller

    def end_poll(self, conflict: str | None = None, poller: Poller | None = None) -> None:
        """End the waiting poll (only if it is `poller`, when given); `conflict` is the 409 it then answers."""
        current = self.poller
        if current is None or (poller is not None and current is not poller):
            return
        self.poller = None
        if conflict is not None:
            current.conflict = conflict
            current.wake()


# --------------------------------------------------------------------------------------------------------------
# Methods


@bot_method("getUpdates", long_poll=True)
async def get_updates(emu: TelegramBotApiEmulator, params: Params, request: Request) -> list[dict[str, Any]]:
    offset = params.integer("offset", required=False) or 0
    limit = params.clamped("limit", 100, 1, 100)
    timeout = params.clamped("timeout", 0, 0, LONG_POLL_MAX_TIMEOUT)
    allowed = params.array("allowed_updates", required=False)
    queue = emu.queue
    with emu.lock:
        if emu.webhook_url:
            raise ApiError(409, WEBHOOK_ACTIVE)
        queue.set_allowed(allowed)
        queue.confirm(offset)
        updates = queue.deliverable(limit)
        if updates or timeout == 0:
            return updates
        poller = queue.start_poll(asyncio.get_running_loop())
    await wait_for_poll(poller, float(timeout), request)
    with emu.lock:
        queue.end_poll(poller=poller)
        if poller.conflict:
            raise ApiError(409, poller.conflict)
        return queue.deliverable(limit)


async def wait_for_poll(poller: Poller, seconds: float, request: Request) -> None:
    """Until an update comes, the poll is ended, the client hangs up, or `seconds` pass."""
    woken = asyncio.ensure_future(poller.event.wait())
    hung_up = asyncio.ensure_future(disconnected(request))
    try:
        await asyncio.wait({woken, hung_up}, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        woken.cancel()
        hung_up.cancel()


@bot_method("setWebhook")
def set_webhook(emu: TelegramBotApiEmulator, params: Params) -> bool:
    url = params.string("url", required=False) or ""
    drop = params.flag("drop_pending_updates")
    if not url:
        emu.remove_webhook(drop_pending_updates=drop)
        return True
    check_webhook_url(url, allow_http=emu.allow_http_webhook)
    secret = params.string("secret_token", required=False) or ""
    if len(secret) > 256:
        raise bad_request("secret token is too long")
    if not SECRET_TOKEN.fullmatch(secret):
        raise bad_request("secret token contains unallowed characters")
    emu.install_webhook(
        url,
        secret=secret,
        max_connections=params.clamped("max_connections", 40, 1, 100),
        allowed_updates=params.array("allowed_updates", required=False),
        drop_pending_updates=drop,
    )
    return True


def check_webhook_url(url: str, *, allow_http: bool) -> None:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = -1
    if scheme not in ("http", "https") or not parts.hostname or port == -1:
        raise bad_request("invalid webhook URL specified")
    if allow_http:
        return  # test servers listen on plain http and any port
    if scheme != "https":
        raise bad_request("bad webhook: An HTTPS URL must be provided for webhook")
    if port not in (None, *WEBHOOK_PORTS):
        raise bad_request("bad webhook: Webhook can be set up only on ports 80, 88, 443 or 8443")


@bot_method("deleteWebhook")
def delete_webhook(emu: TelegramBotApiEmulator, params: Params) -> bool:
    emu.remove_webhook(drop_pending_updates=params.flag("drop_pending_updates"))
    return True


@bot_method("getWebhookInfo")
def get_webhook_info(emu: TelegramBotApiEmulator, params: Params) -> dict[str, Any]:
    return emu.webhook_info()
