"""Where a payment provider sends the customer back (SPEC §3.4): a public page, since that is often the system
browser, where the customer has no session (they paid from the Mini App) — it says only paid, failed,
cancelled or still waiting (no amount, plan or name: the address is all it takes to see it) and offers the way
back to Telegram. A browser signed in as the payment's owner goes on to the cabinet's own payment page."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select

from app.auth.sessions import SESSION_COOKIE, resolve_session
from app.cabinet.pages import render
from app.deps import AppSettings, DbSession
from app.kit.errors import NotFound
from app.models import Payment, PaymentStatus

router = APIRouter(include_in_schema=False)

# What the page may say about a payment; refunds and amount mismatches are for the signed-in pages.
SHOWN = {
    PaymentStatus.PENDING: "pending",
    PaymentStatus.SUCCEEDED: "succeeded",
    PaymentStatus.FAILED: "failed",
    PaymentStatus.CANCELLED: "cancelled",
}


@router.get("/payments/{public_id}", response_model=None)
async def payment_result(request: Request, public_id: str, db: DbSession, settings: AppSettings) -> Response:
    payment = await db.scalar(select(Payment).where(Payment.public_id == public_id[:36]))
    if payment is None:
        raise NotFound("There is no such payment.", code="payment_not_found")
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie and (active := await resolve_session(db, cookie)) is not None and active.user.id == payment.user_id:
        return RedirectResponse(f"/app/payments/{payment.public_id}", status_code=303)
    status = SHOWN.get(payment.status, "other")
    bot = settings.bot_username.lstrip("@")
    context = {
        "payment_id": payment.public_id,
        "status": status,
        "telegram_link": f"https://t.me/{bot}" if bot else None,
    }
    headers = {"cache-control": "no-store", "referrer-policy": "no-referrer"}
    return render(request, "checkout/result.html", context, headers=headers)
