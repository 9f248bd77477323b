"""The customers table's query object: each search kind, filter and segment picks exactly its customers, and
keyset pages in every sort cover everyone once."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from app.admin.tables import decode_cursor
from app.admin.users.queries import CustomerFilters, CustomerQuery
from app.kit.errors import ValidationFailed
from app.models import Payment, PaymentStatus, Plan, Subscription, SubscriptionStatus, User
from tests.factories import add_account, add_server

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


async def _user(db: AsyncSession, tg: int, **fields: object) -> User:
    values: dict = {"referral_code": f"code{tg}", "created_at": NOW - timedelta(days=tg % 50)} | fields
    user = User(telegram_id=tg, **values)
    db.add(user)
    await db.flush()
    return user


async def _sub(db: AsyncSession, user: User, ends_in: timedelta, **fields: object) -> Subscription:
    values: dict = {"status": SubscriptionStatus.ACTIVE} | fields
    sub = Subscription(user_id=user.id, starts_at=NOW - timedelta(days=40), ends_at=NOW + ends_in, **values)
    db.add(sub)
    await db.flush()
    return sub


async def _pay(db: AsyncSession, user: User, provider: str, external_id: str, status=PaymentStatus.SUCCEEDED) -> None:
    db.add(
        Payment(
            public_id=f"pub-{external_id}",
            user_id=user.id,
            provider=provider,
            amount_minor=100,
            currency="RUB",
            status=status,
            external_id=external_id,
            idempotency_key=f"key-{external_id}",
            days=30,
        )
    )
    await db.flush()


@pytest.fixture
async def people(db: AsyncSession, freeze) -> dict[str, User]:
    """Six customers, each standing out in some way."""
    freeze(NOW)
    server = await add_server(db)
    plan = Plan(code="month", name={"en": "Month"}, duration_days=30)
    db.add(plan)
    await db.flush()
    ann = await _user(db, 1001, username="Ann_K", first_name="Анна", language="ru", last_seen_at=NOW)
    sub = await _sub(db, ann, timedelta(days=2), plan_id=plan.id)
    await add_account(db, server, sub, online_at=NOW, traffic_limit_bytes=100, used_traffic_bytes=95)
    await _pay(db, ann, "yookassa", "yk-777")
    bob = await _user(db, 1002, username="bob", first_name="Bob", language="en")
    await _sub(db, bob, timedelta(hours=12), status=SubscriptionStatus.TRIAL, is_trial=True)
    cat = await _user(db, 1003, first_name="Cat", is_blocked=True, block_reason="fraud")
    await _sub(db, cat, timedelta(days=-3), status=SubscriptionStatus.EXPIRED)
    await _pay(db, cat, "cryptopay", "cp-1")
    dan = await _user(db, 1004, first_name="Dan", unreachable_since=NOW)
    dan_sub = await _sub(db, dan, timedelta(days=20), auto_renew=False)
    await add_account(db, server, dan_sub, panel_username="special_panel_name")
    await _pay(db, dan, "cryptopay", "cp-2", PaymentStatus.FAILED)
    eve = await _user(db, 1005, first_name="Eve")
    await _sub(db, eve, timedelta(days=-1), status=SubscriptionStatus.CANCELLED)
    fay = await _user(db, 1006, first_name="Fay", referral_code="fayscode")
    return {"ann": ann, "bob": bob, "cat": cat, "dan": dan, "eve": eve, "fay": fay}


async def names(db: AsyncSession, **params: object) -> set[str]:
    page = await CustomerQuery(CustomerFilters(**params)).page(db, limit=200)
    return {row.user.first_name or "" for row in page.rows}


@pytest.mark.parametrize(
    ("search", "expected"),
    [
        ("1003", {"Cat"}),  # Telegram id
        ("@ann_k", {"Анна"}),  # @username, any case
        ("анн", {"Анна"}),  # part of a name
        ("fayscode", {"Fay"}),  # referral code
        ("special_panel_name", {"Dan"}),  # panel username
        ("yk-777", {"Анна"}),  # a payment's external id
        ("nobody-at-all", set()),
    ],
)
async def test_one_search_box_finds_by_each_kind(db: AsyncSession, people: dict, search: str, expected: set) -> None:
    assert await names(db, search=search) == expected


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"status": "active"}, {"Анна", "Dan"}),
        ({"status": "trial"}, {"Bob"}),
        ({"status": "expired"}, {"Cat"}),
        ({"status": "cancelled"}, {"Eve"}),
        ({"status": "none"}, {"Fay"}),
        ({"provider": "cryptopay"}, {"Cat"}),  # a failed payment does not count
        ({"language": "en"}, {"Bob"}),
        ({"trial": "true"}, {"Bob"}),
        ({"auto_renew": "false"}, {"Dan"}),
        ({"blocked": "true"}, {"Cat"}),
        ({"unreachable": "true"}, {"Dan"}),
        ({"seen_from": "2026-03-01"}, {"Анна"}),
        ({"ends_from": "2026-03-01", "ends_to": "2026-03-03"}, {"Анна", "Bob"}),
        ({"created_from": "2026-02-26", "created_to": "2026-02-27"}, {"Bob", "Cat"}),
        ({"segment": "expiring"}, {"Анна", "Bob"}),
        ({"segment": "never_paid"}, {"Bob", "Dan", "Eve", "Fay"}),
        ({"segment": "trial_ending"}, {"Bob"}),
        ({"segment": "traffic_high"}, {"Анна"}),
        ({"segment": "never_connected"}, {"Bob", "Dan"}),
        ({"segment": "blocked"}, {"Cat"}),
        ({"status": "active", "segment": "expiring", "language": "ru"}, {"Анна"}),
    ],
)
async def test_filters_and_segments(db: AsyncSession, people: dict, params: dict, expected: set) -> None:
    assert await names(db, **params) == expected


async def test_plan_filter(db: AsyncSession, people: dict) -> None:
    page = await CustomerQuery(CustomerFilters(status="active")).page(db)
    plan_id = next(row.plan.id for row in page.rows if row.plan)
    assert await names(db, plan=plan_id) == {"Анна"}


@pytest.mark.parametrize("sort", ["created", "seen", "ends"])
@pytest.mark.parametrize("direction", ["asc", "desc"])
async def test_keyset_pages_cover_everyone_once_in_order(
    db: AsyncSession, people: dict, sort: str, direction: str
) -> None:
    query = CustomerQuery(CustomerFilters(sort=sort, dir=direction))
    seen: list[User] = []
    cursor = None
    for _ in range(10):
        page = await query.page(db, cursor=cursor, limit=2)
        seen += [row.user for row in page.rows]
        cursor = page.next_cursor
        if cursor is None:
            break
    # Sorted by end date, the customers with a subscription (Fay has none); by last seen, those ever seen.
    everyone = {"created": [1001, 1002, 1003, 1004, 1005, 1006], "ends": [1001, 1002, 1003, 1004, 1005]}.get(
        sort, [1001]
    )
    assert sorted(u.telegram_id for u in seen) == everyone
    full = await query.page(db, limit=200)
    assert [u.id for u in seen] == [row.user.id for row in full.rows]
    if (sort, direction) == ("ends", "desc"):
        assert [row.user.first_name for row in full.rows] == ["Dan", "Анна", "Bob", "Eve", "Cat"]
    assert await query.count(db) == len(everyone)


async def test_bad_state_is_refused_clearly() -> None:
    for params in (
        {"sort": "password"},
        {"dir": "up"},
        {"status": "rich"},
        {"segment": "vip"},
        {"created_from": "yesterday"},
    ):
        with pytest.raises(ValidationError):
            CustomerFilters(**params)
    with pytest.raises(ValidationFailed):
        decode_cursor("not-a-cursor")
    filters = CustomerFilters(search="", status="", trial="true", created_from="2026-01-02")
    assert filters.query_params() == {"trial": "true", "created_from": "2026-01-02"}
    assert filters.created_from == date(2026, 1, 2)
