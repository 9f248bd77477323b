"""/admin/servers: the servers with health, load, online now, traffic and panel version; add or edit a panel
connection with "test connection" (a save tests it too, unless told not to); placement on/off; drain a server
(its customers move to another through the outbox, their /sub/ links unchanged) with its progress; orphans and
name clashes found on the panel, with their actions. The rules are in app/panels/servers.py,
app/panels/orphans.py and app/provisioning/drain.py; this is the page."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from app.admin.auth.dependencies import StaffViewer, require
from app.admin.forms import field_errors, undo
from app.admin.rendering import redirect, render, translate
from app.admin.servers.access import CONNECT, WRITE, check_connection_change
from app.admin.servers.queries import move_targets, server_detail, server_rows
from app.admin.servers.schemas import ServerIn
from app.admin.servers.views import HELPERS, form_values
from app.deps import DbSession
from app.inbound import RowId
from app.kit.errors import AppError
from app.kit.field_errors import FieldInvalid
from app.models import Server
from app.panels import orphans, servers
from app.panels.ownership import recent_clashes
from app.panels.servers import ConnectionCheck
from app.provisioning import drain

router = APIRouter(prefix="/servers")
Viewer = Annotated[StaffViewer, require(WRITE)]
# Form fields that are secrets: never shown again, not even after a refused save.
SECRETS = ("password", "token", "headers", "cookies")


async def _form(request: Request) -> dict[str, str]:
    return {key: str(value) for key, value in (await request.form()).items() if key != "csrf_token"}


def _server_input(form: dict[str, str]) -> ServerIn:
    """The form as the API's model: blank fields are missing, checkboxes are "1" or absent."""
    values: dict[str, Any] = {k: v for k, v in form.items() if v.strip() != "" and k not in ("test",)}
    values["accepts_new_accounts"] = form.get("accepts_new_accounts") == "1"
    values["skip_test"] = form.get("skip_test") == "1"
    return ServerIn.model_validate(values)


def _shown(form: dict[str, str]) -> dict[str, str]:
    return {key: value for key, value in form.items() if key not in SECRETS}


async def _list(request: Request, db: AsyncSession, toasts: list[tuple[str, str]] | None = None) -> HTMLResponse:
    context = {"section": "servers", "rows": await server_rows(db), **HELPERS}
    return render(request, "admin/servers/list.html", context, toasts=toasts)


async def _editor(
    request: Request,
    server: Server | None,
    *,
    values: dict[str, Any],
    errors: dict[str, str] | None = None,
    check: ConnectionCheck | None = None,
    status: int = 200,
) -> HTMLResponse:
    context = {
        "section": "servers",
        "server": server,
        "secrets": servers.secrets_set(server) if server is not None and server.credentials_encrypted else {},
        "values": values,
        "errors": errors or {},
        "check": check,
    }
    return render(request, "admin/servers/form.html", context, status_code=status)


async def _detail(
    request: Request,
    db: AsyncSession,
    server_id: int,
    *,
    errors: dict[str, str] | None = None,
    toasts: list[tuple[str, str]] | None = None,
    status: int = 200,
) -> HTMLResponse:
    row = await server_detail(db, server_id)
    context = {
        "section": "servers",
        "row": row,
        "s": row.server,
        "targets": await move_targets(db, row.server),
        "clashes": [c for c in await recent_clashes(db) if c.server == row.server.name],
        "errors": errors or {},
        **HELPERS,
    }
    return render(request, "admin/servers/detail.html", context, toasts=toasts, status_code=status)


@router.get("", response_class=HTMLResponse)
async def servers_page(request: Request, db: DbSession, viewer: Viewer) -> Response:
    return await _list(request, db)


@router.get("/new", response_class=HTMLResponse, dependencies=[require(CONNECT)])
async def new_server(request: Request) -> Response:
    return await _editor(request, None, values={"panel_kind": "marzban", "weight": 1, "capacity": 1000})


async def _save(request: Request, db: AsyncSession, viewer: StaffViewer, existing: Server | None) -> Response:
    form = await _form(request)
    try:
        data = _server_input(form)
        if existing is not None:
            check_connection_change(viewer, data, existing)
        server, _ = await servers.save_server(
            db,
            viewer.actor,
            data,
            existing=existing,
            sessionmaker=request.app.state.resources.sessionmaker,
            settings=request.app.state.settings,
            skip_test=data.skip_test,
        )
    except ValidationError as exc:
        return await _editor(request, existing, values=_shown(form), errors=field_errors(exc), status=422)
    except FieldInvalid as exc:
        await undo(request, db)
        return await _editor(request, existing, values=_shown(form), errors={exc.field: exc.message}, status=422)
    await db.commit()
    return redirect(request, f"/admin/servers/{server.id}")


@router.post("", response_class=HTMLResponse)
async def create_server(request: Request, db: DbSession, viewer: Annotated[StaffViewer, require(CONNECT)]) -> Response:
    return await _save(request, db, viewer, None)


async def _test(request: Request, existing: Server | None) -> HTMLResponse:
    """The connection the form describes, tried now: a result block (the form itself is left as typed)."""
    form = await _form(request)
    try:
        candidate = servers.draft(_server_input(form), existing)
    except ValidationError as exc:
        errors = field_errors(exc)
        check = ConnectionCheck(False, "; ".join(f"{name}: {message}" for name, message in errors.items()))
    except FieldInvalid as exc:
        check = ConnectionCheck(False, f"{exc.field}: {exc.message}")
    else:
        resources = request.app.state.resources
        check = await servers.check_connection(candidate, resources.sessionmaker, request.app.state.settings)
    return render(request, "admin/servers/check.html", {"check": check}, status_code=200 if check.ok else 422)


