"""/api/docs: Swagger UI from files this app serves itself. The app's Content-Security-Policy allows scripts from
our own origin only (no CDN, no inline script without the request's nonce), so FastAPI's default page, which
loads Swagger UI from a CDN and starts it inline, stays blank under it."""

from __future__ import annotations

import swagger_ui_bundle
from fastapi import APIRouter, FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = "/api/docs/assets"
OPENAPI_URL = "/api/openapi.json"

router = APIRouter(include_in_schema=False)

# The start-up script is a file of ours too (static/api-docs.js): it reads the schema address from data-url.
PAGE = f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>vpnshop API</title>
  <link rel="stylesheet" href="{ASSETS}/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui" data-url="{OPENAPI_URL}"></div>
  <script src="{ASSETS}/swagger-ui-bundle.js"></script>
  <script src="/static/api-docs.js"></script>
</body>
</html>
"""


@router.get("/api/docs", response_class=HTMLResponse)
async def api_docs() -> HTMLResponse:
    return HTMLResponse(PAGE)


def mount_assets(app: FastAPI) -> None:
    """Swagger UI's files from the swagger-ui-bundle-v2 package (installed with the app, nothing fetched)."""
    app.mount(ASSETS, StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="swagger-ui")
