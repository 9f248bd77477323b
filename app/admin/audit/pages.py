"""/admin/audit: who changed what, filtered by staff member, action, entity and date, with each row's
before/after shown as a diff."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from app.admin.audit.queries import FILTERS, AuditFilters, audit_page, known_actions, staff_names
from app.admin.audit.views import diff
from app.admin.auth.dependencies import StaffViewer, require
from app.admin.rendering import render
from app.admin.tables import ListState
from app.deps import AppSettings, DbSession

router = APIRouter()


@router.get("/audit", response_class=HTMLResponse)
async def audit_log(
    request: Request, db: DbSession, settings: AppSettings, viewer: Annotated[StaffViewer, require("audit:read")]
) -> HTMLResponse:
    state = ListState.from_request(request, sorts=("id",), default_sort="id", filters=FILTERS)
    filters, errors = AuditFilters.parse(state.params, settings.zone)
    page = await audit_page(db, filters, state)
    context = {
        "section": "audit",
        "view": state,
        "page": page,
        "rows": [(row, diff(row.before, row.after)) for row in page.rows],
        "errors": errors,
        "names": await staff_names(db),
        "actions": await known_actions(db),
    }
    return render(request, "admin/audit/list.html", context, status_code=422 if errors else 200)