@router.post("/test", response_class=HTMLResponse, dependencies=[require(WRITE)])
async def test_new_connection(request: Request) -> Response:
    return await _test(request, None)


@router.get("/{server_id}", response_class=HTMLResponse)
async def server_page(request: Request, db: DbSession, server_id: RowId, viewer: Viewer) -> Response:
    return await _detail(request, db, server_id)


@router.get("/{server_id}/edit", response_class=HTMLResponse)
async def edit_server(request: Request, db: DbSession, server_id: RowId, viewer: Viewer) -> Response:
    server = await servers.get_server(db, server_id)
    return await _editor(request, server, values=form_values(server))


@router.post("/{server_id}", response_class=HTMLResponse)
async def update_server(request: Request, db: DbSession, server_id: RowId, viewer: Viewer) -> Response:
    return await _save(request, db, viewer, await servers.get_server(db, server_id, for_update=True))


@router.post("/{server_id}/test", response_class=HTMLResponse)
async def test_server_connection(request: Request, db: DbSession, server_id: RowId, viewer: Viewer) -> Response:
    return await _test(request, await servers.get_server(db, server_id))


async def _act(request: Request, db: AsyncSession, viewer: StaffViewer, server_id: int, do: Any, done: str) -> Response:
    """Run one action of the server page: the page again with a toast, or with the refusal next to its form
    (and nothing changed)."""
    try:
        await do()
        await db.flush()
    except FieldInvalid as exc:
        await undo(request, db)
        return await _detail(request, db, server_id, errors={exc.field: exc.message}, status=422)
    except AppError as exc:
        await undo(request, db)
        return await _detail(request, db, server_id, errors={"__all__": exc.message}, status=exc.status_code)
    await db.commit()
    return await _detail(request, db, server_id, toasts=[("success", translate(request, done))])


def _target(form: dict[str, str]) -> int:
    value = form.get("target_id", "").strip()
    if not value.isdigit() or not 0 < int(value) < 2**63:
        raise FieldInvalid("target_id", "Choose the server to move the customers to.")
    return int(value)


@router.post("/{server_id}/placement", response_class=HTMLResponse)
async def set_placement(request: Request, db: DbSession, server_id: RowId, viewer: Viewer) -> Response:
    form = await _form(request)

    async def do() -> None:
        if form.get("accepts_new_accounts") not in ("0", "1"):
            raise FieldInvalid("accepts_new_accounts", "Say whether the server takes new accounts (1 or 0).")
        server = await servers.get_server(db, server_id, for_update=True)
        await servers.set_placement(db, viewer.actor, server, form["accepts_new_accounts"] == "1")

    return await _act(request, db, viewer, server_id, do, "admin_servers.toast.placement")


@router.post("/{server_id}/drain", response_class=HTMLResponse)
async def drain_server(request: Request, db: DbSession, server_id: RowId, viewer: Viewer) -> Response:
    form = await _form(request)

    async def do() -> None:
        server = await servers.get_server(db, server_id, for_update=True)
        await drain.start_drain(db, viewer.actor, server, _target(form))

    return await _act(request, db, viewer, server_id, do, "admin_servers.toast.drain")


@router.get("/{server_id}/drain", response_class=HTMLResponse)
async def drain_progress(request: Request, db: DbSession, server_id: RowId, viewer: Viewer) -> Response:
    """The drain's progress block (it polls itself while the drain runs)."""
    row = await server_detail(db, server_id)
    return render(request, "admin/servers/drain.html", {"row": row, "s": row.server, **HELPERS})


# --- orphans (a live read of the panel, loaded after the page) --------------------------------------------------


async def _orphans(request: Request, db: AsyncSession, server_id: int, *, error: str | None = None) -> HTMLResponse:
    server = await servers.get_server(db, server_id)
    found, problem = None, error
    try:
        found = await orphans.list_orphans(request.app.state.resources, server)
    except AppError as exc:
        problem = exc.message
    context = {"s": server, "found": found, "error": problem, "ignored": orphans.ignored(server)}
    return render(request, "admin/servers/orphans.html", context, status_code=422 if error else 200)


@router.get("/{server_id}/orphans", response_class=HTMLResponse)
async def server_orphans(request: Request, db: DbSession, server_id: RowId, viewer: Viewer) -> Response:
    return await _orphans(request, db, server_id)


async def _orphan_action(
    request: Request, db: AsyncSession, viewer: StaffViewer, server_id: int, action: str
) -> Response:
    form = await _form(request)
    server = await servers.get_server(db, server_id, for_update=True)
    try:
        if action == "delete":
            await orphans.delete_orphan(db, viewer.actor, server, form.get("username"))
        else:
            await orphans.ignore_orphan(db, viewer.actor, server, form.get("username"))
    except AppError as exc:
        await undo(request, db)
        return await _orphans(request, db, server_id, error=exc.message)
    await db.commit()
    return await _orphans(request, db, server_id)


@router.post("/{server_id}/orphans/delete", response_class=HTMLResponse)
async def delete_orphan(request: Request, db: DbSession, server_id: RowId, viewer: Viewer) -> Response:
    return await _orphan_action(request, db, viewer, server_id, "delete")


@router.post("/{server_id}/orphans/ignore", response_class=HTMLResponse)
async def ignore_orphan(request: Request, db: DbSession, server_id: RowId, viewer: Viewer) -> Response:
    return await _orphan_action(request, db, viewer, server_id, "ignore")
