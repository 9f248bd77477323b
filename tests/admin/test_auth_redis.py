"""With REDIS_URL set, the per-address sign-in limit is kept in Redis, so two web processes count together."""

from __future__ import annotations

import pytest

from app.admin.auth import service
from app.config import Settings
from tests.admin.conftest import AdminHarness
from tests.admin.test_auth import sign_in
from tests.conftest import make_settings
from tests.web import BOT_TOKEN, serve


@pytest.fixture
def admin_settings(database_url: str, redis_url: str) -> Settings:
    return make_settings(database_url, bot_token=BOT_TOKEN, redis_url=redis_url)


async def test_two_processes_share_the_address_limit(admin: AdminHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service, "ATTEMPTS_PER_IP", 4)
    async with serve(admin.settings) as (_, other):
        for client in (admin.new_client(), other, admin.new_client(), other):
            assert (await sign_in(client, "nobody", password="wrong-password-1")).status_code == 401
        # The fifth attempt from the same address is refused by either process, even with the right password.
        assert (await sign_in(other, "support_one")).status_code == 429
        assert (await sign_in(admin.new_client(), "support_one")).status_code == 429
