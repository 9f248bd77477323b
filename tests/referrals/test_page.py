"""The referral page: links carrying the user's code, the invited / active / paid counts, bonus days earned and
used, the history with masked names, and the leaderboard's windows and the viewer's own place — as queries
with an explicit `now` and over HTTP (both languages, the leaderboard block alone, a bounded query count)."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.kit.clock import FrozenClock
from app.models import (
    Payment,
    PaymentStatus,
    ReferralReward,
    ReferralRewardKind,
    Subscription,
    SubscriptionStatus,
    User,
)
from app.referrals.service import (
    Period,
    leaderboard,
    mask_name,
    referral_history,
    referral_links,
    referral_stats,
)
from tests.conftest import make_settings
from tests.web import BOT_TOKEN, browser_session, count_queries, htmx, serve, text_of, tma

NOW = datetime(2026, 3, 14, 12, 0, tzinfo=UTC)
VIEWER_TELEGRAM_ID = 777  # the id tests.web.init_data signs by default

# Measured: the viewer (1), counts and bonus days (1), history (2), leaderboard (1).
PAGE_QUERIES = 5
# Measured: the viewer (1), leaderboard (1).
LEADERBOARD_QUERIES = 2


# --- rows -----------------------------------------------------------------------------------------------------

_ids = iter(range(10_000, 1_000_000))


async def add_user(
    db: AsyncSession,
    *,
    referrer: User | None = None,
    joined: datetime = NOW - timedelta(days=1),
    first_name: str | None = None,
    **fields: object,
) -> User:
    telegram_id = fields.pop("telegram_id", None) or next(_ids)
    user = User(
        telegram_id=telegram_id,
        referral_code=fields.pop("referral_code", None) or f"c{telegram_id}",
        referrer_id=referrer.id if referrer else None,
        first_name=first_name,
        created_at=joined,
        **fields,
    )
    db.add(user)
    await db.flush()
    return user


async def add_subscription(
    db: AsyncSession, user: User, *, ends_at: datetime, status: SubscriptionStatus = SubscriptionStatus.ACTIVE
) -> None:
    db.add(
        Subscription(
            user_id=user.id,
            status=status,
            is_trial=status is SubscriptionStatus.TRIAL,
            starts_at=ends_at - timedelta(days=30),
            ends_at=ends_at,
        )
    )
    await db.flush()


async def add_payment(db: AsyncSession, user: User, status: PaymentStatus) -> Payment:
    payment = Payment(
        public_id=str(uuid.uuid4()),
        user_id=user.id,
        provider="demo",
        amount_minor=19900,
        currency="RUB",
        status=status,
        idempotency_key=uuid.uuid4().hex,
        days=30,
    )
    db.add(payment)
    await db.flush()
    return payment


async def add_reward(
    db: AsyncSession,
    beneficiary: User,
    kind: ReferralRewardKind,
    days: int,
    *,
    at: datetime,
    source: User | None = None,
    applied: bool = True,
    milestone: int | None = None,
) -> None:
    db.add(
        ReferralReward(
            beneficiary_id=beneficiary.id,
            source_user_id=source.id if source else None,
            kind=kind,
            days=days,
            milestone=milestone,
            dedupe_key=uuid.uuid4().hex,
            applied_at=at if applied else None,
            created_at=at,
        )
    )
    await db.flush()


async def invite(db: AsyncSession, referrer: User, count: int, *, joined: datetime) -> None:
    for _ in range(count):
        await add_user(db, referrer=referrer, joined=joined)


async def friends_of_every_kind(db: AsyncSession, viewer: User) -> None:
    """Six friends: live and paid, trial, expired but paid once, ended by date, unpaid, cancelled; plus a
    stranger with a live paid subscription, and rewards for the viewer and for someone else."""
    live_paid = await add_user(db, referrer=viewer, first_name="Boris", joined=NOW - timedelta(days=20))
    await add_subscription(db, live_paid, ends_at=NOW + timedelta(days=25))
    await add_payment(db, live_paid, PaymentStatus.SUCCEEDED)

    trial = await add_user(db, referrer=viewer, first_name="Vera", joined=NOW - timedelta(days=3))
    await add_subscription(db, trial, ends_at=NOW + timedelta(days=4), status=SubscriptionStatus.TRIAL)

    paid_once = await add_user(db, referrer=viewer, username="gleb_k", joined=NOW - timedelta(days=60))
    await add_subscription(db, paid_once, ends_at=NOW - timedelta(days=5), status=SubscriptionStatus.EXPIRED)
    await add_payment(db, paid_once, PaymentStatus.SUCCEEDED)
    await add_payment(db, paid_once, PaymentStatus.REFUNDED)

    ended = await add_user(db, referrer=viewer, first_name="Dina", joined=NOW - timedelta(days=40))
    await add_subscription(db, ended, ends_at=NOW - timedelta(hours=1))  # "active" row, but the date has passed

    unpaid = await add_user(db, referrer=viewer, first_name="Egor", joined=NOW - timedelta(days=2))
    await add_payment(db, unpaid, PaymentStatus.FAILED)
    await add_payment(db, unpaid, PaymentStatus.PENDING)

    cancelled = await add_user(db, referrer=viewer, first_name="Fedor", joined=NOW - timedelta(days=1))
    await add_subscription(db, cancelled, ends_at=NOW + timedelta(days=10), status=SubscriptionStatus.CANCELLED)

    stranger = await add_user(db, first_name="Zoya")
    await add_subscription(db, stranger, ends_at=NOW + timedelta(days=10))
    await add_payment(db, stranger, PaymentStatus.SUCCEEDED)

    await add_reward(
        db, viewer, ReferralRewardKind.FIRST_PAYMENT_REFERRER, 7, at=NOW - timedelta(days=19), source=live_paid
    )
    milestone_at = NOW - timedelta(hours=2)
    await add_reward(db, viewer, ReferralRewardKind.MILESTONE, 30, at=milestone_at, applied=False, milestone=3)
    await add_reward(db, live_paid, ReferralRewardKind.FIRST_PAYMENT_REFERRED, 3, at=NOW - timedelta(days=19))


# --- pure functions -------------------------------------------------------------------------------------------


def test_links_carry_the_code() -> None:
    links = referral_links("k3x9q", bot_username="@vpnshop_bot")
    assert links.bot == "https://t.me/vpnshop_bot?start=ref_k3x9q"
    assert links.mini_app == "https://t.me/vpnshop_bot?startapp=ref_k3x9q"
    named = referral_links("k3x9q", bot_username="vpnshop_bot", mini_app_short_name="app")
    assert named.mini_app == "https://t.me/vpnshop_bot/app?startapp=ref_k3x9q"
    bare = referral_links("k3x9q", bot_username="")
    assert (bare.code, bare.bot, bare.mini_app) == ("k3x9q", None, None)


@pytest.mark.parametrize(
    ("names", "masked"),
    [
        (("Anastasia", "nastya"), "An***"),
        ((None, "@boris_v"), "bo***"),
        (("  ", "gleb"), "gl***"),
        (("Аня", None), "Ан***"),
        (("Al", None), "A***"),
        ((None, None), "***"),
    ],
)
def test_names_are_masked(names: tuple[str | None, str | None], masked: str) -> None:
    assert mask_name(*names) == masked


# --- queries with an explicit now -----------------------------------------------------------------------------


async def test_counts_and_bonus_days(db: AsyncSession) -> None:
    viewer = await add_user(db, first_name="Ann")
    await friends_of_every_kind(db, viewer)
    await db.commit()

    stats = await referral_stats(db, viewer.id, now=NOW)
    assert (stats.invited, stats.active, stats.paid) == (6, 2, 2)
    assert (stats.days_earned, stats.days_used, stats.days_pending) == (37, 7, 30)

    # An hour earlier the "ended" friend was still live.
    earlier = await referral_stats(db, viewer.id, now=NOW - timedelta(hours=2))
    assert earlier.active == 3

    nobody = await add_user(db)
    empty = await referral_stats(db, nobody.id, now=NOW)
    assert (empty.invited, empty.active, empty.paid, empty.days_earned, empty.days_used) == (0, 0, 0, 0, 0)


async def test_history_is_newest_first_with_masked_names(db: AsyncSession) -> None:
    viewer = await add_user(db, first_name="Ann")
    await friends_of_every_kind(db, viewer)
    await db.commit()

    history = await referral_history(db, viewer.id, now=NOW)
    assert [(item.kind, item.name) for item in history] == [
        ("milestone", "***"),
        ("joined", "Fe***"),
        ("joined", "Eg***"),
        ("joined", "Ve***"),
        ("first_payment_referrer", "Bo***"),
        ("joined", "Bo***"),
        ("joined", "Di***"),
        ("joined", "gl***"),
    ]
    milestone, fedor, egor, vera, reward, boris, dina, gleb = history
    assert milestone.days == 30 and milestone.milestone == 3 and not milestone.applied
    assert reward.days == 7 and reward.applied
    assert (boris.paid, boris.active) == (True, True)
    assert (vera.paid, vera.active) == (False, True)
    assert (gleb.paid, gleb.active) == (True, False)
    assert (egor.paid, egor.active, fedor.active, dina.active) == (False, False, False, False)
    assert len(await referral_history(db, viewer.id, now=NOW, limit=3)) == 3


async def test_leaderboard_windows(db: AsyncSession) -> None:
    viewer = await add_user(db, first_name="Ann")
    await add_user(db, referrer=viewer, joined=NOW - timedelta(days=2))
    await add_user(db, referrer=viewer, joined=NOW - timedelta(days=10))
    await add_user(db, referrer=viewer, joined=NOW - timedelta(days=45))
    rival = await add_user(db, first_name="Maxim")
    await invite(db, rival, 2, joined=NOW - timedelta(days=40))
    await db.commit()

    week = await leaderboard(db, viewer.id, Period.WEEK, now=NOW)
    assert [(e.rank, e.name, e.invited, e.is_viewer) for e in week.top] == [(1, "An***", 1, True)]
    assert week.viewer == week.top[0] and not week.viewer_outside_top

    month = await leaderboard(db, viewer.id, Period.MONTH, now=NOW)
    assert [(e.name, e.invited) for e in month.top] == [("An***", 2)]

    all_time = await leaderboard(db, viewer.id, Period.ALL, now=NOW)
    assert [(e.rank, e.name, e.invited) for e in all_time.top] == [(1, "An***", 3), (2, "Ma***", 2)]

    # Eight days later the newest invite has left the week; the month still holds both recent ones.
    later = NOW + timedelta(days=8)
    assert (await leaderboard(db, viewer.id, Period.WEEK, now=later)).top == []
    assert [e.invited for e in (await leaderboard(db, viewer.id, Period.MONTH, now=later)).top] == [2]


async def test_the_viewers_place_outside_the_top_ten(db: AsyncSession) -> None:
    viewer = await add_user(db, first_name="Ann")
    await invite(db, viewer, 1, joined=NOW - timedelta(days=1))
    for n in range(11):
        rival = await add_user(db, first_name=f"Rival{n:02d}")
        # Equal counts: whoever got there first (the older last invite) is listed first, sharing the rank.
        await invite(db, rival, 3 if n == 0 else 2, joined=NOW - timedelta(days=2, hours=n))
    banned = await add_user(db, first_name="Cheater", is_blocked=True, block_reason="fraud")
    await invite(db, banned, 9, joined=NOW - timedelta(days=1))
    quiet = await add_user(db, first_name="Quiet")
    await db.commit()

    board = await leaderboard(db, viewer.id, Period.WEEK, now=NOW)
    assert len(board.top) == 10
    assert [e.rank for e in board.top] == [1] + [2] * 9
    assert [e.name for e in board.top] == ["Ri***"] * 10
    assert [e.invited for e in board.top] == [3] + [2] * 9
    assert not any(e.is_viewer for e in board.top)
    assert board.viewer_outside_top
    assert board.viewer is not None and (board.viewer.rank, board.viewer.invited) == (12, 1)

    unranked = await leaderboard(db, quiet.id, Period.WEEK, now=NOW)
    assert unranked.viewer is None and not unranked.viewer_outside_top and len(unranked.top) == 10


# --- over HTTP ------------------------------------------------------------------------------------------------


@pytest.fixture
def clock(freeze: Callable[[datetime], FrozenClock]) -> FrozenClock:
    return freeze(NOW)


@pytest.fixture
def web_settings(database_url: str) -> Settings:
    return make_settings(database_url, bot_token=BOT_TOKEN, bot_username="vpnshop_bot")


@pytest.fixture
async def web(
    web_settings: Settings, db: AsyncSession, clock: FrozenClock
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    async with serve(web_settings) as pair:
        yield pair


async def add_viewer(db: AsyncSession, language: str) -> User:
    # The same names as the signed initData and a fresh last_seen_at, so a visit reads and never writes.
    return await add_user(
        db,
        telegram_id=VIEWER_TELEGRAM_ID,
        referral_code="k3x9q",
        first_name="Ann",
        username="ann",
        language=language,
        last_seen_at=NOW,
        joined=NOW - timedelta(days=90),
    )


@pytest.mark.parametrize(
    ("language", "phrases"),
    [
        (
            "en",
            ["Invite friends", "Invited 6", "Active now 2", "Paid 2", "Earned 37 days", "Used 7 days",
             "Not added yet 30 days", "New friend with your link: Bo***", "+7 days: first payment by Bo***",
             "+30 days: you invited 3 friends", "Month", "1 You 4 friends"],
        ),
        (
            "ru",
            ["Приглашайте друзей", "Приглашено 6", "Активны сейчас 2", "Оплатили 2", "Заработано 37 дней",
             "Использовано 7 дней", "Новый друг по вашей ссылке: Bo***", "+7 дней: первая оплата от Bo***",
             "+30 дней: вы пригласили 3 друзей", "Месяц", "1 Вы 4 друга"],
        ),
    ],
)  # fmt: skip
async def test_the_page_in_both_languages(
    web: tuple[FastAPI, httpx.AsyncClient], db: AsyncSession, language: str, phrases: list[str]
) -> None:
    app, client = web
    viewer = await add_viewer(db, language)
    await friends_of_every_kind(db, viewer)
    await db.commit()

    with count_queries(app) as statements:
        response = await client.get("/app/referrals", headers=tma() | htmx())
    assert response.status_code == 200 and "<html" not in response.text
    page = text_of(response.text)
    for phrase in phrases:
        assert phrase in page, phrase
    for name in ("Boris", "Vera", "gleb_k", "Dina", "Egor", "Fedor"):
        assert name not in response.text  # only masked names, also in attributes
    assert 0 < len(statements) <= PAGE_QUERIES, statements

    html = response.text
    assert "https://t.me/vpnshop_bot?start=ref_k3x9q" in html
    assert "https://t.me/vpnshop_bot?startapp=ref_k3x9q" in html
    assert 'data-share-url="https://t.me/vpnshop_bot?start=ref_k3x9q"' in html
    assert 'data-copy="https://t.me/vpnshop_bot?startapp=ref_k3x9q"' in html
    assert "https://t.me/share/url?url=https%3A//t.me/vpnshop_bot%3Fstart%3Dref_k3x9q&amp;text=" in html
    assert '<svg xmlns="http://www.w3.org/2000/svg"' in html and 'class="qr"' in html
    assert re.search(r'<a href="/app/referrals"[^>]*aria-current="page"', html)  # the tab bar marks this page


async def test_the_leaderboard_switch_renders_its_block_alone(
    web: tuple[FastAPI, httpx.AsyncClient], db: AsyncSession
) -> None:
    app, client = web
    viewer = await add_viewer(db, "en")
    await add_user(db, referrer=viewer, joined=NOW - timedelta(days=10))
    rival = await add_user(db, first_name="Maxim")
    await invite(db, rival, 2, joined=NOW - timedelta(days=40))
    await db.commit()

    with count_queries(app) as statements:
        week = await client.get("/app/referrals?period=week", headers=tma() | htmx("leaderboard"))
    assert week.status_code == 200
    assert week.text.lstrip().startswith('<section id="leaderboard"') and "Invite friends" not in week.text
    assert "Nobody has invited a friend in this period yet" in text_of(week.text)
    assert 'href="/app/referrals?period=week" hx-get="/app/referrals?period=week" hx-target="#leaderboard"' in week.text
    assert 0 < len(statements) <= LEADERBOARD_QUERIES, statements

    month = text_of((await client.get("/app/referrals?period=month", headers=tma() | htmx("leaderboard"))).text)
    assert "1 You 1 friend" in month and "Ma***" not in month
    all_time = text_of((await client.get("/app/referrals?period=all", headers=tma() | htmx("leaderboard"))).text)
    assert "1 Ma*** 2 friends 2 You 1 friend" in all_time

    malformed = await client.get("/app/referrals?period=year", headers=tma() | htmx("leaderboard"))
    assert malformed.status_code == 422


async def test_the_browser_cabinet_gets_the_whole_page_with_the_viewers_place(
    web: tuple[FastAPI, httpx.AsyncClient], db: AsyncSession, web_settings: Settings
) -> None:
    app, client = web
    viewer = await add_viewer(db, "en")
    await invite(db, viewer, 1, joined=NOW - timedelta(days=1))
    for n in range(10):
        await invite(db, await add_user(db, first_name=f"Rival{n}"), 2, joined=NOW - timedelta(days=1))
    await browser_session(client, db, viewer, web_settings)

    with count_queries(app) as statements:
        response = await client.get("/app/referrals?period=week")
    assert response.status_code == 200 and "<html" in response.text
    page = text_of(response.text)
    assert page.count("Ri*** 2 friends") == 10 and "11 You 1 friend" in page
    assert 'data-testid="my-place"' in response.text
    assert 0 < len(statements) <= PAGE_QUERIES, statements


async def test_without_a_bot_username_the_page_shows_the_code(
    db: AsyncSession, database_url: str, clock: FrozenClock
) -> None:
    await add_viewer(db, "en")
    await db.commit()
    async with serve(make_settings(database_url, bot_token=BOT_TOKEN)) as (_, client):
        response = await client.get("/app/referrals", headers=tma() | htmx())
    assert response.status_code == 200
    page = text_of(response.text)
    assert "Your invite code: k3x9q" in page and "as soon as the shop" in page
    assert "t.me/" not in response.text and "data-share-url" not in response.text
    assert "Nothing here yet" in page and "Nobody has invited a friend in this period yet" in page
