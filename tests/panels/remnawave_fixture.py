"""A RemnawavePanel wired to a live Remnawave emulator, for this module's tests and the shared contract suite."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

from app.kit.http import CircuitBreaker, HttpClient, RetryPolicy
from app.panels.remnawave import RemnawavePanel
from tests.emulators.harness import serve
from tests.emulators.remnawave import RemnawaveEmulator

ApiVersion = Literal["auto", "2", "3"]


@asynccontextmanager
async def connect_panel(
    base_url: str,
    token: str,
    *,
    api_version: ApiVersion = "auto",
    squad_uuids: list[str] | None = None,
    http_timeout: float = 5.0,
) -> AsyncIterator[RemnawavePanel]:
    """A panel with quick retries and its own circuit breaker, so one test's failures never leak into another."""
    http = HttpClient(
        base_url,
        service="remnawave",
        timeout=http_timeout,
        retry=RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05),
        breaker=CircuitBreaker(),
    )
    panel = RemnawavePanel(base_url, token, api_version=api_version, squad_uuids=squad_uuids, http=http)
    try:
        yield panel
    finally:
        await panel.aclose()
        await http.aclose()  # injected, so the panel leaves it to us


@asynccontextmanager
async def open_remnawave(
    version: str,
    *,
    api_version: ApiVersion = "auto",
    squad_uuids: list[str] | None = None,
    http_timeout: float = 5.0,
    **emulator_options: Any,
) -> AsyncIterator[tuple[RemnawavePanel, RemnawaveEmulator, str]]:
    """Serve a fresh emulator of API generation `version` ("2" or "3"); yield (panel, emulator, base_url).

    The emulator is the state object: `emulator.faults`, `emulator.requests`, `emulator.user(name)`, ...
    The panel detects the generation itself unless `api_version` says otherwise.
    """
    emulator = RemnawaveEmulator(version, **emulator_options)  # type: ignore[arg-type]
    with serve(emulator) as base_url:
        async with connect_panel(
            base_url, emulator.token, api_version=api_version, squad_uuids=squad_uuids, http_timeout=http_timeout
        ) as panel:
            yield panel, emulator, base_url
