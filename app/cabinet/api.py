"""The customer's JSON API (same authentication as the pages)."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Request
from pydantic import BaseModel
from sqlalchemy import select

from app.auth.dependencies import CurrentUser
from app.deps import DbSession
from app.kit.clock import utcnow
from app.models import Plan, Subscription, VpnAccount

router = APIRouter(prefix="/api", tags=["customer"])


class SubscriptionOut(BaseModel):
    status: str
    is_trial: bool
    plan: str | None
    ends_at: datetime
    days_left: int
    auto_renew: bool
    traffic_used_bytes: int
    traffic_limit_bytes: int | None
    subscription_link: str | None


class MeOut(BaseModel):
    id: int
    telegram_id: int
    language: str
    first_name: str | None
    username: str | None
    subscription: SubscriptionOut | None


@router.get("/me", response_model=MeOut)
async def me(request: Request, user: CurrentUser, session: DbSession) -> MeOut:
    """The signed-in user and their current subscription (one query besides authentication)."""
    row = (
        await session.execute(
            select(Subscription, Plan.code, VpnAccount)
            .outerjoin(Plan, Plan.id == Subscription.plan_id)
            .outerjoin(VpnAccount, VpnAccount.subscription_id == Subscription.id)
            .where(Subscription.user_id == user.id)
            .order_by(Subscription.ends_at.desc())
            .limit(1)
        )
    ).first()
    subscription = None
    if row is not None:
        sub, plan_code, account = row
        base = request.app.state.settings.public_base_url
        subscription = SubscriptionOut(
            status=sub.status.value,
            is_trial=sub.is_trial,
            plan=plan_code,
            ends_at=sub.ends_at,
            days_left=max(0, (sub.ends_at - utcnow()).days),
            auto_renew=sub.auto_renew,
            traffic_used_bytes=account.used_traffic_bytes if account else 0,
            traffic_limit_bytes=account.traffic_limit_bytes if account else None,
            subscription_link=f"{base}/sub/{account.sub_token}" if account else None,
        )
    return MeOut(
        id=user.id,
        telegram_id=user.telegram_id,
        language=user.language,
        first_name=user.first_name,
        username=user.username,
        subscription=subscription,
    )
