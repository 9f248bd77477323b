"""An HTTP emulator of the Marzban admin API, written from shared/reference/panels_api.md Part 1.

It speaks v0.7.0 by default; `MarzbanEmulator(version="0.8")` switches on the v0.8.x differences of §1.8
(pydantic-v2 messages, 404 for dead subscription tokens, no inbounds when `inbounds` is omitted, DELETE answering
500 for users owned by the env sudo admin). Serve it with `tests.emulators.harness.serve(emulator)`; tests reach
the users, the clock, the fault knobs and the per-route request counters through `emulator.state`.

What is left out on purpose: user templates, admin management, webhooks, per-admin user ownership checks,
client-specific subscription formats (every User-Agent gets base64 v2ray links) and usage time windows.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import math
import re
import secrets
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Match
from starlette.types import Message, Receive, Scope, Send

from tests.emulators.asgi import read_body, wait_for_disconnect

RELEASES = {"0.7": "0.7.0", "0.8": "0.8.4"}
PROTOCOLS = ("vmess", "vless", "trojan", "shadowsocks")
USER_STATUSES = ("active", "disabled", "limited", "expired", "on_hold")
CREATE_STATUSES = ("active", "on_hold")
MODIFY_STATUSES = ("active", "disabled", "on_hold")
RESET_STRATEGIES = ("no_reset", "day", "week", "month", "year")
VLESS_FLOWS = ("", "xtls-rprx-vision")
SORT_FIELDS = ("username", "used_traffic", "data_limit", "expire", "created_at")
USERNAME_RE = re.compile(r"^(?=\w{3,32}\b)[a-zA-Z0-9-_@.]+(?:_[a-zA-Z0-9-_@.]+)*$")
USERNAME_RULE = "Username only can be 3 to 32 characters and contain a-z, 0-9, and underscores in between."
DEFAULT_INBOUNDS: dict[str, list[dict[str, Any]]] = {
    "vless": [
        {"tag": "VLESS TCP", "protocol": "vless", "network": "tcp", "tls": "none", "port": 20531},
        {"tag": "VLESS WS", "protocol": "vless", "network": "ws", "tls": "none", "port": 20532},
    ]
}
# A body cut off mid-object: what a proxy that dropped the connection half-way would leave.
TRUNCATED_JSON = b'{"username": "probe_user", "status": "act'


# --------------------------------------------------------------------------------------------------------------
# Records


@dataclass(frozen=True, slots=True)
class Admin:
    username: str
    password: str
    is_sudo: bool = True


@dataclass(slots=True)
class User:
    """One stored user. Times are epoch seconds; they are rendered as naive-UTC ISO strings like Marzban's."""

    username: str
    proxies: dict[str, dict[str, Any]]
    inbounds: dict[str, list[str]]
    created_at: float
    owner: Admin | None
    status: str = "active"
    expire: int | None = None
    data_limit: int | None = None
    data_limit_reset_strategy: str = "no_reset"
    note: str | None = None
    used_traffic: int = 0
    lifetime_used_traffic: int = 0
    online_at: float | None = None
    sub_updated_at: float | None = None
    sub_last_user_agent: str | None = None
    sub_revoked_at: float | None = None
    on_hold_expire_duration: int | None = None
    on_hold_timeout: str | None = None
    auto_delete_in_days: int | None = None
    next_plan: dict[str, Any] | None = None
    deleted: bool = False


FaultKind = Literal["status", "throttle", "delay", "malformed", "drop"]


@dataclass(slots=True)
class Fault:
    """One armed fault: it hits the next `remaining` requests whose route key matches `route` (None = any)."""

    kind: FaultKind
    remaining: int
    route: str | None = None
    status: int = 500
    detail: str | None = None
    retry_after: float = 1.0
    seconds: float = 0.0
    body: bytes = TRUNCATED_JSON
    handle: bool = True


class UserStore:
    """Users by name plus their insertion order (Marzban lists by primary key), so a page costs O(page).

    Deletion leaves a tombstone; the order list is compacted on the next listing, once per batch of deletions.
    """

    def __init__(self) -> None:
        self._by_name: dict[str, User] = {}
        self._order: list[User] = []
        self._tombstones = 0

    def __len__(self) -> int:
        return len(self._by_name)

    def __contains__(self, username: object) -> bool:
        return username in self._by_name

    def get(self, username: str) -> User | None:
        return self._by_name.get(username)

    def add(self, user: User) -> None:
        self._by_name[user.username] = user
        self._order.append(user)

    def remove(self, username: str) -> User | None:
        user = self._by_name.pop(username, None)
        if user is not None:
            user.deleted = True
            self._tombstones += 1
        return user

    def all(self) -> list[User]:
        if self._tombstones:
            self._order = [user for user in self._order if not user.deleted]
            self._tombstones = 0
        return self._order

    def page(self, offset: int, limit: int | None) -> list[User]:
        users = self.all()
        return users[offset : offset + limit] if limit else users[offset:]

    def __iter__(self) -> Iterator[User]:
        return iter(list(self._by_name.values()))


# --------------------------------------------------------------------------------------------------------------
# Validation messages: pydantic v1 (Marzban 0.7) and v2 (0.8) word them differently.


