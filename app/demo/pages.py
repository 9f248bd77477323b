"""The landing page of the embedded demo: what is in it, and one-click sign-in as the demo customer."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import func, select

from app.auth.pages import login_csrf, set_login_csrf
from app.deps import AppSettings, DbSession
from app.models import FaqItem, Plan, Staff, User

router = APIRouter(include_in_schema=False)


@router.get("/", response_model=None)
async def index(request: Request, session: DbSession, settings: AppSettings) -> Response:
    if not settings.demo_mode:
        return RedirectResponse("/app", status_code=307)
    plans = (await session.scalars(select(Plan).where(Plan.is_active).order_by(Plan.sort_order))).all()
    faq_count = await session.scalar(select(func.count()).select_from(FaqItem))
    customer = await session.scalar(select(User).where(User.is_demo).limit(1))
    staff = await session.scalar(select(Staff).where(Staff.is_demo).limit(1))
    token = login_csrf(request)
    context = {"plans": plans, "faq_count": faq_count, "customer": customer, "staff": staff, "login_csrf": token}
    response: HTMLResponse = request.app.state.templates.response(request, "demo/index.html", context)
    return set_login_csrf(response, token, settings)
