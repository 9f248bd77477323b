"""The Help page (SPEC §3.6): the FAQ by category with instant search, the support contact, and autodiagnostics
whose report goes to support in one tap. Inside Telegram and in the browser cabinet alike."""

from __future__ import annotations

import math
import re
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.dependencies import PageViewer, Viewer
from app.cabinet.pages import is_htmx, render
from app.config import Settings
from app.deps import AppSettings, DbSession
from app.diagnostics import Report, diagnose, skip_probe, tcp_probe
from app.diagnostics.service import Probe
from app.help import service as faq
from app.kit.errors import RateLimited
from app.kit.i18n import Translator, translate
from app.models import Node, PanelKind, Server, User, VpnAccount
from app.runtime_settings import service as runtime_settings

router = APIRouter(prefix="/app/help", include_in_schema=False)

# Each run asks the panel and opens TCP connections to the nodes: enough for a customer retrying while they
# fix things, too few to turn the page into a port scanner.
DIAGNOSTICS_LIMIT = 10
DIAGNOSTICS_WINDOW_SECONDS = 600
TELEGRAM_USERNAME = re.compile(r"[A-Za-z0-9_]{4,32}")


def support_link(username: str, text: str | None = None) -> str | None:
    """The support chat on t.me (settings accept "@name", "name" or a t.me link), with a message typed in
    for the customer; None when no usable username is configured."""
    name = username.strip()
    for prefix in ("https://", "http://", "t.me/", "@"):
        name = name.removeprefix(prefix)
    name = name.strip("/")
    if not TELEGRAM_USERNAME.fullmatch(name):
        return None
    return f"https://t.me/{name}" + (f"?text={quote(text, safe='')}" if text else "")


def _support(username: str) -> dict[str, str] | None:
    url = support_link(username)
    return {"name": "@" + url.rsplit("/", 1)[1], "url": url} if url else None


async def _faq_context(db: AsyncSession, viewer: Viewer, settings: Settings, query: str) -> dict[str, object]:
    """What #faq_results shows: the search results for a query, else every category."""
    language, default = viewer.user.language, settings.default_language
    results = await faq.search(db, language, query, default_language=default)  # refuses an overlong query
    if query.strip():
        return {"query": query, "results": results}
    return {"query": query, "categories": await faq.categories(db, language, default_language=default)}


async def _base(db: AsyncSession, settings: Settings) -> dict[str, object]:
    live = runtime_settings.snapshot(db, settings)
    return {"support": _support(live.support_username), "max_query": faq.MAX_QUERY_LENGTH}


@router.get("", response_class=HTMLResponse)
async def help_page(
    request: Request, viewer: PageViewer, db: DbSession, settings: AppSettings, q: str = ""
) -> HTMLResponse:
    context = await _base(db, settings) | await _faq_context(db, viewer, settings, q)
    return render(request, "help/index.html", context)


@router.get("/search", response_class=HTMLResponse)
async def search(
    request: Request, viewer: PageViewer, db: DbSession, settings: AppSettings, q: str = ""
) -> HTMLResponse:
    """The results region as the customer types; a JavaScript-free visit gets the whole page."""
    context = await _base(db, settings) | await _faq_context(db, viewer, settings, q)
    return render(request, "help/index.html", context, block="faq_results" if is_htmx(request) else None)


@router.post("/diagnostics", response_class=HTMLResponse)
async def run_diagnostics(request: Request, viewer: PageViewer, db: DbSession, settings: AppSettings) -> HTMLResponse:
    user = viewer.user
    resources = request.app.state.resources
    decision = await resources.rate_limiter.hit(f"diagnostics:{user.id}", DIAGNOSTICS_LIMIT, DIAGNOSTICS_WINDOW_SECONDS)
    if not decision.allowed:
        minutes = math.ceil(decision.retry_after / 60)
        raise RateLimited(
            translate(user.language, "help.diag.rate_limited", count=minutes), retry_after=decision.retry_after
        )
    report = await diagnose(db, user, resources.panels, probe=await _probe_for(db, user))
    context = await _base(db, settings) | await _report_context(db, user, settings, report)
    if is_htmx(request):
        return render(request, "help/index.html", context, block="diagnostics")
    # Without JavaScript the report comes back inside the whole page (it is not stored, so no redirect).
    return render(request, "help/index.html", context | await _faq_context(db, viewer, settings, ""))


async def _report_context(db: AsyncSession, user: User, settings: Settings, report: Report) -> dict[str, object]:
    summary = report.summary(Translator(user.language))
    entries = await faq.entries(db, user.language, default_language=settings.default_language)
    return {
        "report": report,
        "summary": summary,
        "escalate_url": support_link(runtime_settings.snapshot(db, settings).support_username, summary),
        "faq_questions": {entry.slug: entry.question for entry in entries},
    }


async def _probe_for(db: AsyncSession, user: User) -> Probe:
    """The TCP check, except for the demo panel's nodes: their host names are made up, so probing them would
    report every one down. Their state is left to the panel's own node flags."""
    query = (
        select(Node.address)
        .join(Server, Server.id == Node.server_id)
        .join(VpnAccount, VpnAccount.server_id == Server.id)
        .where(VpnAccount.user_id == user.id, Server.panel_kind == PanelKind.DEMO)
    )
    demo_hosts = frozenset(await db.scalars(query))
    if not demo_hosts:
        return tcp_probe

    async def probe(host: str, port: int, timeout: float) -> bool:  # noqa: ASYNC109 - the Probe signature
        return await (skip_probe if host in demo_hosts else tcp_probe)(host, port, timeout)

    return probe
