"""Who may change what on a server: `servers:write` runs servers (placement, drain, moves, orphans, names,
weights), `servers:connect` adds one or changes its connection (address, kind, API version, login, token, proxy
headers and cookies) — credentials stay with owners (ADMIN.md)."""

from __future__ import annotations

from app.admin.auth.dependencies import StaffViewer
from app.kit.errors import Forbidden
from app.models import Server
from app.panels import servers

WRITE = "servers:write"
CONNECT = "servers:connect"


def check_connection_change(viewer: StaffViewer, data: servers.ServerInput, existing: Server) -> None:
    """Refuse an edit that changes the panel connection without `servers:connect` (nothing is saved)."""
    if not viewer.can(CONNECT) and servers.changes_connection(data, existing):
        raise Forbidden("Only an owner can change a server's address or sign-in; the other fields can be saved alone.")
