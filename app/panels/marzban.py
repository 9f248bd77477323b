"""Marzban (v0.7.0 API, v0.8.x quirks handled) behind the VpnPanel interface.

Wire facts come from shared/reference/panels_api.md Part 1: a form login that returns a JWT, users keyed by
username, `expire` in unix seconds (0/null = never), naive-UTC timestamps, 409/404/dict-style 422 errors.
Marzban has no id besides the username, so `panel_id` is the username.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar, cast
from urllib.parse import quote, urljoin

import httpx

from app.kit.clock import ensure_utc
from app.kit.errors import ExternalServiceError
from app.kit.http import HttpClient
from app.panels.base import (
    AccountChanges,
    AccountExists,
    AccountNotFound,
    AccountRef,
    AccountSpec,
    AccountStatus,
    Device,
    NodeInfo,
    PanelAccount,
    PanelAuthError,
    PanelError,
    PanelUnavailable,
    SystemInfo,
    telegram_id_in,
)
from app.panels.subscription import read_subscription_info

SERVICE = "marzban"
STATUSES: frozenset[str] = frozenset({"active", "disabled", "limited", "expired", "on_hold"})
NOTE_LIMIT = 500  # longer notes are a 422 on Marzban
T = TypeVar("T")


class MarzbanPanel:
    """One Marzban server.

    The panel owns `http` (closed by `aclose`); without one it builds an HttpClient with `timeout` and the
    host's shared circuit breaker. `base_url` also resolves relative subscription URLs, which Marzban returns
    when XRAY_SUBSCRIPTION_URL_PREFIX is empty. `inbounds` ({"vless": [tags]}) pins the inbounds new accounts
    get; without it they get every VLESS inbound the panel lists. `token` is a ready-made admin JWT
    (MARZBAN_API_TOKEN) used instead of a login; with a username and password too, a rejected token is replaced
    by a fresh login, else it is final."""

    kind = "marzban"
    supports_devices = False
    # Marzban disables expired and limited users too; disabled is what keeps a reset from re-activating them.
    off_statuses = frozenset({"disabled"})

    def __init__(
        self,
        base_url: str,
        username: str,
        password: str,
        *,
        inbounds: dict[str, list[str]] | None = None,
        flow: str = "",
        token: str = "",
        http: HttpClient | None = None,
        timeout: float = 10.0,
    ) -> None:
        self._base_url = base_url.rstrip("/") + "/"
        self._http = http or HttpClient(base_url, service=SERVICE, timeout=timeout)
        self._credentials = {"username": username, "password": password}
        self._configured_inbounds = inbounds
        self._vless_tags: list[str] | None = None
        self._flow = flow
        self._token: str | None = token or None
        # Bumped by every login. A call remembers the generation its token came from, so after a 401 it can
        # tell whether a concurrent call already logged in (tokens minted in one second can be identical).
        self._generation = 0
        self._login_lock = asyncio.Lock()
        self._inbounds_lock = asyncio.Lock()

    # --- accounts ------------------------------------------------------------------------------------------

    async def create_account(self, spec: AccountSpec) -> PanelAccount:
        body = {
            "username": spec.username,
            "proxies": {"vless": {"flow": self._flow} if self._flow else {}},
            # Always explicit: v0.8.x gives a user created without `inbounds` no inbounds at all (§1.8).
            "inbounds": {"vless": await self._vless_inbounds()},
            "expire": to_unix(spec.expire_at),
            "data_limit": spec.traffic_limit_bytes or 0,
            "data_limit_reset_strategy": spec.traffic_strategy,  # our values are Marzban's
            "status": "active",
            "note": account_note(spec),
        }
        account = self._account(await self._call("POST", "api/user", json=body))
        if not spec.enabled:
            # Marzban creates only active or on_hold users, so a disabled account takes a second call.
            account = await self.modify_account(account.ref, AccountChanges(enabled=False))
        return account

    async def get_account(self, ref: AccountRef) -> PanelAccount:
        return self._account(await self._call("GET", user_path(ref)))

    async def modify_account(self, ref: AccountRef, changes: AccountChanges) -> PanelAccount:
        body = modify_body(changes)
        if not body:
            return await self.get_account(ref)
        return self._account(await self._call("PUT", user_path(ref), json=body))

    async def delete_account(self, ref: AccountRef) -> None:
        # v0.8.4 answers 500 after deleting users owned by the env sudo admin; the retry then sees 404,
        # which is success here, so the quirk needs nothing more.
        try:
            await self._call("DELETE", user_path(ref))
        except AccountNotFound:
            return

    async def reset_traffic(self, ref: AccountRef) -> PanelAccount:
        before = await self._call("GET", user_path(ref))
        self._account(before)  # validates the shape before anything changes
        after = await self._call("POST", f"{user_path(ref)}/reset")
        # Marzban's reset re-activates disabled and on_hold users too (§1.3 quirk): put the status back.
        restore = status_restore(before)
        if restore and self._account(after).status == "active":
            after = await self._call("PUT", user_path(ref), json=restore)
        return self._account(after)

    async def revoke_subscription(self, ref: AccountRef) -> PanelAccount:
        return self._account(await self._call("POST", f"{user_path(ref)}/revoke_sub"))

    async def subscription_links(self, url: str) -> list[str] | None:
        """`{url}/info`: the same token check as the link itself, the account's links, and no fetch recorded
        (the link would set sub_updated_at). Revoked or unknown: 204 (v0.7) or 404 (v0.8)."""
        data = await read_subscription_info(url.rstrip("/") + "/info", {}, "marzban")
        if data is None:
            return None
        return [str(link) for link in Reader(data, "subscription info").optional("links", list) or []]

    async def iter_accounts(self, page_size: int = 500) -> AsyncIterator[list[PanelAccount]]:
        """Pages in Marzban's default (insertion) order. An account deleted mid-walk can shift a later one
        onto a page already read; reconciliation tolerates that, as a miss is re-checked on the next run."""
        if page_size < 1:
            raise ValueError("page_size must be positive")
        offset = 0
        while True:
            data = await self._call("GET", "api/users", params={"offset": offset, "limit": page_size})
            reader = Reader(data, "user list")
            items, total = reader.get("users", list), reader.get("total", int)
            page = [self._account(item) for item in items]  # parse it all before yielding any of it
            if page:
                yield page
            offset += len(page)
            if not page or offset >= total:
                return

    # --- devices: Marzban has no HWID tracking ----------------------------------------------------------------

    async def list_devices(self, ref: AccountRef) -> list[Device]:
        return []

    async def delete_device(self, ref: AccountRef, hwid: str) -> None:
        raise PanelError("marzban: this panel has no device (HWID) tracking")

    # --- server ------------------------------------------------------------------------------------------------

    async def nodes(self) -> list[NodeInfo]:
        data = await self._call("GET", "api/nodes")
        if not isinstance(data, list):
            raise PanelError(f"marzban: expected a list of nodes, got {type(data).__name__}")
        return [parse_node(item) for item in data]

    async def system(self) -> SystemInfo:
        reader = Reader(await self._call("GET", "api/system"), "system stats")
        return SystemInfo(
            version=reader.get("version", str),
            total_users=reader.get("total_user", int),
            active_users=reader.get("users_active", int),
            online_users=reader.optional("online_users", int),  # v0.8 only
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    # --- plumbing ----------------------------------------------------------------------------------------------

    def _account(self, data: Any) -> PanelAccount:
        return parse_account(data, self._base_url)

    async def _vless_inbounds(self) -> list[str]:
        """The VLESS inbound tags to give new users: configured, or read from the panel once and cached."""
        if self._configured_inbounds is not None:
            tags = self._configured_inbounds.get("vless") or []
            if not tags:
                raise PanelError("marzban: the configured inbounds have no 'vless' tags")
            return list(tags)
        async with self._inbounds_lock:
            if self._vless_tags is None:
                self._vless_tags = parse_vless_tags(await self._call("GET", "api/inbounds"))
        return self._vless_tags

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        """An authenticated request whose 2xx JSON body is returned; any other outcome is a panel exception."""
        response = await self._authorized(method, path, **kwargs)
        raise_for_status(response, f"{method} {path}")
        return parse_json(response, f"{method} {path}")

    async def _authorized(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        token, generation = self._token, self._generation
        if token is None:
            token, generation = await self._login(newer_than=generation)
        response = await self._send(method, path, token=token, **kwargs)
        if response.status_code != 401:
            return response
        # The JWT expired (24 h by default) or was revoked by a password change: log in exactly once more.
        token, _ = await self._login(newer_than=generation)
        response = await self._send(method, path, token=token, **kwargs)
        if response.status_code == 401:
            raise PanelAuthError(f"marzban: a fresh token was rejected: {error_detail(response)}")
        return response

    async def _login(self, newer_than: int) -> tuple[str, int]:
        """A token from a login after generation `newer_than`: one another call just made, or a new one."""
        async with self._login_lock:
            if self._token is not None and self._generation > newer_than:
                return self._token, self._generation
            if not self._credentials["username"]:
                raise PanelAuthError("marzban: the API token was rejected and no admin login is configured")
            self._token = None
            response = await self._send("POST", "api/admin/token", data=self._credentials)
            if response.status_code in (401, 403):
                raise PanelAuthError(f"marzban: login refused: {error_detail(response)}")
            raise_for_status(response, "login")
            token = Reader(parse_json(response, "login"), "login response").get("access_token", str)
            self._token, self._generation = token, self._generation + 1
            return token, self._generation

    async def _send(self, method: str, path: str, *, token: str | None = None, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else None
        try:
            return await self._http.request(method, path, headers=headers, **kwargs)
        except ExternalServiceError as exc:  # includes CircuitOpenError
            raise PanelUnavailable(str(exc)) from exc
        except httpx.HTTPError as exc:
            raise PanelError(f"marzban: {method} {path} failed: {exc}") from exc


# --------------------------------------------------------------------------------------------------------------
# Requests


def user_path(ref: AccountRef) -> str:
    return f"api/user/{quote(ref.username, safe='')}"


def to_unix(moment: datetime | None) -> int:
    """Unix seconds for Marzban's `expire`; 0 means never, so a real moment is never allowed to become 0."""
    if moment is None:
        return 0
    return max(1, int(ensure_utc(moment).timestamp()))


