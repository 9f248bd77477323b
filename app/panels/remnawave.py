"""The Remnawave adapter (API generations 2.x and 3.x) behind the `VpnPanel` protocol.

Facts it is built around (panels_api.md Part 2):
* Auth is a static API token sent as `Authorization: Bearer`. There is no login, so a 401/403 is final.
* The panel destroys the socket of any request that lacks `X-Forwarded-For` and `X-Forwarded-Proto: https`,
  so both are sent whenever the base URL is plain http.
* Every body is wrapped as `{"response": ...}`.
* 2.x keys users by `uuid` in paths and bodies; 3.x dropped the uuid and keys them by numeric `id`.
  `AccountRef.panel_id` holds that key as a string. A ref without one, or with one of the other generation
  (a panel upgraded from 2.x to 3.x), is resolved by username.

API generation with `api_version="auto"` is detected once per instance, on first use:
1. `GET /api/system/metadata` → `response.version` (contract `GetMetadataCommand`); major 2 or 3 decides.
2. If that is unusable (e.g. the token lacks the scope): a user from `GET /api/users?size=1`. A `uuid` key
   means 2.x, because 3.x removed it.
3. On an empty panel: `GET /api/users/<nil uuid>`. 2.x answers 404, because the path takes a uuid and there
   is no such user. 3.x answers 400, because its zod `id` param rejects a uuid.

Values the panel models differently from `AccountSpec`:
* "Never expires" is written as 2099-12-31. Any expiry in 2099 or later reads back as None.
* Traffic limit: 0 means unlimited.
* `hwidDeviceLimit`: 0 means unlimited/bypass, null means the panel-wide fallback; both read back as None.
  The create schema does not accept null, so `device_limit=None` is sent as 0.
* `links` stay empty. The user object has none; the subscription URL carries them.
* `sub_updated_at` and `sub_last_user_agent` come from one extra call in `get_account` only:
  `/subscription-request-history`. List pages and write results leave them None. It is best effort: a 2.8+
  token without that route's scope gets 403 there, which must not fail the read.
* Our note (with the ownership mark) is the user's `description`.

Statuses: the panel marks ACTIVE users EXPIRED or LIMITED by itself (a job every 30 s), and `PATCH status:
DISABLED` applies only to an ACTIVE user, so an expired or limited account counts as already off
(provisioning.handlers.changes_needed).

Squads: a user's `activeInternalSquads` decide its inbounds. New accounts get the plan's squads, else the
server's configured ones, else the panel's only squad; with several squads and none chosen, the create fails with
a clear error rather than handing premium or admin squads to every customer.

API token scopes the product needs (2.8+): `users:read`, `users:write` (create, update, delete, actions),
`hwid-user-devices:read`, `hwid-user-devices:write`, `nodes:read`, `system:read`, and `internal-squads:read` only
when squads are given by name or not at all. Panels behind Caddy's security bundle or a cookie-protected proxy
take `extra_headers` (e.g. `X-Api-Key`) and `cookies`, as the official SDK's `custom_headers`/`cookies`.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from typing import Any, Literal, cast
from urllib.parse import quote, urlsplit

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
    PanelForbidden,
    PanelUnavailable,
    SystemInfo,
)
from app.panels.subscription import read_subscription_info

log = logging.getLogger(__name__)

Generation = Literal["2", "3"]

NEVER = datetime(2099, 12, 31, tzinfo=UTC)
NEVER_YEAR = 2099
MAX_PAGE_SIZE = 1000  # the list endpoint's zod limit
SQUAD_CACHE_SECONDS = 300.0  # squads change rarely; re-read now and then so a new one is picked up
NIL_UUID = "00000000-0000-0000-0000-000000000000"
# The contract exports exactly this pair as REMNAWAVE_BYPASS_HTTPS_RESTRCTIONS.
PROXY_HEADERS = {"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "https"}
DUPLICATE_USERNAME = "A019"

_UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_STRATEGIES = {"no_reset": "NO_RESET", "month": "MONTH"}  # TrafficStrategy → trafficLimitStrategy
_STATUSES: dict[str, AccountStatus] = {
    "ACTIVE": "active",
    "DISABLED": "disabled",
    "LIMITED": "limited",
    "EXPIRED": "expired",
}


class RemnawavePanel:
    """One Remnawave panel reached with an API token."""

    kind = "remnawave"
    supports_devices = True
    # PATCH status DISABLED applies to ACTIVE users only, and the panel's job marks them EXPIRED/LIMITED itself.
    off_statuses = frozenset({"disabled", "expired", "limited"})

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        api_version: Literal["auto", "2", "3"] = "auto",
        squad_uuids: list[str] | None = None,
        extra_headers: Mapping[str, str] | None = None,
        cookies: Mapping[str, str] | None = None,
        http: HttpClient | None = None,
        timeout: float = 10.0,
    ) -> None:
        if api_version not in ("auto", "2", "3"):
            raise ValueError(f"api_version must be 'auto', '2' or '3', not {api_version!r}")
        self._owns_http = http is None
        self._http = http or HttpClient(base_url, service="remnawave", timeout=timeout)
        # Sent on every request (not as client defaults) so an injected HttpClient gets them too.
        self._headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        if urlsplit(base_url).scheme == "http":
            self._headers.update(PROXY_HEADERS)
        self._headers.update(extra_headers or {})
        if cookies:
            self._headers["Cookie"] = "; ".join(f"{name}={value}" for name, value in cookies.items())
        self._generation: Generation | None = None if api_version == "auto" else api_version
        self._detect_lock = asyncio.Lock()
        self._panel_version: str | None = None
        self._configured_squads = list(squad_uuids) if squad_uuids else None
        self._squads: dict[str, str] | None = None
        self._squads_read_at = 0.0

    # ----- accounts ---------------------------------------------------------------------------------------------

    async def create_account(self, spec: AccountSpec) -> PanelAccount:
        generation = await self.generation()
        body: dict[str, Any] = {
            "username": spec.username,
            "status": "ACTIVE" if spec.enabled else "DISABLED",
            "expireAt": _iso(spec.expire_at or NEVER),
            "trafficLimitBytes": spec.traffic_limit_bytes or 0,
            "trafficLimitStrategy": _STRATEGIES.get(spec.traffic_strategy, "NO_RESET"),
            "hwidDeviceLimit": spec.device_limit or 0,
            # Without an internal squad a Remnawave user has no inbounds at all, i.e. no VLESS access.
            "activeInternalSquads": await self._squads_for_new_accounts(spec.squads),
        }
        if spec.note:
            body["description"] = spec.note
        if spec.telegram_id is not None:
            body["telegramId"] = spec.telegram_id
        data = await self._call("POST", "/api/users", json=body)
        return self._parse_user(data, generation)

    async def get_account(self, ref: AccountRef) -> PanelAccount:
        generation = await self.generation()
        key = self._fitting_key(ref, generation)
        path = f"/api/users/{key}" if key else f"/api/users/by-username/{quote(ref.username, safe='')}"
        account = self._parse_user(await self._call("GET", path, account=True), generation)
        await self._attach_subscription_history(account)
        return account

    async def modify_account(self, ref: AccountRef, changes: AccountChanges) -> PanelAccount:
        generation = await self.generation()
        body = _changes_body(changes)
        key = self._fitting_key(ref, generation)
        # PATCH takes the key or the username (the key wins), so no lookup is needed first.
        if key is None:
            body["username"] = ref.username
        elif generation == "2":
            body["uuid"] = key
        else:
            body["id"] = int(key)
        data = await self._call("PATCH", "/api/users", json=body, account=True)
        return self._parse_user(data, generation)

    async def delete_account(self, ref: AccountRef) -> None:
        try:
            key = await self._resolve_key(ref)
            # 2.x answers 200 {"isDeleted":true}, 3.x 204: nothing to read either way.
            await self._request("DELETE", f"/api/users/{key}", account=True)
        except AccountNotFound:
            log.info("remnawave account %s was already gone", ref.username)

    async def reset_traffic(self, ref: AccountRef) -> PanelAccount:
        return await self._user_action(ref, "reset-traffic")

    async def revoke_subscription(self, ref: AccountRef) -> PanelAccount:
        # revokeOnlyPasswords=false: a new shortUuid, so the old subscription URL stops working.
        return await self._user_action(ref, "revoke", {"revokeOnlyPasswords": False})

    async def subscription_links(self, url: str) -> list[str] | None:
        """`{subscriptionUrl}/info`: the links the user's squads give now, without an HWID device registered or a
        fetch recorded in the history (the link itself would do both)."""
        headers = dict(PROXY_HEADERS) if urlsplit(url).scheme == "http" else {}
        data = await read_subscription_info(url.rstrip("/") + "/info", headers, "remnawave")
        if data is None:
            return None
        info = _mapping(data.get("response") if isinstance(data, dict) else None, "subscription info")
        if info.get("isFound") is False:
            return None
        links = info.get("links")
        return [str(link) for link in links] if isinstance(links, list) else []

    async def iter_accounts(self, page_size: int = 500) -> AsyncIterator[list[PanelAccount]]:
        """Offset pages, newest first. Accounts created or deleted mid-walk may shift a page by a few rows."""
        generation = await self.generation()
        size = max(1, min(page_size, MAX_PAGE_SIZE))
        start = 0
        while True:
            data = await self._call("GET", "/api/users", params={"start": start, "size": size})
            users = _list_of(data, "users")
            total = _number(data, "total", "user list")
            if not users:
                return
            yield [self._parse_user(user, generation) for user in users]
            start += len(users)
            if start >= total:
                return

    # ----- devices ----------------------------------------------------------------------------------------------

    async def list_devices(self, ref: AccountRef) -> list[Device]:
        key = await self._resolve_key(ref)
        data = await self._call("GET", f"/api/hwid/devices/{key}", account=True)
        return [_parse_device(device) for device in _list_of(data, "devices")]

    async def delete_device(self, ref: AccountRef, hwid: str) -> None:
        generation = await self.generation()
        key = await self._resolve_key(ref)
        owner: dict[str, Any] = {"userUuid": key} if generation == "2" else {"userId": int(key)}
        await self._request("POST", "/api/hwid/devices/delete", json={**owner, "hwid": hwid}, account=True)

    # ----- nodes and system -------------------------------------------------------------------------------------

    async def nodes(self) -> list[NodeInfo]:
        data = await self._call("GET", "/api/nodes")
        if not isinstance(data, list):
            raise PanelError("Remnawave node list is not an array")
        return [_parse_node(node) for node in data]

    async def system(self) -> SystemInfo:
        generation = await self.generation()
        data = _mapping(await self._call("GET", "/api/system/stats"), "system stats")
        users = _mapping(data.get("users"), "system stats users")
        counts = _mapping(users.get("statusCounts"), "system stats statusCounts")
        online = data.get("onlineStats")
        online_now = online.get("onlineNow") if isinstance(online, dict) else None
        version = self._panel_version or await self._read_panel_version() or f"{generation}.x"
        return SystemInfo(
            version=version,
            total_users=_number(users, "totalUsers", "system stats"),
            active_users=_number(counts, "ACTIVE", "system stats"),
            online_users=online_now if isinstance(online_now, int) else None,
        )

    async def aclose(self) -> None:
        if self._owns_http:  # an injected client belongs to whoever made it
            await self._http.aclose()

    # ----- API generation ---------------------------------------------------------------------------------------

    async def generation(self) -> Generation:
        """The API generation: as configured, or detected on first use (see the module docstring)."""
        if self._generation is None:
            async with self._detect_lock:
                if self._generation is None:
                    self._generation = await self._detect_generation()
                    log.info("remnawave API generation detected: %s.x", self._generation)
        return self._generation

    async def _detect_generation(self) -> Generation:
        major = (await self._read_panel_version() or "").split(".", 1)[0]
        if major.isdigit():
            if int(major) < 2:
                raise PanelError(f"Remnawave {self._panel_version} is not supported (need 2.x or 3.x)")
            # Later majors are assumed to keep 3.x's numeric-id paths until proven otherwise.
            return "2" if major == "2" else "3"
        data = await self._call("GET", "/api/users", params={"start": 0, "size": 1})
        users = _list_of(data, "users")
        if users:
            return "2" if "uuid" in _mapping(users[0], "user") else "3"
        return await self._probe_key_shape()

    async def _probe_key_shape(self) -> Generation:
        response = await self._send("GET", f"/api/users/{NIL_UUID}")
        if response.status_code == 404:
            return "2"
        if response.status_code == 400:
            return "3"
        raise self._error_for(response, account=False)

    async def _read_panel_version(self) -> str | None:
        """The panel's version from /api/system/metadata, or None when it cannot be read."""
        response = await self._send("GET", "/api/system/metadata")
        if not response.is_success:
            return None
        try:
            metadata = _unwrap(response)
        except PanelError:
            return None
        version = metadata.get("version") if isinstance(metadata, dict) else None
        if isinstance(version, str) and version:
            self._panel_version = version
            return version
        return None

    # ----- account keys -----------------------------------------------------------------------------------------

    @staticmethod
    def _fitting_key(ref: AccountRef, generation: Generation) -> str | None:
        """ref.panel_id if it is a key of this generation (uuid for 2.x, digits for 3.x), else None."""
        panel_id = ref.panel_id
        if not panel_id:
            return None
        fits = bool(_UUID_RE.match(panel_id)) if generation == "2" else panel_id.isdigit()
        return panel_id if fits else None

    async def _resolve_key(self, ref: AccountRef) -> str:
        generation = await self.generation()
        key = self._fitting_key(ref, generation)
        if key is not None:
            return key
        path = f"/api/users/by-username/{quote(ref.username, safe='')}"
        user = _mapping(await self._call("GET", path, account=True), "user")
        return _user_key(user, generation)

    async def _user_action(self, ref: AccountRef, action: str, body: dict[str, Any] | None = None) -> PanelAccount:
        generation = await self.generation()
        key = await self._resolve_key(ref)
        data = await self._call("POST", f"/api/users/{key}/actions/{action}", json=body, account=True)
        return self._parse_user(data, generation)

    # ----- squads and history -----------------------------------------------------------------------------------

    async def _squads_for_new_accounts(self, wanted: list[str] | None) -> list[str]:
        """The plan's squads, else the server's, else the panel's only one; never every squad by default."""
        chosen = wanted or self._configured_squads
        if chosen and all(_UUID_RE.match(squad) for squad in chosen):
            return list(chosen)
        squads = await self._panel_squads()
        if chosen:
            by_name = {name: uuid for uuid, name in squads.items()}
            unknown = [squad for squad in chosen if squad not in squads and squad not in by_name]
            if unknown:
                raise PanelError(f"Remnawave has no internal squad {', '.join(unknown)}; check the plan or server")
            return [squad if squad in squads else by_name[squad] for squad in chosen]
        if len(squads) == 1:
            return list(squads)
        if not squads:
            raise PanelError("Remnawave has no internal squads: new accounts would have no VLESS access")
        raise PanelError(
            f"Remnawave has {len(squads)} internal squads ({', '.join(squads.values())}) and none is chosen: set "
            "the server's squads (settings squad_uuids) or the plan's panel squads, so customers never get them all"
        )

    async def _panel_squads(self) -> dict[str, str]:
        """uuid → name of the panel's internal squads, re-read now and then so a new one is picked up."""
        if self._squads is None or time.monotonic() - self._squads_read_at > SQUAD_CACHE_SECONDS:
            data = _mapping(await self._call("GET", "/api/internal-squads"), "internal squads")
            squads = [_mapping(squad, "squad") for squad in _list_of(data, "internalSquads")]
            self._squads = {_text(s, "uuid", "squad"): str(s.get("name") or "") for s in squads}
            self._squads_read_at = time.monotonic()
        return self._squads

    async def _attach_subscription_history(self, account: PanelAccount) -> None:
        """Fill sub_updated_at/sub_last_user_agent from the last subscription fetch, if the panel tells us.

        Best effort: a panel without the route or with odd records must not break get_account.
        """
        try:
            data = await self._call("GET", f"/api/users/{account.panel_id}/subscription-request-history")
            records = [r for r in _list_of(data, "records") if isinstance(r, dict)]
        except PanelForbidden as exc:
            # A 2.8+ token without this route's scope: the history is a nicety, the account read is not.
            log.info("remnawave subscription history not allowed for this API token: %s", exc)
            return
        except (PanelUnavailable, PanelAuthError):
            raise
        except PanelError as exc:
            log.debug("remnawave subscription history unavailable for %s: %s", account.username, exc)
            return
        dated = [(_parse_datetime(r.get("requestAt")), r) for r in records]
        dated = [(at, r) for at, r in dated if at is not None]
        if not dated:
            return
        at, latest = max(dated, key=lambda pair: pair[0])
        account.sub_updated_at = at
        agent = latest.get("userAgent")
        account.sub_last_user_agent = agent if isinstance(agent, str) else None

    # ----- HTTP -------------------------------------------------------------------------------------------------

    async def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One logical request (HttpClient retries 5xx/429/timeouts); unreachable → PanelUnavailable."""
        try:
            return await self._http.request(method, path, headers=self._headers, **kwargs)
        except ExternalServiceError as exc:  # CircuitOpenError included
            raise PanelUnavailable(f"Remnawave unavailable: {exc}") from exc

    async def _request(self, method: str, path: str, *, account: bool = False, **kwargs: Any) -> httpx.Response:
        """Send and turn a non-2xx answer into our exceptions. `account`: a 404 means the account is gone."""
        response = await self._send(method, path, **kwargs)
        if not response.is_success:
            raise self._error_for(response, account=account)
        return response

    async def _call(self, method: str, path: str, *, account: bool = False, **kwargs: Any) -> Any:
        return _unwrap(await self._request(method, path, account=account, **kwargs))

    @staticmethod
    def _error_for(response: httpx.Response, *, account: bool) -> PanelError:
        status = response.status_code
        message, code = _error_details(response)
        text = f"Remnawave {response.request.method} {response.request.url.path} → {status}"
        text += f" {code}: {message}" if code else f": {message}"
        if status == 403:
            return PanelForbidden(text)  # a missing scope (2.8+) or a proxy refusing us
        if status == 401:
            return PanelAuthError(text)
        if status == 400 and code == DUPLICATE_USERNAME:
            return AccountExists(text)
        if status == 404 and account:
            return AccountNotFound(text)
        return PanelError(text)

    # ----- parsing ----------------------------------------------------------------------------------------------

    def _parse_user(self, data: Any, generation: Generation) -> PanelAccount:
        user = _mapping(data, "user")
        username, panel_id = _text(user, "username", "user"), _user_key(user, generation)
        status = _text(user, "status", "user")
        if status not in _STATUSES:
            raise PanelError(f"Remnawave user has unknown status {status!r}")
        traffic = _mapping(user.get("userTraffic"), "user.userTraffic")
        expire_at = _parse_datetime(_text(user, "expireAt", "user"), strict=True)
        limit = _number(user, "trafficLimitBytes", "user", default=0)
        device_limit = user.get("hwidDeviceLimit")
        strategy = user.get("trafficLimitStrategy")
        telegram_id = user.get("telegramId")
        return PanelAccount(
            username=username,
            panel_id=panel_id,
            status=_STATUSES[status],
            expire_at=None if expire_at is None or expire_at.year >= NEVER_YEAR else expire_at,
            traffic_limit_bytes=limit or None,
            used_traffic_bytes=_number(traffic, "usedTrafficBytes", "userTraffic", default=0),
            lifetime_traffic_bytes=_number(traffic, "lifetimeUsedTrafficBytes", "userTraffic", default=0),
            device_limit=device_limit if isinstance(device_limit, int) and device_limit > 0 else None,
            subscription_url=_text(user, "subscriptionUrl", "user"),
            online_at=_parse_datetime(traffic.get("onlineAt")),
            created_at=_parse_datetime(user.get("createdAt")),
            note=_optional_text(user, "description") or "",
            telegram_id=telegram_id if isinstance(telegram_id, int) and not isinstance(telegram_id, bool) else None,
            traffic_strategy=strategy.lower() if isinstance(strategy, str) else None,
        )


# ---------------------------------------------------------------------------------------------------------------
# Pure helpers: request bodies and defensive parsing (a bad payload is a PanelError, never a KeyError)


def _iso(value: datetime) -> str:
    """A JS-style ISO timestamp (UTC, milliseconds, Z), the format the contract's examples use."""
    return ensure_utc(value).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _changes_body(changes: AccountChanges) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if changes.clear_expiry:
        body["expireAt"] = _iso(NEVER)
    elif changes.expire_at is not None:
        # The panel rejects a past expireAt (400 "Expiration date cannot be in the past"); that surfaces as
        # PanelError rather than being silently turned into a disable.
        body["expireAt"] = _iso(changes.expire_at)
    if changes.traffic_limit_bytes is not None:
        body["trafficLimitBytes"] = changes.traffic_limit_bytes
    if changes.device_limit is not None:
        body["hwidDeviceLimit"] = changes.device_limit
    if changes.enabled is not None:
        body["status"] = "ACTIVE" if changes.enabled else "DISABLED"
    if changes.note is not None:
        body["description"] = changes.note
    if changes.traffic_strategy is not None:
        body["trafficLimitStrategy"] = _STRATEGIES.get(changes.traffic_strategy, "NO_RESET")
    return body


