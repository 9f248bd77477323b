"""The customers' and subscriptions' shapes in the admin JSON API (one place, shared by both routers)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from app.admin.users.queries import MAX_ID, customer_status
from app.inbound import RowId  # noqa: F401  (re-exported: the admin's id parameters)
from app.models import Plan, Subscription, User

# Row ids as both databases store them: a larger number is refused as input, never sent to the database.
IdValue = Annotated[int, Field(ge=1, le=MAX_ID)]


class SubscriptionOut(BaseModel):
    id: int
    user_id: int
    status: str
    is_trial: bool
    plan_id: int | None
    plan_code: str | None
    starts_at: datetime
    ends_at: datetime
    auto_renew: bool
    cancelled_at: datetime | None
    created_at: datetime

    @classmethod
    def of(cls, subscription: Subscription, plan: Plan | None) -> SubscriptionOut:
        return cls(
            id=subscription.id,
            user_id=subscription.user_id,
            status=subscription.status.value,
            is_trial=subscription.is_trial,
            plan_id=subscription.plan_id,
            plan_code=plan.code if plan else None,
            starts_at=subscription.starts_at,
            ends_at=subscription.ends_at,
            auto_renew=subscription.auto_renew,
            cancelled_at=subscription.cancelled_at,
            created_at=subscription.created_at,
        )


class UserOut(BaseModel):
    id: int
    telegram_id: int
    username: str | None
    first_name: str | None
    last_name: str | None
    language: str
    timezone: str | None
    referral_code: str
    referrer_id: int | None
    is_blocked: bool
    block_reason: str | None
    unreachable_since: datetime | None
    marketing_opt_out: bool
    created_at: datetime
    last_seen_at: datetime | None
    # The current subscription's (active, trial, expired, cancelled) or "none".
    status: str
    subscription: SubscriptionOut | None

    @classmethod
    def of(cls, user: User, subscription: Subscription | None, plan: Plan | None) -> UserOut:
        return cls(
            id=user.id,
            telegram_id=user.telegram_id,
            username=user.username,
            first_name=user.first_name,
            last_name=user.last_name,
            language=user.language,
            timezone=user.timezone,
            referral_code=user.referral_code,
            referrer_id=user.referrer_id,
            is_blocked=user.is_blocked,
            block_reason=user.block_reason,
            unreachable_since=user.unreachable_since,
            marketing_opt_out=user.marketing_opt_out,
            created_at=user.created_at,
            last_seen_at=user.last_seen_at,
            status=customer_status(subscription),
            subscription=SubscriptionOut.of(subscription, plan) if subscription else None,
        )


class UserPage(BaseModel):
    items: list[UserOut]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null on the last page")


class SubscriptionPage(BaseModel):
    items: list[SubscriptionOut]
    next_cursor: str | None


class UserUpdate(BaseModel):
    """The fields staff may change; the ones left out stay as they are."""

    model_config = ConfigDict(extra="forbid")

    language: str | None = None
    timezone: str | None = None
    marketing_opt_out: bool | None = None


class BlockIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(max_length=500)


class UnblockIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(None, max_length=500)


class SubscriptionUpdate(BaseModel):
    """One or more changes at once: a new end date, or days to add (negative: take away), a plan, auto-renewal."""

    model_config = ConfigDict(extra="forbid")

    ends_at: datetime | None = None
    extend_days: int | None = None
    plan_id: IdValue | None = None
    auto_renew: bool | None = None
