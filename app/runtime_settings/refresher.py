"""The web process keeps its runtime settings, message texts and text experiments fresh in the background, so no
request waits on a query for them: loaded once before the app serves, then every REFRESH_SECONDS until it stops."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from app.experiments import texts as experiment_texts
from app.resources import Resources
from app.runtime_settings import service as runtime_settings
from app.runtime_settings.service import REFRESH_SECONDS
from app.texts import overrides as text_overrides

log = logging.getLogger(__name__)


async def refresh_once(resources: Resources) -> None:
    await runtime_settings.refresh(resources.sessionmaker, resources.settings)
    await text_overrides.current(resources.sessionmaker)
    await experiment_texts.refresh(resources.sessionmaker)


# While the database is down this loop fails every second: one line a minute says so (no traceback: an outage
# is not a bug, and /readyz and the requests' own 503s report it too).
WARN_EVERY_SECONDS = 60.0


async def _loop(resources: Resources) -> None:
    loop = asyncio.get_running_loop()
    warned_at = -WARN_EVERY_SECONDS
    while True:
        await asyncio.sleep(REFRESH_SECONDS)
        try:
            await refresh_once(resources)
        except Exception as exc:  # a database hiccup: keep the last values and try again
            if loop.time() - warned_at >= WARN_EVERY_SECONDS:
                warned_at = loop.time()
                log.warning("could not refresh runtime settings and texts (keeping the last ones): %r", exc)


@asynccontextmanager
async def kept_fresh(resources: Resources) -> AsyncIterator[None]:
    try:
        await refresh_once(resources)
    except Exception as exc:  # a database not migrated yet, or down: env defaults and catalog texts until it answers
        log.warning("could not load runtime settings and texts (env defaults until the database answers): %r", exc)
    task = asyncio.create_task(_loop(resources))
    try:
        yield
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