def account_note(spec: AccountSpec) -> str:
    """Our note, tagged with the Telegram id so staff can find the customer from the panel's dashboard."""
    note = spec.note
    if spec.telegram_id is not None and f"tg:{spec.telegram_id}" not in note:
        note = f"{note} tg:{spec.telegram_id}".strip()
    return note[:NOTE_LIMIT]


def modify_body(changes: AccountChanges) -> dict[str, Any]:
    """A UserModify body; Marzban leaves out-of-body fields alone and reads 0 as "unlimited"/"never"."""
    body: dict[str, Any] = {}
    if changes.clear_expiry:
        body["expire"] = 0
    elif changes.expire_at is not None:
        body["expire"] = to_unix(changes.expire_at)
    if changes.traffic_limit_bytes is not None:
        body["data_limit"] = changes.traffic_limit_bytes
    if changes.enabled is not None:
        body["status"] = "active" if changes.enabled else "disabled"
    if changes.note is not None:
        body["note"] = changes.note[:NOTE_LIMIT]
    if changes.traffic_strategy is not None:
        body["data_limit_reset_strategy"] = changes.traffic_strategy
    return body


def status_restore(before: dict[str, Any]) -> dict[str, Any]:
    """The UserModify body that undoes reset's re-activation of a disabled or on_hold user, if needed."""
    if before.get("status") == "disabled":
        return {"status": "disabled"}
    if before.get("status") == "on_hold" and before.get("on_hold_expire_duration"):
        restore = {"status": "on_hold", "on_hold_expire_duration": before["on_hold_expire_duration"]}
        if before.get("on_hold_timeout"):
            restore["on_hold_timeout"] = before["on_hold_timeout"]
        return restore
    return {}


