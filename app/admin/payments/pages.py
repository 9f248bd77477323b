"""/admin/payments: the list (filters and search in the URL, keyset pages, mismatches highlighted), its CSV
export, and one payment's page (events with their verified payloads, refunds, audit trail, receipt)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse, Response

from app.admin.auth.dependencies import StaffViewer, require
from app.admin.exports import (
    EXCEL_JOB,
    audit_csv,
    check_size,
    csv_response,
    own_chat,
    request_excel,
    telegram_chat_of,
)
from app.admin.forms import parse_form
from app.admin.payments.exports import PAYMENTS
from app.admin.payments.queries import PAGE_SIZE, PaymentFilters, PaymentQuery, payment_detail
from app.admin.payments.views import HELPERS
from app.admin.rendering import render
from app.admin.tables import Page
from app.deps import DbSession
from app.kit.errors import ValidationFailed
from app.kit.jobs import enqueue
from app.kit.money import CURRENCY_EXPONENTS
from app.models import PaymentStatus

router = APIRouter(prefix="/payments")

FILTER_FIELDS = ("search", "provider", "status", "currency", "user", "created_from", "created_to", "sort", "dir")


def _filters(request: Request) -> tuple[PaymentFilters | None, dict[str, str]]:
    return parse_form(PaymentFilters, {k: v for k, v in request.query_params.items() if k in FILTER_FIELDS})


@router.get("", response_class=HTMLResponse, dependencies=[require("payments:read")])
async def payments_page(request: Request, db: DbSession) -> Response:
    filters, errors = _filters(request)
    cursor = request.query_params.get("cursor") or None
    if filters is None:
        # A hand-edited or half-typed filter: say which one, list nothing rather than something else.
        query = PaymentQuery(PaymentFilters())
        view = query.list_state(request.url.path)
        page: Page = Page([], None)
        status_code = 422
    else:
        query = PaymentQuery(filters)
        view = query.list_state(request.url.path, cursor=cursor, limit=PAGE_SIZE)
        page = await query.page(db, cursor=cursor, limit=PAGE_SIZE)
        status_code = 200
    return render(
        request,
        "admin/payments/list.html",
        {
            "section": "payments",
            "view": view,
            "page": page,
            "values": dict(request.query_params),
            "errors": errors,
            "statuses": [status.value for status in PaymentStatus],
            "currencies": sorted(CURRENCY_EXPONENTS),
            "export_url": "/admin/payments/export.csv?" + str(request.url.query) if filters else None,
            "telegram_chat": own_chat(request),
            "export_params": filters.query_params() if filters else {},
            **HELPERS,
        },
        status_code=status_code,
    )


@router.get("/export.csv", response_model=None)
async def export_payments(
    request: Request, db: DbSession, viewer: Annotated[StaffViewer, require("export")]
) -> Response:
    """The filtered list as CSV, streamed; refused above the export cap before anything is sent."""
    filters, errors = _filters(request)
    if filters is None:
        raise ValidationFailed("; ".join(f"{name}: {message}" for name, message in errors.items()))
    params = filters.query_params()
    total = await check_size(db, PAYMENTS.statement(params))
    audit_csv(db, viewer.actor, PAYMENTS, params, total)
    return csv_response(request.app.state.resources.sessionmaker, PAYMENTS, params)


@router.post("/export.xlsx", response_class=HTMLResponse)
async def export_payments_excel(
    request: Request, db: DbSession, viewer: Annotated[StaffViewer, require("export")]
) -> Response:
    """The filtered list as an Excel file, built by the export job (an .xlsx is a zip: it cannot be streamed);
    the answer is the file's status, which polls itself until the download is ready."""
    form = await request.form()
    filters, errors = parse_form(PaymentFilters, {k: v for k, v in form.items() if k in FILTER_FIELDS})
    if filters is None:
        raise ValidationFailed("; ".join(f"{name}: {message}" for name, message in errors.items()))
    chat_id = telegram_chat_of(request, form)
    export = await request_excel(db, viewer.actor, PAYMENTS, filters.query_params(), telegram_chat_id=chat_id)
    await db.commit()
    await enqueue(EXCEL_JOB, export_id=export.id, _job_id=f"excel:{export.id}")
    # The customers section's status block serves any kind of export file (its own download links included).
    return render(request, "admin/users/export_status.html", {"export": export}, status_code=202)


@router.get("/{payment_id}", response_class=HTMLResponse, dependencies=[require("payments:read")])
async def payment_page(request: Request, db: DbSession, payment_id: Annotated[str, Path(max_length=64)]) -> Response:
    detail = await payment_detail(db, payment_id)
    return render(request, "admin/payments/detail.html", {"section": "payments", "detail": detail, **HELPERS})
