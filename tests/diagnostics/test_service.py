"""Autodiagnostics against the real demo panel (our database, SQLite and PostgreSQL), real TCP ports for the
nodes, and a panel that is down or never answers. Time is frozen, so no check depends on the wall clock."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from app.config import Settings
from app.db import create_sessionmaker
from app.diagnostics import Report, diagnose, tcp_probe
from app.kit.clock import FrozenClock
from app.kit.crypto import cipher
from app.kit.http import reset_breakers
from app.kit.i18n import Translator, catalog
from app.models import Node, PanelKind, Server, Subscription, SubscriptionStatus, User, VpnAccount
from app.panels.base import AccountChanges, AccountRef, AccountSpec, PanelAccount
from app.panels.demo import DemoPanel, SubscriptionClient, fetch_subscription
from app.panels.registry import PanelRegistry
from tests.factories import add_account, add_server, add_subscriber

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
GIB = 2**30
SECRET_TOKEN = "mirror-token-that-must-stay-secret"


# --- fixtures ------------------------------------------------------------------------------------------------------


@pytest.fixture
def clock(freeze: Callable[[datetime], FrozenClock]) -> FrozenClock:
    return freeze(NOW)


@pytest.fixture(autouse=True)
def fresh_breakers() -> Iterator[None]:
    """Loopback ports are reused across tests; no test may inherit a circuit breaker's failure count."""
    reset_breakers()
    yield
    reset_breakers()


