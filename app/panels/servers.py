"""Staff manage panel connections (SPEC §10.4): add or edit a server, test its connection, turn placement on or
off. Each change runs in the caller's transaction and writes its audit row (before and after) there.

Credentials (Marzban admin login or API token, Remnawave API token, the headers and cookies of a proxy in front
of the panel) are sealed with ENCRYPTION_KEY (app.panels.registry.seal_credentials) and never leave this module
in the clear: staff, the pages and the JSON API see only which of them are set (`secrets_set`). On an edit a
blank secret keeps the stored one, so a form never has to show it to keep it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, field_validator
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.audit.service import Actor, record_by
from app.config import Settings
from app.kit.errors import NotFound
from app.kit.field_errors import FieldInvalid
from app.models import PanelKind, Server
from app.panels.base import PanelAuthError, PanelError, PanelUnavailable
from app.panels.registry import build_panel, read_credentials, seal_credentials

# RFC 9110 token characters: what a header or cookie name may hold.
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$")
# Headers our panel clients set themselves: an extra header must not replace them.
_RESERVED_HEADERS = frozenset({"authorization", "cookie", "host", "content-length", "content-type", "accept"})
MAX_PAIRS = 20
MAX_SQUADS = 50
SECRET_FIELDS = ("username", "password", "token", "headers", "cookies")


def _pairs(value: Any, separator: str, what: str) -> dict[str, str]:
    """ "Name: value" (headers) or "name=value" (cookies) lines from a form, or a JSON object from the API."""
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        pairs: dict[str, str] = {}
        for number, line in enumerate(value.splitlines(), 1):
            if not line.strip():
                continue
            name, found, text = line.partition(separator)
            if not found:
                raise ValueError(f"line {number}: expected {what} as name{separator}value")
            pairs[name.strip()] = text.strip()
        value = pairs
    if not isinstance(value, dict):
        raise ValueError(f"expected {what} as an object of names and values")
    if len(value) > MAX_PAIRS:
        raise ValueError(f"at most {MAX_PAIRS} {what}")
    clean: dict[str, str] = {}
    for name, text in value.items():
        if not isinstance(name, str) or not _TOKEN.match(name):
            raise ValueError(f"{name!r} is not a valid {what[:-1]} name")
        if not isinstance(text, str) or len(text) > 4096 or any(c in text for c in "\r\n\x00"):
            raise ValueError(f"the value of {name!r} must be text of one line, at most 4096 characters")
        clean[name] = text
    return clean


class ServerInput(BaseModel):
    """A panel connection as staff enter it (the form and the JSON API share this model). Secrets left out (or
    blank) keep the stored ones on an edit."""

    name: str = Field(min_length=1, max_length=64)
    panel_kind: Literal["marzban", "remnawave"]
    api_url: str = Field(min_length=1, max_length=512)
    username: str | None = Field(None, max_length=128)
    password: str | None = Field(None, max_length=256)
    token: str | None = Field(None, max_length=4096)
    api_version: Literal["auto", "2", "3"] = "auto"
    headers: dict[str, str] | None = None
    cookies: dict[str, str] | None = None
    squads: list[str] | None = None
    location: str = Field(min_length=1, max_length=64)
    weight: int = Field(1, ge=1, le=1000)
    capacity: int = Field(1000, ge=1, le=1_000_000)
    accepts_new_accounts: bool = True

    @field_validator("name", "location", "api_url", mode="before")
    @classmethod
    def _strip(cls, value: Any) -> Any:
        return value.strip() if isinstance(value, str) else value

    @field_validator("api_url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("give the panel's address as http(s)://host[:port][/path]")
        if parts.query or parts.fragment or parts.username:
            raise ValueError("the panel's address takes no query, fragment or login part")
        return value.rstrip("/")

    @field_validator("headers", mode="before")
    @classmethod
    def _headers(cls, value: Any) -> dict[str, str]:
        headers = _pairs(value, ":", "headers")
        reserved = sorted(name for name in headers if name.lower() in _RESERVED_HEADERS)
        if reserved:
            raise ValueError(f"{', '.join(reserved)} cannot be set here: the panel client sets it itself")
        return headers

    @field_validator("cookies", mode="before")
    @classmethod
    def _cookies(cls, value: Any) -> dict[str, str]:
        return _pairs(value, "=", "cookies")

    @field_validator("squads", mode="before")
    @classmethod
    def _squads(cls, value: Any) -> list[str]:
        if value is None or value == "":
            return []
        if isinstance(value, str):
            value = [part.strip() for part in re.split(r"[,\n]", value) if part.strip()]
        if not isinstance(value, list) or not all(isinstance(item, str) and item.strip() for item in value):
            raise ValueError("expected a list of squad uuids or names")
        if len(value) > MAX_SQUADS or any(len(item) > 128 for item in value):
            raise ValueError(f"at most {MAX_SQUADS} squads of at most 128 characters each")
        return [item.strip() for item in value]


@dataclass(frozen=True, slots=True)
class ConnectionCheck:
    ok: bool
    message: str
    version: str | None = None
    users: int | None = None
    # The form field a failure belongs to (the address, or the secret the panel refused).
    field: str = "api_url"


def secrets_set(server: Server) -> dict[str, bool]:
    """Which secrets are stored (never their values)."""
    credentials = read_credentials(server)
    return {name: bool(credentials.get(name)) for name in SECRET_FIELDS}


def public_state(server: Server) -> dict[str, Any]:
    """What an audit row keeps of a server: everything but the secrets, and which secrets are set."""
    return {
        "name": server.name,
        "panel_kind": PanelKind(server.panel_kind).value,
        "api_url": server.api_url,
        "api_version": server.api_version,
        "location": server.location,
        "weight": server.weight,
        "capacity": server.capacity,
        "is_enabled": server.is_enabled,
        "accepts_new_accounts": server.accepts_new_accounts,
        "squads": list((server.settings or {}).get("squad_uuids") or []),
        "secrets_set": secrets_set(server) if server.credentials_encrypted else {},
    }


def _credentials(data: ServerInput, stored: dict[str, Any]) -> dict[str, Any]:
    """The credentials to store: the entered secrets over the stored ones (a blank one keeps what is stored),
    checked against what the panel kind needs."""
    fields = data.model_fields_set
    credentials = dict(stored)
    for name in ("username", "password", "token"):
        value = getattr(data, name)
        if value:
            credentials[name] = value
    for name in ("headers", "cookies"):
        if name in fields and getattr(data, name) is not None:
            credentials[name] = getattr(data, name)
    if data.panel_kind == "marzban":
        for name in ("headers", "cookies"):
            if credentials.get(name):
                raise FieldInvalid(name, f"Marzban connections take no extra {name}; leave this empty.")
        has_login = credentials.get("username") and credentials.get("password")
        if not has_login and not credentials.get("token"):
            missing = "password" if credentials.get("username") else "username"
            raise FieldInvalid(missing, "Marzban needs the admin username and password, or an API token.")
        if bool(credentials.get("username")) != bool(credentials.get("password")) and not credentials.get("token"):
            raise FieldInvalid("password", "Give both the admin username and its password.")
    else:
        for name in ("username", "password"):
            credentials.pop(name, None)
        if not credentials.get("token"):
            raise FieldInvalid("token", "Remnawave needs an API token (Settings → API tokens in the panel).")
    return credentials


def _settings(data: ServerInput, stored: dict[str, Any]) -> dict[str, Any]:
    settings = dict(stored)
    if data.panel_kind == "marzban":
        if data.squads:
            raise FieldInvalid("squads", "Squads are a Remnawave setting; Marzban has none.")
        settings.pop("squad_uuids", None)
    elif "squads" in data.model_fields_set:
        if data.squads:
            settings["squad_uuids"] = list(data.squads)
        else:
            settings.pop("squad_uuids", None)
    return settings


def draft(data: ServerInput, existing: Server | None = None) -> Server:
    """The server `data` describes, over `existing` (an edit) or new, not added to any session: what "test
    connection" tries and what a save stores. Raises FieldInvalid for what the panel kind cannot take."""
    stored = read_credentials(existing) if existing is not None and existing.credentials_encrypted else {}
    server = Server(
        name=data.name,
        panel_kind=PanelKind(data.panel_kind),
        api_url=data.api_url,
        credentials_encrypted=seal_credentials(_credentials(data, stored)),
        api_version=None if data.panel_kind == "marzban" or data.api_version == "auto" else data.api_version,
        location=data.location,
        weight=data.weight,
        capacity=data.capacity,
        is_enabled=existing.is_enabled if existing is not None else True,
        accepts_new_accounts=data.accepts_new_accounts,
        settings=_settings(data, dict(existing.settings or {}) if existing is not None else {}),
    )
    if existing is not None:
        server.id = existing.id
    return server


