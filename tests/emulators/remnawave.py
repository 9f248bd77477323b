"""An HTTP emulator of the Remnawave panel API, faithful to /work/shared/reference/panels_api.md Part 2.

One `RemnawaveEmulator(version="2" | "3")` is both the ASGI app (serve it with `tests.emulators.harness.serve`)
and the state object a test pokes at: users, squads, nodes, fault knobs and per-route request counters.

Generation differences (§0, §2.2-§2.5):
  2.x: users keyed by `uuid` in paths and bodies (`userUuid` for HWID); DELETE answers 200 `{"isDeleted":true}`.
  3.x: no `uuid`; numeric `id` in paths and bodies (`userId` for HWID); DELETE answers 204; `actions/extend`.

Behaviour chosen where the reference is silent (documented so tests do not mistake it for the real panel):
  * A request without `X-Forwarded-For` + `X-Forwarded-Proto: https` gets its TCP connection aborted with zero
    bytes, as the real `res.socket.destroy()` does. We reach the socket through uvicorn's per-request cycle
    (`send.__self__.transport`); when served some other way (e.g. httpx.ASGITransport) the emulator raises
    `httpx.RemoteProtocolError("Server disconnected without sending a response.")` instead, which is what
    an httpx client would have reported.
  * Status is computed lazily (the real scheduler sweeps every 30-45 s): DISABLED if disabled, else EXPIRED
    after `expireAt`, else LIMITED when usage reached a non-zero limit, else ACTIVE.
  * Unknown squad uuids on create/update fail like the real foreign-key error: 500 A018/A039.
  * `filters`/`sorting` list parameters, bulk routes, the cursor stream, admin-JWT login and webhooks are not
    emulated. An `admin_token` given to the constructor is accepted only with `X-Remnawave-Client-Type: browser`.
  * The public subscription 404 body is Nest's default `{"message":"Not Found","statusCode":404}`; with the
    device limit reached the subscription is served with no links and `x-hwid-max-devices-reached: true`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import random
import re
import secrets
import threading
import uuid as uuid_lib
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import httpx
from fastapi import Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from tests.emulators.harness import serve

Version = Literal["2", "3"]

NANOID_ALPHABET = "0123456789ABCDEFGHJKLMNPQRSTUVWXYZ_abcdefghjkmnopqrstuvwxyz-"
NEVER = datetime(2099, 12, 31, tzinfo=UTC)
USERNAME_RE = re.compile(r"^[a-zA-Z0-9_-]+$")
TAG_RE = re.compile(r"^[A-Z0-9_]+$")
UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
HWID_V3_RE = re.compile(r"^[a-zA-Z0-9=-]{10,64}$")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# zod .datetime({offset: true, local: true}): a full ISO timestamp, with Z, an offset or nothing.
ISO_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?$")
TRAFFIC_STRATEGIES = ("NO_RESET", "DAY", "WEEK", "MONTH", "MONTH_ROLLING")
USER_STATUSES = ("ACTIVE", "DISABLED", "LIMITED", "EXPIRED")
STATUS_JOB_SECONDS = 30  # the backend's job that marks users EXPIRED / LIMITED
# 2.8+ API token scopes by route (libs/contract/constants/scopes); a token given `scopes` lacks the others.
ROUTE_SCOPES = {
    "GET /api/system/metadata": "system:read",
    "GET /api/system/stats": "system:read",
    "GET /api/nodes": "nodes:read",
    "GET /api/internal-squads": "internal-squads:read",
    "POST /api/users": "users:write",
    "PATCH /api/users": "users:write",
    "GET /api/users": "users:read",
    "GET /api/users/by-username/{username}": "users:read",
    "GET /api/users/by-short-uuid/{short_uuid}": "users:read",
    "GET /api/users/by-id/{id}": "users:read",
    "GET /api/users/{key}": "users:read",
    "DELETE /api/users/{key}": "users:write",
    "POST /api/users/{key}/actions/enable": "users:write",
    "POST /api/users/{key}/actions/disable": "users:write",
    "POST /api/users/{key}/actions/reset-traffic": "users:write",
    "POST /api/users/{key}/actions/revoke": "users:write",
    "POST /api/users/{key}/actions/extend": "users:write",
    "GET /api/users/{key}/subscription-request-history": "user-subscription-request-history:read",
    "GET /api/hwid/devices": "hwid-user-devices:read",
    "POST /api/hwid/devices": "hwid-user-devices:write",
    "POST /api/hwid/devices/delete": "hwid-user-devices:write",
    "POST /api/hwid/devices/delete-all": "hwid-user-devices:write",
    "GET /api/hwid/devices/{user_key}": "hwid-user-devices:read",
}
MALFORMED_BODY = b'{"response": {"uuid": "0b8f7d62-3c1a'

_MISSING: Any = object()


# ---------------------------------------------------------------------------------------------------------------
# Small helpers


def js_iso(value: datetime | None) -> str | None:
    """A JS `Date.toISOString()` string: UTC, milliseconds, `Z`."""
    if value is None:
        return None
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def parse_iso(text: str) -> datetime:
    parsed = datetime.fromisoformat(text)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def nanoid(length: int) -> str:
    # Not a security boundary here; random.choices keeps seeding 50,000 users fast.
    return "".join(random.choices(NANOID_ALPHABET, k=length))


def _js_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


# ---------------------------------------------------------------------------------------------------------------
# Errors, rendered exactly as §2.8 documents them


class ApiError(Exception):
    """A business error: `{"timestamp","path","message","errorCode"}` with the ERRORS-table HTTP code."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def user_not_found() -> ApiError:
    return ApiError(404, "A025", "User not found")


def user_lookup_failed() -> ApiError:
    return ApiError(404, "A063", "User with specified params not found")


class ValidationFailed(Exception):
    """A zod pipe failure: 400 `{"statusCode":400,"message":"Validation failed","errors":[...]}`."""

    def __init__(self, issues: list[dict[str, Any]]) -> None:
        super().__init__("Validation failed")
        self.issues = issues


class Unauthorized(Exception):
    """The guard's Nest-default 401."""


