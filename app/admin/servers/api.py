"""/api/admin/servers: the servers with health and load, one server with its nodes, add and edit a panel
connection (tested first), test a connection, placement on/off, drain a server, move chosen accounts. The same
domain services and permission as the pages; no answer carries a credential."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request

from app.admin.auth.dependencies import StaffViewer, require
from app.admin.servers.access import CONNECT, WRITE, check_connection_change
from app.admin.servers.queries import server_detail, server_rows
from app.admin.servers.schemas import (
    ConnectionOut,
    DrainIn,
    MovedOut,
    MoveIn,
    PlacementIn,
    ServerDetailOut,
    ServerIn,
    ServerOut,
)
from app.deps import DbSession
from app.inbound import RowId
from app.panels import servers
from app.panels.servers import ServerInput
from app.provisioning import drain

router = APIRouter(prefix="/servers")


async def _detail(db: DbSession, server_id: int) -> ServerDetailOut:
    return ServerDetailOut.of_detail(await server_detail(db, server_id))


@router.get("", response_model=list[ServerOut], dependencies=[require(WRITE)])
async def list_servers(db: DbSession) -> list[ServerOut]:
    """Every server: health from the health job, load (accounts / capacity), online now, traffic, panel version."""
    return [ServerOut.of(row) for row in await server_rows(db)]


@router.get("/{server_id}", response_model=ServerDetailOut, dependencies=[require(WRITE)])
async def get_server(db: DbSession, server_id: RowId) -> ServerDetailOut:
    return await _detail(db, server_id)


@router.post("", response_model=ServerDetailOut, status_code=201)
async def create_server(
    request: Request, db: DbSession, body: ServerIn, viewer: Annotated[StaffViewer, require(CONNECT)]
) -> ServerDetailOut:
    """Add a panel connection; its connection is tested first (a failure is a 422 naming the field at fault)
    unless `skip_test`."""
    resources = request.app.state.resources
    server, _ = await servers.save_server(
        db,
        viewer.actor,
        body,
        existing=None,
        sessionmaker=resources.sessionmaker,
        settings=request.app.state.settings,
        skip_test=body.skip_test,
    )
    return await _detail(db, server.id)


@router.put("/{server_id}", response_model=ServerDetailOut)
async def update_server(
    request: Request, db: DbSession, server_id: RowId, body: ServerIn, viewer: Annotated[StaffViewer, require(WRITE)]
) -> ServerDetailOut:
    """Edit a panel connection; secrets left out keep the stored ones."""
    existing = await servers.get_server(db, server_id, for_update=True)
    check_connection_change(viewer, body, existing)
    await servers.save_server(
        db,
        viewer.actor,
        body,
        existing=existing,
        sessionmaker=request.app.state.resources.sessionmaker,
        settings=request.app.state.settings,
        skip_test=body.skip_test,
    )
    return await _detail(db, server_id)


@router.post("/test", response_model=ConnectionOut, dependencies=[require(WRITE)])
async def test_connection(request: Request, body: ServerInput) -> ConnectionOut:
    """Try a connection before saving it: `ok` and one sentence saying what happened."""
    candidate = servers.draft(body)
    return ConnectionOut.of(
        await servers.check_connection(candidate, request.app.state.resources.sessionmaker, request.app.state.settings)
    )


@router.post("/{server_id}/test", response_model=ConnectionOut, dependencies=[require(WRITE)])
async def test_server_connection(
    request: Request, db: DbSession, server_id: RowId, body: ServerInput | None = None
) -> ConnectionOut:
    """Test the stored connection, or the edited one in the body (blank secrets: the stored ones)."""
    existing = await servers.get_server(db, server_id)
    candidate = servers.draft(body, existing) if body is not None else existing
    return ConnectionOut.of(
        await servers.check_connection(candidate, request.app.state.resources.sessionmaker, request.app.state.settings)
    )


@router.post("/{server_id}/placement", response_model=ServerDetailOut)
async def set_placement(
    db: DbSession, server_id: RowId, body: PlacementIn, viewer: Annotated[StaffViewer, require(WRITE)]
) -> ServerDetailOut:
    server = await servers.get_server(db, server_id, for_update=True)
    await servers.set_placement(db, viewer.actor, server, body.accepts_new_accounts)
    await db.flush()
    return await _detail(db, server_id)


@router.post("/{server_id}/drain", response_model=ServerDetailOut, status_code=202)
async def drain_server(
    db: DbSession, server_id: RowId, body: DrainIn, viewer: Annotated[StaffViewer, require(WRITE)]
) -> ServerDetailOut:
    """Stop placing accounts on the server and move every customer to `target_id` through the outbox; `drain`
    in the answer (and in GET) shows the progress."""
    server = await servers.get_server(db, server_id, for_update=True)
    await drain.start_drain(db, viewer.actor, server, body.target_id)
    await db.flush()
    return await _detail(db, server_id)


@router.post("/{server_id}/move", response_model=MovedOut)
async def move_accounts(
    db: DbSession, server_id: RowId, body: MoveIn, viewer: Annotated[StaffViewer, require(WRITE)]
) -> MovedOut:
    """Move the chosen accounts of this server to `target_id`; their /sub/ links stay the same."""
    server = await servers.get_server(db, server_id, for_update=True)
    moved = await drain.move_accounts(db, viewer.actor, server, body.target_id, body.account_ids)
    return MovedOut(moved=moved, target_id=body.target_id)
