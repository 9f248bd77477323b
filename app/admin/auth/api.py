"""Staff tokens for the admin JSON API (SPEC §10.8): log in with username, password and (when enrolled) a TOTP
code; refresh rotates the pair (the old refresh token stops working, and presenting it again revokes every
token of that staff member, since only a thief would); logout revokes everything."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from app.admin.auth.dependencies import StaffViewer, audit_denied, require
from app.admin.auth.service import AccountLocked, password_sign_in
from app.audit.service import Actor, record_by
from app.deps import AppSettings, DbSession, client_ip
from app.error_handlers import error_response
from app.kit.errors import AppError, NotAuthenticated, RateLimited
from app.staff.permissions import PERMISSIONS
from app.staff.sessions import (
    TokenPair,
    issue_tokens,
    revoke_everything,
    revoked_refresh_owner,
    rotate_refresh,
    staff_by_token,
)

router = APIRouter(prefix="/api/auth", tags=["admin auth"])
me_router = APIRouter()


class LoginRequest(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)
    otp: str | None = Field(None, max_length=16, description="The TOTP code, required once two-factor is on")


class RefreshRequest(BaseModel):
    refresh_token: str = Field(min_length=1, max_length=256)


class TokenResponse(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="Seconds until the access token expires")

    @classmethod
    def of(cls, pair: TokenPair) -> TokenResponse:
        return cls(access_token=pair.access_token, refresh_token=pair.refresh_token, expires_in=pair.expires_in)


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


class InvalidRefreshToken(NotAuthenticated):
    """The refresh token is unknown, expired or already used; log in again."""

    code = "refresh_token_invalid"


class TwoFactorEnrolmentRequired(NotAuthenticated):
    """Your role must use two-factor sign-in: enrol at /admin/login in a browser first."""

    code = "two_factor_enrolment_required"


def _actor(request: Request) -> Actor:
    return Actor("anonymous", None, client_ip(request), request.headers.get("user-agent"))


def _error(request: Request, error: AppError) -> JSONResponse:
    """An error answered (not raised), so what the sign-in wrote — the failure counter, the audit row — is
    committed with the request."""
    extra = {"retry_after": error.retry_after} if isinstance(error, (RateLimited, AccountLocked)) else {}
    return error_response(request, error.status_code, error.code, error.message, **extra)  # type: ignore[return-value]


ERRORS = {401: {"model": ErrorResponse}, 422: {"model": ErrorResponse}, 429: {"model": ErrorResponse}}


@router.post("/login", response_model=TokenResponse, responses=ERRORS)
async def login(
    request: Request, body: LoginRequest, db: DbSession, settings: AppSettings
) -> TokenResponse | JSONResponse:
    outcome = await password_sign_in(
        db,
        request.app.state.resources.rate_limiter,
        username=body.username,
        password=body.password,
        otp=body.otp,
        require_2fa=settings.admin_require_2fa,
        actor=_actor(request),
    )
    if outcome.error is not None or outcome.staff is None:
        return _error(request, outcome.error or NotAuthenticated())
    if outcome.must_enrol:
        return _error(request, TwoFactorEnrolmentRequired())
    pair = await issue_tokens(db, outcome.staff, name="api")
    record_by(
        db,
        Actor("staff", outcome.staff.id, client_ip(request), request.headers.get("user-agent")),
        action="admin.signed_in",
        entity_type="staff",
        entity_id=outcome.staff.id,
        after={"method": "api"},
    )
    return TokenResponse.of(pair)


@router.post("/refresh", response_model=TokenResponse, responses=ERRORS)
async def refresh(request: Request, body: RefreshRequest, db: DbSession) -> TokenResponse | JSONResponse:
    pair = await rotate_refresh(db, body.refresh_token)
    if pair is not None:
        return TokenResponse.of(pair)
    reused_by = await revoked_refresh_owner(db, body.refresh_token)
    if reused_by is not None:
        # A used refresh token came back: whoever holds the newer one may be a thief. End every session.
        await revoke_everything(db, reused_by)
        record_by(
            db,
            Actor("staff", reused_by, client_ip(request), request.headers.get("user-agent")),
            action="admin.refresh_reused",
            entity_type="staff",
            entity_id=reused_by,
            after={"revoked": "all"},
        )
    return _error(request, InvalidRefreshToken())


@router.post("/logout", status_code=204, response_class=Response, responses=ERRORS)
async def logout(request: Request, db: DbSession, body: RefreshRequest | None = None) -> Response:
    """Revokes every token and session of the staff member the bearer access token (or the given refresh
    token) belongs to."""
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    found = None
    if scheme.lower() == "bearer" and credentials:
        found = await staff_by_token(db, credentials.strip(), "access")
    if found is None and body is not None:
        found = await staff_by_token(db, body.refresh_token, "refresh")
    if found is None:
        await audit_denied(request, "logout_without_token")
        return _error(request, NotAuthenticated("Send the access token (Authorization: Bearer) or the refresh token."))
    staff = found[1]
    revoked = await revoke_everything(db, staff.id)
    record_by(
        db,
        Actor("staff", staff.id, client_ip(request), request.headers.get("user-agent")),
        action="admin.signed_out",
        entity_type="staff",
        entity_id=staff.id,
        after={"revoked": revoked},
    )
    return Response(status_code=204)


class Me(BaseModel):
    id: int
    username: str
    role: str
    permissions: list[str]
    two_factor: bool


@me_router.get("/me", response_model=Me)
async def me(viewer: Annotated[StaffViewer, require("account:self")]) -> Me:
    """Who the token belongs to and what it may do."""
    staff = viewer.staff
    return Me(
        id=staff.id,
        username=staff.username,
        role=staff.role.value,
        permissions=sorted(p for p in PERMISSIONS if viewer.can(p)),
        two_factor=staff.totp_secret is not None,
    )