class NestHttpError(Exception):
    """A plain Nest HttpException: `{"message", ["error",] "statusCode"}`."""

    def __init__(self, status: int, message: str, error: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.error = status, message, error


def issue(path: list[str | int], code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"code": code, **extra, "message": message, "path": path}


class BodyReader:
    """A tiny zod-like reader: it collects every issue (as the real pipe does) and raises them together."""

    def __init__(self, body: Any) -> None:
        self.issues: list[dict[str, Any]] = []
        self.body: dict[str, Any] = body if isinstance(body, dict) else {}
        if not isinstance(body, dict):
            kind = _js_type(body) if body is not _MISSING else "undefined"
            self.issues.append(
                issue([], "invalid_type", f"Expected object, received {kind}", expected="object", received=kind)
            )

    def check(self) -> None:
        if self.issues:
            raise ValidationFailed(self.issues)

    def add(self, key: str, code: str, message: str, **extra: Any) -> None:
        self.issues.append(issue([key], code, message, **extra))

    def raw(self, key: str, expected: str, *, required: bool = False, nullable: bool = False) -> Any:
        """The value if present and of the JS type `expected`; _MISSING (with an issue when wrong) otherwise."""
        if key not in self.body:
            if required:
                self.add(key, "invalid_type", "Required", expected=expected, received="undefined")
            return _MISSING
        value = self.body[key]
        if value is None and nullable:
            return None
        if _js_type(value) != expected:
            received = _js_type(value)
            self.add(
                key, "invalid_type", f"Expected {expected}, received {received}", expected=expected, received=received
            )
            return _MISSING
        return value

    def string(
        self,
        key: str,
        *,
        required: bool = False,
        nullable: bool = False,
        min_len: int | None = None,
        max_len: int | None = None,
        pattern: re.Pattern[str] | None = None,
        message: str = "Invalid",
        min_message: str | None = None,
        max_message: str | None = None,
    ) -> Any:
        value = self.raw(key, "string", required=required, nullable=nullable)
        if not isinstance(value, str):
            return value
        if pattern is not None and not pattern.match(value):
            self.add(key, "invalid_string", message, validation="regex")
        if min_len is not None and len(value) < min_len:
            text = min_message or f"String must contain at least {min_len} character(s)"
            self.add(key, "too_small", text, minimum=min_len, type="string", inclusive=True, exact=False)
        if max_len is not None and len(value) > max_len:
            text = max_message or f"String must contain at most {max_len} character(s)"
            self.add(key, "too_big", text, maximum=max_len, type="string", inclusive=True, exact=False)
        return value

    def uuid(self, key: str, *, required: bool = False, nullable: bool = False) -> Any:
        value = self.raw(key, "string", required=required, nullable=nullable)
        if isinstance(value, str) and not UUID_RE.match(value):
            self.add(key, "invalid_string", "Invalid uuid", validation="uuid")
            return _MISSING
        return value

    def integer(self, key: str, *, minimum: int | None = None, nullable: bool = False, required: bool = False) -> Any:
        value = self.raw(key, "number", required=required, nullable=nullable)
        if value is None or value is _MISSING:
            return value
        if isinstance(value, float) and not value.is_integer():
            self.add(key, "invalid_type", "Expected integer, received float", expected="integer", received="float")
            return _MISSING
        value = int(value)
        if minimum is not None and value < minimum:
            self.add(
                key,
                "too_small",
                f"Number must be greater than or equal to {minimum}",
                minimum=minimum,
                type="number",
                inclusive=True,
                exact=False,
            )
            return _MISSING
        return value

    def boolean(self, key: str) -> Any:
        return self.raw(key, "boolean")

    def enum(self, key: str, options: tuple[str, ...], *, message: str | None = None) -> Any:
        value = self.raw(key, "string")
        if isinstance(value, str) and value not in options:
            text = message or f"Invalid enum value. Expected {' | '.join(repr(o) for o in options)}, received '{value}'"
            self.add(key, "invalid_enum_value", text, options=list(options), received=value)
            return _MISSING
        return value

    def date(self, key: str, *, required: bool = False, future: bool = False, now: datetime | None = None) -> Any:
        value = self.raw(key, "string", required=required)
        if not isinstance(value, str):
            return value
        try:
            if not ISO_RE.match(value):
                raise ValueError(value)
            parsed = parse_iso(value)
        except ValueError:
            self.add(key, "invalid_string", "Invalid date format", validation="datetime")
            return _MISSING
        if future and now is not None and parsed <= now:
            self.add(key, "custom", "Expiration date cannot be in the past")
            return _MISSING
        return parsed

    def uuid_list(self, key: str) -> Any:
        value = self.raw(key, "array")
        if not isinstance(value, list):
            return value
        for index, item in enumerate(value):
            if not isinstance(item, str) or not UUID_RE.match(item):
                self.issues.append(issue([key, index], "invalid_string", "Invalid uuid", validation="uuid"))
                return _MISSING
        return value


# ---------------------------------------------------------------------------------------------------------------
# State


@dataclass
class EmuDevice:
    hwid: str
    platform: str | None = None
    os_version: str | None = None
    device_model: str | None = None
    user_agent: str | None = None
    request_ip: str | None = None
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    updated_at: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass
class EmuUser:
    id: int
    uuid: str
    short_uuid: str
    username: str
    expire_at: datetime
    created_at: datetime
    updated_at: datetime
    # Stored, as on the real panel: only its status job (every STATUS_JOB_SECONDS) turns ACTIVE users EXPIRED or
    # LIMITED; updates and actions change it by the rules in `RemnawaveEmulator._update_user`.
    status: str = "ACTIVE"
    traffic_limit_bytes: int = 0
    traffic_limit_strategy: str = "NO_RESET"
    telegram_id: int | None = None
    email: str | None = None
    description: str | None = None
    tag: str | None = None
    hwid_device_limit: int | None = None
    external_squad_uuid: str | None = None
    squads: list[str] = field(default_factory=list)
    vless_uuid: str = field(default_factory=lambda: str(uuid_lib.uuid4()))
    trojan_password: str = field(default_factory=lambda: nanoid(32))
    ss_password: str = field(default_factory=lambda: nanoid(32))
    last_triggered_threshold: int = 0
    sub_revoked_at: datetime | None = None
    last_traffic_reset_at: datetime | None = None
    used_traffic_bytes: int = 0
    lifetime_used_traffic_bytes: int = 0
    online_at: datetime | None = None
    first_connected_at: datetime | None = None
    devices: dict[str, EmuDevice] = field(default_factory=dict)
    sub_history: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=24))

    @property
    def disabled(self) -> bool:
        return self.status == "DISABLED"

    @disabled.setter
    def disabled(self, value: bool) -> None:
        """What the dashboard's disable/enable buttons do."""
        self.status = "DISABLED" if value else "ACTIVE"


@dataclass
class FaultRule:
    kind: Literal["status", "throttle", "delay", "malformed"]
    remaining: int
    status: int = 500
    seconds: float = 0.0
    path: str | None = None
    after_handling: bool = False

    def matches(self, path: str) -> bool:
        return self.remaining > 0 and (self.path is None or path.startswith(self.path))


class Faults:
    """Knobs for the next requests. `path` limits a rule to request paths starting with it.

    Rules are consumed per request in the order they were added; one delay rule and one failure rule may both
    apply to the same request. `down=True` aborts every connection (a dead host); `down_status` instead answers
    every request with that status (a reverse proxy in front of a dead panel).
    """

    def __init__(self) -> None:
        self._rules: list[FaultRule] = []
        self._lock = threading.Lock()
        self.down = False
        self.down_status: int | None = None

    def fail_next(
        self, n: int = 1, status: int = 500, *, path: str | None = None, after_handling: bool = False
    ) -> None:
        """Answer the next n requests with `status`. With after_handling the request is processed first and only
        its response is lost (a write that happened although the caller saw an error)."""
        self._add(FaultRule("status", n, status=status, path=path, after_handling=after_handling))

    def throttle_next(self, n: int = 1, retry_after: float = 1, *, path: str | None = None) -> None:
        self._add(FaultRule("throttle", n, status=429, seconds=retry_after, path=path))

    def delay_next(self, n: int = 1, seconds: float = 1.0, *, path: str | None = None) -> None:
        self._add(FaultRule("delay", n, seconds=seconds, path=path))

    def malformed_next(self, n: int = 1, *, path: str | None = None) -> None:
        """Answer 200 with a truncated JSON body."""
        self._add(FaultRule("malformed", n, path=path))

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()
        self.down = False
        self.down_status = None

    def _add(self, rule: FaultRule) -> None:
        with self._lock:
            self._rules.append(rule)

    def take(self, path: str) -> tuple[float, FaultRule | None]:
        """Consume what applies to one request: (delay seconds, failure rule or None)."""
        delay, failure = 0.0, None
        with self._lock:
            for rule in self._rules:
                if not rule.matches(path):
                    continue
                if rule.kind == "delay" and not delay:
                    rule.remaining -= 1
                    delay = rule.seconds
                elif rule.kind != "delay" and failure is None:
                    rule.remaining -= 1
                    failure = rule
            self._rules = [rule for rule in self._rules if rule.remaining > 0]
        return delay, failure