@pytest.fixture
def sessionmaker(db: AsyncSession, engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """The demo panel's own sessions; depending on `db` empties the tables after the test."""
    return create_sessionmaker(engine)


@pytest.fixture
async def panels(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, clock: FrozenClock
) -> AsyncIterator[PanelRegistry]:
    registry = PanelRegistry(sessionmaker, settings)
    yield registry
    await registry.aclose()


@pytest.fixture
async def open_port() -> AsyncIterator[int]:
    """A node that is up: a loopback port accepting connections."""

    async def hang_up(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A node that is down: a port bound (so nobody else takes it) but not listening, which refuses at once."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture
async def silent_port() -> AsyncIterator[int]:
    """A panel that accepts connections and never answers."""
    handlers: list[asyncio.StreamWriter] = []

    async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handlers.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    for writer in handlers:
        writer.close()
    server.close()
    await server.wait_closed()


# --- the customer ---------------------------------------------------------------------------------------------------


@dataclass
class Customer:
    user: User
    subscription: Subscription
    server: Server
    account: VpnAccount | None
    found: PanelAccount | None  # the panel's account, when it has one

    @property
    def short_id(self) -> str:
        assert self.found is not None
        return self.found.subscription_url.rsplit("/", 1)[1]


async def customer(
    db: AsyncSession,
    panels: PanelRegistry,
    *,
    nodes: dict[str, tuple[int, bool]] | None = None,
    account: bool = True,
    in_panel: bool = True,
    provisioned: bool = True,
    panel_expire: timedelta = timedelta(),
    **account_fields: Any,
) -> Customer:
    """A paying customer of the demo server, with `nodes` (name → (port, online flag)) on 127.0.0.1. Their
    account is in the panel, with the same expiry (moved by `panel_expire`), unless told otherwise."""
    server = await add_server(db)
    user, subscription = await add_subscriber(db, 1001)
    for name, (port, online) in (nodes or {}).items():
        db.add(Node(server_id=server.id, external_id=name, name=name, address="127.0.0.1", port=port, is_online=online))
    # Committed before the panel writes: on SQLite its own connection would wait for our write lock.
    await db.commit()
    found = None
    username = f"vs{subscription.id:06d}"
    if account and in_panel:
        panel = panels.for_server(server)
        found = await panel.create_account(
            AccountSpec(username=username, expire_at=subscription.ends_at + panel_expire, telegram_id=1001)
        )
    ours = None
    if account:
        fields: dict[str, Any] = {
            "panel_username": username,
            "sub_token": SECRET_TOKEN,
            "provisioned_at": NOW - timedelta(days=1) if provisioned else None,
        }
        if found is not None:
            url = cipher().encrypt(found.subscription_url)
            fields |= {"panel_id": found.panel_id, "subscription_url_encrypted": url}
        ours = await add_account(db, server, subscription, **(fields | account_fields))
        await db.commit()
    return Customer(user, subscription, server, ours, found)


async def connect(
    sessionmaker: async_sessionmaker[AsyncSession], who: Customer, *, fetch: bool, at: datetime | None
) -> None:
    """The customer's app: fetches the subscription (the real route's code) and/or moves traffic at `at`."""
    if fetch:
        await fetch_subscription(sessionmaker, who.short_id, SubscriptionClient(user_agent="Happ/3.1.0"))
    if at:
        demo = DemoPanel(sessionmaker, public_base_url="https://shop.example")
        await demo.simulate_usage(who.found.username, upload=GIB, download=GIB, at=at)  # type: ignore[union-attr]


async def run(db: AsyncSession, user: User, panels: Any, **options: Any) -> Report:
    """diagnose(), and every sentence it asks for renders in both languages."""
    report = await diagnose(db, user, panels, **options)
    for language in ("ru", "en"):
        messages = catalog(language)
        for check in report.checks:
            for key in filter(None, (check.message_key, check.advice_key, f"diag.check.{check.code}")):
                assert key in messages, f"{language}: no {key}"
                text = Translator(language)(key, **check.params)
                assert "{" not in text and text != key, f"{language}: {key} did not render: {text}"
    return report


def outcomes(report: Report) -> list[tuple[str, str]]:
    return [(check.code, check.outcome) for check in report.checks]


# --- subscription ---------------------------------------------------------------------------------------------------


async def test_no_subscription_fails_first_and_skips_the_rest(db: AsyncSession, panels: PanelRegistry) -> None:
    user = User(telegram_id=1001, referral_code="ref1001")
    db.add(user)
    await db.flush()

    report = await run(db, user, panels)

    assert outcomes(report) == [
        ("subscription", "fail"),
        ("account", "skipped"),
        ("link", "skipped"),
        ("server", "skipped"),
        ("client", "skipped"),
    ]
    first = report.check("subscription")
    assert (first.message_key, first.advice_key, first.faq_slugs) == (
        "diag.subscription.none",
        "diag.advice.buy",
        ("how-pay",),
    )
    assert report.outcome == "fail"
    assert report.faq_slugs == ("how-pay",)


@pytest.mark.parametrize(
    ("status", "ends_in", "key", "advice"),
    [
        (SubscriptionStatus.EXPIRED, timedelta(days=-2), "diag.subscription.expired", "diag.advice.renew"),
        # Past its end but not yet marked expired by the job: just as dead to the customer.
        (SubscriptionStatus.ACTIVE, timedelta(minutes=-1), "diag.subscription.expired", "diag.advice.renew"),
        (SubscriptionStatus.CANCELLED, timedelta(days=3), "diag.subscription.cancelled", "diag.advice.buy"),
        (SubscriptionStatus.PENDING, timedelta(days=30), "diag.subscription.pending", "diag.advice.finish_payment"),
    ],
)
async def test_a_subscription_that_does_not_run_fails_with_advice(
    db: AsyncSession,
    panels: PanelRegistry,
    status: SubscriptionStatus,
    ends_in: timedelta,
    key: str,
    advice: str,
) -> None:
    user, _ = await add_subscriber(db, 1001, status=status, ends_in=ends_in)

    report = await run(db, user, panels)

    check = report.check("subscription")
    assert (check.outcome, check.message_key, check.advice_key) == ("fail", key, advice)
    assert [check.outcome for check in report.checks[1:]] == ["skipped"] * 4


async def test_the_running_subscription_counts_over_older_ones(db: AsyncSession, panels: PanelRegistry) -> None:
    user, _ = await add_subscriber(db, 1001, status=SubscriptionStatus.EXPIRED, ends_in=timedelta(days=-40))
    db.add(
        Subscription(
            user_id=user.id, status=SubscriptionStatus.TRIAL, starts_at=NOW, ends_at=NOW + timedelta(days=2, hours=1)
        )
    )
    await db.flush()

    check = (await run(db, user, panels)).check("subscription")

    # Two days and an hour left: "3 days", and soon enough to suggest renewing.
    assert (check.outcome, check.message_key, check.params["count"]) == ("warn", "diag.subscription.ending_soon", 3)
    expected = "Подписка заканчивается через 3 дня, 23 нояб. 2026\u202fг."  # CLDR's date; its dot ends the sentence
    assert Translator("ru")(check.message_key, **check.params) == expected


# --- a healthy customer and the nodes -----------------------------------------------------------------------------


async def test_healthy_customer_is_all_ok(
    db: AsyncSession, panels: PanelRegistry, sessionmaker: async_sessionmaker[AsyncSession], open_port: int
) -> None:
    who = await customer(db, panels, nodes={"nl-1": (open_port, True), "de-1": (open_port, True)})
    await connect(sessionmaker, who, fetch=True, at=NOW - timedelta(hours=1))

    report = await run(db, who.user, panels)

    assert outcomes(report) == [(code, "ok") for code in ("subscription", "account", "link", "server", "client")]
    assert report.outcome == "ok"
    assert report.faq_slugs == ()
    assert report.check("subscription").params["count"] == 30
    assert (report.check("server").params["up"], report.check("server").params["total"]) == (2, 2)
    assert report.check("client").params == {"fetched_at": NOW, "online_at": NOW - timedelta(hours=1)}


async def test_closed_node_port_fails_with_advice(
    db: AsyncSession,
    panels: PanelRegistry,
    sessionmaker: async_sessionmaker[AsyncSession],
    closed_port: int,
) -> None:
    who = await customer(db, panels, nodes={"nl-1": (closed_port, True)})
    await connect(sessionmaker, who, fetch=True, at=NOW - timedelta(hours=1))

    report = await run(db, who.user, panels)

    check = report.check("server")
    assert (check.outcome, check.message_key, check.params["down"]) == ("fail", "diag.server.all_down", "nl-1")
    assert (check.advice_key, check.faq_slugs) == ("diag.advice.server_down", ("server-unavailable",))
    assert report.outcome == "fail"
    assert report.check("account").outcome == report.check("client").outcome == "ok"


async def test_some_nodes_down_suggests_another_location(
    db: AsyncSession, panels: PanelRegistry, open_port: int, closed_port: int
) -> None:
    nodes = {"nl-1": (open_port, True), "de-1": (closed_port, True), "fi-1": (open_port, False)}
    who = await customer(db, panels, nodes=nodes)

    check = (await run(db, who.user, panels)).check("server")

    # de-1 refuses connections; fi-1 accepts them, but its panel says the VPN core on it is down.
    assert (check.outcome, check.message_key) == ("warn", "diag.server.some_down")
    assert (check.params["up"], check.params["total"], check.params["down"]) == (1, 3, "de-1, fi-1")
    assert (check.advice_key, check.faq_slugs) == ("diag.advice.switch_location", ("switch-location",))


async def test_probes_run_at_once_within_the_budget(db: AsyncSession, panels: PanelRegistry) -> None:
    async def stuck(host: str, port: int, timeout: float) -> bool:  # noqa: ASYNC109 - ignores it, on purpose
        await asyncio.sleep(60)
        return True

    who = await customer(db, panels, nodes={f"n{i}": (443, True) for i in range(5)})

    started = time.monotonic()
    check = (await run(db, who.user, panels, probe=stuck, probe_budget=0.2)).check("server")

    assert time.monotonic() - started < 5  # five stuck probes, cut off together (generous: CI machines stall)
    assert (check.outcome, check.params["up"]) == ("fail", 0)


async def test_tcp_probe(open_port: int, closed_port: int) -> None:
    assert await tcp_probe("127.0.0.1", open_port, 1.0) is True
    assert await tcp_probe("127.0.0.1", closed_port, 1.0) is False


# --- the panel ------------------------------------------------------------------------------------------------------


async def test_panel_down_is_a_finding_not_an_exception(
    db: AsyncSession, panels: PanelRegistry, settings: Settings, open_port: int, tmp_path: Path
) -> None:
    # The synced copy of the client's activity stands in for the panel's.
    who = await customer(
        db, panels, nodes={"nl-1": (open_port, True)}, sub_updated_at=NOW - timedelta(days=1), online_at=NOW
    )
    # The demo panel keeps its accounts in a database; with that database gone, it is down.
    broken = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'gone' / 'panel.sqlite3'}")
    down = PanelRegistry(create_sessionmaker(broken), settings)
    try:
        report = await run(db, who.user, down)
    finally:
        await broken.dispose()

    account = report.check("account")
    assert (account.outcome, account.message_key, account.advice_key) == (
        "warn",
        "diag.account.panel_unreachable",
        "diag.advice.retry_later",
    )
    assert account.faq_slugs == ("server-unavailable",)
    assert (report.check("link").outcome, report.check("link").message_key) == ("skipped", "diag.link.unverified")
    assert report.check("server").outcome == "ok"  # the nodes carry the traffic, not the panel
    assert report.check("client").outcome == "ok"
    assert report.outcome == "warn"


async def test_a_panel_that_never_answers_is_cut_off(db: AsyncSession, panels: PanelRegistry, silent_port: int) -> None:
    server = await add_server(db, "marzban", PanelKind.MARZBAN, api_url=f"http://127.0.0.1:{silent_port}")
    user, subscription = await add_subscriber(db, 1001)
    await add_account(db, server, subscription, provisioned_at=NOW)

    started = time.monotonic()
    report = await run(db, user, panels, panel_timeout=0.3)

    assert time.monotonic() - started < 4  # well below the adapter's own 10 s HTTP timeout
    assert report.check("account").message_key == "diag.account.panel_unreachable"
    assert report.check("server").message_key == "diag.server.panel_down"  # no nodes known, panel silent


async def test_account_missing_in_panel(db: AsyncSession, panels: PanelRegistry, open_port: int) -> None:
    who = await customer(db, panels, nodes={"nl-1": (open_port, True)}, in_panel=False)

    report = await run(db, who.user, panels)

    account = report.check("account")
    assert (account.outcome, account.message_key, account.advice_key) == (
        "fail",
        "diag.account.not_in_panel",
        "diag.advice.support",
    )
    assert account.params == {"server": "demo", "username": who.account.panel_username}  # type: ignore[union-attr]
    assert [report.check(code).outcome for code in ("link", "server", "client")] == ["skipped", "ok", "skipped"]


async def test_account_still_being_created(db: AsyncSession, panels: PanelRegistry) -> None:
    queued = await customer(db, panels, in_panel=False, provisioned=False)

    account = (await run(db, queued.user, panels)).check("account")

    assert (account.outcome, account.message_key, account.faq_slugs) == (
        "warn",
        "diag.account.not_ready",
        ("after-payment",),
    )


async def test_no_account_row_yet(db: AsyncSession, panels: PanelRegistry) -> None:
    who = await customer(db, panels, account=False)

    report = await run(db, who.user, panels)

    assert outcomes(report) == [
        ("subscription", "ok"),
        ("account", "warn"),
        ("link", "skipped"),
        ("server", "skipped"),
        ("client", "skipped"),
    ]


@pytest.mark.parametrize(
    ("change", "outcome", "key", "advice"),
    [
        ("disable", "fail", "diag.account.disabled", "diag.advice.wait_sync"),
        ("use_up_traffic", "fail", "diag.account.limited", "diag.advice.traffic"),
        ("expire_two_hours_later", "warn", "diag.account.expiry_drift", "diag.advice.wait_sync"),
        ("expire_thirty_seconds_later", "ok", "diag.account.ok", None),
    ],
)
async def test_account_state_in_panel(
    db: AsyncSession, panels: PanelRegistry, change: str, outcome: str, key: str, advice: str | None
) -> None:
    who = await customer(db, panels)
    panel = panels.for_server(who.server)
    assert isinstance(panel, DemoPanel)
    ref = AccountRef(who.found.username)  # type: ignore[union-attr]
    ends = who.subscription.ends_at
    if change == "disable":
        await panel.modify_account(ref, AccountChanges(enabled=False))
    elif change == "use_up_traffic":
        await panel.modify_account(ref, AccountChanges(traffic_limit_bytes=GIB))
        await panel.simulate_usage(ref.username, upload=0, download=2 * GIB)
    elif change == "expire_two_hours_later":
        await panel.modify_account(ref, AccountChanges(expire_at=ends + timedelta(hours=2)))
    else:
        await panel.modify_account(ref, AccountChanges(expire_at=ends + timedelta(seconds=30)))

    check = (await run(db, who.user, panels)).check("account")

    assert (check.outcome, check.message_key, check.advice_key) == (outcome, key, advice)


async def test_stale_stored_link_fails(db: AsyncSession, panels: PanelRegistry) -> None:
    old = cipher().encrypt("https://shop.example/demo-panel/sub/revoked-long-ago")
    who = await customer(db, panels, subscription_url_encrypted=old)

    check = (await run(db, who.user, panels)).check("link")

    assert (check.outcome, check.message_key, check.advice_key) == ("fail", "diag.link.stale", "diag.advice.support")


# --- the client ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fetch", "last_online", "key", "advice", "faq"),
    [
        (False, None, "diag.client.never_fetched", "diag.advice.import_link", ("how-connect", "import-link")),
        (True, None, "diag.client.never_connected", "diag.advice.turn_on", ("no-connect", "switch-location")),
        (
            True,
            NOW - timedelta(days=10, hours=5),
            "diag.client.idle",
            "diag.advice.refresh",
            ("refresh-subscription", "no-connect"),
        ),
    ],
)
async def test_client_that_never_fetched_or_connected(
    db: AsyncSession,
    panels: PanelRegistry,
    sessionmaker: async_sessionmaker[AsyncSession],
    fetch: bool,
    last_online: datetime | None,
    key: str,
    advice: str,
    faq: tuple[str, ...],
) -> None:
    who = await customer(db, panels)
    await connect(sessionmaker, who, fetch=fetch, at=last_online)

    report = await run(db, who.user, panels)

    check = report.check("client")
    assert (check.outcome, check.message_key, check.advice_key, check.faq_slugs) == ("warn", key, advice, faq)
    assert report.outcome == "warn"
    if last_online is not None:
        assert check.params["count"] == 10
        assert Translator("ru")(key, **check.params) == "Последний раз вы подключались 10 дней назад."


# --- the summary for support -----------------------------------------------------------------------------------------


async def test_summary_names_the_customer_and_keeps_secrets_out(
    db: AsyncSession, panels: PanelRegistry, closed_port: int
) -> None:
    who = await customer(db, panels, nodes={"nl-1": (closed_port, True)})

    report = await run(db, who.user, panels)
    texts = {
        "plain": report.summary(),
        "ru": report.summary(Translator("ru")),
        "en": report.summary(Translator("en")),
    }

    for name, text in texts.items():
        assert SECRET_TOKEN not in text, name
        assert who.short_id not in text, name
        assert "http" not in text, name
        assert str(who.user.id) in text and "1001" in text, name
        assert len(text.splitlines()) == 3 + 5, name
    assert "[fail] server: diag.server.all_down server=demo up=0 total=1 down=nl-1" in texts["plain"]
    assert "[fail] Серверы: Серверы сейчас не отвечают: nl-1." in texts["ru"]
    assert texts["en"].splitlines()[:3] == [
        "Autodiagnostics 2026-11-21 12:00 UTC",
        f"User {who.user.id}, Telegram 1001",
        "Result: problem found",
    ]
    assert "diag." not in texts["ru"] + texts["en"]