@dataclass(frozen=True, slots=True)
class Dialect:
    pydantic_v2: bool

    @property
    def required(self) -> str:
        return "Field required" if self.pydantic_v2 else "field required"

    @property
    def integer(self) -> str:
        if self.pydantic_v2:
            return "Input should be a valid integer, unable to parse string as an integer"
        return "value is not a valid integer"

    @property
    def mapping(self) -> str:
        return "Input should be a valid dictionary" if self.pydantic_v2 else "value is not a valid dict"

    @property
    def bad_json(self) -> str:
        return "JSON decode error" if self.pydantic_v2 else "Expecting value"

    def at_least(self, minimum: int) -> str:
        if self.pydantic_v2:
            return f"Input should be greater than or equal to {minimum}"
        return f"ensure this value is greater than or equal to {minimum}"

    def at_most_chars(self, maximum: int) -> str:
        if self.pydantic_v2:
            return f"String should have at most {maximum} characters"
        return f"ensure this value has at most {maximum} characters"

    def one_of(self, allowed: Sequence[str]) -> str:
        quoted = [f"'{value}'" for value in allowed]
        if not self.pydantic_v2:
            return "value is not a valid enumeration member; permitted: " + ", ".join(quoted)
        if len(quoted) == 1:
            return f"Input should be {quoted[0]}"
        return f"Input should be {', '.join(quoted[:-1])} or {quoted[-1]}"

    def value_error(self, message: str) -> str:
        return f"Value error, {message}" if self.pydantic_v2 else message