def _unwrap(response: httpx.Response) -> Any:
    what = f"{response.request.method} {response.request.url.path}"
    try:
        body = response.json()
    except ValueError as exc:
        raise PanelError(f"Remnawave sent malformed JSON for {what}: {exc}") from exc
    if not isinstance(body, dict) or "response" not in body:
        raise PanelError(f'Remnawave answer to {what} lacks the {{"response": ...}} envelope')
    return body["response"]


def _error_details(response: httpx.Response) -> tuple[str, str | None]:
    """(message, errorCode) from a business, validation or Nest-default error body, or the raw text."""
    try:
        body = response.json()
    except ValueError:
        return (response.text.strip()[:200] or response.reason_phrase), None
    if not isinstance(body, dict):
        return str(body)[:200], None
    message = str(body.get("message") or response.reason_phrase)
    issues = body.get("errors")
    if isinstance(issues, list) and issues:
        details = []
        for issue in issues:
            if isinstance(issue, dict):
                path = ".".join(str(part) for part in issue.get("path") or [])
                details.append(f"{path}: {issue.get('message')}" if path else str(issue.get("message")))
        message = f"{message}: {'; '.join(details)}"
    code = body.get("errorCode")
    return message, code if isinstance(code, str) else None


def _mapping(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise PanelError(f"Remnawave {what} is not an object")
    return value


def _list_of(data: Any, key: str) -> list[Any]:
    value = _mapping(data, f"answer with {key!r}").get(key)
    if not isinstance(value, list):
        raise PanelError(f"Remnawave answer has no {key!r} array")
    return value


def _text(data: Mapping[str, Any], key: str, what: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise PanelError(f"Remnawave {what} has no string {key!r}")
    return value


def _number(data: Mapping[str, Any], key: str, what: str, *, default: int | None = None) -> int:
    value = data.get(key)
    if value is None and default is not None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PanelError(f"Remnawave {what} has no number {key!r}")
    return int(value)


def _user_key(user: Mapping[str, Any], generation: Generation) -> str:
    if generation == "2":
        if not isinstance(user.get("uuid"), str):
            raise PanelError("Remnawave user has no 'uuid': is the panel 3.x? (set api_version='3' or 'auto')")
        return cast(str, user["uuid"])
    return str(_number(user, "id", "user"))


def _parse_datetime(value: Any, *, strict: bool = False) -> datetime | None:
    if value is None or value == "":
        return None
    try:
        if not isinstance(value, str):
            raise ValueError(value)
        return ensure_utc(datetime.fromisoformat(value))
    except ValueError:
        if strict:
            raise PanelError(f"Remnawave sent an unreadable date {value!r}") from None
        return None


def _optional_text(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    return value if isinstance(value, str) else None


def _parse_device(data: Any) -> Device:
    device = _mapping(data, "device")
    return Device(
        hwid=_text(device, "hwid", "device"),
        platform=_optional_text(device, "platform"),
        os_version=_optional_text(device, "osVersion"),
        model=_optional_text(device, "deviceModel"),
        user_agent=_optional_text(device, "userAgent"),
        created_at=_parse_datetime(device.get("createdAt")),
    )


def _parse_node(data: Any) -> NodeInfo:
    node = _mapping(data, "node")
    port = node.get("port")
    users_online = node.get("usersOnline")
    used = node.get("trafficUsedBytes")
    return NodeInfo(
        external_id=_text(node, "uuid", "node"),
        name=_text(node, "name", "node"),
        address=_text(node, "address", "node"),
        port=port if isinstance(port, int) else None,
        is_online=node.get("isConnected") is True,
        is_enabled=node.get("isDisabled") is not True,
        message=_optional_text(node, "lastStatusMessage") or "",
        users_online=users_online if isinstance(users_online, int) else None,
        traffic_used_bytes=int(used) if isinstance(used, int | float) and not isinstance(used, bool) else None,
    )
