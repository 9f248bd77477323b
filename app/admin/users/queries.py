"""The customers table as one query object: a smart search box, filters, one-click segments, a whitelisted sort
and keyset pagination. Every piece of state is a plain query parameter (`CustomerFilters`), so a view can be
bookmarked, shared, exported and handed to a bulk action exactly as the table shows it.

A customer's figures (status, plan, end date, trial, auto-renewal) are those of their *current* subscription:
the one ending last, like the subscription a payment extends (app/subscriptions/activation.py)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import Select, and_, exists, false, func, or_, select, true, union_all
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from app.admin.tables import ListState, Page, decode_cursor, keyset_page
from app.kit.clock import ensure_utc, utcnow
from app.kit.errors import ValidationFailed
from app.models import (
    LIVE_STATUSES,
    Payment,
    PaymentStatus,
    Plan,
    Subscription,
    SubscriptionStatus,
    User,
    VpnAccount,
)

PAGE_SIZE = 50
# BIGINT, as both databases store ids: a larger filter value is refused, never sent to the database.
MAX_ID = 2**63 - 1
MAX_PAGE_SIZE = 200
# Customer statuses: the current subscription's, with "none" for customers who never had one.
STATUSES = ("active", "trial", "expired", "cancelled", "none")
EXPIRING_DAYS = 3
TRIAL_ENDING_DAYS = 1
TRAFFIC_NEARLY_USED = 0.9


# More matches than this for one search box are not a search any more: the first ones are shown.
SEARCH_CAP = 1000


class Segment(enum.StrEnum):
    EXPIRING = "expiring"
    NEVER_PAID = "never_paid"
    TRIAL_ENDING = "trial_ending"
    TRAFFIC_HIGH = "traffic_high"
    NEVER_CONNECTED = "never_connected"
    BLOCKED = "blocked"


SORTS = ("created", "seen", "ends")


class CustomerFilters(BaseModel):
    """The table's state. Unknown parameters are ignored (links from elsewhere may carry their own)."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    search: str | None = Field(None, max_length=128, pattern=r"^[^\x00]*$")
    status: Literal["active", "trial", "expired", "cancelled", "none"] | None = None
    plan: int | None = Field(None, ge=1, le=MAX_ID)
    provider: str | None = Field(None, max_length=32, pattern=r"^[a-z0-9_]*$")
    language: str | None = Field(None, max_length=8, pattern=r"^[a-z-]*$")
    created_from: date | None = None
    created_to: date | None = None
    seen_from: date | None = None
    seen_to: date | None = None
    ends_from: date | None = None
    ends_to: date | None = None
    trial: bool | None = None
    auto_renew: bool | None = None
    blocked: bool | None = None
    unreachable: bool | None = None
    segment: Segment | None = None
    sort: Literal["created", "seen", "ends"] = "created"
    dir: Literal["asc", "desc"] = "desc"

    @field_validator("*", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        # An HTML form sends every field; an empty one means "any".
        return None if value == "" else value

    def query_params(self) -> dict[str, str]:
        """The non-default state as URL parameters (the page's links, the export and the bulk action use it)."""
        params: dict[str, str] = {}
        for name, value in self.model_dump(exclude_defaults=True).items():
            if value is None:
                continue
            params[name] = ("true" if value else "false") if isinstance(value, bool) else str(value)
        return params


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def between(column: Any, start: date | None, end: date | None) -> list[Any]:
    """Inclusive calendar days (UTC)."""
    conditions = []
    if start is not None:
        conditions.append(column >= _day_start(start))
    if end is not None:
        conditions.append(column < _day_start(end + timedelta(days=1)))
    return conditions


@dataclass(frozen=True, slots=True)
class CustomerRow:
    user: User
    subscription: Subscription | None
    plan: Plan | None
    account: VpnAccount | None

    @property
    def status(self) -> str:
        return customer_status(self.subscription)


def customer_status(subscription: Subscription | None, now: datetime | None = None) -> str:
    if subscription is None:
        return "none"
    if subscription.status == SubscriptionStatus.CANCELLED:
        return "cancelled"
    if subscription.status in LIVE_STATUSES and ensure_utc(subscription.ends_at) > (now or utcnow()):
        return "trial" if subscription.is_trial else "active"
    return "expired"


class CustomerQuery:
    """Builds the statement for a `CustomerFilters`; `page()` runs it, `ids()` gives every matching id."""

    def __init__(self, filters: CustomerFilters, *, now: datetime | None = None) -> None:
        self.filters = filters
        self.now = now or utcnow()
        self.current = aliased(Subscription, name="current_sub")
        # The search's matches, resolved once by `prepare` (a plain scan, not one walked in the page's order).
        self._search_ids: list[int] | None = None
        self.account = aliased(VpnAccount, name="current_account")

    # --- the pieces -------------------------------------------------------------------------------------------

    def _sort_column(self) -> Any:
        """The column of the order, never NULL (the keyset needs a total order) and served by an index: sorted
        by last seen or by end date, the customers who have one are listed."""
        if self.filters.sort == "created":
            return User.created_at
        # The user row's copy of the current subscription's end (kept by the database): its index starts a walk
        # at "now" for live customers, where the subscriptions' own would first pass every expired one.
        return User.current_ends_at if self.filters.sort == "ends" else User.last_seen_at

    def list_state(self, path: str, *, cursor: str | None = None, limit: int = PAGE_SIZE) -> ListState:
        """The shared table state (app/admin/tables.py) of these filters: links, sort headers, segments."""
        params = {k: v for k, v in self.filters.query_params().items() if k not in ("sort", "dir")}
        return ListState(path, params, self.filters.sort, self.filters.dir == "desc", cursor, limit)

    def _status(self, status: str) -> Any:
        """Read from the user row (its copy of the current subscription, kept by the database), so a filter by
        status walks ix_users_current_status_created_at or the page's own order without a lookup per row."""
        now = self.now
        live = and_(
            User.current_status.in_([value.value for value in LIVE_STATUSES]),
            User.current_ends_at > now,
        )
        return {
            "active": and_(live, User.current_is_trial.is_(False)),
            "trial": and_(live, User.current_is_trial.is_(True)),
            "cancelled": User.current_status == SubscriptionStatus.CANCELLED.value,
            "expired": and_(
                User.current_status.is_not(None),
                User.current_status != SubscriptionStatus.CANCELLED.value,
                or_(User.current_status.not_in([value.value for value in LIVE_STATUSES]), User.current_ends_at <= now),
            ),
            "none": User.current_subscription_id.is_(None),
        }[status]

    def _paid(self, provider: str | None = None) -> Any:
        condition = and_(Payment.user_id == User.id, Payment.status == PaymentStatus.SUCCEEDED)
        if provider is not None:
            condition = and_(condition, Payment.provider == provider)
        return exists().where(condition)

    def _segment(self, segment: Segment) -> Any:
        cur, account, now = self.current, self.account, self.now
        live = and_(cur.status.in_(LIVE_STATUSES), cur.ends_at > now)
        match segment:
            case Segment.EXPIRING:
                return and_(live, cur.ends_at <= now + timedelta(days=EXPIRING_DAYS))
            case Segment.NEVER_PAID:
                return ~self._paid()
            case Segment.TRIAL_ENDING:
                return and_(live, cur.is_trial.is_(True), cur.ends_at <= now + timedelta(days=TRIAL_ENDING_DAYS))
            case Segment.TRAFFIC_HIGH:
                return and_(
                    live,
                    account.traffic_limit_bytes > 0,
                    account.used_traffic_bytes >= account.traffic_limit_bytes * TRAFFIC_NEARLY_USED,
                )
            case Segment.NEVER_CONNECTED:
                return and_(live, or_(account.id.is_(None), account.online_at.is_(None)))
            case Segment.BLOCKED:
                return User.is_blocked.is_(True)

    def _search(self, text: str) -> Any:
        """One box for everything staff paste: a Telegram id, @username, a name, a referral code, a panel
        username, a payment's external id (or our payment id). The matching customer ids, as a UNION ALL of
        lookups that each use an index (one OR over them all made PostgreSQL scan every customer; ALL, so a cap
        stops the scan early, and an id found twice is harmless in an IN list); only a name's substring scans the
        customers, and only for text that is not a number or an @username."""
        lowered = text.lower()
        if text.startswith("@"):
            return select(User.id).where(func.lower(User.username) == lowered[1:])
        lookups = [
            select(User.id).where(User.referral_code == text),
            select(VpnAccount.user_id).where(VpnAccount.panel_username == text),
            select(Payment.user_id).where(Payment.external_id == text),
            select(Payment.user_id).where(Payment.public_id == text),
        ]
        if text.isdigit():
            # A pasted number is an id of some kind: looked up by index, without scanning every name.
            if len(text) <= 18:
                lookups.append(select(User.id).where(User.telegram_id == int(text)))
            return union_all(*lookups)
        pattern = f"%{lowered.replace('%', '').replace('_', '')}%"
        lookups.append(select(User.id).where(func.lower(User.username) == lowered))
        lookups.append(
            select(User.id).where(
                or_(func.lower(User.first_name).like(pattern), func.lower(User.last_name).like(pattern))
            )
        )
        return union_all(*lookups)

    def conditions(self) -> list[Any]:
        f, cur = self.filters, self.current
        where: list[Any] = []
        if f.search:
            where.append(User.id.in_(self._search_ids if self._search_ids is not None else self._search(f.search)))
        if f.status:
            where.append(self._status(f.status))
        if f.plan is not None:
            where.append(cur.plan_id == f.plan)
        if f.provider:
            where.append(self._paid(f.provider))
        if f.language:
            where.append(User.language == f.language)
        where += between(User.created_at, f.created_from, f.created_to)
        where += between(User.last_seen_at, f.seen_from, f.seen_to)
        where += between(cur.ends_at, f.ends_from, f.ends_to)
        for flag, column in ((f.trial, cur.is_trial), (f.auto_renew, cur.auto_renew)):
            if flag is not None:
                where.append(and_(cur.id.is_not(None), column.is_(true() if flag else false())))
        if f.blocked is not None:
            where.append(User.is_blocked.is_(true() if f.blocked else false()))
        if f.unreachable is not None:
            where.append(User.unreachable_since.is_not(None) if f.unreachable else User.unreachable_since.is_(None))
        if f.segment:
            where.append(self._segment(f.segment))
        if f.sort == "seen":
            where.append(User.last_seen_at.is_not(None))
        if f.sort == "ends":
            where.append(User.current_ends_at.is_not(None))
        return where

    def _joined(self, *columns: Any, whole: bool = False) -> Select[Any]:
        """Customers with their current subscription (the user row names it), walked in the customers' own order
        (sorted by end date, only customers who have a subscription are listed). `whole` (an export, a count, a
        bulk action's ids) is the same join."""
        joined = (
            select(*columns).select_from(User).outerjoin(self.current, self.current.id == User.current_subscription_id)
        )
        return joined.outerjoin(self.account, self.account.subscription_id == self.current.id).where(*self.conditions())

    async def prepare(self, session: AsyncSession) -> None:
        """Resolve the search box into customer ids first: matching it while walking the customers in the page's
        order would read every customer's row in that order (random reads) instead of one plain scan."""
        if self.filters.search and self._search_ids is None:
            matches = self._search(self.filters.search).limit(SEARCH_CAP)
            self._search_ids = list((await session.scalars(matches)).all())

    # --- running it -------------------------------------------------------------------------------------------

    async def page(self, session: AsyncSession, *, cursor: str | None = None, limit: int = PAGE_SIZE) -> Page[Any]:
        """One page in the chosen order (rows: user, current subscription, plan, account, sort value);
        `next_cursor` continues after its last row (None at the end)."""
        await self.prepare(session)
        sort = self._sort_column()
        statement = self._joined(User, self.current, Plan, self.account, sort.label("sort_value")).outerjoin(
            Plan, Plan.id == self.current.plan_id
        )
        if cursor is not None and not isinstance(decode_cursor(cursor)[0], datetime):
            raise ValidationFailed("cursor: not a cursor this list gave out; start again from the first page")
        state = self.list_state("", cursor=cursor, limit=max(1, min(limit, MAX_PAGE_SIZE)))
        found = await keyset_page(
            session,
            statement,
            state,
            sort_column=sort,
            id_column=User.id,
            cursor_of=lambda row: (row.sort_value, row[0].id),
        )
        rows = [CustomerRow(user, sub, plan, account) for user, sub, plan, account, _ in found.rows]
        return Page(rows, found.next_cursor)

    async def count(self, session: AsyncSession) -> int:
        await self.prepare(session)
        return int(await session.scalar(self._joined(func.count(User.id), whole=True)) or 0)

    async def ids(self, session: AsyncSession, *, limit: int) -> list[int]:
        """Every matching customer id (oldest first), at most `limit`: what a bulk action acts on."""
        await self.prepare(session)
        return list((await session.scalars(self._joined(User.id, whole=True).order_by(User.id).limit(limit))).all())

    def rows_statement(self) -> Select[Any]:
        """Every matching customer with its current subscription and plan, by id (what an export streams)."""
        return (
            self._joined(User, self.current, Plan, self.account, whole=True)
            .outerjoin(Plan, Plan.id == self.current.plan_id)
            .order_by(User.id)
        )
