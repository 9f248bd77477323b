"""The JSON shapes of /api/admin/servers. No answer carries a credential: `secrets_set` says which are stored."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from app.admin.servers.queries import ServerRow
from app.panels.servers import ConnectionCheck, ServerInput, secrets_set

MAX_ROW_ID = 2**63 - 1


class ServerIn(ServerInput):
    # Save without a successful connection test (a panel that is down right now, being set up).
    skip_test: bool = False


class DrainIn(BaseModel):
    target_id: int = Field(ge=1, le=MAX_ROW_ID)


class MoveIn(BaseModel):
    target_id: int = Field(ge=1, le=MAX_ROW_ID)
    account_ids: list[int] = Field(min_length=1, max_length=1000)


class PlacementIn(BaseModel):
    accepts_new_accounts: bool


class ConnectionOut(BaseModel):
    ok: bool
    message: str
    version: str | None = None
    users: int | None = None

    @classmethod
    def of(cls, check: ConnectionCheck) -> ConnectionOut:
        return cls(ok=check.ok, message=check.message, version=check.version, users=check.users)


class NodeOut(BaseModel):
    name: str
    address: str
    port: int | None
    is_online: bool
    is_enabled: bool
    users_online: int | None
    message: str | None


class ServerOut(BaseModel):
    id: int
    name: str
    panel_kind: str
    api_url: str
    api_version: str | None
    panel_version: str | None
    location: str
    weight: int
    capacity: int
    is_enabled: bool
    accepts_new_accounts: bool
    health: str
    health_checked_at: datetime | None
    last_error: str | None
    accounts: int
    load_percent: int
    online: int
    traffic_today_bytes: int
    traffic_period_bytes: int
    nodes_online: int
    nodes: int
    squads: list[str]
    secrets_set: dict[str, bool]
    drain: dict[str, Any] | None

    @classmethod
    def of(cls, row: ServerRow) -> ServerOut:
        s = row.server
        return cls(
            id=s.id,
            name=s.name,
            panel_kind=str(s.panel_kind.value if hasattr(s.panel_kind, "value") else s.panel_kind),
            api_url=s.api_url,
            api_version=s.api_version,
            panel_version=row.panel_version,
            location=s.location,
            weight=s.weight,
            capacity=s.capacity,
            is_enabled=s.is_enabled,
            accepts_new_accounts=s.accepts_new_accounts,
            health=s.health,
            health_checked_at=s.health_checked_at,
            last_error=s.last_error,
            accounts=row.accounts,
            load_percent=row.load_percent,
            online=row.online,
            traffic_today_bytes=row.traffic_today,
            traffic_period_bytes=row.traffic_period,
            nodes_online=row.nodes_online,
            nodes=row.nodes,
            squads=list((s.settings or {}).get("squad_uuids") or []),
            secrets_set=secrets_set(s) if s.credentials_encrypted else {},
            drain=row.drain,
        )


class ServerDetailOut(ServerOut):
    node_list: list[NodeOut]

    @classmethod
    def of_detail(cls, row: ServerRow) -> ServerDetailOut:
        nodes = [
            NodeOut(
                name=n.name,
                address=n.address,
                port=n.port,
                is_online=n.is_online,
                is_enabled=n.is_enabled,
                users_online=n.users_online,
                message=n.message,
            )
            for n in row.node_list
        ]
        return cls(**ServerOut.of(row).model_dump(), node_list=nodes)


class MovedOut(BaseModel):
    moved: list[int]
    target_id: int
