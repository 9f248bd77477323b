"""FastAPI dependencies shared by every router."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.experiments import texts as experiment_texts
from app.texts import overrides as text_overrides


async def _db_session(request: Request) -> AsyncIterator[AsyncSession]:
    # The request owns the transaction: services never commit; it is committed here, before the response
    # is sent (scope="function"), so a client never sees success for work that was rolled back.
    async with request.app.state.resources.sessionmaker() as session:
        try:
            yield session
            texts = getattr(request.state, "experiment_texts", None)
            if texts is not None and texts.read:  # the customer saw a text under experiment: first exposure
                await experiment_texts.record_exposures(session, texts)
            await session.commit()
        except BaseException:
            await session.rollback()
            raise


def client_ip(request: Request) -> str | None:
    """The caller's address as the server sees it (behind a proxy, uvicorn's proxy_headers have set it)."""
    return request.client.host if request.client else None


async def _settings(request: Request) -> Settings:
    # async on purpose: FastAPI runs a plain `def` dependency in its thread pool, on every request.
    return request.app.state.settings


DbSession = Annotated[AsyncSession, Depends(_db_session, scope="function")]
AppSettings = Annotated[Settings, Depends(_settings)]


async def texts_in_force(request: Request) -> None:
    """App-wide: the staff's edited texts (/admin/texts) are used by every page and answer of this request (the
    snapshot the app's refresher keeps: no query here)."""
    text_overrides.use_snapshot(request.app.state.resources.sessionmaker)
