"""The connect page (SPEC §3.3, "Get config"): link with copy button and QR, one-tap import and install guides
per platform, reset-and-reissue, and the devices list; plus the https bridge that opens a client app's own link
scheme (Telegram's openLink only opens http(s) links)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.dependencies import PageViewer, Viewer
from app.cabinet.pages import is_htmx, render, see_other
from app.config import Settings
from app.connect import service
from app.connect.clients import PLATFORM_GUIDES, clients_for, detect_platform, get_client
from app.deps import AppSettings, DbSession, client_ip
from app.kit.errors import NotFound
from app.models import VpnAccount
from app.panels.registry import PanelRegistry

router = APIRouter(include_in_schema=False)


def _panels(request: Request) -> PanelRegistry:
    return request.app.state.resources.panels


async def _page(
    request: Request, viewer: Viewer, db: AsyncSession, settings: Settings, **extra: object
) -> HTMLResponse:
    connection = await service.connection_for(db, viewer.user)
    context: dict[str, object] = {"connection": connection, **extra}
    if connection is not None:
        link = connection.link(settings.public_base_url)
        platform = detect_platform(request.headers.get("user-agent"))
        context |= {
            "link": link,
            "qr": await request.app.state.resources.qr_codes.svg(link, title=link),
            "platform_guides": PLATFORM_GUIDES,
            "current_platform": platform,
            # The one-tap import shown first: the recommended app of the visitor's platform that can take it.
            "first_choice": next((client for client in clients_for(platform) if client.link), None),
            "bridge": f"{settings.public_base_url}/connect/{connection.account.sub_token}/",
        }
    return render(request, "connect/index.html", context)


@router.get("/app/config")
async def old_address(request: Request) -> Response:
    """The page's address before it was named like its package: links in sent messages and bookmarks keep working."""
    query = f"?{request.url.query}" if request.url.query else ""
    return RedirectResponse(f"/app/connect{query}", status_code=308)


@router.get("/app/connect", response_class=HTMLResponse)
async def connect_page(request: Request, viewer: PageViewer, db: DbSession, settings: AppSettings) -> HTMLResponse:
    return await _page(request, viewer, db, settings)


@router.post("/app/connect/reissue", response_model=None)
async def reissue(request: Request, viewer: PageViewer, db: DbSession, settings: AppSettings) -> Response:
    await service.reissue(db, viewer.user, request.app.state.resources.rate_limiter, ip=client_ip(request))
    if not is_htmx(request):
        return see_other("/app/connect")
    return await _page(request, viewer, db, settings, reissued=True)


@router.get("/app/connect/devices", response_class=HTMLResponse)
async def devices(request: Request, viewer: PageViewer, db: DbSession, settings: AppSettings) -> HTMLResponse:
    connection = await service.require_connection(db, viewer.user)
    found = await service.devices(connection, _panels(request))
    return render(request, "connect/index.html", {"connection": connection, "devices": found}, block="devices")


@router.post("/app/connect/devices/{hwid}/remove", response_model=None)
async def remove_device(
    request: Request, hwid: str, viewer: PageViewer, db: DbSession, settings: AppSettings
) -> Response:
    connection = await service.require_connection(db, viewer.user)
    await service.remove_device(db, viewer.user, connection, _panels(request), hwid, ip=client_ip(request))
    if not is_htmx(request):
        return see_other("/app/connect")
    found = await service.devices(connection, _panels(request))
    context = {"connection": connection, "devices": found, "removed": True}
    return render(request, "connect/index.html", context, block="devices")


@router.get("/connect/{token}/{client_code}", response_class=HTMLResponse)
async def open_in_app(
    request: Request, token: str, client_code: str, db: DbSession, settings: AppSettings
) -> HTMLResponse:
    """Hand the subscription link to a client app. No sign-in: the token in the path is the same bearer
    secret as the subscription link itself, and this page reveals nothing more."""
    try:
        client = get_client(client_code)
    except KeyError:
        raise NotFound("Unknown app.") from None
    if await db.scalar(select(VpnAccount.id).where(VpnAccount.sub_token == token)) is None:
        raise NotFound("This link has been reset; open the app again for the new one.")
    link = service.mirror_link(settings.public_base_url, token)
    deep_link = client.import_link(link)
    if deep_link is None:
        raise NotFound("This app has no import link; copy the subscription link instead.")
    context = {"client": client, "deep_link": deep_link, "link": link}
    return render(
        request, "connect/open.html", context, headers={"cache-control": "no-store", "referrer-policy": "no-referrer"}
    )
