"""Fixtures for the admin's tests: one staff member per role, signed-in clients per role (HTML over the admin
session cookie with its CSRF token; JSON over bearer tokens), on the real app and a clean database of each
kind (SQLite and PostgreSQL, like the rest of the suite).

    async def test_something(admin: AdminHarness) -> None:
        owner = await admin.browser("owner")          # httpx client: admin cookie + X-CSRF-Token header
        response = await owner.get("/admin/users")
        headers = await admin.bearer("support")       # {"authorization": "Bearer …"}
        response = await admin.client.get("/api/admin/users", headers=headers)
        admin.staff["support"]                        # the Staff row
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from functools import lru_cache

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.passwords import hash_password
from app.config import Settings
from app.models import Staff, StaffRole
from app.staff.sessions import ADMIN_COOKIE, csrf_token, issue_tokens, start_session
from tests.conftest import make_settings
from tests.emulators.harness import serve as serve_emulator
from tests.emulators.telegram import TelegramBotApiEmulator
from tests.web import BOT_TOKEN, serve

PASSWORD = "correct-horse-battery"
ROLES = tuple(role.value for role in StaffRole)
# Telegram ids of the staff the harness creates (the owner's is linked; others are not unless a test links).
STAFF_TELEGRAM_IDS = {"owner": 90001, "admin": 90002, "support": 90003, "marketing": 90004}


@dataclass
class AdminHarness:
    app: FastAPI
    client: httpx.AsyncClient  # anonymous
    db: AsyncSession
    settings: Settings
    staff: dict[str, Staff] = field(default_factory=dict)
    _clients: list[httpx.AsyncClient] = field(default_factory=list)

    def new_client(self, **headers: str) -> httpx.AsyncClient:
        """Another client on the same app, with its own cookie jar (closed by the fixture)."""
        transport = httpx.ASGITransport(app=self.app)
        client = httpx.AsyncClient(transport=transport, base_url="http://t", headers=headers)
        self._clients.append(client)
        return client

    async def browser(self, role: str, *, staff: Staff | None = None) -> httpx.AsyncClient:
        """A browser signed in to the admin as the role's staff member (or `staff`): the session cookie, and the
        CSRF token sent on every request as app.js does."""
        member = staff or self.staff[role]
        token = await start_session(self.db, member, method="password", user_agent="pytest", ip="127.0.0.1")
        await self.db.commit()
        client = self.new_client(**{"x-csrf-token": csrf_token(token, self.settings.secret_key)})
        client.cookies.set(ADMIN_COOKIE, token)
        return client

    async def bearer(self, role: str, *, staff: Staff | None = None) -> dict[str, str]:
        """Authorization headers with a fresh access token of the role's staff member (or `staff`)."""
        pair = await issue_tokens(self.db, staff or self.staff[role], name="pytest")
        await self.db.commit()
        return {"authorization": f"Bearer {pair.access_token}"}

    async def add_staff(self, username: str, role: str, *, telegram_id: int | None = None) -> Staff:
        """Another staff member with the harness's PASSWORD (its Argon2 hash is computed once per run)."""
        member = Staff(username=username, password_hash=password_hash(), role=StaffRole(role), telegram_id=telegram_id)
        self.db.add(member)
        await self.db.commit()
        return member


@lru_cache(maxsize=1)
def password_hash() -> str:
    # Argon2 is slow on purpose; hashing once per run keeps each test's four staff members cheap.
    return hash_password(PASSWORD)


@pytest.fixture
def admin_settings(database_url: str) -> Settings:
    """Production-mode settings with a bot token (initData sign-in); override this fixture to change them."""
    return make_settings(database_url, bot_token=BOT_TOKEN)


@pytest.fixture
async def admin(admin_settings: Settings, db: AsyncSession) -> AsyncIterator[AdminHarness]:
    async with serve(admin_settings) as (app, client):
        harness = AdminHarness(app, client, db, admin_settings)
        for role in ROLES:
            telegram_id = STAFF_TELEGRAM_IDS[role] if role == "owner" else None
            harness.staff[role] = await harness.add_staff(f"{role}_one", role, telegram_id=telegram_id)
        try:
            yield harness
        finally:
            for extra in harness._clients:
                await extra.aclose()


@pytest.fixture
def admin_app(admin_settings: Settings) -> FastAPI:
    """The app without its lifespan, for tests that only read its route table."""
    from app.main import create_app

    return create_app(admin_settings)


@pytest.fixture
def telegram_bot() -> Iterator[tuple[TelegramBotApiEmulator, str]]:
    """A Bot API emulator on a loopback port (emulator, base URL), for a module whose `admin_settings` points the
    app's bot at it: `make_settings(database_url, bot_token=bot.token, telegram_api_url=url)`."""
    bot = TelegramBotApiEmulator()
    with serve_emulator(bot.app) as url:
        yield bot, url