# ---------------------------------------------------------------------------------------------------------------
# The emulator


class RemnawaveEmulator:
    """The Remnawave API for one generation. Call it as an ASGI app; read and poke its attributes in tests."""

    def __init__(
        self,
        version: Version = "2",
        *,
        token: str = "rw-test-token",
        admin_token: str | None = None,
        require_proxy_headers: bool = True,
        sub_public_domain: str = "panel.example.com/api/sub",
        hwid_enabled: bool = False,
        hwid_fallback_limit: int = 5,
        short_uuid_length: int = 16,
        panel_version: str | None = None,
        clock: Callable[[], datetime] | None = None,
        scopes: list[str] | None = None,
        required_headers: dict[str, str] | None = None,
        required_cookies: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> None:
        if version not in ("2", "3"):
            raise ValueError(f"unsupported Remnawave API generation {version!r}")
        self.version: Version = version
        self.token = token
        self.admin_token = admin_token
        self.require_proxy_headers = require_proxy_headers
        self.sub_public_domain = sub_public_domain
        self.sub_scheme = "https"  # tests serving the links themselves point both at the emulator (self_served)
        self.hwid_enabled = hwid_enabled
        self.hwid_fallback_limit = hwid_fallback_limit
        self.short_uuid_length = short_uuid_length
        self.panel_version = panel_version or ("2.8.1" if version == "2" else "3.3.2")
        self.clock = clock or (lambda: datetime.now(UTC))
        # The API token's scopes (2.8+); None: every route ("*"). `required_headers`/`required_cookies`: a proxy in
        # front (Caddy's security bundle wants X-Api-Key) refusing requests without them.
        self.scopes = None if scopes is None else set(scopes)
        self.required_headers = {name.lower(): value for name, value in (required_headers or {}).items()}
        self.required_cookies = dict(required_cookies or {})
        # Sent with every public subscription: 2.8 adds `routing` (Happ) and `subscription-refill-date`; 3.x
        # admins define any response headers of their own in the subscription settings.
        self.response_headers = dict(response_headers or {})
        self._status_job_at = self.clock()

        self.users: dict[int, EmuUser] = {}  # insertion order == creation order, so newest-first is reversed()
        self.by_uuid: dict[str, int] = {}
        self.by_username: dict[str, int] = {}
        self.by_short_uuid: dict[str, int] = {}
        self.squads: dict[str, dict[str, Any]] = {}
        self.nodes: list[dict[str, Any]] = []
        self._ids = itertools.count(1)
        self._history_ids = itertools.count(1)

        self.faults = Faults()
        self.requests: Counter[str] = Counter()  # every arrival, keyed "METHOD /route/template"
        self.served: Counter[str] = Counter()  # arrivals the API answered with 2xx
        self.proxy_rejections = 0

        self.default_squad_uuid = self.add_squad("Default-Squad")
        self.add_node("Node-1", "node1.example.com")
        self.api = self._build_api()

    # ----- test helpers -----------------------------------------------------------------------------------------

    @property
    def key_name(self) -> str:
        """The user key of this generation: `uuid` (2.x) or `id` (3.x)."""
        return "uuid" if self.version == "2" else "id"

    def self_served(self, base_url: str) -> None:
        """Subscription URLs on the emulator's own address (`/api/sub/…`), so a client can fetch them."""
        self.sub_scheme, _, host = base_url.partition("://")
        self.sub_public_domain = f"{host}/api/sub"

    def count(self, method: str, template: str) -> int:
        """Requests that arrived for a route template, e.g. count("POST", "/api/users")."""
        return self.requests[f"{method.upper()} {template}"]

    def user(self, username: str) -> EmuUser:
        return self.users[self.by_username[username]]

    def add_squad(self, name: str, *, port: int = 443) -> str:
        squad_uuid = str(uuid_lib.uuid4())
        now = self.clock()
        self.squads[squad_uuid] = {
            "uuid": squad_uuid,
            "viewPosition": len(self.squads) + 1,
            "name": name,
            "inbounds": [
                {
                    "uuid": str(uuid_lib.uuid4()),
                    "profileUuid": str(uuid_lib.uuid4()),
                    "tag": f"VLESS_{name.upper().replace('-', '_')}",
                    "type": "vless",
                    "network": "tcp",
                    "security": "reality",
                    "port": port,
                    "rawInbound": None,
                }
            ],
            "createdAt": js_iso(now),
            "updatedAt": js_iso(now),
        }
        return squad_uuid

    def add_node(self, name: str, address: str, *, port: int = 2222, connected: bool = True) -> dict[str, Any]:
        node = {
            "uuid": str(uuid_lib.uuid4()),
            "name": name,
            "address": address,
            "port": port,
            "isConnected": connected,
            "isDisabled": False,
            "isConnecting": False,
            "lastStatusChange": js_iso(self.clock()),
            "lastStatusMessage": None if connected else "connection refused",
            "isTrafficTrackingActive": False,
            "trafficResetDay": None,
            "trafficLimitBytes": None,
            "trafficUsedBytes": 0,
            "notifyPercent": None,
            "viewPosition": len(self.nodes) + 1,
            "countryCode": "XX",
            "consumptionMultiplier": 1,
            "tags": [],
            "createdAt": js_iso(self.clock()),
            "updatedAt": js_iso(self.clock()),
            "configProfile": {"activeConfigProfileUuid": None, "activeInbounds": []},
            "providerUuid": None,
            "provider": None,
            "activePluginUuid": None,
            "system": None,
            "versions": None,
            "xrayUptime": 0,
            "usersOnline": 0,
        }
        if self.version == "3":
            node.update(
                id=len(self.nodes) + 1,
                proxyUrl=None,
                nodeConsumptionMultiplier=1,
                integrationUuids=[],
                ips=[],
                note=None,
            )
        self.nodes.append(node)
        return node

    def seed_users(self, count: int, *, prefix: str = "seed_", days: int = 30) -> None:
        """Insert users directly (no HTTP), fast enough for 50,000."""
        now = self.clock()
        for index in range(count):
            self._insert_user(
                f"{prefix}{index}", expire_at=now + timedelta(days=days), squads=[self.default_squad_uuid]
            )

    def add_traffic(self, username: str, used_bytes: int, *, online: bool = True) -> None:
        user = self.user(username)
        user.used_traffic_bytes += used_bytes
        user.lifetime_used_traffic_bytes += used_bytes
        if online:
            user.online_at = self.clock()
            user.first_connected_at = user.first_connected_at or user.online_at

    # ----- users ------------------------------------------------------------------------------------------------

    def status_of(self, user: EmuUser) -> str:
        return user.status

    def review(self) -> list[str]:
        """The backend's status job: ACTIVE (or LIMITED) users past their expiry become EXPIRED, ACTIVE users at
        their traffic limit LIMITED. Nothing else changes a status by itself."""
        now = self.clock()
        self._status_job_at = now
        changed = []
        for user in self.users.values():
            before = user.status
            if user.status in ("ACTIVE", "LIMITED") and user.expire_at <= now:
                user.status = "EXPIRED"
            elif (
                user.status == "ACTIVE"
                and user.traffic_limit_bytes
                and (user.used_traffic_bytes >= user.traffic_limit_bytes)
            ):
                user.status = "LIMITED"
            if user.status != before:
                changed.append(user.username)
        return changed

    def _new_short_uuid(self) -> str:
        while (short := nanoid(self.short_uuid_length)) in self.by_short_uuid:
            pass
        return short

    def _insert_user(self, username: str, *, expire_at: datetime, **fields: Any) -> EmuUser:
        now = self.clock()
        user_uuid = fields.pop("uuid", None) or str(uuid_lib.uuid4())
        short_uuid = fields.pop("short_uuid", None) or self._new_short_uuid()
        created_at = fields.pop("created_at", None) or now
        user = EmuUser(
            id=next(self._ids),
            uuid=user_uuid,
            short_uuid=short_uuid,
            username=username,
            expire_at=expire_at,
            created_at=created_at,
            updated_at=now,
            **fields,
        )
        self.users[user.id] = user
        self.by_uuid[user.uuid] = user.id
        self.by_username[username] = user.id
        self.by_short_uuid[short_uuid] = user.id
        return user

    def _remove_user(self, user: EmuUser) -> None:
        del self.users[user.id]
        del self.by_uuid[user.uuid]
        del self.by_username[user.username]
        del self.by_short_uuid[user.short_uuid]

    def render_user(self, user: EmuUser) -> dict[str, Any]:
        data: dict[str, Any] = {"uuid": user.uuid} if self.version == "2" else {}
        data.update(
            id=user.id,
            shortUuid=user.short_uuid,
            username=user.username,
            status=self.status_of(user),
            trafficLimitBytes=user.traffic_limit_bytes,
            trafficLimitStrategy=user.traffic_limit_strategy,
            expireAt=js_iso(user.expire_at),
            telegramId=user.telegram_id,
            email=user.email,
            description=user.description,
            tag=user.tag,
            hwidDeviceLimit=user.hwid_device_limit,
            externalSquadUuid=user.external_squad_uuid,
            trojanPassword=user.trojan_password,
            vlessUuid=user.vless_uuid,
            ssPassword=user.ss_password,
            lastTriggeredThreshold=user.last_triggered_threshold,
            subRevokedAt=js_iso(user.sub_revoked_at),
            lastTrafficResetAt=js_iso(user.last_traffic_reset_at),
            createdAt=js_iso(user.created_at),
            updatedAt=js_iso(user.updated_at),
            subscriptionUrl=f"{self.sub_scheme}://{self.sub_public_domain}/{user.short_uuid}",
            activeInternalSquads=[
                {"uuid": squad, "name": self.squads[squad]["name"]} for squad in user.squads if squad in self.squads
            ],
            userTraffic={
                "usedTrafficBytes": user.used_traffic_bytes,
                "lifetimeUsedTrafficBytes": user.lifetime_used_traffic_bytes,
                "onlineAt": js_iso(user.online_at),
                "firstConnectedAt": js_iso(user.first_connected_at),
                "lastConnectedNodeUuid": None,
            },
        )
        return data

    def _user_ref_field(self, user: EmuUser) -> dict[str, Any]:
        """`userUuid` (2.x) or `userId` (3.x), as HWID devices and history records carry."""
        return {"userUuid": user.uuid} if self.version == "2" else {"userId": user.id}

    def _key_param_issue(self) -> dict[str, Any]:
        if self.version == "2":
            return issue(["uuid"], "invalid_string", "Invalid uuid", validation="uuid")
        return issue(["id"], "invalid_type", "Expected bigint, received string", expected="bigint", received="string")

    def _find_by_key(self, raw: str) -> EmuUser | None:
        """Look a path key up; a key of the wrong shape is a zod validation error, as on the real panel."""
        if self.version == "2":
            if not UUID_RE.match(raw):
                raise ValidationFailed([self._key_param_issue()])
            user_id = self.by_uuid.get(raw.lower())
        else:
            if not raw.isdigit():
                raise ValidationFailed([self._key_param_issue()])
            user_id = int(raw)
        return self.users.get(user_id) if user_id is not None else None

    def _require_by_key(self, raw: str, missing: Callable[[], ApiError] = user_not_found) -> EmuUser:
        user = self._find_by_key(raw)
        if user is None:
            raise missing()
        return user

    def _user_from_body_key(self, reader: BodyReader) -> EmuUser | None:
        """The user a body names with `userUuid` (2.x) or `userId` (3.x)."""
        if self.version == "2":
            key = reader.uuid("userUuid", required=True)
            reader.check()
            user_id = self.by_uuid.get(key.lower())
        else:
            user_id = reader.integer("userId", required=True, minimum=1)
            reader.check()
        return self.users.get(user_id) if user_id is not None else None

    def _check_squads(self, squads: list[str], error: ApiError) -> list[str]:
        if any(squad not in self.squads for squad in squads):
            raise error
        return list(dict.fromkeys(squads))

    # ----- the ASGI entry: counters, faults, proxy check --------------------------------------------------------

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] != "http":
            await self.api(scope, receive, send)
            return
        key = f"{scope['method']} {self._route_template(scope)}"
        self.requests[key] += 1
        if (self.clock() - self._status_job_at).total_seconds() >= STATUS_JOB_SECONDS:
            self.review()  # the job runs every 30 s whether anyone asks or not; applying it here is equivalent
        delay, failure = self.faults.take(scope["path"])
        if delay:
            await asyncio.sleep(delay)
        if await self._fault_before_panel(scope, send, failure):
            return
        if self.require_proxy_headers and not self._has_proxy_headers(scope):
            self.proxy_rejections += 1
            await self._destroy_socket(send)
            return
        if not self._passes_front_proxy(scope):
            self.proxy_rejections += 1
            await _send_raw(send, 401, b"Unauthorized", "text/plain; charset=utf-8")
            return
        if failure is not None:  # after_handling: let the API change state, then lose its answer
            await self.api(scope, receive, self._swallow)
            await self._send_failure(scope, send, failure)
            return
        await self.api(scope, receive, self._counting_send(send, key))

    async def _fault_before_panel(
        self, scope: dict[str, Any], send: Callable[..., Any], failure: FaultRule | None
    ) -> bool:
        """Answer for failures in front of the panel (dead host, proxy errors, throttling); True if answered."""
        if self.faults.down_status is not None:
            await self._send_fault_status(scope, send, self.faults.down_status)
        elif self.faults.down:
            await self._destroy_socket(send)
        elif failure is not None and not failure.after_handling:
            await self._send_failure(scope, send, failure)
        else:
            return False
        return True

    def _route_template(self, scope: dict[str, Any]) -> str:
        for route in self.api.router.routes:
            match, _ = route.matches(scope)
            if match == Match.FULL:
                return getattr(route, "path", scope["path"])
        return scope["path"]

    def _passes_front_proxy(self, scope: dict[str, Any]) -> bool:
        """Caddy's security bundle or a cookie gate in front of the panel: both guard every route."""
        headers = {name.decode().lower(): value.decode() for name, value in scope["headers"]}
        if any(headers.get(name) != value for name, value in self.required_headers.items()):
            return False
        cookies = dict(
            part.strip().split("=", 1) for part in headers.get("cookie", "").split(";") if "=" in part.strip()
        )
        return all(cookies.get(name) == value for name, value in self.required_cookies.items())

    @staticmethod
    def _has_proxy_headers(scope: dict[str, Any]) -> bool:
        headers = dict(scope["headers"])
        return bool(headers.get(b"x-forwarded-for")) and headers.get(b"x-forwarded-proto") == b"https"

    @staticmethod
    async def _destroy_socket(send: Callable[..., Any]) -> None:
        """Close the TCP connection with zero bytes written, like Express's `res.socket.destroy()`."""
        cycle = getattr(send, "__self__", None)
        transport = getattr(cycle, "transport", None)
        if transport is None:
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
        transport.abort()
        # Let uvicorn see connection_lost, so it does not try to write its own 500 afterwards.
        for _ in range(20):
            if getattr(cycle, "disconnected", True):
                break
            await asyncio.sleep(0)

    @staticmethod
    async def _swallow(message: dict[str, Any]) -> None:
        return None

    def _counting_send(self, send: Callable[..., Any], key: str) -> Callable[..., Any]:
        async def counting_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start" and 200 <= message["status"] < 300:
                self.served[key] += 1
            await send(message)

        return counting_send

    async def _send_failure(self, scope: dict[str, Any], send: Callable[..., Any], rule: FaultRule) -> None:
        if rule.kind == "malformed":
            await _send_raw(send, 200, MALFORMED_BODY, "application/json; charset=utf-8")
        elif rule.kind == "throttle":
            body = json.dumps({"message": "ThrottlerException: Too Many Requests", "statusCode": 429}).encode()
            extra = [(b"retry-after", str(int(rule.seconds)).encode())]
            await _send_raw(send, 429, body, "application/json; charset=utf-8", extra)
        else:
            await self._send_fault_status(scope, send, rule.status)

    async def _send_fault_status(self, scope: dict[str, Any], send: Callable[..., Any], status: int) -> None:
        if status == 500:  # the panel itself failing: its business-error shape
            body = _business_body(scope["path"], "Server error", "A001", self.clock())
            await _send_raw(send, 500, json.dumps(body).encode(), "application/json; charset=utf-8")
            return
        # anything else comes from the reverse proxy in front of the panel (nginx/Caddy), as plain text
        reason = {502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}.get(status, "Error")
        await _send_raw(send, status, f"{status} {reason}".encode(), "text/plain; charset=utf-8")

    # ----- the FastAPI app --------------------------------------------------------------------------------------

    def _build_api(self) -> FastAPI:
        api = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
        self._install_error_handlers(api)
        guarded = {"dependencies": [Depends(self._authenticate)]}
        key = "{" + self.key_name + "}"
        routes: list[tuple[str, str, Callable[..., Any], bool]] = [
            ("GET", "/api/system/metadata", self._metadata, True),
            ("GET", "/api/system/stats", self._system_stats, True),
            ("GET", "/api/nodes", self._list_nodes, True),
            ("GET", "/api/internal-squads", self._list_squads, True),
            ("POST", "/api/users", self._create_user, True),
            ("PATCH", "/api/users", self._update_user, True),
            ("GET", "/api/users", self._list_users, True),
            ("GET", "/api/users/by-username/{username}", self._get_by_username, True),
            ("GET", "/api/users/by-short-uuid/{short_uuid}", self._get_by_short_uuid, True),
            ("GET", f"/api/users/{key}", self._get_user, True),
            ("DELETE", f"/api/users/{key}", self._delete_user, True),
            ("POST", f"/api/users/{key}/actions/enable", self._enable_user, True),
            ("POST", f"/api/users/{key}/actions/disable", self._disable_user, True),
            ("POST", f"/api/users/{key}/actions/reset-traffic", self._reset_traffic, True),
            ("POST", f"/api/users/{key}/actions/revoke", self._revoke, True),
            ("GET", f"/api/users/{key}/subscription-request-history", self._sub_history, True),
            ("GET", "/api/hwid/devices", self._list_all_devices, True),
            ("POST", "/api/hwid/devices", self._add_device, True),
            ("POST", "/api/hwid/devices/delete", self._delete_device, True),
            ("POST", "/api/hwid/devices/delete-all", self._delete_all_devices, True),
            ("GET", "/api/hwid/devices/{user_key}", self._list_user_devices, True),
            ("GET", "/api/sub/{short_uuid}/info", self._public_sub_info, False),
            ("GET", "/api/sub/{short_uuid}", self._public_sub, False),
        ]
        if self.version == "2":
            routes.insert(9, ("GET", "/api/users/by-id/{id}", self._get_by_numeric_id, True))
        else:
            routes.append(("POST", f"/api/users/{key}/actions/extend", self._extend, True))
        for method, path, endpoint, needs_auth in routes:
            api.add_api_route(path, endpoint, methods=[method], **(guarded if needs_auth else {}))
        return api

    def _install_error_handlers(self, api: FastAPI) -> None:
        @api.exception_handler(ApiError)
        async def business(request: Request, exc: ApiError) -> JSONResponse:
            message = "Forbidden" if exc.status == 403 else exc.message  # §2.8: every 403 says "Forbidden"
            return JSONResponse(_business_body(request.url.path, message, exc.code, self.clock()), exc.status)

        @api.exception_handler(ValidationFailed)
        async def validation(request: Request, exc: ValidationFailed) -> JSONResponse:
            body = {"statusCode": 400, "message": "Validation failed", "errors": exc.issues}
            return JSONResponse(body, 400)

        @api.exception_handler(Unauthorized)
        async def unauthorized(request: Request, exc: Unauthorized) -> JSONResponse:
            return JSONResponse({"message": "Unauthorized", "statusCode": 401}, 401)

        @api.exception_handler(NestHttpError)
        async def nest_default(request: Request, exc: NestHttpError) -> JSONResponse:
            body: dict[str, Any] = {"message": exc.message}
            if exc.error:
                body["error"] = exc.error
            body["statusCode"] = exc.status
            return JSONResponse(body, exc.status)

        @api.exception_handler(StarletteHTTPException)
        async def route_miss(request: Request, exc: StarletteHTTPException) -> JSONResponse:
            # Express has no 405: an unknown path or method is Nest's "Cannot GET /x" 404.
            body = {"message": f"Cannot {request.method} {request.url.path}", "error": "Not Found", "statusCode": 404}
            return JSONResponse(body, 404)

    async def _authenticate(self, request: Request) -> None:
        scheme, _, presented = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not presented:
            raise Unauthorized()
        if secrets.compare_digest(presented, self.token):
            self._require_scope(request)
            return
        if self.admin_token and secrets.compare_digest(presented, self.admin_token):
            if request.headers.get("x-remnawave-client-type") == "browser":
                return
            raise ApiError(403, "A068", "For API requests you must create own API-token in the admin dashboard.")
        raise Unauthorized()

    def _require_scope(self, request: Request) -> None:
        if self.scopes is None or "*" in self.scopes:
            return
        template = self._route_template(request.scope).replace("{" + self.key_name + "}", "{key}")
        needed = ROUTE_SCOPES.get(f"{request.method} {template}")
        if needed is None or needed in self.scopes or f"{needed.split(':')[0]}:*" in self.scopes:
            return
        raise NestHttpError(403, "Forbidden resource", "Forbidden")  # the scope guard's Nest default

    @staticmethod
    async def _json_body(request: Request) -> Any:
        raw = await request.body()
        if not raw:
            return _MISSING
        try:
            return json.loads(raw)
        except ValueError:
            raise NestHttpError(400, "Unexpected token in JSON at position 0", "Bad Request") from None

    def _ok(self, payload: Any, status: int = 200) -> JSONResponse:
        return JSONResponse({"response": payload}, status)

    # ----- system, nodes, squads --------------------------------------------------------------------------------

    async def _metadata(self, request: Request) -> JSONResponse:
        return self._ok(
            {
                "version": self.panel_version,
                "build": {"time": "2026-08-20T00:00:00.000Z", "number": "1"},
                "git": {
                    "backend": {"commitSha": "0" * 40, "branch": "main", "commitUrl": ""},
                    "frontend": {"commitSha": "0" * 40, "commitUrl": ""},
                },
            }
        )

    async def _system_stats(self, request: Request) -> JSONResponse:
        counts = Counter(self.status_of(user) for user in self.users.values())
        now = self.clock()
        online = sum(1 for u in self.users.values() if u.online_at and now - u.online_at < timedelta(minutes=1))
        never = sum(1 for u in self.users.values() if u.online_at is None)
        return self._ok(
            {
                "cpu": {"cores": 4},
                "memory": {"total": 8 << 30, "free": 4 << 30, "used": 4 << 30},
                "uptime": 3600,
                "timestamp": int(now.timestamp() * 1000),
                "users": {
                    "statusCounts": {status: counts.get(status, 0) for status in USER_STATUSES},
                    "totalUsers": len(self.users),
                },
                "onlineStats": {"lastDay": online, "lastWeek": online, "neverOnline": never, "onlineNow": online},
                "nodes": {"totalOnline": sum(1 for n in self.nodes if n["isConnected"]), "totalBytesLifetime": "0"},
            }
        )

    async def _list_nodes(self, request: Request) -> JSONResponse:
        return self._ok(self.nodes)

    async def _list_squads(self, request: Request) -> JSONResponse:
        members = Counter(squad for user in self.users.values() for squad in user.squads)
        squads = [
            {**squad, "info": {"membersCount": members[uid], "inboundsCount": len(squad["inbounds"])}}
            for uid, squad in self.squads.items()
        ]
        return self._ok({"total": len(squads), "internalSquads": squads})

    # ----- users ------------------------------------------------------------------------------------------------

    async def _create_user(self, request: Request) -> JSONResponse:
        reader = BodyReader(await self._json_body(request))
        username = reader.string(
            "username",
            required=True,
            min_len=3,
            max_len=36,
            pattern=USERNAME_RE,
            message="Username can only contain letters, numbers, underscores and dashes",
            min_message="Username must be at least 3 characters",
            max_message="Username must be less than 36 characters",
        )
        status = reader.enum("status", USER_STATUSES)
        short_uuid = reader.string("shortUuid")
        trojan = reader.string(
            "trojanPassword",
            min_len=8,
            max_len=32,
            min_message="Trojan password must be at least 8 characters",
            max_message="Trojan password must be less than 32 characters",
        )
        ss = reader.string(
            "ssPassword",
            min_len=8,
            max_len=32,
            min_message="SS password must be at least 8 characters",
            max_message="SS password must be less than 32 characters",
        )
        vless = reader.uuid("vlessUuid")
        limit = reader.integer("trafficLimitBytes", minimum=0)
        strategy = reader.enum("trafficLimitStrategy", TRAFFIC_STRATEGIES, message="Invalid traffic limit strategy")
        expire_at = reader.date("expireAt", required=True)
        created_at = reader.date("createdAt")
        reset_at = reader.date("lastTrafficResetAt")
        description = reader.string("description")
        tag = reader.string("tag", nullable=True, max_len=16, pattern=TAG_RE, message="Invalid tag")
        telegram_id = reader.integer("telegramId", nullable=True)
        email = reader.string("email", nullable=True, pattern=EMAIL_RE, message="Invalid email format")
        device_limit = reader.integer("hwidDeviceLimit", minimum=0)
        squads = reader.uuid_list("activeInternalSquads")
        user_uuid = reader.uuid("uuid") if self.version == "2" else _MISSING  # 3.x: unknown key, stripped
        external = reader.uuid("externalSquadUuid", nullable=True)
        reader.check()

        if username in self.by_username:
            raise ApiError(400, "A019", "User username already exists")
        if short_uuid is not _MISSING and short_uuid in self.by_short_uuid:
            raise ApiError(400, "A020", "User short UUID already exists")
        if user_uuid is not _MISSING and user_uuid.lower() in self.by_uuid:
            raise ApiError(400, "A021", "User subscription UUID already exists")
        if squads is not _MISSING:
            squads = self._check_squads(squads, ApiError(500, "A018", "Failed to create user"))
        fields = _present(
            {
                "status": status,
                "short_uuid": short_uuid,
                "trojan_password": trojan,
                "ss_password": ss,
                "vless_uuid": vless,
                "traffic_limit_bytes": limit,
                "traffic_limit_strategy": strategy,
                "created_at": created_at,
                "last_traffic_reset_at": reset_at,
                "description": description,
                "tag": tag,
                "telegram_id": telegram_id,
                "email": email,
                "hwid_device_limit": device_limit,
                "external_squad_uuid": external,
                "uuid": user_uuid.lower() if isinstance(user_uuid, str) else _MISSING,
                "squads": squads,
            }
        )
        user = self._insert_user(username, expire_at=expire_at, **fields)
        return self._ok(self.render_user(user), 201)

    async def _update_user(self, request: Request) -> JSONResponse:
        reader = BodyReader(await self._json_body(request))
        username = reader.string("username")
        key = reader.uuid("uuid") if self.version == "2" else reader.integer("id", minimum=1)
        status = reader.enum(
            "status",
            ("ACTIVE", "DISABLED"),
            message="You can't change status to LIMITED or EXPIRED. These statuses handled by Remnawave.",
        )
        limit = reader.integer("trafficLimitBytes", minimum=0)
        strategy = reader.enum("trafficLimitStrategy", TRAFFIC_STRATEGIES, message="Invalid traffic limit strategy")
        expire_at = reader.date("expireAt", future=True, now=self.clock())
        description = reader.string("description", nullable=True)
        tag = reader.string("tag", nullable=True, max_len=16, pattern=TAG_RE, message="Invalid tag")
        telegram_id = reader.integer("telegramId", nullable=True)
        email = reader.string("email", nullable=True, pattern=EMAIL_RE, message="Invalid email format")
        device_limit = reader.integer("hwidDeviceLimit", minimum=0, nullable=True)
        squads = reader.uuid_list("activeInternalSquads")
        external = reader.uuid("externalSquadUuid", nullable=True)
        if key in (_MISSING, None) and username in (_MISSING, None):
            reader.issues.append(issue([], "custom", f"Either {self.key_name} or username must be provided"))
        reader.check()

        # The key has priority over the username (users.service.updateUser).
        if key not in (_MISSING, None):
            user_id = self.by_uuid.get(key.lower()) if self.version == "2" else key
        else:
            user_id = self.by_username.get(username)
        user = self.users.get(user_id) if user_id is not None else None
        if user is None:
            raise user_not_found()
        if squads is not _MISSING:
            user.squads = self._check_squads(squads, ApiError(500, "A039", "Update user error"))
        if limit is not _MISSING:
            user.traffic_limit_bytes = limit
            user.last_triggered_threshold = 0
            if user.status == "LIMITED" and (limit == 0 or limit > user.used_traffic_bytes):
                user.status = "ACTIVE"
        if expire_at is not _MISSING and user.status == "EXPIRED" and expire_at > self.clock():
            user.status = "ACTIVE"
        for attr, value in (
            ("traffic_limit_strategy", strategy),
            ("expire_at", expire_at),
            ("description", description),
            ("tag", tag),
            ("telegram_id", telegram_id),
            ("email", email),
            ("hwid_device_limit", device_limit),
            ("external_squad_uuid", external),
        ):
            if value is not _MISSING:
                setattr(user, attr, value)
        # users.service updateUser: DISABLED applies to an ACTIVE user only; ACTIVE lifts a DISABLED one.
        if status == "DISABLED" and user.status == "ACTIVE":
            user.status = "DISABLED"
        elif status == "ACTIVE" and user.status == "DISABLED":
            user.status = "ACTIVE"
        user.updated_at = self.clock()
        return self._ok(self.render_user(user))

    async def _list_users(self, request: Request) -> JSONResponse:
        start, size = _paging(request, default_size=25, max_size=1000)
        page = itertools.islice(reversed(self.users.values()), start, start + size)  # newest first
        return self._ok({"users": [self.render_user(user) for user in page], "total": len(self.users)})

    async def _get_by_username(self, request: Request) -> JSONResponse:
        user_id = self.by_username.get(request.path_params["username"])
        if user_id is None:
            raise user_lookup_failed()
        return self._ok(self.render_user(self.users[user_id]))

    async def _get_by_short_uuid(self, request: Request) -> JSONResponse:
        user_id = self.by_short_uuid.get(request.path_params["short_uuid"])
        if user_id is None:
            raise user_lookup_failed()
        return self._ok(self.render_user(self.users[user_id]))

    async def _get_by_numeric_id(self, request: Request) -> JSONResponse:
        raw = request.path_params["id"]
        user = self.users.get(int(raw)) if raw.isdigit() else None
        if user is None:
            raise user_lookup_failed()
        return self._ok(self.render_user(user))

    async def _get_user(self, request: Request) -> JSONResponse:
        user = self._require_by_key(request.path_params[self.key_name], user_lookup_failed)
        return self._ok(self.render_user(user))

    async def _delete_user(self, request: Request) -> Response:
        user = self._require_by_key(request.path_params[self.key_name])
        self._remove_user(user)
        if self.version == "3":
            return Response(status_code=204)
        return self._ok({"isDeleted": True})

    async def _enable_user(self, request: Request) -> JSONResponse:
        user = self._require_by_key(request.path_params[self.key_name])
        if not user.disabled:
            raise ApiError(400, "A030", "User already enabled")
        user.disabled = False
        user.updated_at = self.clock()
        return self._ok(self.render_user(user))

    async def _disable_user(self, request: Request) -> JSONResponse:
        user = self._require_by_key(request.path_params[self.key_name])
        if user.disabled:
            raise ApiError(400, "A029", "User already disabled")
        user.disabled = True
        user.updated_at = self.clock()
        return self._ok(self.render_user(user))

    async def _reset_traffic(self, request: Request) -> JSONResponse:
        user = self._require_by_key(request.path_params[self.key_name])
        user.used_traffic_bytes = 0
        user.last_triggered_threshold = 0
        user.last_traffic_reset_at = user.updated_at = self.clock()
        if user.status == "LIMITED":
            user.status = "ACTIVE"
        return self._ok(self.render_user(user))

    async def _revoke(self, request: Request) -> JSONResponse:
        user = self._require_by_key(request.path_params[self.key_name])
        body = await self._json_body(request)
        reader = BodyReader(body if body not in (_MISSING, None) else {})  # z.preprocess(val => val || {})
        only_passwords = reader.boolean("revokeOnlyPasswords")
        low, high = (6, 48) if self.version == "2" else (16, 64)
        wanted = reader.string(
            "shortUuid",
            min_len=low,
            max_len=high,
            min_message=f"Short UUID must be at least {low} characters",
            max_message=f"Short UUID must be at most {high} characters",
        )
        reader.check()
        if only_passwords is not True:
            if wanted is not _MISSING and wanted in self.by_short_uuid:
                raise ApiError(400, "A020", "User short UUID already exists")
            del self.by_short_uuid[user.short_uuid]
            user.short_uuid = wanted if wanted is not _MISSING else self._new_short_uuid()
            self.by_short_uuid[user.short_uuid] = user.id
            user.vless_uuid = str(uuid_lib.uuid4())
        user.trojan_password, user.ss_password = nanoid(32), nanoid(32)
        user.sub_revoked_at = user.updated_at = self.clock()
        return self._ok(self.render_user(user))

    async def _extend(self, request: Request) -> JSONResponse:
        user = self._require_by_key(request.path_params[self.key_name])
        reader = BodyReader(await self._json_body(request))
        days = reader.integer("days", required=True, minimum=1)
        reader.check()
        user.expire_at = max(user.expire_at, self.clock()) + timedelta(days=days)
        user.updated_at = self.clock()
        if user.status == "EXPIRED":
            user.status = "ACTIVE"
        return self._ok(self.render_user(user))

    async def _sub_history(self, request: Request) -> JSONResponse:
        user = self._require_by_key(request.path_params[self.key_name])
        records = list(reversed(user.sub_history))  # newest first
        return self._ok({"total": len(records), "records": records})

    # ----- HWID devices -----------------------------------------------------------------------------------------

    def render_device(self, user: EmuUser, device: EmuDevice) -> dict[str, Any]:
        data: dict[str, Any] = {
            "hwid": device.hwid,
            **self._user_ref_field(user),
            "platform": device.platform,
            "osVersion": device.os_version,
            "deviceModel": device.device_model,
            "userAgent": device.user_agent,
            "createdAt": js_iso(device.created_at),
            "updatedAt": js_iso(device.updated_at),
        }
        if self.version == "3":
            data["requestIp"] = device.request_ip
        return data

    def _devices_of(self, user: EmuUser) -> JSONResponse:
        devices = [self.render_device(user, device) for device in user.devices.values()]
        return self._ok({"total": len(devices), "devices": devices})

    async def _list_user_devices(self, request: Request) -> JSONResponse:
        user = self._find_by_key(request.path_params["user_key"])
        if user is None:
            raise user_not_found()
        return self._devices_of(user)

    async def _list_all_devices(self, request: Request) -> JSONResponse:
        start, size = _paging(request, default_size=25, max_size=1000)
        pairs = ((user, device) for user in self.users.values() for device in user.devices.values())
        everything = [self.render_device(user, device) for user, device in pairs]
        return self._ok({"devices": everything[start : start + size], "total": len(everything)})

    async def _add_device(self, request: Request) -> JSONResponse:
        reader = BodyReader(await self._json_body(request))
        if self.version == "3":
            hwid = reader.string("hwid", required=True, pattern=HWID_V3_RE, message="Invalid HWID")
        else:
            hwid = reader.string("hwid", required=True, min_len=1, min_message="HWID is required")
        extra = {
            "platform": reader.string("platform"),
            "os_version": reader.string("osVersion"),
            "device_model": reader.string("deviceModel"),
            "user_agent": reader.string("userAgent"),
            "request_ip": reader.string("requestIp"),
        }
        user = self._user_from_body_key(reader)
        if user is None:
            raise user_not_found()
        if hwid in user.devices:
            raise ApiError(400, "A098", "User hwid device already exists")
        now = self.clock()
        user.devices[hwid] = EmuDevice(hwid, created_at=now, updated_at=now, **_present(extra))
        return self._devices_of(user)

    async def _delete_device(self, request: Request) -> JSONResponse:
        reader = BodyReader(await self._json_body(request))
        hwid = reader.string("hwid", required=True)
        user = self._user_from_body_key(reader)
        if user is None:
            raise user_not_found()
        user.devices.pop(hwid, None)
        return self._devices_of(user)

    async def _delete_all_devices(self, request: Request) -> JSONResponse:
        user = self._user_from_body_key(BodyReader(await self._json_body(request)))
        if user is None:
            raise user_not_found()
        user.devices.clear()
        return self._devices_of(user)

    # ----- public subscription ----------------------------------------------------------------------------------

    def links_of(self, user: EmuUser) -> list[str]:
        """One VLESS link per (enabled node, vless inbound of the user's squads); none unless ACTIVE."""
        if self.status_of(user) != "ACTIVE":
            return []
        links = []
        for squad_uuid in user.squads:
            for inbound in self.squads.get(squad_uuid, {}).get("inbounds", []):
                for node in self.nodes:
                    if inbound["type"] != "vless" or node["isDisabled"]:
                        continue
                    links.append(
                        f"vless://{user.vless_uuid}@{node['address']}:{inbound['port']}"
                        f"?type={inbound['network']}&security={inbound['security']}#{node['name']}"
                    )
        return links

    def _sub_user(self, request: Request) -> EmuUser:
        user_id = self.by_short_uuid.get(request.path_params["short_uuid"])
        if user_id is None:
            raise NestHttpError(404, "Not Found")
        return self.users[user_id]

    def _effective_device_limit(self, user: EmuUser) -> int:
        return self.hwid_fallback_limit if user.hwid_device_limit is None else user.hwid_device_limit

    def _register_device(self, request: Request, user: EmuUser) -> dict[str, str] | None:
        """Apply the HWID rules of §2.5; returns extra headers, or None when the request must get 404."""
        limit = self._effective_device_limit(user)
        if not self.hwid_enabled or limit == 0:  # feature off, or 0 = unlimited/bypass
            return {}
        hwid = request.headers.get("x-hwid")
        if not hwid:
            return None
        headers = {"x-hwid-active": "true"}
        now = self.clock()
        if hwid in user.devices:
            user.devices[hwid].updated_at = now
        elif len(user.devices) >= limit:
            headers.update({"x-hwid-max-devices-reached": "true", "x-hwid-limit": "true"})
        else:
            user.devices[hwid] = EmuDevice(
                hwid,
                platform=request.headers.get("x-device-os"),
                os_version=request.headers.get("x-ver-os"),
                device_model=request.headers.get("x-device-model"),
                user_agent=request.headers.get("user-agent"),
                request_ip=_client_ip(request),
                created_at=now,
                updated_at=now,
            )
        return headers

    async def _public_sub(self, request: Request) -> Response:
        user = self._sub_user(request)
        hwid_headers = self._register_device(request, user)
        if hwid_headers is None:
            raise NestHttpError(404, "Not Found")
        user.sub_history.append(
            {
                "id": next(self._history_ids),
                **self._user_ref_field(user),
                "requestAt": js_iso(self.clock()),
                "requestIp": _client_ip(request),
                "userAgent": request.headers.get("user-agent"),
            }
        )
        links = [] if "x-hwid-max-devices-reached" in hwid_headers else self.links_of(user)
        expire = 0 if user.expire_at.year >= 2099 else int(user.expire_at.timestamp())
        headers = {
            "subscription-userinfo": f"upload=0; download={user.used_traffic_bytes}; "
            f"total={user.traffic_limit_bytes}; expire={expire}",
            "profile-title": "base64:" + base64.b64encode(user.username.encode()).decode(),
            "profile-update-interval": "12",
            "content-disposition": f"attachment; filename={user.username}",
            **self.response_headers,
            **hwid_headers,
        }
        body = base64.b64encode("\n".join(links).encode())
        return Response(body, 200, headers=headers, media_type="text/plain")

    async def _public_sub_info(self, request: Request) -> JSONResponse:
        user = self._sub_user(request)
        status = self.status_of(user)
        left = max(0, (user.expire_at - self.clock()).days)
        return self._ok(
            {
                "isFound": True,
                "user": {
                    "shortUuid": user.short_uuid,
                    "daysLeft": left,
                    "trafficUsed": f"{user.used_traffic_bytes} B",
                    "trafficLimit": f"{user.traffic_limit_bytes} B",
                    "lifetimeTrafficUsed": f"{user.lifetime_used_traffic_bytes} B",
                    "trafficUsedBytes": str(user.used_traffic_bytes),
                    "trafficLimitBytes": str(user.traffic_limit_bytes),
                    "lifetimeTrafficUsedBytes": str(user.lifetime_used_traffic_bytes),
                    "username": user.username,
                    "expiresAt": js_iso(user.expire_at),
                    "isActive": status == "ACTIVE",
                    "userStatus": status,
                    "trafficLimitStrategy": user.traffic_limit_strategy,
                },
                "links": self.links_of(user),
                "ssConfLinks": {},
                "subscriptionUrl": f"{self.sub_scheme}://{self.sub_public_domain}/{user.short_uuid}",
            }
        )


