"""GET /api/admin/payments (the list's filters as JSON, cursor pagination) and GET /api/admin/payments/{id}."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from app.admin.auth.dependencies import require
from app.admin.payments.queries import MAX_PAGE_SIZE, PAGE_SIZE, PaymentFilters, PaymentQuery, payment_detail
from app.admin.payments.schemas import PaymentDetailOut, PaymentOut, PaymentPage
from app.deps import DbSession

router = APIRouter(prefix="/payments")


@router.get("", response_model=PaymentPage, dependencies=[require("payments:read")])
async def list_payments(
    db: DbSession,
    filters: Annotated[PaymentFilters, Query()],
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = PAGE_SIZE,
) -> PaymentPage:
    """Payments, filtered and sorted as on the page; `next_cursor` fetches the next page."""
    page = await PaymentQuery(filters).page(db, cursor=cursor, limit=limit)
    return PaymentPage(items=[PaymentOut.of(row.payment, row.user) for row in page.rows], next_cursor=page.next_cursor)


@router.get("/{payment_id}", response_model=PaymentDetailOut, dependencies=[require("payments:read")])
async def get_payment(db: DbSession, payment_id: Annotated[str, Path(max_length=64)]) -> PaymentDetailOut:
    """One payment by our id or its public id: the events received with their verified payloads, the audit trail
    (refund requests included) and the receipt."""
    return PaymentDetailOut.of_detail(await payment_detail(db, payment_id))
