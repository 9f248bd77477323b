"""What the customer's home page and `/api/me` show: the current subscription, its plan and VPN account, read
in one query from our own database (panel data arrives by sync jobs, so no page waits on a panel)."""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.kit.clock import utcnow
from app.models import LIVE_STATUSES, Plan, Subscription, SubscriptionStatus, User, VpnAccount
from app.payments.registry import PaymentRegistry
from app.subscriptions.renewal_methods import charged_providers, has_method, self_renewing_providers
from app.subscriptions.trial import trial_available

# Within this many days of the end the home page suggests extending.
EXTEND_SOON = timedelta(days=3)


class NextAction(enum.StrEnum):
    ACTIVATE_TRIAL = "activate_trial"
    WAIT_PROVISIONING = "wait_provisioning"
    CONNECT = "connect"
    EXTEND = "extend"
    PAY = "pay"
    FIX_PROBLEM = "fix_problem"


@dataclass(slots=True)
class Overview:
    user: User
    subscription: Subscription | None
    plan: Plan | None
    account: VpnAccount | None
    trial_available: bool
    now: datetime
    has_renewal_method: bool = False  # an active saved method of a provider that can renew

    @property
    def renews(self) -> bool:
        """Auto-renewal is on and something can actually renew it; "on" alone would promise a renewal that
        cannot happen."""
        sub = self.subscription
        return sub is not None and sub.auto_renew and not sub.is_trial and self.has_renewal_method

    @property
    def is_live(self) -> bool:
        sub = self.subscription
        return sub is not None and sub.status in LIVE_STATUSES and (sub.ends_at > self.now)

    @property
    def status(self) -> str:
        if self.subscription is None:
            return "none"
        if self.subscription.status in LIVE_STATUSES and not self.is_live:
            return SubscriptionStatus.EXPIRED.value
        return self.subscription.status.value

    @property
    def days_left(self) -> int:
        if not self.is_live or self.subscription is None:
            return 0
        # The nearest whole day (a fresh 7-day trial shows 7, not 6 and 23 hours), and never "0 days left"
        # while access still works.
        return max(1, round((self.subscription.ends_at - self.now) / timedelta(days=1)))

    @property
    def left_percent(self) -> int:
        """How much of the current term is left, 0–100: the ring on the home page."""
        sub = self.subscription
        if not self.is_live or sub is None:
            return 0
        total = (sub.ends_at - sub.starts_at).total_seconds()
        left = (sub.ends_at - self.now).total_seconds()
        return max(0, min(100, round(100 * left / total))) if total > 0 else 0

    @property
    def tone(self) -> str:
        """The status colour: good while it runs, warn near the end or while setting up, bad when it stopped."""
        if not self.is_live:
            return "bad"
        if self.next_action in {NextAction.FIX_PROBLEM}:
            return "bad"
        if self.next_action == NextAction.WAIT_PROVISIONING or (
            self.subscription and self.subscription.ends_at - self.now <= EXTEND_SOON
        ):
            return "warn"
        return "good"

    @property
    def ready(self) -> bool:
        return self.account is not None and self.account.provisioned_at is not None

    @property
    def traffic_percent(self) -> int | None:
        account = self.account
        if account is None or not account.traffic_limit_bytes:
            return None
        return min(100, round(100 * account.used_traffic_bytes / account.traffic_limit_bytes))

    @property
    def next_action(self) -> NextAction:
        if self.subscription is None:
            return NextAction.ACTIVATE_TRIAL if self.trial_available else NextAction.PAY
        if not self.is_live:
            return NextAction.PAY
        if not self.ready:
            return NextAction.WAIT_PROVISIONING
        account = self.account
        if account is not None and (account.status != "active" or self.traffic_percent == 100):
            return NextAction.FIX_PROBLEM
        if self.subscription.ends_at - self.now <= EXTEND_SOON:
            return NextAction.EXTEND
        return NextAction.CONNECT if account is not None and account.sub_updated_at is None else NextAction.EXTEND


@functools.lru_cache(maxsize=16)
def _latest_subscription(renewing: frozenset[str]) -> Select[Any]:
    """The statement of `overview`, built once per set of renewing providers: building it anew cost a fifth of a
    millisecond on every page."""
    return (
        select(Subscription, Plan, VpnAccount, has_method(renewing).label("has_renewal_method"))
        .outerjoin(Plan, Plan.id == Subscription.plan_id)
        .outerjoin(VpnAccount, VpnAccount.subscription_id == Subscription.id)
        .where(Subscription.user_id == bindparam("user_id"))
        .order_by(Subscription.ends_at.desc(), Subscription.id.desc())
        .limit(1)
    )


async def overview(
    session: AsyncSession, user: User, *, trial_days: int, payments: PaymentRegistry | None = None
) -> Overview:
    """The user's current subscription (the one ending last) with its plan and account, and (given the
    payment providers) whether a saved method can renew it — all in one query."""
    renewing = (charged_providers(payments) | self_renewing_providers(payments)) if payments else frozenset()
    row = (await session.execute(_latest_subscription(renewing), {"user_id": user.id})).first()
    subscription, plan, account, can_renew = row if row is not None else (None, None, None, False)
    can_trial = subscription is None and await trial_available(session, user, trial_days=trial_days)
    return Overview(user, subscription, plan, account, can_trial, utcnow(), bool(can_renew))