class UserInputError(Exception):
    """A 422 in Marzban's own format: `{"detail": {last_loc_element: message}}`."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__(errors)
        self.errors = errors


class Checker:
    """Collects every field error of one body, as pydantic does, then raises them together."""

    def __init__(self, body: Any, dialect: Dialect) -> None:
        if not isinstance(body, dict):
            raise UserInputError({"body": dialect.mapping})
        self.body: dict[str, Any] = body
        self.dialect = dialect
        self.errors: dict[str, str] = {}

    def fail(self, key: str, message: str) -> None:
        self.errors.setdefault(key, message)

    def integer(self, key: str, *, minimum: int | None = None) -> int | None:
        value = self.body.get(key)
        if value is None:
            return None
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(key, self.dialect.integer)
            return None
        if minimum is not None and value < minimum:
            self.fail(key, self.dialect.at_least(minimum))
            return None
        return value

    def choice(self, key: str, allowed: Sequence[str]) -> str | None:
        value = self.body.get(key)
        if value is not None and value not in allowed:
            self.fail(key, self.dialect.one_of(allowed))
            return None
        return value

    def text(self, key: str, *, max_length: int) -> str | None:
        value = self.body.get(key)
        if value is not None and (not isinstance(value, str) or len(value) > max_length):
            self.fail(key, self.dialect.at_most_chars(max_length))
            return None
        return value

    def done(self) -> None:
        if self.errors:
            raise UserInputError(self.errors)


# --------------------------------------------------------------------------------------------------------------
# State: data, clock, auth and fault knobs


class MarzbanState:
    """Everything a test may inspect or steer. Safe to poke from the test thread while the server runs."""

    def __init__(
        self,
        version: str,
        *,
        admins: Sequence[Admin],
        inbounds: dict[str, list[dict[str, Any]]],
        env_sudo: bool,
        server_ip: str,
    ) -> None:
        if version not in RELEASES:
            raise ValueError(f"unknown Marzban version {version!r}; use one of {sorted(RELEASES)}")
        self.version = version
        self.release = RELEASES[version]
        self.dialect = Dialect(pydantic_v2=version == "0.8")
        self.admins = {admin.username: admin for admin in admins}
        self.inbounds = copy.deepcopy(inbounds)  # never share (or let a test mutate) DEFAULT_INBOUNDS
        self.inbounds_by_tag = {inbound["tag"]: inbound for group in self.inbounds.values() for inbound in group}
        self.env_sudo = env_sudo
        self.server_ip = server_ip
        self.sub_url_prefix = ""  # XRAY_SUBSCRIPTION_URL_PREFIX; empty gives relative "/sub/<token>" URLs
        self.token_ttl = 86400  # JWT_ACCESS_TOKEN_EXPIRE_MINUTES * 60; <= 0 means tokens never expire
        self.users = UserStore()
        self.nodes: list[dict[str, Any]] = []
        self.requests: Counter[str] = Counter()  # every request received, by "METHOD /route/{param}"
        self.handled: Counter[str] = Counter()  # the ones that reached Marzban's logic (not cut short by a fault)
        self.log: deque[tuple[str, str]] = deque(maxlen=10_000)  # (route key, raw path), newest last
        self.clock_offset = 0.0
        self.down_mode: Literal["503", "drop"] | None = None
        self._secret = secrets.token_hex(32)
        self._live_tokens: set[str] = set()
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    # --- clock -------------------------------------------------------------------------------------------------

    def now(self) -> float:
        return time.time() + self.clock_offset

    def advance(self, seconds: float) -> None:
        """Move the emulator's clock forward (token expiry, sub-token seconds, expire checks)."""
        self.clock_offset += seconds

    # --- fault knobs -------------------------------------------------------------------------------------------

    def arm(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
        return fault

    def fail_next(self, n: int = 1, status: int = 500, *, route: str | None = None, detail: str | None = None) -> Fault:
        """Answer the next n (matching) requests with `status` without touching any data."""
        return self.arm(Fault("status", n, route, status=status, detail=detail))

    def throttle_next(self, n: int = 1, retry_after: float = 1, *, route: str | None = None) -> Fault:
        """Answer 429 with a Retry-After header (Marzban has no limiter; a reverse proxy in front may)."""
        return self.arm(Fault("throttle", n, route, retry_after=retry_after))

    def delay_next(self, n: int = 1, seconds: float = 1.0, *, route: str | None = None, handle: bool = True) -> Fault:
        """Hold the next n requests for `seconds` (or until the client hangs up). With handle=True the request
        is then carried out anyway, like a panel that finished the work after the client timed out; with
        handle=False it is lost."""
        return self.arm(Fault("delay", n, route, seconds=seconds, handle=handle))

    def malform_next(
        self, n: int = 1, *, route: str | None = None, body: bytes = TRUNCATED_JSON, handle: bool = True
    ) -> Fault:
        """Replace the next n response bodies with `body` (truncated JSON by default). handle=True carries the
        request out first and keeps its status; handle=False answers 200 without doing anything."""
        return self.arm(Fault("malformed", n, route, body=body, handle=handle))

    def drop_next(self, n: int = 1, *, route: str | None = None) -> Fault:
        """Cut the connection after the status line, so the client sees a transport error."""
        return self.arm(Fault("drop", n, route))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def take_fault(self, route: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.remaining > 0 and fault.route in (None, route):
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def down(self, mode: Literal["503", "drop"] = "503") -> None:
        """Take the panel down: every request gets 503, or ("drop") a connection cut with no response.
        (A true ECONNREFUSED needs the listening socket closed, which belongs to the harness.)"""
        self.down_mode = mode

    def up(self) -> None:
        self.down_mode = None

    def expire_tokens(self) -> None:
        """Every admin token issued so far now gets 401 "Could not validate credentials"."""
        self._live_tokens.clear()

    # --- admin tokens (JWT HS256 like Marzban's, with sub/access/iat/exp) ---------------------------------------

    def issue_token(self, admin: Admin) -> str:
        issued = int(self.now())
        claims: dict[str, Any] = {"sub": admin.username, "access": "sudo" if admin.is_sudo else "admin"}
        claims["iat"] = issued
        # Marzban's tokens carry no nonce, so two logins in one second give the same string; this one keeps
        # them apart so expire_tokens() never revives a token re-issued in the same second.
        claims["jti"] = secrets.token_hex(8)
        if self.token_ttl > 0:
            claims["exp"] = issued + self.token_ttl
        header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
        signing_input = f"{header}.{_b64(json.dumps(claims, separators=(',', ':')).encode())}"
        token = f"{signing_input}.{_b64(self._sign(signing_input))}"
        self._live_tokens.add(token)
        return token

    def admin_for_token(self, token: str) -> Admin | None:
        if token not in self._live_tokens:
            return None
        signing_input, _, signature = token.rpartition(".")
        if not hmac.compare_digest(signature, _b64(self._sign(signing_input))):
            return None
        claims = json.loads(_unb64(signing_input.partition(".")[2]))
        if "exp" in claims and claims["exp"] <= self.now():
            return None
        return self.admins.get(claims["sub"])

    def _sign(self, data: str) -> bytes:
        return hmac.new(self._secret.encode(), data.encode(), hashlib.sha256).digest()

    # --- subscription tokens (§1.4: "<b64(username,ceil(ts))><10 chars of b64(sha256)>") ----------------------

    def subscription_token(self, username: str) -> str:
        payload = _b64(f"{username},{math.ceil(self.now())}".encode())
        return payload + _b64(hashlib.sha256((payload + self._secret).encode()).digest())[:10]

    def user_for_subscription(self, token: str) -> User | None:
        payload, signature = token[:-10], token[-10:]
        expected = _b64(hashlib.sha256((payload + self._secret).encode()).digest())[:10]
        if not payload or not hmac.compare_digest(signature, expected):
            return None
        try:
            username, _, stamp = _unb64(payload).decode().rpartition(",")
            minted = int(stamp)
        except ValueError:
            return None
        user = self.users.get(username)
        if user is None or user.created_at > minted:
            return None
        if user.sub_revoked_at is not None and user.sub_revoked_at > minted:
            return None
        return user

    # --- data helpers for tests and benchmarks (no HTTP) -------------------------------------------------------

    def add_user(
        self,
        username: str,
        *,
        expire: int | None = None,
        data_limit: int | None = None,
        status: str = "active",
        used_traffic: int = 0,
        note: str | None = None,
    ) -> User:
        """Insert a VLESS user on every VLESS inbound directly, as if created on the panel's dashboard."""
        if username in self.users:
            raise ValueError(f"user {username!r} exists")
        user = User(
            username=username,
            proxies={"vless": new_proxy_settings("vless", {})},
            inbounds={"vless": [inbound["tag"] for inbound in self.inbounds.get("vless", [])]},
            created_at=self.now(),
            owner=self.creator(),
            status=status,
            expire=expire or None,
            data_limit=data_limit or None,
            note=note,
            used_traffic=used_traffic,
            lifetime_used_traffic=used_traffic,
        )
        self.users.add(user)
        return user

    def seed(self, count: int, *, prefix: str = "user_", **fields: Any) -> None:
        """Add `count` users named prefix0, prefix1, ... without HTTP (50,000 take about half a second)."""
        for index in range(count):
            self.add_user(f"{prefix}{index}", **fields)

    def record_usage(self, username: str, used_bytes: int) -> None:
        """What xray's stats job does: add traffic and mark the user online. Run review_users() to apply limits."""
        user = self._existing(username)
        user.used_traffic += used_bytes
        user.lifetime_used_traffic += used_bytes
        user.online_at = self.now()

    def review_users(self) -> list[str]:
        """Marzban's periodic review job: limits and expiry flip active users; on_hold users start on first use."""
        changed = []
        now = self.now()
        for user in self.users:
            before = user.status
            if user.status == "active" and user.data_limit and user.used_traffic >= user.data_limit:
                user.status = "limited"
            elif user.status == "active" and user.expire and user.expire <= now:
                user.status = "expired"
            elif user.status == "on_hold" and user.online_at is not None:
                user.status = "active"
                user.expire = int(now) + (user.on_hold_expire_duration or 0)
            if user.status != before:
                changed.append(user.username)
        return changed

    def add_node(self, name: str, *, address: str = "10.0.0.2", status: str = "connected", **extra: Any) -> dict:
        node = {
            "name": name,
            "address": address,
            "port": 62050,
            "api_port": 62051,
            "usage_coefficient": 1.0,
            "id": len(self.nodes) + 1,
            "xray_version": "1.8.24" if status == "connected" else None,
            "status": status,
            "message": None,
        }
        node.update(extra)
        self.nodes.append(node)
        return node

    def creator(self) -> Admin | None:
        """Who owns new users: None for the virtual env sudo admin (the §1.8 DELETE bug), else the first admin."""
        return None if self.env_sudo else next(iter(self.admins.values()))

    def _existing(self, username: str) -> User:
        user = self.users.get(username)
        if user is None:
            raise KeyError(username)
        return user


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def new_proxy_settings(protocol: str, given: dict[str, Any]) -> dict[str, Any]:
    """Proxy settings with Marzban's generated defaults (a fresh UUID or password unless one was given)."""
    if protocol in ("vless", "vmess"):
        settings = {"id": given.get("id") or str(uuid.uuid4())}
        if protocol == "vless":
            settings["flow"] = given.get("flow") or ""
        return settings
    settings = {"password": given.get("password") or secrets.token_urlsafe(16)}
    if protocol == "shadowsocks":
        settings["method"] = given.get("method") or "chacha20-ietf-poly1305"
    return settings


# --------------------------------------------------------------------------------------------------------------
# Request bodies → validated changes (UserCreate / UserModify of §1.2)


def parse_proxies(check: Checker, *, required: bool) -> dict[str, dict[str, Any]] | None:
    proxies = check.body.get("proxies")
    if proxies is None or proxies == {}:
        if required:
            check.fail("proxies", check.dialect.value_error("Each user needs at least one proxy"))
        return None
    if not isinstance(proxies, dict):
        check.fail("proxies", check.dialect.mapping)
        return None
    for protocol, settings in proxies.items():
        if protocol not in PROTOCOLS:
            check.fail("proxies", check.dialect.one_of(PROTOCOLS))
        elif not isinstance(settings, dict):
            check.fail(protocol, check.dialect.mapping)
        elif protocol == "vless" and settings.get("flow", "") not in VLESS_FLOWS:
            check.fail("flow", check.dialect.one_of(VLESS_FLOWS))
    return proxies


def parse_inbounds(check: Checker, state: MarzbanState, proxies: dict[str, Any] | None) -> dict[str, list[str]] | None:
    """UserCreate's inbounds validator: unknown tags are a 422; an empty list means every tag of the protocol.

    On v0.8 the validator does not run on the default, so an omitted field leaves the user with no inbounds."""
    inbounds = check.body.get("inbounds")
    if proxies is None:
        return None
    if inbounds is None and state.version == "0.8":
        return {protocol: [] for protocol in proxies}
    inbounds = inbounds or {}
    if not isinstance(inbounds, dict):
        check.fail("inbounds", check.dialect.mapping)
        return None
    result = {}
    for protocol in proxies:
        tags = inbounds.get(protocol) or []
        if not isinstance(tags, list):
            check.fail("inbounds", check.dialect.mapping)
            continue
        for tag in tags:
            if tag not in state.inbounds_by_tag:
                check.fail("inbounds", check.dialect.value_error(f"Inbound {tag} doesn't exist"))
        result[protocol] = list(tags) or [inbound["tag"] for inbound in state.inbounds.get(protocol, [])]
    return result


def parse_on_hold(check: Checker, status: str | None, expire: int | None) -> None:
    if status != "on_hold":
        return
    if not check.body.get("on_hold_expire_duration"):
        message = "User cannot be on hold without a valid on_hold_expire_duration."
        check.fail("status", check.dialect.value_error(message))
    elif expire:
        check.fail("status", check.dialect.value_error("User cannot be on hold with specified expire."))


def parse_username(check: Checker) -> str:
    username = check.body.get("username")
    if username is None:
        check.fail("username", check.dialect.required)
    elif not isinstance(username, str) or not USERNAME_RE.match(username):
        check.fail("username", check.dialect.value_error(USERNAME_RULE))
    return username if isinstance(username, str) else ""


def parse_user_fields(check: Checker, statuses: Sequence[str]) -> dict[str, Any]:
    """The fields UserCreate and UserModify share; None means "not given"."""
    fields: dict[str, Any] = {
        "expire": check.integer("expire"),
        "data_limit": check.integer("data_limit", minimum=0),
        "data_limit_reset_strategy": check.choice("data_limit_reset_strategy", RESET_STRATEGIES),
        "status": check.choice("status", statuses),
        "note": check.text("note", max_length=500),
        "on_hold_expire_duration": check.integer("on_hold_expire_duration", minimum=0),
        "on_hold_timeout": check.body.get("on_hold_timeout"),
        "auto_delete_in_days": check.integer("auto_delete_in_days"),
    }
    parse_on_hold(check, fields["status"], fields["expire"])
    return fields


def build_user(state: MarzbanState, body: Any) -> User:
    check = Checker(body, state.dialect)
    username = parse_username(check)
    proxies = parse_proxies(check, required=True)
    inbounds = parse_inbounds(check, state, proxies)
    fields = parse_user_fields(check, CREATE_STATUSES)
    check.done()
    assert proxies is not None and inbounds is not None  # check.done() raised otherwise
    require_enabled(state, proxies)
    return User(
        username=username,
        proxies={protocol: new_proxy_settings(protocol, settings) for protocol, settings in proxies.items()},
        inbounds=inbounds,
        created_at=state.now(),
        owner=state.creator(),
        status=fields["status"] or "active",
        expire=fields["expire"] or None,
        data_limit=fields["data_limit"] or None,
        data_limit_reset_strategy=fields["data_limit_reset_strategy"] or "no_reset",
        note=fields["note"],
        on_hold_expire_duration=fields["on_hold_expire_duration"] or None,
        on_hold_timeout=fields["on_hold_timeout"],
        auto_delete_in_days=fields["auto_delete_in_days"],
        next_plan=body.get("next_plan") if state.version == "0.8" else None,
    )


def require_enabled(state: MarzbanState, protocols: dict[str, Any]) -> None:
    """The routers' own check, after validation: a protocol needs at least one inbound in the xray config."""
    for protocol in protocols:
        if not state.inbounds.get(protocol):
            raise HTTPException(400, f"Protocol {protocol} is disabled on your server")


def parse_modify(state: MarzbanState, body: Any) -> dict[str, Any]:
    check = Checker(body, state.dialect)
    changes = parse_user_fields(check, MODIFY_STATUSES)
    changes["proxies"] = parse_proxies(check, required=False)
    inbounds = body.get("inbounds") or None
    well_formed = isinstance(inbounds, dict) and all(isinstance(tags, list) for tags in inbounds.values())
    if inbounds is not None and not well_formed:
        check.fail("inbounds", check.dialect.mapping)
    elif inbounds is not None:
        for protocol, tags in inbounds.items():
            if not state.inbounds.get(protocol):
                check.fail("inbounds", check.dialect.value_error(f"Protocol {protocol} is disabled on your server"))
            for tag in tags:
                if tag not in state.inbounds_by_tag:
                    check.fail("inbounds", check.dialect.value_error(f"Inbound {tag} doesn't exist"))
    changes["inbounds"] = inbounds
    check.done()
    return changes


def apply_modify(state: MarzbanState, user: User, changes: dict[str, Any]) -> None:
    """crud.update_user, including its status side effects (§1.3 "Modify examples")."""
    if changes["proxies"]:
        user.proxies = {
            protocol: new_proxy_settings(protocol, settings) for protocol, settings in changes["proxies"].items()
        }
    if changes["inbounds"]:
        user.inbounds.update({protocol: list(tags) for protocol, tags in changes["inbounds"].items()})
    if changes["status"] is not None:
        user.status = changes["status"]
    if changes["data_limit"] is not None:
        user.data_limit = changes["data_limit"] or None
        if user.status in ("active", "limited"):
            within = not user.data_limit or user.used_traffic < user.data_limit
            user.status = "active" if within else "limited"
    if changes["expire"] is not None:
        user.expire = changes["expire"] or None
        if user.status in ("active", "expired"):
            user.status = "active" if not user.expire or user.expire > state.now() else "expired"
    for name in ("note", "data_limit_reset_strategy", "on_hold_timeout", "auto_delete_in_days"):
        if changes[name] is not None:
            setattr(user, name, changes[name])
    if changes["on_hold_expire_duration"] is not None:
        user.on_hold_expire_duration = changes["on_hold_expire_duration"] or None


# --------------------------------------------------------------------------------------------------------------
# Rendering (UserResponse of §1.2)


def naive_utc(stamp: float | None) -> str | None:
    if stamp is None:
        return None
    return datetime.fromtimestamp(stamp, UTC).replace(tzinfo=None).isoformat()


def share_link(state: MarzbanState, user: User, protocol: str, inbound: dict[str, Any]) -> str:
    settings = user.proxies[protocol]
    network = inbound.get("network", "tcp")
    remark = quote(f"🚀 Marz ({user.username}) [{protocol.upper()} - {network}]", safe="")
    address = f"{state.server_ip}:{inbound['port']}"
    if protocol in ("vless", "vmess"):
        query = f"security={inbound.get('tls', 'none')}&type={network}&headerType=&path=&host="
        if settings.get("flow"):
            query += f"&flow={settings['flow']}"
        return f"{protocol}://{settings['id']}@{address}?{query}#{remark}"
    return f"{protocol}://{settings['password']}@{address}?type={network}#{remark}"


def user_links(state: MarzbanState, user: User) -> list[str]:
    return [
        share_link(state, user, protocol, state.inbounds_by_tag[tag])
        for protocol, tags in user.inbounds.items()
        if protocol in user.proxies
        for tag in tags
        if tag in state.inbounds_by_tag
    ]


def admin_json(state: MarzbanState, admin: Admin | None) -> dict[str, Any] | None:
    if admin is None:
        return None
    data: dict[str, Any] = {
        "username": admin.username,
        "is_sudo": admin.is_sudo,
        "telegram_id": None,
        "discord_webhook": None,
    }
    if state.version == "0.8":
        data["users_usage"] = None
    return data


def user_json(state: MarzbanState, user: User) -> dict[str, Any]:
    data: dict[str, Any] = {
        "proxies": user.proxies,
        "expire": user.expire,
        "data_limit": user.data_limit,
        "data_limit_reset_strategy": user.data_limit_reset_strategy,
        "inbounds": user.inbounds,
        "note": user.note,
        "sub_updated_at": naive_utc(user.sub_updated_at),
        "sub_last_user_agent": user.sub_last_user_agent,
        "online_at": naive_utc(user.online_at),
        "on_hold_expire_duration": user.on_hold_expire_duration,
        "on_hold_timeout": user.on_hold_timeout,
        "auto_delete_in_days": user.auto_delete_in_days,
    }
    if state.version == "0.8":
        data["next_plan"] = user.next_plan
    excluded = {
        protocol: [
            i["tag"] for i in state.inbounds.get(protocol, []) if i["tag"] not in user.inbounds.get(protocol, [])
        ]
        for protocol in user.proxies
    }
    data.update(
        username=user.username,
        status=user.status,
        used_traffic=user.used_traffic,
        lifetime_used_traffic=user.lifetime_used_traffic,
        created_at=naive_utc(user.created_at),
        links=user_links(state, user),
        # Regenerated on every response, as Marzban does: never an identity.
        subscription_url=f"{state.sub_url_prefix}/sub/{state.subscription_token(user.username)}",
        excluded_inbounds=excluded,
        admin=admin_json(state, user.owner),
    )
    return data


# --------------------------------------------------------------------------------------------------------------
# Routes


def get_state(request: Request) -> MarzbanState:
    return request.app.state.marzban


StateDep = Annotated[MarzbanState, Depends(get_state)]


def unauthorized(detail: str) -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": "Bearer"})


def current_admin(request: Request, state: StateDep) -> Admin:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise unauthorized("Not authenticated")
    admin = state.admin_for_token(token.strip())
    if admin is None:
        raise unauthorized("Could not validate credentials")
    return admin


AdminDep = Annotated[Admin, Depends(current_admin)]


def sudo_admin(admin: AdminDep) -> Admin:
    if not admin.is_sudo:
        raise HTTPException(403, "You're not allowed")
    return admin


def found_user(username: str, state: StateDep, _: AdminDep) -> User:
    user = state.users.get(username)
    if user is None:
        raise HTTPException(404, "User not found")
    return user


UserDep = Annotated[User, Depends(found_user)]

router = APIRouter()


async def read_json(request: Request, dialect: Dialect) -> Any:
    raw = await request.body()
    if not raw:
        raise UserInputError({"body": dialect.required})
    try:
        return json.loads(raw)
    except ValueError:
        raise UserInputError({"body": dialect.bad_json}) from None


@router.post("/api/admin/token")
async def login(request: Request, state: StateDep) -> JSONResponse:
    # OAuth2PasswordRequestForm: form-encoded only; a JSON body has no form fields, hence a 422.
    form = await request.form()
    missing = {name: state.dialect.required for name in ("username", "password") if not form.get(name)}
    if missing:
        raise UserInputError(missing)
    admin = state.admins.get(str(form["username"]))
    if admin is None or not hmac.compare_digest(admin.password, str(form["password"])):
        raise unauthorized("Incorrect username or password")
    return JSONResponse({"access_token": state.issue_token(admin), "token_type": "bearer"})


@router.get("/api/admin")
async def current_admin_info(state: StateDep, admin: AdminDep) -> JSONResponse:
    return JSONResponse(admin_json(state, admin))


@router.post("/api/user")
async def create_user(request: Request, state: StateDep, _: AdminDep) -> JSONResponse:
    user = build_user(state, await read_json(request, state.dialect))
    if user.username in state.users:
        raise HTTPException(409, "User already exists")
    state.users.add(user)
    return JSONResponse(user_json(state, user))


@router.get("/api/user/{username}")
async def get_user(state: StateDep, user: UserDep) -> JSONResponse:
    return JSONResponse(user_json(state, user))


@router.put("/api/user/{username}")
async def modify_user(request: Request, state: StateDep, user: UserDep) -> JSONResponse:
    changes = parse_modify(state, await read_json(request, state.dialect))
    require_enabled(state, changes["proxies"] or {})
    apply_modify(state, user, changes)
    return JSONResponse(user_json(state, user))


@router.delete("/api/user/{username}")
async def delete_user(state: StateDep, user: UserDep) -> Response:
    state.users.remove(user.username)
    if state.version == "0.8" and user.owner is None:
        # §1.8 bug 1: the user is gone, but serialising its null admin fails.
        return Response("Internal Server Error", status_code=500, media_type="text/plain")
    return JSONResponse({"detail": "User successfully deleted"})


@router.post("/api/user/{username}/reset")
async def reset_user(state: StateDep, user: UserDep) -> JSONResponse:
    user.used_traffic = 0
    # §1.3 quirk: `status not in (expired or disabled)` is a substring test on "expired", so only expired stays.
    if user.status not in "expired":
        user.status = "active"
    return JSONResponse(user_json(state, user))


@router.post("/api/user/{username}/revoke_sub")
async def revoke_subscription(state: StateDep, user: UserDep) -> JSONResponse:
    user.sub_revoked_at = state.now()
    # New UUIDs and passwords for every proxy; the VLESS flow is a setting, not a secret, so it survives.
    user.proxies = {
        protocol: new_proxy_settings(protocol, {"flow": settings.get("flow")})
        for protocol, settings in user.proxies.items()
    }
    return JSONResponse(user_json(state, user))


@router.get("/api/user/{username}/usage")
async def user_usage(user: UserDep) -> JSONResponse:
    usage = [{"node_id": None, "node_name": "Master", "used_traffic": user.used_traffic}]
    return JSONResponse({"username": user.username, "usages": usage})


def sort_key(fields: list[str]) -> list[tuple[str, bool]]:
    keys = []
    for raw in fields:
        name = raw.lstrip("-")
        if name not in SORT_FIELDS:
            raise HTTPException(400, f'"{raw}" is not a valid sort option')
        keys.append((name, raw.startswith("-")))
    return keys


def sorted_users(users: list[User], keys: list[tuple[str, bool]]) -> list[User]:
    """Stable sorts, least significant key first; NULLs sort first like SQL's ascending order."""
    for name, descending in reversed(keys):

        def key(user: User, name: str = name) -> tuple[bool, Any]:
            value = getattr(user, name)
            return (value is not None, value if value is not None else 0)

        users = sorted(users, key=key, reverse=descending)
    return users


@router.get("/api/users")
async def list_users(
    state: StateDep,
    _: AdminDep,
    offset: int | None = None,
    limit: int | None = None,
    username: Annotated[list[str] | None, Query()] = None,
    search: str | None = None,
    status: str | None = None,
    sort: str | None = None,
) -> JSONResponse:
    if status is not None and status not in USER_STATUSES:
        raise UserInputError({"status": state.dialect.one_of(USER_STATUSES)})
    keys = sort_key(sort.split(",")) if sort else []
    if not (username or search or status or keys):
        users, total = state.users.page(offset or 0, limit), len(state.users)
    else:
        chosen = [u for name in username if (u := state.users.get(name))] if username else state.users.all()
        if search:
            needle = search.lower()
            chosen = [u for u in chosen if needle in u.username.lower() or needle in (u.note or "").lower()]
        if status:
            chosen = [u for u in chosen if u.status == status]
        chosen = sorted_users(chosen, keys) if keys else chosen
        start = offset or 0
        users, total = (chosen[start : start + limit] if limit else chosen[start:]), len(chosen)
    return JSONResponse({"users": [user_json(state, user) for user in users], "total": total})


@router.get("/api/system")
async def system_stats(state: StateDep, _: AdminDep) -> JSONResponse:
    counts = Counter(user.status for user in state.users)
    data: dict[str, Any] = {
        "version": state.release,
        "mem_total": 25276502016,
        "mem_used": 192135168,
        "cpu_cores": 2,
        "cpu_usage": 4.5,
        "total_user": len(state.users),
        "users_active": counts["active"],
        "incoming_bandwidth": 0,
        "outgoing_bandwidth": 0,
        "incoming_bandwidth_speed": 50,
        "outgoing_bandwidth_speed": 50,
    }
    if state.version == "0.8":
        day_ago = state.now() - 86400
        data["online_users"] = sum(1 for user in state.users if user.online_at and user.online_at >= day_ago)
        data.update({f"users_{name}": counts[name] for name in ("on_hold", "disabled", "expired", "limited")})
    return JSONResponse(data)


@router.get("/api/inbounds")
async def inbounds(state: StateDep, _: AdminDep) -> JSONResponse:
    return JSONResponse(state.inbounds)


@router.get("/api/core")
async def core(_: AdminDep) -> JSONResponse:
    return JSONResponse({"version": "1.8.24", "started": True, "logs_websocket": "/api/core/logs"})


@router.get("/api/nodes")
async def nodes(state: StateDep, _: Annotated[Admin, Depends(sudo_admin)]) -> JSONResponse:
    return JSONResponse(state.nodes)


def dead_subscription(state: MarzbanState) -> Response:
    if state.version == "0.8":
        return JSONResponse({"detail": "Not Found"}, status_code=404)
    return Response(status_code=204)


@router.get("/sub/{token}")
async def subscription(token: str, request: Request, state: StateDep) -> Response:
    user = state.user_for_subscription(token)
    if user is None:
        return dead_subscription(state)
    if "text/html" in request.headers.get("accept", ""):
        return HTMLResponse(f"<html><body><h1>{user.username}</h1><p>{user.status}</p></body></html>")
    user.sub_updated_at = state.now()
    user.sub_last_user_agent = request.headers.get("user-agent", "")
    body = base64.b64encode("\n".join(user_links(state, user)).encode()).decode()
    headers = {
        "content-disposition": f'attachment; filename="{user.username}"',
        "profile-web-page-url": str(request.url),
        "support-url": "https://t.me/",
        "profile-title": "base64:" + base64.b64encode(b"Subscription").decode(),
        "profile-update-interval": "12",
        "subscription-userinfo": (
            f"upload=0; download={user.used_traffic}; total={user.data_limit or 0}; expire={user.expire or 0}"
        ),
    }
    return Response(body, media_type="text/plain; charset=utf-8", headers=headers)


@router.get("/sub/{token}/info")
async def subscription_info(token: str, state: StateDep) -> Response:
    user = state.user_for_subscription(token)
    if user is None:
        return dead_subscription(state)
    data = user_json(state, user)
    for hidden in ("note", "inbounds", "admin", "excluded_inbounds", "auto_delete_in_days"):
        data.pop(hidden, None)
    return JSONResponse(data)


async def user_input_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, UserInputError)
    return JSONResponse({"detail": exc.errors}, status_code=422)


async def request_validation_error(_: Request, exc: Exception) -> JSONResponse:
    # Marzban's validation_exception_handler: {last loc element: message}, not FastAPI's list.
    assert isinstance(exc, RequestValidationError)
    return JSONResponse({"detail": {str(e["loc"][-1]): e["msg"] for e in exc.errors()}}, status_code=422)


def build_api(state: MarzbanState) -> FastAPI:
    api = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    api.state.marzban = state
    api.include_router(router)
    api.add_exception_handler(UserInputError, user_input_error)
    api.add_exception_handler(RequestValidationError, request_validation_error)
    return api


# --------------------------------------------------------------------------------------------------------------
# The ASGI entry point: counters and faults in front of the API


class MarzbanEmulator:
    """The ASGI app to serve. `state` holds the data and the knobs."""

    def __init__(
        self,
        version: str = "0.7",
        *,
        admins: Sequence[Admin] = (Admin("admin", "admin"),),
        inbounds: dict[str, list[dict[str, Any]]] | None = None,
        env_sudo: bool = True,
        server_ip: str = "127.0.0.1",
    ) -> None:
        self.state = MarzbanState(
            version,
            admins=admins,
            inbounds=inbounds if inbounds is not None else DEFAULT_INBOUNDS,
            env_sudo=env_sudo,
            server_ip=server_ip,
        )
        self.api = build_api(self.state)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.api(scope, receive, send)
            return
        route = self.route_key(scope)
        state = self.state
        state.requests[route] += 1
        state.log.append((route, scope["path"]))
        if state.down_mode == "503":
            await send_plain(send, 503)
            return
        if state.down_mode == "drop":
            await drop_connection(send)
            return
        fault = state.take_fault(route)
        if fault is None:
            await self.handle(route, scope, receive, send)
        else:
            await self.inject(fault, route, scope, receive, send)

    def route_key(self, scope: Scope) -> str:
        """The key of the route the request hits, e.g. "GET /api/user/{username}", so counters group by endpoint."""
        for candidate in router.routes:  # the app wraps included routers, so match against ours
            match, _ = candidate.matches(scope)
            if match is Match.FULL:
                return f"{scope['method']} {getattr(candidate, 'path', scope['path'])}"
        return f"{scope['method']} {scope['path']}"

    async def handle(self, route: str, scope: Scope, receive: Receive, send: Send) -> None:
        self.state.handled[route] += 1
        await self.api(scope, receive, send)

    async def inject(self, fault: Fault, route: str, scope: Scope, receive: Receive, send: Send) -> None:
        if fault.kind == "status":
            await send_plain(send, fault.status, fault.detail)
        elif fault.kind == "throttle":
            await send_json(send, 429, {"detail": "Too Many Requests"}, [(b"retry-after", b"%g" % fault.retry_after)])
        elif fault.kind == "drop":
            await drop_connection(send)
        elif fault.kind == "delay":
            await self.delayed(fault, route, scope, receive, send)
        else:
            await self.malformed(fault, route, scope, receive, send)

    async def delayed(self, fault: Fault, route: str, scope: Scope, receive: Receive, send: Send) -> None:
        body = await read_body(receive)
        gone = await wait_for_disconnect(receive, fault.seconds)
        if not fault.handle:
            if not gone:
                await drop_connection(send)
            return
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if delivered:
                return await receive()
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.handle(route, scope, replay, send)

    async def malformed(self, fault: Fault, route: str, scope: Scope, receive: Receive, send: Send) -> None:
        status = 200
        if fault.handle:
            captured: list[Message] = []

            async def capture(message: Message) -> None:
                captured.append(message)

            await self.handle(route, scope, receive, capture)
            status = next(m["status"] for m in captured if m["type"] == "http.response.start")
        await send_raw(send, status, fault.body, b"application/json")


async def send_raw(send: Send, status: int, body: bytes, content_type: bytes, extra: list | None = None) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode()), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_json(send: Send, status: int, data: Any, extra: list | None = None) -> None:
    await send_raw(send, status, json.dumps(data).encode(), b"application/json", extra)


async def send_plain(send: Send, status: int, detail: str | None = None) -> None:
    """5xx come from the server or a proxy in front (plain text); 4xx in Marzban's JSON `detail` form."""
    phrase = HTTPStatus(status).phrase
    if status >= 500:
        await send_raw(send, status, (detail or phrase).encode(), b"text/plain; charset=utf-8")
        return
    extra = [(b"www-authenticate", b"Bearer")] if status == 401 else []
    await send_json(send, status, {"detail": detail or phrase}, extra)


async def drop_connection(send: Send) -> None:
    # Promise a body and never send it: uvicorn closes the socket and the client gets a protocol error,
    # the closest an ASGI app can come to a panel that vanished mid-request.
    headers = [(b"content-type", b"application/json"), (b"content-length", b"64")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
