"""Error reporting to Sentry when SENTRY_DSN is set; nothing at all otherwise."""

from __future__ import annotations

from app.config import Settings


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
    )
    return True