# --------------------------------------------------------------------------------------------------------------
# Responses


def error_detail(response: httpx.Response) -> str:
    """The panel's own message: `detail` as a string, a {field: message} dict (422) or FastAPI's list."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:200] or f"HTTP {response.status_code}"
    detail = body.get("detail", body) if isinstance(body, dict) else body
    if isinstance(detail, dict):
        return "; ".join(f"{field}: {message}" for field, message in detail.items())
    if isinstance(detail, list):
        return "; ".join(str(item.get("msg", item)) if isinstance(item, dict) else str(item) for item in detail)
    return str(detail)


def raise_for_status(response: httpx.Response, action: str) -> None:
    status = response.status_code
    if 200 <= status < 300:
        return
    detail = error_detail(response)
    if status == 404 and detail == "Not Found":
        # FastAPI's answer for an unknown route, not Marzban's "User not found": a wrong base URL must not
        # look like a missing account (a delete would then "succeed").
        raise PanelError(f"marzban: {action}: no such endpoint; check the panel URL")
    if status == 404:
        raise AccountNotFound(f"marzban: {action}: {detail}")
    if status == 409:
        raise AccountExists(f"marzban: {action}: {detail}")
    if status in (401, 403):
        raise PanelAuthError(f"marzban: {action}: {detail}")
    raise PanelError(f"marzban: {action} was rejected (HTTP {status}): {detail}")


def parse_json(response: httpx.Response, action: str) -> Any:
    try:
        return response.json()
    except ValueError as exc:
        raise PanelError(f"marzban: {action} returned malformed JSON: {exc}") from exc


class Reader:
    """Typed access to one JSON object, turning every missing or mistyped field into a clear PanelError."""

    def __init__(self, data: Any, what: str) -> None:
        if not isinstance(data, dict):
            raise PanelError(f"marzban: expected a JSON object for the {what}, got {type(data).__name__}")
        self.data = data
        self.what = what

    def get(self, name: str, kind: type[T]) -> T:
        if name not in self.data:
            raise PanelError(f"marzban: the {self.what} has no '{name}' field")
        value = self.optional(name, kind)
        if value is None:
            raise PanelError(f"marzban: the {self.what} has a null '{name}'")
        return value

    def optional(self, name: str, kind: type[T]) -> T | None:
        value = self.data.get(name)
        # bool is an int subclass; a boolean where a number belongs is a malformed answer.
        if value is None or (isinstance(value, kind) and not isinstance(value, bool)):
            return value
        raise PanelError(f"marzban: the {self.what} has '{name}' = {value!r}, expected {kind.__name__}")

    def number(self, name: str, *, required: bool = False) -> int | None:
        """A nullable number; `required` means the key itself must be present (Marzban always sends it)."""
        if required and name not in self.data:
            raise PanelError(f"marzban: the {self.what} has no '{name}' field")
        value = self.data.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise PanelError(f"marzban: the {self.what} has '{name}' = {value!r}, expected a number")
        return int(value)

    def moment(self, name: str) -> datetime | None:
        """Marzban writes naive UTC ISO strings ("2026-11-21T08:11:45.349166")."""
        return self.convert(name, lambda text: ensure_utc(datetime.fromisoformat(text)))

    def convert(self, name: str, parse: Callable[[str], T]) -> T | None:
        text = self.optional(name, str)
        if text is None:
            return None
        try:
            return parse(text)
        except ValueError as exc:
            raise PanelError(f"marzban: the {self.what} has an unreadable '{name}': {text!r}") from exc


def parse_account(data: Any, base_url: str) -> PanelAccount:
    reader = Reader(data, "user")
    username = reader.get("username", str)
    reader.what = f"user {username!r}"
    status = reader.get("status", str)
    if status not in STATUSES:
        raise PanelError(f"marzban: {reader.what} has an unknown status {status!r}")
    expire = reader.number("expire", required=True)
    limit = reader.number("data_limit", required=True)
    used = reader.number("used_traffic", required=True) or 0
    lifetime = reader.number("lifetime_used_traffic")  # absent before v0.7
    links = reader.optional("links", list) or []
    return PanelAccount(
        username=username,
        panel_id=username,
        status=cast(AccountStatus, status),  # checked against STATUSES above
        expire_at=datetime.fromtimestamp(expire, UTC) if expire else None,
        traffic_limit_bytes=limit or None,
        used_traffic_bytes=used,
        lifetime_traffic_bytes=lifetime if lifetime is not None else used,
        device_limit=None,
        # Marzban mints a new token on every response; it is a link, not an identity.
        subscription_url=urljoin(base_url, reader.get("subscription_url", str)),
        links=[str(link) for link in links],
        online_at=reader.moment("online_at"),
        sub_updated_at=reader.moment("sub_updated_at"),
        sub_last_user_agent=reader.optional("sub_last_user_agent", str),
        created_at=reader.moment("created_at"),
        note=reader.optional("note", str) or "",
        telegram_id=telegram_id_in(reader.optional("note", str)),
        traffic_strategy=reader.optional("data_limit_reset_strategy", str),
    )


def parse_vless_tags(data: Any) -> list[str]:
    """Tags of the VLESS inbounds in a `GET /api/inbounds` answer ({protocol: [{"tag": ...}, ...]})."""
    inbounds = Reader(data, "inbound list").optional("vless", list) or []
    tags = [Reader(item, "inbound").get("tag", str) for item in inbounds]
    if not tags:
        raise PanelError("marzban: the panel has no VLESS inbound; add one to its xray config")
    return tags


def parse_node(data: Any) -> NodeInfo:
    reader = Reader(data, "node")
    status = reader.get("status", str)  # connected | connecting | error | disabled
    return NodeInfo(
        external_id=str(reader.get("id", int)),
        name=reader.get("name", str),
        address=reader.get("address", str),
        port=reader.number("port"),
        is_online=status == "connected",
        is_enabled=status != "disabled",
        message=reader.optional("message", str) or "",
    )
