"""create_app(): routers, middleware, lifespan — nothing else."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from app.admin.routes import install_admin
from app.apidocs.pages import mount_assets as mount_api_docs_assets
from app.apidocs.pages import router as api_docs_router
from app.auth.oidc_pages import load_providers
from app.auth.oidc_pages import router as oidc_router
from app.auth.pages import router as auth_router
from app.cabinet.api import router as customer_api_router
from app.cabinet.assets_api import router as assets_router
from app.cabinet.pages import router as cabinet_router
from app.cabinet.settings_pages import router as settings_router
from app.checkout.api import router as checkout_api_router
from app.checkout.pages import router as checkout_router
from app.checkout.result_pages import router as payment_result_router
from app.config import Settings, get_settings
from app.connect.pages import router as connect_router
from app.demo.pages import router as demo_router
from app.deps import texts_in_force
from app.error_handlers import install_error_handlers
from app.health.api import router as health_router
from app.help.pages import router as help_router
from app.kit.jobs import ArqRunner, configure_jobs, registry
from app.kit.templating import Templates
from app.middleware import MetricsMiddleware, RequestContextMiddleware, SecurityHeadersMiddleware
from app.panels.demo_api import router as demo_panel_router
from app.panels.mirror_api import router as sub_mirror_router
from app.panels.webhook_api import router as panel_webhooks_router
from app.payments.demo_pages import router as demo_pay_router
from app.payments.webhook_api import router as payment_webhooks_router
from app.referrals.pages import router as referral_router
from app.resources import open_resources
from app.runtime_settings.refresher import kept_fresh
from app.throttle import limit_per_ip
from tasks.worker import build_in_process_runner

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        resources = app.state.resources = open_resources(settings)
        # The admin's payment provider settings before the first request (the watcher keeps them fresh).
        try:
            await resources.payments.reload_from(resources.sessionmaker)
        except Exception as exc:  # not migrated yet: the environment's providers until the watcher can read them
            log.warning("payment provider settings not read at start-up: %s", exc)
        runner = ArqRunner(registry, settings.redis_url) if settings.redis_url else build_in_process_runner(resources)
        runner.start()
        configure_jobs(runner)
        # What start-up built (modules, routes, templates, the ORM's mappers: about 250,000 objects) lives as long
        # as the process; frozen, the garbage collector stops walking it, so a full collection pauses a request for
        # a moment instead of a tenth of a second.
        gc.freeze()
        try:
            async with kept_fresh(resources):
                yield
        finally:
            gc.unfreeze()  # back to the collector (tests start and stop many apps in one process)
            configure_jobs(None)
            await runner.stop()
            await resources.aclose()

    app = FastAPI(
        title="vpnshop",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,  # our own /api/docs (app/apidocs), which works under the CSP
        openapi_url="/api/openapi.json",
        redoc_url=None,
        # Every route of every router, now and later ones, is limited per client address.
        # Staff-edited texts are in force from the first line of each request.
        dependencies=[Depends(limit_per_ip), Depends(texts_in_force)],
    )
    app.state.settings = settings
    app.state.templates = Templates(auto_reload=settings.debug)
    app.state.oidc_providers = load_providers(settings)

    app.add_middleware(SecurityHeadersMiddleware, https=settings.public_base_url.startswith("https://"))
    app.add_middleware(MetricsMiddleware)
    # Added last, so outermost: the request id is bound before anything else logs.
    app.add_middleware(RequestContextMiddleware, access_log=settings.access_log)
    install_error_handlers(app)

    # Pages and JSON are compressed by the front proxy (Caddy's `encode zstd gzip`, deploy/caddy/Caddyfile), in Go
    # and with zstd too; compressing them here as well cost every request CPU. Static files come gzipped already
    # (app/kit/assets.py).
    app.include_router(assets_router)
    mount_api_docs_assets(app)
    app.include_router(api_docs_router)
    app.include_router(health_router)
    app.include_router(customer_api_router)
    app.include_router(checkout_api_router)
    app.include_router(cabinet_router)
    app.include_router(checkout_router)
    app.include_router(payment_result_router)
    app.include_router(settings_router)
    app.include_router(connect_router)
    app.include_router(referral_router)
    app.include_router(help_router)
    app.include_router(auth_router)
    app.include_router(oidc_router)
    app.include_router(demo_router)
    app.include_router(panel_webhooks_router)
    app.include_router(payment_webhooks_router)
    app.include_router(demo_pay_router)
    app.include_router(sub_mirror_router)
    app.include_router(demo_panel_router)
    install_admin(app)
    return app
