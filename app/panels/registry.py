"""Turns a Server row into a live VpnPanel client (one per server per process), and creates the servers
configured by environment variables."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.kit.crypto import cipher
from app.models import PanelKind, Server
from app.panels.base import VpnPanel
from app.panels.ownership import set_prefix

# The keys of `Server.settings` that shape a panel client (staff edit them on /admin/servers).
CONNECTION_SETTINGS = ("inbounds", "flow", "squad_uuids")


class PanelRegistry:
    """Caches one client per server, rebuilt when the server's connection settings change."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings) -> None:
        self._sessionmaker = sessionmaker
        self._settings = settings
        self._clients: dict[int, tuple[tuple[Any, ...], VpnPanel]] = {}

    def for_server(self, server: Server) -> VpnPanel:
        # Connection settings only: the outage state also lives in `settings` and must not rebuild the client.
        connection = json.dumps({key: server.settings.get(key) for key in CONNECTION_SETTINGS}, sort_keys=True)
        version = (server.panel_kind, server.api_url, server.credentials_encrypted, server.api_version, connection)
        cached = self._clients.get(server.id)
        if cached and cached[0] == version:
            return cached[1]
        panel = self._build(server)
        self._clients[server.id] = (version, panel)
        return panel

    def _build(self, server: Server) -> VpnPanel:
        return build_panel(server, self._sessionmaker, self._settings)

    async def aclose(self) -> None:
        for _, panel in self._clients.values():
            await panel.aclose()
        self._clients.clear()


def build_panel(server: Server, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings) -> VpnPanel:
    """A new client for `server` (not cached: the registry caches; staff's "test connection" uses one and closes
    it, so a connection that is not saved yet never lands in the cache)."""
    credentials = read_credentials(server)
    if server.panel_kind == PanelKind.MARZBAN:
        from app.panels.marzban import MarzbanPanel

        return MarzbanPanel(
            server.api_url,
            credentials.get("username", ""),
            credentials.get("password", ""),
            token=credentials.get("token", ""),
            inbounds=server.settings.get("inbounds"),
            flow=server.settings.get("flow", ""),
        )
    if server.panel_kind == PanelKind.REMNAWAVE:
        from app.panels.remnawave import RemnawavePanel

        # Secrets for a proxy in front of the panel (Caddy's X-Api-Key, cookies) are credentials too.
        return RemnawavePanel(
            server.api_url,
            credentials.get("token", ""),
            api_version=server.api_version or "auto",
            squad_uuids=server.settings.get("squad_uuids"),
            extra_headers=credentials.get("headers"),
            cookies=credentials.get("cookies"),
        )
    from app.panels.demo import DemoPanel

    return DemoPanel(sessionmaker, public_base_url=settings.public_base_url, server_name=server.name)


def read_credentials(server: Server) -> dict[str, Any]:
    return json.loads(cipher().decrypt(server.credentials_encrypted)) if server.credentials_encrypted else {}


def seal_credentials(credentials: dict[str, Any]) -> str:
    return cipher().encrypt(json.dumps(credentials))


async def bootstrap_servers(session: AsyncSession, settings: Settings) -> list[Server]:
    """Create the servers named by MARZBAN_* / REMNAWAVE_* (and the demo panel in demo mode) if missing, and
    store PANEL_USERNAME_PREFIX when given."""
    if settings.panel_username_prefix:
        await set_prefix(session, settings.panel_username_prefix)
    wanted: list[tuple[str, PanelKind, str, dict[str, Any], str | None]] = []
    if settings.marzban_api_url:
        creds = {
            "username": settings.marzban_admin_username,
            "password": settings.marzban_admin_password,
            "token": settings.marzban_api_token,
        }
        # Seed 000 writes the URL with its /api suffix; the adapter adds the paths itself.
        url = settings.marzban_api_url.removesuffix("/api")
        wanted.append(("marzban", PanelKind.MARZBAN, url, creds, None))
    if settings.remnawave_api_url:
        creds = {"token": settings.remnawave_api_token}
        version = None if settings.remnawave_api_version == "auto" else settings.remnawave_api_version
        wanted.append(("remnawave", PanelKind.REMNAWAVE, settings.remnawave_api_url, creds, version))
    if settings.demo_mode:
        wanted.append(("demo", PanelKind.DEMO, "internal://demo", {}, None))
    created = []
    for name, kind, url, creds, version in wanted:
        if await session.scalar(select(Server.id).where(Server.panel_kind == kind, Server.api_url == url)):
            continue
        server = Server(
            name=name,
            panel_kind=kind,
            api_url=url,
            credentials_encrypted=seal_credentials(creds),
            api_version=version,
            location=settings.default_location,
        )
        session.add(server)
        created.append(server)
    await session.flush()
    return created
