"""The admin's routers, assembled once. Everything under /admin and /api/admin goes through
`authenticated_staff` at the router level, so no page or endpoint can forget authentication; each route then
declares its one permission with `require(...)`. Sign-in pages and /api/auth/* are the only public routes.

Adding a section: one `include_router` line below, in PAGES (HTML, mounted at /admin) or API (JSON, mounted at
/api/admin); the section's own routers use paths relative to those prefixes ("/users", "/users/{user_id}")."""

from __future__ import annotations

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import Response
from fastapi.routing import iter_route_contexts

from app.admin.audit import pages as audit_pages
from app.admin.auth import api as auth_api
from app.admin.auth import pages as auth_pages
from app.admin.auth.dependencies import AdminShellRequired, authenticated_staff
from app.admin.broadcasts import api as broadcasts_api
from app.admin.broadcasts import pages as broadcasts_pages
from app.admin.dashboard import pages as dashboard_pages
from app.admin.experiments import api as experiments_api
from app.admin.experiments import pages as experiments_pages
from app.admin.faq import api as faq_api
from app.admin.faq import pages as faq_pages
from app.admin.finance import pages as finance_pages
from app.admin.payments import api as payments_api
from app.admin.payments import pages as payments_pages
from app.admin.plans import api as plans_api
from app.admin.plans import pages as plans_pages
from app.admin.promo import api as promo_api
from app.admin.promo import pages as promo_pages
from app.admin.providers import api as providers_api
from app.admin.providers import pages as providers_pages
from app.admin.referrals import pages as referrals_pages
from app.admin.rendering import install_components, render
from app.admin.servers import api as servers_api
from app.admin.servers import pages as servers_pages
from app.admin.settings import api as settings_api
from app.admin.settings import pages as settings_pages
from app.admin.staff import pages as staff_pages
from app.admin.stats import api as stats_api
from app.admin.subscriptions import api as subscriptions_api
from app.admin.system import pages as system_pages
from app.admin.texts import api as texts_api
from app.admin.texts import pages as texts_pages
from app.admin.users import api as users_api
from app.admin.users import pages as users_pages

# --- HTML pages: /admin/... ---------------------------------------------------------------------------------
PAGES = APIRouter(prefix="/admin", dependencies=[Depends(authenticated_staff)], include_in_schema=False)
PAGES.include_router(auth_pages.account_router)  # /admin/account (A)
dashboard_pages.install(PAGES)  # /admin (C): the admin's root page, so added rather than included
PAGES.include_router(users_pages.router)  # /admin/users (B)
PAGES.include_router(payments_pages.router)  # /admin/payments (C)
PAGES.include_router(plans_pages.router)  # /admin/plans (issue 13)
PAGES.include_router(providers_pages.router)  # /admin/providers (issue 13)
PAGES.include_router(finance_pages.router)  # /admin/finance (14a)
PAGES.include_router(promo_pages.router)  # /admin/promo (14a)
PAGES.include_router(referrals_pages.router)  # /admin/referrals (14a)
PAGES.include_router(audit_pages.router)  # /admin/audit (A)
PAGES.include_router(staff_pages.router)  # /admin/staff (A)
PAGES.include_router(broadcasts_pages.router)  # /admin/broadcasts (issue 14)
PAGES.include_router(experiments_pages.router)  # /admin/experiments (issue 14)
PAGES.include_router(servers_pages.router)  # /admin/servers (issue 13)
PAGES.include_router(settings_pages.router)  # /admin/settings (i13b)
PAGES.include_router(texts_pages.router)  # /admin/texts (i13b)
PAGES.include_router(faq_pages.router)  # /admin/faq (i13b)
PAGES.include_router(system_pages.router)  # /admin/system (i13b)

# --- JSON API: /api/admin/... -------------------------------------------------------------------------------
API = APIRouter(prefix="/api/admin", dependencies=[Depends(authenticated_staff)], tags=["admin"])
API.include_router(auth_api.me_router)  # /api/admin/me (A)
API.include_router(users_api.router)  # /api/admin/users (B)
API.include_router(subscriptions_api.router)  # /api/admin/subscriptions (B)
API.include_router(payments_api.router)  # /api/admin/payments (C)
API.include_router(plans_api.router)  # /api/admin/plans (issue 13)
API.include_router(providers_api.router)  # /api/admin/providers (issue 13)
API.include_router(broadcasts_api.router)  # /api/admin/broadcast (issue 14)
API.include_router(experiments_api.router)  # /api/admin/experiments (issue 14)
API.include_router(servers_api.router)  # /api/admin/servers (issue 13)
API.include_router(promo_api.router)  # /api/admin/promo (14a)
API.include_router(stats_api.router)  # /api/admin/stats (14a)
API.include_router(settings_api.router)  # /api/admin/settings (i13b)
API.include_router(texts_api.router)  # /api/admin/texts (i13b)
API.include_router(faq_api.router)  # /api/admin/faq (i13b)

# --- public: sign-in ----------------------------------------------------------------------------------------
PUBLIC = APIRouter()
PUBLIC.include_router(auth_pages.router)  # /admin/login, /admin/logout, /admin/login/demo
PUBLIC.include_router(auth_api.router)  # /api/auth/login|refresh|logout


# Paths under /admin that answer without a signed-in staff member (the permission-matrix test allows only these).
PUBLIC_PATHS = frozenset(context.path for context in iter_route_contexts(PUBLIC.routes))


def install_admin(app: FastAPI) -> None:
    """Mount the admin on the app (create_app calls this once)."""
    install_components(app.state.templates.env)

    @app.exception_handler(AdminShellRequired)
    async def _shell(request: Request, exc: AdminShellRequired) -> Response:
        src = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return render(request, "admin/shell.html", {"src": src})

    app.include_router(PUBLIC)
    app.include_router(PAGES)
    app.include_router(API)
