"""/admin/referrals: the program's figures, the top referrers, addresses shared by several invited customers,
and /admin/referrals/{user_id}: one referrer's invited customers with their payments."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from app.admin.auth.dependencies import require
from app.admin.finance.views import percent
from app.admin.promo.views import amounts_text
from app.admin.referrals.queries import (
    SHARED_IP_MIN,
    friends_of,
    program_figures,
    refused_referrals,
    shared_addresses,
    top_referrers,
)
from app.admin.rendering import render
from app.admin.users.schemas import RowId
from app.deps import DbSession
from app.kit.clock import utcnow
from app.users.staff_actions import get_user

router = APIRouter(prefix="/referrals")
HELPERS = {"percent": percent, "amounts_text": amounts_text}


@router.get("", response_class=HTMLResponse, dependencies=[require("finance:read")])
async def referrals_page(request: Request, db: DbSession) -> Response:
    context = {
        "section": "referrals",
        "figures": await program_figures(db, utcnow()),
        "top": await top_referrers(db),
        "shared": await shared_addresses(db),
        "shared_min": SHARED_IP_MIN,
        "refused": await refused_referrals(db),
        **HELPERS,
    }
    return render(request, "admin/referrals/index.html", context)


@router.get("/{user_id}", response_class=HTMLResponse, dependencies=[require("finance:read")])
async def referrer_page(request: Request, db: DbSession, user_id: RowId) -> Response:
    referrer = await get_user(db, user_id)
    context = {"section": "referrals", "referrer": referrer, "friends": await friends_of(db, user_id, utcnow())}
    return render(request, "admin/referrals/referrer.html", context | HELPERS)