def create_app(version: Version = "2", **options: Any) -> RemnawaveEmulator:
    """The emulator for one API generation; it is the ASGI app and the test-visible state at once."""
    return RemnawaveEmulator(version, **options)


# ---------------------------------------------------------------------------------------------------------------
# Module-level helpers used by the emulator


def _business_body(path: str, message: str, code: str, now: datetime) -> dict[str, Any]:
    return {"timestamp": js_iso(now), "path": path, "message": message, "errorCode": code}


async def _send_raw(
    send: Callable[..., Any],
    status: int,
    body: bytes,
    content_type: str,
    extra_headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers + (extra_headers or [])})
    await send({"type": "http.response.body", "body": body})


def _present(values: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not _MISSING}


def _client_ip(request: Request) -> str | None:
    forwarded = request.headers.get("x-remnawave-real-ip") or request.headers.get("x-forwarded-for", "")
    return forwarded.split(",")[0].strip() or (request.client.host if request.client else None)


def _paging(request: Request, *, default_size: int, max_size: int) -> tuple[int, int]:
    """`start`/`size` query parameters, validated like the zod coerce schema."""
    issues = []
    values = {}
    for name, default, low, high in (("start", 0, 0, None), ("size", default_size, 1, max_size)):
        raw = request.query_params.get(name)
        if raw is None:
            values[name] = default
            continue
        if not raw.lstrip("-").isdigit():
            issues.append(issue([name], "invalid_type", "Expected number, received nan", expected="number"))
            continue
        number = int(raw)
        if number < low:
            issues.append(issue([name], "too_small", f"Number must be greater than or equal to {low}", minimum=low))
        elif high is not None and number > high:
            issues.append(issue([name], "too_big", f"Number must be less than or equal to {high}", maximum=high))
        values[name] = number
    if issues:
        raise ValidationFailed(issues)
    return values["start"], values["size"]


@contextlib.contextmanager
def serving(version: Version = "2", **options: Any) -> Iterator[tuple[RemnawaveEmulator, str]]:
    """Serve a fresh emulator on loopback: `with serving("3") as (emulator, base_url): ...`."""
    emulator = RemnawaveEmulator(version, **options)
    with serve(emulator) as base_url:
        yield emulator, base_url