def changes_connection(data: ServerInput, existing: Server | None) -> bool:
    """Whether saving `data` adds a panel connection or changes where or how we sign in to one (address, kind,
    API version, login, password, token, proxy headers or cookies): owners only (ADMIN.md, "Credentials and
    provider settings are owner-only"). Raises FieldInvalid as `draft` does."""
    if existing is None:
        return True
    candidate = draft(data, existing)
    stored = read_credentials(existing) if existing.credentials_encrypted else {}
    before = (PanelKind(existing.panel_kind), existing.api_url, existing.api_version, stored)
    return (candidate.panel_kind, candidate.api_url, candidate.api_version, read_credentials(candidate)) != before


async def check_connection(
    server: Server, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> ConnectionCheck:
    """Sign in to the panel and read its system stats with a client of its own (closed afterwards), and say in
    one sentence what happened."""
    panel = build_panel(server, sessionmaker, settings)
    try:
        info = await panel.system()
    except PanelAuthError as exc:
        credentials = read_credentials(server)
        secret = "password" if credentials.get("password") and not credentials.get("token") else "token"
        return ConnectionCheck(
            False, f"The panel refused the credentials (wrong password or token): {exc}", field=secret
        )
    except PanelUnavailable as exc:
        return ConnectionCheck(False, f"The panel cannot be reached at {server.api_url}: {exc}")
    except PanelError as exc:
        return ConnectionCheck(False, f"The address answers, but not as a {server.panel_kind} panel: {exc}")
    finally:
        await panel.aclose()
    return ConnectionCheck(
        True, f"Connected: {server.panel_kind} {info.version}, {info.total_users} users", info.version, info.total_users
    )


async def get_server(session: AsyncSession, server_id: int, *, for_update: bool = False) -> Server:
    server = await session.get(Server, server_id, with_for_update=for_update)
    if server is None:
        raise NotFound("No such server.")
    return server


async def _check_name(session: AsyncSession, name: str, server_id: int | None) -> None:
    taken = select(Server.id).where(func.lower(Server.name) == name.lower())
    if server_id is not None:
        taken = taken.where(Server.id != server_id)
    if await session.scalar(taken) is not None:
        raise FieldInvalid("name", f"Another server is already named {name!r}.")


def _remember_version(server: Server, check: ConnectionCheck | None) -> None:
    if check is not None and check.ok and check.version:
        server.settings = {**(server.settings or {}), "panel_version": check.version}


async def create_server(
    session: AsyncSession, actor: Actor, data: ServerInput, check: ConnectionCheck | None = None
) -> Server:
    await _check_name(session, data.name, None)
    server = draft(data)
    _remember_version(server, check)
    session.add(server)
    await session.flush()
    record_by(
        session, actor, action="server.create", entity_type="server", entity_id=server.id, after=public_state(server)
    )
    return server


async def update_server(
    session: AsyncSession, actor: Actor, server: Server, data: ServerInput, check: ConnectionCheck | None = None
) -> Server:
    if PanelKind(server.panel_kind) == PanelKind.DEMO:
        raise FieldInvalid("panel_kind", "The demo panel is built in and cannot be edited.")
    await _check_name(session, data.name, server.id)
    before = public_state(server)
    new = draft(data, server)
    for name in (
        "name",
        "panel_kind",
        "api_url",
        "api_version",
        "location",
        "weight",
        "capacity",
        "accepts_new_accounts",
    ):
        setattr(server, name, getattr(new, name))
    if new.credentials_encrypted != server.credentials_encrypted and read_credentials(new) != read_credentials(server):
        server.credentials_encrypted = new.credentials_encrypted
    server.settings = new.settings
    _remember_version(server, check)
    await session.flush()
    after = public_state(server)
    record_by(
        session, actor, action="server.update", entity_type="server", entity_id=server.id, before=before, after=after
    )
    return server


async def save_server(
    session: AsyncSession,
    actor: Actor,
    data: ServerInput,
    *,
    existing: Server | None,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    skip_test: bool = False,
) -> tuple[Server, ConnectionCheck | None]:
    """Create or edit a server after testing the connection it describes; a failed test refuses the save (with
    the message on the field at fault) unless `skip_test`. Nothing is written before the test passes."""
    if existing is not None and PanelKind(existing.panel_kind) == PanelKind.DEMO:
        raise FieldInvalid("panel_kind", "The demo panel is built in and cannot be edited.")
    candidate = draft(data, existing)
    await _check_name(session, data.name, existing.id if existing is not None else None)
    check = None
    if not skip_test:
        check = await check_connection(candidate, sessionmaker, settings)
        if not check.ok:
            raise FieldInvalid(check.field, check.message)
    if existing is None:
        return await create_server(session, actor, data, check), check
    return await update_server(session, actor, existing, data, check), check


async def set_placement(session: AsyncSession, actor: Actor, server: Server, enabled: bool) -> Server:
    """Whether new accounts may be placed on the server (its existing customers stay)."""
    before = {"accepts_new_accounts": server.accepts_new_accounts}
    server.accepts_new_accounts = enabled
    record_by(
        session,
        actor,
        action="server.placement",
        entity_type="server",
        entity_id=server.id,
        before=before,
        after={"accepts_new_accounts": enabled},
    )
    return server
