"""The referral page (SPEC §3.5): `/app/referrals`, with `?period=week|month|all` for the leaderboard. An HTMX
request targeting `leaderboard` gets that block alone and runs only the leaderboard query."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from app.auth.dependencies import PageViewer
from app.cabinet.pages import is_htmx, render
from app.connect.qr import qr_svg
from app.deps import AppSettings, DbSession
from app.kit.clock import utcnow
from app.referrals.service import Period, leaderboard, referral_history, referral_links, referral_stats
from app.runtime_settings import service as runtime_settings

router = APIRouter(prefix="/app/referrals", include_in_schema=False)

LEADERBOARD_BLOCK = "leaderboard"


@router.get("", response_class=HTMLResponse)
async def referral_page(
    request: Request, viewer: PageViewer, db: DbSession, settings: AppSettings, period: Period = Period.MONTH
) -> HTMLResponse:
    user, now = viewer.user, utcnow()
    live = runtime_settings.snapshot(db, settings)
    context: dict[str, object] = {
        "bonus_days_referrer": live.referral_bonus_days_referrer,
        "bonus_days_referred": live.referral_bonus_days_referred,
        "board": await leaderboard(db, user.id, period, now=now),
        "periods": list(Period),
    }
    if is_htmx(request) and request.headers.get("hx-target") == LEADERBOARD_BLOCK:
        return render(request, "referrals/index.html", context)
    links = referral_links(user.referral_code, bot_username=settings.bot_username)
    context |= {
        "links": links,
        "qr": qr_svg(links.bot, title=links.bot) if links.bot else None,
        "stats": await referral_stats(db, user.id, now=now),
        "history": await referral_history(db, user.id, now=now),
    }
    return render(request, "referrals/index.html", context)
