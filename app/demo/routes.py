"""The landing page of the embedded demo."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import func, select

from app.deps import DbSession
from app.models import FaqItem, Plan, Staff, User

router = APIRouter(include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
async def index(request: Request, session: DbSession) -> HTMLResponse:
    plans = (await session.scalars(select(Plan).where(Plan.is_active).order_by(Plan.sort_order))).all()
    faq_count = await session.scalar(select(func.count()).select_from(FaqItem))
    customer = await session.scalar(select(User).where(User.is_demo).limit(1))
    staff = await session.scalar(select(Staff).where(Staff.is_demo).limit(1))
    context = {"plans": plans, "faq_count": faq_count, "customer": customer, "staff": staff}
    return request.app.state.templates.response(request, "demo/index.html", context)
