"""The demo panel's public subscription URL, the counterpart of Marzban's `/sub/{token}` and Remnawave's
`/api/sub/{shortUuid}`: what a VPN app fetches to import and refresh its keys."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from app.panels.demo import SubscriptionClient, fetch_subscription

router = APIRouter(prefix="/demo-panel", include_in_schema=False)


@router.get("/sub/{short_id}")
async def subscription(short_id: str, request: Request) -> Response:
    """Base64 links plus the usage headers; 404 for an unknown or revoked id (as Marzban 0.8 and Remnawave)."""
    headers = request.headers
    client = SubscriptionClient(
        user_agent=headers.get("user-agent"),
        hwid=headers.get("x-hwid"),
        platform=headers.get("x-device-os"),
        os_version=headers.get("x-ver-os"),
        model=headers.get("x-device-model"),
    )
    reply = await fetch_subscription(request.app.state.resources.sessionmaker, short_id, client)
    if reply is None:
        return JSONResponse({"detail": "Not Found"}, status_code=404)
    return PlainTextResponse(reply.body, headers=reply.headers)
