"""What the servers pages show: the health badge, a server's connection as form values (never its secrets),
and the drain's progress as a share."""

from __future__ import annotations

from typing import Any

from app.kit.clock import parse_utc
from app.models import PanelKind, Server


def health_badge(server: Server) -> tuple[str, str]:
    """(badge class, i18n key) of the server's state as the health job last saw it."""
    if not server.is_enabled:
        return "", "admin_servers.health.off"
    if server.health == "down":
        return "bad", "admin_servers.health.down"
    if server.health == "ok":
        return "ok", "admin_servers.health.ok"
    return "warn", "admin_servers.health.unknown"


def drain_percent(drain: dict[str, Any] | None) -> int:
    if not drain or not drain.get("total"):
        return 100 if drain and drain.get("finished_at") else 0
    return min(100, round(100 * int(drain.get("moved") or 0) / int(drain["total"])))


def form_values(server: Server) -> dict[str, Any]:
    """The edit form's values: the connection without any secret (those show only as "stored")."""
    settings = server.settings or {}
    return {
        "name": server.name,
        "panel_kind": PanelKind(server.panel_kind).value,
        "api_url": server.api_url,
        "api_version": server.api_version or "auto",
        "squads": ", ".join(settings.get("squad_uuids") or []),
        "location": server.location,
        "weight": server.weight,
        "capacity": server.capacity,
        "accepts_new_accounts": server.accepts_new_accounts,
    }


HELPERS = {"health_badge": health_badge, "drain_percent": drain_percent, "parse_utc": parse_utc}
