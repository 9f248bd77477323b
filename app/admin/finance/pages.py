"""/admin/finance: every finance figure of app/stats/finance.py on one page; `?by=day|week|month` picks the
revenue chart's buckets (a wrong one is named, with a 422, and the page shows months)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from app.admin.auth.dependencies import require
from app.admin.finance.views import cohort_context, finance_context
from app.admin.rendering import render
from app.deps import AppSettings, DbSession
from app.kit.clock import utcnow
from app.kit.templating import Templates
from app.stats.finance import GRANULARITIES, cohort_table, finance_report

router = APIRouter(prefix="/finance")
DEFAULT_GRANULARITY = "month"


@router.get("", response_class=HTMLResponse, dependencies=[require("finance:read")])
async def finance_page(
    request: Request, db: DbSession, settings: AppSettings, by: Annotated[str | None, Query(max_length=16)] = None
) -> Response:
    _ = Templates.base_context(request)["_"]
    error = None
    granularity = by or DEFAULT_GRANULARITY
    if granularity not in GRANULARITIES:
        error = _("admin_finance.bad_granularity", allowed=", ".join(GRANULARITIES))
        granularity = DEFAULT_GRANULARITY
    report = await finance_report(db, utcnow(), granularity, settings.reporting_currency)
    context = {"section": "finance", "granularities": list(GRANULARITIES), "by_error": error}
    context |= finance_context(report, _)
    return render(request, "admin/finance/index.html", context, status_code=422 if error else 200)


@router.get("/cohorts", response_class=HTMLResponse, dependencies=[require("finance:read")])
async def cohorts_block(request: Request, db: DbSession) -> Response:
    """The cohort triangle alone (the page's `cohorts` block), for a refresh or a look without the rest."""
    cohorts = await cohort_table(db, utcnow())
    return render(request, "admin/finance/index.html", cohort_context(cohorts), block="cohorts")
