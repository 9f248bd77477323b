"""The `shop` of the subscription tests: plans, a demo panel server, the demo payment provider (saved cards we
charge) and Telegram Stars enabled (a provider that renews by itself; never called by these tests)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.resources import open_resources
from tests.conftest import make_settings
from tests.payments.shop import Shop, seed_plans


@pytest.fixture
async def shop(database_url: str, db: AsyncSession) -> AsyncIterator[Shop]:
    settings = make_settings(
        database_url, demo_payments_enabled=True, stars_enabled=True, bot_token="4242:test-bot-token"
    )
    resources = open_resources(settings)
    try:
        yield Shop(resources, db, await seed_plans(db))
    finally:
        await resources.aclose()
