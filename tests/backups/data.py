"""A database with real content for the backup tests (unicode, JSON, timestamps, encrypted columns, numerics),
and a table-by-table snapshot to compare a restored database with its source."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import MetaData, Table, select, text
from sqlalchemy.ext.asyncio import create_async_engine

from app import migrate
from app.db import create_engine, create_sessionmaker, transaction
from app.kit.crypto import cipher, configure_cipher
from app.models import (
    Base,
    OutboxMessage,
    OutboxStatus,
    Payment,
    PaymentStatus,
    Plan,
    PlanPrice,
    SavedPaymentMethod,
    Subscription,
    SubscriptionStatus,
    User,
)
from tests.conftest import (
    POSTGRES_URL,
    TEST_ENCRYPTION_KEY,
    TEST_SECRET,
    _create_pg_database,
    _drop_pg_database,
    make_settings,
    require_server,
)
from tests.factories import add_account, add_server

SUBSCRIPTION_URL = "https://панель.example/sub/тайна?x=1"
CARD_SECRET = "pm_2a9f-секрет"
WHEN = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)


class PgDatabases:
    """Fresh PostgreSQL databases for one test, all dropped afterwards (also ones only named, never created).
    Migrated ones are copies of a template migrated once: `CREATE DATABASE … TEMPLATE` beats running Alembic."""

    def __init__(self, template: str) -> None:
        self.template = template
        self.names: list[str] = []

    def name(self) -> str:
        name = f"vpnshop_bk_{uuid.uuid4().hex[:10]}"
        self.names.append(name)
        return name

    def url_of(self, name: str) -> str:
        return POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}"

    async def create(self, *, migrated: bool = True) -> str:
        name = self.name()
        template = f' TEMPLATE "{self.template}"' if migrated else ""
        await _admin(f'CREATE DATABASE "{name}"{template}')
        return self.url_of(name)

    async def exists(self, name: str) -> bool:
        engine = create_async_engine(POSTGRES_URL)
        try:
            async with engine.connect() as connection:
                found = await connection.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name})
        finally:
            await engine.dispose()
        return found is not None

    async def drop_all(self) -> None:
        for name in self.names:
            await _drop_pg_database(POSTGRES_URL, name)


async def _admin(statement: str) -> None:
    engine = create_async_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            await connection.execute(text(statement))
    finally:
        await engine.dispose()


async def pg_template() -> AsyncIterator[str]:
    """A migrated PostgreSQL database to copy, for the whole session."""
    require_server("PostgreSQL", POSTGRES_URL)
    name = f"vpnshop_bk_template_{uuid.uuid4().hex[:8]}"
    url = await _create_pg_database(POSTGRES_URL, name)
    try:
        await migrate.upgrade(url)
        yield name
    finally:
        await _drop_pg_database(POSTGRES_URL, name)


async def pg_databases(template: str) -> AsyncIterator[PgDatabases]:
    databases = PgDatabases(template)
    try:
        yield databases
    finally:
        await databases.drop_all()


_sqlite_template: Path | None = None


async def new_sqlite(path: Path) -> str:
    """A migrated SQLite database at `path` (a copy of one migrated once per session)."""
    global _sqlite_template
    if _sqlite_template is None:
        template = Path(tempfile.mkdtemp(prefix="vpnshop-bk-")) / "template.sqlite3"
        await migrate.upgrade(f"sqlite+aiosqlite:///{template}")
        _sqlite_template = template
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_sqlite_template, path)
    return f"sqlite+aiosqlite:///{path}"


async def fill(url: str, users: int = 3) -> None:
    """Rows in many tables: users with unicode names, a plan with JSON and a Decimal, subscriptions, panel
    accounts with encrypted URLs, payments with JSON details, a saved card (encrypted), outbox messages."""
    configure_cipher([TEST_ENCRYPTION_KEY], TEST_SECRET)
    engine = create_engine(make_settings(url))
    try:
        async with transaction(create_sessionmaker(engine)) as session:
            plan = Plan(
                code="month",
                name={"ru": "Месяц 🚀", "en": "Month"},
                duration_days=30,
                discount_percent=Decimal("12.50"),
                features={"speed": "∞", "list": [1, 2, {"nested": None}]},
            )
            session.add(plan)
            await session.flush()
            session.add(PlanPrice(plan_id=plan.id, currency="RUB", amount_minor=19900))
            server = await add_server(session, name="nl-1", location="Нидерланды", settings={"inbounds": {"v": ["a"]}})
            for n in range(users):
                user = User(
                    telegram_id=7_000_000_000 + n,
                    referral_code=f"bk{n}",
                    username=f"user_{n}",
                    first_name="Ёжик «в тумане»",
                    last_name='O\'Brien "quoted" \\ back',
                    language="ru" if n % 2 else "en",
                    last_seen_at=WHEN + timedelta(seconds=n),
                )
                session.add(user)
                await session.flush()
                subscription = Subscription(
                    user_id=user.id,
                    plan_id=plan.id,
                    status=SubscriptionStatus.ACTIVE,
                    starts_at=WHEN,
                    ends_at=WHEN + timedelta(days=30 + n),
                )
                session.add(subscription)
                await session.flush()
                await add_account(
                    session,
                    server,
                    subscription,
                    subscription_url_encrypted=cipher().encrypt(SUBSCRIPTION_URL + str(n)),
                    lifetime_traffic_bytes=2**40 + n,
                )
                session.add(
                    Payment(
                        public_id=str(uuid.UUID(int=n + 1)),
                        user_id=user.id,
                        subscription_id=subscription.id,
                        plan_id=plan.id,
                        provider="demo",
                        amount_minor=19900,
                        currency="RUB",
                        status=PaymentStatus.SUCCEEDED,
                        idempotency_key=f"idem-{n}",
                        days=30,
                        details={"провайдер": "демо", "amounts": [1.5, 2], "ok": True},
                        receipt=None,
                        paid_at=WHEN,
                    )
                )
                session.add(
                    SavedPaymentMethod(
                        user_id=user.id,
                        provider="demo",
                        method_type="card",
                        title="•••• 4242",
                        secret_encrypted=cipher().encrypt(CARD_SECRET),
                        fingerprint=cipher().fingerprint(CARD_SECRET + str(n)),
                    )
                )
            session.add(
                OutboxMessage(
                    topic="notify.user",
                    payload={"text": "привет\nмир", "n": 1},
                    dedupe_key="bk-1",
                    status=OutboxStatus.PENDING,
                    attempts=0,
                )
            )
    finally:
        await engine.dispose()


async def snapshot(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every table's rows in primary-key order, as the app's types read them (alembic_version included)."""
    engine = create_engine(make_settings(url))
    tables = list(Base.metadata.sorted_tables)
    try:
        async with engine.connect() as connection:
            alembic = await connection.run_sync(lambda sync: Table("alembic_version", MetaData(), autoload_with=sync))
            result = {}
            for table in [*tables, alembic]:
                rows = await connection.execute(select(table).order_by(*table.primary_key.columns))
                result[table.name] = [tuple(row) for row in rows]
    finally:
        await engine.dispose()
    return result


async def read_secrets(url: str) -> tuple[list[str], list[str]]:
    """The decrypted subscription URLs and card secrets of a database, in id order."""
    configure_cipher([TEST_ENCRYPTION_KEY], TEST_SECRET)
    engine = create_engine(make_settings(url))
    try:
        async with engine.connect() as connection:
            urls = await connection.scalars(text("SELECT subscription_url_encrypted FROM vpn_accounts ORDER BY id"))
            cards = await connection.scalars(text("SELECT secret_encrypted FROM saved_payment_methods ORDER BY id"))
            return [cipher().decrypt(v) for v in urls], [cipher().decrypt(v) for v in cards]
    finally:
        await engine.dispose()
