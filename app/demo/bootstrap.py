"""Prepare the embedded demo: migrate the SQLite file, seed it when empty, make sure the demo panel exists."""

from __future__ import annotations

from app import migrate
from app.config import Settings
from app.db import standalone_transaction
from app.demo.history import seed_history
from app.demo.seed import seed_demo
from app.kit.clock import utcnow
from app.kit.crypto import configure_cipher
from app.panels.registry import bootstrap_servers
from app.stats.demo import prepare_demo_stats


async def prepare_demo(settings: Settings) -> str:
    await migrate.upgrade(settings.database_url)
    configure_cipher(settings.encryption_key, settings.secret_key)
    async with standalone_transaction(settings) as session:
        seeded = await seed_demo(session)
        if seeded:
            await seed_history(session, utcnow())
        await bootstrap_servers(session, settings)
        await prepare_demo_stats(session, settings.reporting_currency, utcnow())
    return "database created and seeded with demo data" if seeded else "using the existing demo database"
