"""The customer's JSON API: the same authentication as the pages (Telegram initData or the session cookie)."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from app.auth.dependencies import CurrentUser
from app.cabinet.service import Overview, overview
from app.deps import AppSettings, DbSession, client_ip
from app.runtime_settings import service as runtime_settings
from app.subscriptions.trial import activate_trial

router = APIRouter(prefix="/api", tags=["customer"])


class SubscriptionOut(BaseModel):
    status: str
    is_trial: bool
    plan: str | None
    ends_at: datetime
    days_left: int
    auto_renew: bool
    ready: bool
    traffic_used_bytes: int
    traffic_limit_bytes: int | None
    device_limit: int | None
    subscription_link: str | None


class MeOut(BaseModel):
    id: int
    telegram_id: int
    language: str
    currency: str | None = Field(
        description="The currency the user chose on the plan list or in Settings (prices and payments follow it); "
        "null: none chosen, so their language's, else the shop's default."
    )
    first_name: str | None
    username: str | None
    trial_available: bool
    next_action: str
    subscription: SubscriptionOut | None


def _me(ov: Overview, base_url: str) -> MeOut:
    subscription = None
    if (sub := ov.subscription) is not None:
        account = ov.account
        subscription = SubscriptionOut(
            status=ov.status,
            is_trial=sub.is_trial,
            plan=ov.plan.code if ov.plan else None,
            ends_at=sub.ends_at,
            days_left=ov.days_left,
            auto_renew=sub.auto_renew,
            ready=ov.ready,
            traffic_used_bytes=account.used_traffic_bytes if account else 0,
            traffic_limit_bytes=account.traffic_limit_bytes if account else None,
            device_limit=account.device_limit if account else None,
            subscription_link=f"{base_url}/sub/{account.sub_token}" if account else None,
        )
    user = ov.user
    return MeOut(
        id=user.id,
        telegram_id=user.telegram_id,
        language=user.language,
        currency=user.currency,
        first_name=user.first_name,
        username=user.username,
        trial_available=ov.trial_available,
        next_action=ov.next_action.value,
        subscription=subscription,
    )


@router.get("/me", response_model=MeOut)
async def me(user: CurrentUser, db: DbSession, settings: AppSettings) -> MeOut:
    """The signed-in user and their current subscription."""
    trial_days = runtime_settings.snapshot(db, settings).trial_days
    return _me(await overview(db, user, trial_days=trial_days), settings.public_base_url)


@router.post("/trial", response_model=MeOut, status_code=201, responses={409: {"description": "trial already used"}})
async def trial(request: Request, user: CurrentUser, db: DbSession, settings: AppSettings) -> MeOut:
    """Activate the free trial (once per user and per Telegram account); the VPN account is created in the
    background: poll `/api/me` until `subscription.ready`."""
    trial_days = runtime_settings.snapshot(db, settings).trial_days
    await activate_trial(db, user, trial_days=trial_days, ip=client_ip(request))
    return _me(await overview(db, user, trial_days=trial_days), settings.public_base_url)
