"""Static files for every page: fingerprinted addresses cached for a year (app/kit/assets.py), gzip when the
browser takes it, 304 for a file the browser has, and `/favicon.ico` (browsers ask for it on every site; a 404
there is an error in every page's console)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app.kit import assets
from app.kit.errors import NotFound

router = APIRouter(include_in_schema=False)

FOREVER = "public, max-age=31536000, immutable"
# An address without its fingerprint (an old page, a bookmark) is checked with the server each time.
REVALIDATE = "public, max-age=0, must-revalidate"
FAVICON = "icon.svg"


def _serve(request: Request, asset: assets.Asset, cache_control: str) -> Response:
    etag = f'"{asset.digest}"'
    headers = {"cache-control": cache_control, "etag": etag, "vary": "accept-encoding"}
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    body = asset.body
    if asset.gzipped is not None and "gzip" in request.headers.get("accept-encoding", ""):
        body = asset.gzipped
        headers["content-encoding"] = "gzip"
    return Response(body, media_type=asset.media_type, headers=headers)


@router.get("/static/{path:path}")
async def static_file(request: Request, path: str) -> Response:
    asset, current = assets.resolve(path)
    if asset is None:
        raise NotFound("No such file.")
    return _serve(request, asset, FOREVER if current else REVALIDATE)


@router.get("/favicon.ico")
async def favicon(request: Request) -> Response:
    asset = assets.load(FAVICON)
    if asset is None:
        raise NotFound("No icon.")
    return _serve(request, asset, "public, max-age=86400")
