"""Error reporting to Sentry when SENTRY_DSN is set; nothing at all otherwise."""

from __future__ import annotations

from typing import Any

from app.config import Settings
from app.kit.logging import redact_path


def init_sentry(settings: Settings, *, component: str) -> bool:
    """Start the SDK for one process kind (web, worker, bot); returns whether it is on."""
    if not settings.sentry_dsn:
        return False
    import sentry_sdk

    sentry_sdk.init(
        dsn=settings.sentry_dsn,
        environment="demo" if settings.demo_mode else "production",
        server_name=component,  # the SDK's default sends no personal data (initData headers, IPs)
        traces_sample_rate=0.0,
        before_send=scrub_event,
    )
    return True


def scrub_event(event: dict[str, Any], hint: object = None) -> dict[str, Any]:
    """The request's URL and the breadcrumbs' (outgoing calls) without the secrets some paths carry: a
    subscription token, a sign-in link, the bot's token."""
    request = event.get("request")
    if isinstance(request, dict):
        if isinstance(request.get("url"), str):
            request["url"] = redact_path(request["url"])
        request.pop("query_string", None)
    for crumb in (event.get("breadcrumbs") or {}).get("values", []):
        data = crumb.get("data") if isinstance(crumb, dict) else None
        if isinstance(data, dict) and isinstance(data.get("url"), str):
            data["url"] = redact_path(data["url"])
            data.pop("http.query", None)
    return event
